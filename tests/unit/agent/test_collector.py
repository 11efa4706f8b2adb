"""The collection loop on a simulated node and a simulated clock (no sleeping).

Eight simulated H100s (four training, four serving inference) are ticked once a second by
hand; every report is read back from the spool, opened under its device key, chained with
``verify_chain`` and challenged with its stored minute records (``verify_minutes``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from brakepedal.accounting.catalogue import default_catalogue
from brakepedal.accounting.usage import Workload
from brakepedal.agent.attribution import StaticAttributor
from brakepedal.agent.collector import Collector, HandInSource
from brakepedal.agent.identity import DeviceIdentity, load_or_create_identities
from brakepedal.agent.spool import Spool, SpooledReport
from brakepedal.agent.telemetry import DeviceInfo, SimulatedBackend
from brakepedal.agent.traces import Trace, synthetic_trace
from brakepedal.errors import InfrastructureError, InputError, StorageError, TrustError
from brakepedal.model.types import DeviceId, EntityId, JobId, SiteId
from brakepedal.wire.minute import Sample, parse_minute
from brakepedal.wire.report import (
    Attribution,
    GateEvent,
    GovernanceSeen,
    SnapshotCommitment,
    UsageReport,
    open_report,
    verify_chain,
    verify_minutes,
)

H100 = default_catalogue().get("NVIDIA H100 80GB HBM3")
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # a multiple of 5 minutes since the epoch
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)


def traces(devices: int = 8, seconds: int = 1200) -> list[Trace]:
    assert H100.tdp_watts is not None
    assert H100.memory_bytes is not None
    return [
        synthetic_trace(
            "training" if index < devices // 2 else "inference",
            seconds=seconds,
            tdp_w=H100.tdp_watts,
            memory_bytes=H100.memory_bytes,
            seed=(3, index),
        )
        for index in range(devices)
    ]


@dataclass
class Node:
    """A simulated node: its traces, backend, state directory and spool."""

    state: Path
    traces: list[Trace]
    backend: SimulatedBackend
    spool: Spool
    identities: list[DeviceIdentity] = field(default_factory=list)

    def collector(self, **options: Any) -> Collector:
        return Collector(self.backend, self.spool, self.identities, **options)

    def restart(self) -> None:
        """A new process: the spool and the keys are reopened from disk."""
        self.spool.close()
        self.spool = Spool(self.state / "spool.db")
        self.identities = load_or_create_identities(self.state, self.backend.devices())


def make_node(state: Path, devices: int = 8) -> Node:
    node_traces = traces(devices)
    backend = SimulatedBackend(H100, node_traces, start=T0, seed=3)
    node = Node(state, node_traces, backend, Spool(state / "spool.db"))
    node.identities = load_or_create_identities(state, backend.devices())
    return node


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    made = make_node(tmp_path)
    yield made
    made.spool.close()


@pytest.fixture
def small_node(tmp_path: Path) -> Iterator[Node]:
    made = make_node(tmp_path, devices=2)
    yield made
    made.spool.close()


def run(collector: Collector, start: datetime, stop: datetime) -> list[SpooledReport]:
    """Tick every second from ``start`` to ``stop`` inclusive."""
    spooled: list[SpooledReport] = []
    moment = start
    while moment <= stop:
        spooled += collector.tick(moment)
        moment += SECOND
    return spooled


def verified(node: Node) -> dict[DeviceId, list[UsageReport]]:
    """Every device's spooled reports, opened, chained from sequence 0 and challenged."""
    result = {}
    for identity in node.identities:
        spooled = node.spool.reports(identity.device)
        reports = [open_report(r.envelope, identity.key, device=identity.device) for r in spooled]
        assert [r.digest() for r in reports] == [r.digest for r in spooled]
        assert reports[0].sequence == 0
        verify_chain(reports)
        for report in reports:
            stored = node.spool.minutes(identity.device, report.sequence)
            verify_minutes(report, [parse_minute(record) for record in stored])
        result[identity.device] = reports
    return result


def windows(reports: list[UsageReport]) -> list[tuple[timedelta, timedelta]]:
    return [(r.window_start - T0, r.window_end - T0) for r in reports]


