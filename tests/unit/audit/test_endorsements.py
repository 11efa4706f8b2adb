"""The auditor verifies every logged endorsement chain again, under roots it trusts itself."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from brakepedal.audit.auditor import AuditResult
from brakepedal.audit.findings import Finding, Severity
from brakepedal.audit.report import render_report
from brakepedal.audit.state import SCHEMA_VERSION, AuditState
from brakepedal.wire.endorsement import Manufacturer
from tests.unit.audit.conftest import World, quiet
from tests.unit.registry.conftest import ACCELERATOR, Device

NOW = datetime.now(UTC)
TRUSTED = Manufacturer.generate("Trusted Co", now=NOW - timedelta(days=1))
#: A CA the registry was configured to trust and the auditor was not.
OTHER = Manufacturer.generate("Other Co", now=NOW - timedelta(days=1))
OTHER_ACCELERATOR = "amd-instinct-mi300x"


@pytest.fixture
def world(registry_url: str, tmp_path: Path) -> Iterator[World]:
    opened = World(
        registry_url,
        tmp_path / "audit-state",
        manufacturer_roots=[TRUSTED.root_pem, OTHER.root_pem],
        allow_software_keys=True,
    )
    yield opened
    opened.close()


def _chain(
    ca: Manufacturer, gpu: Device, serial: str, accelerator: str = ACCELERATOR
) -> list[bytes]:
    return ca.endorse(
        gpu.signer.public_key, serial=serial, accelerator=accelerator, now=NOW - timedelta(hours=1)
    )


def _fleet(world: World) -> None:
    """One device endorsed by each CA, two with software keys; every one reports."""
    for name, ca in (("gpu-trusted", TRUSTED), ("gpu-other", OTHER)):
        gpu = Device(name)
        answer = world.server.client.post(
            "/v1/devices",
            content=gpu.enrolment(chain=_chain(ca, gpu, serial=f"SN-{name}")),
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["trust_level"] == "manufacturer"
        world.devices[name] = gpu
    world.enrol("gpu-soft-1", operator="lab-b")
    world.enrol("gpu-soft-2", operator="lab-b")
    world.report_all(rounds=2)


def _by_detector(result: AuditResult, detector: str) -> list[Finding]:
    return [f for f in result.findings if f.detector == detector]


def _context(world: World) -> dict[str, object]:
    state = AuditState(world.state_dir)
    try:
        context: dict[str, object] = state.last_run()["context"]["endorsements"]
        return context
    finally:
        state.close()


def test_a_chain_to_a_root_the_auditor_does_not_trust_is_a_finding(world: World) -> None:
    _fleet(world)
    result = world.audit(at=quiet(world), manufacturer_roots=(TRUSTED.root_pem,))
    (invalid,) = _by_detector(result, "device.endorsement_invalid")
    assert invalid.severity is Severity.HIGH
    assert invalid.subject == "device:gpu-other"
    assert invalid.figures["reason"] == "enrolment.root_untrusted"
    # The finding carries the enrolment, proven in the log the auditor verified.
    (cited,) = invalid.entries
    assert cited.role == "the enrolment and its chain"
    assert cited.tree_size == result.tree_size
    (unendorsed,) = _by_detector(result, "device.unendorsed")
    assert unendorsed.severity is Severity.MEDIUM
    assert unendorsed.subject == "entity:lab-b"
    assert unendorsed.figures["devices"] == 2
    assert len(unendorsed.entries) == 2
    assert _context(world) == {
        "checked": True,
        "endorsed": 1,
        "software": 2,
        "invalid": 1,
        "unchecked": 0,
    }


def test_chains_to_trusted_roots_raise_nothing(world: World) -> None:
    _fleet(world)
    result = world.audit(at=quiet(world), manufacturer_roots=(TRUSTED.root_pem, OTHER.root_pem))
    assert _by_detector(result, "device.endorsement_invalid") == []
    assert [f.subject for f in _by_detector(result, "device.unendorsed")] == ["entity:lab-b"]


def test_without_roots_chains_are_not_checked_and_the_report_says_so(world: World) -> None:
    _fleet(world)
    result = world.audit(at=quiet(world))
    assert not {"device.endorsement_invalid", "device.unendorsed"} & {
        f.detector for f in result.findings
    }
    assert _context(world) == {"checked": False}
    state = AuditState(world.state_dir)
    try:
        page = render_report(state, world.state_dir / "report")
    finally:
        state.close()
    assert "not checked (the auditor was given no manufacturer roots)" in page.read_text()


def test_chains_are_verified_at_the_enrolment_not_at_the_audit(world: World) -> None:
    """A certificate that has expired since the enrolment does not make it invalid."""
    gpu = Device("gpu-short")
    chain = TRUSTED.endorse(
        gpu.signer.public_key, serial="SN-short", accelerator=ACCELERATOR, now=NOW, days=1
    )
    answer = world.server.client.post("/v1/devices", content=gpu.enrolment(chain=chain))
    assert answer.status_code == 200, answer.text
    result = world.audit(at=NOW + timedelta(days=30), manufacturer_roots=(TRUSTED.root_pem,))
    assert _by_detector(result, "device.endorsement_invalid") == []
    assert _context(world)["endorsed"] == 1


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("another-accelerator", "enrolment.accelerator_mismatch"),
        ("another-key", "enrolment.key_mismatch"),
        ("forged-root", "enrolment.signature_invalid"),
    ],
)
def test_an_enrolment_a_rogue_registry_logged_is_a_finding(
    world: World, name: str, reason: str
) -> None:
    """Entries appended behind the registry's checks (as a registry that lies would)."""
    gpu = Device(f"gpu-{name}")
    if name == "another-accelerator":
        chain = _chain(TRUSTED, gpu, serial="SN-1", accelerator=OTHER_ACCELERATOR)
    elif name == "another-key":
        chain = _chain(TRUSTED, Device("gpu-elsewhere"), serial="SN-1")
    else:
        # A CA with the trusted one's name, not its key: its intermediate names the trusted
        # root as issuer, and the root's key did not sign it.
        forged = Manufacturer.generate("Trusted Co", now=NOW - timedelta(days=1))
        chain = _chain(forged, gpu, serial="SN-1")
    world.registry.store.append([gpu.enrolment(chain=chain)])
    result = world.audit(at=NOW, manufacturer_roots=(TRUSTED.root_pem,))
    (invalid,) = _by_detector(result, "device.endorsement_invalid")
    assert invalid.subject == f"device:gpu-{name}"
    assert invalid.figures["reason"] == reason


