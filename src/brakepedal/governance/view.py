"""The verified view of governance: which orders are in force, which permits are valid.

Agents, gates and auditors never read governance documents directly; they ask a
:class:`GovernanceView`, which exists only if every step below succeeded at the time ``at``:

1. **TUF.** python-tuf's ngclient ``TrustedMetadataSet`` (the part of the client workflow that
   is not I/O) walks the root chain from the client's trusted root, then timestamp, snapshot,
   top-level targets and the delegated roles, with ``at`` as its reference time. That gives
   quorum (threshold of distinct keys per role), expiry and freeze, rollback (against the
   client's previous timestamp), mix-and-match (versions against the snapshot) and key
   rotation, all as python-tuf implements them.
2. **The log.** Every metadata file used in step 1, and every target file read in step 3,
   must be in the transparency log: an inclusion proof against a checkpoint signed by the log
   key the agreement names and cosigned by at least the agreement's threshold of its
   witnesses. A document with its quorum that is not public in the log does nothing
   (``governance.not_in_log``): metadata binds a document only by hash, so the document's own
   bytes must be public too.
3. **Documents.** Each target's bytes must match the length and hash its role signed; each
   document must parse, sit at its own path, under a path its role may sign; orders may not
   outlast the agreement's longest sunset.

A defect in step 3 (or a target missing from the log) refuses the whole view, except for a
target that can only grant: one under ``permits/`` or ``quorum-permits/``, or one the
``permits`` role signed. Leaving a grant out only ever stops training, so such a target is
dropped and recorded in :attr:`GovernanceView.dropped` instead; otherwise the permit authority
alone, publishing junk at ``permits/``, could make every view fail, and with it every gate's
enforcement of orders the order quorum published.

When the view cannot be built (no repository, no evidence, a failure above), callers **fail
closed for new training in a pause's scope and leave inference alone**: an order that might be
in force is presumed in force for training, because a missing brake is worse than a late start,
and serving deployed models was never in a pause's scope (docs/governance.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Root, TargetFile, Targets
from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet
from tuf.ngclient.config import EnvelopeType

from brakepedal.crypto.canonical import parse_json_object
from brakepedal.errors import BrakepedalError, InputError, TrustError
from brakepedal.governance.agreement import (
    DELEGATED_ROLES,
    ROLE_PERMITS,
    Agreement,
    agreement_of,
    build_targets,
    role_for_path,
)
from brakepedal.governance.documents import (
    LiftOrder,
    PauseOrder,
    PolicyVersion,
    TrainingPermit,
)
from brakepedal.governance.repository import Repository
from brakepedal.governance.rules import (
    document_at,
    is_policy_file,
    order_terms,
    permit_terms,
    policy_file_path,
)
from brakepedal.model.limits import Limits
from brakepedal.model.types import utc_datetime
from brakepedal.policy.terms import PauseOrderTerms, PermitTerms
from brakepedal.tlog import merkle
from brakepedal.tlog.checkpoint import Checkpoint, open_checkpoint
from brakepedal.tlog.cosignature import verify_cosignatures
from brakepedal.tlog.proof import InclusionProof, parse_proof

__all__ = [
    "EVIDENCE_FORMAT",
    "DroppedDocument",
    "GovernanceView",
    "LogEvidence",
    "policy_file_path",
]

EVIDENCE_FORMAT = "brakepedal.governance-evidence"
_EVIDENCE_LIMITS = Limits(max_json_bytes=8_000_000)


@dataclass(frozen=True)
class LogEvidence:
    """A witnessed checkpoint and inclusion proofs for repository files under it."""

    checkpoint: bytes
    proofs: Mapping[str, InclusionProof]

    def to_bytes(self) -> bytes:
        document = {
            "format": EVIDENCE_FORMAT,
            "checkpoint": self.checkpoint.decode(),
            "proofs": {n: json.loads(p.to_json()) for n, p in sorted(self.proofs.items())},
        }
        return json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> LogEvidence:
        document = parse_json_object(data, limits=_EVIDENCE_LIMITS, what="evidence")
        if document.get("format") != EVIDENCE_FORMAT:
            raise InputError("evidence.format_invalid", f"not a {EVIDENCE_FORMAT}")
        checkpoint, proofs = document.get("checkpoint"), document.get("proofs")
        if not isinstance(checkpoint, str) or not isinstance(proofs, dict):
            raise InputError("evidence.invalid", "evidence needs a checkpoint and proofs")
        parsed = {}
        for name, proof in proofs.items():
            value = parse_proof(json.dumps(proof).encode())
            if not isinstance(value, InclusionProof):
                raise InputError("evidence.invalid", f"proofs.{name}: not an inclusion proof")
            parsed[str(name)] = value
        return cls(checkpoint.encode(), parsed)


_REASONS: tuple[tuple[type[Exception], str, str], ...] = (
    (tuf_errors.UnsignedMetadataError, "governance.quorum_not_met", "too few valid signatures"),
    (tuf_errors.ExpiredMetadataError, "governance.expired", "metadata expired (freeze?)"),
    (tuf_errors.LengthOrHashMismatchError, "governance.mix_and_match", "file does not match"),
    (tuf_errors.BadVersionNumberError, "governance.rollback", "version went backwards"),
    (tuf_errors.RepositoryError, "governance.repository_invalid", "repository invalid"),
)


def _tuf_error(error: Exception, step: str) -> NoReturn:
    for kind, reason, summary in _REASONS:
        if isinstance(error, kind):
            if reason == "governance.rollback" and step not in ("timestamp", "root"):
                raise TrustError(
                    "governance.mix_and_match",
                    f"{step}: version differs from the snapshot: {error}",
                ) from error
            raise TrustError(reason, f"{step}: {summary}: {error}") from error
    raise InputError("governance.metadata_invalid", f"{step}: {error!r}") from error


@dataclass
class _Walk:
    """The TUF part of a refresh: the trusted set and the files it used."""

    trusted: TrustedMetadataSet
    repository: Repository
    used: dict[str, bytes] = field(default_factory=dict)

    def read(self, name: str) -> bytes:
        data = self.repository.get(name)
        if data is None:
            raise TrustError("governance.file_missing", f"the repository lacks {name}")
        self.used[name] = data
        return data

    def roots(self) -> None:
        while (name := f"metadata/{self.trusted.root.version + 1}.root.json") in self.repository:
            self.trusted.update_root(self.read(name))

    def timestamp(self, previous: bytes | None) -> None:
        if previous is not None:
            # An expired cached timestamp still anchors rollback protection.
            with contextlib.suppress(tuf_errors.ExpiredMetadataError):
                self.trusted.update_timestamp(previous)
        data = self.repository.get("metadata/timestamp.json")
        if data is None:
            raise TrustError("governance.file_missing", "the repository has no timestamp")
        with contextlib.suppress(tuf_errors.EqualVersionNumberError):
            self.trusted.update_timestamp(data)
        self.used[f"metadata/{self.trusted.timestamp.version}.timestamp.json"] = data

    def snapshot_and_targets(self) -> dict[str, Targets]:
        version = self.trusted.timestamp.snapshot_meta.version
        self.trusted.update_snapshot(self.read(f"metadata/{version}.snapshot.json"))
        meta = self.trusted.snapshot.meta
        self.trusted.update_targets(
            self.read(f"metadata/{meta['targets.json'].version}.targets.json")
        )
        roles: dict[str, Targets] = {}
        for role in DELEGATED_ROLES:
            if f"{role}.json" not in meta:
                # Only the operator signs the snapshot: a role left out would hide its orders.
                raise TrustError(
                    "governance.role_missing", f"the snapshot does not list {role}.json"
                )
            name = f"metadata/{meta[f'{role}.json'].version}.{role}.json"
            roles[role] = self.trusted.update_delegated_targets(self.read(name), role, "targets")
        return roles


def _walk(
    trusted_root: bytes, repository: Repository, at: datetime, previous: bytes | None
) -> tuple[_Walk, dict[str, Targets]]:
    step = "root"
    try:
        trusted = TrustedMetadataSet(trusted_root, EnvelopeType.METADATA)
        trusted.reference_time = utc_datetime(at)
        walk = _Walk(trusted, repository)
        walk.used[f"metadata/{trusted.root.version}.root.json"] = trusted_root
        walk.roots()
        step = "timestamp"
        walk.timestamp(previous)
        step = "snapshot"
        roles = walk.snapshot_and_targets()
    except BrakepedalError:
        raise
    except (tuf_errors.RepositoryError, ValueError, KeyError) as e:
        _tuf_error(e, step)
    return walk, roles


def _check_versions(walk: _Walk, previous: Mapping[str, int]) -> dict[str, int]:
    """No role's version may be below what this client verified before (rollback by a
    snapshot only the operator signed)."""
    versions = {"root": walk.trusted.root.version, "timestamp": walk.trusted.timestamp.version}
    versions |= {n.removesuffix(".json"): m.version for n, m in walk.trusted.snapshot.meta.items()}
    versions["snapshot"] = walk.trusted.snapshot.version
    for role, seen in sorted(previous.items()):
        if versions.get(role, 0) < seen:
            raise TrustError(
                "governance.rollback",
                f"{role} is at version {versions.get(role, 0)}; this client saw version {seen}",
            )
    return versions


def _check_delegations(agreement: Agreement, targets: Targets) -> None:
    """Top-level targets must delegate exactly as the agreement (root) says."""
    expected = build_targets(agreement).signed.delegations
    actual = targets.delegations
    if expected is None or actual is None or expected.roles is None or actual.roles is None:
        raise TrustError("governance.delegations_mismatch", "targets delegates nothing")
    if set(actual.roles) != set(expected.roles):
        raise TrustError("governance.delegations_mismatch", "targets delegates other roles")
    for name, role in expected.roles.items():
        other = actual.roles[name]
        if (set(other.keyids), other.threshold, other.terminating, other.paths) != (
            set(role.keyids),
            role.threshold,
            role.terminating,
            role.paths,
        ):
            raise TrustError(
                "governance.delegations_mismatch",
                f"targets delegates {name} otherwise than the agreement's root says",
            )


def _witnessed(agreement: Agreement, evidence: LogEvidence) -> Checkpoint:
    """The evidence's checkpoint, signed by the log and cosigned by the witness threshold."""
    signed = open_checkpoint(
        evidence.checkpoint, agreement.log_verifier(), origin=agreement.log_origin
    )
    try:
        verify_cosignatures(
            signed.note,
            signed.note.text,
            agreement.witness_verifiers(),
            agreement.witness_threshold,
        )
    except TrustError as e:
        raise TrustError(
            "governance.witness_quorum", f"checkpoint not witnessed: {e.message}"
        ) from e
    return signed.checkpoint


