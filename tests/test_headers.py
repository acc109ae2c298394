"""Nothing a list, a release, a template or the configuration holds can add a header line.

The property test feeds any text into every field that reaches a header: the recipient's
names, outlet, beat and a custom column (the subject uses them), the subject template's own
text, the release title, the press contact's address and the sender's name. Each message is
either refused with one clear error before anything is sent, or parses back to exactly the
expected headers, in order, one body of two parts, and holds no bare CR or LF.
"""

from __future__ import annotations

import csv
import email
import email.policy
import re
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from distribute.channels.smtp import _dot_stuffed
from distribute.config import MAX_NAME, Sender, load_settings, parse_mailbox
from distribute.errors import ConfigError, DistributeError, HeaderError
from distribute.headers import verify_folded
from distribute.recipients import Recipient, address_problem, read_lists
from distribute.release import Contact, load_release
from distribute.render.email import check_headline, contact_reply_to, draft_email
from distribute.render.message import build_message, message_bytes
from distribute.render.templates import single_line

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)  # before the example's embargo
MARK = "TITLEMARK"
SUBJECT = (
    MARK + " {{ recipient.outlet }} / {{ recipient.beat }} / {{ recipient.desk }}"
    " / {{ recipient.first_name }}"
)
EXPECTED_HEADERS = [
    "From",
    "To",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
]

# What attacks and accidents are made of, mixed with any other text.
FRAGMENTS = [
    "=?utf-8?q?",
    "=?UTF-8?B?",
    "=?iso-8859-1?q?",
    "?=",
    "=0D=0A",
    "=0A",
    "=0D",
    "DQo=",
    "_",
    "\r\n",
    "\n",
    "\r",
    "\r\n.\r\n",
    "\n.",
    ".",
    "Bcc: leak@evil.example",
    "X-Injected: yes",
    "\r\n\r\n<h1>Phish</h1>",
    ":",
    "<",
    ">",
    '"',
    "\\",
    "@",
    "(",
    ")",
    ",",
    ";",
    " ",
    "\t",
    "\u2028",
    "\x85",
    "\x00",
    "\u202e",
    "é",
    "😀",
    "%%email%%",
    "%%outlet%%",
    "{{",
]
# Lists and releases are read as UTF-8, so no field can hold a lone surrogate. Single
# characters rather than st.text(): generating the data is most of what an example costs.
_PIECE = st.one_of(st.sampled_from(FRAGMENTS), st.characters(exclude_categories=("Cs",)))
ANY_TEXT = st.lists(_PIECE, max_size=4).map("".join)
LOCAL_PARTS = st.sampled_from(
    ["jane.doe", "jo+desk", "=?utf-8?q?a=0D=0A?=", "=?x?q?a?=", "josé", "a.b-c", "o'brien"]
)
# What the release reader takes for a contact's address: word characters, Unicode included.
CONTACTS = st.one_of(
    st.none(),
    st.builds(
        "{}{}@{}.{}".format,
        st.sampled_from(["press", "jo.doe", "a+b", "o'neil", "josé", "=?q?", "x_y"]),
        st.sampled_from(["", "é", "-", "."]),
        st.sampled_from(["example", "exämple", "xn--bcher-kva", "a-b", "例え"]),
        st.sampled_from(["org", "com", "co.uk"]),
    ),
)


class World:
    """One draft rendered once (premailer is slow); each example varies its fields."""

    def __init__(self) -> None:
        folder = Path(tempfile.mkdtemp())
        (folder / "distribute.toml").write_text(
            '[unsubscribe]\nurl = "https://www.example.org/unsubscribe?email={email}"\n',
            encoding="utf-8",
        )
        self.settings = load_settings(workspace=folder)
        self.release = load_release(ROOT / "releases" / "hydrogen.md")
        self.draft = draft_email(
            self.release, self.settings, at=NOW, subject=SUBJECT, extra_fields=["desk"]
        )
        assert MARK in self.draft.subject
        # The bodies are not what is under test here, and the release's full parts would
        # make each example ten times slower: a short part of each kind keeps its slots.
        self.draft = replace(
            self.draft,
            html=f"<p>{self.draft.slot('greeting')}</p>\n<p>.\n</p>",
            text=f"{self.draft.slot('greeting')}\n.\nEnd\n",
        )


_world: World | None = None


def world() -> World:
    global _world
    if _world is None:
        _world = World()
    return _world


def _parse(raw: bytes) -> EmailMessage:
    # A message to an internationalised address carries UTF-8 headers (RFC 6532); the bytes
    # parser would read them as ASCII with surrogates.
    message = email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _words(name: str) -> str:
    """A display name without its spaces: the email package reads a space between two
    encoded-words of one name where RFC 2047 section 6.2 reads none."""
    return "".join(name.split())


def _one_clear_line(exc: DistributeError) -> None:
    text = str(exc)
    assert text and "\n" not in text and "\r" not in text, text
    assert "Traceback" not in text