def expected_busy_ms(trace: Trace, seconds: range) -> int:
    tensor = trace.tensor_active
    return sum(
        1000
        for k in seconds
        if round(float(trace.utilisation[k]) * 100) > 0 or (tensor is not None and tensor[k] > 0)
    )


# ---------------------------------------------------------------------------- the happy path


def test_every_window_is_reported_chained_and_its_minutes_verify(node: Node) -> None:
    collector = node.collector()
    returned = run(collector, T0, T0 + 15 * MINUTE)
    by_device = verified(node)
    assert len(returned) == 3 * 8
    assert {(r.device, r.sequence, r.digest) for r in returned} == {
        (device, report.sequence, report.digest())
        for device, reports in by_device.items()
        for report in reports
    }
    for identity, trace in zip(node.identities, node.traces, strict=True):
        reports = by_device[identity.device]
        assert windows(reports) == [(k * 5 * MINUTE, (k + 1) * 5 * MINUTE) for k in range(3)]
        assert {r.accelerator for r in reports} == {"nvidia-h100-sxm5-80gb"}
        assert sum(r.busy_ms for r in reports) == expected_busy_ms(trace, range(900))
        assert trace.tensor_active is not None
        tensor = sum(
            min(1000, math.ceil(round(float(t) * 1000, 3))) for t in trace.tensor_active[:900]
        )
        assert sum(r.tensor_active_ms or 0 for r in reports) == tensor
        # The counter tiles: from the first sample (second 0) to the last reported (899).
        power_mw = np.rint(trace.power_w * 1000).astype(np.int64)
        assert sum(r.energy_mj for r in reports) == int(power_mw[:899].sum())
    busy = {d: sum(r.busy_ms for r in rs) for d, rs in by_device.items()}
    training, inference = node.identities[0].device, node.identities[7].device
    assert busy[training] > 2 * busy[inference]  # the two profiles are told apart
    assert collector.stats.reports == 24
    assert collector.stats.samples == 901 * 8
    assert collector.stats.sample_failures == collector.stats.ticks_skipped == 0


def test_the_first_window_begins_at_the_current_minute_and_ends_on_the_grid(
    small_node: Node,
) -> None:
    collector = small_node.collector()
    run(collector, T0 + 2 * MINUTE + 30 * SECOND, T0 + 10 * MINUTE)
    for identity, trace in zip(small_node.identities, small_node.traces, strict=True):
        first, second = verified(small_node)[identity.device]
        assert windows([first, second]) == [(2 * MINUTE, 5 * MINUTE), (5 * MINUTE, 10 * MINUTE)]
        # The 30 seconds before the first tick have no sample: they count as busy.
        assert first.busy_ms == 30_000 + expected_busy_ms(trace, range(150, 300))


def test_windows_are_aligned_on_multiples_of_their_length_since_the_epoch(
    small_node: Node,
) -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    run(small_node.collector(window=timedelta(minutes=7)), T0, T0 + 20 * MINUTE)
    reports = verified(small_node)[small_node.identities[0].device]
    assert len(reports) >= 2
    for report in reports:
        assert (report.window_end - epoch) % timedelta(minutes=7) == timedelta(0)
    assert reports[0].window_start == T0


# --------------------------------------------------------------------------------- restarts


def test_a_restart_continues_the_chain_without_overlap(node: Node) -> None:
    run(node.collector(), T0, T0 + 7 * MINUTE + 20 * SECOND)  # then the agent dies
    node.restart()
    run(node.collector(), T0 + 8 * MINUTE + 5 * SECOND, T0 + 15 * MINUTE)
    for reports in verified(node).values():
        assert [r.sequence for r in reports] == [0, 1, 2]
        assert windows(reports) == [
            (0 * MINUTE, 5 * MINUTE),
            (8 * MINUTE, 10 * MINUTE),  # 5..8 was never reported: a gap, not an overlap
            (10 * MINUTE, 15 * MINUTE),
        ]


