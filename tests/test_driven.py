"""Statements run on the driver's cursor (``Driven``) write what SQLAlchemy would write.

The sending loop records each outcome and claims the next row through ``Driven``, which
compiles a statement once and converts its parameters as SQLAlchemy does (SQLite keeps a
timestamp as text). Every test runs on SQLite and, with ``DISTRIBUTE_TEST_POSTGRES_URL``
set, on PostgreSQL.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
import test_ledger
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ledger import make_step, planned

from distribute.dispatch import _reason
from distribute.ledger import STATES, Claim, Driven, Ledger, Result, _finish_statement, deliveries

url = test_ledger.url  # the databases the ledger's tests run on


@pytest.fixture
def ledger(url: str) -> Iterator[Ledger]:
    opened = Ledger(url)
    yield opened
    opened.close()


RUNNER = "test:1:a"
serial = itertools.count()

# Text as a journalist's list or a server's reply may hold it: quotes, percent signs (the
# PostgreSQL driver's placeholders start with one), accents, CJK, NUL (which no text column
# of PostgreSQL takes: the ledger writes U+FFFD in its place).
texts = st.text(st.characters(blacklist_categories=("Cs",)))
instants = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=-11, minutes=-30)), timezone(timedelta(hours=14))]
    ),
)
results = st.fixed_dictionaries(
    {
        "state": st.sampled_from(STATES),
        "code": st.none() | st.integers(min_value=-(2**31), max_value=2**31 - 1),
        "text": st.none() | texts,
        "message_id": st.none() | texts.filter(bool).map(lambda t: t[:200]),
        "retry_at": st.none() | instants,
        "release": st.none() | st.text("0123456789abcdef", min_size=1, max_size=8),
    }
)


def twins(ledger: Ledger) -> tuple[Claim, Claim]:
    """Two rows of a fresh step, both being sent by RUNNER."""
    step = make_step(ledger, name=f"s{next(serial)}")
    ledger.plan(step, planned("a@example.com", "b@example.com"))
    assert ledger.acquire(step, RUNNER) is None
    first, second = ledger.claim(step, RUNNER), ledger.claim(step, RUNNER)
    assert isinstance(first, Claim) and isinstance(second, Claim)
    return first, second


def stored(ledger: Ledger, row: int) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """The row as SQLAlchemy reads it, and as the database keeps it."""
    ignored = {"id", "target", "address"}
    columns = [c for c in deliveries.c if c.name not in ignored]
    with ledger.engine.connect() as conn:
        typed = conn.execute(sa.select(*columns).where(deliveries.c.id == row)).one()._asdict()
        names = ", ".join(f'"{c.name}"' for c in columns)
        kept = conn.exec_driver_sql(f"SELECT {names} FROM deliveries WHERE id = {row}").one()
    return typed, tuple(kept)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fields=results, now=instants)
def test_an_outcome_recorded_on_the_driver_is_the_one_sqlalchemy_records(
    ledger: Ledger, fields: dict[str, Any], now: datetime
) -> None:
    first, second = twins(ledger)
    with ledger.engine.begin() as conn:
        key, parameters = ledger._result_key(Result(first, **fields), now)
        conn.execute(_finish_statement(*key[1:]), parameters)  # as SQLAlchemy runs it
        statement, parameters = ledger._result_driven(Result(second, **fields), now)
        assert statement.count(conn, parameters) == 1
    assert stored(ledger, first.id) == stored(ledger, second.id)


def test_a_reply_holding_nul_is_recorded(ledger: Ledger) -> None:
    """A server may answer with a NUL byte; the message went out, and its outcome must be
    recorded on PostgreSQL too, or every message to that server would stay uncertain."""
    first, _ = twins(ledger)
    with ledger.engine.begin() as conn:
        sent = Result(first, "sent", 250, "250 ok\x00 queued", message_id="<a\x00b@example.org>")
        statement, parameters = ledger._result_driven(sent, START)
        assert statement.count(conn, parameters) == 1
    typed, _ = stored(ledger, first.id)
    assert (typed["state"], typed["last_text"]) == ("sent", "250 ok\ufffd queued")
    assert typed["message_id"] == "<a\ufffdb@example.org>"


def test_a_claim_that_is_not_the_runners_changes_nothing(ledger: Ledger) -> None:
    """The driver's row count is the one the sending loop decides on."""
    first, _ = twins(ledger)
    stranger = Claim(first.id, first.target, first.address, first.name, 1, runner="test:2:b")
    with ledger.engine.begin() as conn:
        statement, parameters = ledger._result_driven(Result(stranger, "sent", 250), START)
        assert statement.count(conn, parameters) == 0
    assert stored(ledger, first.id)[0]["state"] == "sending"


