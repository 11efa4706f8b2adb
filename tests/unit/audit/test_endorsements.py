"""The auditor verifies every logged endorsement chain again, under roots it trusts itself."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from brakepedal.audit import endorsements
from brakepedal.audit.auditor import AuditResult
from brakepedal.audit.findings import Finding, Severity
from brakepedal.audit.report import render_report
from brakepedal.audit.state import SCHEMA_VERSION, AuditState
from brakepedal.errors import InputError
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


def _fleet(world: World) -> dict[str, list[bytes]]:
    """One device endorsed by each CA, two with software keys; every one reports. The chains
    sent, by device."""
    chains = {}
    for name, ca in (("gpu-trusted", TRUSTED), ("gpu-other", OTHER)):
        gpu = Device(name)
        chains[name] = _chain(ca, gpu, serial=f"SN-{name}")
        answer = world.server.client.post("/v1/devices", content=gpu.enrolment(chain=chains[name]))
        assert answer.status_code == 200, answer.text
        assert answer.json()["trust_level"] == "manufacturer"
        world.devices[name] = gpu
    world.enrol("gpu-soft-1", operator="lab-b")
    world.enrol("gpu-soft-2", operator="lab-b")
    world.report_all(rounds=2)
    return chains


def _by_detector(result: AuditResult, detector: str) -> list[Finding]:
    return [f for f in result.findings if f.detector == detector]


def _context(world: World) -> dict[str, object]:
    state = AuditState(world.state_dir)
    try:
        context: dict[str, object] = state.last_run()["context"]["endorsements"]
        return context
    finally:
        state.close()


def _report(world: World) -> str:
    """The HTML report of the state's last run."""
    state = AuditState(world.state_dir)
    try:
        return render_report(state, world.state_dir / "report").read_text()
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
    assert "1 verified, 2 software keys, 1 invalid" in _report(world)


def test_roots_that_are_not_certificates_stop_the_run_instead_of_blaming_devices(
    world: World,
) -> None:
    _fleet(world)
    for roots in ((b"not a certificate",), (TRUSTED.root_pem + OTHER.root_pem,)):
        with pytest.raises(InputError) as raised:
            world.audit(at=quiet(world), manufacturer_roots=roots)
        assert raised.value.reason == "enrolment.certificate_invalid"
        assert "trusted root 0" in raised.value.message
    # Refused before the log was read: the state verified nothing.
    with closing(AuditState(world.state_dir)) as state:
        assert state.verified_size() == 0


def test_a_verifier_that_fails_unexpectedly_blames_no_device(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure the verifier does not name is the auditor's: one low finding, the chains
    unchecked, the run complete."""
    _fleet(world)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise ValueError("a parser change")

    monkeypatch.setattr(endorsements, "verify_endorsement", broken)
    result = world.audit(at=quiet(world), manufacturer_roots=(TRUSTED.root_pem,))
    assert _by_detector(result, "device.endorsement_invalid") == []
    (failed,) = _by_detector(result, "audit.endorsement_check_failed")
    assert failed.severity is Severity.LOW
    assert failed.figures["enrolments"] == 2
    assert "ValueError" in failed.summary
    assert _context(world) == {
        "checked": True,
        "endorsed": 0,
        "software": 2,
        "invalid": 0,
        "unchecked": 2,
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
    assert "not checked (the auditor was given no manufacturer roots)" in _report(world)


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
    # Enrolled without a chain, the software keys need none to be known as such.
    assert [f.subject for f in _by_detector(result, "device.unendorsed")] == ["entity:lab-b"]
    assert _context(world) == {
        "checked": True,
        "endorsed": 0,
        "software": 2,
        "invalid": 1,
        "unchecked": 2,
    }


def test_the_chain_is_kept_as_logged(world: World) -> None:
    chains = _fleet(world)
    world.audit(at=quiet(world))
    state = AuditState(world.state_dir)
    try:
        devices = state.devices()
    finally:
        state.close()
    assert json.loads(devices["gpu-soft-1"].chain or "null") == []
    kept = [pem.encode() for pem in json.loads(devices["gpu-trusted"].chain or "null")]
    assert kept == chains["gpu-trusted"]
    assert kept[1] == TRUSTED.intermediate_pem
