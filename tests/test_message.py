from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from distribute.config import Settings
from distribute.recipients import Recipient
from distribute.release import load_release
from distribute.render import email as email_render
from distribute.render.email import GMAIL_CLIP_BYTES, draft_email
from distribute.render.message import build_message, message_bytes, message_id

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
JANE = Recipient(email="jane.doe@example.com", first_name="Jane", last_name="Doe")


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def render(release_path: Path, settings: Settings, recipient: Recipient = JANE) -> bytes:
    draft = draft_email(load_release(release_path), settings, at=NOW)
    return message_bytes(
        build_message(draft, recipient, settings, campaign="c", step="s", date=NOW)
    )


def parts(message: EmailMessage) -> list[EmailMessage]:
    return [p for p in message.walk() if not p.is_multipart()]  # type: ignore[misc]


def bodies(message: EmailMessage) -> tuple[str, str]:
    """(text, html); the email package keeps the wire's CRLF in decoded bodies."""
    text, html = (p.get_content().replace("\r\n", "\n") for p in parts(message))
    return text, html


def test_seed_message_structure(seed_path: Path, settings: Settings) -> None:
    raw = render(seed_path, settings)
    # CRLF everywhere and no line over 998 octets (RFC 5322 section 2.1.1).
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    message = parse(raw)
    for header in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version"):
        assert len(message.get_all(header, [])) == 1, header
    assert len(message.get_all("List-Unsubscribe", [])) == 1
    assert message["Subject"] == "Institut Mines-Télécom among the Top 50 patent applicants"
    assert message["From"] == "Valmont Press Office <press@example.org>"
    assert message["To"] == "Jane Doe <jane.doe@example.com>"
    # No Reply-To configured: the release's press contact answers.
    assert message["Reply-To"] == load_release(seed_path).contacts[0].emails[0]
    assert message.get_content_type() == "multipart/alternative"
    kinds = [p.get_content_type() for p in parts(message)]
    assert kinds == ["text/plain", "text/html"]


def test_seed_text_part_is_clean(seed_path: Path, settings: Settings) -> None:
    text, _ = bodies(parse(render(seed_path, settings)))
    for residue in ("**", "<sup>", "](http", "%%"):
        assert residue not in text
    assert "21st century" in text
    assert "Research partnerships, a key model for IMT" in text
    assert "label. The growth of our research partnerships" in " ".join(text.split())
    assert "About Institut Mines-Télécom" in text
    assert "\n###\n" in text
    # Full URLs stand on their own lines.
    lines = text.splitlines()
    assert "http://www.imt.fr/en" in lines
    assert "https://twitter.com/IMTFrance" in lines
    assert "https://www.example.org/unsubscribe?email=jane.doe@example.com" in lines


def test_seed_html_part_inlined_and_responsive(seed_path: Path, settings: Settings) -> None:
    _, html = bodies(parse(render(seed_path, settings)))
    assert 'style="' in html
    assert "@media only screen and (max-width: 620px)" in html
    assert "@media (prefers-color-scheme: dark)" in html
    assert "!important" in html
    assert 'name="color-scheme"' in html
    assert 'role="presentation"' in html
    assert "21<sup>st</sup>" in html
    assert "Dear Jane," in html
    assert 'href="https://www.example.org/unsubscribe?email=jane.doe@example.com"' in html
    assert len(html.encode()) < GMAIL_CLIP_BYTES


def test_list_unsubscribe_headers(example_path: Path, settings: Settings) -> None:
    message = parse(render(example_path, settings))
    assert message["List-Unsubscribe"] == (
        "<mailto:unsubscribe@example.org?subject=unsubscribe%20jane.doe%40example.com>, "
        "<https://www.example.org/unsubscribe?email=jane.doe@example.com>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Id"] == "Valmont Press Office <c.example.org>"


def test_no_one_click_without_https(example_path: Path, workspace: Path) -> None:
    from distribute.config import load_settings

    message = parse(render(example_path, load_settings(workspace=workspace)))
    assert message["List-Unsubscribe"].startswith("<mailto:press@example.org?")
    assert "List-Unsubscribe-Post" not in message


def test_embargo_prefix_and_banner(example_path: Path, settings: Settings) -> None:
    message = parse(render(example_path, settings))
    assert message["Subject"].startswith("EMBARGOED until 10 March 2027 08:00 CET: Valmont")
    text, html = bodies(message)
    assert text.startswith("*** EMBARGOED until 10 March 2027 08:00 CET ***")
    assert 'class="embargo"' in html
    after = datetime(2027, 3, 10, 7, 0, tzinfo=UTC)
    draft = draft_email(load_release(example_path), settings, at=after)
    assert not draft.embargoed
    assert not draft.subject.startswith("EMBARGOED")
    assert 'class="embargo"' not in draft.html


