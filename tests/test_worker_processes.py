"""Real ``distribute run`` processes: signals, a kill mid-step, and several workers sharing work.

The SMTP server (aiosmtpd) runs in the test's process, the workers in their own.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from databases import emptied_postgres
from smtp_double import Faults, SmtpServer
from test_scheduler import (
    EMBARGOED,
    email,
    run,
    status_json,
    write_campaign,
    write_config,
    write_list,
)

from distribute.ledger import Ledger

pytestmark = pytest.mark.slow


def soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(timespec="seconds")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class Workers:
    """``distribute run`` processes in one workspace, each logging to its own file."""

    def __init__(self, workspace: Path):
        self.workspace = workspace
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DISTRIBUTE_")}
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = self.workspace / f"worker-{len(self.processes)}.log"
        with log.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "distribute", "run", *args],
                cwd=self.workspace,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        self.processes.append(process)
        self.logs.append(log)
        return process

    def log(self, index: int) -> str:
        return self.logs[index].read_text(encoding="utf-8")

    def wait(self, timeout: float = 120) -> list[int]:
        return [process.wait(timeout) for process in self.processes]

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def workers(workspace: Path) -> Iterator[Workers]:
    started = Workers(workspace)
    yield started
    started.stop_all()


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for the workspace's SQLite file; a PostgreSQL URL emptied before and after."""
    if request.param == "sqlite":
        yield None
        return
    yield from emptied_postgres("the worker tests")


def configure(workspace: Path, port: int, state_url: str | None = None) -> None:
    write_config(workspace, port)
    if state_url:
        with (workspace / "distribute.toml").open("a", encoding="utf-8") as config:
            config.write(f'[state]\nurl = "{state_url}"\n')


# --------------------------------------------------------------------------- several workers


@pytest.mark.parametrize("count", [2, 3], ids=["two-workers", "three-workers"])
def test_workers_share_the_steps_and_send_each_message_once(
    workspace: Path, workers: Workers, state_url: str | None, count: int
) -> None:
    names = [f"desk{n}" for n in range(6)]
    with SmtpServer(Faults(latency=0.04)) as server:
        configure(workspace, server.port, state_url)
        expected: Counter[str] = Counter()
        for name in names:
            expected.update(write_list(workspace, name, 10))
        at = soon(3)
        steps = "".join(email(name, at, flags=EMBARGOED) for name in names)
        assert run("schedule", str(write_campaign(workspace, steps)), "--live").exit_code == 0
        for _ in range(count):
            workers.start("--until-idle")
        codes = workers.wait()
        per_recipient = server.handler.per_recipient()
    assert codes == [0] * count, [workers.log(n) for n in range(count)]
    assert per_recipient == expected  # every journalist exactly once
    ran = [re.findall(r"finished launch/(desk\d) \(live\)", workers.log(n)) for n in range(count)]
    assert sorted(step for steps in ran for step in steps) == names  # each step by one worker
    assert sum(1 for steps in ran if steps) >= 2, ran  # and the work was shared
    assert {s["state"] for s in status_json().values()} == {"done"}


def test_steps_fire_at_their_time_each_message_once(workspace: Path, workers: Workers) -> None:
    with SmtpServer() as server:
        configure(workspace, server.port)
        expected = Counter(write_list(workspace, "desk", 4) + write_list(workspace, "wire", 4))
        first = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=6)
        second = first + timedelta(seconds=2)
        steps = email("desk", first.isoformat(), flags=EMBARGOED)
        steps += email("wire", second.isoformat(), flags=EMBARGOED)
        assert run("schedule", str(write_campaign(workspace, steps)), "--live").exit_code == 0
        workers.start("--until-idle")
        assert workers.wait() == [0], workers.log(0)
        per_recipient = server.handler.per_recipient()
    assert per_recipient == expected
    ledger = Ledger(f"sqlite:///{workspace / 'distribute.db'}")
    try:
        done = {step.name: step for step in ledger.timed(("done",))}
    finally:
        ledger.close()
    assert set(done) == {"desk", "wire"}
    for step in done.values():
        # The timer fires at the step's time, never before it and within a second.
        assert step.started_at is not None
        assert timedelta(0) <= step.started_at - step.at < timedelta(seconds=1), step


