"""The ledger's contract, run on every database it supports.

SQLite (a file, as in a workspace) always runs; PostgreSQL runs when
``DISTRIBUTE_TEST_POSTGRES_URL`` points at a database the tests may empty.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import threading
import weakref
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from databases import emptied_postgres
from hypothesis import given, settings
from hypothesis import strategies as st

from distribute.errors import CampaignError, LedgerError
from distribute.ledger import (
    HEARTBEAT_EVERY,
    PLAN_CHUNK,
    STALE_AFTER,
    STATES,
    Claim,
    Holder,
    Ledger,
    Planned,
    StepRef,
    metadata,
    runner_id,
)

START = datetime(2027, 3, 10, 7, 0, tzinfo=UTC)


class FakeClock:
    """An instant that moves only when told to."""

    def __init__(self, start: datetime = START):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(params=["sqlite-file", "postgresql"], ids=["sqlite-file", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite-file":
        yield f"sqlite:///{tmp_path / 'distribute.db'}"
        return
    yield from emptied_postgres("the ledger tests")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger(url: str, clock: FakeClock) -> Iterator[Ledger]:
    opened = Ledger(url, clock=clock)
    yield opened
    opened.close()


def make_step(ledger: Ledger, mode: str = "live", name: str = "desk") -> StepRef:
    return ledger.step("launch", "/w/launch.toml", "Europe/Paris", name, "email", mode, START)


def planned(*targets: str, skipped: bool = False) -> list[Planned]:
    return [Planned(t, t, skipped=skipped) for t in targets]


def claim(ledger: Ledger, step: StepRef, runner: str = "test:1:a") -> Claim:
    got = ledger.claim(step, runner)
    assert isinstance(got, Claim), got
    return got


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {state: n for state, n in counts.items() if n}


def test_step_is_idempotent(ledger: Ledger) -> None:
    first = make_step(ledger)
    again = make_step(ledger)
    assert again == first
    assert make_step(ledger, name="other").id != first.id
    [campaign] = ledger.status()
    assert [s["name"] for s in campaign["steps"]] == ["desk", "other"]


def test_plan_creates_rows_once(ledger: Ledger) -> None:
    step = make_step(ledger)
    assert ledger.plan(step, planned("a@example.com", "b@example.com")) == 2
    ledger.finish(claim(ledger, step), "sent", code=250)
    # Planning again (a re-run) adds the newcomer only; "a" stays sent, "b" pending.
    again = planned("a@example.com", "b@example.com", "c@example.com")
    assert ledger.plan(step, again) == 1
    assert nonzero(ledger.counts(step)) == {"sent": 1, "pending": 2}
    assert ledger.plan(step, again) == 0
    assert len(ledger.rows(step)) == 3


def test_suppressed_rows_are_skipped(ledger: Ledger) -> None:
    step = make_step(ledger)
    rows = planned("a@example.com") + planned("gone@example.com", skipped=True)
    assert ledger.plan(step, rows) == 2
    assert nonzero(ledger.counts(step)) == {"pending": 1, "skipped": 1}
    assert claim(ledger, step).target == "a@example.com"
    assert ledger.claim(step, "test:1:a") is None


def test_later_suppression_skips_a_pending_row_but_not_a_sent_one(ledger: Ledger) -> None:
    step = make_step(ledger)
    ledger.plan(step, planned("a@example.com", "b@example.com"))
    ledger.finish(claim(ledger, step), "sent")  # a
    assert ledger.plan(step, planned("a@example.com", "b@example.com", skipped=True)) == 0
    states = {row["target"]: row["state"] for row in ledger.rows(step)}
    assert states == {"a@example.com": "sent", "b@example.com": "skipped"}


def test_later_suppression_from_a_generator(ledger: Ledger) -> None:
    step = make_step(ledger)
    ledger.plan(step, planned("a@example.com"))
    ledger.plan(step, (row for row in planned("a@example.com", skipped=True)))
    assert nonzero(ledger.counts(step)) == {"skipped": 1}


def _counted(rows: list[Planned], alive: list[int]) -> Iterator[Planned]:
    """``rows`` one by one, noting before each how many of those already given are alive."""
    refs: list[weakref.ref[Planned]] = []
    while rows:
        alive.append(sum(ref() is not None for ref in refs))
        row = rows.pop(0)
        refs.append(weakref.ref(row))
        yield row
        del row


@pytest.mark.parametrize("again", [False, True], ids=["fresh step", "planned before"])
def test_plan_reads_its_rows_lazily_and_keeps_none(ledger: Ledger, again: bool) -> None:
    """Planning a large audience holds at most one chunk of it, not every row."""
    step = make_step(ledger)
    total = 3 * PLAN_CHUNK + 7
    targets = [f"j{n:05d}@example.com" for n in range(total)]
    if again:
        ledger.plan(step, planned(*targets[::2]))
    alive: list[int] = []
    rows = planned(*targets[:-1]) + planned(targets[-1], skipped=True)
    added = ledger.plan(step, _counted(rows, alive))
    assert len(alive) == total
    assert max(alive) <= PLAN_CHUNK
    assert added == (total // 2 if again else total)
    expected = {"pending": total - 1, "skipped": 1}
    assert nonzero(ledger.counts(step)) == expected


def test_concurrent_claims_take_each_row_exactly_once(ledger: Ledger) -> None:
    step = make_step(ledger)
    total, workers = 500, 8
    ledger.plan(step, planned(*(f"j{n:04d}@example.com" for n in range(total))))
    start = threading.Barrier(workers)
    taken: list[list[int]] = [[] for _ in range(workers)]
    failures: list[BaseException] = []

    def work(index: int) -> None:
        try:
            start.wait()
            while isinstance(got := ledger.claim(step, f"test:{index}:w"), Claim):
                taken[index].append(got.id)
        except BaseException as exc:  # reported below, in the test's own thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    every = Counter(row_id for ids in taken for row_id in ids)
    assert len(every) == total
    assert set(every.values()) == {1}
    assert sorted(every) == [row["id"] for row in ledger.rows(step)]
    assert nonzero(ledger.counts(step)) == {"sending": total}
    owners = Counter(row["claimed_by"] for row in ledger.rows(step))
    assert owners == Counter({f"test:{i}:w": len(taken[i]) for i in range(workers) if taken[i]})


def test_finish_only_moves_rows_being_sent(ledger: Ledger) -> None:
    step = make_step(ledger)
    ledger.plan(step, planned("a@example.com", "b@example.com"))
    first = claim(ledger, step)
    ledger.finish(first, "sent", code=250, text="250 queued", message_id="<m@example.org>")
    ledger.finish(first, "failed", code=550)  # late, or from a second runner: ignored
    ledger.unclaim(first)  # likewise
    [row_a, row_b] = ledger.rows(step)
    assert (row_a["state"], row_a["last_code"], row_a["message_id"]) == (
        "sent",
        250,
        "<m@example.org>",
    )
    assert row_a["attempts"] == 1
    stranger = Claim(row_b["id"], row_b["target"], row_b["address"], "", 1)
    ledger.finish(stranger, "sent")  # never claimed
    assert ledger.rows(step)[1]["state"] == "pending"
    with pytest.raises(ValueError):
        ledger.finish(stranger, "delivered")


def test_unclaim_gives_the_row_back_untouched(ledger: Ledger) -> None:
    step = make_step(ledger)
    ledger.plan(step, planned("a@example.com"))
    ledger.unclaim(claim(ledger, step))
    [row] = ledger.rows(step)
    assert (row["state"], row["attempts"]) == ("pending", 0)
    assert claim(ledger, step).attempts == 1


def test_retry_is_not_claimable_before_its_time(ledger: Ledger, clock: FakeClock) -> None:
    step = make_step(ledger)
    ledger.plan(step, planned("a@example.com"))
    first = claim(ledger, step)
    later = clock.now + timedelta(seconds=30)
    ledger.finish(first, "pending", code=451, text="451 greylisted", retry_at=later)
    assert ledger.claim(step, "test:1:a") == timedelta(seconds=30)
    clock.advance(12)
    assert ledger.claim(step, "test:1:a") == timedelta(seconds=18)
    # A fresh row is not held up by another's retry.
    ledger.plan(step, planned("a@example.com", "b@example.com"))
    assert claim(ledger, step).target == "b@example.com"
    clock.advance(18)
    again = claim(ledger, step)
    assert (again.target, again.attempts) == ("a@example.com", 2)
    assert ledger.claim(step, "test:1:a") is None


def test_recover_marks_stranded_rows_uncertain(ledger: Ledger) -> None:
    step = make_step(ledger)
    ledger.plan(step, planned("a@example.com", "b@example.com", "c@example.com"))
    claim(ledger, step)
    claim(ledger, step)  # a process died with these two inside their transactions
    mine = runner_id()
    assert ledger.acquire(step, mine) is None
    assert ledger.recover(step, mine) == 2
    assert nonzero(ledger.counts(step)) == {"uncertain": 2, "pending": 1}
    assert claim(ledger, step, mine).target == "c@example.com"
    assert ledger.claim(step, mine) is None  # uncertain rows are never resent
    assert ledger.recover(step, mine) == 1
    problems = ledger.status()[0]["steps"][0]["problems"]
    assert [p["state"] for p in problems] == ["uncertain"] * 3
    assert problems[0]["text"] == "the sending process stopped during the transaction"


def test_only_the_holder_recovers(ledger: Ledger) -> None:
    """A process that does not hold the step never takes the holder's rows for a dead one's."""
    step = make_step(ledger)
    ledger.plan(step, planned("a@example.com", "b@example.com"))
    holder = runner_id()
    assert ledger.acquire(step, holder) is None
    claim(ledger, step, holder)  # in the holder's SMTP transaction right now
    assert ledger.recover(step, "other:1:b") == 0
    assert nonzero(ledger.counts(step)) == {"sending": 1, "pending": 1}
    assert ledger.recover(step, holder) == 1


@pytest.mark.parametrize("limit", [0, 1, 3, 10])
def test_retry_uncertain_claims_only_what_it_resends(ledger: Ledger, limit: int) -> None:
    """Uncertain rows leave `uncertain` one claim at a time: a canary touches only its own."""
    step = make_step(ledger)
    ledger.plan(step, planned(*(f"u{n}@example.com" for n in range(10))))
    for _ in range(10):
        ledger.finish(claim(ledger, step), "uncertain", text="connection lost")
    assert ledger.claim(step, "test:1:a") is None  # never without asking
    for _ in range(limit):
        got = ledger.claim(step, "test:1:a", retry_uncertain=True)
        assert isinstance(got, Claim) and (got.was, got.attempts) == ("uncertain", 2)
        ledger.finish(got, "sent")
    assert nonzero(ledger.counts(step)) == {
        state: n for state, n in (("sent", limit), ("uncertain", 10 - limit)) if n
    }


def test_an_uncertain_row_given_back_stays_uncertain(ledger: Ledger) -> None:
    step = make_step(ledger)
    ledger.plan(step, planned("a@example.com"))
    ledger.finish(claim(ledger, step), "uncertain", text="connection lost")
    got = ledger.claim(step, "test:1:a", retry_uncertain=True)
    assert isinstance(got, Claim)
    ledger.unclaim(got)
    [row] = ledger.rows(step)
    assert (row["state"], row["attempts"], row["last_text"]) == (
        "uncertain",
        1,
        "connection lost",
    )


def test_dry_and_live_rows_are_separate(ledger: Ledger) -> None:
    dry, live = make_step(ledger, "dry"), make_step(ledger, "live")
    assert dry.id != live.id
    for step in (dry, live):
        ledger.plan(step, planned("a@example.com", "b@example.com"))
    while isinstance(got := ledger.claim(dry, "test:1:a"), Claim):
        ledger.finish(got, "sent")
    assert nonzero(ledger.counts(dry)) == {"sent": 2}
    assert nonzero(ledger.counts(live)) == {"pending": 2}
    modes = {s["mode"]: s["counts"]["sent"] for s in ledger.status("launch")[0]["steps"]}
    assert modes == {"dry": 2, "live": 0}


def test_reset_clears_dry_rows_and_refuses_live_ones(ledger: Ledger) -> None:
    dry, live = make_step(ledger, "dry"), make_step(ledger, "live")
    for step in (dry, live):
        ledger.plan(step, planned("a@example.com"))
        ledger.finish(claim(ledger, step), "sent")
    ledger.reset(dry)
    assert ledger.rows(dry) == []
    with pytest.raises(LedgerError, match="only dry-run rows can be reset"):
        ledger.reset(live)
    assert nonzero(ledger.counts(live)) == {"sent": 1}


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_acquire_refuses_a_live_runner(ledger: Ledger) -> None:
    step = make_step(ledger)
    mine = runner_id()  # this very process: alive
    assert ledger.acquire(step, mine) is None
    assert ledger.acquire(step, mine) is None  # taking it again is fine
    held = ledger.acquire(step, "other:1:b")
    assert held is not None and held.runner == mine
    host, pid, _ = mine.split(":")
    assert str(held) == f"PID {pid} on {host}" == f"PID {os.getpid()} on {socket.gethostname()}"
    ledger.release(step, "other:1:b")  # not the holder: no effect
    assert ledger.holder(step) == held
    ledger.release(step, mine)
    assert ledger.acquire(step, "other:1:b") is None


def test_acquire_takes_over_from_a_dead_process(ledger: Ledger) -> None:
    step = make_step(ledger)
    dead = f"{socket.gethostname()}:{dead_pid()}:x"
    assert ledger.acquire(step, dead) is None
    assert ledger.acquire(step, runner_id()) is None


def test_acquire_takes_over_a_stale_heartbeat(ledger: Ledger, clock: FakeClock) -> None:
    step = make_step(ledger)
    ledger.plan(step, planned("a@example.com"))
    # On another host, the pid cannot be checked: only the heartbeat tells.
    elsewhere = "elsewhere.example.org:4242:y"
    assert ledger.acquire(step, elsewhere) is None
    clock.advance(STALE_AFTER.total_seconds() - 1)
    claim(ledger, step, elsewhere)  # each claim is a heartbeat
    clock.advance(STALE_AFTER.total_seconds() - 1)
    held = ledger.acquire(step, "here:1:z")
    assert held is not None and held.runner == elsewhere
    assert str(held) == "PID 4242 on elsewhere.example.org"
    clock.advance(2)
    assert ledger.acquire(step, "here:1:z") is None
    held = ledger.acquire(step, elsewhere)
    assert held is not None and held.runner == "here:1:z"
    # The stale holder, still claiming, learns that it lost the step instead of going on.
    clock.advance(HEARTBEAT_EVERY.total_seconds())
    with pytest.raises(LedgerError, match="was taken over by PID 1 on here; this run stops"):
        ledger.claim(step, elsewhere)


def test_status_shape(ledger: Ledger) -> None:
    step = make_step(ledger)
    ledger.step("other", "/w/other.toml", "UTC", "x", "x", "dry", START)
    ledger.plan(step, planned("a@example.com", "b@example.com"))
    ledger.finish(claim(ledger, step), "failed", code=550, text="550 no such user")
    [entry] = ledger.status("launch")
    assert entry.keys() == {"name", "path", "timezone", "steps"}
    assert (entry["name"], entry["timezone"]) == ("launch", "Europe/Paris")
    [shown] = entry["steps"]
    assert shown.keys() == {
        "name",
        "channel",
        "at",
        "mode",
        "ref",
        "running",
        "counts",
        "releases",
        "problems",
        "skipped",
        "state",
        "note",
        "started_at",
    }
    assert shown["running"] is False  # nobody holds the step
    assert shown["state"] is None  # planned by send, not on the schedule
    assert (shown["name"], shown["channel"], shown["mode"]) == ("desk", "email", "live")
    assert shown["ref"] == step
    assert list(shown["counts"]) == list(STATES)
    assert nonzero(shown["counts"]) == {"failed": 1, "pending": 1}
    assert shown["problems"] == [
        {"address": "a@example.com", "state": "failed", "code": 550, "text": "550 no such user"}
    ]
    assert [c["name"] for c in ledger.status()] == ["launch", "other"]
    assert ledger.status("nothing") == []


def test_instants_come_back_in_utc(ledger: Ledger) -> None:
    make_step(ledger)
    at = ledger.status()[0]["steps"][0]["at"]
    assert at == START
    assert at.utcoffset() == timedelta(0)


def test_an_instant_in_another_zone_is_stored_as_the_same_instant(ledger: Ledger) -> None:
    paris = START.astimezone(ZoneInfo("Europe/Paris"))
    ledger.step("launch", "/w/launch.toml", "Europe/Paris", "desk", "email", "live", paris)
    assert ledger.status()[0]["steps"][0]["at"] == START


def test_rows_come_back_in_utc(ledger: Ledger) -> None:
    step = make_step(ledger)
    ledger.plan(step, planned("a@example.com"))
    ledger.finish(claim(ledger, step), "sent")
    [row] = ledger.rows(step)
    assert row["sent_at"] == START
    assert row["sent_at"].utcoffset() == timedelta(0)


def test_a_retry_time_in_another_zone_is_the_same_instant(ledger: Ledger, clock: FakeClock) -> None:
    step = make_step(ledger)
    ledger.plan(step, planned("a@example.com"))
    later = (clock.now + timedelta(seconds=30)).astimezone(ZoneInfo("Europe/Paris"))
    ledger.finish(claim(ledger, step), "pending", retry_at=later)
    assert ledger.claim(step, "test:1:a") == timedelta(seconds=30)


def test_a_clock_in_another_zone_stores_utc(url: str, clock: FakeClock) -> None:
    paris = ZoneInfo("Europe/Paris")
    ledger = Ledger(url, clock=lambda: clock.now.astimezone(paris))
    try:
        step = make_step(ledger)
        ledger.plan(step, planned("a@example.com"))
        ledger.finish(claim(ledger, step), "sent")
        assert ledger.rows(step)[0]["sent_at"] == START
    finally:
        ledger.close()


def test_status_tells_a_running_step_from_an_abandoned_one(ledger: Ledger) -> None:
    step = make_step(ledger)
    mine = runner_id()

    def running() -> bool:
        [entry] = ledger.status("launch")
        return bool(entry["steps"][0]["running"])

    assert ledger.acquire(step, mine) is None
    assert running()
    ledger.release(step, mine)
    assert not running()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert ledger.acquire(step, f"{socket.gethostname()}:{gone}:x") is None
    assert not running()  # held by a process that no longer exists


TARGETS = [f"t{n}@example.com" for n in range(5)]
_scratch: dict[str, Ledger] = {}
_examples = itertools.count()
plans = st.tuples(st.sets(st.sampled_from(TARGETS)), st.sets(st.sampled_from(TARGETS)))
outcomes = st.lists(st.sampled_from(["sent", "failed", "uncertain", "pending"]), max_size=3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(plans, outcomes), min_size=1, max_size=6))
def test_planning_again_reflects_the_audience_now(
    rounds: list[tuple[tuple[set[str], set[str]], list[str]]],
) -> None:
    """Whatever the history of lists and suppressions: a suppression wins over pending, a
    finished row keeps its state, and a skipped recipient selected again is pending."""
    # One in-memory ledger for every example, a new step each: opening one costs more.
    ledger = _scratch.setdefault("ledger", Ledger("sqlite://", clock=FakeClock()))
    step = make_step(ledger, name=f"s{next(_examples)}")
    for (selected, suppressed), finishes in rounds:
        suppressed &= selected
        before = {row["target"]: row["state"] for row in ledger.rows(step)}
        rows = [
            Planned(t, t, skipped=t in suppressed, reason="on the suppression list")
            for t in sorted(selected)
        ]
        ledger.plan(step, rows)
        after = {row["target"]: (row["state"], row["last_text"]) for row in ledger.rows(step)}
        for target in TARGETS:
            was = before.get(target)
            if was is None and target not in selected:
                assert target not in after
                continue
            state, reason = after[target]
            if was in ("sent", "failed", "uncertain"):
                assert state == was
            elif target in suppressed:
                assert (state, reason) == ("skipped", "on the suppression list")
            elif target in selected:
                assert state == "pending"
            else:
                assert (state, reason) == ("skipped", "no longer on the step's lists")
        for outcome in finishes:
            got = ledger.claim(step, "test:1:a")
            if not isinstance(got, Claim):
                break
            ledger.finish(got, outcome)


def test_an_older_ledger_gets_the_columns_it_lacks(url: str) -> None:
    old = Ledger(url)
    with old.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE deliveries DROP COLUMN release"))
    old.close()
    ledger = Ledger(url)
    try:
        step = make_step(ledger)
        ledger.plan(step, planned("a@example.com"))
        ledger.finish(claim(ledger, step), "sent", release="0123abcd")
        assert ledger.releases(step) == {"0123abcd": 1}
    finally:
        ledger.close()


def test_of_many_runners_acquiring_at_once_exactly_one_wins(ledger: Ledger) -> None:
    workers = 6

    def take(
        step: StepRef, runner: str, start: threading.Barrier, results: dict[str, Holder | None]
    ) -> None:
        start.wait()
        results[runner] = ledger.acquire(step, runner)

    for trial in range(10):
        step = make_step(ledger, name=f"race-{trial}")
        # All alive (this process), so none can be taken for a dead holder.
        runners = [f"{socket.gethostname()}:{os.getpid()}:r{n}" for n in range(workers)]
        start = threading.Barrier(workers)
        results: dict[str, Holder | None] = {}
        threads = [threading.Thread(target=take, args=(step, r, start, results)) for r in runners]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [r for r, held in results.items() if held is None]
        assert len(winners) == 1, results
        assert {held.runner for held in results.values() if held is not None} == set(winners)


def test_a_claim_is_one_statement_even_when_connections_race(ledger: Ledger) -> None:
    """Claimers do not all read the lowest pending id and race to update it: each claim is
    one UPDATE that picks and takes its row, so 8 connections claiming 400 rows make 400
    claiming statements plus one empty claim each, and no retries."""
    step = make_step(ledger)
    total, workers = 400, 8
    ledger.plan(step, planned(*(f"j{n:04d}@example.com" for n in range(total))))
    statements: Counter[str] = Counter()
    lock = threading.Lock()

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        verb, _, rest = statement.partition(" ")
        if "deliveries" in rest.split("WHERE")[0]:  # not the step's heartbeat
            with lock:
                statements[verb.upper()] += 1

    sa.event.listen(ledger.engine, "before_cursor_execute", count)
    start = threading.Barrier(workers)
    claimed = Counter[int]()
    failures: list[BaseException] = []

    def work(index: int) -> None:
        try:
            start.wait()
            while isinstance(got := ledger.claim(step, f"test:{index}:w"), Claim):
                with lock:
                    claimed[got.id] += 1
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sa.event.remove(ledger.engine, "before_cursor_execute", count)
    assert not failures
    assert len(claimed) == total and set(claimed.values()) == {1}
    # One UPDATE per claimed row and per worker's last, empty claim, which then asks when
    # the next row is due (one SELECT each).
    assert statements["UPDATE"] == total + workers
    assert statements["SELECT"] == workers


def test_a_stalled_holder_records_what_it_sent_and_stops_after_a_takeover(
    url: str, clock: FakeClock
) -> None:
    """A holder frozen mid-transaction (SIGSTOP, a suspended VM) past the stale heartbeat,
    then resumed: the message it was sending is recorded as what it is, not left uncertain
    for a retry to send twice, and it claims nothing more once another process took over,
    even after that process finished and let the step go."""
    first, second = Ledger(url, clock=clock), Ledger(url, clock=clock)
    try:
        step = make_step(first)
        first.plan(step, planned("a@example.com", "b@example.com", "c@example.com"))
        frozen, fresh = "elsewhere.example.org:4242:y", "here:1:z"
        assert first.acquire(step, frozen) is None
        inflight = claim(first, step, frozen)
        clock.advance(STALE_AFTER.total_seconds() + 1)
        assert second.acquire(step, fresh) is None
        assert second.recover(step, fresh) == 1  # it cannot know the frozen one's fate
        taken = claim(second, step, fresh)
        second.finish(taken, "sent", code=250)
        second.release(step, fresh)
        first.finish(inflight, "sent", code=250)  # the frozen process wakes up: 250
        states = {row["target"]: row["state"] for row in second.rows(step)}
        assert states == {
            "a@example.com": "sent",
            "b@example.com": "sent",
            "c@example.com": "pending",
        }
        clock.advance(HEARTBEAT_EVERY.total_seconds())
        with pytest.raises(LedgerError, match="this run stops"):
            first.claim(step, frozen)
        assert second.counts(step)["pending"] == 1
    finally:
        first.close()
        second.close()


def test_a_late_finish_never_overwrites_another_runners_claim(ledger: Ledger) -> None:
    """A row resent by --retry-uncertain belongs to that run: the first run, waking up
    late, does not record its outcome over the second's."""
    step = make_step(ledger)
    ledger.plan(step, planned("a@example.com"))
    late = claim(ledger, step, "one:1:a")
    ledger.finish(late, "uncertain", text="connection lost")
    again = ledger.claim(step, "two:2:b", retry_uncertain=True)
    assert isinstance(again, Claim)
    ledger.finish(late, "failed", code=550)
    ledger.unclaim(late)
    [row] = ledger.rows(step)
    assert (row["state"], row["claimed_by"]) == ("sending", "two:2:b")
    ledger.finish(again, "sent", code=250)
    assert ledger.rows(step)[0]["state"] == "sent"


