"""Each detector, positive and negative, from real signed reports in a real registry's log.

Some defects an honest registry refuses at ingest (forks, replays, gaps, overlaps, forged
signatures). For those the test plays a registry that misbehaves behind its own API: the
device's real signed report is appended to the log directly, as a buggy or dishonest registry
would, and the auditor must catch what the registry let through.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest

from brakepedal.accounting.catalogue import default_catalogue
from brakepedal.audit import auditor
from brakepedal.audit.auditor import _Reader
from brakepedal.audit.detectors import Thresholds
from brakepedal.audit.findings import Severity
from brakepedal.crypto.dsse import parse_envelope
from brakepedal.crypto.keys import generate_ed25519
from brakepedal.policy.load import load_preset
from brakepedal.wire.report_format import GovernanceSeen
from tests.unit.audit.conftest import World, detectors, quiet
from tests.unit.registry.conftest import Device


def _honest(world: World, devices: int = 2, rounds: int = 3) -> list[Device]:
    gpus = [world.enrol(f"gpu-{i}", "lab-a") for i in range(devices)]
    world.report_all(rounds=rounds)
    return gpus


def test_honest_chains_raise_nothing(world: World) -> None:
    _honest(world)
    assert world.audit(at=quiet(world)).findings == ()


def test_fork_two_signed_reports_for_one_sequence(world: World) -> None:
    (gpu, _) = _honest(world)
    # The device's key signs a second, different report for its last sequence.
    twin = gpu.report(
        sequence=gpu.sequence - 1,
        previous=_previous_of(world, gpu, gpu.sequence - 1),
        window_start=gpu.start - timedelta(minutes=5),
        power=300.0,
        advance=False,
    )
    world.registry.store.append([twin])
    result = world.audit(at=quiet(world))
    forks = [f for f in result.findings if f.detector == "chain.fork"]
    assert len(forks) == 1
    assert forks[0].severity is Severity.CRITICAL
    assert forks[0].key == {"device": "gpu-0", "sequence": 2}
    assert len(forks[0].entries) == 2
    # The chain goes on from the second copy: a fork, not also a gap.
    twin_digest = hashlib.sha256(parse_envelope(twin).payload).hexdigest()
    world.registry.store.append([gpu.report(previous=twin_digest)])
    assert "chain.gap" not in detectors(world.audit(at=quiet(world)))


def test_replay_of_a_logged_report(world: World) -> None:
    (gpu, _) = _honest(world)
    envelope = gpu.report()
    assert world.post(envelope)[0]["status"] == "accepted"
    assert world.post(envelope)[0]["status"] == "duplicate"  # the honest registry dedupes
    assert "chain.replay" not in detectors(world.audit(at=quiet(world)))
    world.registry.store.append([envelope])
    result = world.audit(at=quiet(world))
    assert detectors(result) == ["chain.replay"]


def test_gap_a_report_missing_from_the_log(world: World) -> None:
    (gpu, _) = _honest(world)
    gpu.report()  # sequence 3 is produced but never reaches the log
    late = gpu.report()  # sequence 4
    world.registry.store.append([late])
    result = world.audit(at=quiet(world))
    gaps = [f for f in result.findings if f.detector == "chain.gap"]
    assert [g.figures["missing"] for g in gaps] == [1]
    assert gaps[0].key == {"device": "gpu-0", "sequence": 4}


def test_overlap_two_windows_of_one_device(world: World) -> None:
    (gpu, _) = _honest(world)
    clone = gpu.report(window_start=gpu.start - timedelta(minutes=2))
    world.registry.store.append([clone])
    result = world.audit(at=quiet(world))
    assert "chain.overlap" in detectors(result)


def test_unverifiable_a_forged_report_in_the_log(world: World) -> None:
    (gpu, _) = _honest(world)
    forged = gpu.report(signer=generate_ed25519())
    assert world.post(forged)[0]["reason"] == "ingest.signature_invalid"
    assert world.audit(at=quiet(world)).findings == ()  # refused, kept as evidence, not logged
    world.registry.store.append([forged])
    result = world.audit(at=quiet(world))
    (finding,) = [f for f in result.findings if f.detector == "entry.unverifiable"]
    assert finding.figures["reason"] == "audit.signature_invalid"


def test_silent_a_device_that_stopped_reporting(world: World) -> None:
    _honest(world)
    assert "device.silent" not in detectors(world.audit(at=quiet(world)))
    later = world.audit(at=quiet(world) + timedelta(hours=2))
    silent = [f for f in later.findings if f.detector == "device.silent"]
    assert sorted(str(f.key["device"]) for f in silent) == ["gpu-0", "gpu-1"]
    assert all(f.severity is Severity.HIGH and f.key["ongoing"] for f in silent)


def test_silent_a_gap_between_reports(world: World) -> None:
    (gpu,) = _honest(world, devices=1, rounds=1)
    gpu.start += timedelta(hours=1)  # an hour with no report
    world.report_all(rounds=1)
    result = world.audit(at=quiet(world))
    (finding,) = [f for f in result.findings if f.detector == "device.silent"]
    assert finding.severity is Severity.MEDIUM
    assert finding.figures["silent_seconds"] == 3600.0


@pytest.mark.parametrize(("watts", "found"), [(650, False), (2000, True)])
def test_energy_above_what_the_model_can_draw(world: World, watts: int, found: bool) -> None:
    (gpu,) = _honest(world, devices=1, rounds=1)
    report = gpu.report(job=None, energy_mj=watts * 300 * 1000)
    assert world.post(report)[0]["status"] == "accepted"  # under the registry's 10 kW bound
    assert ("counters.energy" in detectors(world.audit(at=quiet(world)))) is found


def test_energy_finding_states_joules_and_watts(world: World) -> None:
    (gpu,) = _honest(world, devices=1, rounds=1)
    # 2,000 W for the five-minute window: 600,000 J, i.e. 600,000,000 mJ as reported.
    assert world.post(gpu.report(job=None, energy_mj=2000 * 300 * 1000))[0]["status"] == (
        "accepted"
    )
    result = world.audit(at=quiet(world))
    (finding,) = [f for f in result.findings if f.detector == "counters.energy"]
    assert finding.figures["energy_mj"] == 600_000_000
    assert "600000 J in 300 s is 2000 W, over 1.5 x its 700 W TDP" in finding.summary


def _with_gap(minutes: int) -> Any:
    policy = load_preset("pause")
    accounting = policy.accounting.model_copy(update={"max_report_gap_minutes": minutes})
    return policy.model_copy(update={"accounting": accounting})


def test_silence_is_held_to_the_allowed_gap_of_the_policy_in_force(world: World) -> None:
    _honest(world, devices=1, rounds=2)
    assert load_preset("pause").accounting.max_report_gap_minutes == 15
    at = quiet(world) + timedelta(minutes=25)  # silent 26 minutes: over 15, under 30
    # Without a policy, the default allowed gap (30 minutes).
    assert "device.silent" not in detectors(world.audit(at=at))
    # The pause preset tolerates 15 minutes.
    found = world.audit(at=at, policy=load_preset("pause"))
    (silent,) = [f for f in found.findings if f.detector == "device.silent"]
    assert silent.rule == "an enrolled device reports at least every 0:15:00"
    assert silent.figures["silent_seconds"] == 26 * 60
    # A policy that tolerates an hour is held to its hour, not to the default.
    later = quiet(world) + timedelta(minutes=45)
    assert "device.silent" in detectors(world.audit(at=later))
    assert "device.silent" not in detectors(world.audit(at=later, policy=_with_gap(60)))
    # Thresholds the auditor is configured with win over the policy's.
    configured = Thresholds(allowed_gap=timedelta(minutes=30))
    kept = world.audit(at=at, policy=load_preset("pause"), thresholds=configured)
    assert "device.silent" not in detectors(kept)


def test_unattributed_heavy_use(world: World) -> None:
    world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=3, job=None)
    result = world.audit(at=quiet(world))
    assert detectors(result) == ["usage.unattributed"]


def test_governance_state_not_yet_public(world: World) -> None:
    (gpu,) = _honest(world, devices=1, rounds=1)
    size = world.registry.store.size()
    honest = gpu.report(
        job=None, governance=GovernanceSeen(timestamp_version=1, checkpoint_size=size)
    )
    ahead = gpu.report(
        job=None, governance=GovernanceSeen(timestamp_version=2, checkpoint_size=size + 50)
    )
    assert [r["status"] for r in world.post(honest, ahead)] == ["accepted", "accepted"]
    result = world.audit(at=quiet(world))
    (finding,) = [f for f in result.findings if f.detector == "governance.not_public"]
    assert finding.key == {"device": "gpu-0", "sequence": 2}


def _previous_of(world: World, gpu: Device, sequence: int) -> str:
    """The digest the device's report ``sequence`` names as its predecessor (from the log)."""
    from brakepedal.crypto.dsse import parse_envelope  # noqa: PLC0415
    from brakepedal.wire.report_format import parse_report  # noqa: PLC0415

    _, envelope = world.registry.report(gpu.name, sequence)
    return parse_report(parse_envelope(envelope).payload).previous


