"""Sending through a real SMTP server on loopback (aiosmtpd), faults included."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from smtp_double import Faults, SmtpServer, free_port

from distribute.campaign import check_campaign, load_campaign
from distribute.cli import cli
from distribute.config import load_settings

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct-Horse-7-battery"


def write_config(workspace: Path, port: int, **smtp: object) -> None:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "connections": 4,
        "retry_delay": 0.05,
        "max_retries": 3,
    }
    values.update(smtp)
    lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
    (workspace / "distribute.toml").write_text(
        '[sender]\nfrom = "Valmont Press Office <press@example.org>"\n'
        '[unsubscribe]\nurl = "https://www.example.org/unsubscribe?email={email}"\n'
        f"[smtp]\n{lines}",
        encoding="utf-8",
    )


def write_campaign(workspace: Path, count: int, *, name: str = "launch") -> Path:
    """A campaign of one email step to ``count`` generated journalists."""
    (workspace / "recipients").mkdir(exist_ok=True)
    rows = ["email,first_name,last_name,outlet,language"]
    rows += [f"j{n:05d}@example.com,Jo{n},Doe,Daily {n},en" for n in range(count)]
    (workspace / "recipients" / "desk.csv").write_text("\n".join(rows) + "\n", "utf-8")
    shutil.copy(ROOT / "releases" / "hydrogen.md", workspace / "hydrogen.md")
    path = workspace / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\nrelease = "hydrogen.md"\n'
        '[[email]]\nname = "desk"\nlists = ["desk"]\nat = "2027-03-10 08:00"\n',
        encoding="utf-8",
    )
    with (workspace / "distribute.toml").open("a", encoding="utf-8") as config:
        config.write('[paths]\nrecipients = "recipients"\n')
    return path


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner(env=env).invoke(cli, list(args))


def status(workspace: Path, *, dry: bool = False) -> dict[str, dict[str, int]]:
    result = run("status", "--json", *(["--dry"] if dry else []))
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    return {
        f"{step['name']}/{step['mode']}": step["counts"]
        for campaign in data["campaigns"]
        for step in campaign["steps"]
    }


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {state: n for state, n in counts.items() if n}


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as smtp:
        yield smtp


def test_live_send_of_the_example_campaign(workspace: Path, server: SmtpServer) -> None:
    write_config(workspace, server.port)
    campaign_file = ROOT / "releases" / "hydrogen.toml"
    emails = ("--step", "science-desk", "--step", "presse-regionale")
    result = run("send", str(campaign_file), "--live", *emails)
    assert result.exit_code == 0, result.output

    settings = load_settings(workspace=workspace)
    campaign = load_campaign(campaign_file, settings)
    check = check_campaign(campaign, settings, now=datetime.now(UTC))
    expected: Counter[str] = Counter()
    for name, audience in check.audiences.items():
        expected.update(r.email.lower() for r in audience.recipients)
        assert audience.recipients, name
    assert server.handler.per_recipient() == expected
    ids = set()
    for item in server.received:
        assert item.sender == "press@example.org"
        message = item.message
        for header in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version"):
            assert len(message.get_all(header, [])) == 1, header
        assert message["To"].addresses[0].addr_spec.lower() == item.recipients[0].lower()
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["Subject"].startswith("EMBARGOED until 10 March 2027 08:00 CET:")
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
        assert b"\n" not in item.data.replace(b"\r\n", b"")
        ids.add(message["Message-ID"])
    assert len(ids) == len(server.received)
    counts = status(workspace)
    assert counts["science-desk/live"]["sent"] == len(check.audiences["science-desk"].recipients)
    assert counts["science-desk/live"]["skipped"] == len(check.audiences["science-desk"].suppressed)


def test_rerun_sends_nothing(workspace: Path, server: SmtpServer) -> None:
    write_config(workspace, server.port)
    campaign = write_campaign(workspace, 12)
    assert run("send", str(campaign), "--live").exit_code == 0
    again = run("send", str(campaign), "--live")
    assert again.exit_code == 0
    assert "desk: nothing left to send" in again.stdout
    assert len(server.received) == 12


def test_faults_retry_fail_and_drops(workspace: Path) -> None:
    greylisted = {f"j{n:05d}@example.com" for n in (3, 77, 150)}
    rejected = {f"j{n:05d}@example.com" for n in (10, 120)}
    faults = Faults(temporary_once=greylisted, permanent=rejected, drop_every=50)
    with SmtpServer(faults) as server:
        write_config(workspace, server.port)
        campaign = write_campaign(workspace, 200)
        result = run("send", str(campaign), "--live")
        per_recipient = server.handler.per_recipient()
    assert result.exit_code == 1  # some deliveries failed
    everyone = {f"j{n:05d}@example.com" for n in range(200)}
    assert set(per_recipient) == everyone - rejected
    assert set(per_recipient.values()) == {1}  # no duplicate, drops included
    for address in greylisted:
        assert server.handler.refused[address] == 1
    for address in rejected:
        assert f"failed {address}: 550 5.1.1 <{address}>: mailbox unavailable" in result.stdout
    counts = status(workspace)["desk/live"]
    assert counts == {
        "pending": 0,
        "sending": 0,
        "sent": 198,
        "failed": 2,
        "uncertain": 0,
        "skipped": 0,
    }


def test_temporary_failure_gives_up_after_bounded_retries(workspace: Path) -> None:
    with SmtpServer() as server:
        # Every RCPT for this address is refused with a temporary 452.
        original = server.handler.handle_RCPT

        async def always_busy(srv, session, envelope, address, options):  # type: ignore[no-untyped-def]
            if address == "j00001@example.com":
                return "452 4.2.2 mailbox full"
            return await original(srv, session, envelope, address, options)

        server.handler.handle_RCPT = always_busy  # type: ignore[method-assign]
        write_config(workspace, server.port, max_retries=2)
        campaign = write_campaign(workspace, 3)
        result = run("send", str(campaign), "--live")
    assert result.exit_code == 1, result.output
    assert "gave up after 3 attempts: 452 4.2.2 mailbox full" in result.stdout
    assert len(server.received) == 2


def test_server_down_at_start(workspace: Path) -> None:
    port = free_port()
    write_config(workspace, port)
    campaign = write_campaign(workspace, 5)
    result = run("send", str(campaign), "--live")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: cannot connect to the SMTP server 127.0.0.1:{port}: Connection refused"
    )
    assert "Traceback" not in result.output
    counts = status(workspace)["desk/live"]
    assert counts["sent"] == 0 and counts["pending"] == 5


def test_login_refused(workspace: Path) -> None:
    with SmtpServer(password=PASSWORD) as server:
        write_config(workspace, server.port, username="press")
        campaign = write_campaign(workspace, 3)
        env = {"DISTRIBUTE_SMTP_PASSWORD": "wrong-password"}
        result = run("send", str(campaign), "--live", env=env)
    assert result.exit_code == 1
    assert (
        f"Error: 127.0.0.1:{server.port} refused the login for user 'press': 535" in result.stderr
    )
    assert "wrong-password" not in result.output
    assert not server.received
    assert status(workspace)["desk/live"]["sent"] == 0


def test_password_appears_nowhere(workspace: Path) -> None:
    with SmtpServer(password=PASSWORD) as server:
        write_config(workspace, server.port, username="press")
        campaign = write_campaign(workspace, 8)
        env = {"DISTRIBUTE_SMTP_PASSWORD": PASSWORD}
        live = run("send", str(campaign), "--live", env=env)
        dry = run("send", str(campaign), env=env)
        shown = run("status", env=env)
    assert live.exit_code == 0, live.output
    assert len(server.received) == 8
    outputs = live.output + dry.output + shown.output
    assert PASSWORD not in outputs
    files = [p for p in workspace.rglob("*") if p.is_file()]
    assert any(p.name == "distribute.log" for p in files)
    assert any(p.name.startswith("distribute.db") for p in files)
    assert any(p.suffix == ".eml" for p in files)
    for path in files:
        assert PASSWORD.encode() not in path.read_bytes(), path


def test_dry_run_writes_outbox_and_contacts_no_server(workspace: Path) -> None:
    port = free_port()  # nothing listens: a connection attempt would fail the run
    write_config(workspace, port)
    campaign = write_campaign(workspace, 7)
    result = run("send", str(campaign))
    assert result.exit_code == 0, result.output
    assert (
        result.stdout.rstrip().splitlines()[-1].startswith("This was a dry run: nothing was sent.")
    )
    files = sorted((workspace / "outbox" / "launch" / "desk" / "new").iterdir())
    assert len(files) == 7
    addresses = set()
    for path in files:
        import email as email_lib
        import email.policy

        message = email_lib.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        addresses.add(message["To"].addresses[0].addr_spec)
    assert addresses == {f"j{n:05d}@example.com" for n in range(7)}
    assert status(workspace) == {}  # a dry run never counts as sent
    counts = status(workspace, dry=True)
    assert counts["desk/dry"]["written"] == 7
    assert "sent" not in counts["desk/dry"]


def test_dry_run_bytes_equal_live_bytes_but_date(workspace: Path, server: SmtpServer) -> None:
    write_config(workspace, server.port)
    campaign = write_campaign(workspace, 3)
    assert run("send", str(campaign)).exit_code == 0
    assert run("send", str(campaign), "--live").exit_code == 0

    def without_date(data: bytes) -> bytes:
        return b"\r\n".join(line for line in data.split(b"\r\n") if not line.startswith(b"Date:"))

    dry = {}
    for path in (workspace / "outbox" / "launch" / "desk" / "new").iterdir():
        data = path.read_bytes()
        to = next(line for line in data.split(b"\r\n") if line.startswith(b"To:"))
        dry[to] = without_date(data)
    for item in server.received:
        to = next(line for line in item.data.split(b"\r\n") if line.startswith(b"To:"))
        assert without_date(item.data) == dry[to]


def test_limit_is_a_canary(workspace: Path, server: SmtpServer) -> None:
    write_config(workspace, server.port)
    campaign = write_campaign(workspace, 20)
    first = run("send", str(campaign), "--live", "--limit", "5")
    assert first.exit_code == 0, first.output
    assert len(server.received) == 5
    assert status(workspace)["desk/live"]["pending"] == 15
    assert first.stdout.endswith(
        f"--limit 5: 15 still pending (15 in desk).\nSend the rest with: distribute send "
        f"{campaign} --live\n"
    )
    rest = run("send", str(campaign), "--live")
    assert rest.exit_code == 0
    assert server.handler.per_recipient() == Counter(
        {f"j{n:05d}@example.com": 1 for n in range(20)}
    )


def test_test_address_is_not_a_delivery(workspace: Path, server: SmtpServer) -> None:
    write_config(workspace, server.port)
    campaign = write_campaign(workspace, 4)
    result = run("send", str(campaign), "--live", "--test", "editor@example.org")
    assert result.exit_code == 0, result.output
    assert len(server.received) == 1
    assert server.received[0].recipients == ["editor@example.org"]
    assert server.received[0].message["Subject"].startswith("[TEST] EMBARGOED until")
    assert run("status", "--json").stdout.strip() == '{\n  "campaigns": []\n}'


def test_bad_test_address(workspace: Path, server: SmtpServer) -> None:
    write_config(workspace, server.port)
    campaign = write_campaign(workspace, 1)
    result = run("send", str(campaign), "--test", "nobody@")
    assert result.exit_code == 2
    assert "invalid address 'nobody@'" in result.stderr


def test_bad_campaign_plans_nothing(workspace: Path, server: SmtpServer) -> None:
    write_config(workspace, server.port)
    campaign = write_campaign(workspace, 2)
    campaign.write_text(campaign.read_text("utf-8").replace('["desk"]', '["desks"]'), "utf-8")
    result = run("send", str(campaign), "--live")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {campaign}:")
    assert "unknown list 'desks'" in result.stderr
    assert not server.received
    assert json.loads(run("status", "--json").stdout) == {"campaigns": []}


def send_in_background(
    workspace: Path, campaign: Path, server: SmtpServer, received: int
) -> tuple[subprocess.Popen[bytes], list[str], dict[str, str]]:
    """A real ``distribute send --live`` process, returned once the server has ``received``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTRIBUTE_")}
    command = [sys.executable, "-m", "distribute", "send", str(campaign), "--live"]
    process = subprocess.Popen(
        command, cwd=workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while len(server.received) < received and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    return process, command, env


@pytest.mark.slow
def test_crash_mid_step_never_sends_twice(workspace: Path) -> None:
    """SIGKILL a live send of 2,000 messages halfway, run it again: nobody gets two."""
    total = 2000
    with SmtpServer() as server:
        write_config(workspace, server.port)
        campaign = write_campaign(workspace, total)
        process, command, env = send_in_background(workspace, campaign, server, total // 3)
        process.send_signal(signal.SIGKILL)
        process.communicate()  # reaps it and closes the pipes
        killed_at = len(server.received)
        assert 0 < killed_at < total
        stranded = status(workspace)["desk/live"]["sending"]
        assert stranded <= 4  # at most one per connection
        shown = run("status").stdout
        if stranded:
            counted = "1 message was" if stranded == 1 else f"{stranded} messages were"
            assert f"desk: {counted} being sent by a process that stopped" in (
                " ".join(shown.split())
            )

        again = subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True)
        per_recipient = server.handler.per_recipient()
    assert max(per_recipient.values()) == 1
    counts = status(workspace)["desk/live"]
    assert counts["sent"] + counts["uncertain"] == total
    assert counts["uncertain"] <= 4  # at most one per connection
    assert counts["pending"] == counts["sending"] == counts["failed"] == 0
    sent = counts["sent"]
    assert len(per_recipient) >= sent
    if counts["uncertain"]:
        assert again.returncode == 1
        assert "marked uncertain and not resent" in again.stdout
        assert "uncertain j" in again.stdout
    else:
        assert again.returncode == 0, again.stderr


def test_unwritable_log_stops_before_sending(workspace: Path, server: SmtpServer) -> None:
    write_config(workspace, server.port)
    campaign = write_campaign(workspace, 3)
    (workspace / "distribute.log").mkdir()
    result = run("send", str(campaign), "--live")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {workspace / 'distribute.log'}: cannot write the")
    assert not server.received


def test_unwritable_outbox_is_one_line(workspace: Path) -> None:
    write_config(workspace, free_port())
    campaign = write_campaign(workspace, 2)
    (workspace / "outbox").write_text("not a folder", encoding="utf-8")
    result = run("send", str(campaign))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "Not a directory" in result.stderr
    assert "Traceback" not in result.output


def test_password_with_accents_logs_in(workspace: Path) -> None:
    accented = "mot-de-passé-Ünïcode"
    with SmtpServer(password=accented) as server:
        write_config(workspace, server.port, username="presse")
        campaign = write_campaign(workspace, 2)
        result = run("send", str(campaign), "--live", env={"DISTRIBUTE_SMTP_PASSWORD": accented})
    assert result.exit_code == 0, result.output
    assert len(server.received) == 2


def test_server_without_auth_is_named(workspace: Path, server: SmtpServer) -> None:
    write_config(workspace, server.port, username="presse")
    campaign = write_campaign(workspace, 2)
    result = run("send", str(campaign), "--live", env={"DISTRIBUTE_SMTP_PASSWORD": "x"})
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: 127.0.0.1:{server.port} does not offer AUTH (login) on this connection; "
        "use security = starttls or tls"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [
        (signal.SIGINT, 130, "Interrupted"),
        (signal.SIGTERM, 143, "Stopped by SIGTERM"),
        (signal.SIGHUP, 129, "Stopped by SIGHUP"),
    ],
    ids=["ctrl-c", "sigterm", "sighup"],
)
def test_a_signal_finishes_the_messages_under_way(
    workspace: Path, signum: int, code: int, said: str
) -> None:
    """Ctrl-C, or a service manager's SIGTERM, or a closed terminal's SIGHUP mid-step: each
    connection finishes and records its message, then the run stops."""
    total = 120
    with SmtpServer(Faults(latency=0.03)) as server:
        write_config(workspace, server.port, connections=2)
        campaign = write_campaign(workspace, total)
        process, command, env = send_in_background(workspace, campaign, server, 20)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == code, stderr
        assert re.fullmatch(
            f"{said} after \\d+ of {total} messages; each one under way was finished and "
            "recorded. Run the same command again to send the rest.\n",
            stderr.decode(),
        ), stderr
        counts = status(workspace)["desk/live"]
        assert counts["sending"] == counts["uncertain"] == 0  # nothing left half-known
        assert counts["sent"] == len(server.received) < total
        again = subprocess.run(command, cwd=workspace, env=env, capture_output=True)
        assert again.returncode == 0, again.stderr
        per_recipient = server.handler.per_recipient()
    assert per_recipient == Counter({f"j{n:05d}@example.com": 1 for n in range(total)})


