"""The dispatcher with every dependency handed in: a scripted channel, a clock, a sleep.

No SMTP server here (``test_send.py`` has the real one): the channel answers what each
test scripts per address, and sleeping only moves the fake clock, so retries that would
take minutes run in milliseconds and their timing is exact.
"""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from distribute.campaign import Campaign, CampaignCheck, check_campaign, load_campaign
from distribute.channels.base import Aside, Channel, Envelope, Outcome
from distribute.config import load_settings
from distribute.dispatch import Dispatcher, Interrupted, RateLimiter, StepReport, StepStopped
from distribute.errors import ConfigError, DeliveryError, SmtpError
from distribute.ledger import STALE_AFTER, Claim, Lane, Ledger, Result, StepRef

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2027, 3, 10, 7, 0, tzinfo=UTC)

Reply = Outcome | Exception


def address(n: int) -> str:
    return f"j{n:05d}@example.com"


class FakeClock:
    def __init__(self) -> None:
        self.now = START
        self.lock = threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += timedelta(seconds=seconds)


@dataclass
class Script:
    """Replies per address, in order; an address with none left (or none scripted) is sent."""

    replies: dict[str, list[Reply]] = field(default_factory=dict)
    attempts: list[tuple[str, datetime]] = field(default_factory=list)
    delivered: list[Envelope] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, envelope: Envelope, now: datetime) -> Outcome:
        with self.lock:
            self.attempts.append((envelope.recipient, now))
            queue = self.replies.get(envelope.recipient)
            reply = queue.pop(0) if queue else Outcome("sent", 250, "250 2.0.0 queued")
            if isinstance(reply, Exception):
                raise reply
            if reply.state == "sent":
                self.delivered.append(envelope)
            return reply

    def per_recipient(self) -> Counter[str]:
        return Counter(envelope.recipient for envelope in self.delivered)

    def times(self, recipient: str) -> list[datetime]:
        return [moment for who, moment in self.attempts if who == recipient]


class RecordingChannel(Channel):
    live = True

    def __init__(self, script: Script, clock: FakeClock):
        self.script = script
        self.clock = clock
        self.opened = self.closed = 0

    def open(self) -> None:
        self.opened += 1

    def deliver(self, envelope: Envelope, meanwhile: Aside | None = None) -> Outcome:
        outcome = self.script.answer(envelope, self.clock())
        if meanwhile is not None:
            meanwhile()  # as the SMTP channel does while the server reads the message
        return outcome

    def close(self) -> None:
        self.closed += 1


