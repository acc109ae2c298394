"""Plain header values are written at once; the bytes are those of the whole route.

The whole route folds a value, checks the folded bytes (one field, CRLF only, no line over
998 octets, no encoded-word decoding to a control) and parses it back with
``email.headerregistry``. A value of printable ASCII without "=?" skips all of it: these
properties hold the two routes to the same bytes, or the same refusal, for names, addresses,
subjects and dates built from plain text and from the near-misses that must take the whole
route (quotes, encoded-word look-alikes, non-ASCII, long words, controls, bidi marks).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from distribute.config import Sender, Settings, Unsubscribe
from distribute.errors import HeaderError
from distribute.headers import _text_problem, header_text_problem
from distribute.recipients import Recipient
from distribute.render import message as message_module
from distribute.render.email import EmailDraft
from distribute.render.message import (
    _as_is,
    _date_header,
    _mailbox,
    _plain,
    _unstructured,
    _written,
    recipient_values,
)
from distribute.render.templates import _single_line, single_line

TAG = "s0123456789abcde"
NEAR_MISSES = [
    '"',
    "\\",
    "=?",
    "?=",
    "=?utf-8?q?Jo=0D=0A?=",
    "=?x?b?Sm8=?=",
    "=?",
    "é",
    "山田",
    "\t",
    "\x00",
    "\x1f",
    "\x7f",
    "\x85",
    "\u2028",
    "\u202e",
    "\u2066",
    "\ufeff",
    "  ",
    " ",
    "(",
    ")",
    "<",
    ">",
    ",",
    ";",
    ":",
    "@",
    ".",
    "x" * 80,
    "y" * 950,
]
PLAIN = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFXYZ0123456789-'+!#~"), max_size=20)
PIECE = st.one_of(PLAIN, st.sampled_from(NEAR_MISSES), st.characters(exclude_categories=("Cs",)))
TEXT = st.lists(PIECE, max_size=5).map("".join)
LOCAL = st.one_of(
    st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789.+_-"), min_size=1, max_size=30),
    st.sampled_from(['"a b"', "=?utf-8?q?a?=", "jo?=", "josé", "ü", "a" * 70, "o'brien"]),
)
DOMAIN = st.sampled_from(["example.com", "example.org", "exämple.com", "mail.example.com"])
ZONES = st.sampled_from(
    [
        UTC,
        ZoneInfo("Europe/Paris"),
        ZoneInfo("America/New_York"),
        timezone(timedelta(hours=5, minutes=30)),
        None,
    ]
)

SETTINGS = Settings(
    workspace=Path("."),
    sender=Sender("Valmont Press Office", "press@example.org"),
    unsubscribe=Unsubscribe("unsubscribe@example.org", "https://www.example.org/u?email={email}"),
)


def _outcome(write: Callable[[], bytes]) -> bytes | str:
    """The bytes written, or the refusal's text."""
    try:
        result = write()
    except HeaderError as exc:
        return f"refused: {exc}"
    assert isinstance(result, bytes)
    return result


@hypothesis_settings(max_examples=600, deadline=None, database=None)
@given(first=TEXT, last=TEXT, local=LOCAL, domain=DOMAIN, subject=TEXT, outlet=TEXT)
@example(first="Jo", last="Doe", local="jo", domain="example.com", subject="Launch", outlet="")
@example(first='Jo "J"', last="Doe", local="jo", domain="example.com", subject="", outlet="")
@example(first="=?utf-8?q?J?=", last="", local="jo", domain="example.com", subject="", outlet="")
@example(first="x" * 990, last="", local="jo", domain="example.com", subject="y" * 990, outlet="")
def test_fast_headers_are_the_whole_routes(
    first: str, last: str, local: str, domain: str, subject: str, outlet: str
) -> None:
    recipient = Recipient(
        email=f"{local}@{domain}", first_name=first, last_name=last, outlet=outlet
    )
    draft = EmailDraft(
        "t",
        f"{subject} %%{TAG}.outlet%%",
        html="",
        text="",
        preheader="",
        embargoed=False,
        reply_to=None,
        tag=TAG,
    )
    at = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=ZoneInfo("Europe/Paris"))

    def head(fast: bool) -> bytes:
        values = recipient_values(recipient, SETTINGS, "en")
        title = draft.personalise_subject(values)
        ident = message_module.message_id("c", "s", recipient.email, "example.org")
        boundary = message_module._boundary(ident)
        return message_module._head(
            draft, recipient, SETTINGS, values, title, ident, boundary, "c", at, "", fast=fast
        )

    assert _outcome(partial(head, True)) == _outcome(partial(head, False))


