"""A governance world published through a registry's HTTP API.

:class:`RegistryWorld` is the governance test world (``tests/unit/governance/world.py``: seven
parties, the permit authority, three witnesses) with two changes, because the agreement names
the log and the operator: its log is the registry's (origin :data:`ORIGIN`, key
:data:`LOG_SIGNER`), and its operator key is the one the registry signs snapshot and timestamp
with (``RegistryConfig.governance_operator``). Proposals are signed here and published by
POSTing them to the registry, the operator's timestamp is refreshed through the admin endpoint,
and the witnesses cosign the registry's checkpoint through ``/v1/log/cosignatures``. The
registry's clock is :attr:`RegistryWorld.clock`, so publication times are explicit as in
the governance tests. (The in-memory log of :class:`World`, and its ``checkpoint`` and
``evidence``, play no part here: use :meth:`RegistryWorld.witness` and
:meth:`RegistryWorld.registry_evidence`.)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import httpx

from brakepedal.governance.documents import PauseOrder
from brakepedal.governance.repository import Proposal
from brakepedal.governance.view import GovernanceView, LogEvidence
from brakepedal.model.types import Flop, OrderId
from brakepedal.registry.service import Registry
from brakepedal.tlog.note import Note
from tests.unit.governance.world import T0, World
from tests.unit.registry.conftest import LOG_SIGNER, ORIGIN, Server, make_registry

__all__ = ["T0", "RegistryWorld", "SettableClock", "pause_order"]


class SettableClock:
    """The registry's clock: reads what the test set."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def pause_order(order_id: str, start: datetime, end: datetime) -> PauseOrder:
    return PauseOrder(
        order_id=OrderId(order_id),
        threshold_flop=Flop(10**25),
        jurisdictions=frozenset({"treaty-parties"}),
        effective_from=start,
        sunset=end,
        grace_seconds=600,
        reason="frontier training pause",
    )


@dataclass
class RegistryWorld(World):
    """The governance world, with the registry's log and operator key (see the module)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.log_signer = LOG_SIGNER
        self.agreement = replace(
            self.agreement, log_origin=ORIGIN, log_vkey=LOG_SIGNER.verifier().to_vkey()
        )
        self.clock = SettableClock(T0)
        self._http: httpx.Client | None = None
        self._admin = ""

    # ------------------------------------------------------------------ the registry

    def open_registry(self, url: str, **overrides: Any) -> Registry:
        """A registry on ``url`` whose governance operator is this world's operator and which
        takes cosignatures from this world's witnesses."""
        settings: dict[str, Any] = {
            "governance_operator": self.operator,
            "witnesses": [w.verifier() for w in self.witnesses],
            "now": self.clock,
        }
        return make_registry(url, **(settings | overrides))

    def attach(self, registry: Registry, server: Server) -> None:
        """Publish through ``server`` from now on (with an admin credential of ``registry``)."""
        self._http = server.client
        self._admin = registry.add_credential("governance-admin", "admin")

    @property
    def http(self) -> httpx.Client:
        assert self._http is not None, "attach() the world to a registry first"
        return self._http

    def sync(self) -> dict[str, bytes]:
        """The registry's governance files, fetched over HTTP, as this world's files."""
        names = self.http.get("/v1/governance/files").json()["files"]
        self.files = {name: self.http.get(f"/v1/governance/files/{name}").content for name in names}
        return self.files

    def _fetch(self, published: dict[str, int]) -> dict[str, bytes]:
        """Fetch what the registry says it published (and the timestamp alias) into files."""
        names = list(published)
        if any(n.endswith(".timestamp.json") for n in names):
            names.append("metadata/timestamp.json")
        new = {name: self.http.get(f"/v1/governance/files/{name}").content for name in names}
        self.files.update(new)
        self.entries.update(published)
        return new

    # ------------------------------------------------------------------ the workflow

    def post(self, proposal: Proposal, at: datetime = T0) -> httpx.Response:
        """POST ``proposal`` with the registry's clock at ``at``; the answer as it came."""
        self.clock.moment = at
        return self.http.post("/v1/governance/proposals", content=proposal.to_bytes())

    def publish(self, proposal: Proposal, at: datetime = T0) -> dict[str, bytes]:
        answer = self.post(proposal, at)
        assert answer.status_code == 200, answer.text
        return self._fetch(answer.json()["published"])

    def heartbeat(self, at: datetime) -> None:
        self.clock.moment = at
        answer = self.http.post(
            "/v1/governance/timestamp", headers={"Authorization": f"Bearer {self._admin}"}
        )
        assert answer.status_code == 200, answer.text
        self._fetch(answer.json()["published"])

    def witness(self, at: datetime = T0, witnesses: int | None = None) -> bytes:
        """The first ``witnesses`` witnesses (default: the threshold) each cosign the registry's
        newest checkpoint and POST their cosignature; the merged note the registry returns."""
        note = Note.from_bytes(self.http.get("/v1/log/checkpoint").content)
        merged = note.to_bytes()
        count = self.witness_threshold if witnesses is None else witnesses
        for witness in self.witnesses[:count]:
            line = witness.cosign(note.text, int(at.timestamp()))
            own = Note(note.text, (*note.signatures, line)).to_bytes()
            answer = self.http.post("/v1/log/cosignatures", content=own)
            assert answer.status_code == 200, answer.text
            merged = answer.content
        return merged

    def registry_evidence(self) -> LogEvidence:
        answer = self.http.get("/v1/governance/evidence")
        assert answer.status_code == 200, answer.text
        return LogEvidence.from_bytes(answer.content)

    def view(self, at: datetime = T0, *, heartbeat: bool = True, **kwargs: Any) -> GovernanceView:
        """The view at ``at`` of the files fetched from the registry (as of the last publish,
        heartbeat or :meth:`sync`) and the registry's evidence; by default the operator
        refreshes the timestamp and the witnesses cosign the newest checkpoint first."""
        if heartbeat:
            self.heartbeat(at)
            self.witness(at)
        return GovernanceView.load(
            trusted_root=self.files["metadata/1.root.json"],
            repository=kwargs.pop("repository", self.files),
            evidence=kwargs.pop("evidence", None) or self.registry_evidence(),
            at=at,
            **kwargs,
        )
