"""Shared fixtures: real SQLite files, a fresh schema on the real PostgreSQL server, log stores.

PostgreSQL tests need the server on 127.0.0.1:5432 (trust auth, user postgres, database
``test``). When it is unreachable they FAIL, so that CI cannot pass by silently testing less;
set ``BRAKEPEDAL_SKIP_POSTGRES=1`` to skip them instead on a machine without the server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from brakepedal.tlog.sqlstore import SqlLogStore
from brakepedal.tlog.store import LogStore, MemoryLogStore

POSTGRES_SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
LOG_ORIGIN = "brakepedal.test/log"

#: Opens a store on the fixture's database; every call is a new connection to the same log.
OpenLogStore = Callable[[], LogStore]

#: Environment variables that GNU readline sets in the C environment when it is imported.
TERMINAL_SIZE = ("COLUMNS", "LINES")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist controller: tell each worker the terminal size this process was given.

    pytest imports pdb and so readline, whose start-up ``setenv``s COLUMNS=80 and LINES=24 in
    the C environment (not in ``os.environ``) when they are unset; the workers inherit them.
    A worker would then fix the width of the CLI's rich consoles at 80 columns when their
    modules are imported, while a run without xdist leaves it to be read at print time.
    """
    node.workerinput["terminal_size"] = {name: os.environ.get(name) for name in TERMINAL_SIZE}


def pytest_configure(config: pytest.Config) -> None:
    """pytest-xdist worker: the terminal size variables as the controller had them."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is None:
        return
    for name, value in workerinput.get("terminal_size", {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite database file in the test's own directory."""
    return f"sqlite:///{tmp_path / 'log.sqlite3'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema in database ``test``, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex}"
    engine = create_engine(POSTGRES_SERVER_URL)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except OperationalError as e:
        engine.dispose()
        message = (
            f"PostgreSQL is not reachable at {POSTGRES_SERVER_URL} ({e.orig}); start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` or set "
            "BRAKEPEDAL_SKIP_POSTGRES=1 to skip the PostgreSQL tests"
        )
        if os.environ.get("BRAKEPEDAL_SKIP_POSTGRES") == "1":
            pytest.skip(message)
        pytest.fail(message)
    try:
        yield f"{POSTGRES_SERVER_URL}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def log_backend(request: pytest.FixtureRequest) -> str:
    """Which store a parametrised test runs against."""
    backend: str = request.param
    return backend


@pytest.fixture
def open_log_store(request: pytest.FixtureRequest, log_backend: str) -> Iterator[OpenLogStore]:
    """Opens (and at teardown closes) stores of ``log_backend`` on one database.

    The memory store has no database to reopen, so every call returns the same instance.
    """
    opened: list[LogStore] = []
    memory = MemoryLogStore(LOG_ORIGIN)
    url = "" if log_backend == "memory" else request.getfixturevalue(f"{log_backend}_url")

    def open_store() -> LogStore:
        store: LogStore = memory if not url else SqlLogStore(url, origin=LOG_ORIGIN)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def log_store(open_log_store: OpenLogStore) -> LogStore:
    """A fresh, empty log store: in memory, in a SQLite file, or in PostgreSQL."""
    return open_log_store()