_SPLIT_POLICY = """
format = "brakepedal.policy"
id = "test-group-cap"
version = 1
title = "test: no ownership group trains above a cap"
status = "in_force"
jurisdiction = "agreement"

[[sources]]
id = "test"
title = "the test"
url = "docs/audit.md"
note = "A cap for the split-run test."

[accounting]
precisions = ["fp64", "fp32", "fp16", "tf32", "bf16", "fp8", "fp4", "int8", "int4"]
bound_basis = "busy"
count_fine_tuning = true
affiliates = "group"
control_threshold = "1/2"
control_inclusive = false
exempt_workloads = ["inference"]
reporting_cadence_minutes = 5
max_report_gap_minutes = 15

[[rules]]
id = "group-cap"
title = "No ownership group trains above the cap"
kind = "prohibited"
subject = "group"
threshold_flop = "THRESHOLD"
citation = { source = "test", pinpoint = "the cap" }
"""


@pytest.mark.parametrize("declared", [True, False])
def test_split_run_across_a_subsidiary_is_summed_by_ownership(world: World, declared: bool) -> None:
    from fractions import Fraction  # noqa: PLC0415

    from brakepedal.accounting.document import UsageDocument  # noqa: PLC0415
    from brakepedal.accounting.groups import Holding  # noqa: PLC0415
    from brakepedal.model.types import EntityId  # noqa: PLC0415
    from brakepedal.policy.load import parse_policy  # noqa: PLC0415

    for name, owner in (("gpu-p0", "lab-a"), ("gpu-p1", "lab-a"), ("gpu-s0", "lab-a-sub")):
        world.enrol(name, owner)
    world.report_all(rounds=2)
    first = world.audit(at=quiet(world))
    assert first.findings == ()
    # The cap: above what lab-a trained alone (2 devices), below lab-a and its subsidiary.
    per_device = _flop_of_one_device(world)
    threshold = per_device * 5 // 2
    policy = parse_policy(
        _SPLIT_POLICY.replace("THRESHOLD", str(threshold)).encode(), name="cap.toml"
    )
    holdings = (Holding(EntityId("lab-a"), EntityId("lab-a-sub"), Fraction(1)),)
    declarations = UsageDocument((EntityId("lab-a"), EntityId("lab-a-sub")), holdings, (), ())
    result = world.audit(
        at=quiet(world), policy=policy, declarations=declarations if declared else None
    )
    found = [f for f in result.findings if f.detector.startswith("policy.")]
    if not declared:
        assert found == []  # each entity alone stays under the cap
        return
    (finding,) = found
    assert finding.detector == "policy.prohibited"
    assert finding.subject == "group:lab-a"
    assert finding.figures["owners"] == ["lab-a", "lab-a-sub"]
    assert finding.figures["devices"] == 3
    assert finding.entries  # with inclusion proofs of reports counted