@hypothesis_settings(
    max_examples=2000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    first_name=ANY_TEXT,
    last_name=ANY_TEXT,
    name=ANY_TEXT,
    outlet=ANY_TEXT,
    beat=ANY_TEXT,
    desk=ANY_TEXT,
    local=LOCAL_PARTS,
    template_text=ANY_TEXT,
    title=ANY_TEXT,
    contact=CONTACTS,
    sender_name=ANY_TEXT,
)
@example(
    first_name="=?utf-8?q?Jo=0D=0A?=",
    last_name="",
    name="",
    outlet="=?utf-8?q?Daily=0D=0AX-Injected:_yes=0D=0A=0D=0A<h1>Phish</h1>?=",
    beat="",
    desk="",
    local="jane.doe",
    template_text="",
    title="=?utf-8?q?Launch=0D=0ABcc:_leak@evil.example?=",
    contact=None,
    sender_name="Press",
)
def test_no_field_adds_a_header(
    first_name: str,
    last_name: str,
    name: str,
    outlet: str,
    beat: str,
    desk: str,
    local: str,
    template_text: str,
    title: str,
    contact: str | None,
    sender_name: str,
) -> None:
    w = world()
    address = f"{local}@example.com"
    try:
        # The configuration: the sender's name goes into From and List-Id.
        sender, sender_address = parse_mailbox(
            f'"{sender_name}" <press@example.org>', path=None, key="[sender] from"
        )
        if len(sender) > MAX_NAME:
            raise ConfigError("name too long")
        settings = replace(w.settings, sender=Sender(sender or sender_address, sender_address))
        # The release: its title in the subject, its press contact in Reply-To.
        release = replace(
            w.release,
            title=title,
            contacts=(Contact(emails=(contact,)),) if contact else (),
        )
        # The step's subject template, as rendered: its own text and the title, verbatim.
        headline = single_line(w.draft.subject.replace(MARK, f"{template_text} {title}"))
        check_headline(headline, release, templated=True)
        draft = replace(w.draft, subject=headline, reply_to=contact_reply_to(release))
        # The list row: refused by the reader when the address is invalid.
        if address_problem(address):
            return
        recipient = Recipient(
            email=address,
            first_name=first_name,
            last_name=last_name,
            name=name,
            outlet=outlet,
            beat=beat,
            extra={"desk": desk},
            list_name="desk",
            line=2,
        )
        raw = message_bytes(
            build_message(draft, recipient, settings, campaign="c", step="s", date=NOW)
        )
    except DistributeError as exc:
        _one_clear_line(exc)
        return

    # No line ending but CRLF anywhere, and no line the server could take for the end.
    assert b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b"")
    assert _dot_stuffed(raw).count(b"\r\n.\r\n") == 1
    message = _parse(raw)
    expected = [h for h in EXPECTED_HEADERS if h != "Reply-To" or draft.reply_to]
    assert list(message.keys()) == expected
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert message.preamble in (None, "") and message.epilogue in (None, "")

    # Each header reads back as the value that went in.
    values = {
        "outlet": single_line(outlet),
        "beat": single_line(beat),
        "desk": single_line(desk),
        "first_name": single_line(first_name),
    }
    want = headline
    for field, value in values.items():
        want = want.replace(draft.slot(field), value)
    want = single_line(want)
    assert message["Subject"] == want
    (to,) = message["To"].addresses
    assert to.addr_spec == address
    shown = single_line(recipient.display_name)[:MAX_NAME].strip()
    assert _words(to.display_name) == _words(shown)
    (sender_mailbox,) = message["From"].addresses
    assert sender_mailbox.addr_spec == "press@example.org"
    assert _words(sender_mailbox.display_name) == _words(sender or sender_address)
    if draft.reply_to:
        assert message["Reply-To"].addresses[0].addr_spec == draft.reply_to


ATTACKS = [
    "=?utf-8?q?Jo=0D=0AX-Injected:_yes?=",
    "=?utf-8?b?Sm8NClgtSW5qZWN0ZWQ6IHllcw==?=",
    "=?iso-8859-1?q?Jo=0ABcc:_leak@evil.example?=",
]