def test_a_state_without_chains_is_migrated_and_counts_its_devices_unchecked(
    world: World,
) -> None:
    _fleet(world)
    world.audit(at=quiet(world))
    # Rewrite the state as a version-2 auditor left it: no chain column.
    path = world.state_dir / "audit.sqlite3"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("ALTER TABLE devices DROP COLUMN chain")
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
    state = AuditState(world.state_dir)
    try:
        assert state.meta("schema") == str(SCHEMA_VERSION)
        assert state.meta("chains_incomplete") == "1"
        assert {d.chain for d in state.devices().values()} == {None}
    finally:
        state.close()
    # A device enrolled after the migration has its chain kept and checked.
    late = Device("gpu-late")
    answer = world.server.client.post(
        "/v1/devices", content=late.enrolment(chain=_chain(OTHER, late, serial="SN-late"))
    )
    assert answer.status_code == 200, answer.text
    result = world.audit(at=quiet(world), manufacturer_roots=(TRUSTED.root_pem,))
    assert [f.subject for f in _by_detector(result, "device.endorsement_invalid")] == [
        "device:gpu-late"
    ]
    assert _context(world) == {
        "checked": True,
        "endorsed": 0,
        "software": 0,
        "invalid": 1,
        "unchecked": 4,
    }


def test_the_chain_is_kept_as_logged(world: World) -> None:
    _fleet(world)
    world.audit(at=quiet(world))
    state = AuditState(world.state_dir)
    try:
        devices = state.devices()
    finally:
        state.close()
    assert json.loads(devices["gpu-soft-1"].chain or "null") == []
    (leaf, intermediate) = json.loads(devices["gpu-trusted"].chain or "null")
    assert leaf.startswith("-----BEGIN CERTIFICATE-----")
    assert intermediate.encode() == TRUSTED.intermediate_pem
