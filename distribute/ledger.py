"""The ledger: one row per (campaign, step, mode, recipient), claimed atomically before sending.

A row moves ``pending -> reserved -> sending -> sent | failed | uncertain``, or is
``skipped`` (with its reason in ``last_text``: suppressed, no longer on the step's lists).
Each sending connection reserves a few rows at a time (a :class:`Lane`); a reserved row is
claimed (``reserved -> sending``) just before its SMTP transaction, in the committed
transaction that also records the previous row's outcome, and marked ``sent`` only after
the server's 250, so a process that dies leaves at most one ``sending`` row per connection.
The next run turns those into ``uncertain`` and does not resend them unless asked: for a
journalist, a missing release is recoverable, a duplicate is not. Its reserved rows, never
handed to a server, become ``pending`` again.

One process at a time runs a step. The API a runner follows::

    ref = ledger.step(...)                  # the step's row, created once
    holder = ledger.acquire(ref, runner)    # None: the step is ours; else who holds it
    try:
        ledger.plan(ref, rows)              # rows now match the step's audience
        ledger.recover(ref, runner)         # what a dead holder left `sending` -> uncertain
        lane = ledger.lane(ref, runner)     # one per connection (posts: claim and finish)
        done = None
        while isinstance(claim := lane.advance(done, want)[0], Claim):
            ...                             # send, then done = Result(claim, state, ...)
        lane.close()                        # unused reservations -> pending
    finally:
        ledger.release(ref, runner)

Every decision that two processes could race on is one conditional statement whose row
count decides (``acquire``, ``claim``, a lane's reservation and claim, ``recover``), never a
read followed by a write. The
schema is created with ``IF NOT EXISTS`` under an advisory lock on PostgreSQL, so several
processes may open a fresh database at once.

A campaign is its name plus the file it comes from: a second file under a name already in
the ledger is refused. Each sent row records the version of the release (a short hash of its
text) it went out with.

Dry-run and live rows live under different step rows (``mode``), so a dry run can never
count as sent. Every statement is built with SQLAlchemy Core, so the same ones run on SQLite
and PostgreSQL; the few a lane runs for every message are compiled once and handed to the
driver's cursor (:class:`Driven`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateIndex, CreateTable

from distribute.errors import CampaignError, LedgerError

STATES = ("pending", "sending", "sent", "failed", "uncertain", "skipped")
# A pending row set aside by one sending connection, whose SMTP transaction has not started:
# a run that ends, or dies, gives it back as pending. Counted as pending (``Ledger.counts``).
RESERVED = "reserved"
# How many rows a sending connection reserves at a time: enough to make the reservation's
# cost small beside a message's, few enough that the last ones spread over the connections.
RESERVE = 8
# Sending connections that keep a database connection each for their whole run (see ``lane``).
HELD_LANES = 8
# A runner that has not touched its step for this long is presumed dead (another host).
STALE_AFTER = timedelta(minutes=10)
HEARTBEAT_EVERY = timedelta(seconds=5)
PLAN_CHUNK = 1000  # rows inserted per statement when a step is planned
# Any constant shared by every distribute process: the key of the schema's advisory lock.
_SCHEMA_LOCK = 0x64697374  # "dist"
NOT_LISTED = "no longer on the step's lists"
# Why ``recover`` made a row uncertain; the runner that claimed it may still record it.
STRANDED = "the sending process stopped during the transaction"

metadata = sa.MetaData()

campaigns = sa.Table(
    "campaigns",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("path", sa.Text, nullable=False),  # the campaign file, absolute
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

steps = sa.Table(
    "steps",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("campaign_id", sa.ForeignKey("campaigns.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("mode", sa.String(8), nullable=False),  # "dry" | "live"
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("planned_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("runner", sa.String(200)),
    sa.Column("heartbeat", sa.DateTime(timezone=True)),
    # The schedule (``distribute schedule``): NULL for a step only ever run by ``send``.
    sa.Column("state", sa.String(16)),  # one of STEP_STATES
    sa.Column("late_grace", sa.Integer),  # seconds a step may start late and still run
    sa.Column("worker", sa.String(200)),  # the worker process running it (state running)
    sa.Column("started_at", sa.DateTime(timezone=True)),  # first start by a worker
    sa.Column("note", sa.Text),  # why it was missed or failed, how late it started
    sa.UniqueConstraint("campaign_id", "name", "mode"),
)

STEP_STATES = ("scheduled", "running", "done", "missed", "cancelled", "failed")

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("step_id", sa.ForeignKey("steps.id"), nullable=False),
    sa.Column("target", sa.String(320), nullable=False),  # normalised address, or post part
    sa.Column("address", sa.String(320), nullable=False),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("list_name", sa.String(200), nullable=False, default=""),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("not_before", sa.DateTime(timezone=True)),
    sa.Column("last_code", sa.Integer),
    sa.Column("last_text", sa.Text),
    sa.Column("message_id", sa.String(200)),
    sa.Column("claimed_by", sa.String(200)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    # The release version (short hash of its text) the message was built from.
    sa.Column("release", sa.String(64)),
    sa.UniqueConstraint("step_id", "target"),
    sa.Index("deliveries_step_state", "step_id", "state"),
)


@dataclass(frozen=True)
class Planned:
    """A row of a step's audience, given to :meth:`Ledger.plan`.

    ``skipped`` rows (suppressed ones) are recorded with ``reason``.
    """

    target: str
    address: str
    name: str = ""
    list_name: str = ""
    skipped: bool = False
    reason: str = ""


@dataclass(frozen=True)
class Claim:
    id: int
    target: str
    address: str
    name: str
    attempts: int
    # The state the row was claimed from: an uncertain row given back stays uncertain.
    was: str = "pending"
    # Who claimed it: only that runner records its outcome (see ``Ledger.finish``).
    runner: str = ""


@dataclass(frozen=True)
class Result:
    """An outcome to record for a claimed row, as :meth:`Ledger.finish` takes it."""

    claim: Claim
    state: str
    code: int | None = None
    text: str | None = None
    message_id: str | None = None
    retry_at: datetime | None = None
    release: str | None = None


@dataclass(frozen=True)
class Reserved:
    """A row reserved by a :class:`Lane`: no transaction started for it yet."""

    id: int
    target: str
    address: str
    name: str
    attempts: int


@dataclass(frozen=True)
class Timed:
    """A step on the schedule, as the worker reads it."""

    id: int
    campaign: str
    path: str
    timezone: str
    name: str
    channel: str
    mode: str
    at: datetime
    state: str
    late_grace: timedelta
    worker: str | None
    started_at: datetime | None

    @property
    def ref(self) -> StepRef:
        return StepRef(self.id, self.campaign, self.name, self.channel, self.mode)


@dataclass(frozen=True)
class StepRef:
    id: int
    campaign: str
    name: str
    channel: str
    mode: str


@dataclass(frozen=True)
class Holder:
    """The process holding a step, as :meth:`Ledger.acquire` reports it."""

    runner: str
    host: str
    pid: str
    heartbeat: datetime | None

    @classmethod
    def of(cls, runner: str, heartbeat: datetime | None = None) -> Holder:
        host, _, rest = runner.partition(":")
        return cls(runner, host, rest.partition(":")[0], utc(heartbeat) if heartbeat else None)

    def __str__(self) -> str:
        return f"PID {self.pid} on {self.host}" if self.pid else self.runner


class StepHeld(LedgerError):
    """Another live process runs the step (a ``send`` by hand, another worker): nothing is
    wrong with the step, which can be run once that process is done."""


def utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes: everything stored is UTC, so say so."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def runner_id() -> str:
    """``host:pid:nonce``: who runs a step, readable by :class:`Holder`."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _alive(runner: str) -> bool:
    host, _, rest = runner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # cannot tell for another host: rely on the heartbeat
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def same_file(recorded: str, path: str | Path) -> bool:
    """Whether the campaign file a ledger recorded is ``path``.

    Ledgers written before campaign paths were made absolute hold the path as it was typed
    (``releases/launch.toml``), relative to a working directory nobody knows any more: it
    names ``path`` when it is the end of ``path``'s absolute form.
    """
    here = Path(path).resolve()
    if Path(recorded).resolve() == here:
        return True
    written = Path(recorded).parts
    return (
        not Path(recorded).is_absolute()
        and ".." not in written
        and here.parts[-len(written) :] == written
    )


