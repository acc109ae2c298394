"""The Jinja2 environment shared by email and social templates, and its error translation.

Templates are looked up first in the workspace's ``templates/`` folder (or ``[paths]
templates``), then in the templates shipped with distribute, so a press office can override
one template without copying them all. ``StrictUndefined`` everywhere: a typo in a variable
name must stop the campaign before anything is scheduled, not send "Dear ," to a journalist.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import textwrap
import traceback
from collections import Counter
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import jinja2.bccache

from distribute.config import Settings, bundled
from distribute.errors import TemplateError
from distribute.render.sealed import read_sealed, write_sealed

_MONTHS = {
    "en": "January February March April May June July August September October November December",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
}


def template_dirs(settings: Settings | None) -> list[Path]:
    dirs: list[Path] = []
    if settings is not None:
        local = settings.templates or settings.workspace / "templates"
        if local.is_dir():
            dirs.append(local)
    dirs.append(bundled("templates"))
    return dirs


class _Compiled(jinja2.BytecodeCache):
    """Compiled templates kept in the workspace, so the next run does not compile them again;
    a folder that cannot be used, or a file in it that is not whole, means compiling again
    (see :mod:`distribute.render.sealed`).

    Jinja's own file cache knows a template by its name and file alone, but its code also
    depends on how the environment compiles it: an overlay without autoescaping (the posts')
    compiles an HTML template that an email then reads unescaped. The key holds all that.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def get_bucket(
        self, environment: jinja2.Environment, name: str, filename: str | None, source: str
    ) -> jinja2.bccache.Bucket:
        made = (name, filename, _compiled_by(environment, name))
        key = hashlib.sha256(repr(made).encode("utf-8", "surrogatepass")).hexdigest()
        bucket = jinja2.bccache.Bucket(environment, key, self.get_source_checksum(source))
        self.load_bytecode(bucket)
        return bucket

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        data = read_sealed(self.directory / f"{bucket.key}.cache", bucket.key)
        if data is not None:
            try:
                bucket.bytecode_from_string(data)
            except (EOFError, ValueError, TypeError, pickle.UnpicklingError):
                bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        path = self.directory / f"{bucket.key}.cache"
        write_sealed(path, bucket.key, bucket.bytecode_to_string())


def _compiled_by(env: jinja2.Environment, name: str) -> tuple[object, ...]:
    """What Jinja's compiler reads of ``env`` for template ``name``, besides its source."""
    autoescape = env.autoescape(name) if callable(env.autoescape) else env.autoescape
    finalize = env.finalize
    return (
        jinja2.__version__,
        bool(autoescape),
        env.block_start_string,
        env.block_end_string,
        env.variable_start_string,
        env.variable_end_string,
        env.comment_start_string,
        env.comment_end_string,
        env.line_statement_prefix,
        env.line_comment_prefix,
        env.trim_blocks,
        env.lstrip_blocks,
        env.newline_sequence,
        env.keep_trailing_newline,
        env.optimized,
        env.is_async,
        sorted(env.extensions),
        None if finalize is None else getattr(finalize, "__qualname__", type(finalize).__name__),
        env.code_generator_class.__qualname__,
    )


COMPILED = Path(".cache") / "distribute" / "templates"


def environment(settings: Settings | None, *, dirs: list[Path] | None = None) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in (dirs or template_dirs(settings))]),
        bytecode_cache=_Compiled(settings.workspace / COMPILED) if settings else None,
        # HTML templates are escaped, text templates (emails' text part, posts) are not.
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2", "htm")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # A value a release may lack (its lead, subtitle, date) prints as nothing, never as
        # "None"; a name that does not exist at all still fails through StrictUndefined.
        finalize=_nothing_for_none,
    )
    env.filters["wrap"] = wrap
    env.filters["long_date"] = long_date
    env.filters["instant"] = instant
    return env


def _nothing_for_none(value: Any) -> Any:
    return "" if value is None else value


def wrap(text: str | None, width: int = 72) -> str:
    """Wrap prose for the text part, never breaking a URL or a word."""
    out: list[str] = []
    for paragraph in ("" if text is None else str(text)).split("\n"):
        if not paragraph.strip():
            out.append("")
            continue
        out.extend(
            textwrap.wrap(paragraph, width=width, break_long_words=False, break_on_hyphens=False)
            or [""]
        )
    return "\n".join(out)


def long_date(value: date | datetime, language: str = "en") -> str:
    """10 March 2027 / 10 mars 2027."""
    months = _MONTHS.get(language[:2], _MONTHS["en"]).split()
    return f"{value.day} {months[value.month - 1]} {value.year}"


def instant(value: datetime, zone: str | ZoneInfo = "Europe/Paris", language: str = "en") -> str:
    """An aware time shown in a zone: '10 March 2027 08:00 CET'."""
    local = value.astimezone(zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone))
    return f"{long_date(local, language)} {local:%H:%M} {local.tzname()}"


