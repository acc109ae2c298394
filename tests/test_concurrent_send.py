"""Two real ``distribute send --live`` processes started at once on a fresh ledger.

Each trial gets a database of its own that neither process has seen (a new SQLite file, or
a new PostgreSQL schema), so the schema creation races as well as the step: one process
sends the step, the other either says who is sending it or, if it came after the first
finished, finds nothing left. Nobody gets a message twice and no process dies with a
traceback. Trials run a few at a time to keep the test short.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from databases import postgres_url
from smtp_double import Faults, SmtpServer
from test_send import write_campaign, write_config

TRIALS = 20
RECIPIENTS = 4


@dataclass
class Trial:
    pids: list[int]
    codes: list[int]
    stderr: list[str]
    addresses: set[str]


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for SQLite (a file per workspace), else a PostgreSQL URL with ``{schema}``."""
    if request.param == "sqlite":
        yield None
        return
    target = postgres_url("the concurrency test")
    engine = sa.create_engine(target)
    schemas = [f"race_{n}" for n in range(TRIALS)]

    def drop() -> None:
        with engine.begin() as conn:
            for schema in schemas:
                conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))

    drop()
    with engine.begin() as conn:
        for schema in schemas:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in target else "?"
    # Each trial's processes see only their own, empty schema: a fresh database.
    yield f"{target}{separator}options={quote('-csearch_path=')}{{schema}}"
    drop()
    engine.dispose()


def start_pair(root: Path, n: int, port: int, database: str | None) -> Trial:
    workspace = root / f"trial-{n}"
    workspace.mkdir()
    write_config(workspace, port, connections=1)
    campaign = write_campaign(workspace, RECIPIENTS)
    # Addresses of their own per trial, so the server's record tells the trials apart.
    desk = workspace / "recipients" / "desk.csv"
    desk.write_text(desk.read_text("utf-8").replace("@example.com", f"@t{n}.example.com"))
    if database is not None:
        with (workspace / "distribute.toml").open("a", encoding="utf-8") as config:
            config.write(f'[state]\nurl = "{database.format(schema=f"race_{n}")}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTRIBUTE_")}
    command = [sys.executable, "-m", "distribute", "send", str(campaign), "--live"]
    processes = [
        subprocess.Popen(
            command, cwd=workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    stderr = [process.communicate(timeout=300)[1].decode() for process in processes]
    return Trial(
        [p.pid for p in processes],
        [p.returncode for p in processes],
        stderr,
        {f"j{k:05d}@t{n}.example.com" for k in range(RECIPIENTS)},
    )


@pytest.mark.slow
def test_two_live_sends_at_once(tmp_path: Path, database: str | None) -> None:
    # Each message takes a while, so the first process is still sending when the second
    # one, started at the same moment, reaches the step.
    with SmtpServer(Faults(latency=0.15)) as server, ThreadPoolExecutor(4) as pool:
        trials = list(
            pool.map(
                lambda n: start_pair(tmp_path, n, server.port, database),
                range(TRIALS),
            )
        )
        received = server.handler.per_recipient()
    host = socket.gethostname()
    expected = Counter({address: 1 for trial in trials for address in trial.addresses})
    assert received == expected  # everyone once: no duplicate, nobody forgotten
    losers = 0
    for trial in trials:
        for text in trial.stderr:
            assert "Traceback" not in text, text
        assert sorted(trial.codes) in ([0, 0], [0, 1]), trial
        if trial.codes != [0, 0]:
            losers += 1
            loser = trial.codes.index(1)
            winner = trial.pids[1 - loser]
            assert trial.stderr[loser] == (
                f"Error: step desk is being sent by PID {winner} on {host} (campaign launch); "
                "wait for it to finish (distribute status shows how far it got)\n"
            )
    # The race happened: in many trials both processes reached the step at once (15 of 20
    # on a loaded two-core machine; a quarter leaves room for slower ones).
    assert losers >= TRIALS // 4, [trial.codes for trial in trials]
