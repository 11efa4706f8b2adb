"""The agent's durable spool: a report counts as produced only once it is on disk.

One SQLite file in WAL mode with ``synchronous=FULL``: :meth:`Spool.append` returns only after
the report's row is committed, so a report the agent acknowledged survives ``kill -9`` and a
power cut. Delivery state lives in the same row: :meth:`Spool.due` lists what to send,
:meth:`Spool.delivered` and :meth:`Spool.failed` record the outcome, and :class:`RetryPolicy`
spaces retries with capped exponential backoff and full jitter so that a thousand agents coming
back after a registry outage do not arrive in one wave.

Exactly once: rows are keyed by (device, sequence). Appending the same report again is a
no-op; appending a *different* report under a used key is refused (``spool.conflict``), since a
device must never sign two reports with one sequence number. The registry is idempotent on the
same key, so re-sending after a crash between send and :meth:`Spool.delivered` counts once.

Minute records: :meth:`Spool.append` stores a report's minute records (canonical bytes, in
window order) in the same transaction as the report, so a report is never on disk without the
records an auditor may challenge (:meth:`Spool.minutes` answers the challenge), and with the
window's end (:meth:`Spool.head`), where the device's next window may start at the earliest.
Files written before these existed open unchanged: the ``minutes`` table is created if missing
and the ``window_end_us`` column added if missing; their reports have no records and no end.

Time is an argument; the spool never reads the clock.

Reasons: ``spool.unavailable``, ``spool.write_failed`` (:class:`StorageError`),
``spool.conflict`` (:class:`TrustError`), ``spool.sequence_invalid``, ``spool.unknown_report``,
``spool.retry_invalid`` (:class:`InputError`).
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from brakepedal.errors import InputError, StorageError, TrustError
from brakepedal.model.types import DeviceId, epoch_micros, from_epoch_micros, utc_datetime

__all__ = ["ChainHead", "RetryPolicy", "Spool", "SpooledReport"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    device TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    digest TEXT NOT NULL,
    envelope BLOB NOT NULL,
    produced_us INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_us INTEGER NOT NULL,
    delivered_us INTEGER,
    window_end_us INTEGER,
    PRIMARY KEY (device, sequence)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reports_due ON reports (delivered_us, next_attempt_us);
CREATE TABLE IF NOT EXISTS minutes (
    device TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    minute INTEGER NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (device, sequence, minute)
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class ChainHead:
    """A device's last spooled report: where its chain and its next window resume.

    ``window_end`` is None for a report spooled without one (files from before it was kept);
    ``envelope`` is the report as signed, so the agent can check it resumes under the same key.
    """

    sequence: int
    digest: str
    envelope: bytes
    window_end: datetime | None


@dataclass(frozen=True, slots=True)
class SpooledReport:
    """One report waiting in (or delivered from) the spool."""

    device: DeviceId
    sequence: int
    digest: str
    envelope: bytes
    attempts: int


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter (delay uniform in [0, min(cap, base·2^n)])."""

    base: timedelta = timedelta(seconds=1)
    cap: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if not timedelta(0) < self.base <= self.cap:
            raise InputError("spool.retry_invalid", "retry base must be positive and <= cap")

    def delay(self, attempts: int, rng: random.Random) -> timedelta:
        """How long to wait after the ``attempts``-th failure."""
        ceiling = min(self.cap, self.base * (2 ** min(max(attempts - 1, 0), 30)))
        return timedelta(seconds=rng.uniform(0.0, ceiling.total_seconds()))


