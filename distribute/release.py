"""A press release in Markdown (with optional YAML front matter) turned into a :class:`Release`.

Releases often arrive converted from a PDF, so the structure is inferred rather than
demanded: the first heading is the headline (bold markers dropped), a short paragraph
before the bold lead is the subtitle, headings (or short bold paragraphs) open sections,
"About ..." opens the boilerplate, "Press contact" (or "Media contact: ...", "Contacts
presse", "Media enquiries") opens the contact block, and a lone
``[@Name](https://twitter.com/Name)`` link is the account handle. Paragraphs that a page
break split in two (``*... It is also a*`` then ``*commitment ...*``) are joined again.
"""

from __future__ import annotations

import codecs
import functools
import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from email_validator import EmailNotValidError, validate_email
from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

from distribute import links as link_policy
from distribute.errors import ReleaseError
from distribute.textfile import read_text

FRONT_MATTER_KEYS = (
    "title",
    "subtitle",
    "date",
    "dateline",
    "embargo",
    "url",
    "language",
    "image",
    "image_alt",
    "hashtags",
    "summary",
)

# Inline HTML a release may carry (PDF converters emit <sup> for ordinals); anything else
# is shown as text, so a release can never inject markup into journalists' mail clients.
_ALLOWED_TAG = re.compile(r"^</?(sup|sub|br)\s*/?>$", re.IGNORECASE)
# Comments are notes for the press office ("ne pas diffuser"): never shown, not even escaped.
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_TERMINAL = tuple('.!?…:;"”»)')
_WHOLLY_BOLD = re.compile(r"^\*\*(?P<inner>.+)\*\*\s*:?$", re.DOTALL)
_ABOUT = re.compile(r"^(about|à propos( de| d['’])?|a propos( de)?)\b", re.IGNORECASE)
_CONTACT_WORDS = (
    r"(press|media)\s+(contacts?|enquiries|inquiries)|contacts?\s+(presse|médias?|media)"
)
_CONTACT = re.compile(rf"^({_CONTACT_WORDS}|contact)\s*:?\s*$", re.IGNORECASE)
# "Media contact: Jane Smith, +44 ..." on a line of its own or opening a paragraph. A colon is
# needed here (a sentence may start with "Press contacts"), and a bare "Contact:" is not enough.
_CONTACT_LINE = re.compile(
    rf"^[*_]*\s*(?P<label>{_CONTACT_WORDS})\s*[*_]*\s*:\s*[*_]*\s*(?P<rest>.*)$",
    re.IGNORECASE | re.DOTALL,
)
_PHONE = re.compile(r"^\+?[\d(][\d\s().\-/+]{6,}$")
# What separates the things a contact line holds: "Jane Smith, Head of Press – +44 ... – jane@...".
_SEPARATOR = re.compile(r"\s+[–—|/-]\s+|,\s+|;\s*")
_LABEL = re.compile(
    r"^(?P<label>t[ée]l[ée]?(phone)?|phone|mob(ile)?|portable|cell|gsm|fax"
    r"|e-?mail|courriel|mail)\b\.?\s*:?\s*",
    re.IGNORECASE,
)
_LIST_MARKER = re.compile(r"^\s*([-*+]|\d+[.)])\s+")
# Not preceded by "@": "@name@mastodon.social" is a fediverse handle, not an address.
_EMAIL = re.compile(r"(?<![@\w.+'-])[\w.+'-]+@[\w-]+(\.[\w-]+)+")
# What a contact line may hold besides names: handles, addresses, web and profile addresses.
_NOT_A_NAME = re.compile(
    r"^(@[\w.-]+(@[\w.-]+)?|\S+@\S+|(https?://|www\.)\S+|[\w-]+(\.[\w-]+)+/\S*)$",
    re.IGNORECASE,
)
_HANDLE_HOSTS = {"twitter.com", "www.twitter.com", "x.com", "www.x.com", "mobile.twitter.com"}
_QUOTE_OPEN = re.compile(r"(^|\s|:)\*\s*[\"“«]")


_PLAIN_TAGS = {
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
}
# Front matter is "key: value" lines and a list of hashtags; deeper is a mistake or an attack.
_MAX_NESTING = 10
# Control characters no release means to hold: a NUL ends the text where libxml2 reads it
# (premailer would then drop the rest of the email) and an escape sequence redraws the
# terminal of whoever renders the release. Tab, line breaks and the form feed of a PDF's
# page break are whitespace and stay, in the body; a front matter value may hold tab and
# newline only (YAML writes the others as escapes: "\0", "\e").
_CONTROL_IN_BODY = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_CONTROL_IN_VALUE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


# PyYAML is imported by the first release with front matter: most have none.
@functools.cache
def _plain_loader() -> Any:
    import yaml

    class _PlainLoader(yaml.SafeLoader):
        """YAML without implicit timestamps, so an embargo keeps the offset it was written
        with, without YAML 1.1 booleans, so ``title: yes`` or ``subtitle: no`` stay words,
        and without implicit numbers, so ``title: 0x1F`` stays as written (and a 5,000-digit
        "number" is not handed to ``int()``, which refuses it)."""

    _PlainLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in _PLAIN_TAGS]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return _PlainLoader


@dataclass(frozen=True)
class Link:
    text: str
    href: str