@dataclass
class Harness:
    workspace: Path
    ledger: Ledger
    clock: FakeClock = field(default_factory=FakeClock)
    script: Script = field(default_factory=Script)
    channels: list[RecordingChannel] = field(default_factory=list)
    slept: list[float] = field(default_factory=list)

    def write(self, count: int, *, skip: frozenset[int] = frozenset(), **smtp: object) -> None:
        values: dict[str, object] = {
            "host": "127.0.0.1",
            "security": "none",
            "connections": 1,
            "retry_delay": 30,
            "max_retries": 3,
        }
        values.update(smtp)
        lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
        (self.workspace / "distribute.toml").write_text(
            '[sender]\nfrom = "Valmont Press Office <press@example.org>"\n'
            '[unsubscribe]\nurl = "https://www.example.org/unsubscribe?email={email}"\n'
            f'[paths]\nrecipients = "recipients"\n[smtp]\n{lines}',
            encoding="utf-8",
        )
        folder = self.workspace / "recipients"
        folder.mkdir(exist_ok=True)
        rows = ["email,first_name,last_name,outlet,language"]
        rows += [f"{address(n)},Jo{n},Doe,Daily {n},en" for n in range(count) if n not in skip]
        (folder / "desk.csv").write_text("\n".join(rows) + "\n", "utf-8")
        shutil.copy(ROOT / "releases" / "hydrogen.md", self.workspace / "hydrogen.md")
        (self.workspace / "launch.toml").write_text(
            'name = "launch"\nrelease = "hydrogen.md"\ntimezone = "Europe/Paris"\n'
            '[[email]]\nname = "desk"\nlists = ["desk"]\nat = "2027-03-10 08:00"\n'
            '[[post]]\nname = "announce"\nchannel = "x"\ntemplate = "x"\n'
            'at = "2027-03-10 08:05"\n',
            encoding="utf-8",
        )

    def load(self) -> tuple[Campaign, CampaignCheck]:
        settings = load_settings(workspace=self.workspace)
        campaign = load_campaign(self.workspace / "launch.toml", settings)
        return campaign, check_campaign(campaign, settings, now=self.clock(), send_now=True)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.sleep(seconds)

    def factory(self) -> Channel:
        channel = RecordingChannel(self.script, self.clock)
        self.channels.append(channel)
        return channel

    def run(
        self, step: str = "desk", *, live: bool = True, scripted: bool = True, **options: object
    ) -> StepReport:
        settings = load_settings(workspace=self.workspace)
        campaign, check = self.load()
        dispatcher = Dispatcher(
            settings,
            self.ledger,
            live=live,
            channel_factory=self.factory if scripted else None,
            clock=self.clock,
            sleep=self.sleep,
        )
        return dispatcher.run(campaign, check, campaign.step(step), **options)  # type: ignore[arg-type]

    def rows(self, mode: str = "live") -> dict[str, dict[str, object]]:
        [entry] = self.ledger.status("launch")
        [ref] = [s["ref"] for s in entry["steps"] if s["name"] == "desk" and s["mode"] == mode]
        return {str(row["address"]): row for row in self.ledger.rows(ref)}


@pytest.fixture
def harness(workspace: Path) -> Iterator[Harness]:
    clock = FakeClock()
    ledger = Ledger(f"sqlite:///{workspace / 'distribute.db'}", clock=clock)
    yield Harness(workspace, ledger, clock)
    ledger.close()


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {state: n for state, n in counts.items() if n}


def test_everyone_once(harness: Harness) -> None:
    harness.write(6, connections=3)
    report = harness.run()
    assert harness.script.per_recipient() == Counter({address(n): 1 for n in range(6)})
    assert nonzero(report.counts) == {"sent": 6}
    assert (report.planned, report.attempted, report.mode) == (6, 6, "live")
    assert len(harness.channels) == 3
    assert all((c.opened, c.closed) == (1, 1) for c in harness.channels)
    again = harness.run()
    assert again.finished_before
    assert len(harness.script.attempts) == 6


@pytest.mark.parametrize(
    ("max_retries", "delay"), [(0, 30), (1, 30), (3, 30), (4, 2.5)], ids=["0", "1", "3", "4"]
)
def test_backoff_doubles_and_is_bounded(harness: Harness, max_retries: int, delay: float) -> None:
    harness.write(3, max_retries=max_retries, retry_delay=delay)
    busy = address(1)
    harness.script.replies[busy] = [Outcome("retry", 452, "452 4.2.2 mailbox full")] * 10
    report = harness.run()
    times = harness.script.times(busy)
    assert len(times) == max_retries + 1
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert gaps == [delay * 2 ** (attempt - 1) for attempt in range(1, max_retries + 1)]
    assert nonzero(report.counts) == {"sent": 2, "failed": 1}
    row = harness.rows()[busy]
    assert (row["state"], row["attempts"], row["last_code"]) == ("failed", max_retries + 1, 452)
    tries = "1 attempt" if max_retries == 0 else f"{max_retries + 1} attempts"
    assert row["last_text"] == f"gave up after {tries}: 452 4.2.2 mailbox full"
    # The others were not held up behind the retries.
    assert [who for who, _ in harness.script.attempts[:3]] == [address(0), busy, address(2)]


