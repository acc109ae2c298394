"""Run one campaign step: plan its ledger rows, claim them one by one, deliver, record.

Several connections run in threads, each reserving a few rows and claiming the next one
just before its SMTP transaction, in the transaction that records the previous outcome, so
the ledger (not memory) is the truth about who got the release. A row is never claimed
twice: the claim is an atomic ``reserved -> sending`` update. While the server reads a
message, the connection builds the next one (``Channel.deliver(..., meanwhile)``).
Temporary refusals (4xx) go back to ``pending`` with a later ``not_before`` and are retried
a bounded number of times; permanent ones (5xx) are ``failed`` with the server's words, and
the others go on.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from distribute.campaign import Campaign, CampaignCheck, EmailStep, PostStep, Step
from distribute.channels.base import Aside, Channel, Envelope, Outcome
from distribute.channels.outbox import OutboxChannel, maildir
from distribute.channels.smtp import SmtpChannel
from distribute.config import SMTP_PASSWORD_ENV, Settings, secret
from distribute.errors import (
    CampaignError,
    DeliveryError,
    DistributeError,
    RecipientError,
)
from distribute.ledger import (
    HEARTBEAT_EVERY,
    NOT_LISTED,
    Claim,
    Lane,
    Ledger,
    Planned,
    Result,
    StepHeld,
    StepRef,
    runner_id,
)
from distribute.recipients import Recipient, SuppressionWatch, suppression_folders
from distribute.render.email import EmailDraft
from distribute.render.message import Outgoing, build_message, message_bytes
from distribute.words import plural

log = logging.getLogger("distribute")

Clock = Callable[[], datetime]
Sleep = Callable[[float], None]
Progress = Callable[[int, int], None]

# Why a row is skipped, as ``status`` shows it.
SUPPRESSED = "on the suppression list"
SUPPRESSED_DURING = "suppressed while the step was being sent"
# A dry run writes each message to a file of its own, one lane at a time: two lanes creating
# files in one folder wait on its lock in the kernel, and took more time and CPU than one.
DRY_LANES = 1


@dataclass
class StepReport:
    campaign: str
    step: str
    channel: str
    mode: str
    planned: int = 0
    attempted: int = 0
    recovered: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[dict[str, object]] = field(default_factory=list)
    outbox: Path | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def finished_before(self) -> bool:
        """True when this run found nothing left to send."""
        return self.attempted == 0 and self.counts.get("pending", 0) == 0


def outbox_folder(settings: Settings, campaign: str, step: str) -> Path:
    """The step's Maildir; a dry run empties it, so it must stay inside the outbox."""
    root = (settings.workspace / "outbox").resolve()
    folder = (root / campaign / step).resolve()
    if not folder.is_relative_to(root) or folder == root:
        raise CampaignError(f"campaign {campaign!r}, step {step!r}: not a usable outbox folder")
    return folder


class Unrecorded(Exception):
    """A message reached the channel but its outcome could not be written to the ledger."""


class Stop(KeyboardInterrupt):
    """A signal asking the run to stop (SIGTERM, SIGHUP), handled like Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM, SIGHUP) during a step, after every connection finished and
    recorded its current message."""

    def __init__(self, done: int, total: int, signum: int = signal.SIGINT):
        super().__init__(f"interrupted after {done} of {plural(total, 'message')}")
        self.done = done
        self.total = total
        self.signum = signum


class DatabaseLost(DeliveryError):
    """The state database failed mid-run (a PostgreSQL restart, a locked file): nothing is
    wrong with the step, which a worker resumes once the database is back."""


class StepStopped(DeliveryError):
    """A step stopped by an error; ``report`` holds the ledger's counts and problem rows
    at that moment, so the uncertain ones can be listed at once. ``lost``: the error was
    the state database's (:class:`DatabaseLost`)."""

    def __init__(self, message: str, report: StepReport, *, lost: bool = False):
        super().__init__(message)
        self.report = report
        self.lost = lost