def _check_logged(checkpoint: Checkpoint, evidence: LogEvidence, name: str, data: bytes) -> None:
    """``data``, the repository's file ``name``, is in the log under ``checkpoint``."""
    proof = evidence.proofs.get(name)
    if proof is None:
        raise TrustError("governance.not_in_log", f"{name} is not in the transparency log")
    if proof.leaf_hash != merkle.leaf_hash(data) or proof.tree_size != checkpoint.size:
        raise TrustError("governance.not_in_log", f"{name}: the proof is for another entry or tree")
    proof.verify(checkpoint.root_hash)


def _check_log(checkpoint: Checkpoint, evidence: LogEvidence, used: Mapping[str, bytes]) -> None:
    """Step 2: every used file is in the log under the witnessed ``checkpoint``."""
    for name, data in sorted(used.items()):
        _check_logged(checkpoint, evidence, name, data)


Document = PauseOrder | LiftOrder | TrainingPermit | PolicyVersion

#: Targets under these paths can only grant (permits): a defective one is dropped, not fatal.
_GRANT_PATHS = ("permits/", "quorum-permits/")


@dataclass(frozen=True)
class DroppedDocument:
    """A target a view left out because it was defective and could only grant: its path,
    the role that signed it, and why (a ``governance.*``, ``document.*`` or parser reason)."""

    path: str
    role: str
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.path} (signed by {self.role}) dropped: {self.message} [{self.reason}]"