def test_a_driver_error_is_sqlalchemys_and_leaves_the_transaction_undone(ledger: Ledger) -> None:
    first, _ = twins(ledger)
    missing = sa.table("no_such_table", sa.column("x")).update().values(x=sa.bindparam("x"))
    broken = Driven(missing, ledger.engine.dialect)
    with pytest.raises(sa.exc.DBAPIError) as raised, ledger.engine.begin() as conn:
        statement, parameters = ledger._result_driven(Result(first, "sent", 250), START)
        statement.count(conn, parameters)
        broken.count(conn, {"x": 1})
    assert isinstance(raised.value.orig, conn.dialect.loaded_dbapi.Error)
    assert "no_such_table" in str(raised.value)
    assert stored(ledger, first.id)[0]["state"] == "sending"


def test_a_lost_database_makes_the_pool_reconnect_as_sqlalchemy_does(
    ledger: Ledger, url: str
) -> None:
    """After a PostgreSQL restart seen by a lane's statement, the ledger's next statement
    on another pooled connection runs: SQLAlchemy, seeing a disconnect, throws away every
    connection the pool kept from before it, not only the one that failed."""
    if not url.startswith("postgresql"):
        pytest.skip("a lost server connection is PostgreSQL's")
    first, _ = twins(ledger)
    # Two connections in the pool, their sessions about to end: one for the statement
    # below, one for the next.
    with ledger.engine.connect() as one, ledger.engine.connect() as two:
        one.execute(sa.select(1))
        two.execute(sa.select(1))
    admin = sa.create_engine(url)
    try:
        with admin.connect() as other:
            other.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
    finally:
        admin.dispose()
    with pytest.raises(sa.exc.DBAPIError) as raised, ledger.engine.begin() as conn:
        statement, parameters = ledger._result_driven(Result(first, "sent", 250), START)
        statement.count(conn, parameters)
    assert raised.value.connection_invalidated
    assert stored(ledger, first.id)[0]["state"] == "sending"


def test_a_held_lane_told_the_database_is_locked_says_so_in_one_line_and_goes_on(
    tmp_path: Any,
) -> None:
    """Another process holds SQLite's write lock past the wait: the lane's record fails as
    SQLAlchemy's error, told as the driver's reason in one line, and the lane's own
    connection records the outcome once the lock is free."""
    path = tmp_path / "distribute.db"
    opened = Ledger(f"sqlite:///{path}")
    try:
        step = make_step(opened, name="locked")
        opened.plan(step, planned("a@example.com"))
        assert opened.acquire(step, RUNNER) is None
        lane = opened.lane(step, RUNNER)
        held = lane._conn
        assert held is not None
        held.exec_driver_sql("PRAGMA busy_timeout=0")  # fail at once, not after 30 s
        held.commit()
        claim, _ = lane.advance(None, want=1)
        assert isinstance(claim, Claim)
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(sa.exc.OperationalError) as raised:
                lane.record(Result(claim, "sent", 250))
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert _reason(raised.value) == "the state database failed: database is locked"
        lane.record(Result(claim, "sent", 250))
        typed, _ = stored(opened, claim.id)
        assert typed["state"] == "sent"
        lane.close()
    finally:
        opened.close()


def test_a_statement_only_sqlalchemy_can_render_is_refused(ledger: Ledger) -> None:
    expanding = (
        deliveries.update()
        .where(deliveries.c.id.in_(sa.bindparam("rows", expanding=True)))
        .values(state="pending")
    )
    with pytest.raises(ValueError, match="not a statement for the driver"):
        Driven(expanding, ledger.engine.dialect)


