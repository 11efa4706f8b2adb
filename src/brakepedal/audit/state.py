"""The auditor's own memory, in a SQLite file it alone writes.

Between runs the auditor remembers every checkpoint it accepted (so the next must be consistent
with all of them), the hash of every leaf it verified (so it recomputes roots and proves
inclusion without asking anyone), the devices enrolled in the log, every report read back from
the log with its fields, the entries it could not verify, and the findings it has raised. A run
only reads entries beyond what it has verified; everything is written in one transaction at the
end of a run, so an auditor killed mid-run simply repeats it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from brakepedal.errors import InputError

__all__ = [
    "AuditState",
    "BadEntry",
    "Challenge",
    "DeviceRow",
    "ReportRow",
    "SeenCheckpoint",
    "SnapshotRow",
]

#: A weight-snapshot commitment per row, as many as a report carries (see :data:`_INDEXES`).
_SNAPSHOTS = """CREATE TABLE IF NOT EXISTS snapshots (
    log_index INTEGER NOT NULL, job TEXT NOT NULL, step INTEGER NOT NULL, digest TEXT NOT NULL,
    parent TEXT, at TEXT NOT NULL)"""

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER NOT NULL, root BLOB NOT NULL, note BLOB NOT NULL, witnesses TEXT NOT NULL,
    seen_at TEXT NOT NULL, PRIMARY KEY (size, root));
CREATE TABLE IF NOT EXISTS leaves (idx INTEGER PRIMARY KEY, hash BLOB NOT NULL, kind TEXT);
CREATE TABLE IF NOT EXISTS devices (
    device TEXT PRIMARY KEY, public_key TEXT NOT NULL, accelerator TEXT NOT NULL,
    operator TEXT NOT NULL, site TEXT, trust TEXT NOT NULL, log_index INTEGER NOT NULL,
    at_us INTEGER NOT NULL, chain TEXT);
CREATE TABLE IF NOT EXISTS reports (
    log_index INTEGER PRIMARY KEY, device TEXT NOT NULL, sequence INTEGER NOT NULL,
    digest TEXT NOT NULL, previous TEXT NOT NULL, window_start_us INTEGER NOT NULL,
    window_end_us INTEGER NOT NULL, busy_ms INTEGER NOT NULL, tensor_active_ms INTEGER,
    energy_mj INTEGER NOT NULL, job TEXT, tenant TEXT, permit TEXT, site TEXT,
    workload TEXT NOT NULL, minute_count INTEGER NOT NULL, minute_root TEXT NOT NULL,
    governance_version INTEGER, governance_size INTEGER, accelerator TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS reports_by_device ON reports (device, sequence);
{_SNAPSHOTS};
CREATE TABLE IF NOT EXISTS bad_entries (
    log_index INTEGER PRIMARY KEY, reason TEXT NOT NULL, detail TEXT NOT NULL,
    device TEXT, sequence INTEGER);
CREATE TABLE IF NOT EXISTS challenges (
    id INTEGER PRIMARY KEY, device TEXT NOT NULL, sequence INTEGER NOT NULL,
    log_index INTEGER NOT NULL, requested_at TEXT NOT NULL, seed TEXT NOT NULL,
    status TEXT NOT NULL, detail TEXT);
CREATE TABLE IF NOT EXISTS standing (
    id INTEGER PRIMARY KEY AUTOINCREMENT, draft TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS findings (
    id TEXT PRIMARY KEY, severity TEXT NOT NULL, first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL, document TEXT NOT NULL, current INTEGER NOT NULL);
"""

#: Created once the tables have their current layout (:meth:`AuditState._migrate`). A
#: commitment is one row per report and everything it says: two that differ only in the
#: snapshot they continue (``parent``) or their time are two commitments.
_INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS snapshots_key
    ON snapshots (log_index, job, step, digest, ifnull(parent, ''), at);