def test_flush_closes_early_and_a_quick_restart_waits_for_that_end(small_node: Node) -> None:
    collector = small_node.collector()
    run(collector, T0, T0 + 6 * MINUTE + 30 * SECOND)
    flushed = collector.flush(T0 + 6 * MINUTE + 30 * SECOND)
    assert len(flushed) == 2
    small_node.restart()
    restarted = small_node.collector()
    run(restarted, T0 + 6 * MINUTE + 40 * SECOND, T0 + 10 * MINUTE)
    assert restarted.stats.samples_before_resume == 20 * 2
    for identity, trace in zip(small_node.identities, small_node.traces, strict=True):
        reports = verified(small_node)[identity.device]
        assert windows(reports) == [
            (0 * MINUTE, 5 * MINUTE),
            (5 * MINUTE, 7 * MINUTE),  # flushed at 6:30: the rest of minute 6 counts as busy
            (7 * MINUTE, 10 * MINUTE),
        ]
        assert reports[1].busy_ms == 29_000 + expected_busy_ms(trace, range(300, 391))
    # Flushed right after the tick of 10:00: minute 10 is reported, its other 59 s as busy.
    for report in restarted.flush(T0 + 10 * MINUTE):
        opened = parse_minute(small_node.spool.minutes(report.device, report.sequence)[0])
        assert (opened.minute_start, opened.sample_count) == (T0 + 10 * MINUTE, 1)
    assert len(verified(small_node)[small_node.identities[0].device]) == 4
    assert small_node.collector().flush(T0 + 11 * MINUTE) == []  # no window opened yet


def test_a_tick_after_a_long_stall_closes_the_open_window_and_starts_afresh(
    small_node: Node,
) -> None:
    collector = small_node.collector()
    run(collector, T0, T0 + 59 * SECOND)
    assert collector.tick(T0 + 17 * MINUTE + 10 * SECOND) != []
    run(collector, T0 + 17 * MINUTE + 11 * SECOND, T0 + 20 * MINUTE)
    for identity, trace in zip(small_node.identities, small_node.traces, strict=True):
        reports = verified(small_node)[identity.device]
        assert windows(reports) == [(0 * MINUTE, 5 * MINUTE), (17 * MINUTE, 20 * MINUTE)]
        assert reports[0].busy_ms == expected_busy_ms(trace, range(60)) + 4 * 60_000
        # The energy of the unreported stall lands in no report: counted from 17:10 on.
        power_mw = np.rint(trace.power_w * 1000).astype(np.int64)
        assert reports[1].energy_mj == int(power_mw[1030:1199].sum())


def test_a_replaced_key_is_caught_before_the_chain_continues(small_node: Node) -> None:
    run(small_node.collector(), T0, T0 + 5 * MINUTE)
    for key_file in (small_node.state / "keys").iterdir():
        key_file.unlink()
    small_node.restart()
    with pytest.raises(TrustError) as caught:
        small_node.collector()
    assert caught.value.reason == "collector.key_changed"


def test_an_unreadable_last_report_stops_the_start(small_node: Node) -> None:
    device = small_node.identities[0].device
    small_node.spool.append(device, 0, "a" * 64, b"not an envelope", at=T0)
    with pytest.raises(StorageError) as caught:
        small_node.collector()
    assert caught.value.reason == "collector.head_unreadable"


# ----------------------------------------------------------------------------- bad set-ups


@pytest.mark.parametrize(
    "window",
    [
        timedelta(0),
        timedelta(seconds=30),
        timedelta(seconds=90),
        timedelta(minutes=61),
        timedelta(minutes=-5),
        timedelta(days=1),
        5,
    ],
)
def test_bad_window_lengths_are_refused_by_name(small_node: Node, window: Any) -> None:
    with pytest.raises(InputError) as caught:
        small_node.collector(window=window)
    assert caught.value.reason == "collector.window_invalid"


