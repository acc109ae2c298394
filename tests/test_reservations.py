"""Reservations: each sending connection sets a few rows aside, then sends them one by one.

A reserved row has no SMTP transaction under way, so a run that ends or dies gives it back
as pending; a row is ``sending`` only while its message may be with the server, at most one
per connection, and is never mailed twice. Run on SQLite and PostgreSQL (when
``DISTRIBUTE_TEST_POSTGRES_URL`` is set), through the ledger and through real processes.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import test_ledger
from databases import emptied_postgres
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smtp_double import Faults, SmtpServer
from test_send import write_campaign, write_config

from distribute.ledger import RESERVE, Claim, Lane, Ledger, Planned, Result, StepRef

START = datetime(2027, 3, 10, 7, 0, tzinfo=UTC)


url = test_ledger.url  # the databases the ledger's tests run on


def dead_runner(n: int) -> str:
    """A runner id naming a process of this host that has exited: a crashed run."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return f"{socket.gethostname()}:{process.pid}:{n:08x}"


def states(ledger: Ledger, step: StepRef) -> dict[int, str]:
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id, state FROM deliveries WHERE step_id = :s"), {"s": step.id}
        ).all()
    return {int(row.id): str(row.state) for row in rows}


# ---------------------------------------------------------------- the ledger alone

OUTCOMES = ("sent", "failed", "retry", "skipped")
ROWS = 20
LANES = 3
_steps = itertools.count()


@dataclass
class Run:
    """One process's run of the step: its ledger, its lanes and its ``--limit`` budget."""

    ledger: Ledger
    runner: str
    budget: int
    lanes: list[Lane] = field(default_factory=list)
    # Per lane: the row claimed and its outcome, not recorded yet.
    held: list[Result | None] = field(default_factory=list)
    counted: int = 0  # messages that use the budget (not retries, not skipped)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.integers(0, LANES - 1), st.sampled_from(OUTCOMES)),
        st.tuples(st.just("stop"), st.integers(0, LANES - 1), st.sampled_from(OUTCOMES)),
        st.tuples(st.just("crash"), st.just(0), st.just("")),
    ),
    max_size=60,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations, st.integers(1, ROWS + 5))
def test_no_interleaving_mails_a_row_twice_or_loses_one(
    url: str, ops: list[tuple[str, int, str]], limit: int
) -> None:
    """Several lanes reserve, send and record in any order; runs crash (a new ledger on the
    same database takes the step over) and start again: no row is mailed twice, none is
    lost, a dead run's reservations come back pending, at most one row is `sending` per
    lane, and a run never sends more than its limit."""
    name = f"s{next(_steps)}"
    counter = itertools.count()
    mailed: Counter[int] = Counter()  # messages the server may have accepted, per row
    unknown: set[int] = set()  # rows whose message was under way when their run died

    def start() -> Run:
        ledger = Ledger(url, clock=lambda: START)
        run = Run(ledger, dead_runner(next(counter)), limit)
        ref = step_of(ledger)
        assert ledger.acquire(ref, run.runner) is None
        ledger.recover(ref, run.runner)
        for _ in range(LANES):
            run.lanes.append(ledger.lane(ref, run.runner))
            run.held.append(None)
        return run

    def step_of(ledger: Ledger) -> StepRef:
        return ledger.step("props", "/w/props.toml", "UTC", name, "email", "live", START)

    first = Ledger(url, clock=lambda: START)
    ref = step_of(first)
    first.plan(
        ref, [Planned(f"j{n:03d}@example.com", f"j{n:03d}@example.com") for n in range(ROWS)]
    )
    first.close()
    run = start()

    def settle(run: Run, index: int, outcome: str) -> Result | None:
        """The outcome of lane ``index``'s claimed row, as the dispatcher records it."""
        held = run.held[index]
        run.held[index] = None
        if held is None:
            return None
        if outcome in ("sent", "failed"):
            run.counted += 1
        else:
            run.budget += 1  # a retry or a skipped row does not use the limit
        if outcome == "sent":
            mailed[held.claim.id] += 1
        if outcome == "retry":
            return Result(held.claim, "pending", retry_at=START)  # due again at once
        return Result(held.claim, outcome)

    def advance(run: Run, index: int, outcome: str) -> bool:
        lane = run.lanes[index]
        done = settle(run, index, outcome)
        want = min(run.budget, lane.batch) if lane.low() else 0
        run.budget -= want
        got, reserved = lane.advance(done, want)
        run.budget += want - reserved
        if isinstance(got, Claim):
            # Never a row whose message the server may already have.
            assert mailed[got.id] == 0 and got.id not in unknown, got
            run.held[index] = Result(got, "sending")
            return True
        return False

    def check(run: Run) -> None:
        now = states(run.ledger, ref)
        assert sum(state == "sending" for state in now.values()) <= LANES
        assert sum(held is not None for held in run.held) == sum(
            state == "sending" for state in now.values()
        )
        assert run.counted <= limit
        for row in unknown:
            assert now[row] == "uncertain"  # never sent again
        for row, count in mailed.items():
            assert count + (row in unknown) <= 1, row

    try:
        for op, index, outcome in ops:
            if op == "advance":
                advance(run, index, outcome)
            elif op == "stop":
                # A normal end, a stop or Ctrl-C: the outcome recorded, reservations back.
                done = settle(run, index, outcome)
                if done is not None:
                    run.lanes[index].record(done)
                run.lanes[index].close()
                run.lanes[index] = run.ledger.lane(ref, run.runner)
            else:
                # SIGKILL: nothing recorded, nothing given back; the next run recovers.
                reserved = {row.id for lane in run.lanes for row in lane.queue}
                for held in run.held:
                    if held is not None:
                        unknown.add(held.claim.id)
                for lane in run.lanes:
                    if lane._conn is not None:  # the process is gone, and its connections
                        lane._conn.close()
                run.ledger.close()
                run = start()
                now = states(run.ledger, ref)
                assert "reserved" not in now.values()
                assert all(now[row] == "pending" for row in reserved)
                assert all(now[row] == "uncertain" for row in unknown)
            check(run)
        # The run goes on to the end (its limit), then runs without a limit finish the rest.
        for last in (run, None):
            if last is None:
                for lane in run.lanes:
                    lane.close()
                run.ledger.close()
                run = start()
                run.budget = ROWS * 4
                limit = ROWS * 4
            for index in range(LANES):
                while advance(run, index, "sent"):
                    check(run)
                run.lanes[index].close()
            check(run)
        final = states(run.ledger, ref)
        assert set(final.values()) <= {"sent", "failed", "uncertain", "skipped"}, final
        for row, state in final.items():
            if state == "uncertain":
                assert row in unknown
            if state == "sent":
                assert mailed[row] + (row in unknown) == 1
    finally:
        for lane in run.lanes:
            if lane._conn is not None:
                lane._conn.close()
        run.ledger.close()