def test_live_post_under_embargo_is_refused_before_anything_is_sent(
    workspace: Path, server: SmtpServer
) -> None:
    write_config(workspace, server.port)
    campaign_file = ROOT / "releases" / "hydrogen.toml"
    result = run("send", str(campaign_file), "--live")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {campaign_file}:")
    assert (
        "[[post]] 'announce-x': the release is under embargo until 10 March 2027 08:00 CET"
        in result.stderr
    )
    assert not server.received
    dry = run("send", str(campaign_file))
    assert dry.exit_code == 0
    assert "this post could not go out now" in dry.stdout


def test_a_second_campaign_file_under_the_same_name_is_refused(
    workspace: Path, server: SmtpServer
) -> None:
    write_config(workspace, server.port)
    write_campaign(workspace, 3)
    files = {}
    for month in ("march", "april"):
        (workspace / month).mkdir()
        shutil.copy(ROOT / "releases" / "hydrogen.md", workspace / month / "hydrogen.md")
        files[month] = workspace / month / "campaign.toml"
        # No name: both are called after their file's stem, "campaign".
        files[month].write_text(
            'release = "hydrogen.md"\n'
            '[[email]]\nname = "desk"\nlists = ["desk"]\nat = "2027-03-10 08:00"\n',
            encoding="utf-8",
        )
    assert run("send", str(files["march"]), "--live").exit_code == 0
    assert len(server.received) == 3
    refused = (
        f"Error: {files['april']}: campaign name 'campaign' is already used by "
        f'{files["march"]}; two campaign files cannot share a name: set name = "..." '
        "in this file (a new campaign: its steps go to everyone again)\n"
    )
    for mode in (["--live"], []):
        april = run("send", str(files["april"]), *mode)
        assert april.exit_code == 1
        assert april.stderr == refused
    shown = run("status", str(files["april"]))
    assert shown.exit_code == 1
    assert shown.stderr == refused
    assert len(server.received) == 3
    # Named, April is a campaign of its own and goes out.
    text = files["april"].read_text("utf-8")
    files["april"].write_text('name = "april"\n' + text, "utf-8")
    assert run("send", str(files["april"]), "--live").exit_code == 0
    assert server.handler.per_recipient() == Counter({f"j{n:05d}@example.com": 2 for n in range(3)})
    ids = {item.message["Message-ID"] for item in server.received}
    assert len(ids) == 6