@hypothesis_settings(max_examples=1500, deadline=None, database=None)
@given(name=TEXT, local=LOCAL, domain=DOMAIN, text=TEXT, utf8=st.booleans())
@example(name="Jo Doe", local="jo", domain="example.com", text="Launch day", utf8=False)
@example(name="Jo", local="jo", domain="example.com", text=" Launch", utf8=False)
@example(name="Jo", local="jo", domain="example.com", text="Launch\x01", utf8=False)
@example(name="", local="jo", domain="example.com", text="a" * 900 + " b", utf8=True)
def test_each_fast_line_is_the_whole_routes(
    name: str, local: str, domain: str, text: str, utf8: bool
) -> None:
    """One line at a time, as the header block writes them: a mailbox (To, From, Reply-To),
    a text that must read back as itself (Subject), a value with nothing to read back, and
    raw text (controls, line breaks, spaces at either end) that only the checks refuse."""
    raw = text
    name, text = single_line(name), single_line(text)
    mailbox = (name, f"{local}@{domain}")
    cases = [
        ("To", _mailbox(*mailbox, utf8=utf8), mailbox),
        ("Subject", _unstructured(text, utf8=utf8), text),
        ("List-Unsubscribe", f"<mailto:u@example.org?subject={text}>", None),
        ("X-Text", raw, raw),
        ("X-Raw", raw, None),
    ]
    for header, value, expected in cases:
        fast = _outcome(partial(_written, utf8, header, value, expected, fast=True))
        whole = _outcome(partial(_written, utf8, header, value, expected, fast=False))
        assert fast == whole, (header, value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("To", "Jo Doe <jo@example.com>"),
        ("Date", "Mon, 05 Jan 2026 09:00:00 +0000"),
        ("Subject", "Launch of the new hydrogen plant"),
        ("List-Unsubscribe", "<mailto:u@example.org?subject=x>, <https://www.example.org/u>"),
        ("Content-Type", 'multipart/alternative; boundary="=_' + "a" * 40 + '"'),
    ],
)
def test_plain_lines_take_the_fast_route(name: str, value: str) -> None:
    assert _as_is(name, value) == _written(False, name, value, fast=False)