frozen_operations = st.lists(
    st.tuples(
        st.sampled_from(("run", "frozen", "freeze")),
        st.integers(0, LANES - 1),
        st.sampled_from(OUTCOMES),
    ),
    max_size=50,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frozen_operations)
def test_a_frozen_holder_that_wakes_after_a_takeover_mails_nobody_twice(
    url: str, ops: list[tuple[str, int, str]]
) -> None:
    """A run stalls (SIGSTOP) and another takes the step over; the stalled one wakes up and
    goes on, in the worst case before it writes a heartbeat (its lanes' transactions
    interleave with the new holder's in any order): each lane finishes the message it had
    under way and records it, and may reserve and send more, but no row is ever mailed
    twice and, once both are done, every row is settled."""
    name = f"f{next(_steps)}"
    counter = itertools.count()
    mailed: Counter[int] = Counter()
    runs: list[Run] = []

    def step_of(ledger: Ledger) -> StepRef:
        return ledger.step("props", "/w/props.toml", "UTC", name, "email", "live", START)

    def start() -> Run:
        ledger = Ledger(url, clock=lambda: START)  # a wall clock the stalled run never reads
        run = Run(ledger, dead_runner(next(counter)), ROWS * 4)
        ref = step_of(ledger)
        assert ledger.acquire(ref, run.runner) is None  # the holder before it looks dead
        ledger.recover(ref, run.runner)
        for _ in range(LANES):
            run.lanes.append(ledger.lane(ref, run.runner))
            run.held.append(None)
        return run

    def under_way() -> set[int]:
        return {held.claim.id for run in runs for held in run.held if held is not None}

    def advance(run: Run, index: int, outcome: str) -> bool:
        lane = run.lanes[index]
        held, run.held[index] = run.held[index], None
        done = None
        if held is not None:
            if outcome == "sent":
                mailed[held.claim.id] += 1
            state = "pending" if outcome == "retry" else outcome
            done = Result(held.claim, state, retry_at=START if outcome == "retry" else None)
        got, _ = lane.advance(done, lane.batch if lane.low() else 0)
        if isinstance(got, Claim):
            # Never a row already mailed, nor one whose message another lane has under way.
            assert mailed[got.id] == 0 and got.id not in under_way(), got
            run.held[index] = Result(got, "sending")
            return True
        return False

    first = Ledger(url, clock=lambda: START)
    ref = step_of(first)
    first.plan(
        ref, [Planned(f"j{n:03d}@example.com", f"j{n:03d}@example.com") for n in range(ROWS)]
    )
    first.close()
    runs.append(start())
    try:
        for op, index, outcome in ops:
            if op == "freeze":
                runs.append(start())  # the newest run took the step over
            elif op == "run":
                advance(runs[-1], index, outcome)
            else:
                advance(runs[(index + len(runs) - 2) % len(runs)], index, outcome)
            assert max(mailed.values(), default=0) <= 1
        # Everyone wakes up and finishes; then a last run sends whatever came back.
        for run in runs:
            for index in range(LANES):
                while advance(run, index, "sent"):
                    pass
                run.lanes[index].close()
        runs.append(start())
        for index in range(LANES):
            while advance(runs[-1], index, "sent"):
                pass
            runs[-1].lanes[index].close()
        final = states(runs[-1].ledger, ref)
        assert set(final.values()) <= {"sent", "failed", "skipped"}, final
        assert max(mailed.values(), default=0) <= 1
        assert all(mailed[row] == 1 for row, state in final.items() if state == "sent")
    finally:
        for run in runs:
            for lane in run.lanes:
                if lane._conn is not None:
                    lane._conn.close()
            run.ledger.close()