def test_an_edited_release_sends_the_steps_not_yet_sent(
    workspace: Path, server: SmtpServer
) -> None:
    from distribute.campaign import release_version

    write_config(workspace, server.port)
    campaign = write_campaign(workspace, 2)
    with campaign.open("a", encoding="utf-8") as more:
        more.write('[[email]]\nname = "late"\nlists = ["desk"]\nat = "2027-03-10 09:00"\n')
    release = workspace / "hydrogen.md"
    first = release_version(release.read_text("utf-8"))
    assert run("send", str(campaign), "--live", "--step", "desk").exit_code == 0
    release.write_text(release.read_text("utf-8").replace("hydrogen", "Hydrogen"), "utf-8")
    second = release_version(release.read_text("utf-8"))
    assert first != second
    result = run("send", str(campaign), "--live")
    assert result.exit_code == 0, result.output
    assert "desk: nothing left to send (every recipient is already done)." in result.stdout
    assert len(server.received) == 4
    shown = json.loads(run("status", "--json").stdout)["campaigns"][0]["steps"]
    assert {s["name"]: s["releases"] for s in shown} == {"desk": {first: 2}, "late": {second: 2}}
    table = run("status").stdout
    assert f"│ desk │ 2027-03-10 08:00 CET │ done  │ {first} │" in table
    assert f"│ late │ 2027-03-10 09:00 CET │ done  │ {second} │" in table