@contextlib.contextmanager
def stop_on_signals(signums: Sequence[int] = (signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Turn ``signums`` into :class:`Stop` in the main thread while the block runs.

    A service manager stops a worker with SIGTERM (systemd, Docker) and a closed terminal
    sends SIGHUP: both then stop a step as cleanly as Ctrl-C does. Outside the main thread
    (where Python cannot set handlers) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        raise Stop(signum)

    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


class RateLimiter:
    """At most ``rate`` messages per second across every connection."""

    def __init__(self, rate: float | None, sleep: Sleep, monotonic: Callable[[], float]):
        self.interval = 1.0 / rate if rate else 0.0
        self.sleep = sleep
        self.monotonic = monotonic
        self.lock = threading.Lock()
        self.next_slot = 0.0

    def wait(self) -> None:
        if delay := self.delay():
            self.sleep(delay)

    def delay(self) -> float:
        """Take the next slot; how long to wait for it (the caller waits)."""
        if not self.interval:
            return 0.0
        with self.lock:
            now = self.monotonic()
            slot = max(now, self.next_slot)
            self.next_slot = slot + self.interval
        return slot - now if slot > now else 0.0


class Dispatcher:
    """Runs steps with injected dependencies: clock, sleep and the channel factory."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        *,
        live: bool = False,
        channel_factory: Callable[[], Channel] | None = None,
        clock: Clock | None = None,
        sleep: Sleep = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        halt: threading.Event | None = None,
    ):
        self.settings = settings
        # Set from another thread (a worker told to stop, a step cancelled): the messages
        # under way finish and are recorded, the rest stay pending.
        self.halt = halt or threading.Event()
        self.ledger = ledger
        self.live = live
        self.clock = clock or (lambda: datetime.now(UTC))
        self.sleep = sleep
        self.monotonic = monotonic
        self.retry_delay = settings.smtp.retry_delay
        self._factory = channel_factory
        # Read again at each claim: a suppression always wins, even one saved mid-send.
        self.suppressions = SuppressionWatch(suppression_folders(settings))

    def channel(self, outbox: Path) -> Channel:
        if self._factory is not None:
            return self._factory()
        if self.live:
            return SmtpChannel(self.settings.smtp, secret(SMTP_PASSWORD_ENV))
        return OutboxChannel(outbox)

    # ------------------------------------------------------------------ steps

    def run(
        self,
        campaign: Campaign,
        check: CampaignCheck,
        step: Step,
        *,
        limit: int | None = None,
        retry_uncertain: bool = False,
        progress: Progress | None = None,
    ) -> StepReport:
        if isinstance(step, PostStep):
            return self._run_posts(campaign, check, step, retry_uncertain)
        return self._run_email(campaign, check, step, limit, retry_uncertain, progress)

    def _step_ref(self, campaign: Campaign, step: Step, mode: str) -> StepRef:
        return self.ledger.step(
            campaign.name,
            str(campaign.path.resolve()),
            campaign.timezone,
            step.name,
            step.channel,
            mode,
            step.at,
        )

    def _run_email(
        self,
        campaign: Campaign,
        check: CampaignCheck,
        step: EmailStep,
        limit: int | None,
        retry_uncertain: bool,
        progress: Progress | None,
    ) -> StepReport:
        mode = "live" if self.live else "dry"
        self._suppressed(None)
        audience = check.audiences[step.name]
        draft = check.drafts[step.name]
        ref = self._step_ref(campaign, step, mode)
        outbox = outbox_folder(self.settings, campaign.name, step.name)
        report = StepReport(campaign.name, step.name, "email", mode)
        runner = runner_id()
        holder = self.ledger.acquire(ref, runner)
        if holder is not None:
            raise StepHeld(
                f"step {step.name} is being sent by {holder} (campaign {campaign.name}); "
                "wait for it to finish (distribute status shows how far it got)"
            )
        try:
            if not self.live:
                # A dry run is a rehearsal: made again from scratch each time.
                self.ledger.reset(ref)
                maildir(outbox, clear=True)
                report.outbox = outbox / "new"
            by_key = audience.by_key()
            # Made as the ledger reads them: a list of them would be the audience again.
            rows = itertools.chain(
                (Planned(r.key, r.email, r.display_name, r.list_name) for r in audience.recipients),
                (
                    Planned(r.key, r.email, r.display_name, r.list_name, True, SUPPRESSED)
                    for r in audience.suppressed
                ),
            )
            report.planned = self.ledger.plan(ref, rows)
            report.recovered = self.ledger.recover(ref, runner)
            counts = self.ledger.counts(ref)
            available = counts["pending"] + (counts["uncertain"] if retry_uncertain else 0)
            total = available if limit is None else min(available, limit)
            if total:
                try:
                    self._deliver_all(
                        ref,
                        runner,
                        draft,
                        by_key,
                        campaign,
                        step,
                        outbox,
                        total,
                        report,
                        progress,
                        retry_uncertain,
                    )
                except DeliveryError as exc:
                    self._fill(report, ref)
                    lost = isinstance(exc, DatabaseLost)
                    raise StepStopped(exc.format(), report, lost=lost) from None
        finally:
            self.ledger.release(ref, runner)
        self._fill(report, ref)
        return report

    def _fill(self, report: StepReport, ref: StepRef) -> None:
        """The step's counts and problem rows as the ledger holds them now."""
        report.counts = self.ledger.counts(ref)
        report.problems = self.ledger.problems(ref)

    def _deliver_all(
        self,
        ref: StepRef,
        runner: str,
        draft: EmailDraft,
        by_key: dict[str, Recipient],
        campaign: Campaign,
        step: EmailStep,
        outbox: Path,
        total: int,
        report: StepReport,
        progress: Progress | None,
        retry_uncertain: bool = False,
    ) -> None:
        connections = self.settings.smtp.connections if self.live else DRY_LANES
        channels = [self.channel(outbox) for _ in range(connections)]
        opened: list[Channel] = []
        try:
            for channel in channels:
                channel.open()
                opened.append(channel)
        except BaseException:
            # Server refusal, Ctrl-C or anything else: say goodbye to those already open.
            for channel in opened:
                channel.close()
            raise
        lock = threading.Lock()
        budget = [total]
        finished_count = [0]
        stop = threading.Event()
        errors: list[DeliveryError] = []

        def stopping() -> bool:
            return stop.is_set() or self.halt.is_set()

        def pause(seconds: float) -> None:
            # A rate may space messages up to an hour apart: beat while waiting, or the step
            # would look abandoned (STALE_AFTER) and another process would take it over.
            beat = HEARTBEAT_EVERY.total_seconds()
            while seconds > 0 and not stopping():
                self.sleep(min(seconds, beat))
                seconds -= beat
                self.ledger.keep_alive(ref, runner)

        limiter = RateLimiter(self.settings.smtp.rate if self.live else None, pause, self.monotonic)

        def reserve(batch: int) -> int:
            """How many rows a lane may reserve now, taken from the run's budget."""
            with lock:
                if stopping():
                    return 0
                count = min(budget[0], batch)
                budget[0] -= count
                return count

        def give_back(count: int = 1) -> None:
            with lock:
                budget[0] += count

        def worker(channel: Channel, finished: threading.Event) -> None:
            try:
                try:
                    deliver_rows(channel)
                except Unrecorded as exc:
                    # The server may have the message: the row stays `sending`, and the next
                    # run reports it as uncertain instead of sending it again.
                    stop.set()
                    lost = getattr(exc.__cause__, "orig", None) is not None  # the database's
                    errors.append((DatabaseLost if lost else DeliveryError)(str(exc)))
                except Exception as exc:
                    stop.set()
                    errors.append(_delivery_error(exc))
                finally:
                    try:
                        channel.close()
                    except Exception:  # a channel must not raise here; if it does, go on
                        log.exception("closing the %s channel failed", step.name)
            finally:
                # Always, or the run would wait for this worker forever.
                finished.set()

        def deliver_rows(channel: Channel) -> None:
            lane = self.ledger.lane(ref, runner, retry_uncertain=retry_uncertain)
            try:
                send_rows(channel, lane)
            except BaseException:
                # The rows it reserved go back now, or (database gone) at the next run.
                with contextlib.suppress(Exception):
                    lane.close()
                raise
            lane.close()

        sender = self.settings.sender.address

        def send_rows(channel: Channel, lane: Lane) -> None:
            # The outcome of the last message, recorded with the next claim (one transaction
            # per message), or on its own before any wait and when the lane stops.
            done: Result | None = None
            # The next row's message, built while the server worked on the last one.
            ahead: Aside | None = None

            def record_done() -> None:
                # Taken first: a failed record is not tried again (the row stays `sending`).
                nonlocal done
                if done is not None:
                    recording, done = done, None
                    _record(lane, recording)

            try:
                while not stopping():
                    want = reserve(lane.batch) if lane.low() else 0
                    if not want and lane.peek() is None:
                        return  # the budget is spent and this lane holds no row
                    if delay := limiter.delay():
                        # A row is `sending` only while it is sent, never while its runner
                        # sleeps.
                        record_done()
                        pause(delay)
                        ahead = None  # its Date would be as old as the wait
                        if stopping():
                            give_back(want)
                            return
                    if lane.peek() is not None:
                        # The next transaction starts now (MAIL FROM names no recipient) and
                        # the server answers it while the ledger claims the row: the claim
                        # is still committed before anything the message holds is sent.
                        channel.prepare(sender)
                    try:
                        got, reserved = lane.advance(done, want)
                    except Exception as exc:
                        channel.cancel()
                        give_back(want)
                        if done is not None:
                            unrecorded, done = done, None  # one try: the row stays `sending`
                            raise _unrecorded(unrecorded, exc) from exc
                        raise  # the ledger failed between messages (no row held)
                    done = None
                    give_back(want - reserved)
                    if not isinstance(got, Claim):
                        channel.cancel()
                    if got is None:
                        return
                    if isinstance(got, timedelta):
                        # Only rows waiting for a retry are left: wait for the first one.
                        self.sleep(min(got.total_seconds(), 1.0) or 0.01)
                        ahead = None
                        continue
                    claim = got
                    try:
                        done, outcome, ahead = self._send_one(
                            channel, lane, claim, ahead, draft, by_key, campaign, step
                        )
                    except Unrecorded:
                        # The server may have the message: the row stays `sending`, never
                        # given back (the next run reports it as uncertain).
                        stop.set()
                        raise
                    except Exception:
                        channel.cancel()
                        # Stop the others first, so none of them takes the row given back.
                        stop.set()
                        # Only rows still `sending` move back: an uncertain one stays.
                        self.ledger.unclaim(claim)
                        raise
                    if outcome is None:
                        channel.cancel()  # nothing sent: the transaction started is dropped
                    if outcome is None or outcome.state == "retry":
                        give_back()
                    if outcome is not None:
                        with lock:
                            if outcome.state != "retry":
                                finished_count[0] += 1
                            report.attempted += 1
                            if progress:
                                progress(finished_count[0], total)
                    if ahead is not None and ahead.error is not None:
                        # Building the next message failed: this one's outcome stands.
                        record_done()
                        raise ahead.error
            finally:
                record_done()

        ends = [threading.Event() for _ in channels]
        threads = [
            threading.Thread(target=worker, args=(channel, end), name=f"smtp-{n}", daemon=True)
            for n, (channel, end) in enumerate(zip(channels, ends, strict=True))
        ]
        # Taken before any worker starts: the heartbeat is due from this instant on.
        beaten = [self.ledger.clock()]

        def keep_alive() -> None:
            # One message can take long (an SMTP timeout may be an hour; a server may drip
            # its replies): the waiting main thread keeps the step's heartbeat, so a live
            # holder is never taken for a dead one. A takeover found here stops the workers.
            now = self.ledger.clock()
            if abs(now - beaten[0]) < HEARTBEAT_EVERY:
                return
            beaten[0] = now
            try:
                self.ledger.keep_alive(ref, runner)
            except Exception as exc:
                stop.set()
                errors.append(_delivery_error(exc))

        def wait_for_workers() -> None:
            # Events, not Thread.join: a join interrupted by Ctrl-C can mark a thread that is
            # still sending as stopped (the bpo-45274 fix in threading._wait_for_tstate_lock),
            # and a second join would then return while a message is still under way.
            for thread, end in zip(threads, ends, strict=True):
                if thread.ident is None:
                    # Ctrl-C came while the workers were starting, before this one: it never
                    # starts, or starts after ``stop`` is set and sends nothing.
                    continue
                while not end.wait(0.5):
                    keep_alive()

        try:
            # Inside: a Ctrl-C while they start (the first may already be sending) stops the
            # run as one during the send does, instead of leaving the started ones running.
            for thread in threads:
                thread.start()
            wait_for_workers()
        except KeyboardInterrupt as exc:
            # Ctrl-C (or SIGTERM, SIGHUP): let each connection finish the message it is
            # sending and record it, so nothing is left half-known; a second one stops at once.
            stop.set()
            wait_for_workers()
            signum = exc.signum if isinstance(exc, Stop) else signal.SIGINT
            raise Interrupted(finished_count[0], total, signum) from None
        if errors:
            raise errors[0].__class__(
                f"{errors[0].format()}; stopped after {finished_count[0]} of "
                f"{plural(total, 'message')}. "
                "Nothing was lost: run the same command again to send the rest"
            )

    def _send_one(
        self,
        channel: Channel,
        lane: Lane,
        claim: Claim,
        ahead: Aside | None,
        draft: EmailDraft,
        by_key: dict[str, Recipient],
        campaign: Campaign,
        step: EmailStep,
    ) -> tuple[Result, Outcome | None, Aside | None]:
        """Send one claimed row: its outcome to record, the channel's (None when there was
        nothing to send), and the next row's message built meanwhile."""
        if self._suppressed(claim.target):
            # Skipped for good, even an uncertain row: giving it back would claim it again.
            why = SUPPRESSED_DURING if claim.was == "pending" else f"{SUPPRESSED}; was {claim.was}"
            return Result(claim, "skipped", text=why), None, None
        recipient = by_key.get(claim.target)
        if recipient is None:
            return Result(claim, "skipped", text=NOT_LISTED), None, None
        if ahead is not None and ahead.value is not None and ahead.value[0] == claim.target:
            message = ahead.value[1]
        else:
            message = self._message(draft, recipient, campaign, step)
        message_id = message.message_id
        envelope = Envelope(
            self.settings.sender.address, recipient.email, message_bytes(message), message_id
        )
        # The next row's suppression is still checked at its claim, not here.
        following = lane.peek()
        upcoming = by_key.get(following.target) if following is not None else None
        after = None
        if following is not None and upcoming is not None:
            target = following.target
            after = Aside(lambda: (target, self._message(draft, upcoming, campaign, step)))
        try:
            outcome = channel.deliver(envelope, after)
        except DeliveryError:
            raise  # raised before the message content left: safe to give the row back
        except Exception as exc:
            if channel.live:
                # Whatever broke, it broke inside a transaction: the server may have it.
                _record(
                    lane,
                    Result(
                        claim, "uncertain", text=f"unexpected error during the transaction: {exc}"
                    ),
                )
            raise
        result, outcome = self._result(claim, outcome, message_id, campaign.release_version)
        log.info(
            "%s %s/%s %s %s %s",
            "live" if self.live else "dry",
            campaign.name,
            step.name,
            recipient.email,
            outcome.state,
            outcome.text or "",
        )
        return result, outcome, after

    def _message(
        self, draft: EmailDraft, recipient: Recipient, campaign: Campaign, step: EmailStep
    ) -> Outgoing:
        return build_message(
            draft,
            recipient,
            self.settings,
            campaign=campaign.name,
            step=step.name,
            date=self.clock(),
            release=campaign.release_version,
        )

    def _suppressed(self, key: str | None) -> bool:
        """Whether the suppression lists, as saved now, name the address ``key``. A live send
        stops while an entry is not understood: it may name someone who asked not to be
        mailed."""
        try:
            current = self.suppressions.current()
            if self.live:
                current.raise_for_problems()
        except RecipientError as exc:
            raise DeliveryError(exc.format()) from None
        return key is not None and key in current

    def _result(
        self, claim: Claim, outcome: Outcome, message_id: str, release: str
    ) -> tuple[Result, Outcome]:
        """What to record for a message the channel handled, and its outcome as recorded."""
        if outcome.state == "retry":
            if claim.attempts > self.settings.smtp.max_retries:
                text = f"gave up after {plural(claim.attempts, 'attempt')}: {outcome.text}"
                failed = Result(claim, "failed", outcome.code, text, message_id)
                return failed, Outcome("failed", outcome.code, outcome.text)
            delay = self.retry_delay * 2 ** (claim.attempts - 1)
            later = self.clock() + timedelta(seconds=delay)
            return Result(claim, "pending", outcome.code, outcome.text, message_id, later), outcome
        result = Result(
            claim, outcome.state, outcome.code, outcome.text, message_id, release=release
        )
        return result, outcome

    def _run_posts(
        self, campaign: Campaign, check: CampaignCheck, step: PostStep, retry_uncertain: bool
    ) -> StepReport:
        from distribute.posting import run_posts

        return run_posts(
            self, self._step_ref, campaign, check, step, retry_uncertain=retry_uncertain
        )


def send_test(
    settings: Settings,
    campaign: Campaign,
    check: CampaignCheck,
    step: EmailStep,
    address: str,
    channel: Channel,
    *,
    date: datetime,
) -> Outcome:
    """The step's message to one address, subject prefixed [TEST]; not a delivery."""
    recipient = Recipient(email=address, name="", list_name="test")
    message = build_message(
        check.drafts[step.name],
        recipient,
        settings,
        campaign=campaign.name,
        step=f"{step.name}:test",
        date=date,
        release=campaign.release_version,
        subject_prefix="[TEST] ",
    )
    envelope = Envelope(
        settings.sender.address, address, message_bytes(message), message.message_id
    )
    with channel:
        return channel.deliver(envelope)


def _delivery_error(exc: Exception) -> DeliveryError:
    """What stopped a run, as one line: a database or disk failure is named, not the server."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, DistributeError):
        return DeliveryError(exc.format())
    if getattr(exc, "orig", None) is not None:
        return DatabaseLost(_reason(exc))
    return DeliveryError(_reason(exc))


def _reason(exc: Exception) -> str:
    """``exc`` in one line; a database error as the driver's first line, without
    SQLAlchemy's statement and parameters (a server reply in a parameter can hold an
    address)."""
    if (orig := getattr(exc, "orig", None)) is not None:
        first = str(orig).strip().partition("\n")[0]
        return f"the state database failed: {first or type(orig).__name__}"
    return f"{type(exc).__name__}: {exc}"


def _record(lane: Lane, done: Result) -> None:
    try:
        lane.record(done)
    except Exception as exc:
        raise _unrecorded(done, exc) from exc


def _unrecorded(done: Result, exc: Exception) -> Unrecorded:
    what = (
        f"the message to {done.claim.address} was skipped ({done.text}) but that"
        if done.state == "skipped"
        else f"the message to {done.claim.address} went to the server but its outcome"
    )
    return Unrecorded(
        f"{what} could not be recorded ({_reason(exc)}); it will be reported as uncertain"
    )
