"""Which links may reach a journalist: ``http``, ``https`` and ``mailto``, nothing else.

A release, a template or a list could otherwise put a ``javascript:`` or ``data:`` link in
front of every journalist. A link is judged as generously as any reader could decode it:
HTML character references and percent-escapes are decoded (repeatedly, as one decoder may
sit behind another), then the tab, newline and control characters a browser drops from a
URL are removed (WHATWG URL standard, "basic URL parser"), and only then is the scheme read.
What cannot be read as one of the allowed schemes is refused, relative links included: an
email has no page for them to be relative to.

The one exception is ``tel:`` followed by a phone number, which the bundled template makes
from the phone numbers of a release's contact block.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

LINK_SCHEMES = ("http", "https", "mailto")
WEB_SCHEMES = ("http", "https")

# Browsers remove ASCII tab and newline anywhere in a URL, and C0 controls and spaces at
# either end (https://url.spec.whatwg.org/#concept-basic-url-parser).
_IGNORED_INSIDE = re.compile(r"[\t\n\r]")
_IGNORED_AROUND = "".join(chr(code) for code in range(0x21))
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
# A phone number as the bundled template writes it into tel: digits, "+" and RFC 3966's
# visual separators; spaces of any kind (a no-break space from a PDF) are left out first.
_PHONE = re.compile(r"^[0-9+().\-/]*[0-9][0-9+().\-/]*$")
# A recipient field, filled in per journalist after rendering (render/email.py marks each
# draft's slots with a tag of its own, "%%tag.name%%", and passes its own pattern).
_SLOT = re.compile(r"%%(?:[A-Za-z0-9]+\.)?([A-Za-z_][A-Za-z0-9_]*)%%")
# Built by distribute from [unsubscribe] in the settings: always https or mailto.
_TRUSTED_SLOTS = {"unsubscribe_url"}
_DECODE_ROUNDS = 8


def decoded(href: str) -> str | None:
    """``href`` as a browser reading it most generously would; None if it never settles."""
    value = href
    for _ in range(_DECODE_ROUNDS):
        # The control characters are removed inside the loop too, so an escape split by a
        # tab ("%6\t1") is decoded as a browser would see it once the tab is gone.
        step = unquote(html.unescape(_IGNORED_INSIDE.sub("", value)))
        if step == value:
            return value.strip(_IGNORED_AROUND)
        value = step
    return None


def scheme(href: str) -> str | None:
    """The lowercased scheme ``href`` is read with, or None (relative, or undecodable)."""
    plain = decoded(href)
    match = _SCHEME.match(plain) if plain is not None else None
    return match.group(1).lower() if match else None


def allowed_link(href: str) -> bool:
    """True when ``href`` may be a live link in what distribute sends."""
    return scheme(href) in LINK_SCHEMES


def phone_link(href: str) -> bool:
    """A ``tel:`` link to a phone number, as the bundled template makes from contact lines."""
    plain = decoded(href)
    if plain is None or scheme(plain) != "tel":
        return False
    return bool(_PHONE.match(re.sub(r"\s", "", plain.split(":", 1)[1])))


def web_address(value: str) -> bool:
    """A full ``http(s)://host/...`` address: a release's page, image or web site."""
    if scheme(value) not in WEB_SCHEMES or re.search(r"[\s\x00-\x1f\x7f]", value):
        return False
    try:
        return bool(urlsplit(value).hostname)
    except ValueError:  # a malformed IPv6 host or port
        return False


@dataclass(frozen=True)
class Reference:
    """A URL an HTML document points at: where it sits and what it says."""

    tag: str
    attribute: str
    value: str


