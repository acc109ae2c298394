"""Campaigns on a schedule, with the clock in the test's hands (one test runs in real time)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from smtp_double import Faults, SmtpServer

from distribute.campaign import load_campaign
from distribute.cli import cli
from distribute.config import load_settings
from distribute.ledger import Ledger
from distribute.scheduler import Worker

ROOT = Path(__file__).resolve().parents[1]
# The example release's embargo lifts at 2027-03-10 08:00 Paris time (07:00 UTC).
T = datetime(2027, 3, 10, 8, 0, tzinfo=UTC)  # 09:00 in Paris, after the embargo


EMBARGOED = "embargoed = true\n"  # for steps at today's times, before the example's embargo


class FakeClock:
    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def write_config(workspace: Path, port: int) -> None:
    (workspace / "distribute.toml").write_text(
        '[sender]\nfrom = "Valmont Press Office <press@example.org>"\n'
        '[unsubscribe]\nurl = "https://www.example.org/unsubscribe?email={email}"\n'
        '[paths]\nrecipients = "recipients"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\nconnections = 2\n'
        "retry_delay = 0.05\n",
        encoding="utf-8",
    )


def write_list(workspace: Path, name: str, count: int) -> list[str]:
    (workspace / "recipients").mkdir(exist_ok=True)
    addresses = [f"{name}{n:03d}@example.com" for n in range(count)]
    rows = ["email,first_name,last_name,outlet,language"]
    rows += [f"{address},Jo,Doe,Daily,en" for address in addresses]
    (workspace / "recipients" / f"{name}.csv").write_text("\n".join(rows) + "\n", "utf-8")
    return addresses


def write_campaign(workspace: Path, steps: str, *, extra: str = "") -> Path:
    if not (workspace / "hydrogen.md").exists():
        shutil.copy(ROOT / "releases" / "hydrogen.md", workspace / "hydrogen.md")
    path = workspace / "launch.toml"
    path.write_text(
        f'name = "launch"\nrelease = "hydrogen.md"\ntimezone = "Europe/Paris"\n{extra}\n{steps}',
        encoding="utf-8",
    )
    return path


def email(name: str, at: str, *, lists: str | None = None, flags: str = "") -> str:
    return f'[[email]]\nname = "{name}"\nlists = ["{lists or name}"]\n{flags}at = "{at}"\n\n'


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def status_json(*extra: str) -> dict[str, dict[str, Any]]:
    result = run("status", "--json", *extra)
    assert result.exit_code == 0, result.output
    return {
        step["name"]: step
        for campaign in json.loads(result.stdout)["campaigns"]
        for step in campaign["steps"]
    }


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as smtp:
        yield smtp


@pytest.fixture
def ws(workspace: Path, server: SmtpServer) -> Path:
    write_config(workspace, server.port)
    return workspace


def worker_at(moment: datetime, **kwargs: Any) -> Worker:
    return Worker(load_settings(workspace=Path.cwd()), clock=FakeClock(moment), **kwargs)


# --------------------------------------------------------------------------- schedule


def test_schedule_prints_the_timeline_in_the_campaign_zone(ws: Path) -> None:
    write_list(ws, "desk", 3)
    write_list(ws, "wire", 2)
    campaign = write_campaign(
        ws, email("desk", "2027-03-10 09:00") + email("wire", "2027-03-10T10:30:00+01:00")
    )
    result = run("schedule", str(campaign), "--live")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "│" in line]
    assert [re.sub(r"\s*│\s*", "|", row).strip("|") for row in rows] == [
        "desk|email|live|2027-03-10 09:00:00 CET|3 journalists|scheduled",
        "wire|email|live|2027-03-10 10:30:00 CET|2 journalists|scheduled",
    ]
    steps = status_json()
    assert steps["desk"]["state"] == "scheduled"
    assert steps["desk"]["next_run"] == "2027-03-10T08:00:00+00:00"
    assert steps["wire"]["next_run"] == "2027-03-10T09:30:00+00:00"


@pytest.mark.parametrize(
    ("at", "utc"),
    [
        pytest.param("2027-03-28 08:00", datetime(2027, 3, 28, 6, 0, tzinfo=UTC), id="spring"),
        pytest.param("2027-10-31 08:00", datetime(2027, 10, 31, 7, 0, tzinfo=UTC), id="autumn"),
        pytest.param("2027-03-27 08:00", datetime(2027, 3, 27, 7, 0, tzinfo=UTC), id="day-before"),
    ],
)
def test_dst_days_fire_at_the_right_instant(
    ws: Path, server: SmtpServer, at: str, utc: datetime
) -> None:
    write_list(ws, "desk", 2)
    assert run("schedule", str(write_campaign(ws, email("desk", at))), "--live").exit_code == 0
    assert status_json()["desk"]["next_run"] == utc.isoformat()
    early = worker_at(utc - timedelta(seconds=1))
    assert early.run_due() == []
    assert not server.received
    assert worker_at(utc).run_due() == ["done"]
    assert len(server.received) == 2


DST_REFUSED = [
    pytest.param("2027-03-28 02:30", "does not exist in Europe/Paris", id="spring-gap"),
    pytest.param("2027-10-31 02:30", "happens twice in Europe/Paris", id="autumn-overlap"),
]


@pytest.mark.parametrize(("at", "why"), DST_REFUSED)
def test_schedule_refuses_a_local_time_dst_makes_unclear(ws: Path, at: str, why: str) -> None:
    write_list(ws, "desk", 2)
    campaign = write_campaign(ws, email("desk", at))
    result = run("schedule", str(campaign), "--live")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {campaign}:8: [[email]] 'desk': at: {at} {why}")
    assert "with its offset" in result.stderr
    assert not (ws / "distribute.db").exists()


REFUSED = [
    pytest.param(
        '[[post]]\nname = "announce"\nchannel = "x"\nat = "2027-03-10 07:59"\n',
        "{f}:13: [[post]] 'announce': at 10 March 2027 07:59 CET is before the release embargo "
        "(10 March 2027 08:00 CET); a post is public at once",
        id="post-before-embargo",
    ),
    pytest.param(
        email("late", "2027-03-09 18:00", lists="desk"),
        "{f}:13: [[email]] 'late': at 9 March 2027 18:00 CET is before the release embargo "
        "(10 March 2027 08:00 CET); add embargoed = true to this step to send it under "
        "embargo (with the banner and the subject prefix), or move it",
        id="unflagged-email-before-embargo",
    ),
    pytest.param(
        email("late", "2020-03-10 09:00", lists="desk", flags="embargoed = true\n"),
        "{f}:10: [[email]] 'late': at 10 March 2020 09:00 CET is already past (now {now}); "
        "give it a later time, or send it now with distribute send {f} --step late --live",
        id="time-past",
    ),
]


@pytest.mark.parametrize(("step", "expected"), REFUSED)
def test_schedule_refuses_and_plans_nothing(ws: Path, step: str, expected: str) -> None:
    write_list(ws, "desk", 2)
    campaign = write_campaign(ws, email("desk", "2027-03-10 09:00") + step)
    result = run("schedule", str(campaign), "--live")
    assert result.exit_code == 1, result.output
    message = result.stderr.strip().removeprefix("Error: ")
    pattern = re.escape(expected.replace("{f}", str(campaign))).replace(
        re.escape("{now}"), r"\d+ \w+ \d{4} \d\d:\d\d CET"
    )
    assert re.fullmatch(pattern, message), message
    ledger = Ledger(load_settings(workspace=ws).database_url)
    try:
        assert ledger.states("launch") == {}
    finally:
        ledger.close()


def test_embargoed_email_step_goes_out_under_the_banner(ws: Path, server: SmtpServer) -> None:
    write_list(ws, "desk", 2)
    steps = email("desk", "2027-03-09 18:00", flags="embargoed = true\n")
    assert run("schedule", str(write_campaign(ws, steps)), "--live").exit_code == 0
    assert worker_at(datetime(2027, 3, 9, 17, 0, tzinfo=UTC)).run_due() == ["done"]
    subjects = {item.message["Subject"] for item in server.received}
    assert len(server.received) == 2
    assert all(s.startswith("EMBARGOED until 10 March 2027 08:00 CET: ") for s in subjects)


def test_schedule_again_keeps_one_entry_per_step_and_replaces_pending(ws: Path) -> None:
    write_list(ws, "desk", 2)
    write_list(ws, "wire", 2)
    campaign = write_campaign(
        ws, email("desk", "2027-03-10 09:00") + email("wire", "2027-03-10 10:00")
    )
    assert run("schedule", str(campaign)).exit_code == 0  # a dry-run schedule first
    live = run("schedule", str(campaign), "--live")
    assert live.exit_code == 0
    assert "Replaced: desk (dry, was scheduled) is no longer scheduled" in live.stdout
    assert "Replaced: wire (dry, was scheduled) is no longer scheduled" in live.stdout
    write_campaign(ws, email("desk", "2027-03-10 09:30"))  # edited: a new time, one step
    edited = run("schedule", str(campaign), "--live")
    assert edited.exit_code == 0
    assert "Replaced: wire (live, was scheduled) is no longer scheduled" in edited.stdout
    assert "Replaced: desk" not in edited.stdout
    live = status_json()
    assert {name: (s["state"], s["next_run"]) for name, s in live.items()} == {
        "desk": ("scheduled", "2027-03-10T08:30:00+00:00"),
        "wire": ("cancelled", None),
    }
    dry = status_json("--dry")
    assert {name: s["state"] for name, s in dry.items()} == {
        "desk": "cancelled",
        "wire": "cancelled",
    }


def test_scheduling_again_never_stops_a_step_under_way(ws: Path) -> None:
    """A dry schedule typed while the live step is sending (--live forgotten), or a file
    that dropped the step, replaces what is pending, not a send under way."""
    write_list(ws, "desk", 2)
    write_list(ws, "wire", 2)
    campaign = write_campaign(
        ws, email("desk", "2027-03-10 09:00") + email("wire", "2027-03-10 10:00")
    )
    assert run("schedule", str(campaign), "--live").exit_code == 0
    worker = worker_at(T)
    try:
        desk = next(s for s in worker.ledger.timed() if s.name == "desk")
        assert worker.ledger.take(desk.id, worker.id, due=T)
        dry = run("schedule", str(campaign))
        assert dry.exit_code == 0, dry.output
        assert "Replaced: wire (live, was scheduled) is no longer scheduled" in dry.stdout
        assert "Replaced: desk (live" not in dry.stdout
        assert status_json()["desk"]["state"] == "running"
        write_campaign(ws, email("wire", "2027-03-10 10:00"))
        dropped = run("schedule", str(campaign), "--live")
        assert dropped.exit_code == 0, dropped.output
        assert "Replaced: desk (live" not in dropped.stdout
        assert status_json()["desk"]["state"] == "running"
    finally:
        worker.close()


def test_a_sent_step_is_never_sent_again(ws: Path, server: SmtpServer) -> None:
    write_list(ws, "desk", 3)
    write_list(ws, "wire", 2)
    campaign = write_campaign(
        ws, email("desk", "2027-03-10 09:00") + email("wire", "2027-03-10 10:00")
    )
    assert run("schedule", str(campaign), "--live").exit_code == 0
    assert worker_at(T).run_due() == ["done"]
    assert len(server.received) == 3
    again = run("schedule", str(campaign), "--live")
    assert again.exit_code == 0, again.output
    assert re.search(r"desk\s*│.*│\s*done \(sent 3\)", again.stdout)
    assert worker_at(T + timedelta(hours=1)).run_due() == ["done"]
    assert Counter(r for item in server.received for r in item.recipients) == Counter(
        {f"desk{n:03d}@example.com": 1 for n in range(3)}
        | {f"wire{n:03d}@example.com": 1 for n in range(2)}
    )


def test_a_step_sent_keeps_its_time_when_the_file_moves_it(ws: Path, server: SmtpServer) -> None:
    """Scheduling again after an edit that moves a step already sent changes nothing of it:
    the ledger and the timeline still say when it went out, not the file's new time."""
    write_list(ws, "desk", 2)
    write_list(ws, "wire", 2)
    campaign = write_campaign(
        ws, email("desk", "2027-03-10 09:00") + email("wire", "2027-03-10 10:00")
    )
    assert run("schedule", str(campaign), "--live").exit_code == 0
    assert worker_at(T).run_due() == ["done"]
    write_campaign(ws, email("desk", "2027-03-12 09:00") + email("wire", "2027-03-12 10:00"))
    again = run("schedule", str(campaign), "--live")
    assert again.exit_code == 0, again.output
    assert re.search(r"desk\s*│.*│ 2027-03-10 09:00:00 CET │.*│\s*done \(sent 2\)", again.stdout)
    steps = status_json()
    assert (steps["desk"]["state"], steps["desk"]["at"]) == ("done", "2027-03-10T08:00:00+00:00")
    assert steps["wire"]["next_run"] == "2027-03-12T09:00:00+00:00"
    assert len(server.received) == 2