def test_message_ids_differ_between_releases(workspace: Path) -> None:
    write_config(workspace, free_port())
    campaign = write_campaign(workspace, 1)
    release = workspace / "hydrogen.md"
    new = workspace / "outbox" / "launch" / "desk" / "new"

    def message_id() -> str:
        assert run("send", str(campaign)).exit_code == 0
        [path] = new.iterdir()
        [line] = [x for x in path.read_bytes().split(b"\r\n") if x.startswith(b"Message-ID:")]
        return line.decode()

    first = message_id()
    assert message_id() == first  # the same message made again keeps its id
    release.write_text(release.read_text("utf-8") + "\nOne more line.\n", "utf-8")
    assert message_id() != first


def test_a_run_stopped_by_the_server_lists_its_uncertain_rows_at_once(workspace: Path) -> None:
    with SmtpServer() as server:
        handler = server.handler
        mail, data = handler.handle_MAIL, handler.handle_DATA
        gone = [False]

        async def data_then_vanish(srv, session, envelope):  # type: ignore[no-untyped-def]
            if envelope.rcpt_tos != ["j00001@example.com"]:
                return await data(srv, session, envelope)
            # The server takes this message's content and vanishes before its reply: its
            # fate is unknown. Every later connection is refused: the run cannot go on.
            gone[0] = True
            srv.transport.close()
            return "250 2.0.0 queued"

        async def refuse_once_gone(srv, session, envelope, address, options):  # type: ignore[no-untyped-def]
            if gone[0]:
                return "421 4.3.2 shutting down"
            return await mail(srv, session, envelope, address, options)

        handler.handle_MAIL = refuse_once_gone  # type: ignore[method-assign]
        handler.handle_DATA = data_then_vanish  # type: ignore[method-assign]
        write_config(workspace, server.port, connections=1)
        campaign = write_campaign(workspace, 4)
        result = run("send", str(campaign), "--live")
    assert result.exit_code == 1
    assert "  desk: uncertain j00001@example.com: connection lost before the server confirmed" in (
        result.stdout
    )
    assert result.stderr.startswith(
        f"Error: lost the connection to 127.0.0.1:{server.port} twice in a row: 421"
    )
    assert "stopped after 2 of 4 messages" in result.stderr
    counts = nonzero(status(workspace)["desk/live"])
    assert counts == {"sent": 1, "uncertain": 1, "pending": 2}


