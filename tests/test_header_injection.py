"""Header injection end to end: lists, releases, subjects and --to, through the command line,
a dry run and a live send to a real SMTP server on loopback.

What the campaign check accepts, the send sends; what the send would refuse, the check (and
``recipients check``) names with its file and line, before anything goes out.
"""

from __future__ import annotations

import email
import email.policy
import json
import shutil
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from smtp_double import SmtpServer

from distribute.channels.base import Envelope
from distribute.channels.smtp import SmtpChannel
from distribute.cli import cli
from distribute.config import SmtpSettings

ROOT = Path(__file__).resolve().parents[1]
HEADER = "email,first_name,last_name,outlet,language"
GOOD_ROWS = [f"j{n:02d}@example.com,Jo{n},Doe,Daily {n},en" for n in range(12)]
OUTLET_ATTACK = "=?utf-8?q?Daily=0D=0AX-Injected:_yes=0D=0A=0D=0A<h1>Phish</h1>?="
ENCODED = (
    "RFC 2047 encoded text (=?...?=), which mail programs decode, so it could add header "
    "lines; write the text itself"
)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def setup(
    workspace: Path,
    rows: list[str],
    *,
    subject: str | None = None,
    port: int | None = None,
    release: str | None = None,
) -> Path:
    """A workspace with one list ``desk`` and a campaign ``launch.toml`` mailing it."""
    config = (
        '[sender]\nfrom = "Valmont Press Office <press@example.org>"\n'
        '[unsubscribe]\nurl = "https://www.example.org/unsubscribe?email={email}"\n'
        '[paths]\nrecipients = "recipients"\n'
    )
    if port is not None:
        config += f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\nconnections = 2\n'
    (workspace / "distribute.toml").write_text(config, encoding="utf-8")
    (workspace / "recipients").mkdir(exist_ok=True)
    (workspace / "recipients" / "desk.csv").write_text(
        "\n".join([HEADER, *rows]) + "\n", encoding="utf-8"
    )
    if release is None:
        shutil.copy(ROOT / "releases" / "hydrogen.md", workspace / "release.md")
    else:
        (workspace / "release.md").write_text(release, encoding="utf-8")
    step = '[[email]]\nname = "desk"\nlists = ["desk"]\nat = "2027-03-10 08:00"\n'
    if subject is not None:
        step += f"subject = {json.dumps(subject)}\n"
    path = workspace / "launch.toml"
    path.write_text(f'name = "launch"\nrelease = "release.md"\n{step}', encoding="utf-8")
    return path


def outbox(workspace: Path) -> list[Path]:
    folder = workspace / "outbox" / "launch" / "desk" / "new"
    return sorted(folder.iterdir()) if folder.is_dir() else []


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as smtp:
        yield smtp


# --------------------------------------------------------------------------- lists


def test_recipients_check_names_an_encoded_first_name(workspace: Path) -> None:
    setup(workspace, [*GOOD_ROWS[:1], "jo@example.com,=?utf-8?q?Jo=0D=0A?=,Doe,Daily,en"])
    result = run("recipients", "check")
    assert result.exit_code == 1
    assert (
        f"recipients/desk.csv:3: first_name holds '=?utf-8?q?Jo=0D=0A?=', {ENCODED}\n"
        in result.stdout
    )


def test_an_encoded_first_name_stops_the_dry_run_before_any_message(workspace: Path) -> None:
    """Before: the check passed and the send stopped after 10 messages with a ValueError."""
    bad = "jo@example.com,=?utf-8?q?Jo=0D=0A?=,Doe,Daily,en"
    campaign = setup(workspace, [*GOOD_ROWS, bad])
    result = run("send", str(campaign))
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: 1 invalid row in the journalist lists:\n"
        f"  recipients/desk.csv:14: first_name holds '=?utf-8?q?Jo=0D=0A?=', {ENCODED}\n"
        "`distribute recipients check` shows them all; `distribute send --skip-invalid` "
        "sends to the valid rows and lists the others.\n"
    )
    assert outbox(workspace) == []


def test_an_encoded_address_is_an_invalid_row(workspace: Path) -> None:
    """ "=" and "?" are allowed in an address; the To header would show another one."""
    setup(workspace, ["=?utf-8?q?a?=@example.com,Jo,Doe,Daily,en"])
    result = run("recipients", "check")
    assert result.exit_code == 1
    assert "recipients/desk.csv:2: invalid address '=?utf-8?q?a?=@example.com'" in result.stdout


