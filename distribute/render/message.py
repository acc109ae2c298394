"""An :class:`EmailDraft` and a :class:`Recipient` turned into RFC 5322 message bytes.

Every header value that comes from a list passes through ``single_line`` and
:func:`~distribute.headers.header_text_problem`, then the ``email.headerregistry``
classes; what they fold is read back and checked as bytes
(:func:`~distribute.headers.verify_folded`), so nothing a list, a release or a template
holds can add a header (RFC 5322 section 2.2: a header field ends at CRLF). Bodies are
quoted-printable, so no line can exceed 998 octets (RFC 5322 section 2.1.1) whatever the
release holds, and the finished message holds no line ending but CRLF.

Per recipient, the work is substitution: each part is prepared once per draft (the lines
holding no slot encoded once, see :class:`_Body`), and the headers that are the same in
every message are written and checked once; only what names the recipient is written,
folded and checked again for each message. A header line of printable ASCII without "=?"
is one header field by construction, so it is folded and written without the checks
(:func:`_as_is`); anything else takes the whole route.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import html as html_lib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import policy, quoprimime
from email.utils import format_datetime
from urllib.parse import quote

from distribute.config import MAX_NAME, Settings
from distribute.errors import HeaderError
from distribute.headers import MAX_LINE, has_bare_line_ending, header_text_problem, verify_folded
from distribute.recipients import Recipient
from distribute.render.email import EmailDraft, _slot_re, labels
from distribute.render.templates import single_line

# The email package parses what is written back, to check it reads as intended; headers
# are written here, not by its folder, which decodes encoded-words it is given and (before
# CPython 3.11.10) wrote the line breaks they held back out (CVE-2024-6923), and which
# drops the space between two encoded-words it splits a word into.
WIRE = policy.EmailPolicy(linesep="\r\n", max_line_length=78)
# RFC 6532: a message to an internationalised address carries UTF-8 headers as they are
# (encoded-words are not allowed inside an address) and is sent with SMTPUTF8.
WIRE_UTF8 = WIRE.clone(utf8=True)
# atext and spaces (RFC 5322 section 3.2.3): a display name that needs no quotes; RFC 6532
# section 3.2 adds every non-ASCII character to atext in UTF-8 headers.
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+")
_ATOMS_UTF8 = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ \u00a0-\U0010ffff-]+")
# A dot-atom address (RFC 5322 section 3.4.1) with neither "=?" nor "?=" in it.
_PLAIN_ADDRESS = re.compile(r"(?!.*=\?)(?!.*\?=)[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")
# A word longer than this would not leave room on its line: it is written as encoded-words.
_LONG_WORD = 900


def message_id(campaign: str, step: str, address: str, domain: str, release: str = "") -> str:
    """Deterministic per (campaign, step, recipient, release version), so a retried message
    keeps its id while another release (or an edited one) gets a new one: receivers that
    drop a Message-ID they have seen must not drop a different release."""
    key = f"{campaign}\x00{step}\x00{address.lower()}\x00{release}"
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"<{digest[:32]}@{domain}>"


def list_id(campaign: str, settings: Settings) -> str:
    """RFC 2919 List-Id: a label per campaign under the sender's domain."""
    return _list_id(campaign, settings.sender.name, settings.sender.domain)


@functools.lru_cache(maxsize=64)
def _list_id(campaign: str, sender_name: str, domain: str) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", campaign.lower()).strip("-") or "press"
    phrase = _phrase(single_line(sender_name), utf8=False)
    return f"{phrase} <{label}.{domain}>"


def _phrase(text: str, *, utf8: bool) -> str:
    """A display name as written in a header: atoms, a quoted string, or encoded-words."""
    if not text.isascii() and not utf8:
        return _encoded_words(text)
    if (_ATOMS_UTF8 if utf8 else _ATOMS).fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mailbox(name: str, address: str, *, utf8: bool) -> str:
    return f"{_phrase(name, utf8=utf8)} <{address}>" if name else address


# The Subject is the same in every message of a step unless it names the journalist, and
# encoding it is most of what its header costs.
@functools.lru_cache(maxsize=1024)
def _unstructured(text: str, *, utf8: bool) -> str:
    """Text as written in a Subject: as it is when it can be, else encoded-words."""
    if (utf8 or text.isascii()) and all(
        len(word.encode("utf-8")) <= _LONG_WORD for word in text.split(" ")
    ):
        return text
    return _encoded_words(text)


