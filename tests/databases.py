"""The PostgreSQL test database: the ledger's tests also run there when it is set."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from distribute.ledger import Ledger, metadata

POSTGRES_ENV = "DISTRIBUTE_TEST_POSTGRES_URL"


def postgres_url(what: str) -> str:
    """The PostgreSQL test database's URL; skips ``what`` when it is not set."""
    target = os.environ.get(POSTGRES_ENV)
    if not target:
        pytest.skip(f"set {POSTGRES_ENV} to run {what} on PostgreSQL")
    return target


def emptied_postgres(what: str) -> Iterator[str]:
    """For a fixture to ``yield from``: the PostgreSQL URL, on a shared server, so with its
    ledger's tables dropped before and after; skips ``what`` when the URL is not set."""
    target = postgres_url(what)
    empty_ledger(target)
    yield target
    empty_ledger(target)


def empty_ledger(url: str) -> None:
    """Drop the ledger's tables: start from nothing, leave nothing behind."""
    scratch = Ledger(url)
    metadata.drop_all(scratch.engine)
    scratch.close()
