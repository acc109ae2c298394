"""Campaigns on a schedule: the ledger's ``steps`` table is the schedule, a worker runs it.

``schedule_campaign`` checks a campaign and writes each step's instant (UTC), mode and
state into the ledger. A :class:`Worker` (``distribute run``) reads that table every few
seconds and arms one APScheduler date job per scheduled step; APScheduler is only its
timer. The job is :func:`fire_step`, a module-level function given ids only, and the
step is taken by an atomic ``scheduled -> running`` update, so of several workers on one
database exactly one runs it. Nothing about the schedule lives in APScheduler: its
memory job store is rebuilt from the table, and a restarted worker resumes from the table.

A step's life::

    scheduled ──► running ──► done | failed
        │  ▲         │
        │  └─────────┘  (the worker stopped: resumed by the next one)
        ├──► missed      (found later than the campaign's late_grace: not sent)
        └──► cancelled   (distribute cancel; a running step stops after its messages
                          under way)
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from distribute.campaign import Campaign, CampaignCheck, PostStep, Step
from distribute.config import Settings
from distribute.errors import CampaignError, DistributeError, LedgerError
from distribute.ledger import Ledger, StepHeld, Timed, runner_id
from distribute.render.templates import instant

log = logging.getLogger("distribute.scheduler")

Clock = Callable[[], datetime]

# How often a worker reads the steps table: a step scheduled or cancelled by another
# process is seen within this time (plus one database read).
POLL_SECONDS = 2.0


# --------------------------------------------------------------------------- scheduling


@dataclass(frozen=True)
class Entry:
    """One step of the timeline ``schedule_campaign`` wrote."""

    name: str
    channel: str
    mode: str
    at: datetime
    audience: int  # journalists for an email step, parts for a post
    state: str  # scheduled, or running/done when the step was left alone
    sent: int  # already sent (or written, for a dry run) before this schedule


@dataclass(frozen=True)
class Timeline:
    """What ``schedule_campaign`` wrote, and the pending steps it replaced."""

    entries: list[Entry]
    cancelled: list[tuple[str, str, str]]  # (step, mode, state it was in)


def schedule_campaign(
    ledger: Ledger,
    campaign: Campaign,
    check: CampaignCheck,
    *,
    now: datetime,
    modes: dict[str, str],
) -> Timeline:
    """Write ``campaign``'s steps on the schedule, each in ``modes[name]`` ("dry"/"live").

    ``check`` is :func:`~distribute.campaign.check_campaign`'s result for ``now``. Steps
    already running or done are left alone (never sent again); every other step must be
    in the future. Scheduling again replaces the campaign's pending steps: a step no
    longer in the file, or scheduled in the other mode, is cancelled. Everything is
    checked before anything is written.
    """
    states = ledger.states(campaign.name)
    for step in campaign.steps:
        state = states.get((step.name, modes[step.name]))
        if step.at <= now and state not in ("running", "done"):
            kind = "post" if isinstance(step, PostStep) else "email"
            raise CampaignError(
                f"[[{kind}]] {step.name!r}: at {campaign.show(step.at)} is already past "
                f"(now {campaign.show(now)}); give it a later time, or send it now with "
                f"distribute send {campaign.path} --step {step.name}"
                + (" --live" if modes[step.name] == "live" else ""),
                path=campaign.path,
                line=step.line,
            )
    entries = []
    kept = []
    for step in campaign.steps:
        mode = modes[step.name]
        ref = ledger.step(
            campaign.name,
            str(campaign.path.resolve()),  # a worker may run in another folder
            campaign.timezone,
            step.name,
            step.channel,
            mode,
            step.at,
        )
        kept.append(ref.id)
        state = ledger.schedule(ref, step.at, campaign.late_grace) or "done"
        counts = ledger.counts(ref)
        held = ledger.timed_step(ref.id)  # a step left alone keeps its own time
        entries.append(
            Entry(
                name=step.name,
                channel=step.channel,
                mode=mode,
                at=held.at if held is not None else step.at,
                audience=_audience(check, step),
                state=state,
                sent=counts.get("sent", 0),
            )
        )
    # What is pending is replaced; a step under way (a live send while a dry schedule is
    # typed, a step since dropped from the file) is stopped only by `distribute cancel`.
    replaced = ledger.cancel(campaign.name, keep=kept, states=("scheduled", "missed"))
    return Timeline(entries, replaced)


def _audience(check: CampaignCheck, step: Step) -> int:
    if isinstance(step, PostStep):
        return len(check.posts[step.name].parts)
    return len(check.audiences[step.name].recipients)


def send_hint(path: str, step: str, mode: str) -> str:
    """The command that sends a step deliberately, as ``status`` and the log show it."""
    where = Path(path)
    with contextlib.suppress(ValueError):  # shorter when the campaign is under this folder
        where = where.relative_to(Path.cwd())
    live = " --live" if mode == "live" else ""
    return f"distribute send {where} --step {step}{live}"


def missing_x_credentials() -> str | None:
    """Why posting to X would fail in this process's environment, or None."""
    from distribute.channels.x import Credentials
    from distribute.errors import ConfigError

    try:
        Credentials.from_env()
    except ConfigError as exc:
        return exc.message
    return None