def test_a_statement_sqlalchemy_completes_at_execution_is_refused(ledger: Ledger) -> None:
    """What SQLAlchemy adds as it runs a statement, the driver would not: a column's Python
    default (NULL instead), a value computed per execution (frozen at the first), a column
    read back converted (SQLite: a timestamp comes back as text)."""
    dialect = ledger.engine.dialect
    now = sa.bindparam("now")
    defaulted = deliveries.insert().values(  # name, list_name, attempts: Python defaults
        step_id=sa.bindparam("step"),
        target="t",
        address="a",
        state="pending",
        created_at=now,
        updated_at=now,
    )
    computed = deliveries.update().values(updated_at=sa.bindparam("at", callable_=START.now))
    refused = [defaulted, computed]
    if dialect.name == "sqlite":  # psycopg returns a timestamp as a datetime
        refused.append(
            deliveries.update().values(state="pending").returning(deliveries.c.updated_at)
        )
    for statement in refused:
        with pytest.raises(ValueError, match="not a statement for the driver"):
            Driven(statement, dialect)


def test_a_literal_the_statement_holds_is_converted_too(ledger: Ledger) -> None:
    """A value written into the statement (a timestamp: SQLite compares it as text) goes
    through its type's conversion as a parameter does."""
    first, _ = twins(ledger)
    later = START + timedelta(days=365 * 200)
    literal = (
        deliveries.update()
        .where(deliveries.c.id == sa.bindparam("row"), deliveries.c.updated_at < later)
        .values(last_text="seen")
    )
    with ledger.engine.begin() as conn:
        assert Driven(literal, ledger.engine.dialect).count(conn, {"row": first.id}) == 1
    assert stored(ledger, first.id)[0]["last_text"] == "seen"


def test_a_bind_name_sqlalchemy_escapes_gets_its_value(ledger: Ledger) -> None:
    """PostgreSQL's placeholders cannot hold every name (a dot, a percent sign, a
    parenthesis): SQLAlchemy renders another name, and the value must go under it."""
    first, _ = twins(ledger)
    odd = (
        deliveries.update()
        .where(deliveries.c.id == sa.bindparam("row.id"))
        .values(last_text=sa.bindparam("text (100%)"))
    )
    with ledger.engine.begin() as conn:
        changed = Driven(odd, ledger.engine.dialect).count(
            conn, {"row.id": first.id, "text (100%)": "kept"}
        )
    assert changed == 1
    assert stored(ledger, first.id)[0]["last_text"] == "kept"


def test_a_statement_returning_rows_is_not_counted(ledger: Ledger) -> None:
    """SQLite's row count of an UPDATE ... RETURNING is 0 until its rows are read: counted,
    a reservation would look empty while it took the rows."""
    first, _ = twins(ledger)
    with ledger.engine.begin() as conn:
        statement, parameters = ledger._result_driven(Result(first, "pending", 451), START)
        assert statement.count(conn, parameters) == 1
    ids = {"step": first_step(ledger, first), "runner": RUNNER, "now": START}
    with pytest.raises(ValueError, match="returns rows"), ledger.engine.begin() as conn:
        ledger._reserve_driven(1).count(conn, ids)
    assert stored(ledger, first.id)[0]["state"] == "pending"
    with ledger.engine.begin() as conn:
        assert [row[0] for row in ledger._reserve_driven(1).rows(conn, ids)] == [first.id]


def first_step(ledger: Ledger, claim: Claim) -> int:
    with ledger.engine.connect() as conn:
        step: int = conn.execute(
            sa.select(deliveries.c.step_id).where(deliveries.c.id == claim.id)
        ).scalar_one()
    return step


def test_a_missing_parameter_is_an_error_not_a_null(ledger: Ledger) -> None:
    first, _ = twins(ledger)
    statement, parameters = ledger._result_driven(Result(first, "sent", 250), START)
    del parameters["row"]
    with pytest.raises(KeyError, match="row"), ledger.engine.begin() as conn:
        statement.count(conn, parameters)


def test_sqlite_keeps_a_timestamp_as_sqlalchemy_writes_it(tmp_path: Any) -> None:
    """The format the ledger's older rows have, which its reads and comparisons expect."""
    opened = Ledger(f"sqlite:///{tmp_path / 'distribute.db'}")
    try:
        first, _ = twins(opened)
        when = datetime(2027, 3, 10, 7, 0, 5, 120, tzinfo=UTC)
        with opened.engine.begin() as conn:
            statement, parameters = opened._result_driven(Result(first, "sent", 250), when)
            statement.count(conn, parameters)
    finally:
        opened.close()
    with sqlite3.connect(tmp_path / "distribute.db") as raw:
        kept = raw.execute("SELECT sent_at FROM deliveries WHERE id = ?", (first.id,)).fetchone()
    assert kept == ("2027-03-10 07:00:05.000120",)


START = datetime(2027, 3, 10, 7, 0, tzinfo=UTC)