def test_outlet_injection_in_a_subject_is_refused_live(workspace: Path, server: SmtpServer) -> None:
    campaign = setup(
        workspace,
        [*GOOD_ROWS, f"jo@example.com,Jo,Doe,{OUTLET_ATTACK},en"],
        subject="{{ release.title }} for {{ recipient.outlet }}",
        port=server.port,
    )
    result = run("send", str(campaign), "--live")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: 1 invalid row in the journalist lists:\n"
        "  recipients/desk.csv:14: outlet holds "
        f"'=?utf-8?q?Daily=0D=0AX-Injected:_yes=0D=0A=0D=0…', {ENCODED}\n"
        "`distribute recipients check` shows them all; `distribute send --skip-invalid` "
        "sends to the valid rows and lists the others.\n"
    )
    assert server.received == []


def test_slots_that_make_encoded_text_together_are_named_by_the_check(
    workspace: Path, server: SmtpServer
) -> None:
    """Neither value alone is encoded text; the subject they make is, for this row only."""
    row = "jo@example.com,=?utf-8?q?Jo,Doe,=0D=0ABcc:_x@evil.example?=,en"
    campaign = setup(
        workspace,
        [*GOOD_ROWS, row],
        subject="{{ recipient.first_name }}{{ recipient.outlet }}",
        port=server.port,
    )
    assert run("recipients", "check").exit_code == 0
    result = run("send", str(campaign), "--live")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: 1 row of the journalist lists cannot be written into this step's headers:\n"
        "  recipients/desk.csv:14: [[email]] 'desk': the subject "
        "'EMBARGOED until 10 March 2027 08:00 CET: =?utf-8?q?Jo=0D=0ABcc:_x@evil.example?=': "
        f"holds '=?utf-8?q?Jo=0D=0ABcc:_x@evil.example?=', {ENCODED}\n"
        "`distribute send --skip-invalid` sends to the other rows and lists these.\n"
    )
    assert server.received == []


def test_every_row_the_headers_refuse_is_named_and_skip_invalid_sends_the_rest(
    workspace: Path, server: SmtpServer
) -> None:
    """Before: the first such row stopped the send, --skip-invalid or not."""
    rows = [
        "jo@example.com,=?utf-8?q?Jo,Doe,=0D=0ABcc:_x@evil.example?=,en",
        "al@example.com,=?utf-8?b?,Doe,QmNjOiB4?=,en",
    ]
    campaign = setup(
        workspace,
        [*GOOD_ROWS[:3], *rows],
        subject="{{ recipient.first_name }}{{ recipient.outlet }}",
        port=server.port,
    )
    result = run("send", str(campaign), "--live")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: 2 rows of the journalist lists cannot be written into this step's headers:\n"
        "  recipients/desk.csv:5: [[email]] 'desk': the subject "
    )
    assert "\n  recipients/desk.csv:6: [[email]] 'desk': the subject " in result.stderr
    assert server.received == []

    result = run("send", str(campaign), "--live", "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert sorted(r for item in server.received for r in item.recipients) == [
        "j00@example.com",
        "j01@example.com",
        "j02@example.com",
    ]
    assert "recipients/desk.csv:5: not mailed: [[email]] 'desk': the subject" in result.output
    assert "recipients/desk.csv:6: not mailed: [[email]] 'desk': the subject" in result.output


@pytest.mark.parametrize(
    ("first", "last"),
    [
        ("=?utf-8?q?Jo", "=0D=0AX-Injected:_yes?="),
        ("=?utf-8?q?Jo=0D=0AX-Injected:_yes", "?="),
        ("=?utf-8?", "q?Jo=0D=0A?="),
    ],
    ids=["split-in-text", "close-alone", "split-in-charset"],
)
def test_encoded_text_split_across_first_and_last_name_is_an_invalid_row(
    workspace: Path, first: str, last: str
) -> None:
    """The To header always joins the two names: before, the list check passed and the send
    died with a ValueError traceback (or wrote the joined encoded text into To)."""
    campaign = setup(workspace, [*GOOD_ROWS, f"jo@example.com,{first},{last},Daily,en"])
    joined = f"{first} {last}"
    line = (
        f"recipients/desk.csv:14: first_name + last_name (the To name) holds {joined!r}, {ENCODED}"
    )
    check = run("recipients", "check")
    assert check.exit_code == 1
    assert line + "\n" in check.stdout
    result = run("send", str(campaign))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: 1 invalid row in the journalist lists:\n  {line}\n"
        "`distribute recipients check` shows them all; `distribute send --skip-invalid` "
        "sends to the valid rows and lists the others.\n"
    )
    assert outbox(workspace) == []


