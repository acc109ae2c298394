"""The CSS inliners: premailer and css-inline give every element the same styles."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from distribute.config import load_settings
from distribute.release import load_release
from distribute.render import email as email_render
from distribute.render.email import draft_email
from distribute.render.inline import INLINERS

pytest.importorskip("css_inline")

AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _value(text: str) -> str:
    value = " ".join(text.split()).lower().replace('"', "'")
    # cssutils writes #ffffff as #fff; the colour is the same.
    return re.sub(
        r"#([0-9a-f])([0-9a-f])([0-9a-f])\b",
        lambda m: "#" + "".join(c * 2 for c in m.groups()),
        value,
    )


class Styles(HTMLParser):
    """Each element's tag and computed inline declarations, in document order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.media: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"
        # The HTML5 parser adds the <tbody> every browser adds; the @media block moves.
        if tag in ("tbody", "style"):
            return
        declarations: dict[str, str] = {}
        for part in (dict(attrs).get("style") or "").split(";"):
            name, colon, value = part.partition(":")
            if colon:
                declarations[name.strip().lower()] = _value(value)
        self.elements.append((tag, declarations))

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.media.append(" ".join(data.split()))


def _parsed(html: str) -> Styles:
    parser = Styles()
    parser.feed(html)
    return parser


def _raw_html(release_path: Path, tmp_path: Path) -> str:
    """The template's HTML before inlining, as draft_email hands it to the inliner."""
    seen: list[str] = []
    draft_email(
        load_release(release_path),
        load_settings(workspace=tmp_path),
        at=AT,
        inliner=lambda html: seen.append(html) or html,
    )
    return seen[0]


@pytest.mark.parametrize("which", ["seed", "example"])
def test_inliners_agree_on_every_element(
    which: str, seed_path: Path, example_path: Path, tmp_path: Path
) -> None:
    raw = _raw_html(seed_path if which == "seed" else example_path, tmp_path)
    slow = _parsed(INLINERS["premailer"](raw))
    fast = _parsed(INLINERS["css-inline"](raw))
    assert [tag for tag, _ in slow.elements] == [tag for tag, _ in fast.elements]
    differences = [
        (tag, ours, theirs)
        for (tag, ours), (_, theirs) in zip(slow.elements, fast.elements, strict=True)
        if ours != theirs
    ]
    assert differences == []
    # Both keep the @media rules (narrow screens, dark mode) in a <style> block.
    for inlined in (slow, fast):
        media = " ".join(inlined.media)
        assert "@media only screen and (max-width: 620px)" in media
        assert "prefers-color-scheme: dark" in media
    assert any(styles for _, styles in slow.elements)


def test_draft_email_uses_the_inliner_it_is_given(example_path: Path, tmp_path: Path) -> None:
    settings = load_settings(workspace=tmp_path)
    release = load_release(example_path)
    default = draft_email(release, settings, at=AT)
    fast = draft_email(release, settings, at=AT, inliner=INLINERS["css-inline"])
    assert default.html == email_render.inline_css(_raw_html(example_path, tmp_path))
    assert fast.html == INLINERS["css-inline"](_raw_html(example_path, tmp_path))
    assert fast.html != default.html
    assert fast.text == default.text and fast.subject == default.subject