@hypothesis_settings(max_examples=300, deadline=None, database=None)
@given(attack=st.sampled_from(ATTACKS), cut=st.integers(min_value=0), via_list=st.booleans())
def test_encoded_text_split_across_the_two_names_never_reaches_to(
    attack: str, cut: int, via_list: bool
) -> None:
    """The To header joins first and last name with a space, and the email package decodes
    an encoded-word with a space inside: wherever the word is cut, the row is refused (by the
    list reader, or by the message with one clear line), never a ValueError or a new header."""
    first, last = attack[: cut % (len(attack) + 1)], attack[cut % (len(attack) + 1) :]
    if via_list:
        folder = Path(tempfile.mkdtemp())
        path = folder / "desk.csv"
        with path.open("w", encoding="utf-8", newline="") as out:
            csv.writer(out).writerows(
                [["email", "first_name", "last_name"], ["jo@example.com", first, last]]
            )
        audience = read_lists([path], set())
        if audience.problems:
            return
        (recipient,) = audience.recipients
    else:
        recipient = Recipient(email="jo@example.com", first_name=first, last_name=last)
    w = world()
    try:
        raw = message_bytes(
            build_message(w.draft, recipient, w.settings, campaign="c", step="s", date=NOW)
        )
    except DistributeError as exc:
        assert not via_list, "the list reader accepted a row the message refuses"
        _one_clear_line(exc)
        return
    message = _parse(raw)
    assert "X-Injected" not in message and "Bcc" not in message
    assert "\r" not in message["To"] and "\n" not in message["To"]


def test_the_property_builds_messages_too() -> None:
    """The property is not only refusals: ordinary hostile-looking text is sent, safely."""
    w = world()
    recipient = Recipient(
        email="jane.doe@example.com",
        first_name='Jo "Bcc: x@evil.example"',
        last_name="O'Brien\r\nBcc: y@evil.example",
        outlet="Daily <News>, (Paris); \\ é 😀",
        extra={"desk": "Science\u2028Bcc: z@evil.example"},
    )
    raw = message_bytes(
        build_message(w.draft, recipient, w.settings, campaign="c", step="s", date=NOW)
    )
    message = _parse(raw)
    assert "Bcc" not in message
    assert (
        message["To"].addresses[0].display_name
        == 'Jo "Bcc: x@evil.example" O\'Brien Bcc: y@evil.example'
    )
    assert "Daily <News>, (Paris); \\ é 😀" in message["Subject"]
    assert "Science Bcc: z@evil.example" in message["Subject"]


@pytest.mark.parametrize(
    "folded",
    [
        b"Subject: a\r\nBcc: x@evil.example\r\n",
        b"Subject: a\nBcc: x\r\n",
        b"Subject: a\r\n\r\n",
        b"Subject: a\r\n \r\n",
        b"Subject: a\rb\r\n",
        b"Subject: =?utf-8?q?a=0D=0AX-Injected:_yes?=\r\n",
        b"Subject: =?utf-8?b?YQ0KQmNjOiB4?=\r\n",
        b"Subject: a",
        b"To: a\r\n",
        b"Subject: " + b"a" * 1000 + b"\r\n",
    ],
    ids=[
        "new-header",
        "bare-lf",
        "empty-line",
        "blank-continuation",
        "bare-cr",
        "q-word-crlf",
        "b-word-crlf",
        "no-crlf",
        "other-name",
        "too-long",
    ],
)
def test_folded_bytes_are_checked(folded: bytes) -> None:
    with pytest.raises(HeaderError):
        verify_folded("Subject", folded, utf8=False)


def test_folded_bytes_that_are_one_header_pass() -> None:
    verify_folded("Subject", b"Subject: a\r\n b\r\n\t=?utf-8?q?caf=C3=A9?=\r\n", utf8=False)


@given(st.binary(max_size=200))
@hypothesis_settings(max_examples=300, deadline=None)
def test_dot_stuffing_leaves_one_end_of_data(data: bytes) -> None:
    """Whatever the bytes, the server sees one end-of-data mark: the last one."""
    stuffed = _dot_stuffed(data)
    assert stuffed.endswith(b"\r\n.\r\n")
    assert b"\r" not in stuffed.replace(b"\r\n", b"")
    assert b"\n" not in stuffed.replace(b"\r\n", b"")
    body = stuffed[: -len(b".\r\n")]
    assert not re.search(rb"(^|\r\n)\.\r\n", body)
    assert not re.search(rb"(^|\r\n)\.(?!\.)", body)


@given(
    st.lists(st.sampled_from([b"\r\n", b"\r", b"\n", b".", b"..", b"a", b"\xc3\xa9"])).map(b"".join)
)
@hypothesis_settings(max_examples=500, deadline=None)
def test_dot_stuffing_is_line_by_line(data: bytes) -> None:
    """The same bytes as normalising, splitting into lines and stuffing each line."""
    lines = re.sub(rb"\r\n|\r|\n", b"\r\n", data).split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    each = b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines)
    assert _dot_stuffed(data) == each + b"\r\n.\r\n"


def test_a_lone_lf_before_a_dot_is_stuffed() -> None:
    """The SMTP-smuggling sequence: LF "." CRLF must not end the data early."""
    stuffed = _dot_stuffed(b"Subject: x\r\n\r\nhello\n.\r\nMAIL FROM:<a@evil.example>\r\n")
    assert stuffed == (b"Subject: x\r\n\r\nhello\r\n..\r\nMAIL FROM:<a@evil.example>\r\n.\r\n")