def _template_line(exc: BaseException, name: str | None) -> tuple[str | None, int | None]:
    """Where in a template an error happened: Jinja rewrites tracebacks to template lines.

    The deepest template frame, except for endless recursion, where it is wherever the
    stack ran out: there the line that calls itself is the one that repeats most.
    """
    frames = [
        (frame.filename, frame.lineno)
        for frame in traceback.extract_tb(exc.__traceback__)
        if frame.filename and (frame.filename.endswith(".j2") or frame.filename == "<template>")
    ]
    if not frames:
        return name, None
    if isinstance(exc, RecursionError):
        return Counter(frames).most_common(1)[0][0]
    return frames[-1]


def render(env: jinja2.Environment, name: str, context: Mapping[str, Any]) -> str:
    """Render template ``name``; every Jinja failure becomes one TemplateError naming file:line."""
    try:
        template = env.get_template(name)
    except jinja2.TemplateNotFound as exc:
        searched = ", ".join(str(p) for p in getattr(env.loader, "searchpath", []))
        raise TemplateError(f"template {exc.name!r} not found (searched {searched})") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"template syntax error: {exc.message}", path=exc.filename or name, line=exc.lineno
        ) from None
    except RecursionError:
        raise TemplateError(_TOO_DEEP, path=_source(env, name)) from None
    except UnicodeDecodeError:
        raise TemplateError(
            "is not UTF-8 text; save it as UTF-8", path=_source(env, name)
        ) from None
    except OSError as exc:
        raise TemplateError(f"cannot read the template: {exc.strerror}", path=name) from None
    return render_template(template, context)


_TOO_DEEP = "template is nested too deeply for Jinja to compile"
_CALLS_ITSELF = (
    "template error: endless recursion (a macro that calls itself, or a template that "
    "includes itself)"
)


def _source(env: jinja2.Environment, name: str) -> str:
    for folder in getattr(env.loader, "searchpath", []):
        candidate = Path(folder) / name
        if candidate.is_file():
            return str(candidate)
    return name


def render_template(
    template: jinja2.Template, context: Mapping[str, Any], *, where: str | None = None
) -> str:
    """Render; a failure names the template's file and line (or ``where``, for inline ones)."""
    try:
        return template.render(context)
    except jinja2.UndefinedError as exc:
        raise _failure(exc, f"undefined variable: {exc.message}", template, where) from None
    except jinja2.TemplateError as exc:
        raise _failure(exc, f"template error: {exc}", template, where) from None
    # Filters and expressions run Python: a template can divide by zero or format badly.
    except (TypeError, ValueError, AttributeError, ZeroDivisionError, LookupError) as exc:
        raise _failure(exc, f"template failed: {exc}", template, where) from None
    except RecursionError as exc:
        # A macro that calls itself, or a template that includes itself.
        raise _failure(exc, _CALLS_ITSELF, template, where) from None
    except (OverflowError, MemoryError) as exc:
        # "{{ 'x' * 10 ** 12 }}": Python refuses the number or the memory at once.
        message = "template failed: a value is too large to compute"
        raise _failure(exc, message, template, where) from None


def _failure(
    exc: BaseException, message: str, template: jinja2.Template, where: str | None
) -> TemplateError:
    if where is not None:
        return TemplateError(message, path=where)
    path, line = _template_line(exc, template.filename or template.name)
    return TemplateError(message, path=path, line=line)


def render_string(
    env: jinja2.Environment, source: str, context: Mapping[str, Any], *, where: str
) -> str:
    """Render an inline template (a campaign's ``subject`` or a post's ``text``).

    Inline templates produce header or post text, never HTML: Jinja would otherwise
    autoescape them (string templates default to the environment's HTML setting), and a
    subject "R&D" would reach journalists as "R&amp;D".
    """
    try:
        template = env.overlay(autoescape=False).from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}", path=where) from None
    except RecursionError:
        raise TemplateError(_TOO_DEEP, path=where) from None
    return render_template(template, context, where=where)


# Whitespace that may break a line, and control characters. No-break spaces are not in it:
# French typography puts them before « : ; ! ? », in a subject as anywhere else.
_LINE_BREAKING = re.compile(r"(?:(?![\u00a0\u2007\u202f])[\s\x00-\x1f\x7f])+")


def single_line(text: str) -> str:
    """Collapse whitespace (and control characters) so a value can sit in a header."""
    if text.isascii() and text.isprintable() and "  " not in text:
        # The only white space printable ASCII holds is the space: nothing to collapse.
        return text.strip()
    return _single_line(text)


def _single_line(text: str) -> str:
    return _LINE_BREAKING.sub(" ", text).strip()