def identity_problem(campaign: str, recorded: str) -> str:
    """Why a campaign file cannot use a name the ledger gives to ``recorded``.

    A new name makes a new campaign whose steps go to everyone again, so that advice comes
    with its cost; when the recorded file is gone, the file at hand is most likely that
    campaign moved, and the way to go on without a second mailing comes first.
    """
    if Path(recorded).is_absolute() and not Path(recorded).exists():
        return (
            f"campaign {campaign!r} was planned from {recorded}, which no longer exists; if "
            "this file is that campaign moved, move it back or link it there to go on (a new "
            'name = "..." would send every step to everyone again)'
        )
    return (
        f"campaign name {campaign!r} is already used by {recorded}; two campaign files "
        'cannot share a name: set name = "..." in this file (a new campaign: its steps go '
        "to everyone again)"
    )


class Ledger:
    def __init__(self, url: str, *, clock: Callable[[], datetime] | None = None):
        self.url = url
        self._clock = clock or (lambda: datetime.now(UTC))
        self._beats: dict[int, datetime] = {}
        self._statements: dict[object, Any] = {}
        self._acquired: set[int] = set()
        self._lock = threading.Lock()
        self._held = 0  # lanes holding a connection of their own
        # Held by a lane's write transaction on SQLite (see ``Lane._begin``).
        self._writer: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        try:
            self.engine: Engine = sa.create_engine(url, future=True)
            self._skip_locked = self.engine.dialect.name == "postgresql"
            if self.engine.dialect.name == "sqlite":
                sa.event.listen(self.engine, "connect", _sqlite_pragmas)
                self._writer = _sqlite_writer(self.engine.url.database)
            create_schema(self.engine)
        except SQLAlchemyError as exc:
            reason = getattr(exc, "orig", None) or exc
            raise LedgerError(f"cannot open the state database {_safe(url)}: {reason}") from None
        except ImportError as exc:
            raise LedgerError(
                f"cannot open the state database {_safe(url)}: its driver is not installed "
                f"({exc.name or exc}); for PostgreSQL, pip install 'psycopg[binary]'"
            ) from None

    def clock(self) -> datetime:
        return utc(self._clock())

    def close(self) -> None:
        self.engine.dispose()

    def _tx(self) -> Any:
        return self.engine.begin()

    def _statement(self, key: object, build: Callable[[], Any]) -> Any:
        """A statement built the first time it is needed, then reused: a reused statement
        object also keeps its compiled form's cache key, which SQLAlchemy would otherwise
        compute again on every execution."""
        found = self._statements.get(key)
        if found is None:
            found = self._statements[key] = build()
        return found

    def _driven(self, key: object, build: Callable[[], Any]) -> Driven:
        """The statement :meth:`_statement` keeps under ``key``, compiled for the driver."""
        found: Driven | None = self._statements.get(("driven", key))
        if found is None:
            statement = self._statement(key, build)
            found = self._statements["driven", key] = Driven(statement, self.engine.dialect)
        return found

    def _insert_new(self, table: sa.Table) -> Any:
        """An INSERT that leaves an existing row (same unique key) alone instead of failing:
        two processes planning at once must not die on each other's rows."""
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table).on_conflict_do_nothing()

    # ------------------------------------------------------------------ planning

    def step(
        self,
        campaign: str,
        path: str,
        timezone: str,
        name: str,
        channel: str,
        mode: str,
        at: datetime,
    ) -> StepRef:
        """The step's row, created on first use (idempotent).

        ``path`` is the campaign file: a campaign already recorded from another file under
        the same name is refused (:class:`CampaignError` naming both), so two campaigns never
        share their rows.
        """
        # SQLite keeps a datetime's wall-clock fields and drops its offset: store UTC only.
        at = utc(at)
        now = self.clock()
        with self._tx() as tx:
            tx.execute(
                self._insert_new(campaigns).values(
                    name=campaign, path=path, timezone=timezone, created_at=now
                )
            )
            row = tx.execute(
                sa.select(campaigns.c.id, campaigns.c.path).where(campaigns.c.name == campaign)
            ).one()
            if not same_file(row.path, path):
                raise CampaignError(identity_problem(campaign, row.path), path=path)
            if row.path != path:
                # The same file, recorded relative or through another link: record it as
                # it is now, so a later move is told apart from another campaign.
                tx.execute(
                    campaigns.update()
                    .where(campaigns.c.id == row.id, campaigns.c.path == row.path)
                    .values(path=path)
                )
            # The file's zone now: its times are shown in it, even after an edit.
            tx.execute(campaigns.update().where(campaigns.c.id == row.id).values(timezone=timezone))
            tx.execute(
                self._insert_new(steps).values(
                    campaign_id=row.id,
                    name=name,
                    channel=channel,
                    mode=mode,
                    at=at,
                    planned_at=now,
                )
            )
            step_id = tx.execute(
                sa.select(steps.c.id).where(
                    steps.c.campaign_id == row.id, steps.c.name == name, steps.c.mode == mode
                )
            ).scalar_one()
            # A step running or done keeps the time it went out at, whatever the file now says.
            tx.execute(
                steps.update()
                .where(
                    steps.c.id == step_id,
                    sa.or_(steps.c.state.is_(None), steps.c.state.not_in(("running", "done"))),
                )
                .values(at=at)
            )
        return StepRef(step_id, campaign, name, channel, mode)

    def campaign_path(self, campaign: str) -> str | None:
        """The file a campaign name was first planned from, if it was."""
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(campaigns.c.path).where(campaigns.c.name == campaign)
            ).scalar()
        return None if found is None else str(found)

    def campaign_of(self, path: str) -> str | None:
        """The campaign planned from file ``path``, if one was."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(campaigns.c.name, campaigns.c.path)).all()
        return next((str(row.name) for row in rows if same_file(row.path, path)), None)

    def plan(self, step: StepRef, rows: Iterable[Planned]) -> int:
        """Make the step's rows match its audience now; returns how many rows are new.

        ``rows`` is everything the step selects now, one row per target, suppressed
        recipients included (as ``skipped``); it is read once, lazily, so it may be a
        generator. Rows already sent, failed, uncertain or being sent keep their state.
        A pending row whose recipient is now suppressed, or no longer in ``rows``, becomes
        ``skipped`` with the reason; a skipped row whose recipient is selected and not
        suppressed again becomes ``pending``.
        """
        now = self.clock()
        with self._tx() as tx:
            existing = tx.execute(
                sa.select(
                    deliveries.c.id,
                    deliveries.c.target,
                    deliveries.c.state,
                    deliveries.c.last_text,
                ).where(deliveries.c.step_id == step.id)
            ).all()
            known = {row.target for row in existing}
            # Of the rows the step already has, the ones selected now, each with why it is
            # skipped ("" when it is to be sent): all ``plan`` keeps of ``rows``, read once
            # and inserted a chunk at a time, so a large audience is not held here again
            # (and a fresh step, with no rows, keeps nothing).
            selected: dict[str, str] = {}

            def fresh() -> Iterator[dict[str, Any]]:
                for row in rows:
                    reason = (row.reason or "skipped") if row.skipped else ""
                    if row.target in known:
                        selected[row.target] = reason
                        continue
                    yield {
                        "step_id": step.id,
                        "target": row.target,
                        "address": row.address,
                        "name": row.name,
                        "list_name": row.list_name,
                        "state": "skipped" if row.skipped else "pending",
                        "last_text": reason or None,
                        "attempts": 0,
                        "created_at": now,
                        "updated_at": now,
                    }

            new = fresh()
            added = 0
            while chunk := list(itertools.islice(new, PLAN_CHUNK)):
                tx.execute(self._insert_new(deliveries), chunk)
                added += len(chunk)
            changes: list[dict[str, Any]] = []
            for found in existing:
                if found.state not in ("pending", "skipped"):
                    continue  # sent, failed, uncertain and sending rows are history
                reason = selected.get(found.target, NOT_LISTED)
                if reason:
                    if (found.state, found.last_text) != ("skipped", reason):
                        changes.append(
                            {"row": found.id, "was": found.state, "to": "skipped", "why": reason}
                        )
                elif found.state == "skipped":
                    changes.append(
                        {"row": found.id, "was": "skipped", "to": "pending", "why": None}
                    )
            if changes:
                # Guarded by the state read above, row by row: a row claimed meanwhile stays.
                tx.execute(
                    deliveries.update()
                    .where(
                        deliveries.c.id == sa.bindparam("row"),
                        deliveries.c.state == sa.bindparam("was"),
                    )
                    .values(
                        state=sa.bindparam("to"),
                        last_text=sa.bindparam("why"),
                        not_before=None,
                        updated_at=now,
                    ),
                    changes,
                )
        return added

    def reset(self, step: StepRef) -> None:
        """Forget a step's rows (dry runs only: they are rehearsals, made again each time)."""
        if step.mode != "dry":
            raise LedgerError("only dry-run rows can be reset")
        with self._tx() as tx:
            tx.execute(deliveries.delete().where(deliveries.c.step_id == step.id))

    # ------------------------------------------------------------------ running

    def acquire(self, step: StepRef, runner: str) -> Holder | None:
        """Take the step for ``runner``: ``None`` when it is now ours, else who holds it.

        One conditional UPDATE decides: the step is taken when nobody holds it, when this
        runner already does, or when the holder's heartbeat is stale. A holder that is a dead
        process on this host is replaced by a compare-and-swap on its runner id, so of two
        processes taking over at once, one wins.
        """
        for _ in range(3):
            now = self.clock()
            with self._tx() as tx:
                taken = tx.execute(
                    steps.update()
                    .where(
                        steps.c.id == step.id,
                        sa.or_(
                            steps.c.runner.is_(None),
                            steps.c.runner == runner,
                            steps.c.heartbeat.is_(None),
                            steps.c.heartbeat < now - STALE_AFTER,
                        ),
                    )
                    .values(runner=runner, heartbeat=now)
                ).rowcount
                if taken == 1:
                    self._beats[step.id] = now
                    self._acquired.add(step.id)
                    return None
                held = tx.execute(
                    sa.select(steps.c.runner, steps.c.heartbeat).where(steps.c.id == step.id)
                ).one()
                if held.runner is None:
                    continue  # released between the two statements: try again
                if _alive(held.runner):
                    return Holder.of(held.runner, held.heartbeat)
                swapped = tx.execute(
                    steps.update()
                    .where(steps.c.id == step.id, steps.c.runner == held.runner)
                    .values(runner=runner, heartbeat=now)
                ).rowcount
                if swapped == 1:
                    self._beats[step.id] = now
                    self._acquired.add(step.id)
                    return None
        return self.holder(step) or Holder.of("unknown:?")

    def holder(self, step: StepRef) -> Holder | None:
        """Who holds the step now, if anyone."""
        with self.engine.connect() as conn:
            held = conn.execute(
                sa.select(steps.c.runner, steps.c.heartbeat).where(steps.c.id == step.id)
            ).one()
        return Holder.of(held.runner, held.heartbeat) if held.runner else None

    def _running(self, runner: str | None, heartbeat: datetime | None) -> bool:
        """Whether a live process holds the step (the same test ``acquire`` applies)."""
        if not runner or heartbeat is None:
            return False
        return self.clock() - utc(heartbeat) < STALE_AFTER and _alive(runner)

    def release(self, step: StepRef, runner: str) -> None:
        """Give the step up; a runner that no longer holds it changes nothing."""
        with self._tx() as tx:
            tx.execute(
                steps.update()
                .where(steps.c.id == step.id, steps.c.runner == runner)
                .values(runner=None, heartbeat=None)
            )
        self._beats.pop(step.id, None)
        self._acquired.discard(step.id)

    def recover(self, step: StepRef, runner: str) -> int:
        """Rows left ``sending`` by a dead run become ``uncertain``; returns how many. Its
        ``reserved`` rows, never handed to a server, become ``pending`` again.

        Only the step's holder may do this (the statement checks it), so the rows another
        process is sending right now are never taken for a dead one's.
        """
        now = self.clock()
        held = sa.select(steps.c.id).where(steps.c.id == step.id, steps.c.runner == runner).exists()
        with self._tx() as tx:
            stranded = tx.execute(
                deliveries.update()
                .where(deliveries.c.step_id == step.id, deliveries.c.state == "sending", held)
                .values(
                    state="uncertain",
                    last_text=STRANDED,
                    updated_at=now,
                )
            ).rowcount
            # No transaction started for a reserved row: the dead run's are simply pending.
            tx.execute(
                deliveries.update()
                .where(deliveries.c.step_id == step.id, deliveries.c.state == RESERVED, held)
                .values(state="pending", updated_at=now)
            )
        return int(stranded)

    def reopen_uncertain(self, step: StepRef, runner: str) -> int:
        """Every uncertain row back to ``pending``, for the holder of a step that sends them
        all in one go (a thread's parts). Email steps claim them one by one instead
        (``claim(retry_uncertain=True)``), so a ``--limit`` leaves the others uncertain."""
        held = sa.select(steps.c.id).where(steps.c.id == step.id, steps.c.runner == runner).exists()
        with self._tx() as tx:
            reopened = tx.execute(
                deliveries.update()
                .where(deliveries.c.step_id == step.id, deliveries.c.state == "uncertain", held)
                .values(state="pending", not_before=None, updated_at=self.clock())
            ).rowcount
        return int(reopened)

    def claim(
        self, step: StepRef, runner: str, *, retry_uncertain: bool = False
    ) -> Claim | timedelta | None:
        """Claim the next due row; ``None`` when none is left, or the wait for one.

        The claim is one UPDATE guarded by the row's state, whose row count decides: of two
        connections, whichever matches first owns the row, on SQLite and PostgreSQL alike.
        It picks the row and takes it in the same statement (``RETURNING``), so claimers do
        not all read the same lowest pending id and then race for it; on PostgreSQL the pick
        skips rows another claimer has locked (``FOR UPDATE SKIP LOCKED``). With
        ``retry_uncertain``, uncertain rows are claimed too, one at a time like the others,
        so only the rows actually sent again leave ``uncertain``.
        """
        if retry_uncertain:
            return self._claim_either(step, runner)
        take, later = self._statement("claim", self._build_claim)
        now = self.clock()
        with self._tx() as tx:
            # A heartbeat every few seconds is enough to tell a live runner from a dead one
            # (STALE_AFTER is minutes); one per message would double the writes.
            last = self._beats.get(step.id)
            if last is None or now - last >= HEARTBEAT_EVERY:
                self._heartbeat(tx, step, runner, now)
            row = tx.execute(take, {"step": step.id, "now": now, "runner": runner}).first()
            if row is not None:
                return Claim(row.id, row.target, row.address, row.name, row.attempts, runner=runner)
            # Nothing due (on PostgreSQL: or every due row is being claimed by another
            # connection right now, which the dispatcher waits a moment for).
            wait = tx.execute(later, {"step": step.id}).scalar()
            return None if wait is None else max(utc(wait) - now, timedelta(0))

    def _build_claim(self) -> tuple[Any, Any]:
        """The claim's statements, built once: SQLAlchemy spends more building and keying a
        statement than SQLite spends running it."""
        due = _due()
        pick = sa.select(deliveries.c.id).where(due).order_by(deliveries.c.id).limit(1)
        if self._skip_locked:
            pick = pick.with_for_update(skip_locked=True)
        take = (
            deliveries.update()
            .where(deliveries.c.id == pick.scalar_subquery(), due)
            .values(
                state="sending",
                attempts=deliveries.c.attempts + 1,
                claimed_by=sa.bindparam("runner"),
                updated_at=sa.bindparam("now"),
            )
            .returning(*_claimed_columns())
        )
        later = sa.select(sa.func.min(deliveries.c.not_before)).where(
            deliveries.c.step_id == sa.bindparam("step"), deliveries.c.state == "pending"
        )
        return take, later

    def _claim_either(self, step: StepRef, runner: str) -> Claim | timedelta | None:
        """``claim`` with uncertain rows too: read the row, then take it if its state held."""
        due = sa.or_(
            sa.and_(
                deliveries.c.state == "pending",
                sa.or_(
                    deliveries.c.not_before.is_(None),
                    deliveries.c.not_before <= sa.bindparam("now"),
                ),
            ),
            deliveries.c.state == "uncertain",
        )
        while True:
            now = self.clock()
            with self._tx() as tx:
                last = self._beats.get(step.id)
                if last is None or now - last >= HEARTBEAT_EVERY:
                    self._heartbeat(tx, step, runner, now)
                row = tx.execute(
                    sa.select(
                        deliveries.c.id,
                        deliveries.c.target,
                        deliveries.c.address,
                        deliveries.c.name,
                        deliveries.c.attempts,
                        deliveries.c.state,
                    )
                    .where(deliveries.c.step_id == step.id, due)
                    .order_by(deliveries.c.id)
                    .limit(1),
                    {"now": now},
                ).first()
                if row is None:
                    later = tx.execute(
                        sa.select(sa.func.min(deliveries.c.not_before)).where(
                            deliveries.c.step_id == step.id, deliveries.c.state == "pending"
                        )
                    ).scalar()
                    return None if later is None else max(utc(later) - now, timedelta(0))
                claimed = tx.execute(
                    deliveries.update()
                    .where(deliveries.c.id == row.id, deliveries.c.state == row.state)
                    .values(
                        state="sending",
                        attempts=deliveries.c.attempts + 1,
                        claimed_by=runner,
                        updated_at=now,
                    )
                ).rowcount
            if claimed == 1:
                return Claim(
                    row.id, row.target, row.address, row.name, row.attempts + 1, row.state, runner
                )

    def keep_alive(self, step: StepRef, runner: str) -> None:
        """Tell others the holder is alive while it waits (a slow rate, a long retry);
        :class:`LedgerError` when the step was taken over meanwhile."""
        with self._tx() as tx:
            self._heartbeat(tx, step, runner, self.clock())

    def _heartbeat(self, tx: Connection, step: StepRef, runner: str, now: datetime) -> None:
        lost = self._beat(tx, step, runner, now)
        if lost is not None:
            raise LedgerError(lost)

    def _beat(self, tx: Connection, step: StepRef, runner: str, now: datetime) -> str | None:
        """Write the step's heartbeat; why this run must stop when the step is not its own."""
        # A step this runner acquired must still be its own: one that was let go meanwhile
        # was taken over and finished by another process, which may be taken again by a
        # third; claiming on would make two holders.
        if step.id in self._acquired:
            beat = self._lane_statements()["beat"]
            parameters = {"step": step.id, "holder": runner, "now": now}
            done = tx.execute(beat, parameters).rowcount
        else:
            mine = sa.or_(steps.c.runner == runner, steps.c.runner.is_(None))
            done = tx.execute(
                steps.update().where(steps.c.id == step.id, mine).values(heartbeat=now)
            ).rowcount
        if done == 0:
            # Another process took the step over (ours looked dead): stop claiming.
            held = tx.execute(sa.select(steps.c.runner).where(steps.c.id == step.id)).scalar()
            return (
                f"step {step.name} of {step.campaign} was taken over by "
                f"{Holder.of(held) if held else 'another process'}; this run stops"
            )
        self._beats[step.id] = now
        return None

    def finish(
        self,
        claim: Claim,
        state: str,
        *,
        code: int | None = None,
        text: str | None = None,
        message_id: str | None = None,
        retry_at: datetime | None = None,
        release: str | None = None,
    ) -> None:
        """Record the outcome of a claimed row: sent, failed, uncertain, skipped or pending
        (a retry at ``retry_at``). ``release`` is the release version the message carried.

        Only the runner that claimed the row records it, and only while the row is still
        that claim's: ``sending``, or ``uncertain`` when another process took the step over
        from this one (frozen past its heartbeat) and could not know the outcome. The
        outcome this runner saw is then the truth, and a row left uncertain instead would be
        sent twice by ``--retry-uncertain``.
        """
        result = Result(claim, state, code, text, message_id, retry_at, release)
        statement, parameters = self._result_driven(result, self.clock())
        with self._tx() as tx:
            statement.count(tx, parameters)

    def unclaim(self, claim: Claim) -> None:
        """Give a claimed row back untouched (its transaction never started)."""
        with self._tx() as tx:
            tx.execute(
                deliveries.update()
                .where(_still_claimed(bool(claim.runner)))
                .values(state=claim.was, attempts=deliveries.c.attempts - 1),
                {"row": claim.id, "runner": claim.runner},
            )

    def lane(self, step: StepRef, runner: str, *, retry_uncertain: bool = False) -> Lane:
        """One sending connection's way through ``step``: see :class:`Lane`.

        The first ``HELD_LANES`` lanes open at once keep a database connection each; more
        would take the whole pool (SQLAlchemy's default: 5, and 10 more on demand) from the
        step's other statements, so the others take one per transaction.
        """
        with self._lock:
            hold = self._held < HELD_LANES
            self._held += hold
        try:
            lane = Lane(self, step, runner, retry_uncertain=retry_uncertain, hold=hold)
        except BaseException:
            if hold:
                self._let_go()
            raise
        if hold:
            lane.on_close = self._let_go
        return lane

    def _let_go(self) -> None:
        with self._lock:
            self._held -= 1

    def _lane_statements(self) -> dict[str, Any]:
        built: dict[str, Any] = self._statement("lane", self._build_lane)
        return built

    def _build_lane(self) -> dict[str, Any]:
        take = (
            deliveries.update()
            .where(
                deliveries.c.id == sa.bindparam("row"),
                deliveries.c.state == RESERVED,
                deliveries.c.claimed_by == sa.bindparam("runner"),
            )
            .values(
                state="sending",
                attempts=deliveries.c.attempts + 1,
                updated_at=sa.bindparam("now"),
            )
        )
        give_back = (
            deliveries.update()
            .where(
                deliveries.c.id.in_(sa.bindparam("rows", expanding=True)),
                deliveries.c.state == RESERVED,
                deliveries.c.claimed_by == sa.bindparam("runner"),
            )
            .values(state="pending", updated_at=sa.bindparam("now"))
        )
        beat = (
            steps.update()
            .where(steps.c.id == sa.bindparam("step"), steps.c.runner == sa.bindparam("holder"))
            .values(heartbeat=sa.bindparam("now"))
        )
        _, later = self._statement("claim", self._build_claim)
        return {"take": take, "give_back": give_back, "beat": beat, "later": later}

    def _reserve_statement(self, count: int) -> Any:
        """Pick and take up to ``count`` due rows in one statement, as ``claim`` does one."""

        def build() -> Any:
            due = _due()
            pick = sa.select(deliveries.c.id).where(due).order_by(deliveries.c.id).limit(count)
            picked: Any = pick.scalar_subquery()
            if self._skip_locked:
                # In a CTE, run once: PostgreSQL may run an IN subquery again for each row
                # it updates, and SKIP LOCKED then finds the next rows each time, so the
                # LIMIT would hold for one run of it and not for the statement.
                once = pick.with_for_update(skip_locked=True).cte("picked")
                once = once.prefix_with("MATERIALIZED")
                picked = sa.select(once.c.id).scalar_subquery()
            return (
                deliveries.update()
                .where(deliveries.c.id.in_(picked), due)
                .values(
                    state=RESERVED,
                    claimed_by=sa.bindparam("runner"),
                    updated_at=sa.bindparam("now"),
                )
                .returning(*_claimed_columns())
            )

        return self._statement(("reserve", count), build)

    def _reserve_driven(self, count: int) -> Driven:
        return self._driven(("reserve", count), lambda: self._reserve_statement(count))

    def _result_driven(self, result: Result, now: datetime) -> tuple[Driven, dict[str, Any]]:
        """The statement recording ``result`` (see :meth:`finish`) and its parameters."""
        key, parameters = self._result_key(result, now)
        return self._driven(key, lambda: _finish_statement(*key[1:])), parameters

    def _result_key(self, result: Result, now: datetime) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The key of the UPDATE recording ``result`` (the columns it sets: the arguments of
        ``_finish_statement``), and its parameters."""
        if result.state not in STATES:
            raise ValueError(result.state)
        claim = result.claim
        key = (
            "finish",
            bool(result.message_id),
            bool(result.release),
            result.state == "sent",
            bool(claim.runner),
        )
        return key, {
            "row": claim.id,
            "runner": claim.runner,
            "to": result.state,
            "code": result.code,
            "text": _storable(result.text),
            "now": now,
            "not_before": utc(result.retry_at) if result.retry_at else None,
            "message_id": _storable(result.message_id),
            "release": result.release,
        }

    # ------------------------------------------------------------------ the schedule

    def states(self, campaign: str) -> dict[tuple[str, str], str | None]:
        """Each step's schedule state, keyed by (name, mode)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(steps.c.name, steps.c.mode, steps.c.state)
                .join(campaigns, campaigns.c.id == steps.c.campaign_id)
                .where(campaigns.c.name == campaign)
            ).all()
        return {(row.name, row.mode): row.state for row in rows}

    def schedule(self, step: StepRef, at: datetime, late_grace: timedelta) -> str | None:
        """Put ``step`` on the schedule at ``at``; returns the state it is left in.

        A step that is running or done is left alone (``running``, ``done``): scheduling a
        campaign again never sends a finished step again. A live step that ``send`` already
        finished (rows, none left to send) is recorded as ``done``.
        """
        counts = self.counts(step)
        finished = sum(counts.values()) and not (counts["pending"] or counts["sending"])
        if step.mode == "live" and finished:
            with self._tx() as tx:
                tx.execute(
                    steps.update()
                    .where(
                        steps.c.id == step.id,
                        sa.or_(steps.c.state.is_(None), steps.c.state.in_(_RESCHEDULABLE)),
                    )
                    .values(state="done")
                )
        with self._tx() as tx:
            changed = tx.execute(
                steps.update()
                .where(
                    steps.c.id == step.id,
                    sa.or_(steps.c.state.is_(None), steps.c.state.in_(_RESCHEDULABLE)),
                )
                .values(
                    state="scheduled",
                    at=utc(at),
                    late_grace=int(late_grace.total_seconds()),
                    worker=None,
                    started_at=None,
                    note=None,
                )
            ).rowcount
            if changed:
                return "scheduled"
            state = tx.execute(sa.select(steps.c.state).where(steps.c.id == step.id)).scalar()
        return str(state) if state else None

    def cancel(
        self,
        campaign: str,
        names: Sequence[str] | None = None,
        *,
        keep: Iterable[int] = (),
        states: Sequence[str] = ("scheduled", "missed", "running"),
    ) -> list[tuple[str, str, str]]:
        """Steps in ``states`` (scheduled, missed and running ones) become ``cancelled``:
        (name, mode, was).

        A running step is stopped by its worker, which watches its state, after the
        messages under way. ``keep`` spares those step ids (rescheduling replaces the rest).
        """
        with self._tx() as tx:
            query = (
                sa.select(steps.c.id, steps.c.name, steps.c.mode, steps.c.state)
                .join(campaigns, campaigns.c.id == steps.c.campaign_id)
                .where(
                    campaigns.c.name == campaign,
                    steps.c.state.in_(list(states)),
                    steps.c.id.not_in(list(keep)),
                )
                .order_by(steps.c.at, steps.c.id)
            )
            if names is not None:
                query = query.where(steps.c.name.in_(list(names)))
            found = []
            for row in tx.execute(query).all():
                state = str(row.state)
                # Guarded by the state read: a step that finished meanwhile stays done. One
                # a worker took meanwhile (scheduled -> running) is read again and cancelled
                # as running, so its worker stops.
                for _ in range(3):
                    if tx.execute(
                        steps.update()
                        .where(steps.c.id == row.id, steps.c.state == state)
                        .values(state="cancelled")
                    ).rowcount:
                        found.append((str(row.name), str(row.mode), state))
                        break
                    now = tx.execute(sa.select(steps.c.state).where(steps.c.id == row.id)).scalar()
                    if now not in states:
                        break
                    state = str(now)
        return found

    def timed(self, states: Sequence[str] = ("scheduled", "running")) -> list[Timed]:
        """Every step of every campaign in ``states``, soonest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                _timed_select()
                .where(steps.c.state.in_(list(states)))
                .order_by(steps.c.at, steps.c.id)
            ).all()
        return [_timed(row) for row in rows]

    def timed_step(self, step_id: int) -> Timed | None:
        with self.engine.connect() as conn:
            row = conn.execute(_timed_select().where(steps.c.id == step_id)).first()
        return _timed(row) if row is not None and row.state else None

    def take(self, step_id: int, worker: str, *, due: datetime) -> bool:
        """Move a scheduled step due by ``due`` to ``running`` for ``worker``, atomically.

        The UPDATE is guarded by ``state = 'scheduled'``: of several workers that try at
        once, exactly one changes the row, on SQLite and PostgreSQL alike.
        """
        now = self.clock()
        with self._tx() as tx:
            taken = tx.execute(
                steps.update()
                .where(steps.c.id == step_id, steps.c.state == "scheduled", steps.c.at <= due)
                .values(
                    state="running",
                    worker=worker,
                    heartbeat=now,
                    started_at=sa.func.coalesce(steps.c.started_at, now),
                )
            ).rowcount
        return bool(taken)

    def miss(self, step_id: int, note: str) -> bool:
        """A scheduled step that never started and is too late: ``missed``, not sent."""
        with self._tx() as tx:
            changed = tx.execute(
                steps.update()
                .where(
                    steps.c.id == step_id,
                    steps.c.state == "scheduled",
                    steps.c.started_at.is_(None),
                )
                .values(state="missed", note=note)
            ).rowcount
        return bool(changed)

    def settle(self, step_id: int, worker: str, state: str, note: str | None = None) -> bool:
        """End ``worker``'s run of a step: done, failed, or back to scheduled (to resume).

        Guarded by the worker and ``running``: a step cancelled meanwhile stays cancelled.
        """
        if state not in STEP_STATES:
            raise ValueError(state)
        with self._tx() as tx:
            changed = tx.execute(
                steps.update()
                .where(steps.c.id == step_id, steps.c.state == "running", steps.c.worker == worker)
                .values(state=state, worker=None, note=note)
            ).rowcount
        return bool(changed)

    def requeue(self, step_id: int, worker: str, note: str) -> bool:
        """Put back on the schedule a step ``worker`` was running but no longer runs (it lost
        the database mid-step), to be resumed. This process's hold on the step goes with it:
        the run that held it has ended, and its last release may not have reached the
        database."""
        mine = f"{socket.gethostname()}:{os.getpid()}:%"
        with self._tx() as tx:
            changed = tx.execute(
                steps.update()
                .where(steps.c.id == step_id, steps.c.state == "running", steps.c.worker == worker)
                .values(state="scheduled", worker=None, note=note)
            ).rowcount
            if changed:
                tx.execute(
                    steps.update()
                    .where(steps.c.id == step_id, steps.c.runner.like(mine))
                    .values(runner=None, heartbeat=None)
                )
        return bool(changed)

    def note(self, step_id: int, note: str) -> None:
        with self._tx() as tx:
            tx.execute(steps.update().where(steps.c.id == step_id).values(note=note))

    def beat(self, step_ids: Iterable[int], worker: str) -> None:
        """Say that ``worker`` still runs these steps (another host tells by the time)."""
        ids = list(step_ids)
        if not ids:
            return
        with self._tx() as tx:
            tx.execute(
                steps.update()
                .where(steps.c.id.in_(ids), steps.c.worker == worker)
                .values(heartbeat=self.clock())
            )

    def reclaim(self) -> list[Timed]:
        """Running steps whose worker died go back to ``scheduled``, to be resumed."""
        back = []
        now = self.clock()
        for step in self.timed(("running",)):
            with self.engine.connect() as conn:
                beat = conn.execute(
                    sa.select(steps.c.heartbeat).where(steps.c.id == step.id)
                ).scalar()
            if step.worker and step.worker.partition(":")[0] == socket.gethostname():
                # On this host the process table is the truth: a worker that is still there
                # is working, however long since its step's last heartbeat.
                if _alive(step.worker):
                    continue
            else:
                last = beat or step.started_at
                if last is not None and now - utc(last) < STALE_AFTER:
                    continue
            with self._tx() as tx:
                if tx.execute(
                    steps.update()
                    .where(
                        steps.c.id == step.id,
                        steps.c.state == "running",
                        steps.c.worker == step.worker,
                    )
                    .values(state="scheduled", worker=None)
                ).rowcount:
                    back.append(step)
        return back

    def sent_by_hand(self, step: StepRef) -> None:
        """A missed, failed or cancelled step that ``send`` finished is done, not waiting."""
        counts = self.counts(step)
        if counts["pending"] or counts["sending"]:
            return
        with self._tx() as tx:
            tx.execute(
                steps.update()
                .where(steps.c.id == step.id, steps.c.state.in_(("missed", "failed", "cancelled")))
                .values(state="done", note="sent with distribute send")
            )

    def active(self) -> int:
        """How many steps are scheduled or running, in every campaign."""
        with self.engine.connect() as conn:
            count = conn.execute(
                sa.select(sa.func.count()).where(steps.c.state.in_(("scheduled", "running")))
            ).scalar()
        return int(count or 0)

    # ------------------------------------------------------------------ reporting

    def counts(self, step: StepRef) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(deliveries.c.state, sa.func.count())
                .where(deliveries.c.step_id == step.id)
                .group_by(deliveries.c.state)
            ).all()
        counts = dict.fromkeys(STATES, 0)
        for state, count in rows:
            # A reservation is a sending connection's next few rows: still to be sent.
            counts["pending" if state == RESERVED else state] += int(count)
        return counts

    def problems(self, step: StepRef) -> list[dict[str, Any]]:
        """The step's failed and uncertain rows, as runs and ``status`` report them."""
        return [_problem(row) for row in self.rows(step, ("failed", "uncertain"))]

    def rows(self, step: StepRef, states: Sequence[str] | None = None) -> list[dict[str, Any]]:
        query = sa.select(deliveries).where(deliveries.c.step_id == step.id)
        if states:
            query = query.where(deliveries.c.state.in_(states))
        with self.engine.connect() as conn:
            found = [dict(row._mapping) for row in conn.execute(query.order_by(deliveries.c.id))]
        for row in found:
            for key, value in row.items():
                if isinstance(value, datetime):
                    row[key] = utc(value)
        return found

    def status(self, campaign: str | None = None) -> list[dict[str, Any]]:
        """Campaigns with their steps and counts, for ``distribute status``."""
        query = sa.select(campaigns).order_by(campaigns.c.name)
        if campaign:
            query = query.where(campaigns.c.name == campaign)
        out: list[dict[str, Any]] = []
        with self.engine.connect() as conn:
            for camp in conn.execute(query).all():
                step_rows = conn.execute(
                    sa.select(steps)
                    .where(steps.c.campaign_id == camp.id)
                    .order_by(steps.c.at, steps.c.id)
                ).all()
                out.append(
                    {
                        "name": camp.name,
                        "path": camp.path,
                        "timezone": camp.timezone,
                        "steps": [
                            {
                                "name": s.name,
                                "channel": s.channel,
                                "at": utc(s.at),
                                "mode": s.mode,
                                "ref": StepRef(s.id, camp.name, s.name, s.channel, s.mode),
                                "running": self._running(s.runner, s.heartbeat),
                                "state": s.state,
                                "note": s.note,
                                "started_at": utc(s.started_at) if s.started_at else None,
                            }
                            for s in step_rows
                        ],
                    }
                )
        for camp_entry in out:
            for step_entry in camp_entry["steps"]:
                ref = step_entry["ref"]
                step_entry["counts"] = self.counts(ref)
                step_entry["releases"] = self.releases(ref)
                step_entry["problems"] = []
                step_entry["skipped"] = []
                for row in self.rows(ref, ("failed", "uncertain", "skipped")):
                    if row["state"] == "skipped":
                        step_entry["skipped"].append(
                            {"address": row["address"], "reason": row["last_text"] or "skipped"}
                        )
                        continue
                    step_entry["problems"].append(_problem(row))
        return out

    def releases(self, step: StepRef) -> dict[str, int]:
        """How many of the step's messages went out with each release version."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(deliveries.c.release, sa.func.count())
                .where(
                    deliveries.c.step_id == step.id,
                    deliveries.c.state == "sent",
                    deliveries.c.release.is_not(None),
                )
                .group_by(deliveries.c.release)
                .order_by(sa.func.min(deliveries.c.sent_at))
            ).all()
        return {str(version): int(count) for version, count in rows}


class Driven:
    """A statement compiled once for the ledger's database and run on the driver's cursor,
    inside the SQLAlchemy transaction of the connection it is given.

    SQLAlchemy's execution path (an execution context, the parameter dictionary, a result
    wrapper, the events) costs several times what SQLite spends on a one-row UPDATE; in the
    sending loop it was most of the ledger's time per message. Only statements whose results
    need no type conversion run here (row counts; integer and text columns), and a driver's
    error comes out as SQLAlchemy's, as from ``Connection.execute``.
    """

    def __init__(self, statement: Any, dialect: Dialect):
        compiled = statement.compile(dialect=dialect)
        returned = getattr(statement, "exported_columns", ())
        if (
            # Rendered at execution time (an expanding IN)
            "POSTCOMPILE" in compiled.string
            # or filled in by SQLAlchemy as it runs: a column's Python default, a value
            # computed on each execution, a returned column converted (SQLite's timestamps).
            or compiled.insert_prefetch
            or compiled.update_prefetch
            or any(bind.callable is not None for bind in compiled.bind_names)
            or any(
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in returned
            )
        ):
            raise ValueError(f"not a statement for the driver: {compiled.string}")
        self.sql = compiled.string
        self.returns = len(returned) > 0
        # By the names the SQL uses: ``compiled.binds`` also holds an anonymous value's key.
        binds = [(name, bind) for bind, name in compiled.bind_names.items()]
        self.required = frozenset(name for name, bind in binds if bind.required)
        # The statement's own literals (a state name, LIMIT, "+ 1"), under their bind names.
        self.constants = compiled.construct_params(dict.fromkeys(self.required), escape_names=False)
        # The names the SQL uses where a bind's own would not do as a placeholder (a dot, a
        # percent sign: PostgreSQL's pyformat).
        self.escaped = dict(compiled.escaped_bind_names)
        self.processors = {
            name: process
            for name, bind in binds
            if (process := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }
        self.positions = list(compiled.positiontup or ()) if compiled.positional else None

    def parameters(self, values: dict[str, Any]) -> Any:
        """What the driver takes for ``values``: SQLAlchemy's conversions applied (SQLite
        stores a timestamp as text), in the order or under the names the SQL uses."""
        if not self.required <= values.keys():
            raise KeyError(f"missing parameters: {sorted(self.required - values.keys())}")
        merged = {**self.constants, **values}
        for name, process in self.processors.items():
            merged[name] = process(merged[name])
        if self.positions is None:
            if self.escaped:
                return {self.escaped.get(name, name): value for name, value in merged.items()}
            return merged
        return [merged[name] for name in self.positions]

    def run(self, conn: Connection, values: dict[str, Any]) -> Any:
        """Run in ``conn``'s transaction; returns the driver's cursor (the caller closes it)."""
        raw = conn.connection.dbapi_connection
        parameters = self.parameters(values)
        cursor = raw.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(self.sql, parameters)
        except BaseException as exc:
            # Connection.execute's own handling, not a copy of part of it: the error becomes
            # SQLAlchemy's, and a lost connection throws away every connection the pool kept
            # from before (a restarted server ended them all), not only this one. The method
            # is private to SQLAlchemy: test_driven's lost-connection test watches it.
            conn._handle_dbapi_exception(exc, self.sql, parameters, cursor, None)
        return cursor

    def count(self, conn: Connection, values: dict[str, Any]) -> int:
        """Run it; how many rows it changed."""
        if self.returns:
            # SQLite counts an UPDATE ... RETURNING's rows only as they are read.
            raise ValueError(f"returns rows, to be read with rows(): {self.sql}")
        cursor = self.run(conn, values)
        try:
            changed: int = cursor.rowcount
        finally:
            cursor.close()
        return changed

    def rows(self, conn: Connection, values: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run it; every row it returned (read before the transaction can commit)."""
        cursor = self.run(conn, values)
        try:
            return [tuple(row) for row in cursor.fetchall()]
        finally:
            cursor.close()


