"""The node's hand-in store: what a training framework and the gate hand to the agent.

A training framework hook hands in weight-snapshot commitments (:func:`commit_snapshot`, or
``brakepedal agent snapshot`` for frameworks not written in Python) and the gate hands in its
events (``brakepedal gate --handins``); the agent asks :meth:`HandIns.between` for those of
each report window and puts them into the window's usage reports
(:func:`brakepedal.wire.report.build_report`).

One SQLite file in WAL mode with ``synchronous=FULL``, like :mod:`brakepedal.agent.spool`:
an ``add_*`` call returns once its row is committed to disk, and several processes (the
framework's ranks, the gate, the agent) may use the file at once.

**No consumption state.** Reading does not mark anything taken: :meth:`HandIns.between` is a
pure function of the file's rows and the window, so a report rebuilt after the agent crashed
carries exactly the items the lost one carried. Adding is idempotent: a snapshot is one row per
(job, step, digest, parent), the first hand-in's time kept, so every rank of a job on the node
may commit the same snapshot; an event is one row per value.

**Gate events go to every device.** The gate runs on the node, outside any device: it does not
know which devices a job it refused would have used (nor, for a job it started, which ones the
job's processes will open), so :meth:`HandIns.between` gives the node's gate events to every
device's report for the window. A refusal thus appears in the reports of all the node's
devices, which is what an auditor wants: the node declined work while a pause was in force.

**Bounded.** A report holds at most :data:`~brakepedal.wire.report.MAX_SNAPSHOTS` snapshots and
:data:`~brakepedal.wire.report.MAX_EVENTS` events, and a report window is at most a day. So a
snapshot is refused (``handin.too_many_snapshots``) when its job already has that many within a
day either side of its time, and an event likewise (``handin.too_many_events``, counting the
node's events): then no window of a day or less can hold more than a report may carry, whatever
the order of hand-ins, and reporting is never blocked by a flood of hand-ins.

Reasons: ``handin.unavailable``, ``handin.write_failed``, ``handin.read_failed``,
``handin.corrupt``, ``handin.overfull`` (:class:`StorageError`); ``handin.too_many_snapshots``,
``handin.too_many_events``, ``handin.window_invalid``, ``handin.not_a_snapshot``,
``handin.not_an_event``, ``handin.device_invalid``, ``handin.job_invalid``,
``handin.digest_invalid``, ``handin.file_unreadable`` (:class:`InputError`); the items' own
``report.*`` (:mod:`brakepedal.wire.report_items`).
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from brakepedal.accounting.usage import MAX_WINDOW_SECONDS
from brakepedal.errors import InputError, StorageError
from brakepedal.model.types import (
    DeviceId,
    JobId,
    OrderId,
    epoch_micros,
    from_epoch_micros,
)
from brakepedal.wire.report import (
    MAX_EVENTS,
    MAX_SNAPSHOTS,
    GateEvent,
    GateEventKind,
    SnapshotCommitment,
    sort_events,
    sort_snapshots,
)

__all__ = ["HandIns", "commit_snapshot", "snapshot_digest"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    job TEXT NOT NULL,
    step INTEGER NOT NULL,
    digest TEXT NOT NULL,
    parent TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    PRIMARY KEY (job, step, digest, parent)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS snapshots_by_time ON snapshots (job, at_us);
CREATE TABLE IF NOT EXISTS events (
    at_us INTEGER NOT NULL,
    kind TEXT NOT NULL,
    job TEXT NOT NULL,
    order_id TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (at_us, kind, job, order_id, detail)
) WITHOUT ROWID;
"""
_SNAPSHOTS_NEAR = "SELECT COUNT(*) FROM snapshots WHERE job = ? AND at_us > ? AND at_us < ?"
_EVENTS_NEAR = "SELECT COUNT(*) FROM events WHERE at_us > ? AND at_us < ?"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
#: Stands for None in a key column (identifiers and digests are never empty).
_NONE = ""
_MICRO = timedelta(microseconds=1)
#: The longest report window, and so the span in which the bounds on hand-ins hold.
_LONGEST_WINDOW = timedelta(seconds=MAX_WINDOW_SECONDS)


