"""The signatories of a simulated world: seven parties, a permit authority, the registry's
governance operator key, and their TUF agreement; and publishing their decisions to an
in-process registry with its witnesses cosigning (what the demo does over HTTP).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import uvicorn

from brakepedal.crypto.keys import CryptoSigner, generate_ed25519
from brakepedal.governance.agreement import Agreement, Party, build_root, build_targets
from brakepedal.governance.repository import (
    Proposal,
    propose_document,
    propose_metadata,
    propose_role,
    sign_proposal,
)
from brakepedal.governance.view import GovernanceView, LogEvidence
from brakepedal.model.types import SignatoryId
from brakepedal.registry.app import create_app
from brakepedal.registry.service import Registry
from brakepedal.tlog.cosignature import Cosigner
from brakepedal.tlog.note import Note, NoteSigner

__all__ = [
    "ORDER_QUORUM",
    "Signatories",
    "SimClock",
    "serve_registry",
    "view_in_process",
    "witness_in_process",
]


@contextmanager
def serve_registry(registry: Registry) -> Iterator[str]:
    """Serve ``registry`` over HTTP on loopback (uvicorn, in a thread) while in the block; its
    base URL. The socket is bound before the server starts, so the port cannot be taken in
    between."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
        server = uvicorn.Server(
            uvicorn.Config(create_app(registry), host="127.0.0.1", port=port, log_level="error")
        )
    except BaseException:
        sock.close()
        raise
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    try:
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the simulated registry did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class SimClock:
    """A simulated world's clock, which its registry reads too."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


#: Of the seven parties, how many sign an order (the agreement's order threshold).
ORDER_QUORUM = 4


class Signatories:
    """The parties, the permit authority, the registry's operator key and the agreement."""

    def __init__(
        self,
        log_signer: NoteSigner,
        witnesses: list[Cosigner],
        start: datetime,
        origin: str,
        keys: Callable[[str], CryptoSigner] = lambda name: generate_ed25519(),
        *,
        horizon: timedelta = timedelta(days=365),
    ) -> None:
        #: How long the agreement, the roles and the documents are valid from ``start``: past
        #: the world's end, or the auditor's last run finds the metadata expired.
        self.horizon = horizon
        self.parties = {f"party-{i}": keys(f"party-{i}") for i in range(1, 8)}
        self.authority = {f"authority-{i}": keys(f"authority-{i}") for i in range(1, 3)}
        self.operator = keys("operator")
        self.start = start
        self.agreement = Agreement(
            parties=tuple(Party(SignatoryId(n), s.public_key) for n, s in self.parties.items()),
            policy_threshold=6,
            order_threshold=ORDER_QUORUM,
            permit_authority=tuple(
                Party(SignatoryId(n), s.public_key) for n, s in self.authority.items()
            ),
            permit_threshold=2,
            operator_keys=(self.operator.public_key,),
            witnesses=tuple((w.name, w.verifier().to_vkey()) for w in witnesses),
            witness_threshold=2,
            log_origin=origin,
            log_vkey=log_signer.verifier().to_vkey(),
            max_sunset=timedelta(days=180),
            expires=start + horizon,
        )
        self.files: dict[str, bytes] = {}

    def sign(self, proposal: Proposal, names: list[str]) -> Proposal:
        keys: dict[str, CryptoSigner] = self.parties | self.authority
        for name in names:
            proposal = sign_proposal(proposal, keys[name])
        return proposal

    def bootstrap_proposals(self, at: datetime) -> list[Proposal]:
        """Root, targets and the three roles, each signed by its quorum."""
        six = [f"party-{i}" for i in range(1, 7)]
        expires = at + self.horizon
        authority = list(self.authority)
        return [
            self.sign(propose_metadata("root-1", build_root(self.agreement)), six),
            self.sign(propose_metadata("targets-1", build_targets(self.agreement)), six),
            self.sign(propose_role("policies-1", "policies", expires=expires), six),
            self.sign(propose_role("orders-1", "orders", expires=expires), six[:ORDER_QUORUM]),
            self.sign(propose_role("permits-1", "permits", expires=expires), authority),
        ]

    def document(self, name: str, path: str, data: bytes, signers: list[str]) -> Proposal:
        """A governance document (order, permit, lift) signed by ``signers``."""
        proposal = propose_document(self.files, name, path, data, expires=self.start + self.horizon)
        return self.sign(proposal, signers)

    @property
    def trusted_root(self) -> bytes:
        return self.files["metadata/1.root.json"]


def witness_in_process(registry: Registry, witnesses: list[Cosigner], at: datetime) -> None:
    """The first two witnesses cosign the registry's newest checkpoint."""
    note = Note.from_bytes(registry.checkpoint())
    for witness in witnesses[:2]:
        line = witness.cosign(note.text, int(at.timestamp()))
        registry.add_cosignatures(Note(note.text, (*note.signatures, line)).to_bytes())


def view_in_process(registry: Registry, signatories: Signatories, at: datetime) -> GovernanceView:
    """The verified governance view an agent or gate would load at ``at``."""
    evidence = LogEvidence.from_bytes(registry.governance_evidence())
    return GovernanceView.load(
        trusted_root=signatories.trusted_root,
        repository=signatories.files,
        evidence=evidence,
        at=at,
    )