@dataclass(frozen=True)
class Block:
    """A paragraph, quote or list: the same content as safe HTML and as plain text."""

    kind: str  # "paragraph" | "lead" | "quote" | "list" | "table"
    html: Markup
    text: str
    links: tuple[Link, ...] = ()
    attribution: str | None = None

    def __str__(self) -> str:
        # ``{{ release.lead }}`` in a post or a text part reads as the lead's words ...
        return self.text

    def __html__(self) -> str:
        # ... and in an HTML template as its markup, not as the dataclass's repr.
        return str(self.html)

    @property
    def urls(self) -> tuple[str, ...]:
        """Web addresses a text reader needs in full (mailto links already show the address)."""
        seen: list[str] = []
        for link in self.links:
            web = link_policy.scheme(link.href) in link_policy.WEB_SCHEMES
            if web and link.href not in seen:
                seen.append(link.href)
        return tuple(seen)


@dataclass(frozen=True)
class Section:
    heading: str | None
    blocks: tuple[Block, ...]
    heading_html: Markup | None = None


@dataclass(frozen=True)
class Contact:
    name: str | None = None
    organisation: str | None = None
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    role: str | None = None


@dataclass(frozen=True)
class Release:
    title: str
    source: Path | None = None
    subtitle: str | None = None
    date: date | None = None
    dateline: str | None = None
    embargo: datetime | None = None
    url: str | None = None
    language: str = "en"
    image: str | None = None
    image_alt: str | None = None
    hashtags: tuple[str, ...] = ()
    summary: str | None = None
    lead: Block | None = None
    sections: tuple[Section, ...] = ()
    boilerplate: Section | None = None
    contact_heading: str | None = None  # as the release words it; else the template's own
    contacts: tuple[Contact, ...] = ()
    handle: str | None = None
    handle_url: str | None = None
    website: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # What the reading guessed and a press officer should know (a heading dropped, say).
    warnings: tuple[str, ...] = ()

    @property
    def preheader(self) -> str:
        """The hidden preview line: the summary, else the lead, else the first paragraph."""
        for candidate in (self.summary, self.lead.text if self.lead else None):
            if candidate:
                return candidate
        for section in self.sections:
            for block in section.blocks:
                return block.text
        return self.subtitle or self.title

    def embargoed_at(self, instant: datetime) -> bool:
        """True when ``instant`` (aware) falls before the embargo lifts."""
        return self.embargo is not None and instant < self.embargo

    @property
    def body_blocks(self) -> tuple[Block, ...]:
        return tuple(block for section in self.sections for block in section.blocks)


# --------------------------------------------------------------------------- reading

# A press release is a few pages; anything near this size is a wrong file or a conversion
# gone astray, and would give an email no mail client shows whole (Gmail clips at 102 KB).
MAX_RELEASE_BYTES = 2 * 1024 * 1024


def _too_large(size: int, source: Path | None) -> ReleaseError:
    return ReleaseError(
        f"the release is {size:,} bytes; a release may be at most "
        f"{MAX_RELEASE_BYTES // 1024 // 1024} MB ({MAX_RELEASE_BYTES:,} bytes) of Markdown",
        path=source,
    )


def read_release(path: Path) -> str:
    """A release file's text, refused by its size before it is read (a campaign may name a
    video or a disk image by mistake); a byte-order mark is not counted."""
    try:
        size = path.stat().st_size
    except OSError:
        size = 0  # read_text says what is wrong with it
    if size > MAX_RELEASE_BYTES + len(codecs.BOM_UTF8):
        raise _too_large(size, path)
    return read_text(path, ReleaseError, "release")


def load_release(path: Path) -> Release:
    """Read and parse a release file; every failure is a :class:`ReleaseError` naming it."""
    return parse_release(read_release(path), source=path)


def parse_release(text: str, *, source: Path | None = None) -> Release:
    """Parse release Markdown; ``source`` only serves error messages."""
    # A character is one to four bytes: encode (to count bytes) only when that could tell.
    size = len(text)
    if size <= MAX_RELEASE_BYTES < 4 * size:
        size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_RELEASE_BYTES:
        raise _too_large(size, source)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if control := _CONTROL_IN_BODY.search(text):
        raise ReleaseError(
            f"the release holds a control character ({_codepoint(control.group())}); remove it",
            path=source,
            line=text.count("\n", 0, control.start()) + 1,
        )
    meta, body, body_line = _split_front_matter(text, source)
    blocks = _repair_page_breaks(_blocks(body, body_line))
    release = _infer(blocks, meta, source)
    return release


def _codepoint(char: str) -> str:
    return f"U+{ord(char):04X}"