class Spool:
    """The on-disk queue of signed reports for one agent."""

    def __init__(self, path: Path) -> None:
        try:
            self._db = sqlite3.connect(
                path, isolation_level=None, timeout=30, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._upgrade()
        except sqlite3.Error as e:
            raise StorageError("spool.unavailable", f"spool {path}: {e}") from e

    def _upgrade(self) -> None:
        """Add what later versions keep to a file an earlier version created."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(reports)")}
            if "window_end_us" not in columns:
                self._db.execute("ALTER TABLE reports ADD COLUMN window_end_us INTEGER")
            self._db.execute("COMMIT")
        finally:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield self._db
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StorageError("spool.write_failed", f"spool: {e}") from e
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def append(
        self,
        device: DeviceId,
        sequence: int,
        digest: str,
        envelope: bytes,
        *,
        at: datetime,
        minutes: Sequence[bytes] = (),
        window_end: datetime | None = None,
    ) -> None:
        """Store a signed report durably; returns once it is committed to disk.

        ``minutes`` (the report's minute records, in window order) and ``window_end`` are
        stored in the same transaction. Appending a report already stored is a no-op.

        Raises:
            TrustError: ``spool.conflict`` if another report already holds this sequence.
        """
        if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0:
            raise InputError("spool.sequence_invalid", f"sequence {sequence!r} is not >= 0")
        moment = epoch_micros(at)
        end = None if window_end is None else epoch_micros(window_end)
        with self._transaction() as db:
            row = db.execute(
                "SELECT digest FROM reports WHERE device = ? AND sequence = ?", (device, sequence)
            ).fetchone()
            if row is not None:
                if row[0] != digest:
                    raise TrustError(
                        "spool.conflict",
                        f"{device} sequence {sequence} already holds report {row[0][:16]}...",
                    )
                return
            db.execute(
                "INSERT INTO reports (device, sequence, digest, envelope, produced_us,"
                " next_attempt_us, window_end_us) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (device, sequence, digest, envelope, moment, moment, end),
            )
            db.executemany(
                "INSERT INTO minutes (device, sequence, minute, record) VALUES (?, ?, ?, ?)",
                [(device, sequence, index, bytes(record)) for index, record in enumerate(minutes)],
            )

    def last(self, device: DeviceId) -> tuple[int, str] | None:
        """The highest sequence spooled for ``device`` and its digest: where the chain resumes."""
        row = self._db.execute(
            "SELECT sequence, digest FROM reports WHERE device = ? ORDER BY sequence DESC LIMIT 1",
            (device,),
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def head(self, device: DeviceId) -> ChainHead | None:
        """The last report spooled for ``device``, with its window's end if stored."""
        row = self._db.execute(
            "SELECT sequence, digest, envelope, window_end_us FROM reports WHERE device = ?"
            " ORDER BY sequence DESC LIMIT 1",
            (device,),
        ).fetchone()
        if row is None:
            return None
        end = None if row[3] is None else from_epoch_micros(int(row[3]))
        return ChainHead(int(row[0]), str(row[1]), bytes(row[2]), end)

    def minutes(self, device: DeviceId, sequence: int) -> list[bytes]:
        """The minute records stored with a report, in window order (empty if none were)."""
        rows = self._db.execute(
            "SELECT record FROM minutes WHERE device = ? AND sequence = ? ORDER BY minute",
            (device, sequence),
        ).fetchall()
        return [bytes(row[0]) for row in rows]

    def due(self, *, at: datetime, limit: int = 500) -> list[SpooledReport]:
        """Undelivered reports whose next attempt is due, oldest first (chain order)."""
        rows = self._db.execute(
            "SELECT device, sequence, digest, envelope, attempts FROM reports"
            " WHERE delivered_us IS NULL AND next_attempt_us <= ?"
            " ORDER BY produced_us, device, sequence LIMIT ?",
            (epoch_micros(at), limit),
        ).fetchall()
        return [
            SpooledReport(DeviceId(r[0]), int(r[1]), str(r[2]), bytes(r[3]), int(r[4]))
            for r in rows
        ]

    def first_undelivered(self) -> dict[DeviceId, int]:
        """Per device with undelivered reports, the lowest undelivered sequence."""
        rows = self._db.execute(
            "SELECT device, MIN(sequence) FROM reports WHERE delivered_us IS NULL GROUP BY device"
        ).fetchall()
        return {DeviceId(r[0]): int(r[1]) for r in rows}

    def delivered(self, device: DeviceId, sequence: int, *, at: datetime) -> None:
        """The registry stored the report (accepted or kept as evidence): stop sending it."""
        with self._transaction() as db:
            db.execute(
                "UPDATE reports SET delivered_us = ? WHERE device = ? AND sequence = ?"
                " AND delivered_us IS NULL",
                (epoch_micros(at), device, sequence),
            )

    def failed(
        self,
        device: DeviceId,
        sequence: int,
        *,
        at: datetime,
        policy: RetryPolicy,
        rng: random.Random,
    ) -> datetime:
        """Delivery failed: schedule the next attempt; returns when it is due."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT attempts FROM reports WHERE device = ? AND sequence = ?", (device, sequence)
            ).fetchone()
            if row is None:
                raise InputError(
                    "spool.unknown_report", f"{device} sequence {sequence} not spooled"
                )
            attempts = int(row[0]) + 1
            next_at = utc_datetime(at) + policy.delay(attempts, rng)
            db.execute(
                "UPDATE reports SET attempts = ?, next_attempt_us = ?"
                " WHERE device = ? AND sequence = ?",
                (attempts, epoch_micros(next_at), device, sequence),
            )
        return next_at

    def counts(self) -> tuple[int, int]:
        """(reports spooled, reports delivered)."""
        row = self._db.execute("SELECT COUNT(*), COUNT(delivered_us) FROM reports").fetchone()
        return int(row[0]), int(row[1])

    def reports(self, device: DeviceId) -> list[SpooledReport]:
        """Every report of ``device``, by sequence (for checks and challenges)."""
        rows = self._db.execute(
            "SELECT device, sequence, digest, envelope, attempts FROM reports WHERE device = ?"
            " ORDER BY sequence",
            (device,),
        ).fetchall()
        return [
            SpooledReport(DeviceId(r[0]), int(r[1]), str(r[2]), bytes(r[3]), int(r[4]))
            for r in rows
        ]