def test_identities_must_be_the_backends_devices(small_node: Node, tmp_path: Path) -> None:
    stranger = DeviceInfo(0, "GPU-elsewhere", "NVIDIA H100 80GB HBM3")
    strangers = load_or_create_identities(tmp_path / "other", [stranger])
    with pytest.raises(InputError, match=r"collector\.identity_mismatch"):
        Collector(small_node.backend, small_node.spool, strangers)
    twice = [small_node.identities[0], small_node.identities[0]]
    with pytest.raises(InputError, match=r"collector\.identity_mismatch"):
        Collector(small_node.backend, small_node.spool, twice)
    with pytest.raises(InputError, match=r"collector\.no_devices"):
        Collector(small_node.backend, small_node.spool, [])


# ------------------------------------------------------------------- what goes into reports


class RecordingAttributor:
    """Attributes everything to one job and records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[DeviceId, tuple[int, ...]]] = []

    def attribute(self, device: DeviceIdentity, processes: tuple[int, ...]) -> Attribution:
        self.calls.append((device.device, processes))
        return Attribution(
            JobId("job-9"), EntityId("lab"), None, SiteId("site-a"), Workload.TRAINING
        )


def test_attribution_and_governance_reach_every_report(small_node: Node) -> None:
    attributor = RecordingAttributor()
    asked: list[int] = []

    def governance() -> GovernanceSeen:
        asked.append(1)
        return GovernanceSeen(timestamp_version=4, checkpoint_size=1200)

    collector = small_node.collector(attributor=attributor, governance=governance)
    run(collector, T0, T0 + 10 * MINUTE)
    for reports in verified(small_node).values():
        for report in reports:
            assert report.job == JobId("job-9")
            assert report.site == SiteId("site-a")
            assert report.governance == GovernanceSeen(timestamp_version=4, checkpoint_size=1200)
    assert len(asked) == 2  # once per closing tick, not per device
    inference = small_node.identities[1].device
    seen = {processes for device, processes in attributor.calls if device == inference}
    assert () in seen  # asked whenever the process set changes, idle included
    assert len(seen) == 2

    static = StaticAttributor(Attribution(workload=Workload.INFERENCE))
    small_node.restart()
    run(small_node.collector(attributor=static), T0 + 10 * MINUTE, T0 + 15 * MINUTE)
    for reports in verified(small_node).values():
        assert reports[-1].workload is Workload.INFERENCE


class RecordingHandIns:
    """Hands in one snapshot per window: of ``job`` for the first device, of another job else."""

    def __init__(self, first: DeviceId) -> None:
        self.first = first
        self.calls: list[tuple[DeviceId, JobId | None, datetime, datetime]] = []

    def between(
        self, device: DeviceId, job: JobId | None, start: datetime, end: datetime
    ) -> tuple[tuple[SnapshotCommitment, ...], tuple[GateEvent, ...]]:
        self.calls.append((device, job, start, end))
        snapshot = SnapshotCommitment(
            job=job if device == self.first and job is not None else JobId("someone-else"),
            step=100,
            digest="c" * 64,
            at=start + MINUTE,
        )
        return (snapshot,), ()


def test_hand_ins_are_asked_for_each_window_and_a_bad_one_never_stops_a_report(
    small_node: Node,
) -> None:
    first, second = (identity.device for identity in small_node.identities)
    handins: HandInSource = RecordingHandIns(first)
    attributor = StaticAttributor(Attribution(job=JobId("job-9")))
    collector = small_node.collector(handins=handins, attributor=attributor)
    run(collector, T0, T0 + 5 * MINUTE)
    assert isinstance(handins, RecordingHandIns)
    assert sorted(handins.calls) == sorted(
        (device, JobId("job-9"), T0, T0 + 5 * MINUTE) for device in (first, second)
    )
    reports = verified(small_node)
    assert [s.job for s in reports[first][0].snapshots] == [JobId("job-9")]
    assert reports[second][0].snapshots == ()  # another job's snapshot: left out, counted
    assert collector.stats.handins_refused == 1
    assert collector.stats.last_handin_error is not None


# ---------------------------------------------------------------------------------- failures


class FlakyBackend:
    """The node's backend, failing device 1's readings in the even seconds of minute 2."""

    def __init__(self, inner: SimulatedBackend) -> None:
        self.inner = inner

    def devices(self) -> list[DeviceInfo]:
        return self.inner.devices()

    def sample(self, index: int, at: datetime) -> Sample:
        if index == 1 and T0 + 2 * MINUTE <= at < T0 + 3 * MINUTE and at.second % 2 == 0:
            raise InfrastructureError("telemetry.nvml_error", "nvmlDeviceGetPowerUsage failed")
        return self.inner.sample(index, at)

    def close(self) -> None:
        self.inner.close()


def test_failed_readings_are_skipped_and_count_as_busy(small_node: Node) -> None:
    collector = Collector(FlakyBackend(small_node.backend), small_node.spool, small_node.identities)
    run(collector, T0, T0 + 5 * MINUTE)
    assert collector.stats.sample_failures == 30
    flaky = small_node.identities[1]
    (report,) = verified(small_node)[flaky.device]
    minute_two = parse_minute(small_node.spool.minutes(flaky.device, 0)[2])
    assert minute_two.sample_count == 30
    assert minute_two.busy_ms >= 30_000
    missed = range(120, 180, 2)
    trace = small_node.traces[1]
    assert report.busy_ms == expected_busy_ms(trace, range(300)) + sum(
        1000 - expected_busy_ms(trace, range(k, k + 1)) for k in missed
    )


class SkewedBackend(FlakyBackend):
    """Stamps device 0's readings in minute 1 with the time a minute earlier (a broken clock)."""

    def sample(self, index: int, at: datetime) -> Sample:
        sample = self.inner.sample(index, at)
        if index == 0 and T0 + MINUTE <= at < T0 + 2 * MINUTE:
            return replace(sample, time=at - MINUTE)
        return sample