def test_header_injection_through_name(seed_path: Path, settings: Settings) -> None:
    evil = Recipient(email="victim@example.com", name="Evil\r\nBcc: x@example.net")
    raw = render(seed_path, settings, evil)
    message = parse(raw)
    assert "Bcc" not in message
    assert b"\r\nBcc:" not in raw
    assert message["To"].addresses[0].addr_spec == "victim@example.com"


def test_script_in_name_is_escaped(seed_path: Path, settings: Settings) -> None:
    sneaky = Recipient(email="s@example.com", first_name="<script>alert(1)</script>")
    text, html = bodies(parse(render(seed_path, settings, sneaky)))
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Dear <script>alert(1)</script>," in text  # the text part is not HTML


def test_message_id_is_deterministic(example_path: Path, settings: Settings) -> None:
    first = parse(render(example_path, settings))["Message-ID"]
    again = parse(render(example_path, settings))["Message-ID"]
    assert first == again == message_id("c", "s", "jane.doe@example.com", "example.org")
    assert message_id("c", "other", "jane.doe@example.com", "example.org") != first
    assert first.endswith("@example.org>")


@given(
    st.text(min_size=1),
    st.text(min_size=1),
    st.emails(),
    st.lists(
        st.text(alphabet="0123456789abcdef", min_size=8, max_size=8),
        min_size=2,
        max_size=2,
        unique=True,
    ),
)
def test_message_id_tells_releases_apart(
    campaign: str, step: str, address: str, versions: list[str]
) -> None:
    """A retry of one message keeps its id; another version of the release never shares it."""
    first, second = (message_id(campaign, step, address, "example.org", v) for v in versions)
    assert first == message_id(campaign, step, address.upper(), "example.org", versions[0])
    assert first != second


def test_premailer_runs_once_per_variant(
    example_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = email_render.inline_css
    monkeypatch.setattr(email_render, "inline_css", lambda html: calls.append(1) or real(html))
    draft = draft_email(load_release(example_path), settings, at=NOW)
    for number in range(50):
        person = Recipient(email=f"j{number}@example.com", first_name=f"J{number}")
        build_message(draft, person, settings, campaign="c", step="s", date=NOW)
    assert len(calls) == 1


def test_oversized_html_warns(tmp_path: Path, settings: Settings) -> None:
    big = tmp_path / "big.md"
    paragraph = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 20
    big.write_text("# Big\n\n" + "\n\n".join([paragraph] * 120), encoding="utf-8")
    draft = draft_email(load_release(big), settings, at=NOW)
    assert draft.html_bytes > GMAIL_CLIP_BYTES
    assert any("Gmail clips" in note for note in draft.warnings)


def test_inline_subject_is_not_html_escaped(example_path: Path, settings: Settings) -> None:
    after = datetime(2027, 3, 10, 7, 0, tzinfo=UTC)
    draft = draft_email(
        load_release(example_path), settings, at=after, subject="R&D <news>: {{ release.title }}"
    )
    assert draft.subject.startswith("R&D <news>: Valmont Institute opens")


def test_names_from_a_dirty_list_add_no_header(settings: Settings, example_path: Path) -> None:
    """CR/LF inside a CSV field, read by the list loader, rendered by the message builder."""
    from distribute.recipients import read_lists

    audience = read_lists([Path(__file__).parent / "data" / "lists" / "dirty.csv"], set())
    eve = next(r for r in audience.recipients if r.email == "eve@example.org")
    mallory = next(r for r in audience.recipients if r.email == "mallory@example.net")
    draft = draft_email(load_release(example_path), settings, at=NOW)
    for person in (eve, mallory):
        raw = message_bytes(
            build_message(draft, person, settings, campaign="c", step="s", date=NOW)
        )
        message = parse(raw)
        assert "Bcc" not in message
        head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        assert not [line for line in head if line.lower().startswith(b"bcc")]
        assert message["To"].addresses[0].addr_spec == person.email
        assert "<script>" not in bodies(message)[1]


def test_long_addresses_keep_list_unsubscribe_verbatim(
    example_path: Path, settings: Settings
) -> None:
    long = Recipient(email="christophe.lefebvre-dupont@ouest-france.example.com", name="C")
    raw = render(example_path, settings, long)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert (
        "=?" not in head.split("List-Unsubscribe:", 1)[1].split("\r\nList-Unsubscribe-Post", 1)[0]
    )
    message = parse(raw)
    assert message["List-Unsubscribe"] == (
        "<mailto:unsubscribe@example.org?subject=unsubscribe%20"
        "christophe.lefebvre-dupont%40ouest-france.example.com>, "
        "<https://www.example.org/unsubscribe?email="
        "christophe.lefebvre-dupont@ouest-france.example.com>"
    )


def test_internationalised_recipient_gets_utf8_headers(
    example_path: Path, settings: Settings
) -> None:
    jurgen = Recipient(email="jürgen@exämple.org", first_name="Jürgen", last_name="Müller")
    raw = render(example_path, settings, jurgen)
    assert "To: Jürgen Müller <jürgen@exämple.org>\r\n".encode() in raw
    # An SMTPUTF8 receiver reads the headers as UTF-8 (the bytes parser would not).
    message = email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)
    assert message["To"].addresses[0].addr_spec == "jürgen@exämple.org"
    assert message["Subject"].startswith("EMBARGOED")