def test_close_gives_back_what_the_lane_did_not_send(url: str) -> None:
    ledger = Ledger(url, clock=lambda: START)
    try:
        ref = ledger.step("launch", "/w/launch.toml", "UTC", "desk", "email", "live", START)
        ledger.plan(ref, [Planned(f"j{n}@example.com", f"j{n}@example.com") for n in range(20)])
        runner = dead_runner(0)
        assert ledger.acquire(ref, runner) is None
        lane = ledger.lane(ref, runner)
        got, reserved = lane.advance(None, RESERVE)
        assert isinstance(got, Claim) and reserved == RESERVE
        assert Counter(states(ledger, ref).values()) == {
            "pending": 20 - RESERVE,
            "reserved": RESERVE - 1,
            "sending": 1,
        }
        # Reserved rows count as pending for people and for every decision made on counts.
        assert ledger.counts(ref)["pending"] == 20 - 1
        lane.record(Result(got, "sent", 250))
        assert lane.close() == RESERVE - 1
        assert Counter(states(ledger, ref).values()) == {"pending": 19, "sent": 1}
    finally:
        ledger.close()


def test_the_lanes_of_two_ledgers_on_one_sqlite_file_take_turns(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lanes of one process queue on a lock for their write transactions on SQLite; two
    Ledger objects on the same file (spelt differently) share it, while a lane of one of
    them writes the other's wait their turn instead of in SQLite's busy handler. Another
    file has a lock of its own."""
    (workspace / "state").mkdir()
    (workspace / "other").symlink_to(workspace / "state")
    monkeypatch.chdir(workspace / "state")
    first = Ledger(f"sqlite:///{workspace / 'state' / 'distribute.db'}", clock=lambda: START)
    second = Ledger("sqlite:///distribute.db", clock=lambda: START)
    linked = Ledger(f"sqlite:///{workspace / 'other' / 'distribute.db'}", clock=lambda: START)
    elsewhere = Ledger(f"sqlite:///{workspace / 'elsewhere.db'}", clock=lambda: START)
    try:
        ref = first.step("launch", "/w/launch.toml", "UTC", "desk", "email", "live", START)
        first.plan(ref, [Planned(f"j{n}@example.com", f"j{n}@example.com") for n in range(3)])
        runner = dead_runner(0)
        assert first.acquire(ref, runner) is None
        lane = first.lane(ref, runner)
        with lane._begin():
            for other in (second, linked):
                assert other._writer.acquire(blocking=False) is False
            assert elsewhere._writer.acquire(blocking=False) is True
            elsewhere._writer.release()
        assert second._writer.acquire(blocking=False) is True
        second._writer.release()
        lane.close()
    finally:
        for ledger in (first, second, linked, elsewhere):
            ledger.close()


def test_an_uncertain_row_is_never_reserved(url: str) -> None:
    """--retry-uncertain claims one row at a time: an uncertain row made `reserved` would
    come back `pending` after a crash, and a plain run would send it again."""
    ledger = Ledger(url, clock=lambda: START)
    try:
        ref = ledger.step("launch", "/w/launch.toml", "UTC", "desk", "email", "live", START)
        ledger.plan(ref, [Planned(f"j{n}@example.com", f"j{n}@example.com") for n in range(4)])
        runner = dead_runner(1)
        assert ledger.acquire(ref, runner) is None
        first = ledger.lane(ref, runner)
        got, _ = first.advance(None, RESERVE)
        assert isinstance(got, Claim)
        first.record(Result(got, "uncertain", text="connection lost"))
        first.close()
        again = ledger.lane(ref, runner, retry_uncertain=True)
        assert again.batch == 1
        taken, reserved = again.advance(None, again.batch)
        assert isinstance(taken, Claim) and reserved == 1
        assert "reserved" not in states(ledger, ref).values()
        assert (taken.id, taken.was) == (got.id, "uncertain")
        again.close()
    finally:
        ledger.close()


def test_one_commit_per_message(workspace: Path) -> None:
    """Sending n more messages costs n more commits, and about two statements on the
    deliveries per message (record the last outcome, claim the next) plus one reservation
    per RESERVE messages: a send that went back to two transactions per message, or to
    statements that race and retry, fails here. Counted as SQLite runs them (its trace of
    every statement), whichever way they reach it."""
    from test_dispatch import Harness

    clock_ledger = Ledger(f"sqlite:///{workspace / 'distribute.db'}", clock=lambda: START)
    harness = Harness(workspace, clock_ledger)
    statements: Counter[str] = Counter()
    lock = threading.Lock()

    def trace(statement: str) -> None:
        verb, _, rest = statement.strip().partition(" ")
        if verb.upper() == "COMMIT" or "deliveries" in rest.split("WHERE")[0]:
            with lock:
                statements[verb.upper()] += 1

    def on_checkout(dbapi_connection: sqlite3.Connection, *args: object) -> None:
        dbapi_connection.set_trace_callback(trace)

    def on_checkin(dbapi_connection: sqlite3.Connection, *args: object) -> None:
        dbapi_connection.set_trace_callback(None)

    def measured(count: int) -> Counter[str]:
        statements.clear()
        harness.write(count)
        sa.event.listen(clock_ledger.engine, "checkout", on_checkout)
        sa.event.listen(clock_ledger.engine, "checkin", on_checkin)
        try:
            harness.run()
        finally:
            sa.event.remove(clock_ledger.engine, "checkout", on_checkout)
            sa.event.remove(clock_ledger.engine, "checkin", on_checkin)
        return Counter(statements)

    try:
        n = 5 * RESERVE
        few = measured(n)
        many = measured(3 * n)  # the same step: n sent, 2n more to send
        # n messages the first time, 2n the second: n more messages, n more commits.
        assert many["COMMIT"] - few["COMMIT"] == n
        extra = many["UPDATE"] - few["UPDATE"]
        assert 2 * n <= extra <= 2 * n + n // (RESERVE - 1) + 2
        assert harness.script.per_recipient() == Counter(
            {f"j{k:05d}@example.com": 1 for k in range(3 * n)}
        )
    finally:
        clock_ledger.close()


# ---------------------------------------------------------------- a real process


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    yield from emptied_postgres("this test")


@pytest.mark.slow
def test_a_killed_send_leaves_reservations_pending_and_sends_everyone_once(
    workspace: Path, state_url: str | None
) -> None:
    """SIGKILL a live send over 4 connections: its reserved rows are taken back as pending
    and sent by the next run, its `sending` rows (at most one per connection) are reported
    uncertain and not resent, and nobody gets the message twice."""
    total, connections = 160, 4
    with SmtpServer(Faults(latency=0.03)) as server:
        write_config(workspace, server.port, connections=connections)
        campaign = write_campaign(workspace, total)
        url = state_url or f"sqlite:///{workspace / 'distribute.db'}"
        if state_url is not None:
            with (workspace / "distribute.toml").open("a", encoding="utf-8") as config:
                config.write(f'[state]\nurl = "{state_url}"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("DISTRIBUTE_")}
        command = [sys.executable, "-m", "distribute", "send", str(campaign), "--live"]
        process = subprocess.Popen(
            command, cwd=workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 120
        while len(server.received) < total // 4 and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.communicate()
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                left = {
                    str(row.address): str(row.state)
                    for row in conn.execute(sa.text("SELECT address, state FROM deliveries"))
                }
            reserved = {a for a, state in left.items() if state == "reserved"}
            sending = {a for a, state in left.items() if state == "sending"}
            assert 0 < len(reserved) <= connections * RESERVE
            assert len(sending) <= connections
            again = subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True)
            assert "Traceback" not in again.stderr, again.stderr
            with engine.connect() as conn:
                after = {
                    str(row.address): str(row.state)
                    for row in conn.execute(sa.text("SELECT address, state FROM deliveries"))
                }
        finally:
            engine.dispose()
        per_recipient = server.handler.per_recipient()
    assert max(per_recipient.values()) == 1
    assert all(after[a] == "sent" for a in reserved)
    assert all(after[a] == "uncertain" for a in sending)
    assert set(after.values()) <= {"sent", "uncertain"}
    assert {a for a, state in after.items() if state == "sent"} <= set(per_recipient)
    assert len(per_recipient) >= total - len(sending)
    assert again.returncode == (1 if sending else 0), again.stdout


# ---------------------------------------------------------------- overlap


def test_what_the_work_aside_raises_leaves_the_message_sent(workspace: Path) -> None:
    """The SMTP channel runs ``meanwhile`` while the server holds the message; what it
    raises is kept, and the message's outcome is the server's."""
    from distribute.channels.base import Aside, Envelope
    from distribute.channels.smtp import SmtpChannel
    from distribute.config import load_settings

    with SmtpServer() as server:
        write_config(workspace, server.port, connections=1)
        settings = load_settings(workspace=workspace)
        aside = Aside(lambda: 1 / 0)
        data = b"From: press@example.org\r\nTo: j@example.com\r\nSubject: hi\r\n\r\nbody\r\n"
        with SmtpChannel(settings.smtp, None) as channel:
            outcome = channel.deliver(
                Envelope("press@example.org", "j@example.com", data, "<m>"), aside
            )
        assert outcome.state == "sent"
        assert isinstance(aside.error, ZeroDivisionError)
        assert [r.recipients for r in server.received] == [["j@example.com"]]


def test_a_next_message_that_cannot_be_built_does_not_change_the_current_outcome(
    workspace: Path,
) -> None:
    """The next message is built while the server reads the current one; when building it
    fails, the current message is recorded as the server answered (sent), then the run
    stops, and the next rows are pending, not lost and not uncertain."""
    from distribute.campaign import check_campaign, load_campaign
    from distribute.channels.smtp import SmtpChannel
    from distribute.config import load_settings
    from distribute.dispatch import Dispatcher, StepStopped

    during: list[bool] = []
    with SmtpServer() as server:
        write_config(workspace, server.port, connections=1)
        path = write_campaign(workspace, 3)
        settings = load_settings(workspace=workspace)
        campaign = load_campaign(path, settings)
        check = check_campaign(campaign, settings, now=datetime.now(UTC), send_now=True)

        class Watched(SmtpChannel):
            delivering = False

            def deliver(self, envelope: Any, meanwhile: Any = None) -> Any:
                Watched.delivering = True
                try:
                    return super().deliver(envelope, meanwhile)
                finally:
                    Watched.delivering = False

        class Failing(Dispatcher):
            def _message(self, draft: Any, recipient: Any, *args: Any) -> Any:
                if recipient.email == "j00001@example.com":
                    during.append(Watched.delivering)
                    raise RuntimeError("the template broke")
                return super()._message(draft, recipient, *args)

        ledger = Ledger(f"sqlite:///{workspace / 'distribute.db'}")
        try:
            dispatcher = Failing(
                settings, ledger, live=True, channel_factory=lambda: Watched(settings.smtp, None)
            )
            with pytest.raises(StepStopped, match="RuntimeError: the template broke"):
                dispatcher.run(campaign, check, campaign.step("desk"))
            [entry] = ledger.status("launch")
            [ref] = [s["ref"] for s in entry["steps"]]
            rows = {str(row["address"]): row for row in ledger.rows(ref)}
        finally:
            ledger.close()
        received = server.handler.per_recipient()
    assert during == [True]  # built while the first message was with the server
    assert received == Counter({"j00000@example.com": 1})
    first = rows["j00000@example.com"]
    assert (first["state"], first["last_code"]) == ("sent", 250)
    assert {a: r["state"] for a, r in rows.items()} == {
        "j00000@example.com": "sent",
        "j00001@example.com": "pending",
        "j00002@example.com": "pending",
    }


@pytest.mark.parametrize("connections", [1, 3])
def test_a_row_is_sending_before_the_server_learns_its_recipient(
    workspace: Path, connections: int
) -> None:
    """The connection writes MAIL FROM (no recipient in it) before it claims its next row,
    so the server answers while the ledger works; the claim is committed before RCPT TO,
    and a row suppressed at its claim is dropped with RSET, never named to the server."""
    from distribute.campaign import check_campaign, load_campaign
    from distribute.config import load_settings
    from distribute.dispatch import Dispatcher

    total = 12
    seen: list[tuple[str, str]] = []
    with SmtpServer() as server:
        write_config(workspace, server.port, connections=connections)
        path = write_campaign(workspace, total)
        settings = load_settings(workspace=workspace)
        campaign = load_campaign(path, settings)
        check = check_campaign(campaign, settings, now=datetime.now(UTC), send_now=True)
        url = f"sqlite:///{workspace / 'distribute.db'}"
        engine = sa.create_engine(url)
        handler = server.handler
        rcpt = handler.handle_RCPT

        async def checked(
            srv: Any, session: Any, envelope: Any, address: str, options: list[str]
        ) -> str:
            with engine.connect() as conn:
                state = conn.execute(
                    sa.text("SELECT state FROM deliveries WHERE address = :a"), {"a": address}
                ).scalar()
            seen.append((address, str(state)))
            if address == "j00001@example.com":
                # Someone asks to be removed while the step is under way.
                (workspace / "recipients" / "suppressed.csv").write_text(
                    "email\nj00007@example.com\n", "utf-8"
                )
            return await rcpt(srv, session, envelope, address, options)

        handler.handle_RCPT = checked  # type: ignore[method-assign]
        ledger = Ledger(url)
        try:
            report = Dispatcher(settings, ledger, live=True).run(
                campaign, check, campaign.step("desk")
            )
            [entry] = ledger.status("launch")
            [ref] = [s["ref"] for s in entry["steps"]]
            rows = {str(row["address"]): row for row in ledger.rows(ref)}
        finally:
            ledger.close()
            engine.dispose()
        received = handler.per_recipient()
    assert {state for _, state in seen} == {"sending"}
    assert "j00007@example.com" not in {address for address, _ in seen}
    assert received == Counter({f"j{n:05d}@example.com": 1 for n in range(total) if n != 7})
    assert (rows["j00007@example.com"]["state"], rows["j00007@example.com"]["last_text"]) == (
        "skipped",
        "suppressed while the step was being sent",
    )
    assert report.counts["sent"] == total - 1


def test_a_transaction_started_ahead_is_dropped_or_used(workspace: Path) -> None:
    """``prepare`` writes MAIL FROM; ``cancel`` drops it (RSET), ``deliver`` from the same
    sender goes on from it, and one from another sender starts again: the server gets
    each message once, from its own sender."""
    from distribute.channels.base import Envelope
    from distribute.channels.smtp import SmtpChannel
    from distribute.config import load_settings

    def envelope(sender: str, to: str) -> Envelope:
        data = f"From: {sender}\r\nTo: {to}\r\nSubject: hi\r\n\r\nbody\r\n".encode()
        return Envelope(sender, to, data, f"<{to}>")

    with SmtpServer() as server:
        write_config(workspace, server.port, connections=1)
        settings = load_settings(workspace=workspace)
        with SmtpChannel(settings.smtp, None) as channel:
            channel.prepare("press@example.org")
            channel.cancel()
            channel.cancel()  # nothing left to drop
            assert channel.deliver(envelope("press@example.org", "a@example.com")).state == "sent"
            channel.prepare("press@example.org")
            assert channel.deliver(envelope("press@example.org", "b@example.com")).state == "sent"
            channel.prepare("press@example.org")
            assert channel.deliver(envelope("desk@example.org", "c@example.com")).state == "sent"
            channel.prepare("press@example.org")  # left pending: closing drops it
        got = [(r.sender, r.recipients) for r in server.received]
    assert got == [
        ("press@example.org", ["a@example.com"]),
        ("press@example.org", ["b@example.com"]),
        ("desk@example.org", ["c@example.com"]),
    ]


@pytest.mark.parametrize("connections", [1, 2])
def test_a_message_at_the_server_whose_uncertain_outcome_fails_to_record_is_not_given_back(
    workspace: Path, state_url: str | None, monkeypatch: pytest.MonkeyPatch, connections: int
) -> None:
    """The channel breaks after the server has the message, and recording it as uncertain
    fails too (the database blinks): the row must stay `sending`, reported uncertain by the
    next run, never given back as pending and sent a second time."""
    from distribute.campaign import check_campaign, load_campaign
    from distribute.channels.smtp import SmtpChannel
    from distribute.config import load_settings
    from distribute.dispatch import Dispatcher, StepStopped

    with SmtpServer() as server:
        write_config(workspace, server.port, connections=connections)
        path = write_campaign(workspace, 4)
        settings = load_settings(workspace=workspace)
        campaign = load_campaign(path, settings)
        url = state_url or f"sqlite:///{workspace / 'distribute.db'}"

        class Breaking(SmtpChannel):
            def deliver(self, envelope: Any, meanwhile: Any = None) -> Any:
                outcome = super().deliver(envelope, meanwhile)
                if envelope.recipient == "j00001@example.com":
                    raise RuntimeError("the reply could not be read")
                return outcome

        record = Lane.record
        blinks = [1]

        def blinking(lane: Lane, done: Result) -> None:
            if done.claim.address == "j00001@example.com" and blinks:
                blinks.pop()
                raise sa.exc.OperationalError("UPDATE", {}, Exception("database is locked"))
            record(lane, done)

        monkeypatch.setattr(Lane, "record", blinking)
        stopped = []
        for _ in range(2):  # the run that breaks, then the one that sends the rest
            check = check_campaign(campaign, settings, now=datetime.now(UTC), send_now=True)
            ledger = Ledger(url)
            try:
                dispatcher = Dispatcher(
                    settings,
                    ledger,
                    live=True,
                    channel_factory=lambda: Breaking(settings.smtp, None),
                )
                try:
                    dispatcher.run(campaign, check, campaign.step("desk"))
                except StepStopped as exc:
                    stopped.append(exc.message)
                [entry] = ledger.status("launch")
                [ref] = [s["ref"] for s in entry["steps"]]
                rows = {str(row["address"]): str(row["state"]) for row in ledger.rows(ref)}
            finally:
                ledger.close()
        received = server.handler.per_recipient()
    assert received == Counter({f"j{n:05d}@example.com": 1 for n in range(4)})
    assert rows["j00001@example.com"] == "uncertain"
    assert len(stopped) == 1 and "j00001@example.com" in stopped[0], stopped


@pytest.mark.parametrize("connections", [1, 3])
def test_a_database_lost_while_recording_leaves_the_message_uncertain_not_resent(
    workspace: Path, state_url: str | None, monkeypatch: pytest.MonkeyPatch, connections: int
) -> None:
    """The database goes away while the server reads a message (PostgreSQL: every session
    ends, as in a restart; SQLite: another process locks the file for longer than the busy
    timeout), so the transaction that records it and claims the next row fails: the run
    stops, the message is reported uncertain by the next run and not sent again, and the
    others are each sent once."""
    import sqlite3

    import distribute.dispatch as dispatch_module
    import distribute.ledger as ledger_module
    from distribute.campaign import check_campaign, load_campaign
    from distribute.config import load_settings
    from distribute.dispatch import Dispatcher, StepStopped

    def short_wait(dbapi_connection: Any, record: Any) -> None:
        pragmas(dbapi_connection, record)
        dbapi_connection.execute("PRAGMA busy_timeout=50")

    pragmas = ledger_module._sqlite_pragmas
    monkeypatch.setattr(ledger_module, "_sqlite_pragmas", short_wait)
    total = 12
    blocker: list[sqlite3.Connection | None] = []  # the lock held on SQLite
    with SmtpServer() as server:
        write_config(workspace, server.port, connections=connections)
        path = write_campaign(workspace, total)
        settings = load_settings(workspace=workspace)
        campaign = load_campaign(path, settings)
        url = state_url or f"sqlite:///{workspace / 'distribute.db'}"
        admin = sa.create_engine(url)
        original = server.handler.handle_DATA

        async def lose_the_database(srv: Any, session: Any, envelope: Any) -> str:
            if len(server.received) == 4 and not blocker:
                if state_url is None:
                    lock = sqlite3.connect(
                        workspace / "distribute.db", isolation_level=None, check_same_thread=False
                    )
                    lock.execute("BEGIN EXCLUSIVE")
                    blocker.append(lock)
                else:
                    with admin.connect() as conn:
                        conn.execute(
                            sa.text(
                                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                            )
                        )
                    blocker.append(None)
            return await original(srv, session, envelope)

        server.handler.handle_DATA = lose_the_database  # type: ignore[method-assign]
        unrecorded = dispatch_module._unrecorded

        def back_once_seen(done: Result, exc: Exception) -> Any:
            # The database is back as soon as the run has seen it gone (SQLite: the other
            # process commits), so the run ends its step as it would after a blink.
            for lock in blocker:
                if lock is not None:
                    lock.close()
            return unrecorded(done, exc)

        monkeypatch.setattr(dispatch_module, "_unrecorded", back_once_seen)
        reports = []
        try:
            for _ in range(2):
                check = check_campaign(campaign, settings, now=datetime.now(UTC), send_now=True)
                ledger = Ledger(url)
                try:
                    reports.append(
                        Dispatcher(settings, ledger, live=True).run(
                            campaign, check, campaign.step("desk")
                        )
                    )
                except StepStopped as exc:
                    assert exc.lost, exc.message
                    reports.append(None)
                finally:
                    ledger.close()
            with admin.connect() as conn:
                rows = {
                    str(row.address): str(row.state)
                    for row in conn.execute(sa.text("SELECT address, state FROM deliveries"))
                }
        finally:
            admin.dispose()
        received = server.handler.per_recipient()
    assert reports[0] is None and reports[1] is not None
    assert max(received.values()) == 1
    uncertain = {a for a, state in rows.items() if state == "uncertain"}
    assert 1 <= len(uncertain) <= connections
    assert uncertain <= set(received)
    assert {a for a, state in rows.items() if state == "sent"} == set(received) - uncertain
    assert len(received) == total


mail_replies = st.lists(
    st.sampled_from(("250", "250", "250", "421", "451", "550", "drop")), min_size=1, max_size=12
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mail_replies, st.integers(1, 2), st.integers(0, 8))
def test_a_server_that_refuses_or_drops_the_early_mail_from_mails_nobody_twice(
    tmp_path_factory: pytest.TempPathFactory,
    state_url: str | None,
    replies: list[str],
    connections: int,
    suppressed_at: int,
) -> None:
    """The MAIL FROM written before the claim is answered with anything (250, 421 and a
    closed connection, 451, 550, or a connection dropped with no answer) while a recipient
    is suppressed mid-send: run after run, nobody is mailed twice, a suppressed recipient is
    never named to the server once saved, a row recorded sent was received once, and every
    message received is recorded sent or uncertain."""
    from distribute.campaign import check_campaign, load_campaign
    from distribute.config import load_settings
    from distribute.dispatch import Dispatcher, StepStopped

    workspace = tmp_path_factory.mktemp("mail")
    total = 6
    name = f"m{next(_steps)}"
    answers = iter(replies)
    named: list[str] = []
    suppressed: set[str] = set()
    with SmtpServer() as server:
        handler = server.handler
        mail, rcpt = handler.handle_MAIL, handler.handle_RCPT

        async def answer_mail(srv: Any, session: Any, envelope: Any, *args: Any) -> str:
            reply = next(answers, "250")
            if reply in ("421", "drop"):
                srv.transport.close()
                return "421 4.3.2 closing"
            if reply != "250":
                return f"{reply} not now"
            return await mail(srv, session, envelope, *args)

        async def note_rcpt(srv: Any, session: Any, envelope: Any, address: str, *a: Any) -> str:
            if len(named) == suppressed_at and not suppressed:
                suppressed.add(f"j{total - 1 - suppressed_at % total:05d}@example.com")
                (workspace / "recipients" / "suppressed.csv").write_text(
                    "email\n" + "".join(f"{s}\n" for s in suppressed), "utf-8"
                )
            named.append(address.lower())
            return await rcpt(srv, session, envelope, address, *a)

        handler.handle_MAIL = answer_mail  # type: ignore[method-assign]
        handler.handle_RCPT = note_rcpt  # type: ignore[method-assign]
        write_config(workspace, server.port, connections=connections, retry_delay=0.0)
        path = write_campaign(workspace, total, name=name)
        settings_ = load_settings(workspace=workspace)
        campaign = load_campaign(path, settings_)
        url = state_url or f"sqlite:///{workspace / 'distribute.db'}"
        for _ in range(4):
            check = check_campaign(campaign, settings_, now=datetime.now(UTC), send_now=True)
            ledger = Ledger(url)
            try:
                with contextlib.suppress(StepStopped):
                    Dispatcher(settings_, ledger, live=True).run(
                        campaign, check, campaign.step("desk")
                    )
                [entry] = ledger.status(name)
                [ref] = [s["ref"] for s in entry["steps"]]
                rows = {str(row["address"]): str(row["state"]) for row in ledger.rows(ref)}
            finally:
                ledger.close()
        received = handler.per_recipient()
    assert max(received.values(), default=0) <= 1
    if suppressed and connections == 1:
        # Saved while the server read a RCPT: the next claims all see it (with more
        # connections, another one may have claimed the address just before).
        [late] = suppressed
        assert late not in named[suppressed_at + 1 :]
    assert all(received[a] == 1 for a, state in rows.items() if state == "sent")
    assert all(rows[a] in ("sent", "uncertain") for a in received)