def test_nothing_left_is_said_only_when_true(workspace: Path) -> None:
    rejected = {"j00000@example.com", "j00001@example.com"}
    with SmtpServer(Faults(permanent=rejected)) as server:
        write_config(workspace, server.port)
        campaign = write_campaign(workspace, 2)
        assert run("send", str(campaign), "--live").exit_code == 1
        again = run("send", str(campaign), "--live")
    assert again.exit_code == 1
    assert "desk: nothing sent this time: 2 failed, listed below." in again.stdout
    assert "already done" not in again.stdout

    (workspace / "recipients" / "suppressed.csv").write_text(
        "email\nj00000@example.com\nj00001@example.com\n", "utf-8"
    )
    dry = run("send", str(campaign))
    assert dry.exit_code == 0
    assert (
        "desk: nothing to send: every recipient the step selects is skipped "
        "(see distribute status)." in dry.stdout
    )

    campaign.write_text(campaign.read_text("utf-8") + 'where = { language = "fr" }\n', "utf-8")
    nobody = run("send", str(campaign))
    assert nobody.exit_code == 0
    assert "desk: nothing to send: the step selects nobody (check its lists, where and tags)." in (
        nobody.stdout
    )
    assert "already done" not in dry.stdout + nobody.stdout


def test_status_gives_each_skipped_row_its_reason(workspace: Path, server: SmtpServer) -> None:
    write_config(workspace, server.port)
    campaign = write_campaign(workspace, 3)
    suppressed = workspace / "recipients" / "suppressed.csv"
    suppressed.write_text("email\nj00002@example.com\n", "utf-8")
    assert run("send", str(campaign), "--live", "--limit", "1").exit_code == 0
    desk = workspace / "recipients" / "desk.csv"
    everyone = desk.read_text("utf-8")
    desk.write_text(everyone.replace("j00001@example.com,Jo1,Doe,Daily 1,en\n", ""))
    shown = run("status").stdout
    assert "  desk: skipped j00002@example.com: on the suppression list\n" in shown
    assert run("send", str(campaign), "--live", "--limit", "1").exit_code == 0
    shown = run("status").stdout
    assert "  desk: skipped j00001@example.com: no longer on the step's lists\n" in shown
    # Un-suppressed and back on the list: both get the release, once.
    suppressed.write_text("email\n", "utf-8")
    desk.write_text(everyone, "utf-8")
    assert run("send", str(campaign), "--live").exit_code == 0
    assert server.handler.per_recipient() == Counter({f"j{n:05d}@example.com": 1 for n in range(3)})
    assert "skipped" not in run("status").stdout.split("┘", 1)[1]


