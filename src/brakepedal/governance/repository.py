"""The governance repository: proposals, quorum signing and publication, over TUF metadata.

Pure: a repository is a mapping of file names to bytes (``metadata/3.orders.json``,
``targets/orders/pause-1.json``); every operation returns the files to write. The CLI keeps
them in a directory and appends every new file to the transparency log.

Workflow (docs/governance.md walks through it):

1. ``propose_*``: a :class:`Proposal` is the next version of one role's metadata, unsigned,
   with the documents it points at.
2. :func:`sign_proposal`: a party adds its signature (any securesystemslib signer: files, HSM,
   KMS).
3. :func:`proposal_status`: who signed, who did not, how many are missing, what it would do.
4. :func:`publish`: only a proposal that meets its quorum is published; the operator's key
   then signs a new snapshot and timestamp. A role's metadata is one chain of versions, so
   two proposals for the same role must be published one after the other: the second is
   refused (``governance.proposal_stale``) and must be proposed again on top of the first.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from securesystemslib.signer import Signer
from tuf.api.exceptions import LengthOrHashMismatchError
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    RootVerificationResult,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
    VerificationResult,
)
from tuf.api.serialization import DeserializationError

from brakepedal.crypto.canonical import parse_json_object
from brakepedal.errors import BrakepedalError, InputError, TrustError
from brakepedal.governance.agreement import (
    DELEGATED_ROLES,
    Agreement,
    agreement_of,
    role_for_path,
)
from brakepedal.governance.documents import PolicyVersion
from brakepedal.governance.rules import document_at, policy_file_path
from brakepedal.model.limits import Limits
from brakepedal.model.types import SignatoryId, utc_datetime

__all__ = [
    "PROPOSAL_FORMAT",
    "SNAPSHOT_TTL",
    "Proposal",
    "ProposalStatus",
    "Repository",
    "check_target_path",
    "latest_version",
    "proposal_status",
    "propose_document",
    "propose_metadata",
    "propose_role",
    "publish",
    "refresh_timestamp",
    "sign_proposal",
]

PROPOSAL_FORMAT = "brakepedal.governance-proposal"
_METADATA = re.compile(r"metadata/(?P<version>[1-9][0-9]{0,8})\.(?P<role>[a-z-]+)\.json")
_PROPOSAL_LIMITS = Limits(max_json_bytes=4_000_000)

Repository = Mapping[str, bytes]


def load_metadata(data: bytes, what: str) -> Metadata[Any]:
    """Metadata from bytes, with TUF's errors turned into ours."""
    try:
        return Metadata.from_bytes(data)
    except (DeserializationError, ValueError, KeyError, TypeError) as e:
        raise InputError("governance.metadata_invalid", f"{what}: not TUF metadata: {e}") from e


def latest_version(repository: Repository, role: str) -> int:
    """The highest published version of ``role`` (0 if none)."""
    versions = [
        int(m["version"])
        for name in repository
        if (m := _METADATA.fullmatch(name)) is not None and m["role"] == role
    ]
    return max(versions, default=0)


def _latest(repository: Repository, role: str) -> Metadata[Any] | None:
    version = latest_version(repository, role)
    if version == 0:
        return None
    name = f"metadata/{version}.{role}.json"
    return load_metadata(repository[name], name)


def trusted_agreement(repository: Repository) -> Agreement:
    """The agreement of the latest published root (and top-level targets)."""
    root = _latest(repository, "root")
    if root is None:
        raise InputError("governance.repository_empty", "the repository has no root yet")
    return agreement_of(root.signed)


