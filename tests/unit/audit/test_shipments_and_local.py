"""``devices.unenrolled`` against manufacturer shipment counts, and the in-process registry
source (``LocalSource``) auditing the same log as the HTTP one, on both databases."""

from __future__ import annotations

from brakepedal.audit.auditor import Auditor
from brakepedal.audit.findings import Severity
from brakepedal.audit.source import BundleSource, ChallengeSource, LocalSource, RegistrySource
from brakepedal.audit.state import AuditState
from tests.unit.audit.conftest import World, detectors, quiet


def _fleet(world: World) -> None:
    for i in range(3):
        world.enrol(f"gpu-{i}", "lab-a")
    world.enrol("gpu-b", "lab-b")
    world.report_all(rounds=2)


def test_shipped_but_not_enrolled_devices_raise_a_finding(world: World) -> None:
    _fleet(world)
    result = world.audit(at=quiet(world), shipments={"lab-a": 5, "lab-b": 1})
    (finding,) = [f for f in result.findings if f.detector == "devices.unenrolled"]
    assert finding.subject == "entity:lab-a"
    assert finding.severity is Severity.HIGH
    assert finding.figures == {"shipped": 5, "enrolled": 3, "missing": 2}
    assert len(finding.entries) == 3  # the enrolments it counted, with inclusion proofs


def test_every_shipped_device_enrolled_raises_nothing(world: World) -> None:
    _fleet(world)
    result = world.audit(at=quiet(world), shipments={"lab-a": 3, "lab-b": 1, "lab-c": 0})
    assert "devices.unenrolled" not in detectors(result)


def test_the_in_process_source_gives_the_same_audit_as_http(world: World) -> None:
    _fleet(world)
    world.witness()
    at = quiet(world)
    local_state = AuditState(world.state_dir.parent / "local-state")
    try:
        local = Auditor(world.config(), local_state).run(LocalSource(world.registry), at=at)
    finally:
        local_state.close()
    remote = world.audit(at=at)
    assert (local.tree_size, local.root_hash, local.reports, local.witnessed_size) == (
        remote.tree_size,
        remote.root_hash,
        remote.reports,
        remote.witnessed_size,
    )
    assert [f.id for f in local.findings] == [f.id for f in remote.findings]


def test_registries_can_be_challenged_and_bundles_cannot() -> None:
    assert issubclass(LocalSource, ChallengeSource)
    assert issubclass(RegistrySource, ChallengeSource)
    assert not issubclass(BundleSource, ChallengeSource)