def test_a_database_failure_is_one_line_without_addresses(
    workspace: Path, server: SmtpServer
) -> None:
    import sqlalchemy as sa

    from distribute.ledger import Ledger

    write_config(workspace, server.port)
    campaign = write_campaign(workspace, 2)
    ledger = Ledger(f"sqlite:///{workspace / 'distribute.db'}")
    with ledger.engine.begin() as conn:
        # The database refuses the step's rows as a full disk or a broken constraint would.
        conn.execute(
            sa.text(
                "CREATE TRIGGER refuse BEFORE INSERT ON deliveries "
                "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            )
        )
    ledger.close()
    result = run("send", str(campaign), "--live")
    assert result.exit_code == 1
    assert result.stderr == "Error: the state database failed: database or disk is full\n"
    assert "example.com" not in result.output
    assert not server.received


def test_a_moved_campaign_is_not_taken_for_another_one(workspace: Path, server: SmtpServer) -> None:
    """A campaign folder renamed after a send: the refusal says how to go on without mailing
    anyone twice (not only "give it a new name", which would), and going on works."""
    write_config(workspace, server.port)
    write_campaign(workspace, 3)
    (workspace / "march").mkdir()
    shutil.move(workspace / "hydrogen.md", workspace / "march" / "hydrogen.md")
    first = workspace / "march" / "launch.toml"
    shutil.move(workspace / "launch.toml", first)
    assert run("send", str(first), "--live", "--limit", "1").exit_code == 0
    (workspace / "march").rename(workspace / "2027-march")
    moved = workspace / "2027-march" / "launch.toml"
    refused = (
        f"Error: {moved}: campaign 'launch' was planned from {first}, which no longer exists; "
        "if this file is that campaign moved, move it back or link it there to go on (a new "
        'name = "..." would send every step to everyone again)\n'
    )
    for command in (["send", str(moved), "--live"], ["status", str(moved)]):
        result = run(*command)
        assert (result.exit_code, result.stderr) == (1, refused)
    assert len(server.received) == 1
    (workspace / "march").symlink_to(workspace / "2027-march")
    assert run("send", str(moved), "--live").exit_code == 0
    # Going on through the link recorded the file where it is now: the link can go.
    (workspace / "march").unlink()
    assert run("send", str(moved), "--live").exit_code == 0
    assert server.handler.per_recipient() == Counter({f"j{n:05d}@example.com": 1 for n in range(3)})