def _encoded_words(text: str) -> str:
    """RFC 2047 'Q' words for a phrase, each at most 75 characters (section 2), on one line."""
    words: list[str] = []
    current = ""
    for char in text:
        trial = current + char
        if current and len(quoprimime.header_encode(trial.encode("utf-8"), "utf-8")) > 75:
            words.append(quoprimime.header_encode(current.encode("utf-8"), "utf-8"))
            current = char
        else:
            current = trial
    words.append(quoprimime.header_encode(current.encode("utf-8"), "utf-8"))
    return " ".join(words)


def unsubscribe_targets(settings: Settings, address: str) -> tuple[str, str | None]:
    """(mailto URI, https URL or None) for one recipient, per RFC 2369 and RFC 8058."""
    return _unsubscribe_targets(settings.unsubscribe.mailto, settings.unsubscribe.url, address)


# A message asks for these twice (its slots, its List-Unsubscribe header), one after the other.
@functools.lru_cache(maxsize=16)
def _unsubscribe_targets(mailbox: str, url: str | None, address: str) -> tuple[str, str | None]:
    mailto = f"mailto:{mailbox}?subject={quote('unsubscribe ' + address)}"
    https = url.replace("{email}", quote(address, safe="@")) if url else None
    return mailto, https


def recipient_values(recipient: Recipient, settings: Settings, language: str) -> dict[str, str]:
    """The slot values substituted into a draft for one journalist."""
    name = single_line(recipient.display_name)
    first = single_line(recipient.first_name) or name
    t = labels(language)
    mailto, https = unsubscribe_targets(settings, recipient.email)
    values = {key: single_line(value) for key, value in recipient.extra.items()}
    values.update(
        email=recipient.email,
        name=name,
        first_name=single_line(recipient.first_name),
        last_name=single_line(recipient.last_name),
        outlet=single_line(recipient.outlet),
        beat=single_line(recipient.beat),
        language=recipient.language,
        greeting=t["dear"].format(name=first) if first else t["hello"],
        unsubscribe_url=https or mailto,
    )
    return values


def _to(recipient: Recipient, name: str) -> tuple[str, str]:
    """The To header's (name, address); a name or an address a mail program would read as
    something else is refused, naming the recipient's field."""
    for field in ("first_name", "last_name", "name", "email"):
        problem = header_text_problem(single_line(getattr(recipient, field)))
        if problem:
            raise HeaderError(f"{field}: {problem}", field=f"recipient.{field}")
    # "=?utf-8?q?Jo" and "=0D=0A?=" are harmless apart; the name To shows joins them.
    problem = header_text_problem(single_line(name))
    if problem:
        raise HeaderError(f"the name {single_line(name)!r} {problem}", field="recipient.name")
    # A list can hold anything in a name column; a header line must stay under 998 octets.
    return single_line(name)[:MAX_NAME].strip(), recipient.email.strip()


def _subject(draft: EmailDraft, subject: str, values: dict[str, str], prefix: str) -> str:
    """The Subject text; a recipient value that cannot sit in it is refused, naming its field."""
    for slot in draft.subject_slots():
        problem = header_text_problem(values.get(slot, ""))
        if problem:
            raise HeaderError(f"{slot}: {problem}", field=f"recipient.{slot}")
    text = single_line(f"{prefix}{subject}")
    problem = header_text_problem(text)
    if problem:
        raise HeaderError(f"the subject {text!r}: {problem}", field="Subject")
    return text


@dataclass(frozen=True)
class Outgoing:
    """A finished message: the exact bytes for the wire (or the outbox) and its id."""

    data: bytes
    message_id: str


def build_message(
    draft: EmailDraft,
    recipient: Recipient,
    settings: Settings,
    *,
    campaign: str,
    step: str,
    date: datetime,
    subject_prefix: str = "",
    release: str = "",
) -> Outgoing:
    """The full message for one recipient; ``date`` is passed in so rendering reads no clock.

    Headers are written here (address quoting, RFC 2047 encoding, folding) and checked as
    bytes; the MIME body is written here too, with the C quoted-printable encoder, because
    the generic generator costs more per message than an SMTP server does to accept one.
    """
    values = recipient_values(recipient, settings, draft.language)
    subject = draft.personalise_subject(values)
    text_body, html_body = _bodies(draft)
    ident = message_id(campaign, step, recipient.email, settings.sender.domain, release)
    boundary = _boundary(ident)
    head = _head(
        draft, recipient, settings, values, subject, ident, boundary, campaign, date, subject_prefix
    )
    if has_bare_line_ending(head):
        raise HeaderError("the message holds a bare CR or LF", field="message")
    mark = boundary.encode("ascii")
    data = b"".join(
        (
            head,
            b"\r\n--",
            mark,
            b"\r\n",
            text_body.fill(values),
            b"\r\n--",
            mark,
            b"\r\n",
            html_body.fill(values),
            b"\r\n--",
            mark,
            b"--\r\n",
        )
    )
    return Outgoing(data, ident)


