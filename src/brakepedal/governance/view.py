"""The verified view of governance: which orders are in force, which permits are valid.

Agents, gates and auditors never read governance documents directly; they ask a
:class:`GovernanceView`, which exists only if every step below succeeded at the time ``at``:

1. **TUF.** python-tuf's ngclient ``TrustedMetadataSet`` (the part of the client workflow that
   is not I/O) walks the root chain from the client's trusted root, then timestamp, snapshot,
   top-level targets and the delegated roles, with ``at`` as its reference time. That gives
   quorum (threshold of distinct keys per role), expiry and freeze, rollback (against the
   client's previous timestamp), mix-and-match (versions against the snapshot) and key
   rotation, all as python-tuf implements them.
2. **The log.** Every metadata file used in step 1 must be in the transparency log: an
   inclusion proof against a checkpoint signed by the log key the agreement names and
   cosigned by at least the agreement's threshold of its witnesses. A document with its quorum
   that is not public in the log does nothing (``governance.not_in_log``).
3. **Documents.** Each target's bytes must match the length and hash its role signed; each
   document must sit under a path its role may sign; orders may not outlast the agreement's
   longest sunset.

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
from tuf.api.metadata import Root, Targets
from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet
from tuf.ngclient.config import EnvelopeType

from brakepedal.crypto.canonical import parse_json_object
from brakepedal.errors import BrakepedalError, InputError, TrustError
from brakepedal.governance.agreement import (
    DELEGATED_ROLES,
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
    parse_document,
)
from brakepedal.governance.repository import Repository
from brakepedal.governance.rules import check_sunset, order_terms, permit_terms
from brakepedal.model.limits import Limits
from brakepedal.model.types import utc_datetime
from brakepedal.policy.terms import PauseOrderTerms, PermitTerms
from brakepedal.tlog import merkle
from brakepedal.tlog.checkpoint import open_checkpoint
from brakepedal.tlog.cosignature import verify_cosignatures
from brakepedal.tlog.proof import InclusionProof, parse_proof

__all__ = ["EVIDENCE_FORMAT", "GovernanceView", "LogEvidence", "policy_file_path"]

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


def _check_log(agreement: Agreement, evidence: LogEvidence, used: Mapping[str, bytes]) -> None:
    """Step 2: every used file is in the log under a witnessed checkpoint."""
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
    for name, data in sorted(used.items()):
        proof = evidence.proofs.get(name)
        if proof is None:
            raise TrustError("governance.not_in_log", f"{name} is not in the transparency log")
        if proof.leaf_hash != merkle.leaf_hash(data) or proof.tree_size != signed.checkpoint.size:
            raise TrustError(
                "governance.not_in_log", f"{name}: the proof is for another entry or tree"
            )
        proof.verify(signed.checkpoint.root_hash)


Document = PauseOrder | LiftOrder | TrainingPermit | PolicyVersion


def _documents(
    agreement: Agreement, repository: Repository, roles: Mapping[str, Targets]
) -> list[Document]:
    """Step 3: documents match their hashes, sit where their role may sign, obey the root."""
    found: list[Document] = []
    for role, targets in sorted(roles.items()):
        for path, target in sorted(targets.targets.items()):
            if role_for_path(path) != role:
                raise TrustError("governance.path_not_delegated", f"{role} cannot sign {path}")
            data = repository.get(f"targets/{path}")
            if data is None:
                raise TrustError("governance.file_missing", f"the repository lacks targets/{path}")
            try:
                target.verify_length_and_hashes(data)
            except tuf_errors.LengthOrHashMismatchError as e:
                raise TrustError("governance.document_mismatch", f"{path}: {e}") from e
            if path.startswith("policies/") and path.endswith(_POLICY_SUFFIXES):
                continue  # a policy file: checked against its PolicyVersion below
            document = parse_document(data)
            if document.target_path != path:
                raise TrustError("governance.path_mismatch", f"{path} holds {document.target_path}")
            if isinstance(document, PauseOrder):
                check_sunset(document, max_sunset=agreement.max_sunset)
            found.append(document)
    _check_policy_files(repository, roles, found)
    return found


_POLICY_SUFFIXES = (".toml", ".yaml")


def policy_file_path(version: PolicyVersion) -> str:
    """Where the policy file a :class:`PolicyVersion` names is published."""
    suffix = ".toml" if version.media_type == "application/toml" else ".yaml"
    return f"policies/{version.policy_id}/{version.version}{suffix}"


def _check_policy_files(
    repository: Repository, roles: Mapping[str, Targets], found: list[Document]
) -> None:
    signed = roles.get("policies")
    for version in (d for d in found if isinstance(d, PolicyVersion)):
        path = policy_file_path(version)
        if signed is None or path not in signed.targets:
            raise TrustError(
                "governance.file_missing", f"{version.target_path} names {path}, unsigned"
            )
        if hashlib.sha256(repository[f"targets/{path}"]).hexdigest() != version.content_sha256:
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
        """Verify ``repository`` from ``trusted_root`` at ``at`` (steps 1 to 3).

        ``previous_timestamp`` and ``previous_versions`` are what this client verified last
        (:attr:`timestamp`, :attr:`versions`); keep them between refreshes, or a mirror can
        replay an older state that has not expired yet.
        """
        walk, roles = _walk(trusted_root, repository, at, previous_timestamp)
        versions = _check_versions(walk, previous_versions or {})
        agreement = agreement_of(walk.trusted.root)
        _check_delegations(agreement, walk.trusted.targets)
        _check_log(agreement, evidence, walk.used)
        documents = _documents(agreement, repository, roles)
        return cls(
            agreement=agreement,
            root=walk.trusted.root,
            documents=tuple(documents),
            used_files=tuple(sorted(walk.used)),
            versions=versions,
            timestamp=walk.used[f"metadata/{walk.trusted.timestamp.version}.timestamp.json"],
            policy_files={
                p: repository[f"targets/{p}"]
                for p in roles["policies"].targets
                if p.endswith(_POLICY_SUFFIXES)
            }
            if "policies" in roles
            else {},
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
        """Every published permit's terms."""
        return tuple(permit_terms(p) for p in self._of(TrainingPermit))

    def policies(self) -> tuple[tuple[PolicyVersion, bytes], ...]:
        """Every published policy version with the exact policy file it names."""
        return tuple((v, self.policy_files[policy_file_path(v)]) for v in self._of(PolicyVersion))

    def permits_valid(self, at: datetime) -> tuple[PermitTerms, ...]:
        """The permits valid at ``at``."""
        moment = utc_datetime(at)
        return tuple(p for p in self.permits() if p.valid_from <= moment < p.valid_until)