def test_a_new_time_zone_in_the_file_is_the_one_shown_after_scheduling_again(
    ws: Path, server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    write_list(ws, "desk", 2)
    campaign = write_campaign(ws, email("desk", "2027-03-10 09:00"))
    assert run("schedule", str(campaign), "--live").exit_code == 0
    text = campaign.read_text("utf-8").replace("Europe/Paris", "America/New_York")
    campaign.write_text(text.replace("2027-03-10 09:00", "2027-03-10 03:00"), "utf-8")
    again = run("schedule", str(campaign), "--live")
    assert again.exit_code == 0, again.output
    assert "2027-03-10 03:00:00 EST" in again.stdout
    assert status_json()["desk"]["next_run"] == "2027-03-10T08:00:00+00:00"
    assert "2027-03-10 03:00 EST" in run("status").stdout
    with caplog.at_level("INFO", logger="distribute.scheduler"):
        assert worker_at(T + timedelta(minutes=2)).run_due() == ["done"]
    assert "started launch/desk (live), 2 min late (due at 10 March 2027 03:00 EST)" in (
        caplog.messages
    )


# --------------------------------------------------------------------------- late and missed


def test_restarted_within_the_grace_sends_once_and_reports_lateness(
    ws: Path, server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    write_list(ws, "desk", 4)
    campaign = write_campaign(ws, email("desk", "2027-03-10 09:00"), extra='late_grace = "45m"')
    assert run("schedule", str(campaign), "--live").exit_code == 0
    with caplog.at_level("INFO", logger="distribute.scheduler"):
        assert worker_at(T + timedelta(minutes=44)).run_due() == ["done"]
    assert "started launch/desk (live), 44 min late (due at 10 March 2027 09:00 CET)" in (
        caplog.messages
    )
    assert server.handler.per_recipient() == Counter(
        {f"desk{n:03d}@example.com": 1 for n in range(4)}
    )
    assert worker_at(T + timedelta(minutes=50)).run_due() == []  # done: nothing again
    shown = run("status")
    assert "desk: started 44 min late (due at 10 March 2027 09:00 CET)" in shown.stdout


def test_restarted_after_the_grace_marks_missed_and_sends_nothing(
    ws: Path, server: SmtpServer
) -> None:
    write_list(ws, "desk", 4)
    campaign = write_campaign(ws, email("desk", "2027-03-10 09:00"), extra="late_grace = 900")
    assert run("schedule", str(campaign), "--live").exit_code == 0
    assert worker_at(T + timedelta(minutes=16)).run_due() == ["missed"]
    assert not server.received
    assert status_json()["desk"]["state"] == "missed"
    shown = run("status")
    assert (
        "desk: missed: due at 10 March 2027 09:00 CET, found 16 min late (late_grace 15 min): "
        "not sent. To send it: distribute send launch.toml --step desk --live"
    ) in shown.stdout
    assert worker_at(T + timedelta(minutes=17)).run_due() == []  # stays missed
    # The command status gives sends it, once.
    sent = run("send", "launch.toml", "--step", "desk", "--live")
    assert sent.exit_code == 0, sent.output
    assert len(server.received) == 4
    assert status_json()["desk"]["state"] == "done"
    assert "desk: sent with distribute send" in run("status").stdout


def test_a_worker_up_at_the_time_never_calls_its_own_step_missed(
    ws: Path, server: SmtpServer
) -> None:
    write_list(ws, "desk", 2)
    campaign = write_campaign(ws, email("desk", "2027-03-10 09:00"), extra='late_grace = "1m"')
    assert run("schedule", str(campaign), "--live").exit_code == 0
    clock = FakeClock(T - timedelta(minutes=5))
    worker = Worker(load_settings(workspace=ws), clock=clock)
    clock.now = T + timedelta(minutes=3)  # busy with another step past this one's grace
    assert worker.run_due() == ["done"]
    assert len(server.received) == 2


def test_a_database_restart_mid_step_is_resumed_not_failed(ws: Path, server: SmtpServer) -> None:
    """PostgreSQL drops every connection while a step sends: the step is put back and
    resumed, each journalist gets one message, and the one whose outcome could not be
    recorded is uncertain, not sent again."""
    import sqlalchemy as sa
    from databases import empty_ledger, postgres_url
    from test_worker_processes import configure

    url = postgres_url("this test")
    empty_ledger(url)
    configure(ws, server.port, url)
    config = ws / "distribute.toml"
    config.write_text(config.read_text("utf-8").replace("connections = 2", "connections = 1"))
    addresses = write_list(ws, "desk", 4)
    assert run("schedule", str(write_campaign(ws, email("desk", "2027-03-10 09:00"))), "--live")
    admin = sa.create_engine(url)
    original = server.handler.handle_DATA

    async def restart_on_the_second(srv: Any, session: Any, envelope: Any) -> str:
        if len(server.received) == 1:
            with admin.connect() as conn:  # as a restart does: every other session ends
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
        return await original(srv, session, envelope)

    server.handler.handle_DATA = restart_on_the_second  # type: ignore[method-assign]
    try:
        worker = worker_at(T)
        try:
            assert worker.run_due() == ["scheduled"]
            assert worker.run_due() == ["done"]
        finally:
            worker.close()
        assert server.handler.per_recipient() == Counter(dict.fromkeys(addresses, 1))
        counts = status_json()["desk"]["counts"]
        assert (counts["sent"], counts["uncertain"], counts["pending"]) == (3, 1, 0)
    finally:
        admin.dispose()
        empty_ledger(url)


def test_a_step_whose_end_was_never_recorded_is_resumed_by_its_own_worker(
    ws: Path, server: SmtpServer
) -> None:
    """The ledger still says this worker runs the step (the database was away as the step
    ended), but nothing runs it here: the worker's next read puts it back and finishes it,
    instead of holding it `running` for as long as the process lives (and never idle)."""
    write_list(ws, "desk", 3)
    assert run("schedule", str(write_campaign(ws, email("desk", "2027-03-10 09:00"))), "--live")
    worker = worker_at(T)
    try:
        (step,) = worker.ledger.timed(("scheduled",))
        assert worker.ledger.take(step.id, worker.id, due=T)
        assert not worker.idle()
        assert worker.run_due() == ["done"]
        assert worker.idle()
    finally:
        worker.close()
    assert server.handler.per_recipient() == Counter(
        {f"desk{n:03d}@example.com": 1 for n in range(3)}
    )


def test_a_step_sent_by_hand_at_its_time_waits_and_is_not_failed(
    ws: Path, server: SmtpServer
) -> None:
    """`send` holds the step as the worker fires it: the worker leaves it scheduled, not
    failed, and finishes it once the send is done; each journalist gets one message."""
    import socket

    write_list(ws, "desk", 3)
    assert run("schedule", str(write_campaign(ws, email("desk", "2027-03-10 09:00"))), "--live")
    worker = worker_at(T)
    try:
        (step,) = worker.ledger.timed(("scheduled",))
        by_hand = f"{socket.gethostname()}:{os.getpid()}:send"  # a live process on this host
        assert worker.ledger.acquire(step.ref, by_hand) is None
        assert worker.run_due() == ["scheduled"]
        assert status_json()["desk"]["state"] == "scheduled"
        assert not server.received
        worker.ledger.release(step.ref, by_hand)
        assert worker.run_due() == ["done"]
    finally:
        worker.close()
    assert server.handler.per_recipient() == Counter(
        {f"desk{n:03d}@example.com": 1 for n in range(3)}
    )


def test_a_database_gone_as_the_worker_starts_is_waited_for(
    ws: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The ledger is readable when the worker opens it and gone a moment later (here: the
    file removed, so every read finds no table): the worker says so and keeps reading,
    rather than dying on its first read with a traceback."""
    write_list(ws, "desk", 2)
    assert run("schedule", str(write_campaign(ws, email("desk", "2027-03-10 09:00"))), "--live")
    worker = Worker(load_settings(workspace=ws), poll=0.05)
    for name in ("distribute.db", "distribute.db-wal", "distribute.db-shm"):
        (ws / name).unlink(missing_ok=True)
    worker.ledger.engine.dispose()  # its open connections still read the removed file
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            worker.serve(handle_signals=False)
        except BaseException as exc:
            errors.append(exc)

    with caplog.at_level("INFO", logger="distribute.scheduler"):
        thread = threading.Thread(target=serve)
        thread.start()
        deadline = time.monotonic() + 20
        while thread.is_alive() and not any("cannot read" in m for m in caplog.messages):
            assert time.monotonic() < deadline, "the worker never said it cannot read"
            time.sleep(0.01)
        worker.stop()
        thread.join(10)
    worker.close()
    assert errors == []
    assert any(m.startswith("cannot read the schedule (no such table") for m in caplog.messages)


# --------------------------------------------------------------------------- at fire time


def test_suppression_added_after_schedule_is_honoured(ws: Path, server: SmtpServer) -> None:
    write_list(ws, "desk", 4)
    campaign = write_campaign(ws, email("desk", "2027-03-10 09:00"))
    assert run("schedule", str(campaign), "--live").exit_code == 0
    assert run("recipients", "suppress", "DESK002@Example.com").exit_code == 0
    assert worker_at(T).run_due() == ["done"]
    assert sorted(r for item in server.received for r in item.recipients) == [
        "desk000@example.com",
        "desk001@example.com",
        "desk003@example.com",
    ]
    assert status_json()["desk"]["counts"]["skipped"] == 1


def test_a_release_broken_after_scheduling_fails_its_step_loudly(
    ws: Path, server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    write_list(ws, "desk", 2)
    campaign = write_campaign(ws, email("desk", "2027-03-10 09:00"))
    assert run("schedule", str(campaign), "--live").exit_code == 0
    release = ws / "hydrogen.md"
    release.write_text(release.read_text("utf-8").replace("language: en", "language: [en"))
    with caplog.at_level("ERROR", logger="distribute.scheduler"):
        assert worker_at(T).run_due() == ["failed"]
    assert not server.received
    [line] = caplog.messages
    assert line.startswith(f"failed launch/desk (live): {release}:")
    shown = run("status")
    assert "desk: failed: " in shown.stdout
    assert "To send it once fixed: distribute send launch.toml --step desk --live" in shown.stdout
    assert status_json()["desk"]["state"] == "failed"


def test_cancel_before_the_time_sends_nothing(ws: Path, server: SmtpServer) -> None:
    write_list(ws, "desk", 2)
    write_list(ws, "wire", 2)
    campaign = write_campaign(
        ws, email("desk", "2027-03-10 09:00") + email("wire", "2027-03-10 09:00")
    )
    assert run("schedule", str(campaign), "--live").exit_code == 0
    one = run("cancel", "launch", "--step", "wire")
    assert one.exit_code == 0, one.output
    assert one.stdout == "wire (live): cancelled (was scheduled).\n"
    assert worker_at(T).run_due() == ["done"]
    assert {r for item in server.received for r in item.recipients} == {
        "desk000@example.com",
        "desk001@example.com",
    }
    assert (
        run("cancel", str(campaign)).stdout
        == "Nothing to cancel: no step of launch is scheduled.\n"
    )
    bad = run("cancel", "launch", "--step", "nope")
    assert bad.exit_code == 2
    assert "'launch' has no step 'nope' (steps: desk, wire)" in bad.stderr
    unknown = run("cancel", "other")
    assert unknown.exit_code == 1
    assert unknown.stderr == "Error: no campaign named 'other' has been scheduled\n"


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(lambda ws: (ws / "hydrogen.md").unlink(), id="release-deleted"),
        pytest.param(
            lambda ws: (ws / "launch.toml").write_text("name = [", "utf-8"), id="file-broken"
        ),
        pytest.param(lambda ws: (ws / "launch.toml").unlink(), id="file-deleted"),
    ],
)
def test_status_and_cancel_by_file_work_when_the_campaign_is_broken(
    ws: Path, breakage: Any
) -> None:
    """Seeing and stopping a campaign must not need a campaign that still loads: the file
    is known to the ledger by its path."""
    write_list(ws, "desk", 2)
    campaign = write_campaign(ws, email("desk", "2027-03-10 09:00"))
    assert run("schedule", str(campaign), "--live").exit_code == 0
    breakage(ws)
    if (ws / "launch.toml").exists():
        shown = run("status", "launch.toml")
        assert shown.exit_code == 0, shown.output
        assert "desk" in shown.stdout
    result = run("cancel", "launch.toml")
    assert result.exit_code == 0, result.output
    assert result.stdout == "desk (live): cancelled (was scheduled).\n"


def test_cancel_as_a_worker_takes_the_step_cancels_it_running(ws: Path) -> None:
    """A worker takes the step between cancel's read and its update: cancel still cancels
    it (as a running step) rather than saying there was nothing to cancel."""
    import sqlalchemy as sa

    write_list(ws, "desk", 2)
    assert run("schedule", str(write_campaign(ws, email("desk", "2027-03-10 09:00"))), "--live")
    url = load_settings(workspace=ws).database_url
    canceller, worker = Ledger(url), worker_at(T)
    (step,) = worker.ledger.timed(("scheduled",))

    raced: list[bool] = []

    def worker_first(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE STEPS") and not raced:
            raced.append(worker.ledger.take(step.id, worker.id, due=T))

    sa.event.listen(canceller.engine, "before_cursor_execute", worker_first)
    try:
        assert canceller.cancel("launch") == [("desk", "live", "running")]
        assert raced == [True]
        assert worker.ledger.timed_step(step.id).state == "cancelled"  # type: ignore[union-attr]
    finally:
        canceller.close()
        worker.close()


def test_cancel_stops_a_running_step_after_the_messages_under_way(workspace: Path) -> None:
    with SmtpServer(Faults(latency=0.05)) as server:
        write_config(workspace, server.port)
        write_list(workspace, "desk", 40)
        campaign = write_campaign(workspace, email("desk", "2027-03-10 09:00"))
        assert run("schedule", str(campaign), "--live").exit_code == 0
        worker = worker_at(T)
        step_id = worker.ledger.timed()[0].id
        outcome: list[str | None] = []
        runner = threading.Thread(target=lambda: outcome.append(worker.fire(step_id)))
        runner.start()
        while len(server.received) < 3:
            time.sleep(0.01)
        assert run("cancel", "launch").stdout.startswith("desk (live): cancelled while running")
        worker.sync(NoTimer())  # the worker's next read of the table
        runner.join(10)
        received = len(server.received)
    assert outcome == ["scheduled"]  # halted; the cancelled state stays
    counts = status_json()["desk"]["counts"]
    assert status_json()["desk"]["state"] == "cancelled"
    assert counts["sent"] == received < 40
    assert counts["pending"] == 40 - received
    assert counts["sending"] == 0
    assert worker_at(T + timedelta(minutes=1)).run_due() == []


class NoTimer:
    """Stands in for APScheduler where a test drives the worker by hand."""

    def add_job(self, *args: Any, **kwargs: Any) -> None:
        pass

    def get_job(self, job_id: str) -> None:
        return None


def test_a_step_left_running_by_a_dead_worker_is_resumed(ws: Path, server: SmtpServer) -> None:
    write_list(ws, "desk", 3)
    campaign = write_campaign(ws, email("desk", "2027-03-10 09:00"))
    assert run("schedule", str(campaign), "--live").exit_code == 0
    ledger = Ledger(load_settings(workspace=ws).database_url)
    [step] = ledger.timed()
    # A worker on this host whose process is gone.
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert ledger.take(step.id, f"{socket.gethostname()}:{gone.stdout.strip()}:dead", due=T)
    ledger.close()
    assert worker_at(T + timedelta(hours=3)).run_due() == ["done"]  # resumed, not missed
    assert len(server.received) == 3


# --------------------------------------------------------------------------- status


def table_rows(text: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in text.splitlines()
        if line.startswith("│")
    ]


def test_status_is_the_live_truth_and_dry_runs_are_written_not_sent(
    ws: Path, server: SmtpServer
) -> None:
    write_list(ws, "desk", 3)
    campaign = write_campaign(ws, email("desk", "2027-03-10 09:00"))
    assert run("send", str(campaign)).exit_code == 0  # a dry run
    after_dry = run("status")
    assert after_dry.stdout == (
        "launch: nothing sent or scheduled live yet; 1 dry-run step is recorded "
        "(distribute status --dry).\n"
    )
    dry = run("status", "--dry").stdout
    assert "launch (Europe/Paris): dry runs, nothing sent" in dry
    assert "written" in dry and "sent │" not in dry
    version = load_campaign(campaign, load_settings(workspace=ws)).release_version
    assert table_rows(dry) == [
        ["desk", "2027-03-10 09:00 CET", "done", version, "3", "0", "0", "0"]
    ]

    assert run("send", str(campaign), "--live").exit_code == 0
    live = run("status").stdout
    assert "written" not in live
    assert table_rows(live) == [
        ["desk", "2027-03-10 09:00 CET", "done", version, "3", "0", "0", "0"]
    ]
    assert "(1 dry-run step not shown: distribute status --dry)" in live
    assert len(server.received) == 3  # the dry run sent nothing; the live run sent 3


def test_status_shows_the_next_run_of_scheduled_steps(ws: Path) -> None:
    write_list(ws, "desk", 3)
    campaign = write_campaign(ws, email("desk", "2027-03-10 09:00"))
    assert run("schedule", str(campaign), "--live").exit_code == 0
    [row] = table_rows(run("status").stdout)
    assert row[:2] == ["desk", "2027-03-10 09:00 CET"]
    assert re.fullmatch(r"scheduled \(in \d+ d( \d+ h)?\)", row[2]), row


# The schedule's columns of the steps table, which ledgers made before it lack.
SCHEDULE_COLUMNS = ("state", "late_grace", "worker", "started_at", "note")


def test_a_ledger_from_before_the_schedule_gains_its_columns(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from distribute.ledger import metadata

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    with engine.begin() as conn:  # as an earlier version made it
        for name in SCHEDULE_COLUMNS:
            conn.execute(sa.text(f"ALTER TABLE steps DROP COLUMN {name}"))
    engine.dispose()
    ledger = Ledger(url)
    try:
        present = {c["name"] for c in sa.inspect(ledger.engine).get_columns("steps")}
        assert set(SCHEDULE_COLUMNS) <= present
        ref = ledger.step("launch", "/w/launch.toml", "UTC", "desk", "email", "live", T)
        assert ledger.schedule(ref, T, timedelta(hours=1)) == "scheduled"
    finally:
        ledger.close()
    Ledger(url).close()  # opening again finds nothing to add


def test_schedule_and_worker_warn_when_live_posts_lack_x_credentials(
    ws: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("X_API_KEY", "X_API_SECRET", "X_ACCESS_TOKEN", "X_ACCESS_TOKEN_SECRET"):
        monkeypatch.delenv(name, raising=False)
    write_list(ws, "desk", 2)
    post = '[[post]]\nname = "announce"\nchannel = "x"\nat = "2027-03-10 09:05"\n'
    campaign = write_campaign(ws, email("desk", "2027-03-10 09:00") + post)
    live = run("schedule", str(campaign), "--live")
    assert live.exit_code == 0, live.output
    assert (
        "Warning: posting to X needs X_API_KEY, X_API_SECRET, X_ACCESS_TOKEN and "
        "X_ACCESS_TOKEN_SECRET in the environment (the keys and tokens of the X app; see the "
        "README's X section): the worker that runs announce needs them in its environment "
        "(they are not set here)"
    ) in live.stdout
    assert "X_API_KEY" not in run("schedule", str(campaign)).stdout  # a dry run posts nothing
    assert run("schedule", str(campaign), "--live").exit_code == 0
    worker = worker_at(T)
    with caplog.at_level("WARNING", logger="distribute.scheduler"):
        worker.check_credentials()
    worker.close()
    assert caplog.messages[-1].endswith(
        "; the live post step launch/announce will fail without them"
    )


def test_a_step_held_by_a_live_worker_is_not_taken_from_it(ws: Path) -> None:
    write_list(ws, "desk", 1)
    campaign = write_campaign(ws, email("desk", "2027-03-10 09:00"))
    assert run("schedule", str(campaign), "--live").exit_code == 0
    url = load_settings(workspace=ws).database_url
    ledger = Ledger(url)
    [step] = ledger.timed()
    assert ledger.take(step.id, f"{socket.gethostname()}:{os.getpid()}:busy", due=T)
    ledger.close()
    # Hours later by the clock, with no heartbeat: the process is there, so it is working.
    later = Ledger(url, clock=FakeClock(T + timedelta(hours=5)))
    try:
        assert later.reclaim() == []
        assert later.timed_step(step.id) is not None
        assert later.timed_step(step.id).state == "running"  # type: ignore[union-attr]
    finally:
        later.close()


def test_a_database_away_for_a_while_does_not_end_the_worker(
    ws: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlalchemy.exc

    worker = worker_at(T)
    real = worker.ledger.timed
    down = [True]

    def flaky(*args: Any) -> Any:
        if down[0]:
            raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception("server closed"))
        return real(*args)

    monkeypatch.setattr(worker.ledger, "timed", flaky)
    with caplog.at_level("INFO", logger="distribute.scheduler"):
        assert worker.tick(NoTimer()) is False
        assert worker.tick(NoTimer()) is False  # said once, not at every read
        down[0] = False
        assert worker.tick(NoTimer()) is True
    worker.close()
    assert caplog.messages == [
        "cannot read the schedule (server closed); trying again every 2 s",
        "the schedule can be read again",
    ]