def test_retry_then_sent(harness: Harness) -> None:
    harness.write(2)
    harness.script.replies[address(0)] = [Outcome("retry", 451, "451 4.7.1 greylisted")]
    report = harness.run()
    assert harness.script.per_recipient() == Counter({address(0): 1, address(1): 1})
    assert nonzero(report.counts) == {"sent": 2}
    assert harness.rows()[address(0)]["attempts"] == 2
    assert sum(harness.slept) == 30


def test_failed_is_final(harness: Harness) -> None:
    harness.write(2)
    refusal = "550 5.1.1 <j00000@example.com>: mailbox unavailable"
    harness.script.replies[address(0)] = [Outcome("failed", 550, refusal)]
    report = harness.run()
    assert report.problems == [
        {"address": address(0), "state": "failed", "code": 550, "text": refusal}
    ]
    harness.run()
    assert len(harness.script.times(address(0))) == 1


def test_uncertain_is_never_retried_unless_asked(harness: Harness) -> None:
    harness.write(3)
    lost = "connection lost before the server confirmed: timed out"
    harness.script.replies[address(1)] = [Outcome("uncertain", None, lost)]
    report = harness.run()
    assert nonzero(report.counts) == {"sent": 2, "uncertain": 1}
    assert report.problems == [
        {"address": address(1), "state": "uncertain", "code": None, "text": lost}
    ]
    again = harness.run()
    assert again.attempted == 0
    assert nonzero(again.counts) == {"sent": 2, "uncertain": 1}
    assert len(harness.script.times(address(1))) == 1
    retried = harness.run(retry_uncertain=True)
    assert retried.attempted == 1
    assert nonzero(retried.counts) == {"sent": 3}
    assert harness.script.per_recipient() == Counter({address(n): 1 for n in range(3)})


@pytest.mark.parametrize("connections", [1, 3], ids=["one-connection", "three-connections"])
def test_lost_server_stops_the_run_and_a_rerun_finishes(harness: Harness, connections: int) -> None:
    harness.write(8, connections=connections)
    gone = SmtpError("lost the connection to 127.0.0.1:587 twice in a row: Connection reset")
    harness.script.replies[address(3)] = [gone]
    with pytest.raises(StepStopped) as raised:
        harness.run()
    message = raised.value.format()
    assert message.startswith("lost the connection to 127.0.0.1:587 twice in a row")
    assert message.endswith("run the same command again to send the rest")
    # What the ledger held when the run stopped comes with the error.
    assert raised.value.report.counts == harness.ledger.counts(flaky_refs(harness)[0])
    row = harness.rows()[address(3)]
    given_back = ("pending", 0)  # not uncertain: the content never left
    if connections == 1:
        assert (row["state"], row["attempts"]) == given_back
    else:
        # A worker already past its stop check may still take the row given back.
        assert (row["state"], row["attempts"]) in {given_back, ("sent", 1)}
    assert not [r for r in harness.rows().values() if r["state"] == "sending"]
    assert all(c.closed == 1 for c in harness.channels)

    report = harness.run()
    assert nonzero(report.counts) == {"sent": 8}
    assert report.recovered == 0
    assert harness.script.per_recipient() == Counter({address(n): 1 for n in range(8)})


def test_limit_caps_messages(harness: Harness) -> None:
    harness.write(7, connections=3)
    first = harness.run(limit=3)
    assert len(harness.script.delivered) == 3
    assert nonzero(first.counts) == {"sent": 3, "pending": 4}
    second = harness.run(limit=3)
    assert nonzero(second.counts) == {"sent": 6, "pending": 1}
    harness.run()
    assert harness.script.per_recipient() == Counter({address(n): 1 for n in range(7)})


def test_limit_counts_messages_not_attempts(harness: Harness) -> None:
    harness.write(4)
    harness.script.replies[address(0)] = [Outcome("retry", 451, "451 greylisted")]
    report = harness.run(limit=2)
    assert nonzero(report.counts) == {"sent": 2, "pending": 2}
    # The refused attempt did not use up the budget; the retry waits for a later run.
    assert [who for who, _ in harness.script.attempts] == [address(0), address(1), address(2)]
    assert harness.rows()[address(0)]["state"] == "pending"