class Lane:
    """One sending connection's rows of a step: a few reserved at a time, one sent at a time.

    :meth:`advance` is the one transaction per message: it records the outcome of the row
    just sent, reserves the next few rows when at most one is left, and moves the next
    reserved row to ``sending``, with the step's heartbeat every ``HEARTBEAT_EVERY``. No SMTP
    transaction has started for a reserved row, so :meth:`close` gives back the ones left, and
    after a crash ``Ledger.recover`` does. With ``retry_uncertain`` nothing is reserved, rows
    are claimed one at a time: an uncertain row made ``reserved`` would come back ``pending``
    after a crash, and be sent again by a run that did not ask for it.

    ``hold`` keeps one database connection for the lane's life instead of taking one from
    the pool for each transaction, which costs more than the transaction on SQLite.
    """

    def __init__(
        self, ledger: Ledger, step: StepRef, runner: str, *, retry_uncertain: bool, hold: bool
    ):
        self.ledger = ledger
        self.step = step
        self.runner = runner
        self.one_by_one = retry_uncertain
        self.batch = 1 if retry_uncertain else RESERVE
        self.queue: deque[Reserved] = deque()
        self._statements = ledger._lane_statements()
        self._take = ledger._driven("take", lambda: self._statements["take"])
        self._conn: Connection | None = ledger.engine.connect() if hold else None
        self.on_close: Callable[[], None] | None = None

    def low(self) -> bool:
        """Whether the next :meth:`advance` should reserve: at most one row is left."""
        return len(self.queue) <= 1

    def peek(self) -> Reserved | None:
        """The row the next :meth:`advance` claims, if it is already reserved."""
        return self.queue[0] if self.queue else None

    @contextlib.contextmanager
    def _begin(self) -> Iterator[Connection]:
        # SQLite lets one writer in at a time and makes the others sleep and try again
        # (busy_timeout, a millisecond or more, about a message's time): the lanes of one
        # process queue on a lock instead, and the next one starts as soon as it is free.
        with self.ledger._writer:
            if self._conn is None:
                with self.ledger.engine.begin() as tx:
                    yield tx
            else:
                with self._conn.begin():
                    yield self._conn

    def record(self, done: Result) -> None:
        """Record an outcome on its own: nothing is claimed after it."""
        with self._begin() as tx:
            statement, parameters = self.ledger._result_driven(done, self.ledger.clock())
            statement.count(tx, parameters)

    def advance(self, done: Result | None, want: int = 0) -> tuple[Claim | timedelta | None, int]:
        """Record ``done``, then claim the next row, in one transaction.

        ``want``: how many rows it may reserve (the run's budget). Returns the claim, or the
        wait until the next row is due, or ``None`` when nothing is left for this lane; and
        how many rows it reserved (less those another process took back meanwhile).
        """
        if self.one_by_one:
            return self._one_by_one(done, want)
        ledger, step = self.ledger, self.step
        now = ledger.clock()
        reserved = 0
        taken: Reserved | None = None
        wait: datetime | None = None
        lost: str | None = None
        with self._begin() as tx:
            if done is not None:
                statement, parameters = ledger._result_driven(done, now)
                statement.count(tx, parameters)
            last = ledger._beats.get(step.id)
            if last is None or now - last >= HEARTBEAT_EVERY:
                lost = ledger._beat(tx, step, self.runner, now)
            if lost is None:
                ids = {"step": step.id, "runner": self.runner, "now": now}
                if want > 0:
                    rows = ledger._reserve_driven(want).rows(tx, ids)
                    # RETURNING keeps no order: send in id order, as planned.
                    self.queue.extend(sorted((Reserved(*row) for row in rows), key=_by_id))
                    reserved = len(rows)
                while self.queue and taken is None:
                    row = self.queue[0]
                    if self._take.count(tx, {**ids, "row": row.id}):
                        taken = row
                    else:
                        reserved -= 1  # given back by another holder's recover meanwhile
                    # Only once the statement ran: a failed transaction leaves it reserved.
                    self.queue.popleft()
                if taken is None and want > 0:
                    wait = tx.execute(self._statements["later"], {"step": step.id}).scalar()
        # After the commit: the outcome above is recorded whatever happens to the run.
        if lost is not None:
            raise LedgerError(lost)
        if taken is not None:
            claim = Claim(
                taken.id,
                taken.target,
                taken.address,
                taken.name,
                taken.attempts + 1,
                runner=self.runner,
            )
            return claim, reserved
        if wait is None:
            return None, reserved
        return max(utc(wait) - now, timedelta(0)), reserved

    def _one_by_one(self, done: Result | None, want: int) -> tuple[Claim | timedelta | None, int]:
        if done is not None:
            self.record(done)
        if want <= 0:
            return None, 0
        got = self.ledger.claim(self.step, self.runner, retry_uncertain=True)
        return got, 1 if isinstance(got, Claim) else 0

    def close(self) -> int:
        """Give back the rows still reserved; returns how many."""
        rows = [row.id for row in self.queue]
        self.queue.clear()
        try:
            if rows:
                with self._begin() as tx:
                    tx.execute(
                        self._statements["give_back"],
                        {"rows": rows, "runner": self.runner, "now": self.ledger.clock()},
                    )
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self.on_close is not None:
                self.on_close()
                self.on_close = None
        return len(rows)


