"""The registry as one object: database, log, ingestion, enrolment, credentials, challenges,
governance files and public aggregates. :mod:`brakepedal.registry.app` puts HTTP in front.

Opening a :class:`Registry` runs the Alembic migrations (the log's tables included) on its
database URL, SQLite file or PostgreSQL, then opens the log there.

Access (``docs/registry.md``): devices authenticate by their signatures (enrolment, reports,
challenge answers all verify by content), parties by theirs (governance proposals carry their
quorum), auditors and administrators by a bearer credential with a role; the public sees the
log's hashes and checkpoints, enrolments, governance files, and aggregates per operator and
day, never a report's telemetry.

Reasons: ``registry.*`` (``credential_invalid``, ``role_insufficient``, ``role_unknown``,
``credential_exists``, ``not_found``, ``challenge_answered``, ``governance_disabled``) and those
of the parts it calls.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from fractions import Fraction
from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, func, insert, select, update

from brakepedal.accounting.catalogue import Catalogue, Precision, default_catalogue
from brakepedal.accounting.flop import BoundBasis, BoundRule, attested_bound
from brakepedal.crypto.canonical import canonical_json, parse_json_object
from brakepedal.crypto.dsse import parse_envelope
from brakepedal.crypto.keys import Signer
from brakepedal.errors import BrakepedalError, InputError, StorageError, TrustError
from brakepedal.governance.repository import (
    Proposal,
    publish,
    refresh_timestamp,
    trusted_agreement,
)
from brakepedal.governance.view import LogEvidence
from brakepedal.model.limits import Limits
from brakepedal.model.types import epoch_micros, from_epoch_micros
from brakepedal.registry.devices import Enrolled, enrol
from brakepedal.registry.ingest import IngestLimits, Ingestor, ItemResult
from brakepedal.registry.schema import (
    challenges,
    cosigned_checkpoints,
    credentials,
    devices,
    governance_files,
    rejections,
    reports,
)
from brakepedal.tlog.checkpoint import open_checkpoint
from brakepedal.tlog.cosignature import CosignatureVerifier, verify_cosignatures
from brakepedal.tlog.log import TransparencyLog
from brakepedal.tlog.merkle import NodeId
from brakepedal.tlog.note import Note, NoteSignature, NoteSigner
from brakepedal.tlog.proof import InclusionProof
from brakepedal.tlog.sqlstore import SqlLogStore, normalise_store_url
from brakepedal.wire.endorsement import check_roots
from brakepedal.wire.findings import check_findings_envelope
from brakepedal.wire.minute import parse_minute
from brakepedal.wire.report import verify_minutes
from brakepedal.wire.report_format import parse_report

__all__ = ["ROLES", "Registry", "RegistryConfig", "migrate"]

ROLES = ("auditor", "admin")
_DAY_US = 86_400_000_000


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (Alembic ``upgrade head``)."""
    parsed = normalise_store_url(url)
    engine = create_engine(parsed)
    try:
        config = Config()
        location = resources.files("brakepedal.registry") / "migrations"
        config.set_main_option("script_location", str(location))
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def _time(us: int | None) -> str | None:
    if us is None:
        return None
    return from_epoch_micros(us).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class RegistryConfig:
    """What a registry needs: its database, log identity and key, and whom it trusts."""

    url: str
    origin: str
    log_signer: NoteSigner
    manufacturer_roots: Sequence[bytes] = ()
    witnesses: Sequence[CosignatureVerifier] = ()
    allow_software_keys: bool = False
    governance_operator: Signer | None = None
    limits: IngestLimits = field(default_factory=IngestLimits)
    catalogue: Catalogue | None = None
    now: Callable[[], datetime] = lambda: datetime.now(UTC)