def test_rate_limiter_spaces_sends() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(4, sleep, lambda: now[0])
    for _ in range(9):
        limiter.wait()
    assert slept == [0.25] * 8
    now[0] += 10  # idle for a while: no burst is owed, and none is banked
    limiter.wait()
    limiter.wait()
    assert slept == [0.25] * 9


def test_no_rate_means_no_sleep() -> None:
    limiter = RateLimiter(None, lambda s: pytest.fail("slept"), lambda: 0.0)
    for _ in range(3):
        limiter.wait()


def test_rate_setting_spaces_a_live_run(harness: Harness) -> None:
    # The dispatcher's limiter reads the real monotonic clock, which the fake sleep does not
    # move: each sleep is then the distance from now to that message's slot, and the slots
    # are 1 / rate apart, the last (messages - 1) / rate after the first.
    harness.write(5, rate=2, connections=2)
    harness.run()
    assert len(harness.script.delivered) == 5
    waits = sorted(harness.slept)
    assert len(waits) == 4
    assert all(0.3 < b - a <= 0.6 for a, b in zip([0.0, *waits], waits, strict=False))
    assert 1.2 < waits[-1] <= 2.0


def test_recipient_removed_after_planning_is_skipped(harness: Harness) -> None:
    harness.write(4)
    harness.run(limit=1)
    harness.write(4, skip=frozenset({2}))
    report = harness.run()
    assert nonzero(report.counts) == {"sent": 3, "skipped": 1}
    row = harness.rows()[address(2)]
    assert (row["state"], row["last_text"]) == ("skipped", "no longer on the step's lists")
    assert address(2) not in harness.script.per_recipient()


def test_suppression_after_planning_is_skipped(harness: Harness) -> None:
    harness.write(3)
    harness.run(limit=1)
    (harness.workspace / "recipients" / "suppressed.csv").write_text(
        f"email,reason\n{address(2)},asked to be removed\n", "utf-8"
    )
    report = harness.run()
    assert nonzero(report.counts) == {"sent": 2, "skipped": 1}
    assert harness.rows()[address(2)]["state"] == "skipped"
    assert address(2) not in harness.script.per_recipient()


def test_dry_runs_rewrite_the_outbox(harness: Harness) -> None:
    harness.write(5)
    first = harness.run(live=False, scripted=False)
    assert first.mode == "dry"
    outbox = harness.workspace / "outbox" / "launch" / "desk" / "new"
    assert first.outbox == outbox
    second = harness.run(live=False, scripted=False)
    assert len(list(outbox.iterdir())) == 5
    assert nonzero(second.counts) == {"sent": 5}
    assert (second.planned, second.attempted) == (5, 5)
    harness.write(5, skip=frozenset({0, 1}))
    harness.run(live=False, scripted=False)
    assert len(list(outbox.iterdir())) == 3  # nothing left over from earlier rehearsals
    assert [s["mode"] for s in harness.ledger.status("launch")[0]["steps"]] == ["dry"]
    assert not harness.channels


def test_post_step_writes_json_and_never_mails(harness: Harness) -> None:
    harness.write(3)
    report = harness.run("announce", live=False)
    path = harness.workspace / "outbox" / "launch" / "announce" / "x.json"
    assert report.outbox == path
    posts = json.loads(path.read_text("utf-8"))
    assert posts
    assert report.mode == "dry"
    assert nonzero(report.counts) == {"sent": report.attempted}
    assert report.attempted >= 1
    assert not harness.channels
    assert not harness.script.attempts
    assert not report.notes