def _storable(text: str | None) -> str | None:
    """``text`` as every ledger database keeps it: PostgreSQL refuses NUL in a text column,
    and a server's reply may hold one after the message went out."""
    return text.replace("\x00", "\ufffd") if text else text


def _by_id(row: Reserved) -> int:
    return row.id


def _due() -> Any:
    """The step's (``:step``) pending rows whose retry time, if any, has come (``:now``)."""
    return sa.and_(
        deliveries.c.step_id == sa.bindparam("step"),
        deliveries.c.state == "pending",
        sa.or_(deliveries.c.not_before.is_(None), deliveries.c.not_before <= sa.bindparam("now")),
    )


def _claimed_columns() -> tuple[Any, ...]:
    """What a claim or a reservation returns of each row it takes."""
    c = deliveries.c
    return (c.id, c.target, c.address, c.name, c.attempts)


def _finish_statement(message_id: bool, release: bool, sent: bool, by_runner: bool) -> Any:
    """The UPDATE recording a claimed row's outcome, with the columns this outcome sets."""
    values: dict[str, Any] = {
        "state": sa.bindparam("to"),
        "last_code": sa.bindparam("code"),
        "last_text": sa.bindparam("text"),
        "updated_at": sa.bindparam("now"),
        "not_before": sa.bindparam("not_before"),
    }
    if message_id:
        values["message_id"] = sa.bindparam("message_id")
    if release:
        values["release"] = sa.bindparam("release")
    if sent:
        values["sent_at"] = sa.bindparam("now")
    return deliveries.update().where(_still_claimed(by_runner)).values(**values)