"""

#: The layout this code writes (``meta.schema``). 1 (no ``schema`` row): snapshots keyed by
#: (log_index, job, step, digest), which kept one of two commitments of a report differing
#: only in parent or time; 2: keyed by all of a commitment's fields; 3: devices keep their
#: endorsement chain (``chain``, NULL for devices an earlier version read).
SCHEMA_VERSION = 3

_SNAPSHOTS_V1 = "PRIMARY KEY (log_index, job, step, digest)"


_INSERT_REPORT = (
    "INSERT OR REPLACE INTO reports VALUES "
    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True, slots=True)
class SeenCheckpoint:
    size: int
    root: bytes
    note: bytes
    witnesses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DeviceRow:
    device: str
    public_key: str
    accelerator: str
    operator: str
    site: str | None
    trust: str
    log_index: int
    at_us: int
    #: The enrolment's endorsement chain as logged, a JSON list of PEM texts (leaf first);
    #: None for a device an auditor before state version 3 read (it did not keep chains).
    chain: str | None = None


class ReportRow(msgspec.Struct, frozen=True):
    """A report as the auditor keeps it (a msgspec struct: the reader makes one per report, and
    a frozen dataclass costs four times as much to construct)."""

    log_index: int
    device: str
    sequence: int
    digest: str
    previous: str
    window_start_us: int
    window_end_us: int
    busy_ms: int
    tensor_active_ms: int | None
    energy_mj: int
    job: str | None
    tenant: str | None
    permit: str | None
    site: str | None
    workload: str
    minute_count: int
    minute_root: str
    governance_version: int | None
    governance_size: int | None
    accelerator: str


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    """A weight-snapshot commitment a report attested (the training framework handed it in)."""

    log_index: int
    job: str
    step: int
    digest: str
    parent: str | None
    at: str


@dataclass(frozen=True, slots=True)
class Challenge:
    """A report this auditor asked its device to open: ``open``, ``verified``, ``mismatch``,
    ``mislabeled`` (minutes that show training under an exemptable label) or ``late`` (records
    that rebuild the report, answered after the deadline by the registry's clock)."""

    id: int
    device: str
    sequence: int
    log_index: int
    requested_at: str
    seed: str
    status: str
    detail: str | None


@dataclass(frozen=True, slots=True)
class BadEntry:
    log_index: int
    reason: str
    detail: str
    device: str | None
    sequence: int | None


class AuditState:
    """The state directory's database (``DIR/audit.sqlite3``), for one log origin."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "audit.sqlite3"
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._migrate()
        self._db.executescript(_INDEXES)

    def _migrate(self) -> None:
        """Bring a state written by an earlier version to :data:`SCHEMA_VERSION`.

        From 1: the snapshots table is rebuilt with its full key. Commitments a version-1
        state dropped are not in it to recover (the state keeps leaf hashes, not entries):
        ``meta.snapshots_incomplete`` records that; audit afresh, with a new state, to read
        them again. From 1 or 2: devices gain their ``chain`` column; the chains of devices
        already read are not in the state to recover either (``meta.chains_incomplete``), and
        their endorsements go unchecked until a fresh state reads them again."""
        if self.meta("schema") == str(SCHEMA_VERSION):
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            (table,) = db.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'snapshots'"
            ).fetchone()
            if _SNAPSHOTS_V1 in " ".join(str(table).split()):
                db.execute("ALTER TABLE snapshots RENAME TO snapshots_v1")
                db.execute(_SNAPSHOTS)
                db.execute("INSERT INTO snapshots SELECT * FROM snapshots_v1")
                db.execute("DROP TABLE snapshots_v1")
                if db.execute("SELECT 1 FROM snapshots LIMIT 1").fetchone() is not None:
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('snapshots_incomplete', '1')")
            columns = {str(row[1]) for row in db.execute("PRAGMA table_info(devices)")}
            if "chain" not in columns:
                db.execute("ALTER TABLE devices ADD COLUMN chain TEXT")
                if db.execute("SELECT 1 FROM devices LIMIT 1").fetchone() is not None:
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('chains_incomplete', '1')")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ reading

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def check_origin(self, origin: str) -> None:
        """Refuse to mix two logs in one state."""
        known = self.meta("origin")
        if known is not None and known != origin:
            raise InputError(
                "audit.origin_mismatch",
                f"this state audits {known!r}, not {origin!r}: use another --state",
            )

    def verified_size(self) -> int:
        return int(self.meta("verified_size") or 0)

    def checkpoints(self) -> list[SeenCheckpoint]:
        rows = self._db.execute(
            "SELECT size, root, note, witnesses FROM checkpoints ORDER BY size, root"
        ).fetchall()
        return [
            SeenCheckpoint(r[0], bytes(r[1]), bytes(r[2]), tuple(json.loads(r[3]))) for r in rows
        ]

    def leaf_hashes(self, end: int | None = None) -> list[bytes]:
        rows = self._db.execute(
            "SELECT hash FROM leaves WHERE idx < ? ORDER BY idx",
            (self.verified_size() if end is None else end,),
        ).fetchall()
        return [bytes(row[0]) for row in rows]

    def leaf_hash(self, index: int) -> bytes | None:
        """The verified leaf hash of entry ``index`` (None: not verified)."""
        row = self._db.execute("SELECT hash FROM leaves WHERE idx = ?", (index,)).fetchone()
        return None if row is None else bytes(row[0])

    def devices(self) -> dict[str, DeviceRow]:
        rows = self._db.execute("SELECT * FROM devices ORDER BY log_index").fetchall()
        return {row[0]: DeviceRow(*row) for row in rows}

    def reports(self) -> list[ReportRow]:
        rows = self._db.execute("SELECT * FROM reports ORDER BY log_index").fetchall()
        return [ReportRow(*row) for row in rows]

    def snapshots(self) -> list[SnapshotRow]:
        rows = self._db.execute(
            "SELECT * FROM snapshots ORDER BY log_index, step, rowid"
        ).fetchall()
        return [SnapshotRow(*row) for row in rows]

    def bad_entries(self) -> list[BadEntry]:
        rows = self._db.execute("SELECT * FROM bad_entries ORDER BY log_index").fetchall()
        return [BadEntry(*row) for row in rows]

    def current_findings(self) -> list[tuple[dict[str, Any], str, str]]:
        """The last run's findings: (document, first seen, last seen), gravest first."""
        rows = self._db.execute(
            "SELECT document, first_seen, last_seen FROM findings WHERE current = 1"
        ).fetchall()
        ranks = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
        found = [(json.loads(row[0]), row[1], row[2]) for row in rows]
        return sorted(found, key=lambda f: (ranks.get(f[0]["severity"], 5), f[0]["id"]))

    def last_run(self) -> dict[str, Any]:
        """When the last run was and the context it saw (orders, permits, thresholds)."""
        value = self.meta("last_run")
        return {} if value is None else dict(json.loads(value))

    def challenges(self) -> list[Challenge]:
        """The challenges this auditor opened, oldest first."""
        rows = self._db.execute("SELECT * FROM challenges ORDER BY id").fetchall()
        return [Challenge(*row) for row in rows]

    def add_challenges(self, opened: Iterable[Challenge]) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO challenges VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [tuple(_values(c)) for c in opened],
            )
            self._db.execute("COMMIT")

    def resolve_challenge(self, number: int, status: str, detail: str | None) -> None:
        self._db.execute(
            "UPDATE challenges SET status = ?, detail = ? WHERE id = ?", (status, detail, number)
        )

    def standing(self) -> list[dict[str, Any]]:
        """Findings that stand for good (proofs that the log showed two histories)."""
        rows = self._db.execute("SELECT draft FROM standing ORDER BY id").fetchall()
        return [json.loads(row[0]) for row in rows]

    def known_findings(self) -> dict[str, tuple[str, str]]:
        """Finding id -> (first seen, last seen)."""
        rows = self._db.execute("SELECT id, first_seen, last_seen FROM findings").fetchall()
        return {row[0]: (row[1], row[2]) for row in rows}

    # ------------------------------------------------------------------ writing

    def commit_run(
        self,
        *,
        origin: str,
        checkpoints: Sequence[SeenCheckpoint],
        seen_at: str,
        leaves: Sequence[tuple[int, bytes, str]],
        devices: Iterable[DeviceRow],
        reports: Iterable[ReportRow],
        bad: Iterable[BadEntry],
        snapshots: Iterable[SnapshotRow] = (),
        verified_size: int,
        findings: Iterable[tuple[str, str, dict[str, Any]]],
        context: dict[str, Any] | None = None,
        standing: Iterable[dict[str, Any]] = (),
    ) -> None:
        """Everything a run learnt, in one transaction."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('origin', ?)", (origin,))
            db.executemany(
                "INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?) ON CONFLICT (size, root) DO "
                "UPDATE SET witnesses = excluded.witnesses, note = excluded.note "
                "WHERE json_array_length(excluded.witnesses) > "
                "json_array_length(checkpoints.witnesses)",
                [
                    (c.size, c.root, c.note, json.dumps(list(c.witnesses)), seen_at)
                    for c in checkpoints
                ],
            )
            db.executemany("INSERT OR REPLACE INTO leaves VALUES (?, ?, ?)", leaves)
            db.executemany(
                "INSERT OR IGNORE INTO devices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [tuple(_values(d)) for d in devices],
            )
            db.executemany(
                _INSERT_REPORT,
                [msgspec.structs.astuple(r) for r in reports],
            )
            db.executemany(
                "INSERT OR IGNORE INTO snapshots VALUES (?, ?, ?, ?, ?, ?)",
                [tuple(_values(row)) for row in snapshots],
            )
            db.executemany(
                "INSERT OR REPLACE INTO bad_entries VALUES (?, ?, ?, ?, ?)",
                [tuple(_values(b)) for b in bad],
            )
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('verified_size', ?)", (str(verified_size),)
            )
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('last_run', ?)",
                (json.dumps({"at": seen_at, "context": context or {}}, sort_keys=True),),
            )
            db.executemany(
                "INSERT OR IGNORE INTO standing (draft) VALUES (?)",
                [(json.dumps(d, sort_keys=True),) for d in standing],
            )
            # The findings of this run replace the last run's as "current"; ids stay stable.
            db.execute("UPDATE findings SET current = 0")
            for finding_id, severity, document in findings:
                db.execute(
                    "INSERT INTO findings VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (id) DO UPDATE "
                    "SET last_seen = excluded.last_seen, document = excluded.document, "
                    "severity = excluded.severity, current = 1",
                    (finding_id, severity, seen_at, seen_at, json.dumps(document)),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def _values(row: object) -> list[object]:
    return [getattr(row, name) for name in row.__slots__]  # type: ignore[attr-defined]