def test_encoded_text_in_a_step_subject_names_the_campaign_file(workspace: Path) -> None:
    campaign = setup(workspace, GOOD_ROWS, subject="=?utf-8?q?Launch=0D=0ABcc:_leak@evil.example?=")
    result = run("send", str(campaign))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {campaign}:7: [[email]] 'desk': subject: the subject "
        "'=?utf-8?q?Launch=0D=0ABcc:_leak@evil.example?=':"
        f" holds '=?utf-8?q?Launch=0D=0ABcc:_leak@evil.example?=', {ENCODED}\n"
    )
    assert outbox(workspace) == []


def test_hostile_looking_text_that_is_not_encoded_is_sent_safely(
    workspace: Path, server: SmtpServer
) -> None:
    """Quotes, "Bcc:", dots, line separators and accents are text: sent, never headers."""
    rows = [
        'a@example.com,"Jo ""Bcc: x@evil.example""",Doe\u2028Bcc: y@evil.example,'
        '"Daily, (Paris) <News>",en',
        'b@example.com,Zoë,"O\'Brien\r\n.\r\nQUIT",La Dépêche,en',
        "c@example.com,.,.,.,en",
    ]
    campaign = setup(
        workspace,
        rows,
        subject="{{ release.title }} for {{ recipient.outlet }}",
        port=server.port,
    )
    result = run("send", str(campaign), "--live")
    assert result.exit_code == 0, result.output
    assert len(server.received) == 3
    title = "Valmont Institute opens a hydrogen test platform for regional industry"
    outlets = {
        "a@example.com": "Daily, (Paris) <News>",
        "b@example.com": "La Dépêche",
        "c@example.com": ".",
    }
    for item in server.received:
        assert b"\r" not in item.data.replace(b"\r\n", b"")
        assert b"\n" not in item.data.replace(b"\r\n", b"")
        message = item.message
        assert list(message.keys()) == [
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
        (to,) = message["To"].addresses
        assert [to.addr_spec] == item.recipients
        assert message["Subject"] == (
            f"EMBARGOED until 10 March 2027 08:00 CET: {title} for {outlets[to.addr_spec]}"
        )
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    names = {m.message["To"].addresses[0].display_name for m in server.received}
    assert names == {
        'Jo "Bcc: x@evil.example" Doe Bcc: y@evil.example',
        "Zoë O'Brien . QUIT",
        ". .",
    }


def test_a_lone_lf_before_a_dot_reaches_the_server_stuffed(server: SmtpServer) -> None:
    """The SMTP-smuggling sequence: LF "." CRLF, then a command, inside one message."""
    channel = SmtpChannel(SmtpSettings(host="127.0.0.1", port=server.port, security="none"), None)
    data = b"Subject: x\r\n\r\nhello\n.\r\nMAIL FROM:<a@evil.example>\r\nbye\r\n"
    try:
        outcome = channel.deliver(Envelope("press@example.org", "j@example.com", data, "<1@x>"))
    finally:
        channel.close()
    assert outcome.state == "sent"
    (item,) = server.received
    assert item.data == b"Subject: x\r\n\r\nhello\r\n.\r\nMAIL FROM:<a@evil.example>\r\nbye\r\n"


# --------------------------------------------------------------------------- releases


def _release(title: str, body: str = "", contact: str = "press@example.org") -> str:
    return (
        f"---\ntitle: {title}\ndate: 2027-03-10\n---\n\n# Heading\n\n"
        f"**A lead paragraph.**\n\n{body or 'A paragraph.'}\n\n"
        f"**Press contact:**\n\nClaire Dumont\n\n[{contact}](mailto:{contact})\n"
    )


def _eml(folder: Path) -> EmailMessage:
    message = email.message_from_bytes(
        (folder / "email.eml").read_bytes(), policy=email.policy.default
    )
    assert isinstance(message, EmailMessage)
    return message


def test_a_title_with_encoded_text_cannot_add_a_bcc(workspace: Path) -> None:
    (workspace / "release.md").write_text(
        _release('"=?utf-8?q?Launch=0D=0ABcc:_leak@evil.example?="'), encoding="utf-8"
    )
    result = run("render", "release.md", "--out", "out")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: release.md:2: title: holds '=?utf-8?q?Launch=0D=0ABcc:_leak@evil.example?=', "
        f"{ENCODED}\n"
    )
    assert not (workspace / "out").exists()