def _still_claimed(by_runner: bool) -> Any:
    """The row (``:row``) is still its claim's: being sent by its runner (``:runner``), or
    made uncertain by another process's ``recover`` while that runner was frozen (not by
    the runner's own outcome). A claim made without a runner: any row being sent."""
    sending = deliveries.c.state == "sending"
    if not by_runner:
        return sa.and_(deliveries.c.id == sa.bindparam("row"), sending)
    stranded = sa.and_(deliveries.c.state == "uncertain", deliveries.c.last_text == STRANDED)
    return sa.and_(
        deliveries.c.id == sa.bindparam("row"),
        deliveries.c.claimed_by == sa.bindparam("runner"),
        sa.or_(sending, stranded),
    )


def create_schema(engine: Engine) -> None:
    """Create the tables and add the columns an older ledger lacks, race-free.

    Several processes may open a fresh database at once (two ``send`` runs, a scheduler):
    every statement is ``IF NOT EXISTS``, and on PostgreSQL a transaction-scoped advisory
    lock serialises them, because two concurrent ``CREATE TABLE IF NOT EXISTS`` can still
    collide there on the catalog's unique index.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
        for table in metadata.sorted_tables:
            conn.execute(CreateTable(table, if_not_exists=True))
            for index in table.indexes:
                conn.execute(CreateIndex(index, if_not_exists=True))
        inspector = sa.inspect(conn)
        missing = [
            (table, column)
            for table in metadata.sorted_tables
            for column in table.columns
            if column.name not in {c["name"] for c in inspector.get_columns(table.name)}
        ]
    for table, column in missing:
        # Columns added since a ledger was created; all of them may be NULL.
        kind = column.type.compile(engine.dialect)
        statement = f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(statement))
        except SQLAlchemyError:
            # Another process added it first; anything else is still missing and says so.
            with engine.connect() as conn:
                names = {c["name"] for c in sa.inspect(conn).get_columns(table.name)}
            if column.name not in names:
                raise


_RESCHEDULABLE = ("scheduled", "missed", "cancelled", "failed")


def _timed_select() -> Any:
    """Steps with their campaign's name, path and zone: what :func:`_timed` reads."""
    return sa.select(
        steps, campaigns.c.name.label("campaign"), campaigns.c.path, campaigns.c.timezone
    ).join(campaigns, campaigns.c.id == steps.c.campaign_id)