# Every attribute HTML (and SVG inside it) reads as a URL.
_URL_ATTRIBUTES = {
    "href",
    "src",
    "action",
    "formaction",
    "background",
    "cite",
    "longdesc",
    "poster",
    "data",
    "codebase",
    "classid",
    "archive",
    "usemap",
    "profile",
    "dynsrc",
    "lowsrc",
    "manifest",
    "ping",
    "srcset",
    "xlink:href",
}
_CSS_URL = re.compile(r"url\(\s*(?P<quote>['\"]?)(?P<url>.*?)(?P=quote)\s*\)", re.IGNORECASE)
_CSS_IMPORT = re.compile(r"@import\s+(['\"])(?P<url>.*?)\1", re.IGNORECASE)
# image-set() takes its addresses as plain strings, without url().
_CSS_IMAGE_SET = re.compile(r"image-set\((?P<args>[^)]*)\)", re.IGNORECASE)
_CSS_STRING = re.compile(r"(['\"])(?P<url>.*?)\1")
# A CSS escape: up to six hex digits and one optional space, or any other character
# (https://www.w3.org/TR/css-syntax-3/#consume-escaped-code-point): "u\72l(" is "url(".
_CSS_ESCAPE = re.compile(r"\\(?:([0-9a-fA-F]{1,6})[ \t\n\r\f]?|(.))", re.DOTALL)
# SVG animation sets an attribute to these values: a link when it animates href.
_ANIMATION = {"set", "animate", "animatetransform", "animatemotion", "animatecolor"}
_ANIMATED_VALUES = ("to", "from", "by", "values")
# Active content is not a link but does what a javascript: link would: never sent.
_SCRIPT = Reference("script", "", "")


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[Reference] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"
        if tag == "script":
            self.found.append(_SCRIPT)
        animated = tag in _ANIMATION and any(
            name == "attributename" and (value or "").strip().lower() in {"href", "xlink:href"}
            for name, value in attrs
        )
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(Reference(tag, name, value or ""))
            if value is None:
                continue
            if name in _URL_ATTRIBUTES:
                self.found.append(Reference(tag, name, value))
            elif animated and name in _ANIMATED_VALUES:
                for part in value.split(";"):
                    self.found.append(Reference("a", "href", part.strip()))
            elif name == "srcdoc":
                # A document of its own, shown in the frame: judged the same way.
                self.found.extend(references(value))
            elif name == "style":
                self._css(tag, "style", value)
            elif tag == "meta" and name == "content" and re.search(r"url\s*=", value, re.I):
                # <meta http-equiv="refresh" content="0; url=...">
                target = re.split(r"url\s*=\s*", value, maxsplit=1, flags=re.I)[1]
                self.found.append(Reference(tag, "content", target.strip("'\" ")))

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self._css("style", "", data)

    def _css(self, tag: str, attribute: str, css: str) -> None:
        css = _CSS_ESCAPE.sub(_css_unescape, css)
        for pattern in (_CSS_URL, _CSS_IMPORT):
            for match in pattern.finditer(css):
                self.found.append(Reference(tag, attribute or "url()", match.group("url")))
        for images in _CSS_IMAGE_SET.finditer(css):
            for match in _CSS_STRING.finditer(images.group("args")):
                self.found.append(Reference(tag, attribute or "url()", match.group("url")))


def _css_unescape(match: re.Match[str]) -> str:
    if match.group(1) is None:
        return match.group(2)
    code = int(match.group(1), 16)
    return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"


def references(document: str) -> list[Reference]:
    """Every URL an HTML document points at, character references decoded."""
    parser = _References()
    parser.feed(document)
    parser.close()
    return parser.found


def refused_reference(document: str, slots: re.Pattern[str] = _SLOT) -> Reference | None:
    """The first URL in ``document`` that may not be sent, or None when all may.

    Links (``href``) may be http, https or mailto (or tel: to a phone number); everything
    else a mail client would load or follow (images, backgrounds, CSS) must be http(s).
    A recipient field (a match of ``slots``, its name the first group) inside a URL is
    filled in per journalist, so the scheme must be written before it:
    ``https://example.org/?u=%%email%%`` is fine, ``%%website%%`` is not (only the
    unsubscribe address, which distribute builds itself, may stand alone).
    """
    for reference in references(document):
        if reference == _SCRIPT or reference.attribute.startswith("on"):
            return reference  # never a link: nothing makes it acceptable
        value = reference.value
        if reference.attribute == "srcset":
            candidates = [part.strip().split(" ")[0] for part in value.split(",") if part.strip()]
        else:
            candidates = [value]
        for candidate in candidates:
            if not _acceptable(reference, candidate, slots):
                return Reference(reference.tag, reference.attribute, candidate)
    return None


def _acceptable(reference: Reference, value: str, slots: re.Pattern[str]) -> bool:
    plain = decoded(value)
    if plain is None:
        return False
    slot = slots.search(plain)
    if slot is not None:
        if slot.start() == 0 and slot.group(1) in _TRUSTED_SLOTS:
            return True
        plain = plain[: slot.start()]
        # The scheme must be complete before the slot: "https:%%x%%" or "mailto:%%email%%".
        if not _SCHEME.match(plain):
            return False
    is_link = reference.attribute == "href" and reference.tag in {"a", "area"}
    if is_link:
        return allowed_link(plain) or (slot is None and phone_link(plain))
    return scheme(plain) in WEB_SCHEMES
