"""premailer's result and the compiled templates are kept in the workspace: the next run that
inlines the same HTML with the same inliner code reads it instead of importing and running
premailer again, and Jinja reads the templates' compiled code instead of compiling them."""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from distribute.config import Settings
from distribute.errors import TemplateError
from distribute.release import load_release
from distribute.render import email as email_render
from distribute.render import inline
from distribute.render.email import INLINED, draft_email
from distribute.render.inline import KEPT, kept
from distribute.render.templates import COMPILED, environment

AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The HTML each call of the default inliner was given."""
    seen: list[str] = []
    real = email_render.inline_css

    def counted(html: str) -> str:
        seen.append(html)
        return real(html)

    monkeypatch.setattr(email_render, "inline_css", counted)
    return seen


def test_a_second_draft_reads_what_the_first_inlined(
    example_path: Path, settings: Settings, calls: list[str]
) -> None:
    release = load_release(example_path)
    first = draft_email(release, settings, at=AT)
    second = draft_email(release, settings, at=AT)
    assert len(calls) == 1
    assert second == first
    assert first.html == inline.premailer(calls[0])
    assert len(list((settings.workspace / INLINED).glob("*.html"))) == 1


def test_other_html_is_inlined_again(
    example_path: Path, settings: Settings, calls: list[str], tmp_path: Path
) -> None:
    draft_email(load_release(example_path), settings, at=AT)
    edited = tmp_path / "edited.md"
    text = example_path.read_text("utf-8")
    edited.write_text(text.replace("hydrogen", "hydrogène", 1), "utf-8")
    draft = draft_email(load_release(edited), settings, at=AT)
    assert len(calls) == 2
    assert draft.html == inline.premailer(calls[1])


def test_a_folder_that_cannot_be_written_only_means_inlining_again(
    example_path: Path, settings: Settings, calls: list[str]
) -> None:
    (settings.workspace / ".cache").write_text("a file where the folder would be", "utf-8")
    release = load_release(example_path)
    first = draft_email(release, settings, at=AT)
    second = draft_email(release, settings, at=AT)
    assert len(calls) == 2
    assert second == first


def _marked(html: str) -> str:
    """An inliner whose result tells it from the one a kept file was written by."""
    return f"<!-- again -->{html.upper()}"


# What can become of a kept file between two runs: cut short, a byte changed, a byte
# added, another entry copied or linked over it, a folder or an empty file in its place.
DAMAGE = st.one_of(
    st.tuples(st.just("cut"), st.integers(0, 200)),
    st.tuples(st.just("flip"), st.integers(0, 200)),
    st.tuples(st.just("grow"), st.integers(0, 200)),
    st.tuples(st.sampled_from(["copy", "link", "folder", "empty", "not-utf8"]), st.just(0)),
)


def _damage(path: Path, other: Path, how: str, at: int) -> None:
    data = path.read_bytes()
    at = min(at, len(data) - 1)
    if how in ("cut", "flip", "grow"):
        changed = {
            "cut": data[:at],
            "flip": data[:at] + bytes([data[at] ^ 0x20]) + data[at + 1 :],
            "grow": data[:at] + b"x" + data[at:],
        }[how]
        path.write_bytes(changed)
    elif how == "copy":
        path.write_bytes(other.read_bytes())
    elif how == "link":
        path.unlink()
        path.symlink_to(other)
    elif how == "folder":
        path.unlink()
        path.mkdir()
    elif how == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(data[:-8] + b"\xff\xfe" + data[-6:])


@hypothesis_settings(max_examples=150, deadline=None, database=None)
@given(html=st.text(min_size=1, max_size=40), damage=DAMAGE)
@example(html="<p>a</p>", damage=("cut", 60))
@example(html="<p>a</p>", damage=("not-utf8", 0))
def test_a_damaged_result_is_inlined_again(html: str, damage: tuple[str, int]) -> None:
    """Whatever became of the file, the result is what the inliner gives now, and the
    folder is left with no scratch file."""
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        assert kept("<p>other</p>", folder, str.upper) == "<P>OTHER</P>"
        [other] = folder.glob("*.html")
        assert kept(html, folder, str.upper) == html.upper()
        [path] = [p for p in folder.glob("*.html") if p != other]
        assert kept(html, folder, _marked) == html.upper()  # read back while whole
        _damage(path, other, *damage)
        assert kept(html, folder, _marked) == _marked(html)
        assert not list(folder.glob(".*.tmp"))


def test_a_new_inliner_code_is_not_served_the_old_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    module = code / "inliner_dependency.py"
    module.write_text("VERSION = 1\n", "utf-8")
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.setattr(inline, "_INLINER_CODE", ("inliner_dependency",))
    folder = tmp_path / "kept"
    assert kept("<p>a</p>", folder, str.upper) == "<P>A</P>"
    assert kept("<p>a</p>", folder, str.title) == "<P>A</P>"
    # Installed again: another size or time.
    module.write_text("VERSION = 22\n", "utf-8")
    os.utime(module, ns=(0, 10**18))
    assert kept("<p>a</p>", folder, str.title) == "<P>A</P>".title()


def test_the_oldest_results_are_removed(tmp_path: Path) -> None:
    for number in range(KEPT + 5):
        kept(f"<p>{number}</p>", tmp_path, str.upper)
    left = list(tmp_path.glob("*.html"))
    assert len(left) == KEPT
    assert kept(f"<p>{KEPT + 4}</p>", tmp_path, str.title) == f"<P>{KEPT + 4}</P>"
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_same_release_read_from_another_path_is_not_inlined_again(
    example_path: Path, settings: Settings, calls: list[str], tmp_path: Path
) -> None:
    """A campaign named by a relative path on the command line and by a full one elsewhere
    read the same release: one inlining serves both."""
    copy = tmp_path / "elsewhere" / "release.md"
    copy.parent.mkdir()
    copy.write_bytes(example_path.read_bytes())
    first = draft_email(load_release(example_path), settings, at=AT)
    second = draft_email(load_release(copy), settings, at=AT)
    assert len(calls) == 1
    assert second.html == first.html


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The name of each template Jinja compiles from its source."""
    seen: list[str | None] = []
    real = jinja2.Environment.compile

    def counted(self: jinja2.Environment, source: Any, name: str | None = None, *a: Any) -> Any:
        seen.append(name)
        return real(self, source, name, *a)

    monkeypatch.setattr(jinja2.Environment, "compile", counted)
    return seen


