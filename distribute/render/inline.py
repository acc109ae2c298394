"""CSS inliners: the HTML of an email with its stylesheet copied into ``style`` attributes.

Mail programs drop ``<style>`` blocks or parts of them, so each element carries its own
styles; ``@media`` rules (narrow screens, dark mode) cannot be inlined and stay in a
``<style>`` block, where the clients that read them let their ``!important`` win.

An inliner is a function from HTML to HTML. premailer is the default. css-inline (Rust)
computes the same styles more than a hundred times faster; its bytes differ, and what
differs is known (``tests/test_inline.py`` checks each element's styles agree):

* declarations are written ``name: value;`` rather than ``name:value`` joined by ``; ``,
  in the order of the rules' specificity, and colours as written (premailer's cssutils
  shortens ``#ffffff`` to ``#fff`` and quotes font names in double quotes);
* its HTML5 parser adds the ``<tbody>`` every browser adds to a table;
* it adds no ``bgcolor`` attribute beside a ``background-color`` (premailer does, for
  Outlook's Word engine, which reads ``bgcolor`` on tables and cells), and the ``@media``
  block is kept as written, before the body, instead of re-serialised at its end.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path

from distribute.errors import ConfigError
from distribute.render.sealed import read_sealed, write_sealed

Inliner = Callable[[str], str]


def premailer(html: str) -> str:
    """Inline CSS with premailer, keeping @media and dark-mode rules in a <style> block."""
    import cssutils
    from premailer import Premailer

    # cssutils reports every property it does not know (mso-hide, -webkit-...) through its
    # own logger and through warnings; neither is news to a press office.
    cssutils.log.setLevel(logging.CRITICAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inliner = Premailer(
            html,
            base_url=None,
            allow_network=False,
            allow_loading_external_files=False,
            keep_style_tags=False,
            strip_important=False,
            remove_classes=False,
            disable_validation=True,
            disable_leftover_css=False,
            cssutils_logging_level=logging.CRITICAL,
        )
        result: str = inliner.transform(pretty_print=False)
    return result


def css_inline(html: str) -> str:
    """Inline CSS with css-inline; nothing is fetched, @media rules stay in a <style> block."""
    try:
        import css_inline as rust
    except ImportError:
        raise ConfigError("css-inline is not installed: pip install css-inline") from None
    result: str = rust.inline(html, keep_at_rules=True, load_remote_stylesheets=False)
    return result


INLINERS: dict[str, Inliner] = {"premailer": premailer, "css-inline": css_inline}

# What premailer's result depends on besides the HTML: its code, cssutils' and lxml's, and
# the options above. A file's size and modification time change when it is installed again.
_INLINER_CODE = ("premailer", "cssutils", "lxml", __name__)
KEPT = 32  # results kept per workspace: a few releases, each in a few template variants


def kept(html: str, folder: Path, inline: Inliner) -> str:
    """``inline(html)``, kept in ``folder`` for the next process that inlines the same HTML.

    Inlining is a pure function of the HTML and of the inliner's code, and importing and
    running premailer is most of what a send of a thousand messages does before the first
    one: a dry run (or a preview) keeps the result, the live send that follows reads it.
    A folder that cannot be read or written only means inlining again.
    """
    key = _key(html)
    path = folder / f"{key}.html"
    data = read_sealed(path, key)
    if data is not None:
        with contextlib.suppress(UnicodeDecodeError):
            return data.decode("utf-8")
    result = inline(html)
    with contextlib.suppress(UnicodeEncodeError):
        if write_sealed(path, key, result.encode("utf-8")):
            with contextlib.suppress(OSError):
                _prune(folder, path)
    return result


def _key(html: str) -> str:
    digest = hashlib.sha256()
    for name in _INLINER_CODE:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        stat = os.stat(origin) if origin else None
        digest.update(
            f"{name}:{origin}:{stat and stat.st_size}:{stat and stat.st_mtime_ns}\0".encode()
        )
    digest.update(html.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _prune(folder: Path, newest: Path) -> None:
    """Keep ``newest`` and the most recent others, KEPT in all (files written within one
    clock tick share a time, so the newest is named rather than found). An entry another
    process removes meanwhile, or one that cannot be removed, stops nothing."""
    others: list[tuple[int, Path]] = []
    for path in folder.glob("*.html"):
        if path != newest:
            with contextlib.suppress(OSError):
                others.append((path.lstat().st_mtime_ns, path))
    others.sort(reverse=True)
    for _, old in others[KEPT - 1 :]:
        with contextlib.suppress(OSError):
            old.unlink()