class Counted:
    """Counts the whole route's checks while a line is written."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        for name in ("verify_folded", "_reads_back"):
            original = getattr(message_module, name)

            def counted(*args: Any, _name: str = name, _original: Any = original, **kw: Any) -> Any:
                self.calls.append(_name)
                return _original(*args, **kw)

            monkeypatch.setattr(message_module, name, counted)


# Each is folded and checked as bytes, and parsed back unless it is atoms and a dot-atom
# address free of "=?" and "?=" (an encoded-word look-alike among atoms is refused before,
# by header_text_problem, and checked as bytes here).
@pytest.mark.parametrize(
    "mailbox",
    [
        ('Jo "J" Doe', "jo@example.com"),
        ("Jo \\ Doe", "jo@example.com"),
        ("Jo (Doe)", "jo@example.com"),
        ("Doe, Jo", "jo@example.com"),
        ("Jo <x>", "jo@example.com"),
        ("Jo: Doe", "jo@example.com"),
        ("Jo D.", "jo@example.com"),
        ("jo@doe", "jo@example.com"),
        ("Élodie", "e@example.com"),
        ("=?utf-8?q?Jo?=", "jo@example.com"),
        ("Jo", "=?utf-8?q?jo?=@example.com"),
        ("Jo", "jo?=@example.com"),
        ("Jo", "josé@exämple.com"),
        ("Jo", '"jo doe"@example.com'),
    ],
    ids=str,
)
def test_mailboxes_that_are_not_plain_take_the_whole_route(
    mailbox: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = Counted(monkeypatch)
    utf8 = not mailbox[1].isascii()
    _outcome(partial(_written, utf8, "To", _mailbox(*mailbox, utf8=utf8), mailbox))
    assert "verify_folded" in counted.calls
    assert ("_reads_back" in counted.calls) is not _plain(mailbox)


# Each must be folded and checked as bytes, and the subject parsed back.
@pytest.mark.parametrize(
    "subject",
    [
        "Launch =?utf-8?q?x?= day",
        "Launch =? day",
        "Launch café",
        "Launch \x85 day",
        "Launch \x7f day",
        "Launch \u202e day",
        "Launch\tday",
        " Launch",
        "Launch " + "y" * 995,
    ],
    ids=repr,
)
def test_subjects_that_are_not_plain_take_the_whole_route(
    subject: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = Counted(monkeypatch)
    _outcome(partial(_written, True, "Subject", subject, subject))
    assert counted.calls


def test_a_plain_mailbox_and_subject_take_the_fast_route(monkeypatch: pytest.MonkeyPatch) -> None:
    counted = Counted(monkeypatch)
    mailbox = ("Jo O'Brien-Doe", "jo.doe+desk@example.com")
    _written(False, "To", _mailbox(*mailbox, utf8=False), mailbox)
    _written(False, "Subject", "Launch: the plant opens (today)", "Launch: the plant opens (today)")
    assert counted.calls == []


def test_a_line_over_998_octets_takes_the_whole_route() -> None:
    assert _as_is("Subject", "a " + "b" * 996) is None
    # Folded, each word on its line: the fast route writes what the whole route writes.
    assert _as_is("Subject", "a " + "b" * 900) == _written(
        False, "Subject", "a " + "b" * 900, fast=False
    )


@hypothesis_settings(max_examples=300, deadline=None, database=None)
@given(
    st.lists(
        st.tuples(
            st.datetimes(
                min_value=datetime(1970, 1, 2),
                max_value=datetime(2100, 1, 1),
                allow_imaginary=False,
            ),
            ZONES,
            st.booleans(),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_the_date_line_is_the_whole_routes(moments: list[tuple[datetime, object, bool]]) -> None:
    """One after the other, as a send writes them: the line kept for the last second is
    used only when the next date writes the same."""
    for wall, zone, fold in moments:
        date = wall.replace(tzinfo=zone, fold=int(fold))  # type: ignore[arg-type]
        assert _date_header(date) == _written(False, "Date", format_datetime(date), fast=False)


def test_the_same_instant_in_two_zones_gets_two_date_lines() -> None:
    paris = datetime(2026, 1, 5, 10, 0, tzinfo=ZoneInfo("Europe/Paris"))
    utc = paris.astimezone(UTC)
    assert paris == utc
    assert _date_header(paris) == b"Date: Mon, 05 Jan 2026 10:00:00 +0100\r\n"
    assert _date_header(utc) == b"Date: Mon, 05 Jan 2026 09:00:00 +0000\r\n"


@hypothesis_settings(max_examples=1000, deadline=None, database=None)
@given(TEXT)
@example("Jo  Doe ")
@example(" Jo\tDoe")
def test_single_line_fast_route(text: str) -> None:
    assert single_line(text) == _single_line(text)


@hypothesis_settings(max_examples=1000, deadline=None, database=None)
@given(TEXT)
@example("=?utf-8?q?x?=")
@example("Jo\u202e")
def test_header_text_problem_fast_route(text: str) -> None:
    assert header_text_problem(text) == _text_problem(text)


URLS = st.one_of(
    st.none(), st.builds("https://www.example.org/u?email={{email}}&from={}".format, TEXT)
)


@hypothesis_settings(max_examples=300, deadline=None, database=None)
@given(
    sender=TEXT,
    sender_local=LOCAL,
    reply_name=TEXT,
    reply=st.booleans(),
    mailbox_local=LOCAL,
    url=URLS,
    campaign=TEXT,
    prefix=TEXT,
    desk=TEXT,
)
@example(
    sender="Valmont Press Office",
    sender_local="press",
    reply_name="Jo Doe",
    reply=True,
    mailbox_local="unsubscribe",
    url=None,
    campaign="launch",
    prefix="",
    desk="Science",
)
@example(
    sender="=?utf-8?q?Jo?=",
    sender_local="press",
    reply_name="",
    reply=False,
    mailbox_local="u",
    url=None,
    campaign="c",
    prefix="",
    desk="",
)
@example(
    sender="",
    sender_local="press",
    reply_name="=?utf-8?q?Jo=0D=0A?=",
    reply=True,
    mailbox_local="u",
    url=None,
    campaign="c",
    prefix="",
    desk="",
)
def test_headers_from_the_settings_are_the_whole_routes(
    sender: str,
    sender_local: str,
    reply_name: str,
    reply: bool,
    mailbox_local: str,
    url: str | None,
    campaign: str,
    prefix: str,
    desk: str,
) -> None:
    """What the configuration and the campaign put in every message (From, Reply-To,
    List-Id, List-Unsubscribe, a subject prefix) and a list's own column in the subject."""
    settings = Settings(
        workspace=Path("."),
        sender=Sender(sender, f"{sender_local}@example.org"),
        unsubscribe=Unsubscribe(f"{mailbox_local}@example.org", url),
    )
    recipient = Recipient(email="jo@example.com", first_name="Jo", extra={"desk": desk})
    reply_to = _mailbox(reply_name, f"{sender_local}@example.org", utf8=False) if reply else None
    draft = EmailDraft(
        "t",
        f"Launch %%{TAG}.desk%%",
        html="",
        text="",
        preheader="",
        embargoed=False,
        reply_to=reply_to,
        tag=TAG,
    )
    at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def head(fast: bool) -> bytes:
        values = recipient_values(recipient, settings, "en")
        title = draft.personalise_subject(values)
        ident = message_module.message_id(campaign, "s", recipient.email, "example.org")
        boundary = message_module._boundary(ident)
        return message_module._head(
            draft,
            recipient,
            settings,
            values,
            title,
            ident,
            boundary,
            campaign,
            at,
            prefix,
            fast=fast,
        )

    assert _outcome(partial(head, True)) == _outcome(partial(head, False))