def test_the_next_run_does_not_compile_the_templates_again(
    example_path: Path, settings: Settings, compiles: list[str | None]
) -> None:
    release = load_release(example_path)
    first = draft_email(release, settings, at=AT)
    assert "email/press-release.html.j2" in compiles
    compiles.clear()
    # Another environment, as in another process: compiled code is read back.
    second = draft_email(release, settings, at=AT)
    assert compiles == []
    assert second == first


def test_a_template_edited_since_is_compiled_again(
    example_path: Path, settings: Settings, compiles: list[str | None]
) -> None:
    ours = settings.workspace / "templates" / "email"
    ours.mkdir(parents=True)
    template = ours / "press-release.txt.j2"
    template.write_text("{{ release.title }}\n", "utf-8")
    release = load_release(example_path)
    assert draft_email(release, settings, at=AT).text == f"{release.title}\n"
    template.write_text("Title:\n{{ release.title }}\n", "utf-8")
    compiles.clear()
    assert draft_email(release, settings, at=AT).text == f"Title:\n{release.title}\n"
    assert compiles == ["email/press-release.txt.j2"]


def test_a_kept_template_names_the_line_that_fails(example_path: Path, settings: Settings) -> None:
    ours = settings.workspace / "templates" / "email"
    ours.mkdir(parents=True)
    (ours / "press-release.txt.j2").write_text("{{ release.title }}\n{{ release.nope }}\n", "utf-8")
    release = load_release(example_path)
    errors = []
    for _ in range(2):
        with pytest.raises(TemplateError) as raised:
            draft_email(release, settings, at=AT)
        errors.append(raised.value.format())
    assert list((settings.workspace / COMPILED).iterdir())
    assert errors[0] == errors[1]
    assert "press-release.txt.j2:2:" in errors[0]


def test_a_folder_that_cannot_hold_compiled_templates_only_means_compiling_again(
    example_path: Path, settings: Settings, compiles: list[str | None]
) -> None:
    (settings.workspace / ".cache").write_text("a file where the folder would be", "utf-8")
    release = load_release(example_path)
    first = draft_email(release, settings, at=AT)
    compiles.clear()
    assert draft_email(release, settings, at=AT) == first
    assert "email/press-release.html.j2" in compiles


def _fresh_env(settings: Settings) -> jinja2.Environment:
    """The environment another run builds: nothing compiled in memory yet."""
    return environment(settings, dirs=[settings.workspace / "templates"])


# The folder of compiled templates is emptied for each example.
@hypothesis_settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(damage=DAMAGE)
@example(damage=("cut", 20))  # inside the source checksum Jinja unpickles
@example(damage=("cut", 300))
def test_a_damaged_compiled_template_is_compiled_again(
    settings: Settings, damage: tuple[str, int]
) -> None:
    ours = settings.workspace / "templates" / "email"
    ours.mkdir(parents=True, exist_ok=True)
    (ours / "a.txt.j2").write_text("A {{ v }}\n", "utf-8")
    (ours / "b.txt.j2").write_text("B {% for x in v %}{{ x }}{% endfor %}\n", "utf-8")
    kept_folder = settings.workspace / COMPILED
    shutil.rmtree(kept_folder, ignore_errors=True)
    assert _fresh_env(settings).get_template("email/b.txt.j2").render(v="xy") == "B xy"
    [other] = kept_folder.iterdir()
    assert _fresh_env(settings).get_template("email/a.txt.j2").render(v="xy") == "A xy\n"
    [path] = [p for p in kept_folder.iterdir() if p != other]
    _damage(path, other, *damage)
    assert _fresh_env(settings).get_template("email/a.txt.j2").render(v="xy") == "A xy\n"
    assert not [p for p in kept_folder.iterdir() if p.name.endswith(".tmp")]


def test_an_html_template_compiled_for_posts_is_escaped_in_an_email(settings: Settings) -> None:
    """Posts render through an overlay without autoescaping; an HTML template they include
    is compiled there without escaping, and an email reading that code would not escape."""
    ours = settings.workspace / "templates" / "email"
    ours.mkdir(parents=True)
    (ours / "part.html.j2").write_text("{{ v }}\n", "utf-8")
    posts = _fresh_env(settings).overlay(autoescape=False)
    assert posts.get_template("email/part.html.j2").render(v="R&D <b>") == "R&D <b>\n"
    email = _fresh_env(settings)
    assert email.get_template("email/part.html.j2").render(v="R&D <b>") == "R&amp;D &lt;b&gt;\n"
    # And the other way round, in later runs: each reads its own compiled code.
    posts = _fresh_env(settings).overlay(autoescape=False)
    assert posts.get_template("email/part.html.j2").render(v="R&D <b>") == "R&D <b>\n"
