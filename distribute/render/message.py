"""An :class:`EmailDraft` and a :class:`Recipient` turned into RFC 5322 message bytes.

Every header value that comes from a list passes through ``single_line`` and the
``email.headerregistry`` classes, so a name holding CR/LF can never add a header
(RFC 5322 section 2.2: a header field ends at CRLF). Bodies are quoted-printable, so no
line can exceed 998 octets (RFC 5322 section 2.1.1) whatever the release holds.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email import policy, quoprimime
from email.headerregistry import Address
from email.utils import format_datetime
from urllib.parse import quote

from distribute.config import MAX_NAME, Settings
from distribute.recipients import Recipient
from distribute.render.email import EmailDraft, labels
from distribute.render.templates import single_line


class _WirePolicy(policy.EmailPolicy):
    """CRLF line endings, headers folded at 78 characters, never an empty first line.

    CPython folds a value that fits on one continuation line by moving all of it off the
    field's own line ("Subject:" CRLF " text"); some parsers, Python's among them, then read
    a leading space into the subject (compare python/cpython#124452). Rejoining the two
    keeps the line under 998 octets and reads the same everywhere.
    """

    def fold_binary(self, name: str, value: str) -> bytes:
        folded = super().fold_binary(name, value)
        lone = f"{name}:{self.linesep} ".encode("ascii")
        if folded.startswith(lone):
            folded = f"{name}: ".encode("ascii") + folded[len(lone) :]
        return folded


# Machine-read headers written as they are: CPython turns any token over 78 characters
# into RFC 2047 encoded-words, which RFC 2369 does not allow in List-Unsubscribe and which
# mailbox providers do not decode there, silently breaking unsubscription.
_VERBATIM = {"list-unsubscribe", "list-unsubscribe-post", "list-id", "message-id"}


def _fold_verbatim(name: str, value: str, linesep: str) -> bytes:
    """Fold only between comma-separated items; an item itself is never cut."""
    items = value.split(", ")
    lines = [f"{name}: {items[0]}"]
    for item in items[1:]:
        if len(lines[-1]) + 2 + len(item) > 78:
            lines[-1] += ","
            lines.append(f" {item}")
        else:
            lines[-1] += f", {item}"
    return (linesep.join(lines) + linesep).encode("ascii")


WIRE = _WirePolicy(linesep="\r\n", max_line_length=78)
# RFC 6532: a message to an internationalised address carries UTF-8 headers as they are
# (encoded-words are not allowed inside an address) and is sent with SMTPUTF8.
WIRE_UTF8 = WIRE.clone(utf8=True)


def message_id(campaign: str, step: str, address: str, domain: str) -> str:
    """Deterministic per (campaign, step, recipient), so a retried message keeps its id."""
    digest = hashlib.sha256(f"{campaign}\x00{step}\x00{address.lower()}".encode()).hexdigest()
    return f"<{digest[:32]}@{domain}>"


def list_id(campaign: str, settings: Settings) -> str:
    """RFC 2919 List-Id: a label per campaign under the sender's domain."""
    label = re.sub(r"[^a-z0-9-]+", "-", campaign.lower()).strip("-") or "press"
    phrase = single_line(settings.sender.name)
    if not phrase.isascii():
        phrase = _encoded_words(phrase)
    elif re.search(r'[()<>\[\]:;@\\,."]', phrase):
        phrase = '"' + phrase.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{phrase} <{label}.{settings.sender.domain}>"


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
    mailto = f"mailto:{settings.unsubscribe.mailto}?subject={quote('unsubscribe ' + address)}"
    url = settings.unsubscribe.url
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


def _address(name: str, address: str) -> Address:
    local, _, domain = address.strip().rpartition("@")
    # A list can hold anything in a name column; a header line must stay under 998 octets.
    shown = single_line(name)[:MAX_NAME].strip()
    return Address(display_name=shown, username=local, domain=domain)


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
) -> Outgoing:
    """The full message for one recipient; ``date`` is passed in so rendering reads no clock.

    Headers go through the email package's policy (address quoting, RFC 2047 encoding,
    folding); the MIME body is written here, with the C quoted-printable encoder, because
    the generic generator costs more per message than an SMTP server does to accept one.
    """
    values = recipient_values(recipient, settings, draft.language)
    subject, html, text = draft.personalise(values)
    wire = WIRE if recipient.email.isascii() else WIRE_UTF8
    ident = message_id(campaign, step, recipient.email, settings.sender.domain)
    mailto, https = unsubscribe_targets(settings, recipient.email)
    # A boundary derived from the Message-ID keeps a dry run's bytes identical to the live
    # send's; "=_" cannot occur in quoted-printable text (RFC 2045 section 6.7).
    boundary = "=_" + hashlib.sha256(ident.encode()).hexdigest()[:40]
    headers: list[tuple[str, object]] = [
        ("From", settings.sender.header),
        ("To", _address(values["name"], recipient.email)),
    ]
    if draft.reply_to:
        headers.append(("Reply-To", draft.reply_to))
    headers += [
        ("Subject", single_line(f"{subject_prefix}{subject}")),
        ("Date", format_datetime(date)),
        ("Message-ID", ident),
        ("List-Id", list_id(campaign, settings)),
        ("List-Unsubscribe", f"<{mailto}>" + (f", <{https}>" if https else "")),
    ]
    if https:
        # RFC 8058 one-click: mailbox providers POST to the https URL, no page to visit.
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    headers += [
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    head = b"".join(_header(wire, name, value) for name, value in headers)
    mark = boundary.encode("ascii")
    return Outgoing(
        head
        + b"\r\n--"
        + mark
        + b"\r\n"
        + _part("text/plain", text)
        + b"\r\n--"
        + mark
        + b"\r\n"
        + _part("text/html", html)
        + b"\r\n--"
        + mark
        + b"--\r\n",
        ident,
    )


def _header(wire: policy.EmailPolicy, name: str, value: object) -> bytes:
    text = str(value)
    if "\r" in text or "\n" in text:
        # Every value was made single-line upstream; this is the last line of defence.
        raise ValueError(f"line break in the {name} header")
    if name in _SAME_FOR_EVERYONE:
        return _folded(wire.utf8, name, text)
    return _fold(wire, name, text)


# Parsing a header is most of what building a message costs; these are the same in every
# message of a step, so each is parsed and folded once.
_SAME_FOR_EVERYONE = {"From", "Reply-To", "List-Id", "List-Unsubscribe-Post", "MIME-Version"}


@functools.lru_cache(maxsize=256)
def _folded(utf8: bool, name: str, text: str) -> bytes:
    return _fold(WIRE_UTF8 if utf8 else WIRE, name, text)


def _fold(wire: policy.EmailPolicy, name: str, text: str) -> bytes:
    if name.lower() in _VERBATIM:
        # Not through the header parser: it would decode the encoded-words of a List-Id
        # phrase and encode them again word by word, leaving its specials bare.
        if not text.isascii():
            raise ValueError(f"{name} must be ASCII")
        return _fold_verbatim(name, text, wire.linesep)
    return wire.fold_binary(name, wire.header_factory(name, text))


def _part(content_type: str, body: str) -> bytes:
    """One MIME part, quoted-printable: lines of at most 76 octets (RFC 2045 section 6.7)."""
    data = re.sub(r"\r\n?|\n", "\r\n", body).encode("utf-8")
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    if b"\r\n" not in data:
        # b2a_qp copies the text's line ending into its soft breaks; with no line ending to
        # copy it uses a bare LF, which SMTP forbids (RFC 5321 section 2.3.8).
        encoded = encoded.replace(b"=\n", b"=\r\n")
    if any(len(line) > 76 for line in encoded.split(b"\r\n")):
        encoded = b"\r\n".join(_within_76(line) for line in encoded.split(b"\r\n"))
    return (
        f'Content-Type: {content_type}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode("ascii") + encoded


def _within_76(line: bytes) -> bytes:
    """b2a_qp encodes trailing white space as "=20" after its own length check, which can
    make a line of 77 octets; RFC 2045 section 6.7 allows 76, so break before the escape."""
    if len(line) <= 76:
        return line
    return line[:-3] + b"=\r\n" + line[-3:]


def message_bytes(message: Outgoing) -> bytes:
    return message.data