def _hint(step: Timed) -> str:
    return send_hint(step.path, step.name, step.mode)


def span(delta: timedelta) -> str:
    """A duration as people say it: ``12 s``, ``3 min 5 s``, ``2 h 10 min``."""
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


# --------------------------------------------------------------------------- the worker


@dataclass(frozen=True)
class Event:
    """What a worker tells its watcher (``distribute demo``'s progress display)."""

    kind: str  # started, progress, finished, stopped, missed, failed
    step: Timed
    done: int = 0
    total: int = 0
    text: str = ""


_WORKERS: dict[str, Worker] = {}


def fire_step(worker_id: str, step_id: int) -> None:
    """APScheduler's job: ids only, so a job refers to nothing it could hold stale."""
    worker = _WORKERS.get(worker_id)
    if worker is not None:
        worker.fire(step_id)


class Worker:
    """Runs the scheduled steps of every campaign in one state database.

    ``clock`` decides what is due and how late; ``channel_factory`` and ``sleep`` go to
    the dispatcher. :meth:`run_due` fires what is due by the clock (tests drive time with
    it); :meth:`serve` is the long-running worker with APScheduler as its timer.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        poll: float = POLL_SECONDS,
        channel_factory: Callable[[], Any] | None = None,
        on_event: Callable[[Event], None] | None = None,
    ):
        self.settings = settings
        self.clock = clock or (lambda: datetime.now(UTC))
        self.ledger = Ledger(settings.database_url, clock=self.clock)
        self.id = runner_id()
        self.poll = poll
        self.started = self.clock()
        self.stopping = threading.Event()
        self.halts: dict[int, threading.Event] = {}
        self.busy: set[int] = set()  # steps fire() is on, from before they are taken
        self.armed: dict[int, datetime] = {}
        self._factory = channel_factory
        self._on_event = on_event
        self._lock = threading.Lock()
        self._trouble: str | None = None  # the last database error, said once
        self.signal: int | None = None  # the signal that stopped serve(), if one did
        self._waiting: dict[int, str] = {}  # steps held by another process, and by whom

    def close(self) -> None:
        self.ledger.close()

    def emit(self, event: Event) -> None:
        if self._on_event is not None:
            self._on_event(event)

    def stop(self) -> None:
        """Finish the messages under way, leave the rest pending, take nothing new."""
        self.stopping.set()
        with self._lock:
            for halt in self.halts.values():
                halt.set()

    # ------------------------------------------------------------------ one step

    def fire(self, step_id: int) -> str | None:
        """Run one step if it is still scheduled and due; returns the state it ends in.

        None when there was nothing to do: another worker took it, it was cancelled, this
        worker is stopping, or the database could not be reached (the step is tried again
        at the next read of the table).
        """
        from sqlalchemy.exc import SQLAlchemyError

        if self.stopping.is_set():
            return None
        with self._lock:
            # Before the step is taken: reclaim() must never see it running here and idle.
            self.busy.add(step_id)
        try:
            return self._fire(step_id)
        except SQLAlchemyError as exc:
            # Not a traceback from the timer's thread: one line, and the next read retries.
            log.error(
                "cannot start step %s (%s); tried again once the database answers",
                step_id,
                _reason(exc),
            )
            return None
        finally:
            with self._lock:
                self.busy.discard(step_id)
            self.armed.pop(step_id, None)  # re-armed at the next read if still scheduled

    def _fire(self, step_id: int) -> str | None:
        from sqlalchemy.exc import SQLAlchemyError

        from distribute.dispatch import DatabaseLost

        now = self.clock()
        step = self.ledger.timed_step(step_id)
        if step is None or step.state != "scheduled" or step.at > now:
            return None
        zone = step.timezone
        late = now - step.at
        where = f"{step.campaign}/{step.name} ({step.mode})"
        # Late by more than the grace because no worker ran at its time: never sent
        # unasked. A step this worker was up for, or one already started, is not "missed".
        if step.started_at is None and late > step.late_grace and step.at < self.started:
            why = (
                f"due at {instant(step.at, zone)}, found {span(late)} late (late_grace "
                f"{span(step.late_grace)}): not sent. To send it: {_hint(step)}"
            )
            if self.ledger.miss(step_id, why):
                log.warning("missed %s: %s", where, why)
                self.emit(Event("missed", step, text=why))
                return "missed"
            return None
        if not self.ledger.take(step_id, self.id, due=now):
            return None
        halt = threading.Event()
        with self._lock:
            self.halts[step_id] = halt
            if self.stopping.is_set():
                halt.set()
        try:
            note: str | None = None
            if step.started_at is not None:
                log.info("resumed %s (due at %s)", where, instant(step.at, zone))
            elif late >= timedelta(seconds=1):
                note = f"started {span(late)} late (due at {instant(step.at, zone)})"
                self.ledger.note(step_id, note)
                log.info(
                    "started %s, %s late (due at %s)", where, span(late), instant(step.at, zone)
                )
            else:
                log.info("started %s", where)
            self.emit(Event("started", step, text=note or ""))
            try:
                report = self._dispatch(step, now, halt)
            except SQLAlchemyError as exc:
                return self._lost(step, where, _reason(exc))
            except StepHeld as exc:
                return self._held(step, where, exc.message)
            except DistributeError as exc:
                if isinstance(exc, DatabaseLost) or getattr(exc, "lost", False):
                    return self._lost(step, where, exc.format())
                return self._fail(step, where, exc.format())
            except Exception as exc:
                log.exception("step %s broke", where)
                return self._fail(step, where, f"{type(exc).__name__}: {exc}")
            return self._settle(step, where, report, halt, note)
        finally:
            with self._lock:
                self.halts.pop(step_id, None)

    def _settle(
        self, step: Timed, where: str, report: Any, halt: threading.Event, note: str | None
    ) -> str:
        counts = report.counts
        sent = "sent" if step.mode == "live" else "written"
        summary = (
            f"{sent} {counts.get('sent', 0)}, failed {counts.get('failed', 0)}, uncertain "
            f"{counts.get('uncertain', 0)}, skipped {counts.get('skipped', 0)}"
        )
        pending = counts.get("pending", 0)
        if halt.is_set() and pending:
            if self.ledger.settle(step.id, self.id, "scheduled", note):
                text = f"{summary}; {pending} left pending for the next worker"
                log.info("stopped %s: %s", where, text)
            else:
                text = f"{summary}; {pending} left pending"
                log.info("cancelled %s: %s", where, text)
            self.emit(Event("stopped", step, text=text))
            return "scheduled"
        self.ledger.settle(step.id, self.id, "done", note)
        log.info("finished %s: %s", where, summary)
        self.emit(Event("finished", step, text=summary))
        return "done"

    def _held(self, step: Timed, where: str, reason: str) -> str | None:
        """Another process sends the step right now (a ``send`` by hand): not a failure. The
        step waits on the schedule and is resumed once that process is done, sending what
        it left (nothing, when it sent everything)."""
        from sqlalchemy.exc import SQLAlchemyError

        if self._waiting.get(step.id) != reason:  # said once, not at every read
            log.info("waiting %s: %s", where, reason)
        self._waiting[step.id] = reason
        with contextlib.suppress(SQLAlchemyError, LedgerError):
            if self.ledger.requeue(step.id, self.id, reason):
                return "scheduled"
        return None

    def _lost(self, step: Timed, where: str, reason: str) -> str | None:
        """The database went away mid-step: not the step's failure. What was sent is in the
        ledger (a message whose outcome could not be recorded turns uncertain, never resent),
        and the rest is sent once the step is resumed."""
        from sqlalchemy.exc import SQLAlchemyError

        text = f"the database was lost mid-step ({reason}); it resumes once it is back"
        log.error("interrupted %s: %s", where, text)
        self.emit(Event("stopped", step, text=text))
        with contextlib.suppress(SQLAlchemyError, LedgerError):
            if self.ledger.requeue(step.id, self.id, text):
                return "scheduled"
        return None  # still running here in the ledger: reclaim() puts it back later

    def _fail(self, step: Timed, where: str, reason: str) -> str:
        text = f"{reason}. To send it once fixed: {_hint(step)}"
        self.ledger.settle(step.id, self.id, "failed", text)
        log.error("failed %s: %s", where, text)
        self.emit(Event("failed", step, text=text))
        return "failed"

    def _dispatch(self, step: Timed, now: datetime, halt: threading.Event) -> Any:
        """Read the campaign, its lists and suppression again, check it, send the step."""
        from distribute.campaign import check_campaign, hold_embargo, load_campaign
        from distribute.dispatch import Dispatcher

        # A path recorded relative (``send hydrogen.toml``) is relative to the workspace.
        campaign = load_campaign(self.settings.workspace / step.path, self.settings)
        if campaign.name != step.campaign:
            raise CampaignError(
                f"the file now names campaign {campaign.name!r}, not {step.campaign!r}",
                path=step.path,
            )
        # The schedule's time wins over the file's: it is what was checked and shown.
        found = dataclasses.replace(campaign.step(step.name), at=step.at)
        if found.channel != step.channel:
            raise CampaignError(
                f"step {step.name!r} is now a {found.channel} step, scheduled as {step.channel}"
                "; schedule the campaign again",
                path=step.path,
            )
        # Only this step is checked again: another step's list broken meanwhile is that
        # step's failure, not this one's.
        alone = dataclasses.replace(campaign, steps=(found,))
        check = check_campaign(alone, self.settings, now=now)
        live = step.mode == "live"
        if live and isinstance(found, PostStep):
            hold_embargo(alone, [found], self.clock())

        def progress(done: int, total: int) -> None:
            self.emit(Event("progress", step, done=done, total=total))

        dispatcher = Dispatcher(
            self.settings,
            self.ledger,
            live=live,
            channel_factory=self._factory,
            clock=self.clock,
            halt=halt,
        )
        return dispatcher.run(alone, check, found, progress=progress)

    # ------------------------------------------------------------------ the table

    def reclaim(self) -> None:
        """Steps left running by a worker that died go back on the schedule, to resume;
        so do this worker's own, when it is no longer running them (the database was away
        as a step ended, so its end was never recorded)."""
        for step in self.ledger.reclaim():
            log.info(
                "resuming %s/%s (%s): its worker %s stopped mid-step",
                step.campaign,
                step.name,
                step.mode,
                step.worker,
            )
        mine = [s for s in self.ledger.timed(("running",)) if s.worker == self.id]
        with self._lock:  # read after the table: a step taken since is in busy already
            busy = set(self.busy)
        for step in mine:
            if step.id not in busy and self.ledger.requeue(
                step.id, self.id, "resumed after the database came back"
            ):
                log.info(
                    "resuming %s/%s (%s) now the database is back",
                    step.campaign,
                    step.name,
                    step.mode,
                )

    def run_due(self) -> list[str | None]:
        """Fire every scheduled step that is due by the clock, soonest first."""
        self.reclaim()
        now = self.clock()
        return [self.fire(s.id) for s in self.ledger.timed(("scheduled",)) if s.at <= now]

    def idle(self) -> bool:
        """Nothing scheduled or running anywhere, and nothing under way here."""
        with self._lock:
            busy = bool(self.halts)
        return not busy and self.ledger.active() == 0

    def sync(self, scheduler: Any) -> None:
        """Read the steps table and make the timer match it."""
        self.reclaim()
        with self._lock:
            mine = dict(self.halts)
        self.ledger.beat(mine, self.id)
        steps = self.ledger.timed()
        running_here = {s.id for s in steps if s.state == "running" and s.worker == self.id}
        for step_id, halt in mine.items():
            if step_id not in running_here:
                halt.set()  # cancelled by another process: stop after the messages under way
        scheduled = {s.id: s for s in steps if s.state == "scheduled"}
        for step in scheduled.values():
            if self.armed.get(step.id) == step.at:
                continue
            scheduler.add_job(
                fire_step,
                trigger="date",
                run_date=step.at,
                args=(self.id, step.id),
                id=f"step-{step.id}",
                name=f"{step.campaign}/{step.name} ({step.mode})",
                replace_existing=True,
            )
            self.armed[step.id] = step.at
        for step_id in list(self.armed):
            if step_id not in scheduled:
                self.armed.pop(step_id, None)
                if scheduler.get_job(f"step-{step_id}") is not None:
                    scheduler.remove_job(f"step-{step_id}")

    def tick(self, scheduler: Any) -> bool:
        """One read of the table; False when the database could not be read this time.

        A database that is briefly away (a PostgreSQL restart, a locked file) must not end
        the worker: it says so once and tries again at the next read.
        """
        from sqlalchemy.exc import SQLAlchemyError

        try:
            self.sync(scheduler)
        except (SQLAlchemyError, LedgerError) as exc:
            reason = _reason(exc)
            if reason != self._trouble:
                log.error(
                    "cannot read the schedule (%s); trying again every %g s", reason, self.poll
                )
            self._trouble = reason
            return False
        if self._trouble:
            log.info("the schedule can be read again")
            self._trouble = None
        return True

    def _on_job_event(self, event: Any) -> None:
        from apscheduler.events import EVENT_JOB_MISSED

        step_id = int(str(event.job_id).removeprefix("step-"))
        self.armed.pop(step_id, None)  # armed again at the next read of the table
        if event.code == EVENT_JOB_MISSED:
            log.warning("the timer missed step %s; it is armed again", step_id)
        else:
            log.error("step %s broke the worker: %s", step_id, event.exception)

    def check_credentials(self) -> None:
        """Say at start, not at the post's time (the office may be asleep), what is missing."""
        posts = [
            s for s in self.ledger.timed(("scheduled",)) if s.mode == "live" and s.channel == "x"
        ]
        if posts and (missing := missing_x_credentials()):
            names = ", ".join(f"{s.campaign}/{s.name}" for s in posts)
            steps = "step " if len(posts) == 1 else "steps "
            log.warning("%s; the live post %s%s will fail without them", missing, steps, names)

    def serve(self, *, until_idle: bool = False, handle_signals: bool = True) -> None:
        """Run until stopped (SIGTERM, SIGINT, SIGHUP) or, with ``until_idle``, until idle."""
        from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler
        from sqlalchemy.exc import SQLAlchemyError

        scheduler = BackgroundScheduler(
            timezone=UTC,
            # One step at a time per worker: several workers then share a campaign's steps.
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={
                # APScheduler's default grace (1 s) would drop a step due while the worker
                # was busy or down, silently. Lateness is the ledger's business, decided in
                # fire() against the campaign's late_grace, so the timer never drops a job.
                "misfire_grace_time": None,
                # A date job has one run time; coalescing makes sure a job that fell behind
                # runs once, never once per missed run.
                "coalesce": True,
                "max_instances": 1,
            },
        )
        scheduler.add_listener(self._on_job_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
        previous = self._trap_signals() if handle_signals else {}
        _WORKERS[self.id] = self
        scheduler.start()
        log.info("worker %s started on %s", self.id, _where(self.ledger.url))
        checked = False
        try:
            while not self.stopping.is_set():
                if self.tick(scheduler):
                    # Every read may find the database gone again: the next tick says so.
                    with contextlib.suppress(SQLAlchemyError):
                        if not checked:
                            self.check_credentials()
                            checked = True
                        if until_idle and self.idle():
                            break
                self.stopping.wait(self.poll)
        finally:
            stopped = self.stopping.is_set()
            self.stop()  # nothing queued in the timer's thread starts after this
            scheduler.shutdown(wait=True)
            _WORKERS.pop(self.id, None)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            log.info("worker %s %s", self.id, "stopped" if stopped else "idle: nothing scheduled")

    def _trap_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum: int, _frame: Any) -> None:
            name = signal.Signals(signum).name
            log.info("%s: finishing the messages under way, then stopping", name)
            self.signal = signum
            self.stop()

        previous: dict[int, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            previous[signum] = signal.signal(signum, handler)
        return previous


def _reason(exc: Exception) -> str:
    """A database error's first line, without SQLAlchemy's statement and links."""
    return (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]


def _where(url: str) -> str:
    from distribute.ledger import _safe

    return _safe(url)
