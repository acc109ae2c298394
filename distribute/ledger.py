"""The ledger: one row per (campaign, step, mode, recipient), claimed atomically before sending.

A row moves ``pending -> sending -> sent | failed | uncertain``, or is ``skipped``
(suppressed). It is claimed (``pending -> sending``) in its own committed transaction just
before the SMTP transaction and marked ``sent`` only after the server's 250, so a process
that dies leaves at most one ``sending`` row per connection. The next run turns those into
``uncertain`` and does not resend them unless asked: for a journalist, a missing release
is recoverable, a duplicate is not.

Dry-run and live rows live under different step rows (``mode``), so a dry run can never
count as sent. SQLAlchemy Core only, so the same statements run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from distribute.errors import LedgerError

STATES = ("pending", "sending", "sent", "failed", "uncertain", "skipped")
# A runner that has not touched its step for this long is presumed dead (another host).
STALE_AFTER = timedelta(minutes=10)
HEARTBEAT_EVERY = timedelta(seconds=5)

metadata = sa.MetaData()

campaigns = sa.Table(
    "campaigns",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("path", sa.Text, nullable=False),
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
    sa.UniqueConstraint("campaign_id", "name", "mode"),
)

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
    sa.UniqueConstraint("step_id", "target"),
    sa.Index("deliveries_step_state", "step_id", "state"),
)


@dataclass(frozen=True)
class Planned:
    """A row to create when a step is planned."""

    target: str
    address: str
    name: str = ""
    list_name: str = ""
    skipped: bool = False


@dataclass(frozen=True)
class Claim:
    id: int
    target: str
    address: str
    name: str
    attempts: int


@dataclass(frozen=True)
class StepRef:
    id: int
    campaign: str
    name: str
    channel: str
    mode: str


def utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes: everything stored is UTC, so say so."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def runner_id() -> str:
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


class Ledger:
    def __init__(self, url: str, *, clock: Callable[[], datetime] | None = None):
        self.url = url
        self._clock = clock or (lambda: datetime.now(UTC))
        self._beats: dict[int, datetime] = {}
        try:
            self.engine: Engine = sa.create_engine(url, future=True)
            if self.engine.dialect.name == "sqlite":
                sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            metadata.create_all(self.engine)
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
        """The step's row, created on first use (idempotent)."""
        # SQLite keeps a datetime's wall-clock fields and drops its offset: store UTC only.
        at = utc(at)
        now = self.clock()
        with self._tx() as tx:
            row = tx.execute(sa.select(campaigns.c.id).where(campaigns.c.name == campaign)).first()
            if row is None:
                campaign_id = tx.execute(
                    campaigns.insert().values(
                        name=campaign, path=path, timezone=timezone, created_at=now
                    )
                ).inserted_primary_key[0]
            else:
                campaign_id = row.id
            found = tx.execute(
                sa.select(steps.c.id).where(
                    steps.c.campaign_id == campaign_id,
                    steps.c.name == name,
                    steps.c.mode == mode,
                )
            ).first()
            if found is None:
                step_id = tx.execute(
                    steps.insert().values(
                        campaign_id=campaign_id,
                        name=name,
                        channel=channel,
                        mode=mode,
                        at=at,
                        planned_at=now,
                    )
                ).inserted_primary_key[0]
            else:
                step_id = found.id
                tx.execute(steps.update().where(steps.c.id == step_id).values(at=at))
        return StepRef(step_id, campaign, name, channel, mode)

    def plan(self, step: StepRef, rows: Iterable[Planned]) -> int:
        """Create the rows that do not exist yet; existing rows keep their state. Returns new."""
        rows = list(rows)  # read twice below: new rows, then later suppressions
        now = self.clock()
        with self._tx() as tx:
            existing = set(
                tx.execute(
                    sa.select(deliveries.c.target).where(deliveries.c.step_id == step.id)
                ).scalars()
            )
            new = [
                {
                    "step_id": step.id,
                    "target": row.target,
                    "address": row.address,
                    "name": row.name,
                    "list_name": row.list_name,
                    "state": "skipped" if row.skipped else "pending",
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for row in rows
                if row.target not in existing
            ]
            # A suppression added after planning must still stop the row.
            skipped = [row.target for row in rows if row.skipped and row.target in existing]
            if new:
                tx.execute(deliveries.insert(), new)
            if skipped:
                tx.execute(
                    deliveries.update()
                    .where(
                        deliveries.c.step_id == step.id,
                        deliveries.c.target.in_(skipped),
                        deliveries.c.state == "pending",
                    )
                    .values(state="skipped", updated_at=now)
                )
        return len(new)

    def reset(self, step: StepRef) -> None:
        """Forget a step's rows (dry runs only: they are rehearsals, made again each time)."""
        if step.mode != "dry":
            raise LedgerError("only dry-run rows can be reset")
        with self._tx() as tx:
            tx.execute(deliveries.delete().where(deliveries.c.step_id == step.id))

    # ------------------------------------------------------------------ running

    def acquire(self, step: StepRef, runner: str) -> str | None:
        """Take the step for this runner; returns the live runner holding it, if any."""
        now = self.clock()
        with self._tx() as tx:
            row = tx.execute(
                sa.select(steps.c.runner, steps.c.heartbeat).where(steps.c.id == step.id)
            ).one()
            if row.runner and row.runner != runner:
                fresh = row.heartbeat is not None and now - utc(row.heartbeat) < STALE_AFTER
                if fresh and _alive(row.runner):
                    return str(row.runner)
            tx.execute(
                steps.update().where(steps.c.id == step.id).values(runner=runner, heartbeat=now)
            )
        return None

    def _running(self, runner: str | None, heartbeat: datetime | None) -> bool:
        """Whether a live process holds the step (the same test ``acquire`` applies)."""
        if not runner or heartbeat is None:
            return False
        return self.clock() - utc(heartbeat) < STALE_AFTER and _alive(runner)

    def release(self, step: StepRef, runner: str) -> None:
        with self._tx() as tx:
            tx.execute(
                steps.update()
                .where(steps.c.id == step.id, steps.c.runner == runner)
                .values(runner=None, heartbeat=None)
            )

    def recover(self, step: StepRef, *, retry_uncertain: bool = False) -> int:
        """Rows left ``sending`` by a dead run become ``uncertain``; returns how many.

        With ``retry_uncertain``, uncertain rows go back to ``pending`` (the user accepts
        that some journalists may get the release twice).
        """
        now = self.clock()
        with self._tx() as tx:
            stranded = tx.execute(
                deliveries.update()
                .where(deliveries.c.step_id == step.id, deliveries.c.state == "sending")
                .values(
                    state="uncertain",
                    last_text="the sending process stopped during the transaction",
                    updated_at=now,
                )
            ).rowcount
            if retry_uncertain:
                tx.execute(
                    deliveries.update()
                    .where(deliveries.c.step_id == step.id, deliveries.c.state == "uncertain")
                    .values(state="pending", not_before=None, updated_at=now)
                )
        return int(stranded)

    def claim(self, step: StepRef, runner: str) -> Claim | timedelta | None:
        """Claim the next due pending row; ``None`` when none is left, or the wait for one.

        The claim is an UPDATE guarded by ``state = 'pending'``: whichever connection's
        update matches first owns the row, on SQLite and PostgreSQL alike.
        """
        while True:
            now = self.clock()
            with self._tx() as tx:
                # A heartbeat every few seconds is enough to tell a live runner from a dead one
                # (STALE_AFTER is minutes); one per message would double the writes.
                last = self._beats.get(step.id)
                if last is None or now - last >= HEARTBEAT_EVERY:
                    tx.execute(steps.update().where(steps.c.id == step.id).values(heartbeat=now))
                    self._beats[step.id] = now
                row = tx.execute(
                    sa.select(
                        deliveries.c.id,
                        deliveries.c.target,
                        deliveries.c.address,
                        deliveries.c.name,
                        deliveries.c.attempts,
                    )
                    .where(
                        deliveries.c.step_id == step.id,
                        deliveries.c.state == "pending",
                        sa.or_(deliveries.c.not_before.is_(None), deliveries.c.not_before <= now),
                    )
                    .order_by(deliveries.c.id)
                    .limit(1)
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
                    .where(deliveries.c.id == row.id, deliveries.c.state == "pending")
                    .values(
                        state="sending",
                        attempts=deliveries.c.attempts + 1,
                        claimed_by=runner,
                        updated_at=now,
                    )
                ).rowcount
            if claimed == 1:
                return Claim(row.id, row.target, row.address, row.name, row.attempts + 1)

    def finish(
        self,
        claim: Claim,
        state: str,
        *,
        code: int | None = None,
        text: str | None = None,
        message_id: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        """Record the outcome of a claimed row: sent, failed, uncertain, or pending (retry)."""
        if state not in STATES:
            raise ValueError(state)
        now = self.clock()
        values: dict[str, Any] = {
            "state": state,
            "last_code": code,
            "last_text": text,
            "updated_at": now,
            "not_before": utc(retry_at) if retry_at else None,
        }
        if message_id:
            values["message_id"] = message_id
        if state == "sent":
            values["sent_at"] = now
        with self._tx() as tx:
            tx.execute(
                deliveries.update()
                .where(deliveries.c.id == claim.id, deliveries.c.state == "sending")
                .values(**values)
            )

    def unclaim(self, claim: Claim) -> None:
        """Give a claimed row back untouched (its transaction never started)."""
        with self._tx() as tx:
            tx.execute(
                deliveries.update()
                .where(deliveries.c.id == claim.id, deliveries.c.state == "sending")
                .values(state="pending", attempts=deliveries.c.attempts - 1)
            )

    # ------------------------------------------------------------------ reporting

    def counts(self, step: StepRef) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(deliveries.c.state, sa.func.count())
                .where(deliveries.c.step_id == step.id)
                .group_by(deliveries.c.state)
            ).all()
        counts = dict.fromkeys(STATES, 0)
        counts.update({state: int(count) for state, count in rows})
        return counts

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
                        "timezone": camp.timezone,
                        "steps": [
                            {
                                "name": s.name,
                                "channel": s.channel,
                                "at": utc(s.at),
                                "mode": s.mode,
                                "ref": StepRef(s.id, camp.name, s.name, s.channel, s.mode),
                                "running": self._running(s.runner, s.heartbeat),
                            }
                            for s in step_rows
                        ],
                    }
                )
        for camp_entry in out:
            for step_entry in camp_entry["steps"]:
                ref = step_entry["ref"]
                step_entry["counts"] = self.counts(ref)
                step_entry["problems"] = [
                    {
                        "address": row["address"],
                        "state": row["state"],
                        "code": row["last_code"],
                        "text": row["last_text"],
                    }
                    for row in self.rows(ref, ("failed", "uncertain"))
                ]
        return out


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets status readers run beside a sender; NORMAL sync survives a killed process
    # (only a power cut can lose the last commits). busy_timeout makes the sending threads
    # wait for each other's short claim transactions instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _safe(url: str) -> str:
    """The URL without its password, for messages (a PostgreSQL URL may carry one)."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable URL)"
