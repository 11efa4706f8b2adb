"""A governance world for tests: parties, operator, log, witnesses, repository, view.

Everything is real: Ed25519 keys, TUF metadata signed through securesystemslib signers, a
transparency log (in memory), witness cosignatures. Time is explicit throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from brakepedal.crypto.keys import CryptoSigner, generate_ed25519
from brakepedal.governance.agreement import Agreement, Party, build_root, build_targets
from brakepedal.governance.repository import (
    Proposal,
    propose_document,
    propose_metadata,
    propose_role,
    publish,
    refresh_timestamp,
    sign_proposal,
)
from brakepedal.governance.view import GovernanceView, LogEvidence
from brakepedal.model.types import SignatoryId
from brakepedal.tlog import merkle
from brakepedal.tlog.checkpoint import Checkpoint
from brakepedal.tlog.cosignature import Cosigner
from brakepedal.tlog.log import TransparencyLog
from brakepedal.tlog.note import Note, NoteSigner
from brakepedal.tlog.proof import InclusionProof
from brakepedal.tlog.store import MemoryLogStore

T0 = datetime(2026, 12, 1, tzinfo=UTC)
ORIGIN = "gov.brakepedal.test/log"


def _party(name: str) -> tuple[Party, CryptoSigner]:
    signer = generate_ed25519()
    return Party(SignatoryId(name), signer.public_key), signer


@dataclass
class World:
    """Seven parties at 4 of 7 for orders, 6 of 7 for policy; two of three witnesses."""

    parties: int = 7
    order_threshold: int = 4
    policy_threshold: int = 6
    witness_count: int = 3
    witness_threshold: int = 2
    signers: dict[str, CryptoSigner] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    entries: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        members = [_party(f"party-{i}") for i in range(1, self.parties + 1)]
        authority = [_party(f"authority-{i}") for i in range(1, 3)]
        self.signers = {str(p.name): s for p, s in members + authority}
        self.operator = generate_ed25519()
        self.log_signer = NoteSigner(ORIGIN, generate_ed25519())
        self.witnesses = [
            Cosigner(f"witness-{i}", generate_ed25519()) for i in range(self.witness_count)
        ]
        self.log = TransparencyLog(MemoryLogStore(ORIGIN))
        self.agreement = Agreement(
            parties=tuple(p for p, _ in members),
            policy_threshold=self.policy_threshold,
            order_threshold=self.order_threshold,
            permit_authority=tuple(p for p, _ in authority),
            permit_threshold=2,
            operator_keys=(self.operator.public_key,),
            witnesses=tuple((w.name, w.verifier().to_vkey()) for w in self.witnesses),
            witness_threshold=self.witness_threshold,
            log_origin=ORIGIN,
            log_vkey=self.log_signer.verifier().to_vkey(),
            max_sunset=timedelta(days=180),
            expires=T0 + timedelta(days=365),
        )

    # ------------------------------------------------------------------ the workflow

    def sign(self, proposal: Proposal, *names: str) -> Proposal:
        for name in names:
            proposal = sign_proposal(proposal, self.signers[name])
        return proposal

    def publish(self, proposal: Proposal, at: datetime = T0) -> dict[str, bytes]:
        new = publish(self.files, proposal, operator=self.operator, at=at)
        self.record(new)
        return new

    def record(self, new: dict[str, bytes]) -> None:
        self.files.update(new)
        names = [n for n in sorted(new) if n != "metadata/timestamp.json"]
        for name, index in zip(names, self.log.append([new[n] for n in names]), strict=True):
            self.entries[name] = index

    def bootstrap(self) -> None:
        """Root v1, targets v1 and the empty delegated roles, each signed by its quorum."""
        quorum = [f"party-{i}" for i in range(1, self.policy_threshold + 1)]
        self.publish(self.sign(propose_metadata("root-1", build_root(self.agreement)), *quorum))
        self.publish(
            self.sign(propose_metadata("targets-1", build_targets(self.agreement)), *quorum)
        )
        expires = T0 + timedelta(days=365)
        self.publish(self.sign(propose_role("policies-1", "policies", expires=expires), *quorum))
        orders = quorum[: self.order_threshold]
        self.publish(self.sign(propose_role("orders-1", "orders", expires=expires), *orders))
        authority = ["authority-1", "authority-2"]
        self.publish(self.sign(propose_role("permits-1", "permits", expires=expires), *authority))

    def propose(self, name: str, document: Any, at: datetime = T0) -> Proposal:
        return propose_document(
            self.files,
            name,
            document.target_path,
            document.to_bytes(),
            expires=T0 + timedelta(days=365),
        )

    def heartbeat(self, at: datetime) -> None:
        self.record(refresh_timestamp(self.files, operator=self.operator, at=at))

    # ------------------------------------------------------------------ the log

    def checkpoint(self, witnesses: int | None = None, at: datetime = T0) -> bytes:
        """The log's latest checkpoint cosigned by the first ``witnesses`` witnesses."""
        note = Note.from_bytes(self.log.checkpoint(ORIGIN, self.log_signer))
        count = self.witness_threshold if witnesses is None else witnesses
        extra = tuple(w.cosign(note.text, int(at.timestamp())) for w in self.witnesses[:count])
        return Note(note.text, note.signatures + extra).to_bytes()

    def evidence(
        self, checkpoint: bytes | None = None, *, skip: tuple[str, ...] = ()
    ) -> LogEvidence:
        note = checkpoint if checkpoint is not None else self.checkpoint()
        size = Checkpoint.from_body(Note.from_bytes(note).text).size
        proofs = {}
        for name, index in self.entries.items():
            if index < size and name not in skip:
                hashes = tuple(self.log.inclusion_proof(index, size))
                proofs[name] = InclusionProof(
                    index, size, merkle.leaf_hash(self.log.entry(index)), hashes
                )
        return LogEvidence(note, proofs)

    def view(self, at: datetime = T0, *, heartbeat: bool = True, **kwargs: Any) -> GovernanceView:
        """The view at ``at``; by default the operator signs a fresh timestamp first."""
        if heartbeat:
            self.heartbeat(at)
        evidence = kwargs.pop("evidence", None) or self.evidence()
        return GovernanceView.load(
            trusted_root=self.files["metadata/1.root.json"],
            repository=kwargs.pop("repository", self.files),
            evidence=evidence,
            at=at,
            **kwargs,
        )
