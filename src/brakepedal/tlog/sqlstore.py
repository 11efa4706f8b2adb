"""The log store on SQLite (a file, the embedded default) or PostgreSQL (production).

One class, :class:`SqlLogStore`, picks the database from its URL: ``sqlite:///path`` or
``postgresql://...`` (run through psycopg 3). Writers serialise on the tree head: SQLite
starts every write with ``BEGIN IMMEDIATE`` (one writer at a time, readers keep going under
WAL); PostgreSQL locks the ``log_meta`` row with ``SELECT ... FOR UPDATE``. SQLite runs with
``synchronous=FULL`` so that an append that returned survives a kill -9 or a power cut.

Tables are created here when absent (``brakepedal log``); the registry creates the same
tables, and its own beside them, through its Alembic migrations
(``brakepedal.registry.migrations``), which adopt a database made here. ``log_meta`` carries a
``schema_version``. A service that must write its own rows in the same transaction as an
append uses :meth:`SqlLogStore.write_transaction` and :meth:`SqlLogStore.append_locked`.
Level 0 of the tree (the leaf hashes) lives beside the entries in ``log_entries``;
``log_nodes`` holds levels 1 and up.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    create_engine,
    event,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, SQLAlchemyError

from brakepedal.errors import InputError, StorageError, TrustError
from brakepedal.tlog.merkle import NodeId, perfect_subtrees
from brakepedal.tlog.store import (
    check_checkpoint_size,
    check_entries,
    check_range,
    leaf_hashes_of,
    new_perfect_nodes,
)

__all__ = [
    "SCHEMA_VERSION",
    "SqlLogStore",
    "bulk_insert",
    "database_url",
    "normalise_store_url",
]

SCHEMA_VERSION = 1
_HEAD_ID = 1
# SQLite wants INTEGER PRIMARY KEY to make the key the rowid (no second index).
_Index = BigInteger().with_variant(Integer(), "sqlite")

_PG_TYPES = {BigInteger: "int8", Integer: "int4", LargeBinary: "bytea", Text: "text"}

_metadata = MetaData()
log_meta = Table(
    "log_meta",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("schema_version", Integer, nullable=False),
    Column("origin", Text, nullable=False),
    Column("tree_size", BigInteger, nullable=False),
)
log_entries = Table(
    "log_entries",
    _metadata,
    Column("idx", _Index, primary_key=True, autoincrement=False),
    Column("entry", LargeBinary, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
)
log_nodes = Table(
    "log_nodes",
    _metadata,
    Column("level", Integer, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    sqlite_with_rowid=False,
)
log_checkpoints = Table(
    "log_checkpoints",
    _metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("size", BigInteger, nullable=False),
    Column("note", LargeBinary, nullable=False),
)

# Built once: composing Core expressions per call costs more than the query on small reads.
_HEAD_SIZE = select(log_meta.c.tree_size).where(log_meta.c.id == _HEAD_ID)
_LOCK_HEAD_SIZE = _HEAD_SIZE.with_for_update()


def normalise_store_url(url: str) -> URL:
    """Parse a store URL; PostgreSQL always goes through psycopg 3."""
    try:
        parsed = make_url(url)
        _ = parsed.port  # parsed lazily: a port that is not a number raises here
    except (ArgumentError, ValueError) as e:
        # The text may hold a password, so it is not repeated.
        raise InputError("store.url_invalid", "the log store URL could not be parsed") from e
    if parsed.drivername in {"postgres", "postgresql", "postgresql+psycopg"}:
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername in {"sqlite", "sqlite+pysqlite"}:
        if parsed.query or "\x00" in (parsed.database or ""):
            raise InputError(
                "store.url_invalid",
                "a SQLite log store URL takes a file path only: no NUL, no '?' arguments",
            )
        if not parsed.database or parsed.database == ":memory:":
            raise InputError(
                "store.url_unsupported",
                "an in-memory SQLite log store is not durable; use MemoryLogStore instead",
            )
        return parsed
    raise InputError(
        "store.url_unsupported",
        f"log store URL scheme {parsed.drivername!r} is not sqlite:/// or postgresql://",
    )


def bulk_insert(conn: Connection, table: Table, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert ``rows`` (tuples in ``table``'s column order) inside ``conn``'s transaction:
    PostgreSQL's binary COPY, else the driver's executemany. Below Core on purpose: per-row
    dicts and bind processing cost more than the database spends on a row. A constraint
    violation raises as an INSERT's would, and the transaction rolls back."""
    if not rows:
        return
    names = ", ".join(column.name for column in table.columns)
    if conn.dialect.name != "postgresql":
        marks = ", ".join("?" for _ in table.columns)
        statement = f"INSERT INTO {table.name} ({names}) VALUES ({marks})"  # noqa: S608
        conn.exec_driver_sql(statement, list(rows))
        return
    # COPY is several times faster than multi-row INSERT on PostgreSQL.
    driver: Any = conn.connection.driver_connection
    with (
        driver.cursor() as cursor,
        cursor.copy(f"COPY {table.name} ({names}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types([_PG_TYPES[type(column.type)] for column in table.columns])
        for row in rows:
            copy.write_row(row)


def database_url(db: str) -> str:
    """A store URL from what a person types: a URL as it is, anything else a SQLite path."""
    if "://" in db:
        return db
    if any(character in db for character in "?#%\x00"):
        # In a URL these would start a query or fragment, or escape: not the file meant.
        raise InputError(
            "store.path_invalid", f"SQLite path {db!r:.80} contains one of ? # % or NUL"
        )
    return f"sqlite:///{db}"


def _error_reason(error: Exception) -> str:
    if isinstance(error, IntegrityError | psycopg.errors.IntegrityError):
        return "store.conflict"
    if isinstance(error, OperationalError | psycopg.OperationalError):
        return "store.unreachable"
    return "store.failed"


def _log_missing(url: str) -> InputError:
    return InputError(
        "store.log_missing", f"there is no log in {url}; create one first (give its origin)"
    )


def _sqlite_engine(url: URL) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN, not the driver's implicit one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front, so two writers never both read size n.
        writing = conn.get_execution_options().get("brakepedal_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")

    return engine


class SqlLogStore:
    """A :class:`~brakepedal.tlog.store.LogStore` in SQLite or PostgreSQL."""

    def __init__(self, url: str, *, origin: str | None = None) -> None:
        """Open the log at ``url``; with ``origin``, create it there if it is absent.

        Without ``origin`` the log must exist already; with it, an existing log must have
        that origin (``store.origin_mismatch``), so a typo never opens or starts another log.
        """
        parsed = normalise_store_url(url)
        self._url = parsed.render_as_string(hide_password=True)
        self._postgres = parsed.get_backend_name() == "postgresql"
        try:
            self._engine = create_engine(parsed) if self._postgres else _sqlite_engine(parsed)
        except (ArgumentError, ValueError, TypeError) as e:
            raise InputError("store.url_invalid", f"cannot use store URL {self._url}") from e
        try:
            self._prepare_tables(create=origin is not None)
            self._origin = self._init_head(origin)
        except BaseException:
            self._engine.dispose()  # no half-open store keeps connections alive
            raise

    def _prepare_tables(self, *, create: bool) -> None:
        with self._errors("open the log tables"):
            if create:
                _metadata.create_all(self._engine)
                return
            exists = inspect(self._engine).has_table(log_meta.name)
        if not exists:
            raise _log_missing(self._url)

    @classmethod
    def open(cls, url: str, *, create_origin: str | None = None) -> SqlLogStore:
        """The existing log at ``url``, or a new one for ``create_origin`` if none is there."""
        return cls(url, origin=create_origin)

    @property
    def origin(self) -> str:
        return self._origin

    @property
    def url(self) -> str:
        """The database URL with any password replaced by ``***``."""
        return self._url

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except (SQLAlchemyError, psycopg.Error) as e:
            # COPY runs on the driver connection, below SQLAlchemy's error translation.
            cause = getattr(e, "orig", None) or e
            raise StorageError(
                _error_reason(e), f"could not {action} in log store {self._url}: {cause}"
            ) from e

    @contextmanager
    def _transaction(self, action: str, *, write: bool = False) -> Iterator[Connection]:
        with self._errors(action), self._engine.connect() as conn:
            conn.execution_options(brakepedal_write=write)
            with conn.begin():
                yield conn

    def _init_head(self, origin: str | None) -> str:
        with self._transaction("initialise the tree head", write=True) as conn:
            stored = conn.execute(
                select(log_meta.c.origin, log_meta.c.schema_version).where(
                    log_meta.c.id == _HEAD_ID
                )
            ).one_or_none()
            if stored is None:
                if origin is None:
                    raise _log_missing(self._url)
                conn.execute(
                    insert(log_meta).values(
                        id=_HEAD_ID, schema_version=SCHEMA_VERSION, origin=origin, tree_size=0
                    )
                )
                return origin
        if stored.schema_version != SCHEMA_VERSION:
            raise StorageError(
                "store.schema_version",
                f"log store {self._url} has schema version {stored.schema_version}, "
                f"this code reads version {SCHEMA_VERSION}",
            )
        if origin is not None and stored.origin != origin:
            raise InputError(
                "store.origin_mismatch",
                f"log store {self._url} holds the log {stored.origin!r}, not {origin!r}",
            )
        return str(stored.origin)

    def _head_size(self, conn: Connection, *, lock: bool = False) -> int:
        query = _LOCK_HEAD_SIZE if lock and self._postgres else _HEAD_SIZE
        size = conn.execute(query).scalar_one_or_none()
        if size is None:
            raise TrustError("store.head_missing", f"log store {self._url} has no tree head row")
        return int(size)

    def size(self) -> int:
        with self._transaction("read the tree size") as conn:
            return self._head_size(conn)

    def append(self, entries: Sequence[bytes]) -> int:
        check_entries(entries)
        # Leaf hashing is most of the work; done before the write lock is taken.
        leaf_hashes = leaf_hashes_of(entries)
        with self.write_transaction("append entries") as conn:
            return self.append_locked(conn, entries, leaf_hashes)

    @property
    def engine(self) -> Engine:
        """The engine, for a service that keeps its own tables beside the log's."""
        return self._engine

    @contextmanager
    def write_transaction(self, action: str) -> Iterator[Connection]:
        """A write transaction holding the tree head lock from its first statement.

        On SQLite it starts with ``BEGIN IMMEDIATE``; on PostgreSQL it locks the head row at
        once. A service that appends entries and writes its own rows in one transaction
        (so that a kill between the two leaves neither) uses this with :meth:`append_locked`.
        """
        with self._transaction(action, write=True) as conn:
            self._head_size(conn, lock=True)
            yield conn

    def append_locked(
        self, conn: Connection, entries: Sequence[bytes], leaf_hashes: Sequence[bytes] | None = None
    ) -> int:
        """Append inside a :meth:`write_transaction`; the index of the first new entry."""
        check_entries(entries)
        if leaf_hashes is None:
            leaf_hashes = leaf_hashes_of(entries)
        first = self._head_size(conn, lock=True)
        if not entries:
            return first
        frontier = self._select_nodes(conn, perfect_subtrees(0, first))
        levels = new_perfect_nodes(first, frontier, list(leaf_hashes))
        entry_rows = [
            (first + i, entry, digest)
            for i, (entry, digest) in enumerate(zip(entries, leaf_hashes, strict=True))
        ]
        bulk_insert(conn, log_entries, entry_rows)
        node_rows = [
            (new.level, new.first + i, digest)
            for new in levels[1:]
            for i, digest in enumerate(new.hashes)
        ]
        bulk_insert(conn, log_nodes, node_rows)
        conn.execute(
            update(log_meta).where(log_meta.c.id == _HEAD_ID).values(tree_size=first + len(entries))
        )
        return first

    def _select_nodes(self, conn: Connection, ids: Sequence[NodeId]) -> list[bytes]:
        wanted = sorted(set(ids))
        if not wanted:
            return []
        # Driver SQL with one (level, idx) probe per node: building the same query as Core
        # expressions costs milliseconds per proof, and row-value IN makes SQLite scan.
        # Only placeholders are interpolated; every value travels as a bound parameter.
        mark = "%s" if self._postgres else "?"
        leaves = [node.index for node in wanted if node.level == 0]
        inner = [node for node in wanted if node.level > 0]
        parts, params = [], []
        if leaves:
            marks = ", ".join(mark for _ in leaves)
            parts.append(f"SELECT 0, idx, leaf_hash FROM log_entries WHERE idx IN ({marks})")  # noqa: S608
            params.extend(leaves)
        if inner:
            probes = " OR ".join(f"(level = {mark} AND idx = {mark})" for _ in inner)
            parts.append(f"SELECT level, idx, hash FROM log_nodes WHERE {probes}")  # noqa: S608
            params.extend(value for node in inner for value in (node.level, node.index))
        rows = conn.exec_driver_sql(" UNION ALL ".join(parts), tuple(params))
        found = {(int(level), int(idx)): bytes(digest) for level, idx, digest in rows}
        missing = [node for node in wanted if (node.level, node.index) not in found]
        if missing:
            raise TrustError(
                "store.node_missing",
                f"log store {self._url} lacks {len(missing)} node(s) of its own tree, first "
                f"level {missing[0].level} index {missing[0].index}",
            )
        return [found[(node.level, node.index)] for node in ids]

    def read_nodes(self, ids: Sequence[NodeId]) -> list[bytes]:
        with self._transaction("read tree nodes") as conn:
            size = self._head_size(conn)
            for node in ids:
                if node.level < 0 or node.index < 0 or node.end > size:
                    raise InputError(
                        "log.node_out_of_range",
                        f"node at level {node.level} index {node.index} is not complete in "
                        f"the log of size {size} in {self._url}",
                    )
            return self._select_nodes(conn, ids)

    def read_level(self, level: int, start: int, end: int) -> list[bytes]:
        with self._transaction("read a tree level") as conn:
            check_range(start << level, end << level, self._head_size(conn), f"level {level} node")
            if level == 0:
                column, index = log_entries.c.leaf_hash, log_entries.c.idx
                query = select(column)
            else:
                column, index = log_nodes.c.hash, log_nodes.c.idx
                query = select(column).where(log_nodes.c.level == level)
            rows = conn.execute(query.where(index >= start, index < end).order_by(index)).scalars()
            hashes = [bytes(digest) for digest in rows]
        self._require_count(hashes, end - start, f"level {level} nodes [{start}, {end})")
        return hashes

    def read_entries(self, start: int, end: int) -> list[bytes]:
        with self._transaction("read entries") as conn:
            check_range(start, end, self._head_size(conn), "entry")
            rows = conn.execute(
                select(log_entries.c.entry)
                .where(log_entries.c.idx >= start, log_entries.c.idx < end)
                .order_by(log_entries.c.idx)
            ).scalars()
            entries = [bytes(entry) for entry in rows]
        self._require_count(entries, end - start, f"entries [{start}, {end})")
        return entries

    def _require_count(self, rows: list[bytes], expected: int, what: str) -> None:
        if len(rows) != expected:
            raise TrustError(
                "store.rows_missing",
                f"log store {self._url} returned {len(rows)} of its {expected} {what}",
            )

    def add_checkpoint(self, size: int, note: bytes) -> None:
        with self._transaction("store a checkpoint", write=True) as conn:
            tree_size = self._head_size(conn, lock=True)
            check_checkpoint_size(size, tree_size, self._latest(conn))
            conn.execute(insert(log_checkpoints).values(size=size, note=bytes(note)))

    def _latest(self, conn: Connection) -> tuple[int, bytes] | None:
        row = conn.execute(
            select(log_checkpoints.c.size, log_checkpoints.c.note)
            .order_by(log_checkpoints.c.seq.desc())
            .limit(1)
        ).one_or_none()
        return None if row is None else (int(row.size), bytes(row.note))

    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        with self._transaction("read the latest checkpoint") as conn:
            return self._latest(conn)

    def checkpoints(self) -> list[tuple[int, bytes]]:
        with self._transaction("read checkpoints") as conn:
            rows = conn.execute(
                select(log_checkpoints.c.size, log_checkpoints.c.note).order_by(
                    log_checkpoints.c.seq
                )
            )
            return [(int(row.size), bytes(row.note)) for row in rows]

    def close(self) -> None:
        self._engine.dispose()