class Registry:
    """The registry's operations, independent of HTTP."""

    def __init__(self, config: RegistryConfig) -> None:
        if config.manufacturer_roots:
            # A root that is not one certificate would refuse every endorsed enrolment, each
            # device blamed: the configuration is refused here instead.
            check_roots(config.manufacturer_roots)
        migrate(config.url)
        self.config = config
        self.store = SqlLogStore(config.url, origin=config.origin)
        self.log = TransparencyLog(self.store)
        self.ingestor = Ingestor(self.store, limits=config.limits, now=config.now)
        self._catalogue = config.catalogue or default_catalogue()
        self._signing = threading.Lock()

    def close(self) -> None:
        self.store.close()

    @property
    def engine(self) -> Engine:
        return self.store.engine

    # ------------------------------------------------------------------ devices, reports

    def enrol(self, data: bytes) -> Enrolled:
        return enrol(
            self.store,
            data,
            roots=self.config.manufacturer_roots,
            allow_software=self.config.allow_software_keys,
            at=self.config.now(),
            catalogue=self._catalogue,
        )

    def ingest_body(self, body: bytes) -> list[ItemResult]:
        return self.ingestor.ingest_body(body)

    def device(self, device: str, *, private: bool) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(devices).where(devices.c.device == device)).one_or_none()
        if row is None:
            raise InputError("registry.not_found", f"device {device!r:.140} is not enrolled")
        public = {
            "device": row.device,
            "accelerator": row.accelerator,
            "operator": row.operator,
            "site": row.site,
            "trust_level": row.trust_level,
            "manufacturer": row.manufacturer,
            "serial": row.serial,
            "key_fingerprint": row.key_fingerprint,
            "enrolled_at": _time(row.enrolled_us),
            "log_index": row.log_index,
        }
        if private:
            public |= {"last_sequence": row.last_sequence, "last_digest": row.last_digest}
        return public

    def report(self, device: str, sequence: int) -> tuple[int, bytes]:
        """A stored report's log index and envelope (auditors only)."""
        with self.engine.connect() as conn:
            index = conn.execute(
                select(reports.c.log_index).where(
                    reports.c.device == device, reports.c.sequence == sequence
                )
            ).scalar_one_or_none()
        if index is None:
            raise InputError("registry.not_found", f"no report {device!r:.140} #{sequence}")
        return int(index), self.log.entry(int(index))

    def rejections(self, *, after: int, limit: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(rejections)
                .where(rejections.c.id > after)
                .order_by(rejections.c.id)
                .limit(limit)
            ).all()
        return [
            {
                "id": row.id,
                "received_at": _time(row.received_us),
                "reason": row.reason,
                "detail": row.detail,
                "device": row.device,
                "sequence": row.sequence,
                "body_sha256": row.body_sha256,
                "body_size": row.body_size,
                "body": row.body.decode("utf-8", "replace"),
            }
            for row in rows
        ]

    # ------------------------------------------------------------------ the log

    def checkpoint(self) -> bytes:
        """The newest checkpoint, signed now if the tree grew, with its cosignatures."""
        with self._signing:
            latest = self.store.latest_checkpoint()
            if latest is None or latest[0] < self.store.size():
                try:
                    self.log.checkpoint(self.config.origin, self.config.log_signer)
                except BrakepedalError as e:
                    # Another worker process stored a larger checkpoint meanwhile: serve it.
                    if e.reason != "log.checkpoint_rollback":
                        raise
                latest = self.store.latest_checkpoint()
        if latest is None:
            raise TrustError("registry.checkpoint_missing", "no checkpoint after signing one")
        size, note = latest
        with self.engine.connect() as conn:
            cosigned = conn.execute(
                select(cosigned_checkpoints.c.note).where(cosigned_checkpoints.c.size == size)
            ).scalar_one_or_none()
        return bytes(cosigned) if cosigned is not None else note

    def add_cosignatures(self, note: bytes) -> bytes:
        """Merge a witness's cosigned copy of a checkpoint this registry signed.

        The stored note is rebuilt from verified lines only: the log's own line, and for each
        witness (configured, or named by the governance agreement) its newest verified
        cosignature. Nobody can add junk lines or crowd the witnesses out, and a witness
        that cosigns again replaces its line rather than adding one.
        """
        opened = open_checkpoint(note, self.config.log_signer.verifier(), origin=self.config.origin)
        size = opened.checkpoint.size
        if size > self.store.size() or opened.checkpoint.root_hash != self.log.root(size):
            raise TrustError(
                "registry.checkpoint_foreign", "that checkpoint is not of this log's history"
            )
        body = opened.note.text
        witnesses = list(self.config.witnesses)
        with contextlib.suppress(BrakepedalError):  # no governance root yet
            witnesses += trusted_agreement(self.governance_files()).witness_verifiers()
        offered = self._witness_lines(body, opened.note.signatures, witnesses)
        if not offered:
            raise TrustError(
                "registry.cosignature_unknown",
                "the note carries no cosignature that verifies under a witness this registry knows",
            )
        signer = self.config.log_signer
        own = next(
            line
            for line in opened.note.signatures
            if (line.name, line.key_id) == (signer.name, signer.key_id)
        )
        with self.store.write_transaction("store cosignatures") as conn:
            stored = conn.execute(
                select(cosigned_checkpoints.c.note).where(cosigned_checkpoints.c.size == size)
            ).scalar_one_or_none()
            lines = dict(offered)
            if stored is not None:
                earlier = Note.from_bytes(bytes(stored)).signatures
                for key, (timestamp, line) in self._witness_lines(body, earlier, witnesses).items():
                    if key not in lines or lines[key][0] < timestamp:
                        lines[key] = (timestamp, line)
            merged = Note(
                body, (own, *(line for _, line in sorted(lines.values(), key=_by_name)))
            ).to_bytes()
            if stored is None:
                conn.execute(insert(cosigned_checkpoints).values(size=size, note=merged))
            else:
                conn.execute(
                    update(cosigned_checkpoints)
                    .where(cosigned_checkpoints.c.size == size)
                    .values(note=merged)
                )
        return merged

    @staticmethod
    def _witness_lines(
        body: bytes, signatures: Sequence[NoteSignature], witnesses: Sequence[CosignatureVerifier]
    ) -> dict[tuple[str, bytes], tuple[int, NoteSignature]]:
        """Per witness, its newest line among ``signatures`` that verifies over ``body``."""
        found: dict[tuple[str, bytes], tuple[int, NoteSignature]] = {}
        for line in signatures:
            for witness in witnesses:
                key = (witness.name, witness.key_id)
                if (line.name, line.key_id) != key:
                    continue
                try:
                    timestamp = witness.verify(body, line.key_id + line.signature)
                except TrustError:
                    continue
                if key not in found or found[key][0] < timestamp:
                    found[key] = (timestamp, line)
        return found

    def inclusion(self, index: int, size: int) -> InclusionProof:
        if not 0 <= index < size <= self.store.size():
            raise InputError(
                "registry.proof_range",
                f"index {index} and size {size}: need 0 <= index < size <= {self.store.size()}",
            )
        # The stored leaf hash, not the entry re-read and re-hashed.
        (leaf,) = self.store.read_nodes([NodeId(0, index)])
        return InclusionProof(index, size, leaf, tuple(self.log.inclusion_proof(index, size)))

    # ------------------------------------------------------------------ credentials

    def add_credential(self, name: str, role: str) -> str:
        """A new bearer token for ``name`` with ``role``; only its hash is stored."""
        if role not in ROLES:
            raise InputError("registry.role_unknown", f"role {role!r}: one of {', '.join(ROLES)}")
        if not name or len(name) > 128 or not name.isprintable():
            raise InputError("registry.credential_invalid", "a credential name: 1..128 printable")
        token = "bp_" + secrets.token_urlsafe(32)
        try:
            with self.store.write_transaction("add a credential") as conn:
                conn.execute(
                    insert(credentials).values(
                        token_sha256=hashlib.sha256(token.encode()).hexdigest(),
                        name=name,
                        role=role,
                        created_us=epoch_micros(self.config.now()),
                    )
                )
        except BrakepedalError as e:
            if e.reason == "store.conflict":
                raise InputError("registry.credential_exists", f"{name!r} exists") from e
            raise
        return token

    def role_of(self, token: str | None) -> tuple[str, str] | None:
        """``(name, role)`` of a bearer token, or None."""
        if not token:
            return None
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self.engine.connect() as conn:
            row = conn.execute(
                select(credentials.c.name, credentials.c.role).where(
                    credentials.c.token_sha256 == digest
                )
            ).one_or_none()
        return None if row is None else (str(row[0]), str(row[1]))

    # ------------------------------------------------------------------ challenges

    def challenge(self, device: str, sequence: int, *, by: str) -> int:
        """Ask ``device`` for the minute records of its report ``sequence``."""
        self.report(device, sequence)  # exists?
        with self.store.write_transaction("open a challenge") as conn:
            result = conn.execute(
                insert(challenges)
                .values(
                    device=device,
                    sequence=sequence,
                    requested_by=by,
                    requested_us=epoch_micros(self.config.now()),
                )
                .returning(challenges.c.id)
            )
            return int(result.scalar_one())

    def pending_challenges(self, device: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(challenges.c.id, challenges.c.sequence)
                .where(challenges.c.device == device, challenges.c.answered_us.is_(None))
                .order_by(challenges.c.id)
                .limit(1000)
            ).all()
        return [{"id": row.id, "device": device, "sequence": row.sequence} for row in rows]

    def _challenge_row(self, challenge: int) -> Any:
        with self.engine.connect() as conn:
            row = conn.execute(select(challenges).where(challenges.c.id == challenge)).one_or_none()
        if row is None:
            raise InputError("registry.not_found", f"no challenge {challenge}")
        return row

    def answer_challenge(self, challenge: int, minutes: Sequence[bytes]) -> None:
        """Store an answer whose minute records verify against the challenged report."""
        row = self._challenge_row(challenge)
        if row.answered_us is not None:
            raise InputError("registry.challenge_answered", f"challenge {challenge} is answered")
        _, envelope = self.report(row.device, row.sequence)
        report = parse_report(parse_envelope(envelope).payload)
        records = [parse_minute(data) for data in minutes]
        verify_minutes(report, records)
        response = canonical_json(
            {"minutes": [parse_json_object(m, what="minute") for m in minutes]}
        )
        with self.store.write_transaction("answer a challenge") as conn:
            conn.execute(
                update(challenges)
                .where(challenges.c.id == challenge, challenges.c.answered_us.is_(None))
                .values(answered_us=epoch_micros(self.config.now()), response=response)
            )

    def challenge_minute_count(self, challenge: int) -> int:
        """How many minute records an answer to ``challenge`` must carry (open ones only)."""
        row = self._challenge_row(challenge)
        if row.answered_us is not None:
            raise InputError("registry.challenge_answered", f"challenge {challenge} is answered")
        with self.engine.connect() as conn:
            count = conn.execute(
                select(reports.c.minute_count).where(
                    reports.c.device == row.device, reports.c.sequence == row.sequence
                )
            ).scalar_one()
        return int(count)

    def challenge_status(self, challenge: int) -> dict[str, Any]:
        row = self._challenge_row(challenge)
        return {
            "id": row.id,
            "device": row.device,
            "sequence": row.sequence,
            "requested_by": row.requested_by,
            "requested_at": _time(row.requested_us),
            "answered_at": _time(row.answered_us),
            "minutes": None
            if row.response is None
            else parse_json_object(bytes(row.response), what="answer", limits=_ANSWER_LIMITS)[
                "minutes"
            ],
        }

    # ------------------------------------------------------------------ governance

    def governance_files(self) -> dict[str, bytes]:
        with self.engine.connect() as conn:
            return _files_in(conn)

    def governance_file(self, path: str) -> bytes:
        with self.engine.connect() as conn:
            data = conn.execute(
                select(governance_files.c.data).where(governance_files.c.path == path)
            ).scalar_one_or_none()
        if data is None:
            raise InputError("registry.not_found", f"no governance file {path!r:.200}")
        return bytes(data)

    def _operator(self) -> Signer:
        operator = self.config.governance_operator
        if operator is None:
            raise InputError(
                "registry.governance_disabled", "this registry has no governance operator key"
            )
        return operator

    def publish_governance(self, data: bytes) -> dict[str, int]:
        """Publish a quorum-signed proposal: write its files and log every one of them.

        The repository is read, extended and stored in one write transaction, so two
        proposals published at once cannot both build on the same snapshot.
        """
        operator = self._operator()
        proposal = Proposal.from_bytes(data)
        with self.store.write_transaction("publish governance files") as conn:
            files = publish(_files_in(conn), proposal, operator=operator, at=self.config.now())
            return self._store_governance(conn, files)

    def refresh_governance_timestamp(self) -> dict[str, int]:
        operator = self._operator()
        with self.store.write_transaction("refresh the governance timestamp") as conn:
            files = refresh_timestamp(_files_in(conn), operator=operator, at=self.config.now())
            return self._store_governance(conn, files)

    def _store_governance(self, conn: Connection, files: Mapping[str, bytes]) -> dict[str, int]:
        names = sorted(files)
        stored = set(_files_in(conn))
        clash = [n for n in names if n in stored and n != _TIMESTAMP_ALIAS]
        if clash:
            raise StorageError(
                "registry.governance_conflict", f"governance files already stored: {clash}"
            )
        # timestamp.json is the mutable alias of the newest versioned timestamp: not logged.
        logged = [n for n in names if n != _TIMESTAMP_ALIAS]
        first = self.store.append_locked(conn, [files[n] for n in logged])
        indices = {n: first + i for i, n in enumerate(logged)}
        for name in names:
            index = indices.get(name, indices.get(_versioned_alias(names), first))
            conn.execute(governance_files.delete().where(governance_files.c.path == name))
            conn.execute(
                insert(governance_files).values(path=name, data=files[name], log_index=index)
            )
        return indices

    def publish_findings(self, data: bytes) -> int:
        """Append an auditor's signed finding set to the log; its log index.

        The registry judges nothing in it (readers decide which auditors they trust); it
        appends only a canonical finding-set envelope (:mod:`brakepedal.wire.findings`).
        """
        check_findings_envelope(data)
        return self.store.append([data])

    def witnessed_checkpoint(self, cosignatures: int = 1) -> bytes | None:
        """The largest stored checkpoint with at least ``cosignatures`` witness cosignatures
        (None: none has). The registry keeps only cosignature lines that verified under a
        witness key it was given; which witnesses a reader trusts is the reader's to check.
        """
        with self.engine.connect() as conn:
            notes = conn.execute(
                select(cosigned_checkpoints.c.note)
                .order_by(cosigned_checkpoints.c.size.desc())
                .limit(1000)
            ).scalars()
            for note in notes:
                # One line is the log's own signature; the others are witnesses'.
                if len(Note.from_bytes(bytes(note)).signatures) - 1 >= cosignatures:
                    return bytes(note)
        return None

    def _witnessed_checkpoint(self, needed: int) -> bytes | None:
        """The largest stored checkpoint covering ``needed`` entries that the agreement's
        witnesses have cosigned to its threshold (the largest cosigned one without a root)."""
        with self.engine.connect() as conn:
            notes = conn.execute(
                select(cosigned_checkpoints.c.note)
                .where(cosigned_checkpoints.c.size >= max(needed, 1))
                .order_by(cosigned_checkpoints.c.size.desc())
                .limit(100)
            ).scalars()
            candidates = [bytes(note) for note in notes]
        if not candidates:
            return None
        try:
            agreement = trusted_agreement(self.governance_files())
        except BrakepedalError:
            return candidates[0]
        for note in candidates:
            try:
                opened = open_checkpoint(
                    note, self.config.log_signer.verifier(), origin=self.config.origin
                )
                verify_cosignatures(
                    opened.note,
                    opened.note.text,
                    agreement.witness_verifiers(),
                    agreement.witness_threshold,
                )
            except BrakepedalError:
                continue
            return note
        return None

    def governance_evidence(self) -> bytes:
        """Inclusion proofs of every governance file under a witnessed checkpoint.

        The newest checkpoint is usually not witnessed yet (reports keep arriving), so the
        evidence uses the largest checkpoint the agreement's witnesses have cosigned that
        covers every governance file, and the newest checkpoint only when there is none.
        """
        with self.engine.connect() as conn:
            rows = conn.execute(select(governance_files.c.path, governance_files.c.log_index)).all()
        needed = max((int(index) + 1 for _, index in rows), default=0)
        note = self._witnessed_checkpoint(needed) or self.checkpoint()
        size = open_checkpoint(
            note, self.config.log_signer.verifier(), origin=self.config.origin
        ).checkpoint.size
        proofs = {
            str(path): self.inclusion(int(index), size) for path, index in rows if index < size
        }
        return LogEvidence(note, proofs).to_bytes()

    # ------------------------------------------------------------------ accounting

    def public_aggregates(self, day: date, *, tree_size: int | None = None) -> list[dict[str, Any]]:
        """Per operator on ``day`` (UTC): devices, reports, busy hours, energy, FLOP bound.

        The FLOP bound is the busy-time bound of each device's catalogue peak (dense, any
        precision): what the attested busy time could at most have computed. With
        ``tree_size``, only reports among the log's first ``tree_size`` entries count: the
        figures as of a checkpoint, which an auditor recomputes from exactly those entries.
        """
        start = epoch_micros(datetime(day.year, day.month, day.day, tzinfo=UTC))
        end = start + _DAY_US
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    reports.c.operator,
                    devices.c.accelerator,
                    func.count(func.distinct(reports.c.device)),
                    func.count(),
                    func.sum(reports.c.busy_ms),
                    func.sum(reports.c.energy_mj),
                    func.sum(reports.c.window_end_us - reports.c.window_start_us),
                )
                .join(devices, devices.c.device == reports.c.device)
                .where(
                    reports.c.window_start_us >= start,
                    reports.c.window_start_us < end,
                    reports.c.log_index < (2**62 if tree_size is None else tree_size),
                )
                .group_by(reports.c.operator, devices.c.accelerator)
            ).all()
        totals: dict[str, dict[str, Any]] = defaultdict(
            lambda: {"devices": 0, "reports": 0, "busy_ms": 0, "energy_mj": 0, "flop": 0}
        )
        rule = BoundRule(frozenset(Precision), BoundBasis.BUSY)
        for operator, accelerator, count, n, busy, energy, wall_us in rows:
            entry = totals[str(operator)]
            entry["devices"] += int(count)
            entry["reports"] += int(n)
            entry["busy_ms"] += int(busy or 0)
            entry["energy_mj"] += int(energy or 0)
            spec = self._catalogue.get(str(accelerator))
            bound = attested_bound(
                spec,
                rule,
                wall_seconds=Fraction(int(wall_us), 1_000_000),
                busy_seconds=Fraction(int(busy or 0), 1000),
            )
            entry["flop"] += bound.value
        return [
            {
                "operator": operator,
                "day": day.isoformat(),
                "devices": entry["devices"],
                "reports": entry["reports"],
                "busy_hours": round(entry["busy_ms"] / 3_600_000, 6),
                "energy_kwh": round(entry["energy_mj"] / 3.6e9, 6),
                "flop_bound": str(entry["flop"]),
            }
            for operator, entry in sorted(totals.items())
        ]

    def device_usage(self, device: str, *, start: datetime, end: datetime) -> dict[str, Any]:
        """One device's reports in ``[start, end)`` (auditors only)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(reports)
                .where(
                    reports.c.device == device,
                    reports.c.window_start_us >= epoch_micros(start),
                    reports.c.window_start_us < epoch_micros(end),
                )
                .order_by(reports.c.sequence)
                .limit(10_000)
            ).all()
        return {
            "device": device,
            "reports": [
                {
                    "sequence": r.sequence,
                    "log_index": r.log_index,
                    "window_start": _time(r.window_start_us),
                    "window_end": _time(r.window_end_us),
                    "busy_ms": r.busy_ms,
                    "tensor_active_ms": r.tensor_active_ms,
                    "energy_mj": r.energy_mj,
                    "job": r.job,
                    "tenant": r.tenant,
                    "permit": r.permit,
                    "workload": r.workload,
                    "digest": r.digest,
                }
                for r in rows
            ],
        }

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                "devices": int(
                    conn.execute(select(func.count()).select_from(devices)).scalar_one()
                ),
                "reports": int(
                    conn.execute(select(func.count()).select_from(reports)).scalar_one()
                ),
                "rejections": int(
                    conn.execute(select(func.count()).select_from(rejections)).scalar_one()
                ),
                "tree_size": self.store.size(),
            }


_ANSWER_LIMITS = Limits(max_json_bytes=64_000_000)


_TIMESTAMP_ALIAS = "metadata/timestamp.json"


def _files_in(conn: Connection) -> dict[str, bytes]:
    rows = conn.execute(select(governance_files.c.path, governance_files.c.data)).all()
    return {str(path): bytes(data) for path, data in rows}


def _by_name(entry: tuple[int, NoteSignature]) -> tuple[str, bytes]:
    return entry[1].name, entry[1].key_id


def _versioned_alias(names: Sequence[str]) -> str:
    versioned = [
        n for n in names if n.endswith(".timestamp.json") and n != "metadata/timestamp.json"
    ]
    return versioned[-1] if versioned else ""