def _timed(row: Any) -> Timed:
    return Timed(
        id=row.id,
        campaign=row.campaign,
        path=row.path,
        timezone=row.timezone,
        name=row.name,
        channel=row.channel,
        mode=row.mode,
        at=utc(row.at),
        state=row.state,
        late_grace=timedelta(seconds=3600 if row.late_grace is None else row.late_grace),
        worker=row.worker,
        started_at=utc(row.started_at) if row.started_at else None,
    )


def _problem(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "address": row["address"],
        "state": row["state"],
        "code": row["last_code"],
        "text": row["last_text"],
    }


# One lock per SQLite file for the whole process, not per Ledger: two Ledger objects on one
# file would otherwise each let a writer in, and the second would sleep in SQLite's busy
# handler, the wait the lock is there to avoid (and fail after busy_timeout).
_SQLITE_WRITERS: dict[str, threading.Lock] = {}
_SQLITE_WRITERS_LOCK = threading.Lock()


def _sqlite_writer(database: str | None) -> threading.Lock:
    """The write lock of the SQLite file ``database``, shared by every Ledger opening it."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return threading.Lock()  # a database of its own (or a URI we do not resolve)
    key = os.path.realpath(database)
    with _SQLITE_WRITERS_LOCK:
        return _SQLITE_WRITERS.setdefault(key, threading.Lock())


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # busy_timeout makes the sending threads (and other processes) wait for each other's
    # short transactions instead of failing; set first, as switching to WAL takes a lock.
    # WAL lets status readers run beside a sender; NORMAL sync survives a killed process
    # (only a power cut can lose the last commits).
    cursor.execute("PRAGMA busy_timeout=30000")
    _write_ahead_log(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _write_ahead_log(cursor: Any) -> None:
    """Switch the file to WAL, waiting as busy_timeout would for another connection doing
    the same: SQLite answers "database is locked" at once, without its busy handler, to a
    connection switching a new file while another one does (two runs starting together)."""
    import sqlite3

    deadline = time.monotonic() + 30
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _safe(url: str) -> str:
    """The URL without its password, for messages (a PostgreSQL URL may carry one)."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable URL)"