@dataclass(frozen=True)
class Proposal:
    """The next version of one role's metadata, and the documents it adds."""

    name: str
    role: str
    metadata: Metadata[Any]
    documents: Mapping[str, bytes] = field(default_factory=dict)
    description: str = ""

    def to_bytes(self) -> bytes:
        document = {
            "format": PROPOSAL_FORMAT,
            "name": self.name,
            "role": self.role,
            "description": self.description,
            "metadata": self.metadata.to_dict(),
            "documents": {
                p: base64.b64encode(d).decode() for p, d in sorted(self.documents.items())
            },
        }
        return json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> Proposal:
        document = parse_json_object(data, limits=_PROPOSAL_LIMITS, what="proposal")
        if document.get("format") != PROPOSAL_FORMAT:
            raise InputError("proposal.format_invalid", f"not a {PROPOSAL_FORMAT}")
        try:
            return cls(
                name=str(document["name"]),
                role=str(document["role"]),
                metadata=Metadata.from_dict(document["metadata"]),
                documents={
                    str(p): base64.b64decode(d, validate=True)
                    for p, d in document["documents"].items()
                },
                description=str(document.get("description", "")),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise InputError("proposal.invalid", f"proposal cannot be read: {e!r}") from e


def propose_metadata(name: str, metadata: Metadata[Any], *, description: str = "") -> Proposal:
    """A proposal for root or top-level targets metadata (built by the agreement module)."""
    role = metadata.signed.type
    if role not in ("root", "targets"):
        raise InputError("proposal.role_invalid", f"only root or targets, not {role}")
    return Proposal(name, role, metadata, {}, description)


def propose_role(name: str, role: str, *, expires: datetime) -> Proposal:
    """Version 1 of a delegated role, empty: published right after the top-level targets so
    that every role is in the snapshot from the start. A view refuses a snapshot that lacks a
    role, so the operator cannot hide a role's orders by leaving it out (ADR 0007)."""
    if role not in DELEGATED_ROLES:
        raise InputError("proposal.role_invalid", f"{role} is not a delegated role")
    return Proposal(name, role, Metadata(Targets(version=1, expires=utc_datetime(expires))), {})


def propose_document(
    repository: Repository,
    name: str,
    path: str,
    document: bytes,
    *,
    expires: datetime,
    description: str = "",
    attachments: Mapping[str, bytes] | None = None,
) -> Proposal:
    """Propose adding ``document`` at ``path`` (and any ``attachments``, such as the policy file
    a policy version names) to the role that may sign that path."""
    role = role_for_path(path)
    files = {path: document, **(attachments or {})}
    for each in files:
        if role_for_path(each) != role:
            raise InputError("proposal.role_invalid", f"{each} is not signed by the {role} role")
        if f"targets/{each}" in repository:
            raise InputError("proposal.path_taken", f"a document is already published at {each}")
    current = _latest(repository, role)
    if current is None:
        signed = Targets(version=1, expires=utc_datetime(expires))
    else:
        signed = current.signed
        signed.version += 1
        signed.expires = utc_datetime(expires)
    for each, data in files.items():
        signed.targets[each] = TargetFile.from_data(each, data, ["sha256"])
    return Proposal(name, role, Metadata(signed), files, description)


def sign_proposal(proposal: Proposal, signer: Signer) -> Proposal:
    """``proposal`` with one more signature (by ``signer``; re-signing replaces its own)."""
    proposal.metadata.sign(signer, append=True)
    return proposal


@dataclass(frozen=True)
class ProposalStatus:
    """Who signed a proposal, who did not, and whether it meets its quorum."""

    role: str
    version: int
    threshold: int
    signed: tuple[str, ...]
    unsigned: tuple[str, ...]
    verified: bool

    @property
    def missing(self) -> int:
        return 0 if self.verified else max(1, self.threshold - len(self.signed))


def _verification(
    repository: Repository, proposal: Proposal
) -> VerificationResult | RootVerificationResult:
    md = proposal.metadata
    try:
        if proposal.role == "root":
            previous = _latest(repository, "root")
            new_root: Root = md.signed
            return new_root.get_root_verification_result(
                previous.signed if previous is not None else None, md.signed_bytes, md.signatures
            )
        delegator = _latest(repository, "root" if proposal.role == "targets" else "targets")
        if delegator is None:
            raise InputError(
                "governance.repository_empty", f"nothing delegates {proposal.role} yet"
            )
        result: VerificationResult = delegator.signed.get_verification_result(
            proposal.role, md.signed_bytes, md.signatures
        )
    except ValueError as e:
        raise InputError("proposal.role_invalid", f"{proposal.name}: {e}") from e
    return result


def proposal_status(repository: Repository, proposal: Proposal) -> ProposalStatus:
    """The quorum status of ``proposal`` against the published delegator."""
    result = _verification(repository, proposal)
    agreement = _agreement_for(repository, proposal)

    def names(keys: Mapping[str, Any]) -> tuple[str, ...]:
        return tuple(sorted(str(agreement.party_of(k) or k[:16]) for k in keys))

    threshold = (
        max(result.first.threshold, result.second.threshold)
        if isinstance(result, RootVerificationResult)
        else result.threshold
    )
    return ProposalStatus(
        role=proposal.role,
        version=proposal.metadata.signed.version,
        threshold=threshold,
        signed=names(result.signed),
        unsigned=names(result.unsigned),
        verified=result.verified,
    )


def _agreement_for(repository: Repository, proposal: Proposal) -> Agreement:
    if proposal.role == "root" and latest_version(repository, "root") == 0:
        return agreement_of(proposal.metadata.signed)
    return trusted_agreement(repository)


def _check_publishable(repository: Repository, proposal: Proposal) -> None:
    status = proposal_status(repository, proposal)
    if not status.verified:
        raise TrustError(
            "governance.quorum_not_met",
            f"{proposal.name}: {len(status.signed)} of {status.threshold} signatures "
            f"({', '.join(status.signed) or 'none'}); missing {status.missing}",
        )
    _check_documents(repository, proposal)
    expected = latest_version(repository, proposal.role) + 1
    if proposal.metadata.signed.version != expected:
        raise InputError(
            "governance.proposal_stale",
            f"{proposal.name}: {proposal.role} version {proposal.metadata.signed.version}, "
            f"but the next version is {expected}; propose again on top of the published one",
        )


def check_target_path(path: str) -> None:
    """Refuse target paths that could name a file outside ``targets/``."""
    parts = path.split("/")
    if path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        raise InputError(
            "proposal.path_invalid", f"target path {path!r} is not a plain relative path"
        )


def _check_documents(repository: Repository, proposal: Proposal) -> None:
    """The documents a proposal carries are exactly the new targets its signatures cover, and
    every target it signs is one a view accepts: a plain path its role may sign, bytes that
    match the signed hash, a document that parses and sits at its own path (an order within
    the agreement's longest sunset), a policy version whose policy file is signed alongside.

    Without this, a role could publish what no view accepts: the permit authority alone,
    junk at ``permits/``, which the view must then drop.
    """
    if proposal.role in ("root", "targets"):
        if proposal.documents:
            raise InputError("proposal.documents_unsigned", f"{proposal.role} carries no documents")
        return
    signed: Targets = proposal.metadata.signed
    for path in sorted(signed.targets):
        check_target_path(path)
        if role_for_path(path) != proposal.role:
            raise InputError("proposal.role_invalid", f"{path} is not signed by {proposal.role}")
    new = {p for p in signed.targets if f"targets/{p}" not in repository}
    if set(proposal.documents) != new:
        raise InputError(
            "proposal.documents_unsigned",
            f"{proposal.name}: documents {sorted(proposal.documents)} are not the new signed "
            f"targets {sorted(new)}",
        )
    max_sunset = trusted_agreement(repository).max_sunset
    files: dict[str, bytes] = {}
    for path, target in sorted(signed.targets.items()):
        data = proposal.documents[path] if path in new else repository[f"targets/{path}"]
        try:
            target.verify_length_and_hashes(data)
        except LengthOrHashMismatchError as e:
            raise TrustError("governance.document_mismatch", f"{path}: {e}") from e
        try:
            document = document_at(path, data, max_sunset=max_sunset)
        except BrakepedalError as e:
            raise type(e)(e.reason, f"{proposal.name}: {path}: {e.message}") from e
        files[path] = data
        if isinstance(document, PolicyVersion):
            _check_policy_file(document, files, signed, proposal, repository)


def _check_policy_file(
    version: PolicyVersion,
    files: Mapping[str, bytes],
    signed: Targets,
    proposal: Proposal,
    repository: Repository,
) -> None:
    path = policy_file_path(version)
    data = proposal.documents.get(path, repository.get(f"targets/{path}"))
    if path not in signed.targets or data is None:
        raise TrustError(
            "governance.file_missing",
            f"{proposal.name}: {version.target_path} names {path}, unsigned",
        )
    if hashlib.sha256(data).hexdigest() != version.content_sha256:
        raise TrustError(
            "governance.document_mismatch", f"{path} is not the file {version.target_path} names"
        )


#: How long a snapshot the operator signs is valid; its heartbeat re-signs it at half of this.
SNAPSHOT_TTL = timedelta(days=30)


def publish(
    repository: Repository,
    proposal: Proposal,
    *,
    operator: Signer,
    at: datetime,
    timestamp_ttl: timedelta = timedelta(days=1),
    snapshot_ttl: timedelta = SNAPSHOT_TTL,
) -> dict[str, bytes]:
    """The files publishing ``proposal`` writes: its metadata, documents, snapshot, timestamp.

    Raises:
        TrustError: ``governance.quorum_not_met``.
        InputError: ``governance.proposal_stale`` for a proposal built on an older version.
    """
    at = utc_datetime(at)
    _check_publishable(repository, proposal)
    version = proposal.metadata.signed.version
    files = {f"metadata/{version}.{proposal.role}.json": proposal.metadata.to_bytes()}
    files |= {f"targets/{path}": data for path, data in proposal.documents.items()}
    if proposal.role == "root":
        return files
    merged = {**repository, **files}
    return files | _new_snapshot(merged, operator, at, timestamp_ttl, snapshot_ttl)


def _new_snapshot(
    repository: Repository, operator: Signer, at: datetime, ttl: timedelta, snapshot_ttl: timedelta
) -> dict[str, bytes]:
    """A snapshot of every role's newest version in ``repository``, and its timestamp."""
    roles = {
        m["role"]
        for name in repository
        if (m := _METADATA.fullmatch(name)) and m["role"] not in ("root", "snapshot", "timestamp")
    }
    meta = {f"{role}.json": MetaFile(latest_version(repository, role)) for role in sorted(roles)}
    return _snapshot_of(repository, meta, operator, at, ttl=ttl, snapshot_ttl=snapshot_ttl)


def _snapshot_of(
    repository: Repository,
    meta: dict[str, MetaFile],
    operator: Signer,
    at: datetime,
    *,
    ttl: timedelta,
    snapshot_ttl: timedelta,
) -> dict[str, bytes]:
    """The next snapshot over ``meta``, valid ``snapshot_ttl`` from ``at``, and its timestamp."""
    version = latest_version(repository, "snapshot") + 1
    snapshot = Metadata(Snapshot(version=version, expires=at + snapshot_ttl, meta=meta))
    snapshot.sign(operator)
    files = {f"metadata/{version}.snapshot.json": snapshot.to_bytes()}
    return files | _timestamp({**repository, **files}, operator, at, ttl)


def _timestamp(
    repository: Repository, operator: Signer, at: datetime, ttl: timedelta
) -> dict[str, bytes]:
    snapshot_version = latest_version(repository, "snapshot")
    version = latest_version(repository, "timestamp") + 1
    timestamp = Metadata(
        Timestamp(
            version=version,
            expires=utc_datetime(at) + ttl,
            snapshot_meta=MetaFile(snapshot_version),
        )
    )
    timestamp.sign(operator)
    data = timestamp.to_bytes()
    # Versioned for the log and for rollback tests; timestamp.json is what clients fetch.
    return {f"metadata/{version}.timestamp.json": data, "metadata/timestamp.json": data}


def refresh_timestamp(
    repository: Repository,
    *,
    operator: Signer,
    at: datetime,
    ttl: timedelta = timedelta(days=1),
    snapshot_ttl: timedelta = SNAPSHOT_TTL,
) -> dict[str, bytes]:
    """The operator's freshness heartbeat: a new timestamp over the current snapshot.

    When the snapshot has less than half of ``snapshot_ttl`` left at ``at``, a new snapshot
    of the same roles' versions (the next version, expiring ``snapshot_ttl`` after ``at``)
    comes first, and the timestamp names it: without it, weeks without a proposal would
    leave every view with an expired snapshot (``governance.expired``) however often the
    timestamp was refreshed. The parties' own metadata expires on their schedule, not here.
    """
    current = _latest(repository, "snapshot")
    if current is None:
        raise InputError("governance.repository_empty", "nothing to timestamp yet")
    moment = utc_datetime(at)
    if current.signed.expires - moment >= snapshot_ttl / 2:
        return _timestamp(repository, operator, moment, ttl)
    # The role versions the current snapshot lists, not the files lying in the repository: a
    # role file written without a publication (a crash between writes) is not published here.
    meta = dict(current.signed.meta)
    return _snapshot_of(repository, meta, operator, moment, ttl=ttl, snapshot_ttl=snapshot_ttl)


def signer_names(agreement: Agreement, signatures: Mapping[str, Any]) -> tuple[SignatoryId, ...]:
    """The parties behind ``signatures``' keyids (unknown keys are left out)."""
    return tuple(sorted(p for k in signatures if (p := agreement.party_of(k)) is not None))