def _grants_only(role: str, path: str) -> bool:
    """Whether leaving the target out can only stop training, never allow it."""
    return role == ROLE_PERMITS or path.startswith(_GRANT_PATHS)


@dataclass
class _Documents:
    """Step 3 (and step 2 for target files): the documents, the bytes read, what was dropped."""

    agreement: Agreement
    repository: Repository
    checkpoint: Checkpoint
    evidence: LogEvidence
    found: list[Document] = field(default_factory=list)
    #: Every target file read and verified, by path: the policy files among them are kept.
    files: dict[str, bytes] = field(default_factory=dict)
    dropped: list[DroppedDocument] = field(default_factory=list)

    def check(self, roles: Mapping[str, Targets]) -> None:
        for role, targets in sorted(roles.items()):
            for path, target in sorted(targets.targets.items()):
                try:
                    self._target(role, path, target)
                except BrakepedalError as e:
                    if not _grants_only(role, path):
                        raise
                    self.dropped.append(DroppedDocument(path, role, e.reason, e.message))
        _check_policy_files(roles, self.files, self.found)

    def _target(self, role: str, path: str, target: TargetFile) -> None:
        if role_for_path(path) != role:
            raise TrustError("governance.path_not_delegated", f"{role} cannot sign {path}")
        data = self.repository.get(f"targets/{path}")
        if data is None:
            raise TrustError("governance.file_missing", f"the repository lacks targets/{path}")
        try:
            target.verify_length_and_hashes(data)
        except tuf_errors.LengthOrHashMismatchError as e:
            raise TrustError("governance.document_mismatch", f"{path}: {e}") from e
        _check_logged(self.checkpoint, self.evidence, f"targets/{path}", data)
        document = document_at(path, data, max_sunset=self.agreement.max_sunset)
        self.files[path] = data
        if document is not None:
            self.found.append(document)


