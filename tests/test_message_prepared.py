"""Per-recipient work is substitution: the parts are prepared once per draft, and the bytes
are those of personalising the whole draft and encoding each whole part, as before."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from distribute.config import Settings
from distribute.errors import HeaderError
from distribute.recipients import Recipient
from distribute.release import load_release
from distribute.render import message as message_module
from distribute.render.email import EmailDraft, draft_email
from distribute.render.message import _Body, _part, build_message, recipient_values

AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

NAMES = [
    ("Jo", "Doe"),
    ("Élodie", "Müller-Lefèvre"),
    ("美咲", "山田"),
    ("Zoë", "O'Brien"),
    ("Ana", 'd"Arc <x> & co'),
    ("A" * 300, "B" * 200),
    ("", ""),
    ("Jean-François", "Ñúñez " * 40),
]
OUTLETS = ["Le Monde & <Co>", "日本経済新聞", "x" * 500, ""]


def people(count: int) -> list[Recipient]:
    people = []
    for n in range(count):
        first, last = NAMES[n % len(NAMES)]
        address = f"p{n}@example.com" if n % 7 else f"ü{n}@exämple.com"
        people.append(
            Recipient(
                email=address,
                first_name=f"{first}{n}" if first else "",
                last_name=last,
                outlet=OUTLETS[n % len(OUTLETS)],
            )
        )
    return people


def reference(draft: EmailDraft, recipient: Recipient, settings: Settings) -> bytes:
    """The message as written before parts were prepared: the whole draft personalised,
    each whole part encoded."""
    values = recipient_values(recipient, settings, draft.language)
    subject, html, text = draft.personalise(values)
    ident = message_module.message_id("c", "s", recipient.email, settings.sender.domain)
    boundary = message_module._boundary(ident)
    head = message_module._head(
        draft, recipient, settings, values, subject, ident, boundary, "c", AT, ""
    )
    mark = boundary.encode("ascii")
    return (
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
        + b"--\r\n"
    )


@pytest.mark.parametrize("subject", [None, "{{ recipient.first_name }}: {{ release.title }}"])
@pytest.mark.parametrize("which", ["seed", "example"])
def test_prepared_parts_write_the_same_bytes(
    which: str,
    subject: str | None,
    seed_path: Path,
    example_path: Path,
    settings: Settings,
) -> None:
    path = seed_path if which == "seed" else example_path
    after = datetime(2027, 3, 10, 9, 0, tzinfo=UTC)  # past the example's embargo
    draft = draft_email(load_release(path), settings, at=after, subject=subject)
    compared = 0
    for recipient in people(120):
        try:
            expected = reference(draft, recipient, settings)
        except HeaderError:
            with pytest.raises(HeaderError):
                build_message(draft, recipient, settings, campaign="c", step="s", date=AT)
            continue
        built = build_message(draft, recipient, settings, campaign="c", step="s", date=AT)
        assert built.data == expected, recipient
        compared += 1
    assert compared >= 100


# Bodies as templates hold them: any text (controls, separators, long lines, trailing
# spaces, lone dots) with slots among it; values as recipient_values gives them: one line.
TAG = "s0123456789abcde"
text = st.text(
    st.characters(blacklist_categories=("Cs",)) | st.sampled_from(["\n", "\r", " ", "."]),
    max_size=300,
)
slot = st.sampled_from([f"%%{TAG}.first_name%%", f"%%{TAG}.email%%", f"%%{TAG}.outlet%%"])
body = st.lists(
    st.one_of(text, slot, st.sampled_from([" " * 80, "\r\n", ".\r\n"])), max_size=12
).map("".join)
one_line = st.text(st.characters(blacklist_categories=("Cs",)), max_size=120).map(
    lambda value: re.sub(r"[\r\n]", " ", value)
)


@settings_(max_examples=300, deadline=None)
@given(body=body, first=one_line, address=one_line, outlet=one_line, escape=st.booleans())
def test_a_prepared_body_encodes_as_the_whole_body(
    body: str, first: str, address: str, outlet: str, escape: bool
) -> None:
    values = {"first_name": first, "email": address, "outlet": outlet}
    draft = EmailDraft(
        "t", "s", html=body, text=body, preheader="", embargoed=False, reply_to=None, tag=TAG
    )
    _, html, plain = draft.personalise(values)
    whole = _part("text/html", html) if escape else _part("text/plain", plain)
    kind = "text/html" if escape else "text/plain"
    prepared = _Body.of(kind, body, TAG, escape=escape)
    assert prepared.fill(values) == whole
    # Lines without a slot were encoded once, not per recipient.
    assert sum(isinstance(piece, str) for piece in prepared.pieces) == sum(
        1 for line in re.split(r"\r\n?|\n", body) if f"%%{TAG}." in line
    )