def _split_front_matter(text: str, source: Path | None) -> tuple[dict[str, Any], str, int]:
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return {}, text, 1
    for index in range(1, len(lines)):
        if lines[index].strip() in {"---", "..."}:
            break
    else:
        raise ReleaseError("front matter opened with '---' is never closed", path=source, line=1)
    yaml_text = "\n".join(lines[1:index])
    import yaml

    try:
        data = _load_yaml(yaml_text, source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ReleaseError(f"bad front matter: {problem}", path=source, line=line) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ReleaseError("front matter must be 'key: value' lines", path=source, line=2)
    meta = _check_front_matter(data, lines[1:index], source)
    return meta, "\n".join(lines[index + 1 :]), index + 2


def _load_yaml(yaml_text: str, source: Path | None) -> Any:
    """The front matter's data, after its events are read for what only an attack needs.

    An alias bomb ("billion laughs": anchors of lists of aliases) expands to gigabytes as
    soon as a value is turned into text, and PyYAML's composer recurses once per level of
    nesting, so 3,000 "[" overflow Python's stack. The parser itself is iterative: its events
    show both before anything is built.
    """
    import yaml

    loader = _plain_loader()
    depth = 0
    for event in yaml.parse(yaml_text, Loader=loader):
        line = event.start_mark.line + 2 if event.start_mark is not None else 2
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise ReleaseError(
                "front matter cannot use YAML anchors or aliases (&name, *name)",
                path=source,
                line=line,
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > _MAX_NESTING:
                raise ReleaseError(
                    f"front matter is nested more than {_MAX_NESTING} levels deep",
                    path=source,
                    line=line,
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return yaml.load(yaml_text, Loader=loader)  # noqa: S506 (a SafeLoader subclass)


def _key_line(key: str, yaml_lines: list[str]) -> int:
    for number, line in enumerate(yaml_lines, start=2):
        if re.match(rf"^\s*{re.escape(key)}\s*:", line):
            return number
    return 2


def _check_front_matter(
    data: dict[Any, Any], yaml_lines: list[str], source: Path | None
) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for key, value in data.items():
        line = _key_line(str(key), yaml_lines)

        def fail(message: str, line: int = line) -> ReleaseError:
            return ReleaseError(message, path=source, line=line)

        if key not in FRONT_MATTER_KEYS:
            raise fail(f"unknown front matter key {key!r} (known: {', '.join(FRONT_MATTER_KEYS)})")
        if value is not None and key != "hashtags" and not isinstance(value, str | int | float):
            raise fail(f"{key} must be text")
        if key == "title" and (value is None or not str(value).strip()):
            raise fail("title is empty")
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and (control := _CONTROL_IN_VALUE.search(text)):
                raise fail(f"{key} holds a control character ({_codepoint(control.group())})")
        if value is None:
            continue
        if key == "hashtags":
            if isinstance(value, str):
                value = value.replace(",", " ").split()
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise fail("hashtags must be a list of words")
            meta[key] = tuple(tag if tag.startswith("#") else f"#{tag}" for tag in value)
        elif key == "date":
            try:
                meta[key] = date.fromisoformat(str(value))
            except ValueError:
                raise fail(f"date {value!r} is not a date like 2027-03-10") from None
        elif key == "embargo":
            meta[key] = _parse_embargo(str(value), fail)
        elif not isinstance(value, str | int | float):
            raise fail(f"{key} must be text")
        else:
            value = str(value).strip()
            if key == "url" and not link_policy.web_address(value):
                raise fail(f"{key} must be a full http(s) address, not {value!r}")
            # An image is an http(s) address or a file beside the release (posts upload it).
            if key == "image" and urlsplit(value).scheme not in {"", "http", "https"}:
                raise fail(f"image must be an https address or a file path, not {value!r}")
            if key == "image" and urlsplit(value).scheme and not link_policy.web_address(value):
                raise fail(f"image must be a full http(s) address, not {value!r}")
            if key == "language" and not re.fullmatch(r"[a-z]{2}(-[A-Za-z]{2})?", value):
                raise fail(f"language must be a code like 'en' or 'fr', not {value!r}")
            meta[key] = value
    return meta


def _parse_embargo(value: str, fail: Any) -> datetime:
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise fail(
            f"embargo {value!r} is not an ISO 8601 time like 2027-03-10T08:00+01:00"
        ) from None
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise fail(f"embargo {value!r} needs a UTC offset, like 2027-03-10T08:00+01:00")
    return instant


# --------------------------------------------------------------------------- blocks


@dataclass
class _Raw:
    kind: str  # "heading" | "paragraph" | "list" | "quote" | "other"
    source: str  # Markdown source of the inline content (paragraphs, headings) or block
    line: int
    level: int = 0


class _Markdown(MarkdownIt):
    def validateLink(self, url: str) -> bool:
        # markdown-it leaves a link it refuses as literal "[text](javascript:...)" and allows
        # ftp:, tel: or relative ones; every link is judged by distribute.links instead, and
        # one it refuses is an error naming its line (see _check_links).
        return True


_md = _Markdown("commonmark", {"html": True}).enable("table")


def _blocks(body: str, first_line: int) -> list[_Raw]:
    tokens = _md.parse(body)
    lines = body.split("\n")
    out: list[_Raw] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        start = (token.map[0] if token.map else 0) + first_line
        if token.type == "heading_open":
            out.append(_Raw("heading", tokens[index + 1].content, start, int(token.tag[1])))
            index += 3
        elif token.type == "paragraph_open":
            out.append(_Raw("paragraph", tokens[index + 1].content, start))
            index += 3
        elif token.nesting == 1 and token.level == 0:
            close = _closing(tokens, index)
            kind = {
                "bullet_list_open": "list",
                "ordered_list_open": "list",
                "table_open": "table",
            }.get(token.type)
            kind = kind or ("quote" if token.type == "blockquote_open" else "other")
            assert token.map is not None
            out.append(_Raw(kind, "\n".join(lines[token.map[0] : token.map[1]]), start))
            index = close + 1
        elif token.type == "html_block":
            rest = _COMMENT.sub("", token.content).strip()
            if rest:
                out.append(_Raw("other", rest, start))
            index += 1
        else:
            if token.map and token.type not in {"hr"}:
                out.append(_Raw("other", "\n".join(lines[token.map[0] : token.map[1]]), start))
            index += 1
    return out


def _closing(tokens: list[Token], index: int) -> int:
    depth = 0
    for position in range(index, len(tokens)):
        depth += tokens[position].nesting
        if depth == 0:
            return position
    return len(tokens) - 1


def _ends_sentence(source: str) -> bool:
    stripped = source.rstrip().rstrip("*_").rstrip()
    return stripped.endswith(_TERMINAL) or not stripped


def _starts_lower(source: str) -> bool:
    stripped = source.lstrip().lstrip("*_").lstrip()
    return bool(stripped) and stripped[0].islower()


def _repair_page_breaks(blocks: list[_Raw]) -> list[_Raw]:
    """Join paragraphs that a page break split mid-sentence (the next one starts lowercase).

    Linear in the length of the release: a paragraph's pieces are collected and joined
    once, and each test reads one piece, so a paragraph split ten thousand times is not
    copied ten thousand times.
    """
    out: list[_Raw] = []
    pieces: list[list[str]] = []  # out[i] is " ".join(pieces[i])
    for block in blocks:
        previous = pieces[-1] if out and out[-1].kind == block.kind == "paragraph" else None
        if previous is not None and _runs_on(previous, block.source):
            left, right = previous[-1].rstrip(), block.source.lstrip()
            # An italic run closed at the break and reopened after it is one run: drop both
            # markers so the quote renders as a single <em>.
            italic_left = left.endswith("*") and not left.endswith("**")
            if italic_left and right.startswith("*") and not right.startswith("**"):
                left, right = left[:-1].rstrip(), right[1:].lstrip()
            previous[-1] = left
            previous.append(right)
            continue
        out.append(_Raw(block.kind, block.source, block.line, block.level))
        pieces.append([block.source])
    for raw, parts in zip(out, pieces, strict=True):
        if len(parts) > 1:
            raw.source = " ".join(parts)
    return out


_BOLD_END = re.compile(r"\*\*\s*:?$")


def _runs_on(pieces: list[str], following: str) -> bool:
    """Whether the paragraph made of ``pieces`` continues in the paragraph ``following``."""
    # A piece after the first holds a lowercase letter (that is why it was joined), so the
    # end of the joined paragraph is the end of its last piece, and it is wholly bold when
    # its first piece opens the bold and its last closes it.
    if _ends_sentence(pieces[-1]) or not _starts_lower(following):
        return False
    if len(pieces) == 1:
        return not _WHOLLY_BOLD.match(pieces[0])
    return not (pieces[0].startswith("**") and _BOLD_END.search(pieces[-1]))


# --------------------------------------------------------------------------- inline


@functools.lru_cache(maxsize=256)
def _parse_inline(source: str) -> list[Token]:
    """Inline tokens of ``source``, read (never changed) by every caller.

    A block is read as a heading, a handle, a kicker, for its links and for its text: one
    parse serves them all, which matters for a long paragraph full of brackets, where
    markdown-it's link parsing is slow.
    """
    return _md.parseInline(source)


def _inline(source: str) -> tuple[Markup, str, tuple[Link, ...]]:
    """Inline Markdown to (safe HTML, plain text, links)."""
    tokens = _parse_inline(source.strip())
    return _inline_children(tokens[0].children or [] if tokens else [])


def _inline_children(children: list[Token]) -> tuple[Markup, str, tuple[Link, ...]]:
    html_parts: list[str] = []
    text_parts: list[str] = []
    links: list[Link] = []
    # (href, where its text starts, whether it is rendered as a link)
    link_stack: list[tuple[str, int, bool]] = []
    script: tuple[str, int] | None = None  # an open <sup> or <sub>, where its text starts
    for child in children:
        if child.type == "html_inline" and child.content.startswith("<!--"):
            continue
        if child.type == "html_inline" and not _ALLOWED_TAG.match(child.content.strip()):
            html_parts.append(escape(child.content))
            continue
        if child.type == "html_inline":
            tag = child.content.strip().lower()
            if tag in {"<sup>", "<sub>"}:
                script = (tag[1:4], len(text_parts))
            elif script is not None and tag == f"</{script[0]}>":
                kind, start = script
                text_parts[start:] = [_script_text("".join(text_parts[start:]), kind)]
                script = None
        if child.type == "link_open":
            href = str(child.attrs.get("href", ""))
            live = link_policy.allowed_link(href)
            link_stack.append((href, len(text_parts), live))
            if not live:
                continue  # _check_links reports it; if it is ever reached, its text stays
        elif child.type == "link_close" and link_stack:
            href, start, live = link_stack.pop()
            if not live:
                continue
            links.append(Link("".join(text_parts[start:]).strip(), href))
        elif child.type == "image" and not _web_image(child):
            text_parts.append(child.content)
            html_parts.append(escape(child.content))
            continue
        elif child.type in {"text", "code_inline"}:
            text_parts.append(child.content)
        elif child.type == "softbreak":
            text_parts.append(" ")
        elif child.type == "hardbreak":
            text_parts.append("\n")
        elif child.type == "image":
            text_parts.append(child.content)
        html_parts.append(_md.renderer.render([child], _md.options, {}))
    html = "".join(html_parts).replace("\n", " ").strip()
    text = re.sub(r"[ \t]+", " ", "".join(text_parts)).strip()
    return Markup(html), text, tuple(links)  # noqa: S704 (built from escaped tokens)


# Unicode has superscript and subscript digits and signs; letters only as phonetic modifier
# letters, which many fonts lack, so "21<sup>st</sup>" stays "21st" in the text part.
_SCRIPTS = {
    "sup": str.maketrans("0123456789+-−=()", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁻⁼⁽⁾"),
    "sub": str.maketrans("0123456789+-−=()", "₀₁₂₃₄₅₆₇₈₉₊₋₋₌₍₎"),
}


def _script_text(text: str, kind: str) -> str:
    """``m<sup>2</sup>`` reads m² in plain text: the Unicode forms when every character has one."""
    converted = text.translate(_SCRIPTS[kind])
    return converted if text and all(a != b for a, b in zip(text, converted, strict=True)) else text


def _strip_bold(source: str) -> str:
    match = _WHOLLY_BOLD.match(source.strip())
    inner = match.group("inner") if match else source
    return inner.strip()


def _block(raw: _Raw) -> Block:
    if raw.kind == "list":
        html = _render_list(raw.source)
        lines = _items(raw)
        items = [_inline(_LIST_MARKER.sub("", line)) for line in lines]
        text = "\n".join(
            f"{marker} {item[1]}" for marker, item in zip(_markers(lines), items, strict=True)
        )
        links = tuple(link for item in items for link in item[2])
        return Block("list", html, text, links)
    if raw.kind == "table":
        return _table(raw)
    if raw.kind == "quote":
        inner = "\n".join(re.sub(r"^\s*>\s?", "", line) for line in raw.source.split("\n"))
        html, text, links = _inline(inner)
        return Block("quote", html, text, links)
    html, text, links = _inline(raw.source)
    if _QUOTE_OPEN.search(raw.source) or re.match(r"^\*[\"“«]", raw.source.strip()):
        attribution = raw.source.split("*", 1)[0].strip().rstrip(":").strip() or None
        if attribution:
            attribution = _inline(attribution)[1]
        return Block("quote", html, text, links, attribution)
    return Block("paragraph", html, text, links)


_ALIGN = {side: f' align="{side}"' for side in ("left", "center", "right")}


def _table(raw: _Raw) -> Block:
    """A pipe table: plain attributes only, as mail clients ignore most CSS on tables."""
    rows: list[list[tuple[str, str, Markup, str]]] = []  # (tag, align, html, text) per cell
    links: list[Link] = []
    tag, align = "td", ""
    for token in _md.parse(raw.source):
        if token.type == "tr_open":
            rows.append([])
        elif token.type in {"th_open", "td_open"}:
            tag = token.tag
            style = str(token.attrs.get("style", ""))
            align = style.removeprefix("text-align:") if style.startswith("text-align:") else ""
        elif token.type == "inline" and rows:
            html, text, cell_links = _inline(token.content)
            rows[-1].append((tag, align, html, text))
            links += cell_links
    parts = ['<table role="table" cellpadding="6" border="1">']
    for row in rows:
        cells = "".join(
            f"<{tag}{_ALIGN.get(align, '')}>{html}</{tag}>" for tag, align, html, _ in row
        )
        parts.append(f"<tr>{cells}</tr>")
    parts.append("</table>")
    text = "\n".join(" | ".join(cell[3] for cell in row) for row in rows)
    return Block("table", Markup("".join(parts)), text, tuple(links))  # noqa: S704


def _markers(lines: list[str]) -> list[str]:
    """Each item's marker in the text part: "-" for a bullet, its number in a numbered list
    (counted as Markdown counts, from the first item's number), indented by nesting."""
    markers: list[str] = []
    levels: list[tuple[int, int | None]] = []  # (indent, next number) of each open list
    for line in lines:
        indent = len(line) - len(line.lstrip())
        while levels and levels[-1][0] > indent:
            levels.pop()
        match = _LIST_MARKER.match(line)
        number = re.match(r"\d+", match.group(1)) if match else None
        if not levels or levels[-1][0] < indent:
            levels.append((indent, int(number.group(0)) if number else None))
        current = levels[-1][1]
        if current is None:
            marker = "-"
        else:
            marker = f"{current}."
            levels[-1] = (indent, current + 1)
        markers.append("   " * (len(levels) - 1) + marker)
    return markers


def _items(raw: _Raw) -> list[str]:
    items: list[str] = []
    for line in raw.source.split("\n"):
        if re.match(r"^\s*([-*+]|\d+[.)])\s+", line):
            items.append(line)
        elif items and line.strip():
            items[-1] += " " + line.strip()
    return items


def _render_list(source: str) -> Markup:
    """A list to HTML, each item's text under the same rules as a paragraph's (raw HTML
    shown as text, only allowed links live)."""
    tokens = _md.parse(source)
    for token in tokens:
        if token.type == "inline":
            html = _inline_children(token.children or [])[0]
            token.children = [Token("html_inline", "", 0, content=str(html))]
        elif token.type == "html_block":
            # Comments are notes for the press office; the rest of a raw HTML block is text.
            token.content = escape(_COMMENT.sub("", token.content).strip())
    rendered = _md.renderer.render(tokens, _md.options, {})
    return Markup(rendered.strip())  # noqa: S704 (text escaped by the renderer and _inline)


def _web_image(token: Token) -> bool:
    return link_policy.scheme(str(token.attrs.get("src", ""))) in link_policy.WEB_SCHEMES


def _check_links(raw: _Raw, source: Path | None) -> None:
    """A link or image the email cannot carry is an error naming its line, not a surprise
    in journalists' mail: only http, https and mailto links, and http(s) images."""
    # Read as _block renders it: lists, quotes and tables as blocks, the rest inline.
    inline = raw.kind in {"heading", "paragraph", "other"}
    for token in _parse_inline(raw.source.strip()) if inline else _md.parse(raw.source):
        for child in token.children or []:
            if child.type == "link_open":
                href = str(child.attrs.get("href", ""))
                if link_policy.allowed_link(href):
                    continue
                problem = (
                    f"link to {href!r}: only http, https and mailto links can be sent; "
                    "write the full address (https://...)"
                )
            elif child.type == "image" and not _web_image(child):
                src = str(child.attrs.get("src", ""))
                problem = f"image {src!r}: only images at a full http(s) address can be sent"
            else:
                continue
            offset = token.map[0] if token.map and not inline else 0
            raise ReleaseError(problem, path=source, line=raw.line + offset)


# --------------------------------------------------------------------------- structure


def _is_handle(raw: _Raw) -> Link | None:
    if raw.kind != "paragraph":
        return None
    _, text, links = _inline(raw.source)
    if len(links) != 1 or text != links[0].text or not text.startswith("@"):
        return None
    if not link_policy.web_address(links[0].href):
        return None
    host = urlsplit(links[0].href).hostname or ""
    return links[0] if host in _HANDLE_HOSTS else None


def _heading_like(raw: _Raw) -> str | None:
    """The heading text when a block reads as a heading (a heading, or a short bold line)."""
    if raw.kind == "heading":
        return _inline(_strip_bold(raw.source))[1]
    if raw.kind == "paragraph" and _WHOLLY_BOLD.match(raw.source.strip()):
        text = _inline(_strip_bold(raw.source))[1]
        if len(text) <= 120 and not text.rstrip().endswith("."):
            return text
    return None


# How far into a release its headline may sit, below a kicker, a dateline or a logo line.
_LEAD_IN = 4
_KICKER_WORDS = (
    r"(press|news|media)\s+release|communiqu[ée]\s+de\s+presse|for\s+immediate\s+release"
    r"|pour\s+(diffusion|publication)\s+imm[ée]diate"
)
_KICKER = re.compile(
    rf"^({_KICKER_WORDS})([\s\-–—|:·/.,]+({_KICKER_WORDS}))*[\s.:]*$", re.IGNORECASE
)


def _is_kicker(raw: _Raw) -> bool:
    """A "Press release" line above the headline: the template prints its own."""
    if raw.kind not in {"heading", "paragraph"}:
        return False
    return bool(_KICKER.match(_inline(_strip_bold(raw.source))[1]))


def _drop_kickers(blocks: list[_Raw]) -> list[_Raw]:
    head = len(blocks)
    for index, raw in enumerate(blocks[:_LEAD_IN]):
        if raw.kind == "heading" and not _is_kicker(raw):
            head = index
            break
    limit = min(head, _LEAD_IN)
    return [raw for index, raw in enumerate(blocks) if index >= limit or not _is_kicker(raw)]


def _headline_index(blocks: list[_Raw]) -> int | None:
    """Where the headline is: the first Markdown heading near the top, else the first
    heading-like block (PDF conversions often set the headline as a bold line).

    A bold line above that heading still wins when the heading has siblings further down:
    then the heading opens the first section (``**Headline**`` then ``## Part`` ... ``## Part``).
    """
    first_heading = next(
        (index for index, raw in enumerate(blocks[:_LEAD_IN]) if raw.kind == "heading"), None
    )
    first_like = next(
        (index for index, raw in enumerate(blocks) if raw.kind == "heading" or _heading_like(raw)),
        None,
    )
    if first_heading is None or first_like == first_heading:
        return first_like
    level = blocks[first_heading].level
    siblings = any(
        raw.kind == "heading" and raw.level <= level for raw in blocks[first_heading + 1 :]
    )
    return first_like if siblings else first_heading


def _infer(blocks: list[_Raw], meta: dict[str, Any], source: Path | None) -> Release:
    handle: Link | None = None
    remaining: list[_Raw] = []
    for raw in blocks:
        found = _is_handle(raw)
        if found and handle is None:
            handle = found
        elif not found:
            remaining.append(raw)
    blocks = remaining

    blocks = _drop_kickers(blocks)
    title = meta.get("title")
    subtitle = meta.get("subtitle")
    notes: list[str] = []
    position = 0
    preamble: list[_Raw] = []  # blocks above the headline, read as the start of the body
    if title is not None and blocks and _same(_heading_like(blocks[0]), title):
        position = 1  # the body repeats the front matter's headline
    elif title is not None and blocks and blocks[0].kind == "heading" and blocks[0].level == 1:
        # A "# heading" that is not the front matter's title: a subtitle when it is shorter
        # (and the front matter has none), never a second headline glued to the first.
        first_heading = _heading_like(blocks[0]) or ""
        position = 1
        if subtitle is None and len(first_heading) < len(single_space(title)):
            subtitle = first_heading
        elif not _same(first_heading, subtitle):
            where = f"{source}:{blocks[0].line}" if source else f"line {blocks[0].line}"
            notes.append(
                f"{where}: the heading {first_heading!r} is not the front matter's title "
                f"{single_space(title)!r}; the title is the headline and the heading is left out"
            )
    elif title is None:
        at = _headline_index(blocks)
        if at is None:
            raise ReleaseError(
                "no headline found: start the release with a '# Heading' "
                "or give a title in the front matter",
                path=source,
            )
        title = _inline(_strip_bold(blocks[at].source))[1]
        if not title:
            raise ReleaseError("title is empty", path=source, line=blocks[at].line)
        preamble, position = blocks[:at], at + 1

    if subtitle is None and position < len(blocks):
        nxt = blocks[position]
        after = blocks[position + 1] if position + 1 < len(blocks) else None
        if nxt.kind == "heading" and after is not None and after.kind != "heading":
            subtitle = _inline(_strip_bold(nxt.source))[1]
            position += 1
        elif (
            nxt.kind == "paragraph"
            and not _WHOLLY_BOLD.match(nxt.source.strip())
            and after is not None
            and _WHOLLY_BOLD.match(after.source.strip())
            and not _heading_like(after)
            and len(nxt.source) <= 400
        ):
            subtitle = _inline(nxt.source)[1]
            position += 1

    lead: Block | None = None
    sections: list[Section] = []
    current_heading: str | None = None
    current_heading_html: Markup | None = None
    current: list[Block] = []
    boilerplate_heading: str | None = None
    boilerplate: list[Block] = []
    website: str | None = None
    contact_heading: str | None = None
    contact_blocks: list[_Raw] = []
    mode = "body"

    def close_section() -> None:
        if current or current_heading:
            sections.append(Section(current_heading, tuple(current), current_heading_html))

    for index, raw in enumerate([*preamble, *blocks[position:]]):
        # Above the headline a short bold line is a dateline or a tagline, never a section.
        heading = None if index < len(preamble) else _heading_like(raw)
        opening = None
        if index >= len(preamble) and raw.kind == "paragraph":
            opening = _CONTACT_LINE.match(raw.source.strip())
        if opening or (heading and _CONTACT.match(heading.rstrip(" :").strip() + ":")):
            label = opening.group("label") if opening else heading or ""
            contact_heading = single_space(label.rstrip(" :"))
            if mode == "body":
                close_section()
                current_heading, current_heading_html, current = None, None, []
            mode = "contact"
            rest = opening.group("rest").strip() if opening else ""
            if rest:
                contact_blocks.append(_Raw("paragraph", rest, raw.line))
            continue
        if mode == "contact" and raw.kind == "heading" and not _ABOUT.match(heading or ""):
            # A contact block has no sections: a Markdown heading ends it, and the body goes
            # on (a bold line may be an organisation's name, so it does not).
            mode = "body"
        about = bool(heading and _ABOUT.match(heading))
        if mode != "contact" or about:
            # The contact block's links are never shown (the template writes its own).
            _check_links(raw, source)
        if about:
            if mode == "body":
                close_section()
            mode = "about"
            _, boilerplate_heading, links = _inline(_strip_bold(raw.source))
            website = next((ln.href for ln in links if link_policy.web_address(ln.href)), None)
            boilerplate_heading = _about_heading(raw.source)
            continue
        if mode == "contact":
            contact_blocks.append(raw)
            continue
        if mode == "about":
            boilerplate.append(_block(raw))
            continue
        first = lead is None and not sections and not current and not heading
        if first and _WHOLLY_BOLD.match(raw.source):
            inner = _strip_bold(raw.source)
            lead = replace(_block(_Raw("paragraph", inner, raw.line)), kind="lead")
            continue
        if heading:
            close_section()
            current_heading = heading
            current_heading_html = _inline(_strip_bold(raw.source))[0]
            current = []
            continue
        current.append(_block(raw))
    if mode == "body":
        close_section()

    contacts = _contacts(contact_blocks)
    return Release(
        title=title,
        source=source,
        subtitle=subtitle,
        date=meta.get("date"),
        dateline=meta.get("dateline"),
        embargo=meta.get("embargo"),
        url=meta.get("url"),
        language=meta.get("language", "en"),
        image=meta.get("image"),
        image_alt=meta.get("image_alt") or (title if meta.get("image") else None),
        hashtags=meta.get("hashtags", ()),
        summary=meta.get("summary"),
        lead=lead,
        sections=tuple(sections),
        boilerplate=(
            Section(boilerplate_heading, tuple(boilerplate)) if boilerplate_heading else None
        ),
        contact_heading=contact_heading,
        contacts=contacts,
        handle=handle.text if handle else None,
        handle_url=handle.href if handle else None,
        website=website,
        warnings=tuple(notes),
    )


def _same(text: str | None, other: str | None) -> bool:
    """Two headlines that differ only in case, spacing or a final full stop are the same."""
    if text is None or other is None:
        return False
    return single_space(text).rstrip(".").casefold() == single_space(other).rstrip(".").casefold()


def single_space(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _about_heading(source: str) -> str:
    """'About Org [www.org](http://...)' reads as 'About Org': the link becomes ``website``."""
    inner = _strip_bold(source)
    without_links = re.sub(r"\[[^\]]*\]\([^)]*\)", "", inner)
    heading = _inline(without_links)[1].strip(" -–—:|")
    return heading or _inline(inner)[1]


def _valid_email(address: str) -> str | None:
    try:
        return validate_email(address.strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        return None


def _mailto_addresses(href: str) -> list[str]:
    """The addresses of a ``mailto:`` link, without its ``?subject=...``; others give none."""
    if not href.lower().startswith("mailto:"):
        return []
    found = (_valid_email(unquote(part)) for part in urlsplit(href).path.split(","))
    return [address for address in found if address]


@dataclass
class _Part:
    """One thing in a contact line: its text, the text outside links, and link targets."""

    text: str = ""
    outside: str = ""
    hrefs: list[str] = field(default_factory=list)


def _parts(line: str) -> list[_Part]:
    """Split a contact line on its separators, never inside a link."""
    tokens = _md.parseInline(line)
    children = tokens[0].children or [] if tokens else []
    parts = [_Part()]
    depth = 0
    for child in children:
        if child.type == "link_open":
            depth += 1
            parts[-1].hrefs.append(str(child.attrs.get("href", "")))
        elif child.type == "link_close":
            depth = max(0, depth - 1)
        elif child.type in {"softbreak", "hardbreak"}:
            parts.append(_Part())
        elif child.type in {"text", "code_inline"}:
            pieces = [child.content] if depth else _SEPARATOR.split(child.content)
            for number, piece in enumerate(pieces):
                if number:
                    parts.append(_Part())
                parts[-1].text += piece
                if not depth:
                    parts[-1].outside += piece
    return parts


def _classify(part: _Part) -> tuple[str, Any]:
    """("email", [addresses]), ("phone", number), ("name", text) or ("skip", None).

    Only ``mailto:`` links and addresses written out as text are addresses: the text of other
    links is left out, as ``[valmont@mastodon.social](https://...)`` is a social profile and
    must never become the Reply-To of a press mailing.
    """
    text = single_space(part.text).strip(" :<>()[]")
    mailto = [href for href in part.hrefs if href.lower().startswith("mailto:")]
    emails = [address for href in mailto for address in _mailto_addresses(href)]
    written = [m.group(0) for m in _EMAIL.finditer(part.outside)]
    emails += [address for address in map(_valid_email, written) if address]
    if emails:
        return "email", emails
    if not text or _NOT_A_NAME.match(text) or (mailto and not part.outside.strip()):
        return "skip", None  # a web page, a profile or an unusable address: not a person
    label = _LABEL.match(text)
    number = text[label.end() :] if label else text
    if _PHONE.match(number):
        fax = label is not None and label.group("label").lower() == "fax"
        return ("skip", None) if fax else ("phone", number)
    if label and _EMAIL.search(number):
        return "skip", None  # "Email: " followed by something that is not an address
    return ("name", text) if any(char.isalpha() for char in text) else ("skip", None)


def _residual_name(part: _Part) -> str | None:
    """The name beside an address in the same part: ``Ann Poe <ann@example.org>``."""
    rest = _EMAIL.sub("", part.outside)
    rest = _LABEL.sub("", single_space(rest).strip(" :<>()[]"))
    return rest if any(char.isalpha() for char in rest) else None


class _ContactList:
    """Contacts as a contact block reveals them, part by part."""

    def __init__(self) -> None:
        self.contacts: list[Contact] = []
        self.organisation: str | None = None
        self.opened = False  # whether the current line opened the last contact

    def new_line(self) -> None:
        self.opened = False

    def name(self, name: str) -> None:
        last = self.contacts[-1] if self.contacts else None
        if self.opened and last is not None and not (last.phones or last.emails):
            # "Jane Smith, Head of Press": what follows a name on its own line is a role.
            role = f"{last.role}, {name}" if last.role else name
            self.contacts[-1] = replace(last, role=role)
            return
        self.contacts.append(Contact(name=name, organisation=self.organisation))
        self.opened = True

    def _last(self) -> Contact:
        if not self.contacts:
            self.contacts.append(Contact(organisation=self.organisation))
            self.opened = True
        return self.contacts[-1]

    def phone(self, phone: str) -> None:
        last = self._last()
        self.contacts[-1] = replace(last, phones=(*last.phones, phone))

    def emails(self, emails: list[str]) -> None:
        last = self._last()
        known = {address.lower() for address in last.emails}
        new = tuple(address for address in emails if address.lower() not in known)
        self.contacts[-1] = replace(last, emails=last.emails + new)

    def result(self) -> tuple[Contact, ...]:
        if not self.contacts and self.organisation:
            return (Contact(organisation=self.organisation),)
        return tuple(self.contacts)


def _contacts(blocks: list[_Raw]) -> tuple[Contact, ...]:
    found = _ContactList()
    for raw in blocks:
        for line in raw.source.split("\n"):
            line = line.strip().rstrip("\\").strip()
            if raw.kind == "list":
                line = _LIST_MARKER.sub("", line)
            if not line:
                continue
            if _WHOLLY_BOLD.match(line) and not _EMAIL.search(line):
                found.organisation = _inline(_strip_bold(line))[1]
                continue
            found.new_line()
            for part in _parts(line):
                kind, value = _classify(part)
                if kind == "name":
                    found.name(value)
                elif kind == "phone":
                    found.phone(value)
                elif kind == "email":
                    residual = _residual_name(part)
                    if residual:
                        found.name(residual)
                    found.emails(value)
    return found.result()