def _check_policy_files(
    roles: Mapping[str, Targets], files: Mapping[str, bytes], found: list[Document]
) -> None:
    signed = roles.get("policies")
    for version in (d for d in found if isinstance(d, PolicyVersion)):
        path = policy_file_path(version)
        if signed is None or path not in signed.targets or path not in files:
            raise TrustError(
                "governance.file_missing", f"{version.target_path} names {path}, unsigned"
            )
        if hashlib.sha256(files[path]).hexdigest() != version.content_sha256:
            raise TrustError(
                "governance.document_mismatch",
                f"{path} is not the file {version.target_path} names",
            )


@dataclass(frozen=True)
class GovernanceView:
    """Verified governance state (see the module docstring for what "verified" means)."""

    agreement: Agreement
    root: Root
    documents: tuple[Document, ...]
    used_files: tuple[str, ...]
    timestamp: bytes
    versions: Mapping[str, int]
    policy_files: Mapping[str, bytes] = field(default_factory=dict)
    #: Defective targets that could only grant, left out (see the module docstring).
    dropped: tuple[DroppedDocument, ...] = ()

    @classmethod
    def load(
        cls,
        *,
        trusted_root: bytes,
        repository: Repository,
        evidence: LogEvidence,
        at: datetime,
        previous_timestamp: bytes | None = None,
        previous_versions: Mapping[str, int] | None = None,
    ) -> GovernanceView:
        """Verify ``repository`` from ``trusted_root`` at ``at`` (steps 1 to 3); defective
        targets that could only grant are left out and listed in :attr:`dropped`.

        ``previous_timestamp`` and ``previous_versions`` are what this client verified last
        (:attr:`timestamp`, :attr:`versions`); keep them between refreshes, or a mirror can
        replay an older state that has not expired yet.
        """
        walk, roles = _walk(trusted_root, repository, at, previous_timestamp)
        versions = _check_versions(walk, previous_versions or {})
        agreement = agreement_of(walk.trusted.root)
        _check_delegations(agreement, walk.trusted.targets)
        checkpoint = _witnessed(agreement, evidence)
        _check_log(checkpoint, evidence, walk.used)
        documents = _Documents(agreement, repository, checkpoint, evidence)
        documents.check(roles)
        return cls(
            agreement=agreement,
            root=walk.trusted.root,
            documents=tuple(documents.found),
            used_files=tuple(sorted(walk.used)),
            versions=versions,
            timestamp=walk.used[f"metadata/{walk.trusted.timestamp.version}.timestamp.json"],
            policy_files={p: d for p, d in documents.files.items() if is_policy_file(p)},
            dropped=tuple(documents.dropped),
        )

    def _of(self, kind: type[Any]) -> list[Any]:
        return [d for d in self.documents if isinstance(d, kind)]

    def orders(self) -> tuple[PauseOrderTerms, ...]:
        """Every published order's terms, lifts applied (an order lifted before it started
        is left out)."""
        lifts: list[LiftOrder] = self._of(LiftOrder)
        terms = (order_terms(o, lifts) for o in self._of(PauseOrder))
        return tuple(t for t in terms if t is not None)

    def orders_in_force(self, at: datetime) -> tuple[PauseOrderTerms, ...]:
        """The orders in force at ``at``."""
        return tuple(o for o in self.orders() if o.in_force_at(at))

    def permits(self) -> tuple[PermitTerms, ...]:
        """Every published permit's terms (with the order each was issued under)."""
        return tuple(permit_terms(p) for p in self._of(TrainingPermit))

    def policies(self) -> tuple[tuple[PolicyVersion, bytes], ...]:
        """Every published policy version with the exact policy file it names."""
        return tuple((v, self.policy_files[policy_file_path(v)]) for v in self._of(PolicyVersion))

    def permits_valid(self, at: datetime) -> tuple[PermitTerms, ...]:
        """The permits valid at ``at``."""
        moment = utc_datetime(at)
        return tuple(p for p in self.permits() if p.valid_from <= moment < p.valid_until)