def test_readings_stamped_with_another_time_are_dropped(small_node: Node) -> None:
    backend = SkewedBackend(small_node.backend)
    collector = Collector(backend, small_node.spool, small_node.identities, window=5 * MINUTE)
    assert collector.window == 5 * MINUTE
    run(collector, T0, T0 + 5 * MINUTE)
    assert collector.stats.sample_failures == 60
    skewed = small_node.identities[0].device
    minute_one = parse_minute(small_node.spool.minutes(skewed, 0)[1])
    assert (minute_one.sample_count, minute_one.busy_ms) == (0, 60_000)
    verified(small_node)


def test_repeated_and_backward_ticks_are_skipped(small_node: Node) -> None:
    collector = small_node.collector()
    assert collector.tick(T0 + 10 * SECOND) == []
    assert collector.tick(T0 + 10 * SECOND + timedelta(milliseconds=600)) == []
    assert collector.tick(T0 + 3 * SECOND) == []
    assert collector.stats.ticks_skipped == 2
    run(collector, T0 + 11 * SECOND, T0 + 5 * MINUTE)
    assert all(len(reports) == 1 for reports in verified(small_node).values())
    with pytest.raises(InputError, match=r"time\.naive"):
        collector.tick(datetime(2026, 1, 5, 12, 6))


def test_a_failed_spool_write_is_retried_with_the_same_report(
    small_node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector = small_node.collector()
    run(collector, T0, T0 + 5 * MINUTE - SECOND)
    original = small_node.spool.append
    failures = [small_node.identities[1].device]

    def failing_append(device: DeviceId, *args: Any, **kwargs: Any) -> None:
        if device in failures:
            failures.remove(device)
            raise StorageError("spool.write_failed", "spool: disk I/O error")
        original(device, *args, **kwargs)

    monkeypatch.setattr(small_node.spool, "append", failing_append)
    with pytest.raises(StorageError):
        collector.tick(T0 + 5 * MINUTE)
    assert len(small_node.spool.reports(small_node.identities[0].device)) == 1
    retried = collector.tick(T0 + 5 * MINUTE)
    assert [r.device for r in retried] == [small_node.identities[1].device]
    run(collector, T0 + 5 * MINUTE + SECOND, T0 + 10 * MINUTE)
    for reports in verified(small_node).values():
        assert windows(reports) == [(0 * MINUTE, 5 * MINUTE), (5 * MINUTE, 10 * MINUTE)]
