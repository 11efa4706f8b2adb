"""A whole audit run over a registry that publishes governance: the auditor verifies the
governance view from the agreement's root, and holds the log to every published policy.

The registry serves the parties' repository (``tests/unit/registry/governance_world.py``),
devices report through it, the witnesses cosign, and :class:`Auditor` runs as ``audit run``
does, with the agreement's root metadata as its only governance input.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from brakepedal.audit.auditor import AuditConfig, Auditor, AuditResult
from brakepedal.audit.source import RegistrySource
from brakepedal.audit.state import AuditState
from brakepedal.model.types import JobId
from brakepedal.registry.service import Registry
from tests.unit.audit.test_policies import PRESETS, _publish_policy
from tests.unit.registry.conftest import LOG_SIGNER, ORIGIN, Device, Server, batch
from tests.unit.registry.governance_world import T0, RegistryWorld

MINUTE = timedelta(minutes=1)
#: The draft treaty's prohibition, in force and at a threshold one report passes.
TINY_BAN = (
    (PRESETS / "draft-treaty.toml")
    .read_bytes()
    .replace(b'id = "draft-treaty"', b'id = "tiny-ban"', 1)
    .replace(b'status = "draft"', b'status = "in_force"', 1)
    .replace(b'threshold_flop = "1e24"', b'threshold_flop = "1e15"', 1)
)


@dataclass
class Governed:
    world: RegistryWorld
    registry: Registry
    server: Server
    state_dir: Path

    def publish_policy(self, policy_id: str, text: bytes) -> None:
        _publish_policy(self.world, policy_id, 1, text)  # posted: RegistryWorld.publish

    def train(self, windows: int) -> None:
        """A device enrolls and reports ``windows`` five-minute windows of training from T0."""
        gpu = Device("gpu-0", start=T0)
        self.world.clock.moment = T0 + windows * 5 * MINUTE
        client = self.server.client
        assert client.post("/v1/devices", content=gpu.enrolment()).status_code == 200
        reports = [gpu.report(job=JobId("train-1")) for _ in range(windows)]
        answer = client.post("/v1/reports", content=batch(*reports))
        assert answer.status_code == 200, answer.text
        assert {r["status"] for r in answer.json()["results"]} == {"accepted"}

    def audit(self, at_minutes: int) -> AuditResult:
        at = T0 + at_minutes * MINUTE
        self.world.heartbeat(at)
        self.world.witness(at)
        config = AuditConfig(
            origin=ORIGIN,
            log_key=LOG_SIGNER.verifier(),
            witnesses=tuple(w.verifier() for w in self.world.witnesses),
            witness_threshold=self.world.witness_threshold,
            trusted_root=self.world.files["metadata/1.root.json"],
        )
        state = AuditState(self.state_dir)
        source = RegistrySource(self.server.url, self.registry.add_credential("a", "auditor"))
        try:
            return Auditor(config, state).run(source, at=at)
        finally:
            source.close()
            state.close()

    def context(self) -> dict[str, object]:
        state = AuditState(self.state_dir)
        try:
            context: dict[str, object] = state.last_run()["context"]
            return context
        finally:
            state.close()


@pytest.fixture
def governed(registry_url: str, tmp_path: Path) -> Iterator[Governed]:
    world = RegistryWorld()
    registry = world.open_registry(registry_url)
    server = Server(registry)
    world.attach(registry, server)
    world.bootstrap()
    yield Governed(world, registry, server, tmp_path / "audit-state")
    server.stop()
    registry.close()


def test_every_published_policy_is_evaluated_in_a_whole_run(governed: Governed) -> None:
    governed.publish_policy("pause", (PRESETS / "pause.toml").read_bytes())
    governed.publish_policy("tiny-ban", TINY_BAN)
    governed.train(windows=3)
    result = governed.audit(at_minutes=20)
    policies = governed.context()["policies"]
    assert isinstance(policies, list)
    assert [(p["id"], p["version"]) for p in policies] == [("pause", 1), ("tiny-ban", 1)]
    detectors = {f.detector for f in result.findings}
    assert "governance.unverifiable" not in detectors
    assert "policy.unevaluable" not in detectors
    # The ban breaks; the pause policy, silent without an order, finds nothing.
    banned = [f for f in result.findings if f.detector == "policy.prohibited"]
    assert banned
    assert {f.key["policy"] for f in banned} == {"tiny-ban"}
    # No device was silent longer than the strictest gap (15 minutes in both).
    assert "device.silent" not in detectors


def test_without_published_policies_the_log_is_held_to_none(governed: Governed) -> None:
    governed.train(windows=3)
    result = governed.audit(at_minutes=20)
    assert governed.context().get("policies", []) == []
    assert not any(f.detector.startswith("policy.") for f in result.findings)