def test_live_post_step_without_credentials_plans_nothing(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("X_API_KEY", "X_API_SECRET", "X_ACCESS_TOKEN", "X_ACCESS_TOKEN_SECRET"):
        monkeypatch.setenv(name, "set")
    monkeypatch.delenv("X_ACCESS_TOKEN_SECRET")
    harness.write(3)
    with pytest.raises(ConfigError, match=r"posting to X needs X_ACCESS_TOKEN_SECRET in the"):
        harness.run("announce", live=True)
    assert harness.ledger.status("launch") == []
    assert not harness.channels


def test_unexpected_error_in_a_transaction_is_uncertain(harness: Harness) -> None:
    harness.write(3)
    harness.script.replies[address(1)] = [RuntimeError("socket exploded")]
    with pytest.raises(DeliveryError) as raised:
        harness.run()
    assert raised.value.format().startswith("RuntimeError: socket exploded; stopped after 1 of 3")
    assert harness.rows()[address(1)]["state"] == "uncertain"
    report = harness.run()
    assert nonzero(report.counts) == {"sent": 2, "uncertain": 1}
    assert harness.script.per_recipient() == Counter({address(0): 1, address(2): 1})


def test_a_failure_outside_a_live_transaction_gives_the_row_back(harness: Harness) -> None:
    class Unwritable(RecordingChannel):
        live = False

    harness.write(3)
    harness.script.replies[address(1)] = [OSError(28, "No space left on device")]
    harness.factory = lambda: Unwritable(harness.script, harness.clock)  # type: ignore[method-assign]
    with pytest.raises(DeliveryError, match="No space left on device"):
        harness.run()
    assert harness.rows()[address(1)]["state"] == "pending"
    harness.run()
    assert harness.script.per_recipient() == Counter({address(n): 1 for n in range(3)})


def test_a_removed_recipient_does_not_use_the_limit(harness: Harness) -> None:
    harness.write(3)
    harness.run(limit=1)
    harness.write(3, skip=frozenset({1}))
    harness.run(limit=1)
    assert harness.script.per_recipient() == Counter({address(0): 1, address(2): 1})


class FlakyLedger(Ledger):
    """A ledger whose chosen operation fails once, as a locked or lost database does."""

    fail_on: str = ""

    def _result_key(self, result: Result, now: datetime) -> Any:
        # Inside the transaction that records the outcome (with the next claim, or alone).
        if self.fail_on == f"finish:{result.state}":
            self.fail_on = ""
            raise OperationalError("UPDATE deliveries", {}, Exception("database is locked"))
        return super()._result_key(result, now)

    def lane(self, step: StepRef, runner: str, **options: Any) -> Lane:
        ledger = self

        class FlakyLane(Lane):
            def advance(
                self, done: Result | None, want: int = 0
            ) -> tuple[Claim | timedelta | None, int]:
                if ledger.fail_on == "claim":
                    ledger.fail_on = "claim-next"
                elif ledger.fail_on == "claim-next" and done is None:
                    ledger.fail_on = ""
                    raise OperationalError("SELECT deliveries", {}, Exception("disk I/O error"))
                return super().advance(done, want)

        return FlakyLane(self, step, runner, **{"retry_uncertain": False, "hold": False, **options})


@pytest.fixture
def flaky(workspace: Path) -> Iterator[Harness]:
    clock = FakeClock()
    ledger = FlakyLedger(f"sqlite:///{workspace / 'distribute.db'}", clock=clock)
    yield Harness(workspace, ledger, clock)
    ledger.close()


def test_a_sent_message_that_cannot_be_recorded_is_never_resent(flaky: Harness) -> None:
    flaky.write(3)
    flaky.ledger.fail_on = "finish:sent"  # type: ignore[attr-defined]
    with pytest.raises(DeliveryError, match="could not be recorded") as raised:
        flaky.run()
    assert "it will be reported as uncertain" in raised.value.format()
    assert flaky.rows()[address(0)]["state"] == "sending"
    report = flaky.run()
    assert report.recovered == 1
    assert nonzero(report.counts) == {"sent": 2, "uncertain": 1}
    assert flaky.script.per_recipient() == Counter({address(n): 1 for n in range(3)})


def test_an_outcome_the_database_refused_is_told_in_one_line(flaky: Harness) -> None:
    """The driver's reason, not SQLAlchemy's statement and parameters (lines more, with the
    server's reply and the address in them)."""
    flaky.write(3)
    flaky.ledger.fail_on = "finish:sent"  # type: ignore[attr-defined]
    with pytest.raises(DeliveryError) as raised:
        flaky.run()
    told = raised.value.format()
    assert "could not be recorded (the state database failed: database is locked)" in told
    assert "\n" not in told and "[SQL" not in told


def test_a_ledger_failure_between_messages_stops_the_run(flaky: Harness) -> None:
    """With a rate, each outcome is recorded on its own before the wait, so the next claim
    fails with no row held: the run stops, what was sent is recorded, the rest pending."""
    flaky.write(4, rate=1)
    flaky.ledger.fail_on = "claim"  # type: ignore[attr-defined]
    with pytest.raises(DeliveryError, match="disk I/O error"):
        flaky.run()
    assert nonzero(flaky.ledger.counts(next(iter(flaky_refs(flaky))))) == {"sent": 1, "pending": 3}


def flaky_refs(harness: Harness) -> list[StepRef]:
    [entry] = harness.ledger.status("launch")
    return [s["ref"] for s in entry["steps"] if s["mode"] == "live"]


def test_a_channel_that_fails_to_close_does_not_hang_the_run(harness: Harness) -> None:
    class Sticky(RecordingChannel):
        def close(self) -> None:
            raise ValueError("I/O operation on closed file")

    harness.write(2)
    harness.factory = lambda: Sticky(harness.script, harness.clock)  # type: ignore[method-assign]
    report = harness.run()
    assert nonzero(report.counts) == {"sent": 2}


@pytest.mark.parametrize("after", range(3))
def test_ctrl_c_while_the_workers_start_stops_them_all(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, after: int
) -> None:
    """Ctrl-C reaching the main thread after ``after`` of three workers started (the first
    may be sending already): the run stops as a Ctrl-C during the send stops it, with every
    started worker finished and nothing sent twice or left half-known."""
    harness.write(30, connections=3)
    start = threading.Thread.start
    started: list[str] = []

    def then_ctrl_c(thread: threading.Thread) -> None:
        if thread.name.startswith("smtp-") and len(started) == after:
            raise KeyboardInterrupt
        start(thread)
        if thread.name.startswith("smtp-"):
            started.append(thread.name)

    monkeypatch.setattr(threading.Thread, "start", then_ctrl_c)
    with pytest.raises((Interrupted, KeyboardInterrupt)) as raised:
        harness.run()
    monkeypatch.undo()
    assert isinstance(raised.value, Interrupted)
    sent = harness.script.per_recipient()
    assert set(sent.values()) <= {1}
    counts = nonzero(harness.ledger.counts(flaky_refs(harness)[0]))
    assert counts == nonzero({"sent": len(sent), "pending": 30 - len(sent)})
    report = harness.run()
    assert nonzero(report.counts) == {"sent": 30}
    assert harness.script.per_recipient() == Counter({address(n): 1 for n in range(30)})


def test_ctrl_c_while_waiting_for_a_rate_slot_sends_nothing_more(harness: Harness) -> None:
    """The message waiting for its slot never started: it goes back, it is not sent."""
    harness.write(5, rate=1)

    pressed: list[bool] = []

    def interrupted_sleep(seconds: float) -> None:
        # One Ctrl-C only: on a loaded machine a second one could reach the main thread while
        # it waits for the workers, where a second Ctrl-C rightly stops at once.
        if not pressed:
            pressed.append(True)
            signal.raise_signal(signal.SIGINT)  # Ctrl-C, delivered to the main thread
        # The main thread notices at its next wake-up (every 0.5 s) and tells the workers.
        time.sleep(1.0)

    settings = load_settings(workspace=harness.workspace)
    campaign, check = harness.load()
    dispatcher = Dispatcher(
        settings,
        harness.ledger,
        live=True,
        channel_factory=harness.factory,
        clock=harness.clock,
        sleep=interrupted_sleep,
    )
    with pytest.raises(Interrupted) as raised:
        dispatcher.run(campaign, check, campaign.step("desk"))
    assert (raised.value.done, raised.value.total) == (1, 5)
    assert harness.script.per_recipient() == Counter({address(0): 1})
    assert nonzero(harness.ledger.counts(flaky_refs(harness)[0])) == {"sent": 1, "pending": 4}


def test_retry_uncertain_with_a_limit_resends_only_that_many(harness: Harness) -> None:
    harness.write(10)
    lost = Outcome("uncertain", None, "connection lost before the server confirmed")
    for n in range(10):
        harness.script.replies[address(n)] = [lost]
    assert nonzero(harness.run().counts) == {"uncertain": 10}
    canary = harness.run(retry_uncertain=True, limit=1)
    assert canary.attempted == 1
    assert nonzero(canary.counts) == {"sent": 1, "uncertain": 9}
    # A plain run afterwards resends none of the nine: they are still uncertain.
    later = harness.run()
    assert later.attempted == 0
    assert nonzero(later.counts) == {"sent": 1, "uncertain": 9}
    assert harness.script.per_recipient() == Counter({address(0): 1})
    assert len(harness.script.attempts) == 11


def test_a_suppression_added_during_the_send_is_honoured(harness: Harness) -> None:
    """The list is read again when its file changes, before each message is claimed."""
    harness.write(6)
    suppressed = harness.workspace / "recipients" / "suppressed.csv"

    class Suppressing(RecordingChannel):
        def deliver(self, envelope: Envelope, meanwhile: Aside | None = None) -> Outcome:
            if envelope.recipient == address(1):
                # Someone asks to be removed while the step is under way.
                suppressed.write_text(f"email\n{address(4).upper()}\n", "utf-8")
            return super().deliver(envelope, meanwhile)

    harness.factory = lambda: Suppressing(harness.script, harness.clock)  # type: ignore[method-assign]
    report = harness.run()
    assert address(4) not in harness.script.per_recipient()
    assert nonzero(report.counts) == {"sent": 5, "skipped": 1}
    row = harness.rows()[address(4)]
    assert (row["state"], row["last_text"]) == (
        "skipped",
        "suppressed while the step was being sent",
    )
    # Removed from the list again, the address gets its message at the next run.
    suppressed.write_text("email\n", "utf-8")
    again = harness.run()
    assert nonzero(again.counts) == {"sent": 6}
    assert harness.script.per_recipient() == Counter({address(n): 1 for n in range(6)})


def test_skipped_is_not_for_ever(harness: Harness) -> None:
    harness.write(4)
    suppressed = harness.workspace / "recipients" / "suppressed.csv"
    suppressed.write_text(f"email\n{address(2)}\n", "utf-8")
    harness.run(limit=1)
    assert harness.rows()[address(2)]["last_text"] == "on the suppression list"
    # Un-suppressed, and another taken off the list: both reflected before any send.
    suppressed.write_text("email\n", "utf-8")
    harness.write(4, skip=frozenset({3}))
    report = harness.run(limit=1)
    states = {a: (r["state"], r["last_text"]) for a, r in harness.rows().items()}
    assert states == {
        address(0): ("sent", "250 2.0.0 queued"),
        address(1): ("sent", "250 2.0.0 queued"),
        address(2): ("pending", None),
        address(3): ("skipped", "no longer on the step's lists"),
    }
    # Back on the list: pending again, and sent.
    harness.write(4)
    report = harness.run()
    assert nonzero(report.counts) == {"sent": 4}
    assert harness.script.per_recipient() == Counter({address(n): 1 for n in range(4)})


def test_an_uncertain_row_now_suppressed_is_not_resent(harness: Harness) -> None:
    harness.write(2)
    lost = Outcome("uncertain", None, "connection lost before the server confirmed")
    harness.script.replies[address(1)] = [lost]
    harness.run()
    (harness.workspace / "recipients" / "suppressed.csv").write_text(
        f"email\n{address(1)}\n", "utf-8"
    )
    report = harness.run(retry_uncertain=True)
    assert nonzero(report.counts) == {"sent": 1, "skipped": 1}
    assert harness.rows()[address(1)]["last_text"] == "on the suppression list; was uncertain"
    assert len(harness.script.times(address(1))) == 1


def test_a_slow_rate_keeps_the_step_held_while_waiting(harness: Harness) -> None:
    """One message every 20 minutes (a rate may be as low as one an hour): the sending
    process never looks abandoned, so a second process started meanwhile is told who sends
    the step instead of taking it over, and no row is `sending` while its runner sleeps."""
    harness.write(3, rate=1 / 1200)
    seen: list[tuple[object, dict[str, int]]] = []

    def sleep(seconds: float) -> None:
        harness.clock.sleep(seconds)
        [ref] = [
            s["ref"] for s in harness.ledger.status("launch")[0]["steps"] if s["name"] == "desk"
        ]
        seen.append(
            (harness.ledger.acquire(ref, "other.example.org:1:z"), harness.ledger.counts(ref))
        )

    settings = load_settings(workspace=harness.workspace)
    campaign, check = harness.load()
    dispatcher = Dispatcher(
        settings,
        harness.ledger,
        live=True,
        channel_factory=harness.factory,
        clock=harness.clock,
        sleep=sleep,
        monotonic=lambda: (harness.clock() - START).total_seconds(),
    )
    report = dispatcher.run(campaign, check, campaign.step("desk"))
    assert nonzero(report.counts) == {"sent": 3}
    assert harness.script.per_recipient() == Counter({address(n): 1 for n in range(3)})
    assert len(seen) >= 2 * 1200 / 5
    assert all(holder is not None for holder, _ in seen)
    assert all(counts["sending"] == 0 for _, counts in seen)


def test_a_long_transaction_keeps_the_step_held(harness: Harness) -> None:
    """A server that takes longer than the stale delay over one message (a timeout may be
    an hour): the sending process keeps its heartbeat meanwhile, so a second process is told
    who sends the step instead of taking it over and marking the message uncertain."""
    harness.write(2)
    held: list[object] = []

    class SlowChannel(RecordingChannel):
        def deliver(self, envelope: Envelope, meanwhile: Aside | None = None) -> Outcome:
            if not held:
                harness.clock.sleep(STALE_AFTER.total_seconds() + 60)
                [ref] = [
                    s["ref"]
                    for s in harness.ledger.status("launch")[0]["steps"]
                    if s["name"] == "desk"
                ]
                # The main thread wakes every half second; wait for it to write the heartbeat
                # at the new time (at most half a minute, on a very busy machine).
                for _ in range(600):
                    holder = harness.ledger.holder(ref)
                    if holder is not None and holder.heartbeat == harness.clock():
                        break
                    time.sleep(0.05)
                held.append(harness.ledger.acquire(ref, "other.example.org:1:z"))
            return super().deliver(envelope, meanwhile)

    settings = load_settings(workspace=harness.workspace)
    campaign, check = harness.load()
    dispatcher = Dispatcher(
        settings,
        harness.ledger,
        live=True,
        channel_factory=lambda: SlowChannel(harness.script, harness.clock),
        clock=harness.clock,
        sleep=harness.sleep,
    )
    report = dispatcher.run(campaign, check, campaign.step("desk"))
    assert held and held[0] is not None
    assert nonzero(report.counts) == {"sent": 2}
    assert harness.script.per_recipient() == Counter({address(0): 1, address(1): 1})