# --------------------------------------------------------------------------- signals


def test_a_step_scheduled_while_the_worker_runs_is_sent_by_it(
    workspace: Path, workers: Workers
) -> None:
    with SmtpServer() as server:
        configure(workspace, server.port)
        write_list(workspace, "desk", 5)
        worker = workers.start()  # runs until stopped, with nothing scheduled yet
        wait_for(lambda: "started on" in workers.log(0), "the worker to start")
        campaign = write_campaign(workspace, email("desk", soon(2), flags=EMBARGOED))
        assert run("schedule", str(campaign), "--live").exit_code == 0
        wait_for(lambda: "finished launch/desk" in workers.log(0), "the step to be sent")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, workers.log(0)
        assert len(server.received) == 5
    assert "SIGTERM: finishing the messages under way, then stopping" in workers.log(0)
    # The same events, and every delivery, are in the workspace's log.
    log = (workspace / "distribute.log").read_text(encoding="utf-8")
    assert "INFO started launch/desk (live)" in log
    assert "INFO finished launch/desk (live): sent 5, failed 0, uncertain 0, skipped 0" in log
    assert log.count(" launch/desk desk") == 5


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["TERM", "INT", "HUP"]
)
def test_a_stop_signal_finishes_messages_under_way_and_a_new_worker_resumes(
    workspace: Path, workers: Workers, signum: signal.Signals
) -> None:
    total = 80
    with SmtpServer(Faults(latency=0.03)) as server:
        configure(workspace, server.port)
        addresses = write_list(workspace, "desk", total)
        campaign = write_campaign(workspace, email("desk", soon(1), flags=EMBARGOED))
        assert run("schedule", str(campaign), "--live").exit_code == 0
        first = workers.start("--until-idle")
        wait_for(lambda: len(server.received) >= 10, "the first messages")
        first.send_signal(signum)
        assert first.wait(30) == 0, workers.log(0)
        log = workers.log(0)
        assert f"{signum.name}: finishing the messages under way, then stopping" in log
        assert "Traceback" not in log
        counts = status_json()["desk"]
        assert counts["state"] == "scheduled"  # back on the schedule, to be resumed
        assert counts["counts"]["sending"] == counts["counts"]["uncertain"] == 0
        assert counts["counts"]["sent"] == len(server.received) < total
        assert re.search(r"stopped launch/desk \(live\): sent \d+, .*; \d+ left pending", log)

        workers.start("--until-idle")
        assert workers.wait() == [0, 0]
        per_recipient = server.handler.per_recipient()
    assert per_recipient == Counter({address: 1 for address in addresses})
    assert "resumed launch/desk (live)" in workers.log(1)
    assert status_json()["desk"]["state"] == "done"


def test_a_worker_killed_mid_step_is_resumed_without_duplicates(
    workspace: Path, workers: Workers, state_url: str | None
) -> None:
    total = 150
    with SmtpServer(Faults(latency=0.03)) as server:
        configure(workspace, server.port, state_url)
        addresses = write_list(workspace, "desk", total)
        campaign = write_campaign(workspace, email("desk", soon(1), flags=EMBARGOED))
        assert run("schedule", str(campaign), "--live").exit_code == 0
        first = workers.start("--until-idle")
        wait_for(lambda: len(server.received) >= 20, "the first messages")
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert status_json()["desk"]["state"] == "running"  # nobody said otherwise

        workers.start("--until-idle")
        assert workers.wait()[1] == 0, workers.log(1)
        per_recipient = server.handler.per_recipient()
    assert max(per_recipient.values()) == 1  # nobody twice
    step = status_json()["desk"]
    counts = step["counts"]
    assert step["state"] == "done"
    assert counts["uncertain"] <= 2  # at most one per connection, reported, not resent
    assert counts["sent"] + counts["uncertain"] == total
    assert counts["pending"] == counts["sending"] == 0
    assert set(per_recipient) <= set(addresses)
    assert len(per_recipient) >= counts["sent"]
    assert "resuming launch/desk (live): its worker" in workers.log(1)
