"""Only http, https and mailto links reach a journalist, however a dangerous one is spelled."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distribute.errors import ReleaseError
from distribute.links import allowed_link, refused_reference, web_address
from distribute.release import Release, parse_release

DANGEROUS = ("javascript", "vbscript", "data", "file", "livescript")


def _spell_char(draw: st.DrawFn, char: str) -> str:
    """One character of a URL as an HTML or URL decoder would give it back."""
    code = ord(char)
    forms = [
        char,
        char.swapcase(),
        f"&#{code};",
        f"&#x{code:x};",
        f"&#X{code:X};",
        f"&#{code:07d};",
        f"&#{code}",  # browsers accept a numeric reference without its semicolon
        f"%{code:02x}",
        f"%{code:02X}",
        f"%25{code:02x}",  # escaped twice
    ]
    if char == ":":
        forms += ["&colon;", "&#58;", "%3a"]
    spelled = draw(st.sampled_from(forms))
    # Browsers drop tab and newlines anywhere in a URL.
    noise = draw(st.sampled_from(["", "", "\t", "&Tab;", "&NewLine;", "%09", "&#10;"]))
    return noise + spelled


@st.composite
def dangerous_hrefs(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(DANGEROUS))
    spelled = "".join(_spell_char(draw, char) for char in f"{scheme}:")
    # Browsers strip C0 controls and spaces around a URL.
    lead = draw(st.sampled_from(["", " ", "\x01", "\x1f", "&#1;", "%20", "&#32;"]))
    body = draw(
        st.sampled_from(["alert(1)", "alert(document.domain)//", "text/html,<b>x</b>", "x"])
    )
    return lead + spelled + body


def browser_scheme(href: str) -> str | None:
    """The scheme a browser follows for an href attribute value (already entity-decoded)."""
    value = re.sub(r"[\t\n\r]", "", href).strip("".join(map(chr, range(0x21))))
    match = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*):", value)
    return match.group(1).lower() if match else None


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hrefs += [value or "" for name, value in attrs if name in {"href", "src"}]


def live_targets(fragment: str) -> list[str]:
    parser = _Hrefs()
    parser.feed(fragment)
    parser.close()
    return parser.hrefs


def assert_only_safe_links(fragment: str) -> None:
    for href in live_targets(fragment):
        # Read as a browser does, and again with every escape undone: both must be safe.
        for reading in (href, unquote(unquote(html.unescape(href)))):
            assert browser_scheme(reading) in {"http", "https", "mailto"}, (href, fragment)


def rendered_html(release: Release) -> str:
    parts = [str(release.lead.html) if release.lead else ""]
    for section in [*release.sections, *([release.boilerplate] if release.boilerplate else [])]:
        parts.append(str(section.heading_html or ""))
        parts += [str(block.html) for block in section.blocks]
    for address in (release.url, release.handle_url, release.website, release.image):
        if address is not None:
            parts.append(f'<a href="{html.escape(address)}">x</a>')
    return "\n".join(parts)


def _contexts(href: str) -> list[str]:
    attribute = html.escape(href, quote=True)
    destination = f"<{href}>" if re.search(r"[\s()]", href) else href
    return [
        f"A paragraph with [a link]({destination}) in it.",
        f"- an item with [a link]({destination})\n- another item",
        f'- an item with <a href="{attribute}">a raw link</a> inside',
        f'A paragraph with <a href="{attribute}">a raw link</a>.',
        f"<{href}>",
        f"A [reference link][r].\n\n[r]: {destination}",
        f"An image: ![alt]({destination})",
        f"[@Valmont]({destination})",
        f"**About Valmont [site]({destination})**\n\nValmont makes things.",
        f"| a | b |\n| --- | --- |\n| [cell]({destination}) | x |",
        f'1. first\n2. <a href="{attribute}">\n   second</a>',
    ]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dangerous_hrefs())
def test_no_spelling_of_a_dangerous_scheme_is_an_allowed_link(href: str) -> None:
    assert not allowed_link(href)
    assert not web_address(href)
    document = f'<p><a href="{html.escape(href, quote=True)}">x</a></p>'
    assert refused_reference(document) is not None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dangerous_hrefs(), st.integers(min_value=0, max_value=10))
def test_no_spelling_becomes_a_live_link_in_a_release(href: str, which: int) -> None:
    source = f"# A fictional headline\n\n{_contexts(href)[which]}\n\nThe end.\n"
    try:
        release = parse_release(source)
    except ReleaseError as exc:
        assert any(
            reason in exc.message
            for reason in ("only http, https and mailto links", "image", "a control character")
        )
        return
    assert_only_safe_links(rendered_html(release))


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=0, max_size=30), st.sampled_from(["http", "https", "HTTPS"]))
def test_ordinary_web_addresses_are_kept(path: str, scheme: str) -> None:
    href = f"{scheme}://www.example.org/{quote(path)}"
    assert allowed_link(href)
    assert web_address(href)
    assert refused_reference(f'<a href="{html.escape(href)}">x</a>') is None


@pytest.mark.parametrize(
    "href",
    [
        "mailto:press@example.org",
        "MAILTO:press@example.org?subject=Hello",
        "https://example.org/a%20b",
        "tel:+33123456789",
        "tel:+33(0)1-23-45-67-89",
        "tel:(+33)1.23.45.67.89",
        "tel:+33\u00a06\u00a012\u00a034\u00a056\u00a078",
        "%%unsubscribe_url%%",
        "https://example.org/?email=%%email%%",
        "mailto:%%email%%",
    ],
)
def test_allowed_hrefs_in_an_email(href: str) -> None:
    assert refused_reference(f'<p><a href="{href}">x</a></p>') is None


@pytest.mark.parametrize(
    ("document", "value"),
    [
        ('<a href="tel:javascript:alert(1)">x</a>', "tel:javascript:alert(1)"),
        ('<a href="%%website%%">x</a>', "%%website%%"),
        ('<a href="java%%email%%">x</a>', "java%%email%%"),
        ('<a href="/relative/page">x</a>', "/relative/page"),
        ('<a href="#top">x</a>', "#top"),
        ('<a href="ftp://example.org/">x</a>', "ftp://example.org/"),
        ('<img src="mailto:a@example.org">', "mailto:a@example.org"),
        ('<img src="data:image/png;base64,AAAA">', "data:image/png;base64,AAAA"),
        ('<td background="javascript:x">', "javascript:x"),
        ('<form action="javascript:x"><button formaction="https://example.org">', "javascript:x"),
        ('<p style="background:url(javascript:x)">', "javascript:x"),
        ("<style>p { background: url('vbscript:x') }</style>", "vbscript:x"),
        ('<meta http-equiv="refresh" content="0; url=javascript:x">', "javascript:x"),
        ('<img srcset="https://example.org/a.png 1x, javascript:x 2x">', "javascript:x"),
        ('<svg><a xlink:href="javascript:x">y</a></svg>', "javascript:x"),
        (
            '<svg><a><set attributeName="href" to="javascript:x"/><text>y</text></a></svg>',
            "javascript:x",
        ),
        (
            '<svg><a><animate attributeName="xlink:href" values="https://a.example/;'
            'javascript:x"/></a></svg>',
            "javascript:x",
        ),
        ('<iframe srcdoc="&lt;a href=&quot;javascript:x&quot;&gt;y&lt;/a&gt;">', "javascript:x"),
        ('<p style="background:u\\72l(javascript:x)">', "javascript:x"),
        ('<p style="background:url(\\6a avascript:x)">', "javascript:x"),
        ("<p style=\"background-image:image-set('javascript:x' 1x)\">", "javascript:x"),
    ],
)
def test_refused_references(document: str, value: str) -> None:
    refused = refused_reference(document)
    assert refused is not None
    assert refused.value == value


@pytest.mark.parametrize(
    "document",
    [
        "<script>location = 'https://example.org/'</script>",
        '<p onclick="alert(1)">x</p>',
        '<a href="https://example.org/" onmouseover="alert(1)">x</a>',
        '<svg onload="alert(1)"></svg>',
    ],
)
def test_scripts_are_refused_wherever_they_sit(document: str) -> None:
    """A script does what a javascript: link would, without a link: never sent."""
    assert refused_reference(f"<p>{document}</p>") is not None


def _css_spelling(draw: st.DrawFn, text: str) -> str:
    """``text`` as CSS could write it: each character itself or as a CSS escape."""
    out = []
    for char in text:
        form = draw(st.sampled_from(["plain", "hex", "hex-space", "char"]))
        if form == "hex":
            out.append(f"\\{ord(char):x}" + (" " if char in "0123456789abcdefABCDEF " else ""))
        elif form == "hex-space":
            out.append(f"\\{ord(char):06x}")
        elif form == "char" and char not in "0123456789abcdefABCDEF\n":
            out.append(f"\\{char}")
        else:
            out.append(char)
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(st.data(), st.sampled_from(DANGEROUS), st.sampled_from(["", "'", '"']))
def test_no_css_spelling_of_a_dangerous_url_is_accepted(
    data: st.DataObject, scheme: str, quote: str
) -> None:
    """CSS escapes are undone before a url() is judged, as a browser's CSS parser does."""
    function = _css_spelling(data.draw, "url")
    target = _css_spelling(data.draw, f"{scheme}:x")
    style = html.escape(f"background:{function}({quote}{target}{quote})", quote=True)
    assert refused_reference(f'<p style="{style}">y</p>') is not None