def check_headers(
    draft: EmailDraft,
    recipient: Recipient,
    settings: Settings,
    *,
    campaign: str,
    step: str,
    date: datetime,
) -> None:
    """Raise the :class:`HeaderError` :func:`build_message` would raise for ``recipient``.

    The headers are all that can fail (the parts are quoted-printable of normalised text),
    and writing them is a fraction of writing the message: the campaign check runs this for
    every recipient, so what it accepts can be sent.
    """
    values = recipient_values(recipient, settings, draft.language)
    subject = draft.personalise_subject(values)
    ident = message_id(campaign, step, recipient.email, settings.sender.domain)
    _head(draft, recipient, settings, values, subject, ident, _boundary(ident), campaign, date, "")


def _boundary(ident: str) -> str:
    # Derived from the Message-ID, it keeps a dry run's bytes identical to the live send's;
    # "=_" cannot occur in quoted-printable text (RFC 2045 section 6.7).
    return "=_" + hashlib.sha256(ident.encode()).hexdigest()[:40]


def _head(
    draft: EmailDraft,
    recipient: Recipient,
    settings: Settings,
    values: dict[str, str],
    subject: str,
    ident: str,
    boundary: str,
    campaign: str,
    date: datetime,
    subject_prefix: str,
    *,
    fast: bool = True,
) -> bytes:
    """The header block; ``fast=False`` writes every line the whole way (folded, checked as
    bytes and parsed back by ``email.headerregistry``), which the fast one must equal."""
    mailto, https = unsubscribe_targets(settings, recipient.email)
    utf8 = not recipient.email.isascii()
    sender = settings.sender
    to = _to(recipient, values["name"])
    title = _subject(draft, subject, values, subject_prefix)
    same = functools.partial(_same_for_everyone, utf8, fast=fast)
    head = [
        same("From", _mailbox(*sender.mailbox, utf8=utf8), sender.mailbox),
        _written(utf8, "To", _mailbox(*to, utf8=utf8), to, fast=fast),
    ]
    if draft.reply_to:
        reply_to = _parsed_mailbox(draft.reply_to)
        head.append(same("Reply-To", _mailbox(*reply_to, utf8=utf8), reply_to))
    head += [
        same("Subject", _unstructured(title, utf8=utf8), title),
        _date_header(date) if fast else _written(utf8, "Date", format_datetime(date), fast=False),
        _written(utf8, "Message-ID", ident, fast=fast),
        same("List-Id", list_id(campaign, settings)),
        _written(
            utf8,
            "List-Unsubscribe",
            f"<{mailto}>" + (f", <{https}>" if https else ""),
            fast=fast,
        ),
    ]
    if https:
        # RFC 8058 one-click: mailbox providers POST to the https URL, no page to visit.
        head.append(same("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    head += [
        same("MIME-Version", "1.0"),
        _written(utf8, "Content-Type", f'multipart/alternative; boundary="{boundary}"', fast=fast),
    ]
    return b"".join(head)


Expected = str | tuple[str, str] | None


def _as_is(name: str, value: str) -> bytes | None:
    """``name: value`` folded, as bytes, when it is one header field by construction, else None.

    Printable ASCII holds no CR, LF or other control and is the same in UTF-8; without "=?"
    nothing in it is, or looks like, an RFC 2047 encoded-word that a parser would decode;
    at most 998 octets in all, no folded line can be longer (RFC 5322 section 2.1.1), and
    each continuation line :func:`_fold` writes starts with a space and holds a word. So
    what :func:`~distribute.headers.verify_folded` checks holds without checking.
    """
    line = f"{name}: {value}"
    if not (len(line) <= MAX_LINE and line.isascii() and line.isprintable()):
        return None
    if "=?" in value:
        return None
    if len(line) <= 78:
        # The line would not be folded: every word fits.
        return (line + "\r\n").encode("ascii")
    return _fold(name, value).encode("ascii")


def _reads_as_written(value: str, expected: Expected) -> bool:
    """True when ``value``, written as it is, can only read back as ``expected``: a mailbox
    of atoms and a dot-atom address, or text that is the value itself (no space at either
    end, which the reader would drop)."""
    if expected is None:
        return True
    if isinstance(expected, tuple):
        return _plain(expected)
    return value == expected and value.strip() == value


def _written(
    utf8: bool, name: str, value: str, expected: Expected = None, *, fast: bool = True
) -> bytes:
    """``name: value`` folded for the wire, then checked as bytes: one header field, which
    reads back as ``expected`` (the text, or the mailbox's name and address) when given.

    Folded at spaces only, into lines of 78 characters where the words allow (RFC 5322
    section 2.2.3); values are single-line, and no word is over 900 octets. With ``fast``,
    a line :func:`_as_is` takes is written at once, and a plain mailbox is not parsed back.
    """
    if fast and _reads_as_written(value, expected):
        line = _as_is(name, value)
        if line is not None:
            return line
    try:
        folded = _fold(name, value).encode("utf-8" if utf8 else "ascii")
    except UnicodeEncodeError:
        raise HeaderError(f"the {name} header must be ASCII", field=name) from None
    verify_folded(name, folded, utf8=utf8)
    if expected is not None and not (fast and _plain(expected)):
        _reads_back(utf8, name, folded, expected)
    return folded


def _fold(name: str, value: str) -> str:
    words = value.split(" ")
    lines = [f"{name}: {words[0]}"]
    for word in words[1:]:
        if word and len(lines[-1]) + 1 + len(word) > 78:
            lines.append(f" {word}")
        else:
            lines[-1] += f" {word}"
    return "\r\n".join(lines) + "\r\n"


# The clock moves by microseconds between messages, the header by seconds: the last line
# written is kept. Keyed by what format_datetime reads: the wall time to the second, whether
# there is a zone, and its offset (two instants equal in UTC can be written differently).
_last_date: tuple[tuple[datetime, bool, timedelta | None], bytes] | None = None


def _date_header(date: datetime) -> bytes:
    global _last_date
    key = (date.replace(microsecond=0, tzinfo=None), date.tzinfo is None, date.utcoffset())
    last = _last_date
    if last is not None and last[0] == key:
        return last[1]
    line = _written(False, "Date", format_datetime(date))
    _last_date = (key, line)
    return line


def _plain(expected: Expected) -> bool:
    """A mailbox of atoms and a dot-atom address, written as it is: it can only read back
    as itself, so the parser (most of what a message costs) need not check it."""
    if not isinstance(expected, tuple):
        return False
    name, address = expected
    # "=" and "?" are atext, but a name holding "=?" may hold an encoded-word, which the
    # reader decodes: such a name is read back like any other.
    return (not name or (_ATOMS.fullmatch(name) is not None and "=?" not in name)) and (
        _PLAIN_ADDRESS.fullmatch(address) is not None
    )


def _reads_back(utf8: bool, name: str, folded: bytes, expected: Expected) -> None:
    """What a mail program reads is what was meant: parse the bytes back and compare."""
    unfolded = folded.decode("utf-8")[len(name) + 1 : -2].replace("\r\n", "").strip()
    try:
        header = (WIRE_UTF8 if utf8 else WIRE).header_factory(name, unfolded)
    except ValueError as exc:
        # The parser refuses what it decodes into a line break ("address parts cannot
        # contain CR or LF"): a value a mail program would read as more than one line.
        raise HeaderError(f"the {name} header would not read back: {exc}", field=name) from None
    if isinstance(expected, tuple):
        # Spaces aside: a name longer than one encoded-word is split into several, and the
        # email package reads a space between two of them where RFC 2047 section 6.2 (and
        # mail programs) read none; the words are the same.
        addresses = getattr(header, "addresses", ())
        read: object = [("".join(a.display_name.split()), a.addr_spec) for a in addresses]
        wanted: object = [("".join(expected[0].split()), expected[1])]
    else:
        read, wanted = str(header), expected
    if read != wanted:
        raise HeaderError(f"the {name} header would read as {read!r}, not {wanted!r}", field=name)


# Parsing a header back is most of what writing it costs; these are the same in every
# message of a step (the Subject too, unless it names the journalist), so each is written
# and checked once.
@functools.lru_cache(maxsize=1024)
def _same_for_everyone(
    utf8: bool, name: str, value: str, expected: Expected = None, *, fast: bool = True
) -> bytes:
    return _written(utf8, name, value, expected, fast=fast)


@functools.lru_cache(maxsize=64)
def _parsed_mailbox(text: str) -> tuple[str, str]:
    """A configured ``Name <address>`` (already checked by the configuration) as its parts."""
    try:
        addresses = WIRE.header_factory("Reply-To", text).addresses
    except ValueError as exc:
        # An encoded-word decoding to a line break: the parser refuses it (see _reads_back).
        raise HeaderError(
            f"Reply-To {text!r} would not read back: {exc}", field="Reply-To"
        ) from None
    if len(addresses) != 1:
        raise HeaderError(f"Reply-To {text!r} is not one address", field="Reply-To")
    return addresses[0].display_name, addresses[0].addr_spec


def _part(content_type: str, body: str) -> bytes:
    """One MIME part, quoted-printable: lines of at most 76 octets (RFC 2045 section 6.7)."""
    return _part_head(content_type) + _quoted_printable(body)


def _part_head(content_type: str) -> bytes:
    return (
        f'Content-Type: {content_type}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode("ascii")


def _quoted_printable(body: str) -> bytes:
    data = _LINE_ENDING.sub("\r\n", body).encode("utf-8")
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    if b"\r\n" not in data:
        # b2a_qp copies the text's line ending into its soft breaks; with no line ending to
        # copy it uses a bare LF, which SMTP forbids (RFC 5321 section 2.3.8).
        encoded = encoded.replace(b"=\n", b"=\r\n")
    if any(len(line) > 76 for line in encoded.split(b"\r\n")):
        encoded = b"\r\n".join(_within_76(line) for line in encoded.split(b"\r\n"))
    if has_bare_line_ending(encoded):
        # Every step above writes CRLF; a bare CR or LF here is a bug, and on the wire a bare
        # LF before "." escapes dot-stuffing (SMTP smuggling, CVE-2023-51764).
        raise HeaderError("the message holds a bare CR or LF", field="message")
    return encoded


_LINE_ENDING = re.compile(r"\r\n?|\n")


@dataclass(frozen=True)
class _Body:
    """A MIME part prepared once per draft: encoded where no slot falls, the rest per recipient.

    Quoted-printable is line by line (RFC 2045 section 6.7: soft breaks and the encoding of
    trailing white space depend only on the line they are in), and b2a_qp's only
    whole-input decision, which line ending its soft breaks copy, is CRLF either way here.
    So a body cut after line endings encodes to the concatenation of its pieces' encodings:
    the lines holding a slot are filled in and encoded for each recipient, the others once.
    Each piece is checked for bare CR and LF, and pieces that hold none cannot make one.
    """

    pieces: tuple[bytes | str, ...]  # bytes: encoded once; str: lines holding slots
    tag: str
    escape: bool

    @classmethod
    def of(cls, content_type: str, body: str, tag: str, *, escape: bool) -> _Body:
        slot = _slot_re(tag)
        pieces: list[bytes | str] = [_part_head(content_type)]
        constant: list[str] = []
        # Cut after CRLF only: str.splitlines would also cut at characters that are text here.
        lines = _LINE_ENDING.sub("\r\n", body).split("\r\n")
        for number, line in enumerate(lines, start=1):
            if number < len(lines):
                line += "\r\n"
            elif not line:
                break
            if slot.search(line) is None:
                constant.append(line)
                continue
            if constant:
                pieces.append(_quoted_printable("".join(constant)))
                constant = []
            pieces.append(line)
        if constant or len(pieces) == 1:
            pieces.append(_quoted_printable("".join(constant)))
        return cls(tuple(pieces), tag, escape)

    def fill(self, values: Mapping[str, str]) -> bytes:
        """The part for one recipient: ``values`` substituted, encoded where they fell."""
        slot = _slot_re(self.tag)

        def one(match: re.Match[str]) -> str:
            value = values.get(match.group(1), "")
            return html_lib.escape(value, quote=True) if self.escape else value

        return b"".join(
            piece if isinstance(piece, bytes) else _quoted_printable(slot.sub(one, piece))
            for piece in self.pieces
        )


@functools.lru_cache(maxsize=16)
def _bodies(draft: EmailDraft) -> tuple[_Body, _Body]:
    """The text and HTML parts of ``draft``, prepared once for every recipient of a step."""
    return (
        _Body.of("text/plain", draft.text, draft.tag, escape=False),
        _Body.of("text/html", draft.html, draft.tag, escape=True),
    )


def _within_76(line: bytes) -> bytes:
    """b2a_qp encodes trailing white space as "=20" after its own length check, which can
    make a line of 77 octets; RFC 2045 section 6.7 allows 76, so break before the escape."""
    if len(line) <= 76:
        return line
    return line[:-3] + b"=\r\n" + line[-3:]


def message_bytes(message: Outgoing) -> bytes:
    return message.data
