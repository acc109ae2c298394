"""The PostgreSQL test database: the ledger's tests also run there when it is set."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from distribute.ledger import Ledger, metadata

POSTGRES_ENV = "DISTRIBUTE_TEST_POSTGRES_URL"


def emptied_postgres(what: str) -> Iterator[str]:
    """For a fixture to ``yield from``: the PostgreSQL URL, on a shared server, so with its
    tables dropped before and after; skips ``what`` when the URL is not set."""
    target = os.environ.get(POSTGRES_ENV)
    if not target:
        pytest.skip(f"set {POSTGRES_ENV} to run {what} on PostgreSQL")
    _empty(target)
    yield target
    _empty(target)


def _empty(url: str) -> None:
    scratch = Ledger(url)
    metadata.drop_all(scratch.engine)
    scratch.close()