@pytest.mark.parametrize(
    ("name", "phrase"),
    [
        ("Press Office", "Press Office"),
        ("Press, Office (IMT)", '"Press, Office (IMT)"'),
        ("Communiqués", "=?utf-8?q?Communiqu=C3=A9s?="),
    ],
    ids=["plain", "specials-quoted", "non-ascii-encoded"],
)
def test_list_id_phrase(name: str, phrase: str, settings: Settings) -> None:
    from dataclasses import replace

    from distribute.render.message import list_id

    named = replace(settings, sender=replace(settings.sender, name=name))
    assert list_id("Hydrogen Platform", named) == f"{phrase} <hydrogen-platform.example.org>"


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        ("{{ release.title ~ (release.hashtags | length / 0) }}", "division by zero"),
        ("{{ '%d' % release.title }}", "format"),
        ("{{ release.nope }}", "undefined variable"),
    ],
    ids=["zero-division", "bad-format", "undefined"],
)
def test_inline_subject_failures_are_template_errors(
    example_path: Path, settings: Settings, subject: str, message: str
) -> None:
    from distribute.errors import TemplateError

    with pytest.raises(TemplateError, match=message) as raised:
        draft_email(load_release(example_path), settings, at=NOW, subject=subject)
    assert raised.value.path == "subject"


def test_empty_subject_is_refused(example_path: Path, settings: Settings) -> None:
    from distribute.errors import TemplateError

    with pytest.raises(TemplateError, match="the subject is empty"):
        draft_email(load_release(example_path), settings, at=NOW, subject="{{ '' }}  ")


def test_contact_role_is_shown(tmp_path: Path, settings: Settings) -> None:
    release = tmp_path / "r.md"
    release.write_text(
        "# Title here\n\n**Lead.**\n\nBody.\n\n**Press contact:**\n\n"
        "Jane Smith, Head of Press – +44 20 7946 0000 – jane.smith@example.org\n",
        encoding="utf-8",
    )
    draft = draft_email(load_release(release), settings, at=NOW)
    assert "\nJane Smith, Head of Press\n+44 20 7946 0000\njane.smith@example.org\n" in draft.text
    assert "Jane Smith, Head of Press<br>" in draft.html


@given(
    st.lists(
        st.sampled_from(["a" * 74, " ", "\t", "=", ".", "From ", "\n", "\r\n", "é", "𐀀", "\x00"])
        | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80)
    ).map("".join)
)
@settings_(max_examples=150, deadline=None)
def test_quoted_printable_parts_round_trip(body: str) -> None:
    """Whatever the text, the encoded part decodes to it, in lines of at most 76 octets."""
    from distribute.render.message import _part

    raw = _part("text/plain", body)
    encoded = raw.split(b"\r\n\r\n", 1)[1]
    assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))  # RFC 2045 section 6.7
    assert b"\n" not in raw.replace(b"\r\n", b"")
    part = email.message_from_bytes(raw, policy=email.policy.default)
    decoded = part.get_payload(decode=True).decode("utf-8").replace("\r\n", "\n")
    assert decoded == re.sub(r"\r\n?", "\n", body)  # any line ending becomes CRLF on the wire


def test_long_names_and_non_ascii_senders_keep_headers_valid(
    example_path: Path, settings: Settings
) -> None:
    from dataclasses import replace

    long_sender = "Institut Mines-Télécom — Direction de la communication et des relations presse"
    named = replace(settings, sender=replace(settings.sender, name=long_sender))
    someone = Recipient(email="x@example.com", name="N" * 1100)
    raw = render(example_path, named, someone)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 998
    for word in re.findall(rb"=\?utf-8\?q\?[^?]*\?=", head):
        assert len(word) <= 75, word  # RFC 2047 section 2
    message = parse(raw)
    assert message["List-Id"] == f"{long_sender} <c.example.org>"
    assert len(message["To"].addresses[0].display_name) == 200