class HandIns:
    """The node-local store of snapshot commitments and gate events."""

    def __init__(self, path: Path, *, busy_timeout: float = 30.0) -> None:
        """Open (creating if needed) the store at ``path``; the directory must exist.

        ``busy_timeout`` is how many seconds a call waits for another process's write to
        finish; the gate passes a short one, so that recording never delays the brake long.
        """
        try:
            # The agent opens it on one thread and reads it on its collector thread.
            self._db = sqlite3.connect(
                path, isolation_level=None, timeout=busy_timeout, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as e:
            raise StorageError("handin.unavailable", f"hand-in store {path}: {e}") from e

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _transaction(
        self, mode: str = "IMMEDIATE", reason: str = "handin.write_failed"
    ) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute(f"BEGIN {mode}")
            yield self._db
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StorageError(reason, f"hand-in store: {e}") from e
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def add_snapshot(self, commitment: SnapshotCommitment) -> None:
        """Store a snapshot commitment durably; a second hand-in of it is a no-op.

        Raises:
            InputError: ``handin.too_many_snapshots`` when the job already has
                :data:`MAX_SNAPSHOTS` within a day of ``commitment.at``.
        """
        if not isinstance(commitment, SnapshotCommitment):
            raise InputError("handin.not_a_snapshot", "expected a SnapshotCommitment")
        key = (commitment.job, commitment.step, commitment.digest, commitment.parent or _NONE)
        at = epoch_micros(commitment.at)
        with self._transaction() as db:
            if db.execute(
                "SELECT 1 FROM snapshots WHERE job = ? AND step = ? AND digest = ? AND parent = ?",
                key,
            ).fetchone():
                return
            near = _count_near(db, _SNAPSHOTS_NEAR, at, commitment.job)
            if near >= MAX_SNAPSHOTS:
                raise InputError(
                    "handin.too_many_snapshots",
                    f"job {commitment.job} already has {near} snapshot commitments within a day"
                    f" of {commitment.at.isoformat()}; a report carries at most {MAX_SNAPSHOTS}",
                )
            db.execute(
                "INSERT INTO snapshots (job, step, digest, parent, at_us) VALUES (?, ?, ?, ?, ?)",
                (*key, at),
            )

    def add_event(self, event: GateEvent) -> None:
        """Store a gate event durably; the same event again is a no-op.

        Raises:
            InputError: ``handin.too_many_events`` when the node already has
                :data:`MAX_EVENTS` within a day of ``event.at``.
        """
        if not isinstance(event, GateEvent):
            raise InputError("handin.not_an_event", "expected a GateEvent")
        at = epoch_micros(event.at)
        row = (at, event.kind.value, event.job or _NONE, event.order or _NONE, event.detail)
        with self._transaction() as db:
            if db.execute(
                "SELECT 1 FROM events WHERE at_us = ? AND kind = ? AND job = ? AND order_id = ?"
                " AND detail = ?",
                row,
            ).fetchone():
                return
            near = _count_near(db, _EVENTS_NEAR, at)
            if near >= MAX_EVENTS:
                raise InputError(
                    "handin.too_many_events",
                    f"the node already has {near} gate events within a day of"
                    f" {event.at.isoformat()}; a report carries at most {MAX_EVENTS}",
                )
            db.execute(
                "INSERT INTO events (at_us, kind, job, order_id, detail) VALUES (?, ?, ?, ?, ?)",
                row,
            )

    def between(
        self, device: DeviceId, job: JobId | None, start: datetime, end: datetime
    ) -> tuple[tuple[SnapshotCommitment, ...], tuple[GateEvent, ...]]:
        """The hand-ins for ``device``'s report over ``[start, end)``, in report order.

        Snapshots: those of ``job`` handed in within the window (none when ``job`` is None,
        a window no job was attributed to). Events: every gate event of the node within the
        window, whatever ``device`` is (the module docstring says why). Reads only, so the
        same call always gives the same answer for a window whose hand-ins are in.

        Raises:
            InputError: ``handin.window_invalid`` unless ``start < end`` within a day.
            StorageError: ``handin.corrupt`` for a row that is no valid item,
                ``handin.overfull`` for more items than a report may hold (rows written past
                this class's bounds).
        """
        if not isinstance(device, DeviceId):
            raise InputError("handin.device_invalid", f"expected a DeviceId, got {device!r:.40}")
        if not isinstance(job, JobId | None):
            raise InputError("handin.job_invalid", f"expected a JobId or None, got {job!r:.40}")
        low, high = epoch_micros(start), epoch_micros(end)
        if not 0 < high - low <= _LONGEST_WINDOW // _MICRO:
            raise InputError(
                "handin.window_invalid", "a window ends after it starts, at most a day later"
            )
        with self._transaction("DEFERRED", "handin.read_failed") as db:
            snapshot_rows = (
                []
                if job is None
                else db.execute(
                    "SELECT job, step, digest, parent, at_us FROM snapshots"
                    " WHERE job = ? AND at_us >= ? AND at_us < ? LIMIT ?",
                    (job, low, high, MAX_SNAPSHOTS + 1),
                ).fetchall()
            )
            event_rows = db.execute(
                "SELECT at_us, kind, job, order_id, detail FROM events"
                " WHERE at_us >= ? AND at_us < ? LIMIT ?",
                (low, high, MAX_EVENTS + 1),
            ).fetchall()
        if len(snapshot_rows) > MAX_SNAPSHOTS or len(event_rows) > MAX_EVENTS:
            raise StorageError(
                "handin.overfull",
                f"more hand-ins in [{start.isoformat()}, {end.isoformat()}) than a report holds",
            )
        try:
            snapshots = [_snapshot(row) for row in snapshot_rows]
            events = [_event(row) for row in event_rows]
        except (InputError, ValueError, TypeError, OverflowError) as e:
            raise StorageError("handin.corrupt", f"hand-in store holds an invalid row: {e}") from e
        return sort_snapshots(snapshots), sort_events(events)


def _count_near(db: sqlite3.Connection, query: str, at: int, *values: str) -> int:
    """Rows strictly less than a day from ``at``: a window of a day or less that holds ``at``
    and another row's time holds two times less than a day apart."""
    span = _LONGEST_WINDOW // _MICRO
    return int(db.execute(query, (*values, at - span, at + span)).fetchone()[0])


# The constructors check every value read back: a row is trusted no more than a hand-in.
def _snapshot(row: tuple[Any, ...]) -> SnapshotCommitment:
    job, step, digest, parent, at = row
    return SnapshotCommitment(
        job=JobId(job),
        step=step,
        digest=digest,
        at=from_epoch_micros(at),
        parent=None if parent == _NONE else parent,
    )


def _event(row: tuple[Any, ...]) -> GateEvent:
    at, kind, job, order, detail = row
    return GateEvent(
        at=from_epoch_micros(at),
        job=None if job == _NONE else JobId(job),
        kind=GateEventKind(kind),
        order=None if order == _NONE else OrderId(order),
        detail=detail,
    )


# ------------------------------------------------------------------- for frameworks


def snapshot_digest(path: Path) -> str:
    """SHA-256 (64 lowercase hex) of the file at ``path``, read in a stream.

    Hash the snapshot's manifest (a file naming every shard with its own digest) rather than
    a directory: this hashes exactly one regular file.
    """
    try:
        with Path(path).open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as e:
        raise InputError(
            "handin.file_unreadable", f"cannot hash snapshot {str(path)!r}: {e}"
        ) from e


def commit_snapshot(
    handins_path: Path | str,
    job: JobId | str,
    step: int,
    digest_or_path: str | os.PathLike[str],
    *,
    parent: str | None = None,
    at: datetime | None = None,
) -> SnapshotCommitment:
    """Hand in a commitment to the weights of ``job`` at ``step``; returns what was stored.

    ``digest_or_path`` is either the snapshot's SHA-256 as 64 lowercase hex (a ``str``) or a
    path (:class:`~pathlib.Path` or another ``os.PathLike``) to the snapshot's manifest or
    single file, which is hashed here; a ``str`` is never taken for a path. ``parent`` is the
    digest of the snapshot this run started from, when it continues another run's lineage.
    ``at`` defaults to now. Call it after the snapshot is durably written, from one rank or
    all (the same commitment is stored once)::

        from brakepedal.agent.handin import commit_snapshot
        commit_snapshot("/var/lib/brakepedal/handins.db", os.environ["BRAKEPEDAL_JOB"],
                        step, Path(checkpoint_dir) / "manifest.json")
    """
    if isinstance(digest_or_path, os.PathLike):
        digest = snapshot_digest(Path(digest_or_path))
    elif isinstance(digest_or_path, str) and _SHA256_HEX.fullmatch(digest_or_path):
        digest = digest_or_path
    else:
        raise InputError(
            "handin.digest_invalid",
            "give the snapshot's SHA-256 as 64 lowercase hex, or a pathlib.Path to hash a file",
        )
    commitment = SnapshotCommitment(
        job=JobId(job),
        step=step,
        digest=digest,
        at=datetime.now(UTC) if at is None else at,
        parent=parent,
    )
    with HandIns(Path(handins_path)) as store:
        store.add_snapshot(commitment)
    return commitment