def _flop_of_one_device(world: World) -> int:
    """The FLOP bound of one device's reports so far (the auditor's catalogue, busy basis)."""
    from brakepedal.accounting.catalogue import default_catalogue  # noqa: PLC0415

    spec = default_catalogue().get("nvidia-h100-sxm5-80gb")
    gpu = next(iter(world.devices.values()))
    seconds = gpu.sequence * 5 * 60
    return max(spec.peak.values()) * seconds


def test_clock_running_ahead_of_the_audit(world: World) -> None:
    _honest(world, devices=1, rounds=2)
    assert "clock.future" not in detectors(world.audit(at=quiet(world)))
    # As of a moment before the last windows ended: they are in the auditor's future.
    early = world.audit(at=quiet(world) - timedelta(minutes=8))
    ahead = [f for f in early.findings if f.detector == "clock.future"]
    assert [f.key["sequence"] for f in ahead] == [1]


def test_a_policy_that_cannot_be_evaluated_is_a_finding_not_a_crash(world: World) -> None:
    from fractions import Fraction  # noqa: PLC0415

    from brakepedal.accounting.document import UsageDocument  # noqa: PLC0415
    from brakepedal.accounting.groups import Holding  # noqa: PLC0415
    from brakepedal.model.types import EntityId  # noqa: PLC0415

    _honest(world, devices=1, rounds=1)
    a, b = EntityId("lab-a"), EntityId("lab-b")
    cycle = (Holding(a, b, Fraction(1)), Holding(b, a, Fraction(1)))  # control has no meaning
    declarations = UsageDocument((a, b), cycle, (), ())
    result = world.audit(at=quiet(world), policy=load_preset("pause"), declarations=declarations)
    (finding,) = [f for f in result.findings if f.detector == "policy.unevaluable"]
    assert finding.key["reason"] == "ownership.control_cycle"