@pytest.mark.parametrize("char", ["\u202e", "\u202d", "\u2066", "\u2067", "\u2068"])
def test_a_title_with_a_bidi_override_is_refused(workspace: Path, char: str) -> None:
    """A list's names lose these characters (CVE-2021-42574, "Trojan Source"); a title, a
    subject template or the sender's name put them into Subject and From as they were."""
    (workspace / "release.md").write_text(_release(f'"Launch {char}gnp.exe"'), encoding="utf-8")
    result = run("render", "release.md", "--out", "out")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: release.md:2: title: holds U+{ord(char):04X}, a bidirectional control that "
        "can make the text display as something else\n"
    )
    assert not (workspace / "out").exists()


def test_a_sender_name_with_a_bidi_override_is_refused(workspace: Path) -> None:
    (workspace / "distribute.toml").write_text(
        '[sender]\nfrom = "Valmont \u202eecilop <press@example.org>"\n', encoding="utf-8"
    )
    (workspace / "release.md").write_text(_release("A title"), encoding="utf-8")
    result = run("render", "release.md", "--out", "out")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {workspace / 'distribute.toml'}:2: [sender] from: the name "
        "'Valmont \\u202eecilop' "
        "holds U+202E, a bidirectional control that can make the text display as something "
        "else\n"
    )


def test_render_to_with_encoded_text_is_a_usage_error(example_path: Path, workspace: Path) -> None:
    result = run("render", str(example_path), "--to", "=?utf-8?q?x=0D=0A?=<a@example.com>")
    assert result.exit_code == 2
    assert result.stderr.endswith(
        "Error: Invalid value: '=?utf-8?q?x=0D=0A?=<a@example.com>': the name holds "
        f"'=?utf-8?q?x=0D=0A?=', {ENCODED}\n"
    )
    assert "Traceback" not in result.output


def test_slot_text_in_a_release_is_never_filled_in(workspace: Path) -> None:
    body = "Write to %%email%% or %%first_name%%, and %%unsubscribe_url%%."
    (workspace / "release.md").write_text(
        _release("Slots %%email%% stay text", body), encoding="utf-8"
    )
    result = run("render", "release.md", "--out", "out", "--to", "Jane Doe <jane@example.com>")
    assert result.exit_code == 0, result.output
    text = (workspace / "out" / "email.txt").read_text(encoding="utf-8")
    html = (workspace / "out" / "email.html").read_text(encoding="utf-8")
    assert "Write to %%email%% or %%first_name%%, and %%unsubscribe_url%%." in text
    assert "Write to %%email%% or %%first_name%%, and %%unsubscribe_url%%." in html
    assert _eml(workspace / "out")["Subject"] == "Slots %%email%% stay text"
    assert "Dear Jane," in text  # the template's own slots are still filled in


def test_a_non_ascii_contact_address_is_refused_for_reply_to(workspace: Path) -> None:
    (workspace / "release.md").write_text(
        _release("A title", contact="josé@example.org"), encoding="utf-8"
    )
    result = run("render", "release.md", "--out", "out")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: release.md:16: press contact address: 'josé@example.org' has non-ASCII "
        "characters before the @, which a Reply-To header cannot carry to every journalist's "
        "server; give an ASCII address or set [sender] reply_to in distribute.toml\n"
    )


def test_a_contact_domain_outside_ascii_is_written_in_idna(workspace: Path) -> None:
    (workspace / "release.md").write_text(
        _release("A title", contact="press@exämple.org"), encoding="utf-8"
    )
    result = run("render", "release.md", "--out", "out")
    assert result.exit_code == 0, result.output
    raw = (workspace / "out" / "email.eml").read_bytes()
    assert b"Reply-To: press@xn--exmple-cua.org\r\n" in raw
    assert b"=?utf-8?" not in raw.split(b"\r\n\r\n")[0].split(b"Reply-To:")[1].split(b"\r\n")[0]