def test_a_row_its_runner_made_uncertain_stays_uncertain(ledger: Ledger) -> None:
    """Only a takeover's uncertainty is lifted by the frozen runner: its own is final."""
    step = make_step(ledger)
    ledger.plan(step, planned("a@example.com"))
    got = claim(ledger, step, "one:1:a")
    ledger.finish(got, "uncertain", text="unexpected error during the transaction")
    ledger.unclaim(got)
    ledger.finish(got, "sent")
    [row] = ledger.rows(step)
    assert (row["state"], row["attempts"]) == ("uncertain", 1)


@pytest.mark.parametrize("typed", ["launch.toml", "w/launch.toml", "./w/launch.toml"])
def test_a_campaign_path_recorded_relative_by_an_older_ledger_is_the_same_campaign(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, typed: str
) -> None:
    """Older ledgers kept the path as typed, relative to where the command ran; run from
    anywhere else now, it is still that campaign (and is recorded absolute from then on),
    while a file of another name is not."""
    campaign = tmp_path / "w" / "launch.toml"
    campaign.parent.mkdir()
    campaign.write_text("", "utf-8")
    with ledger.engine.begin() as conn:
        conn.execute(
            sa.insert(metadata.tables["campaigns"]).values(
                name="launch", path=typed, timezone="UTC", created_at=START
            )
        )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    ledger.step("launch", str(campaign), "UTC", "desk", "email", "live", START)
    assert ledger.campaign_path("launch") == str(campaign)
    other = tmp_path / "w" / "relaunch.toml"
    other.write_text("", "utf-8")
    with pytest.raises(CampaignError, match="already used by"):
        ledger.step("launch", str(other), "UTC", "desk", "email", "live", START)


def test_two_ledgers_opening_one_new_sqlite_file_at_once_both_open(tmp_path: Path) -> None:
    """Two runs starting together on a workspace with no ledger yet: SQLite refuses the second
    switch to WAL at once ("database is locked", no busy wait), which stopped that run."""
    failures: list[BaseException] = []
    for round_ in range(60):
        url = f"sqlite:///{tmp_path / f'round-{round_}.db'}"
        together = threading.Barrier(2)

        def open_one(url: str = url, together: threading.Barrier = together) -> None:
            together.wait()
            try:
                Ledger(url).close()
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=open_one) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