def test_an_enrolment_of_an_accelerator_nobody_catalogued(world: World) -> None:
    """A registry that logs a device the catalogue cannot bound: a bad entry (and its reports
    have no enrolment), not a policy that quietly stops being evaluated."""
    _honest(world, devices=1, rounds=1)
    ghost = Device("ghost-0", accelerator="made-up-9000")
    world.registry.store.append([ghost.enrolment(), ghost.report()])
    result = world.audit(at=quiet(world))
    bad = {str(f.figures["reason"]) for f in result.findings if f.detector == "entry.unverifiable"}
    assert any(reason.startswith("catalogue.") for reason in bad)
    assert "audit.device_unknown" in bad


def test_reading_by_pages_gives_the_verdicts_of_reading_one_entry_at_a_time(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The auditor reads a page's entries, then its signatures, then its rows: the reports,
    snapshots, kinds and refusals (in log order) are those of reading entry by entry, with
    every kind of refusal on both sides of page boundaries."""
    (gpu, _) = _honest(world)
    stranger = Device("gpu-late")
    world.registry.store.append(
        [
            gpu.report(signer=generate_ed25519()),  # audit.signature_invalid
            b"not an envelope",  # other
            stranger.report(),  # audit.device_unknown (enrolled after it)
            gpu.report(accelerator="amd-mi300x"),  # audit.accelerator_mismatch
            stranger.enrolment(),
            gpu.report(),
            stranger.report(),
            stranger.enrolment(),  # audit.enrolled_twice
            gpu.report(signer=generate_ed25519()),
        ]
    )
    entries = world.registry.store.read_entries(0, world.registry.store.size())
    one = _Reader({}, default_catalogue())
    kinds = [one.read(index, entry) for index, entry in enumerate(entries)]
    monkeypatch.setattr(auditor, "_PAGE", 4)
    paged = _Reader({}, default_catalogue())
    assert paged.read_all(0, entries) == kinds
    assert (paged.reports, paged.snapshots, paged.bad) == (one.reports, one.snapshots, one.bad)
    assert [bad.reason for bad in paged.bad] == [
        "audit.signature_invalid",
        "audit.device_unknown",
        "audit.accelerator_mismatch",
        "audit.enrolled_twice",
        "audit.signature_invalid",
    ]
    assert [bad.log_index for bad in paged.bad] == sorted(bad.log_index for bad in paged.bad)
    assert kinds.count("other") == 1
