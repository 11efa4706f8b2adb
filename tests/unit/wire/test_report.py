"""Usage reports: sums, one byte form, named bad documents, signatures, chains, challenges."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgspec.structs import replace as struct_replace

from brakepedal.accounting.usage import Workload
from brakepedal.crypto.canonical import canonical_json
from brakepedal.crypto.dsse import brakepedal_payload_type, sign_envelope
from brakepedal.crypto.keys import CryptoSigner, generate_ed25519
from brakepedal.errors import BrakepedalError, InputError, TrustError
from brakepedal.model.limits import DEFAULT_LIMITS, Limits
from brakepedal.model.types import DeviceId, EntityId, JobId, OrderId, PermitId, SiteId
from brakepedal.wire import report_format
from brakepedal.wire.minute import SLOTS, MinuteRecord, Sample, summarise_minute
from brakepedal.wire.report import (
    GENESIS_PREVIOUS,
    MAX_DETAIL,
    MAX_EVENTS,
    MAX_SNAPSHOTS,
    Attribution,
    GateEvent,
    GateEventKind,
    GovernanceSeen,
    SnapshotCommitment,
    UsageReport,
    build_report,
    minute_inclusion_proof,
    open_report,
    parse_report,
    short_detail,
    sign_report,
    sort_events,
    sort_snapshots,
    to_usage_window,
    verify_chain,
    verify_minute,
    verify_minutes,
)

T0 = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
DEV = DeviceId("gpu-0")
ACCELERATOR = "nvidia-h100-sxm5-80gb"
ATTRIBUTION = Attribution(
    JobId("slurm:4242"), EntityId("lab-a"), PermitId("permit-7"), SiteId("dc-1"), Workload.TRAINING
)
SEEN = GovernanceSeen(timestamp_version=12, checkpoint_size=3456)
SIGNER = generate_ed25519()


def minute(
    start: datetime, *, device: DeviceId = DEV, busy: int = 60, power: float = 500.0
) -> MinuteRecord:
    """A minute with ``busy`` busy seconds and a steady energy counter."""
    samples = [
        Sample(
            time=start + timedelta(seconds=second),
            power_w=power + (second % 5),
            energy_mj=10**9 + second * 500_000,
            utilisation=100 if second < busy else 0,
            tensor_active=0.5 if second < busy else 0.0,
            memory_used_bytes=2**30 + second,
            sm_clock_mhz=1800,
            pcie_bytes=second * 10,
            nvlink_bytes=second * 1000,
        )
        for second in range(SLOTS)
    ]
    return summarise_minute(device, start, samples)


def minutes_of(start: datetime, count: int = 5, **kwargs: Any) -> list[MinuteRecord]:
    return [minute(start + index * MINUTE, **kwargs) for index in range(count)]


def report_at(
    sequence: int = 0,
    previous: str = GENESIS_PREVIOUS,
    start: datetime = T0,
    count: int = 5,
    device: DeviceId = DEV,
) -> UsageReport:
    return build_report(
        device=device,
        accelerator=ACCELERATOR,
        sequence=sequence,
        previous=previous,
        window_start=start,
        window_end=start + count * MINUTE,
        minutes=minutes_of(start, count, device=device),
        attribution=ATTRIBUTION,
        governance=SEEN,
    )


def chain(length: int) -> list[UsageReport]:
    reports = [report_at()]
    for sequence in range(1, length):
        last = reports[-1]
        reports.append(report_at(sequence, last.digest(), last.window_end))
    return reports


# -------------------------------------------------------------------------- building


def test_build_report_sums_the_minutes_exactly() -> None:
    records = [minute(T0, busy=60), minute(T0 + MINUTE, busy=10), minute(T0 + 2 * MINUTE, busy=0)]
    report = build_report(
        device=DEV,
        accelerator=ACCELERATOR,
        sequence=0,
        previous=GENESIS_PREVIOUS,
        window_start=T0,
        window_end=T0 + 3 * MINUTE,
        minutes=records,
        attribution=ATTRIBUTION,
        governance=None,
    )
    assert report.busy_ms == 70_000
    assert report.tensor_active_ms == 35_000
    assert report.energy_mj == 3 * 59 * 500_000
    assert report.memory_max_bytes == 2**30 + 59
    assert report.interconnect_bytes == 3 * (590 + 59_000)
    assert report.minute_count == 3
    assert report.attribution == ATTRIBUTION
    assert report.governance is None


def test_missing_minutes_data_is_busy_and_unknown_counters_are_null() -> None:
    records = [summarise_minute(DEV, T0 + index * MINUTE, []) for index in range(5)]
    report = build_report(
        device=DEV,
        accelerator=ACCELERATOR,
        sequence=0,
        previous=GENESIS_PREVIOUS,
        window_start=T0,
        window_end=T0 + 5 * MINUTE,
        minutes=records,
        attribution=Attribution(),
        governance=None,
    )
    assert report.busy_ms == 300_000
    assert (report.memory_max_bytes, report.interconnect_bytes) == (None, None)
    assert report.workload is Workload.UNKNOWN
    assert parse_report(report.to_bytes()) == report


@pytest.mark.parametrize(
    ("records", "reason"),
    [
        (minutes_of(T0, 4), "report.minutes_mismatch"),
        (minutes_of(T0 + MINUTE, 5), "report.minutes_mismatch"),
        (minutes_of(T0, 5)[::-1], "report.minutes_mismatch"),
        (minutes_of(T0, 5, device=DeviceId("gpu-9")), "report.minute_device_mismatch"),
    ],
)
def test_build_report_needs_the_windows_minutes_in_order(
    records: list[MinuteRecord], reason: str
) -> None:
    with pytest.raises(InputError) as caught:
        build_report(
            device=DEV,
            accelerator=ACCELERATOR,
            sequence=0,
            previous=GENESIS_PREVIOUS,
            window_start=T0,
            window_end=T0 + 5 * MINUTE,
            minutes=records,
            attribution=ATTRIBUTION,
            governance=SEEN,
        )
    assert caught.value.reason == reason


def test_to_usage_window_carries_exact_seconds_and_attribution() -> None:
    report = report_at()
    window = to_usage_window(report, EntityId("lab-a-parent"))
    assert window.busy_seconds == Fraction(report.busy_ms, 1000)
    assert window.tensor_active_seconds == Fraction(report.tensor_active_ms or 0, 1000)
    assert (window.start, window.end) == (T0, T0 + 5 * MINUTE)
    assert (window.job, window.site, window.workload) == (
        ATTRIBUTION.job,
        ATTRIBUTION.site,
        Workload.TRAINING,
    )
    unmeasured = struct_replace(report, tensor_active_ms=None)
    assert to_usage_window(unmeasured, EntityId("x")).tensor_active_seconds is None


# --------------------------------------------------------------- bytes and named defects


def test_report_round_trips_to_identical_bytes_and_digest() -> None:
    report = report_at()
    data = report.to_bytes()
    assert parse_report(data).to_bytes() == data
    assert parse_report(data).digest() == report.digest()
    assert json.loads(data)["format"] == "brakepedal.usage-report"


def document(**changes: Any) -> bytes:
    body: dict[str, Any] = json.loads(report_at(sequence=3, previous="ab" * 32).to_bytes())
    body.update(changes)
    return canonical_json({k: v for k, v in body.items() if v != "<drop>"})


GOOD = document()


def snap(**changes: Any) -> dict[str, Any]:
    """A snapshot commitment's JSON in GOOD's window and job, with ``changes``."""
    item: dict[str, Any] = {
        "at": "2027-01-01T12:01:00Z",
        "digest": "aa" * 32,
        "job": "slurm:4242",
        "parent": None,
        "step": 10,
    }
    item.update(changes)
    return {k: v for k, v in item.items() if v != "<drop>"}


def event(**changes: Any) -> dict[str, Any]:
    """A gate event's JSON in GOOD's window, with ``changes``."""
    item: dict[str, Any] = {
        "at": "2027-01-01T12:02:00Z",
        "detail": "gate.paused",
        "job": "job-9",
        "kind": "refused",
        "order": "pause-1",
    }
    item.update(changes)
    return {k: v for k, v in item.items() if v != "<drop>"}


def many_events(count: int) -> list[dict[str, Any]]:
    return [event(at=f"2027-01-01T12:02:00.{index + 1:06d}Z") for index in range(count)]


def many_snapshots(count: int) -> list[dict[str, Any]]:
    return [snap(step=index) for index in range(count)]


HAND_IN_BAD_DOCUMENTS: list[tuple[str, bytes, str, str]] = [
    ("snapshots missing", document(snapshots="<drop>"), "report.field_missing", "snapshots"),
    ("events missing", document(events="<drop>"), "report.field_missing", "events"),
    ("snapshots not an array", document(snapshots={}), "report.field_invalid", "snapshots"),
    ("events null", document(events=None), "report.field_invalid", "events"),
    ("snapshot not an object", document(snapshots=[1]), "report.field_invalid", "snapshots[0]"),
    (
        "snapshot unknown field",
        document(snapshots=[snap(size=1)]),
        "report.field_unknown",
        "snapshots[0].size",
    ),
    (
        "snapshot missing parent",
        document(snapshots=[snap(parent="<drop>")]),
        "report.field_missing",
        "snapshots[0].parent",
    ),
    (
        "snapshot negative step",
        document(snapshots=[snap(step=-1)]),
        "report.field_invalid",
        "snapshots[0].step",
    ),
    (
        "snapshot bool step",
        document(snapshots=[snap(step=True)]),
        "report.field_invalid",
        "snapshots[0].step",
    ),
    (
        "snapshot string step",
        document(snapshots=[snap(step="10")]),
        "report.field_invalid",
        "snapshots[0].step",
    ),
    (
        "snapshot float step",
        GOOD.replace(b'"snapshots":[]', b'"snapshots":[{"step":1.5}]'),
        "json.float_not_allowed",
        "",
    ),
    (
        "snapshot uppercase digest",
        document(snapshots=[snap(digest="AA" * 32)]),
        "report.digest_invalid",
        "snapshots[0].digest",
    ),
    (
        "snapshot digest not a string",
        document(snapshots=[snap(digest=7)]),
        "report.digest_invalid",
        "snapshots[0].digest",
    ),
    (
        "snapshot short parent",
        document(snapshots=[snap(parent="ab")]),
        "report.digest_invalid",
        "snapshots[0].parent",
    ),
    (
        "snapshot its own parent",
        document(snapshots=[snap(parent="aa" * 32)]),
        "report.parent_invalid",
        "snapshots[0].parent",
    ),
    ("snapshot empty job", document(snapshots=[snap(job="")]), "job_id.empty", "snapshots[0].job"),
    (
        "snapshot null job",
        document(snapshots=[snap(job=None)]),
        "job_id.not_string",
        "snapshots[0].job",
    ),
    (
        "snapshot of another job",
        document(snapshots=[snap(job="slurm:1")]),
        "report.snapshot_job_mismatch",
        "snapshots[0].job",
    ),
    (
        "snapshot on a report without a job",
        document(job=None, snapshots=[snap()]),
        "report.snapshot_job_mismatch",
        "snapshots[0].job",
    ),
    (
        "snapshot offset time",
        document(snapshots=[snap(at="2027-01-01T12:01:00+00:00")]),
        "time.not_utc",
        "snapshots[0].at",
    ),
    (
        "snapshot time spelling",
        document(snapshots=[snap(at="2027-01-01T12:01:00.000Z")]),
        "report.time_not_canonical",
        "snapshots[0].at",
    ),
    (
        "snapshot before the window",
        document(snapshots=[snap(at="2027-01-01T11:59:59.999999Z")]),
        "report.snapshot_outside_window",
        "snapshots[0].at",
    ),
    (
        "snapshot at the window's end",
        document(snapshots=[snap(at="2027-01-01T12:05:00Z")]),
        "report.snapshot_outside_window",
        "snapshots[0].at",
    ),
    (
        "snapshots out of order",
        document(snapshots=[snap(at="2027-01-01T12:02:00Z"), snap()]),
        "report.snapshots_unsorted",
        "snapshots[1]",
    ),
    (
        "snapshots tied on time, out of order",
        document(snapshots=[snap(step=11), snap()]),
        "report.snapshots_unsorted",
        "snapshots[1]",
    ),
    (
        "snapshot twice",
        document(snapshots=[snap(), snap()]),
        "report.snapshots_unsorted",
        "snapshots[1]",
    ),
    (
        "too many snapshots",
        document(snapshots=many_snapshots(MAX_SNAPSHOTS + 1)),
        "report.too_many_snapshots",
        "snapshots",
    ),
    ("event not an object", document(events=["refused"]), "report.field_invalid", "events[0]"),
    (
        "event unknown field",
        document(events=[event(pid=4)]),
        "report.field_unknown",
        "events[0].pid",
    ),
    (
        "event missing detail",
        document(events=[event(detail="<drop>")]),
        "report.field_missing",
        "events[0].detail",
    ),
    (
        "event unknown kind",
        document(events=[event(kind="paused")]),
        "report.event_kind_invalid",
        "events[0].kind",
    ),
    (
        "event kind not a string",
        document(events=[event(kind=1)]),
        "report.event_kind_invalid",
        "events[0].kind",
    ),
    (
        "event job",
        document(events=[event(job="Job 9")]),
        "job_id.invalid_character",
        "events[0].job",
    ),
    ("event order", document(events=[event(order="")]), "order_id.empty", "events[0].order"),
    (
        "event detail too long",
        document(events=[event(detail="x" * (MAX_DETAIL + 1))]),
        "report.detail_invalid",
        "events[0].detail",
    ),
    (
        "event detail control character",
        document(events=[event(detail="a\nb")]),
        "report.detail_invalid",
        "events[0].detail",
    ),
    (
        "event detail not ASCII",
        document(events=[event(detail="caf\u00e9")]),
        "report.detail_invalid",
        "events[0].detail",
    ),
    (
        "event detail not a string",
        document(events=[event(detail=5)]),
        "report.detail_invalid",
        "events[0].detail",
    ),
    (
        "event time format",
        document(events=[event(at="2027-01-01")]),
        "time.format_invalid",
        "events[0].at",
    ),
    (
        "event after the window",
        document(events=[event(at="2027-01-01T12:06:00Z")]),
        "report.event_outside_window",
        "events[0].at",
    ),
    (
        "events out of order",
        document(events=[event(at="2027-01-01T12:03:00Z"), event()]),
        "report.events_unsorted",
        "events[1]",
    ),
    (
        "event twice",
        document(events=[event(), event()]),
        "report.events_unsorted",
        "events[1]",
    ),
    (
        "too many events",
        document(events=many_events(MAX_EVENTS + 1)),
        "report.too_many_events",
        "events",
    ),
]
BAD_DOCUMENTS: list[tuple[str, bytes, str, str]] = [
    ("unknown field", document(extra=1), "report.field_unknown", "extra"),
    ("missing field", document(busy_ms="<drop>"), "report.field_missing", "busy_ms"),
    ("non-canonical bytes", GOOD.replace(b",", b", ", 1), "canonical.not_canonical", ""),
    ("busy above window", document(busy_ms=300_001), "report.busy_above_window", "busy_ms"),
    ("negative sequence", document(sequence=-1), "report.sequence_invalid", "sequence"),
    ("bool as integer", document(energy_mj=True), "report.field_invalid", "energy_mj"),
    ("uppercase digest", document(previous="AB" * 32), "report.digest_invalid", "previous"),
    ("short root", document(minute_root="ab"), "report.digest_invalid", "minute_root"),
    (
        "zeros after genesis",
        document(previous=GENESIS_PREVIOUS),
        "report.previous_invalid",
        "previous",
    ),
    (
        "offset time",
        document(window_start="2027-01-01T12:00:00+00:00"),
        "time.not_utc",
        "window_start",
    ),
    (
        "time format",
        document(window_end="2027-01-01 12:05:00Z"),
        "time.format_invalid",
        "window_end",
    ),
    (
        "time spelling",
        document(window_end="2027-01-01T12:05:00.0Z"),
        "report.time_not_canonical",
        "window_end",
    ),
    (
        "window not aligned",
        document(window_end="2027-01-01T12:05:30Z"),
        "report.window_not_aligned",
        "window_end",
    ),
    (
        "window backwards",
        document(window_end="2027-01-01T11:55:00Z"),
        "report.window_invalid",
        "window_end",
    ),
    (
        "window over a day",
        document(window_end="2027-01-03T12:00:00Z"),
        "report.window_invalid",
        "window_end",
    ),
    ("minute count", document(minute_count=4), "report.minute_count_invalid", "minute_count"),
    (
        "tensor above busy",
        document(tensor_active_ms=300_001),
        "report.tensor_active_invalid",
        "tensor_active_ms",
    ),
    ("accelerator", document(accelerator="H100"), "report.accelerator_invalid", "accelerator"),
    ("device", document(device="GPU 0"), "device_id.invalid_character", "device"),
    ("job", document(job=""), "job_id.empty", "job"),
    ("workload", document(workload="mining"), "report.workload_invalid", "workload"),
    (
        "governance shape",
        document(governance={"timestamp_version": 1}),
        "report.governance_invalid",
        "governance",
    ),
    (
        "governance value",
        document(governance={"timestamp_version": 0, "checkpoint_size": 1}),
        "report.field_invalid",
        "governance",
    ),
    ("format", document(format="brakepedal.usage"), "report.format_unknown", "format"),
    ("no format", document(format="<drop>"), "report.field_missing", "format"),
    ("spec version", document(spec_version=2), "report.version_unsupported", "spec_version"),
    (
        "float",
        GOOD.replace(b'"busy_ms":300000', b'"busy_ms":300000.0'),
        "json.float_not_allowed",
        "",
    ),
    (
        "float nested",
        GOOD.replace(b'"checkpoint_size":3456', b'"checkpoint_size":3.5e3'),
        "json.float_not_allowed",
        "",
    ),
    ("not an object", b"[]", "json.not_object", ""),
    *HAND_IN_BAD_DOCUMENTS,
]


@pytest.mark.parametrize(
    ("data", "reason", "path"),
    [pytest.param(data, reason, path, id=name) for name, data, reason, path in BAD_DOCUMENTS],
)
def test_bad_report_documents_are_refused_by_name(data: bytes, reason: str, path: str) -> None:
    assert data != GOOD
    with pytest.raises(InputError) as caught:
        parse_report(data)
    assert caught.value.reason == reason
    assert caught.value.message.startswith(f"usage_report.{path}" if path else "")


def test_good_document_parses() -> None:
    assert parse_report(GOOD).sequence == 3


def test_constructor_refuses_wrong_types() -> None:
    report = report_at()
    cases: list[tuple[str, object]] = [
        ("device", "gpu-0"),
        ("workload", "training"),
        ("governance", {}),
    ]
    for field, value in cases:
        changes: dict[str, Any] = {field: value}
        with pytest.raises(InputError) as caught:
            struct_replace(report, **changes)
        assert caught.value.reason == "report.field_invalid"
        assert caught.value.message.startswith(f"usage_report.{field}")
    with pytest.raises(InputError, match=r"time\.naive"):
        struct_replace(report, window_start=datetime(2027, 1, 1))
    with pytest.raises(InputError, match="not_bytes"):
        parse_report(GOOD.decode())  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- hand-ins

SECOND = timedelta(seconds=1)
SNAPSHOT = SnapshotCommitment(
    job=JobId("slurm:4242"), step=100, digest="aa" * 32, at=T0 + MINUTE, parent="bb" * 32
)
TERM = GateEvent(
    at=T0 + 2 * MINUTE,
    job=JobId("slurm:4242"),
    kind=GateEventKind.SIGNALLED_TERM,
    order=OrderId("pause-1"),
    detail="pid=7",
)
STARTED = GateEvent(
    at=T0 + 30 * SECOND, job=JobId("slurm:4242"), kind=GateEventKind.STARTED, detail="gate.no_order"
)


def report_with(snapshots: Any = (), events: Any = ()) -> UsageReport:
    return build_report(
        device=DEV,
        accelerator=ACCELERATOR,
        sequence=0,
        previous=GENESIS_PREVIOUS,
        window_start=T0,
        window_end=T0 + 5 * MINUTE,
        minutes=minutes_of(T0, 5),
        attribution=ATTRIBUTION,
        governance=SEEN,
        snapshots=snapshots,
        events=events,
    )


def test_build_report_sorts_hand_ins_and_drops_duplicates() -> None:
    later = replace(SNAPSHOT, step=200, at=T0 + 3 * MINUTE, parent=None)
    report = report_with([later, SNAPSHOT, later], [TERM, STARTED, TERM])
    assert report.snapshots == (SNAPSHOT, later)
    assert report.events == (STARTED, TERM)
    data = report.to_bytes()
    body = json.loads(data)
    assert body["snapshots"] == [
        {
            "at": "2027-01-01T12:01:00Z",
            "digest": "aa" * 32,
            "job": "slurm:4242",
            "parent": "bb" * 32,
            "step": 100,
        },
        {
            "at": "2027-01-01T12:03:00Z",
            "digest": "aa" * 32,
            "job": "slurm:4242",
            "parent": None,
            "step": 200,
        },
    ]
    assert body["events"][1] == {
        "at": "2027-01-01T12:02:00Z",
        "detail": "pid=7",
        "job": "slurm:4242",
        "kind": "signalled_term",
        "order": "pause-1",
    }
    assert parse_report(data) == report
    assert parse_report(data).to_bytes() == data


def test_every_report_carries_both_arrays_even_empty() -> None:
    body = json.loads(report_at().to_bytes())
    assert (body["snapshots"], body["events"]) == ([], [])
    assert report_at().snapshots == ()
    assert report_at().events == ()


def test_hand_ins_are_signed_chained_and_survive_a_challenge() -> None:
    report = report_with([SNAPSHOT], [TERM, STARTED])
    assert report.digest() != report_at().digest()
    assert open_report(sign_report(report, SIGNER), SIGNER.public_key) == report
    verify_minutes(report, minutes_of(T0, 5))
    with pytest.raises(TrustError):
        verify_minutes(struct_replace(report, events=(STARTED,)), minutes_of(T0, 4))


def _too_many_snapshots() -> list[SnapshotCommitment]:
    return [replace(SNAPSHOT, step=step) for step in range(MAX_SNAPSHOTS + 1)]


def _too_many_events() -> list[GateEvent]:
    micro = timedelta(microseconds=1)
    return [replace(STARTED, at=STARTED.at + index * micro) for index in range(MAX_EVENTS + 1)]


@pytest.mark.parametrize(
    ("snapshots", "events", "reason", "path"),
    [
        pytest.param(
            [replace(SNAPSHOT, at=T0 + 5 * MINUTE)],
            [],
            "report.snapshot_outside_window",
            "usage_report.snapshots[0].at",
            id="snapshot at the window's end",
        ),
        pytest.param(
            [replace(SNAPSHOT, job=JobId("slurm:1"))],
            [],
            "report.snapshot_job_mismatch",
            "usage_report.snapshots[0].job",
            id="snapshot of another job",
        ),
        pytest.param(
            [],
            [replace(TERM, at=T0 - SECOND)],
            "report.event_outside_window",
            "usage_report.events[0].at",
            id="event before the window",
        ),
        pytest.param(
            ["not a snapshot"],
            [],
            "report.field_invalid",
            "usage_report.snapshots[0]",
            id="not a snapshot",
        ),
        pytest.param(
            [], [SNAPSHOT], "report.field_invalid", "usage_report.events[0]", id="not an event"
        ),
        pytest.param(
            _too_many_snapshots(),
            [],
            "report.too_many_snapshots",
            "usage_report.snapshots",
            id="too many snapshots",
        ),
        pytest.param(
            [],
            _too_many_events(),
            "report.too_many_events",
            "usage_report.events",
            id="too many events",
        ),
    ],
)
def test_build_report_refuses_hand_ins_that_do_not_belong(
    snapshots: list[Any], events: list[Any], reason: str, path: str
) -> None:
    with pytest.raises(InputError) as caught:
        report_with(snapshots, events)
    assert caught.value.reason == reason
    assert caught.value.message.startswith(path)


NAIVE = datetime(2027, 1, 1, 12, 1)


def changed(item: Any, **changes: Any) -> Any:
    """``replace`` with values of the wrong type, as untyped callers could pass them."""
    if isinstance(item, UsageReport):
        return struct_replace(item, **changes)
    return replace(item, **changes)


@pytest.mark.parametrize(
    ("make", "reason", "path"),
    [
        (lambda: changed(SNAPSHOT, job="slurm:4242"), "report.field_invalid", "snapshot.job"),
        (lambda: changed(SNAPSHOT, step=-1), "report.field_invalid", "snapshot.step"),
        (lambda: changed(SNAPSHOT, step=1.0), "report.field_invalid", "snapshot.step"),
        (lambda: changed(SNAPSHOT, digest="x"), "report.digest_invalid", "snapshot.digest"),
        (lambda: changed(SNAPSHOT, parent="AB" * 32), "report.digest_invalid", "snapshot.parent"),
        (lambda: changed(SNAPSHOT, parent="aa" * 32), "report.parent_invalid", "snapshot.parent"),
        (lambda: changed(SNAPSHOT, at=NAIVE), "time.naive", "snapshot.at"),
        (lambda: changed(TERM, kind="refused"), "report.event_kind_invalid", "event.kind"),
        (lambda: changed(TERM, job="j"), "report.field_invalid", "event.job"),
        (lambda: changed(TERM, order="pause-1"), "report.field_invalid", "event.order"),
        (lambda: changed(TERM, detail="x" * 97), "report.detail_invalid", "event.detail"),
        (lambda: changed(TERM, detail=None), "report.detail_invalid", "event.detail"),
        (lambda: changed(TERM, at=NAIVE), "time.naive", "event.at"),
    ],
)
def test_hand_in_items_refuse_bad_values_by_name(make: Any, reason: str, path: str) -> None:
    with pytest.raises(InputError) as caught:
        make()
    assert caught.value.reason == reason
    assert caught.value.message.startswith(path)


def test_the_report_constructor_needs_sorted_tuples() -> None:
    report = report_with([SNAPSHOT], [STARTED, TERM])
    with pytest.raises(InputError) as caught:
        changed(report, snapshots=[SNAPSHOT])
    assert (caught.value.reason, caught.value.message[:22]) == (
        "report.field_invalid",
        "usage_report.snapshots",
    )
    with pytest.raises(InputError) as caught:
        struct_replace(report, events=(TERM, STARTED))
    assert caught.value.reason == "report.events_unsorted"
    with pytest.raises(InputError) as caught:
        changed(report, events=(SNAPSHOT,))
    assert (caught.value.reason, caught.value.message[:22]) == (
        "report.field_invalid",
        "usage_report.events[0]",
    )


def test_short_detail_makes_any_text_a_valid_detail() -> None:
    assert short_detail("returncode=0") == "returncode=0"
    assert short_detail("caf\u00e9\n") == "caf??"
    long = short_detail("x" * 500)
    assert len(long) == MAX_DETAIL
    assert long.endswith("...")
    assert replace(TERM, detail=long).detail == long


def test_items_read_back_from_their_own_json_with_located_errors() -> None:
    assert SnapshotCommitment.from_json(SNAPSHOT.to_json(), "snapshot") == SNAPSHOT
    assert GateEvent.from_json(TERM.to_json(), "event") == TERM
    bad = {**SNAPSHOT.to_json(), "digest": "zz"}
    with pytest.raises(InputError) as caught:
        SnapshotCommitment.from_json(bad, "list[3]")
    assert caught.value.message.startswith("list[3].digest: ")


def test_a_report_with_every_item_at_its_longest_fits_the_default_limits() -> None:
    # The bounds on items are chosen so that this report signs and opens under DEFAULT_LIMITS.
    longest = "x" * 128
    job = JobId(longest)
    day = timedelta(days=1)
    micro = timedelta(microseconds=1)
    late = T0 + day - MAX_EVENTS * micro
    snapshots = [
        SnapshotCommitment(
            job=job, step=2**53 - 1, digest=f"{i:064x}", at=late + i * micro, parent="f" * 64
        )
        for i in range(MAX_SNAPSHOTS)
    ]
    events = [
        GateEvent(
            at=late + i * micro,
            job=job,
            kind=GateEventKind.SIGNALLED_TERM,
            order=OrderId(longest),
            detail='"' * MAX_DETAIL,  # escaped to two bytes each
        )
        for i in range(MAX_EVENTS)
    ]
    report = UsageReport(
        device=DeviceId(longest),
        accelerator="a" * 128,
        sequence=2**53 - 1,
        previous="1" * 64,
        window_start=T0,
        window_end=T0 + day,
        busy_ms=1440 * 60_000,
        tensor_active_ms=1440 * 60_000,
        energy_mj=2**53 - 1,
        memory_max_bytes=2**53 - 1,
        interconnect_bytes=2**53 - 1,
        job=job,
        tenant=EntityId(longest),
        permit=PermitId(longest),
        site=SiteId(longest),
        workload=Workload.TRAINING,
        minute_count=1440,
        minute_root="2" * 64,
        governance=GovernanceSeen(timestamp_version=2**53 - 1, checkpoint_size=2**53 - 1),
        snapshots=sort_snapshots(snapshots),
        events=sort_events(events),
    )
    envelope = sign_report(report, SIGNER)
    assert len(envelope) < DEFAULT_LIMITS.max_envelope_bytes
    assert open_report(envelope, SIGNER.public_key) == report


# -------------------------------------------------------------------------- signatures


def test_signed_report_opens_under_the_device_key() -> None:
    report = report_at()
    envelope = sign_report(report, SIGNER)
    assert open_report(envelope, SIGNER.public_key) == report
    assert open_report(envelope, SIGNER.public_key, device=DEV) == report


def test_signature_by_another_key_is_refused() -> None:
    envelope = sign_report(report_at(), generate_ed25519())
    with pytest.raises(TrustError) as caught:
        open_report(envelope, SIGNER.public_key)
    assert caught.value.reason == "envelope.signature_invalid"


def test_report_about_another_device_is_refused() -> None:
    envelope = sign_report(report_at(), SIGNER)
    with pytest.raises(TrustError) as caught:
        open_report(envelope, SIGNER.public_key, device=DeviceId("gpu-1"))
    assert caught.value.reason == "report.device_mismatch"


def test_other_payload_types_and_signed_bad_payloads_are_refused() -> None:
    data = report_at().to_bytes()
    other = sign_envelope(data, brakepedal_payload_type("usage-window", 1), [SIGNER])
    with pytest.raises(TrustError, match="payload_type_unexpected"):
        open_report(other, SIGNER.public_key)
    signed_bad = sign_envelope(
        document(extra=1),
        brakepedal_payload_type("usage-report", 1),
        [SIGNER],
    )
    with pytest.raises(InputError) as caught:
        open_report(signed_bad, SIGNER.public_key)
    assert caught.value.reason == "report.field_unknown"


# ------------------------------------------------------------------------------- chains


def test_a_built_chain_verifies() -> None:
    verify_chain(chain(4))
    verify_chain(chain(1))
    with pytest.raises(InputError, match="chain_empty"):
        verify_chain([])


def test_a_time_gap_between_windows_is_allowed() -> None:
    first = report_at()
    second = report_at(1, first.digest(), first.window_end + 30 * MINUTE)
    verify_chain([first, second])


def _bad_chains() -> list[tuple[str, list[UsageReport], str]]:
    first, second, third = chain(3)
    other = report_at(1, first.digest(), first.window_end, device=DeviceId("gpu-1"))
    early = report_at(1, first.digest(), first.window_end - 2 * MINUTE)
    backwards = report_at(1, first.digest(), first.window_start - 10 * MINUTE)
    return [
        ("gap", [first, third], "report.sequence_gap"),
        ("replay", [first, second, second], "report.sequence_gap"),
        ("broken link", [first, struct_replace(second, previous="cd" * 32)], "report.chain_broken"),
        ("rewritten", [struct_replace(first, energy_mj=1), second], "report.chain_broken"),
        ("device switch", [first, other], "report.device_mismatch"),
        ("overlap", [first, early], "report.window_overlap"),
        ("backwards", [first, backwards], "report.window_backwards"),
    ]


@pytest.mark.parametrize(
    ("reports", "reason"),
    [pytest.param(reports, reason, id=name) for name, reports, reason in _bad_chains()],
)
def test_bad_chains_are_refused(reports: list[UsageReport], reason: str) -> None:
    with pytest.raises(TrustError) as caught:
        verify_chain(reports)
    assert caught.value.reason == reason


# --------------------------------------------------------------------------- challenges


def test_every_minute_can_be_challenged() -> None:
    records = minutes_of(T0, 5)
    report = report_at()
    for index, record in enumerate(records):
        proof = minute_inclusion_proof(records, index)
        assert verify_minute(report, record.to_bytes(), index, proof) == record
    verify_minutes(report, records)


def test_a_wrong_minute_fails_its_challenge() -> None:
    records = minutes_of(T0, 5)
    report = report_at()
    proof = minute_inclusion_proof(records, 2)
    with pytest.raises(TrustError, match="root_mismatch"):
        verify_minute(report, records[3].to_bytes(), 2, proof)
    with pytest.raises(TrustError, match="root_mismatch"):
        verify_minute(report, minute(T0 + 2 * MINUTE, busy=1).to_bytes(), 2, proof)
    with pytest.raises(TrustError):
        verify_minutes(report, [*records[:4], minute(T0 + 4 * MINUTE, busy=1)])
    with pytest.raises(TrustError):
        verify_minutes(report, records[:4])


def test_a_committed_record_for_another_minute_is_caught() -> None:
    # A dishonest node commits to minutes in the wrong slots; the proofs still verify.
    records = minutes_of(T0, 2)
    shuffled = [records[1], records[0], *minutes_of(T0 + 2 * MINUTE, 3)]
    report = struct_replace(
        report_at(),
        minute_root=_root(shuffled),
    )
    with pytest.raises(TrustError) as caught:
        verify_minute(report, shuffled[0].to_bytes(), 0, minute_inclusion_proof(shuffled, 0))
    assert caught.value.reason == "report.minute_mismatch"


def _root(records: list[MinuteRecord]) -> str:
    from brakepedal.tlog.merkle import leaf_hash, root_from_leaf_hashes  # noqa: PLC0415

    return root_from_leaf_hashes([leaf_hash(r.leaf) for r in records]).hex()


# --------------------------------------------------------------------------- properties

identifiers = st.from_regex(r"[a-z0-9][a-z0-9._:-]{0,20}", fullmatch=True)
counts = st.integers(0, 2**53 - 1)


@st.composite
def reports(draw: st.DrawFn) -> UsageReport:
    minutes = draw(st.integers(1, 1440))
    start = T0 + draw(st.integers(0, 10**6)) * MINUTE
    busy = draw(st.integers(0, minutes * 60_000))
    sequence = draw(counts)
    previous = (
        GENESIS_PREVIOUS if sequence == 0 else draw(st.from_regex(r"[0-9a-f]{64}", fullmatch=True))
    )
    if previous == GENESIS_PREVIOUS and sequence:
        previous = "1" * 64
    job = draw(st.none() | identifiers.map(JobId))
    moments = st.integers(0, minutes * 60_000_000 - 1).map(
        lambda micros: start + timedelta(microseconds=micros)
    )
    return UsageReport(
        device=DeviceId(draw(identifiers)),
        accelerator=draw(st.from_regex(r"[a-z0-9][a-z0-9-]{0,30}", fullmatch=True)),
        sequence=sequence,
        previous=previous,
        window_start=start,
        window_end=start + minutes * MINUTE,
        busy_ms=busy,
        tensor_active_ms=draw(st.none() | st.integers(0, busy)),
        energy_mj=draw(counts),
        memory_max_bytes=draw(st.none() | counts),
        interconnect_bytes=draw(st.none() | counts),
        job=job,
        tenant=draw(st.none() | identifiers.map(EntityId)),
        permit=draw(st.none() | identifiers.map(PermitId)),
        site=draw(st.none() | identifiers.map(SiteId)),
        workload=draw(st.sampled_from(Workload)),
        minute_count=minutes,
        minute_root=draw(st.from_regex(r"[0-9a-f]{64}", fullmatch=True)),
        governance=draw(
            st.none()
            | st.builds(
                GovernanceSeen, timestamp_version=st.integers(1, 2**53 - 1), checkpoint_size=counts
            )
        ),
        snapshots=sort_snapshots(
            [] if job is None else draw(st.lists(snapshots(job, moments), max_size=6))
        ),
        events=sort_events(draw(st.lists(events(moments), max_size=6))),
    )


digests = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)


@st.composite
def snapshots(
    draw: st.DrawFn, job: JobId, moments: st.SearchStrategy[datetime]
) -> SnapshotCommitment:
    digest = draw(digests)
    return SnapshotCommitment(
        job=job,
        step=draw(counts),
        digest=digest,
        at=draw(moments),
        parent=draw(st.none() | digests.filter(lambda parent: parent != digest)),
    )


def events(moments: st.SearchStrategy[datetime]) -> st.SearchStrategy[GateEvent]:
    return st.builds(
        GateEvent,
        at=moments,
        job=st.none() | identifiers.map(JobId),
        kind=st.sampled_from(GateEventKind),
        order=st.none() | identifiers.map(OrderId),
        detail=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=MAX_DETAIL),
    )


@settings(max_examples=150, deadline=None)
@given(reports())
def test_random_valid_reports_round_trip(report: UsageReport) -> None:
    data = report.to_bytes()
    parsed = parse_report(data)
    assert parsed == report
    assert parsed.to_bytes() == data


# ---------------------------------------------------------------- the typed fast reader


def _strict(data: bytes) -> UsageReport | BrakepedalError:
    """The strict reader alone (canonical JSON, record, constructor): its report or error."""
    try:
        return report_format._parse_report_strict(data, DEFAULT_LIMITS)
    except BrakepedalError as e:
        return e


def _swap_first_keys(data: bytes) -> bytes:
    head, rest = data[1:].split(b',"busy_ms":', 1)
    busy, tail = rest.split(b",", 1)
    return b'{"busy_ms":' + busy + b"," + head + b"," + tail


#: Canonical report bytes and near misses of them: each must go to the strict reader.
_MUTATIONS: list[tuple[str, Callable[[bytes], bytes]]] = [
    ("as written", lambda data: data),
    ("a space", lambda data: data.replace(b",", b", ", 1)),
    ("trailing newline", lambda data: data + b"\n"),
    ("unsorted keys", _swap_first_keys),
    ("offset for Z", lambda data: data.replace(b':00Z"', b':00+00:00"', 1)),
    ("lowercase t", lambda data: data.replace(b"T", b"t", 1)),
    ("zero fraction", lambda data: data.replace(b':00Z"', b':00.000000Z"', 1)),
    ("escape", lambda data: data.replace(b'"device":"', b'"device":"\\u0061', 1)),
    ("past 2^53", lambda data: re.sub(rb'"energy_mj":\d+', b'"energy_mj":9007199254740992', data)),
    ("past 2^64", lambda data: re.sub(rb'"energy_mj":\d+', b'"energy_mj":' + b"9" * 25, data)),
    ("negative", lambda data: re.sub(rb'"busy_ms":\d+', b'"busy_ms":-1', data)),
    ("float", lambda data: re.sub(rb'"sequence":(\d+)', rb'"sequence":\1.0', data)),
    ("exponent", lambda data: re.sub(rb'"sequence":(\d+)', rb'"sequence":\1e0', data)),
    ("bool count", lambda data: re.sub(rb'"minute_count":\d+', b'"minute_count":true', data)),
    ("null count", lambda data: re.sub(rb'"minute_count":\d+', b'"minute_count":null', data)),
    ("unknown field", lambda data: data.replace(b'{"accelerator"', b'{"a":1,"accelerator"', 1)),
    ("missing field", lambda data: re.sub(rb'"site":(null|"[^"]*"),', b"", data)),
    (
        "duplicate key",
        lambda data: data.replace(b'{"accelerator"', b'{"accelerator":"x","accelerator"', 1),
    ),
    ("version 2", lambda data: data.replace(b'"spec_version":1', b'"spec_version":2')),
    ("other format", lambda data: data.replace(b"usage-report", b"usage-reporT")),
    ("uppercase hex", lambda data: data.replace(b'"minute_root":"', b'"minute_root":"A', 1)),
    ("bad workload", lambda data: re.sub(rb'"workload":"\w+"', b'"workload":"mining"', data)),
    ("bad id", lambda data: data.replace(b'"device":"', b'"device":"-', 1)),
    ("object for list", lambda data: data.replace(b'"events":[', b'"events":[{}', 1)),
    ("nested deep", lambda data: data.replace(b'"events":[', b'"events":[[[[]]],', 1)),
]


@settings(max_examples=300, deadline=None)
@given(reports(), st.integers(0, len(_MUTATIONS) - 1))
def test_the_fast_reader_only_accepts_what_the_strict_reader_accepts_alike(
    report: UsageReport, which: int
) -> None:
    """What canonical_report accepts, the strict reader accepts with an equal report; and the
    fast reader takes every canonical report without a backslash (what agents sign)."""
    name, mutate = _MUTATIONS[which]
    data = mutate(report.to_bytes())
    fast = report_format.canonical_report(data)
    if name == "as written" and b"\\" not in data:
        assert fast == report
    if fast is not None:
        assert _strict(data) == fast
        assert fast.to_bytes() == data
    parsed = _strict(data)
    if isinstance(parsed, BrakepedalError):
        with pytest.raises(BrakepedalError) as raised:
            parse_report(data)
        assert (raised.value.reason, raised.value.message) == (parsed.reason, parsed.message)
    else:
        assert parse_report(data) == parsed


class _Str(str):
    """A str subclass: the plain check wants exact types, the full check may take it."""


#: One field of a valid report set to a value that is wrong, or right in an unusual form.
_NEAR_FIELDS: list[tuple[str, Callable[[UsageReport], object]]] = [
    ("format", lambda r: "brakepedal.usage-reporT"),
    ("spec_version", lambda r: 2),
    ("spec_version", lambda r: True),
    ("window_start", lambda r: r.window_start + SECOND),
    ("window_start", lambda r: r.window_start + timedelta(microseconds=1)),
    ("window_start", lambda r: r.window_start.replace(tzinfo=None)),
    ("window_start", lambda r: r.window_start.astimezone(timezone(timedelta(hours=1)))),
    ("window_start", lambda r: r.window_start.replace(tzinfo=timezone(timedelta(0)))),
    ("window_start", lambda r: r.window_end),
    ("window_start", lambda r: r.window_end - timedelta(days=1, minutes=1)),
    ("window_end", lambda r: r.window_start),
    ("window_end", lambda r: r.window_end.isoformat()),
    ("minute_count", lambda r: r.minute_count + 1),
    ("minute_count", lambda r: r.minute_count - 1),
    ("minute_count", lambda r: float(r.minute_count)),
    ("device", lambda r: str(r.device)),
    ("accelerator", lambda r: "Nvidia"),
    ("accelerator", lambda r: _Str(r.accelerator)),
    ("accelerator", lambda r: b"nvidia"),
    ("sequence", lambda r: -1),
    ("sequence", lambda r: 2**53),
    ("sequence", lambda r: True),
    ("sequence", lambda r: 0),
    ("sequence", lambda r: float(r.sequence)),
    ("previous", lambda r: r.previous.upper()),
    ("previous", lambda r: GENESIS_PREVIOUS),
    ("previous", lambda r: r.previous[:63]),
    ("minute_root", lambda r: r.minute_root + "0"),
    ("minute_root", lambda r: _Str(r.minute_root)),
    ("job", lambda r: "job-1"),
    ("tenant", lambda r: "lab"),
    ("permit", lambda r: "p-1"),
    ("site", lambda r: "dc"),
    ("workload", lambda r: "training"),
    ("governance", lambda r: {}),
    ("busy_ms", lambda r: r.minute_count * 60_000 + 1),
    ("busy_ms", lambda r: -1),
    ("busy_ms", lambda r: False),
    ("tensor_active_ms", lambda r: r.busy_ms + 1),
    ("tensor_active_ms", lambda r: -1),
    ("tensor_active_ms", lambda r: True),
    ("energy_mj", lambda r: 2**53),
    ("energy_mj", lambda r: None),
    ("memory_max_bytes", lambda r: -1),
    ("memory_max_bytes", lambda r: 1.5),
    ("interconnect_bytes", lambda r: 2**53),
    ("interconnect_bytes", lambda r: "1"),
    ("snapshots", lambda r: []),
    ("events", lambda r: []),
    ("events", lambda r: (TERM,)),
]


@settings(max_examples=200, deadline=None)
@given(reports(), st.integers(0, len(_NEAR_FIELDS) - 1))
def test_the_plain_check_never_passes_what_the_full_check_refuses(
    report: UsageReport, which: int
) -> None:
    """UsageReport's fast acceptance (``_plainly_valid``) implies its full check; and it takes
    every valid report without hand-ins, so that it is the path nearly every report takes."""
    plain = struct_replace(report, snapshots=(), events=())
    assert report_format._plainly_valid(plain)
    name, value = _NEAR_FIELDS[which]
    msgspec.structs.force_setattr(plain, name, value(plain))
    if report_format._plainly_valid(plain):
        plain._check()  # raises if the fast acceptance was wrong


def test_the_fast_reader_takes_the_fixture_and_declines_tight_limits() -> None:
    assert report_format.canonical_report(GOOD) == _strict(GOOD)
    assert report_format.canonical_report(GOOD, limits=Limits(max_json_bytes=len(GOOD) - 1)) is None
    assert report_format.canonical_report(GOOD, limits=Limits(max_json_depth=2)) is None


FIXED_ENVELOPE = sign_report(report_at(), SIGNER)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=600)
    | st.integers(0, len(FIXED_ENVELOPE) - 1).map(lambda cut: FIXED_ENVELOPE[:cut])
)
def test_random_bytes_to_open_report_raise_only_brakepedal_errors(data: bytes) -> None:
    with contextlib.suppress(BrakepedalError):
        open_report(data, SIGNER.public_key)


CHAIN = chain(3)
ENVELOPES = [sign_report(report, SIGNER) for report in CHAIN]


def _with_payload(envelope: bytes, payload: bytes) -> bytes:
    body = json.loads(envelope)
    body["payload"] = base64.b64encode(payload).decode()
    return canonical_json(body)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, len(CHAIN) - 1), st.data())
def test_any_single_byte_change_breaks_verification(which: int, data: st.DataObject) -> None:
    verify_chain([open_report(envelope, SIGNER.public_key) for envelope in ENVELOPES])
    original = CHAIN[which].to_bytes()
    position = data.draw(st.integers(0, len(original) - 1))
    replacement = data.draw(st.integers(0, 255).filter(lambda b: b != original[position]))
    changed = bytearray(original)
    changed[position] = replacement
    # The signature over the original bytes no longer covers the changed ones...
    with pytest.raises(BrakepedalError):
        open_report(_with_payload(ENVELOPES[which], bytes(changed)), SIGNER.public_key)
    # ...and even a re-signed change breaks the chain or fails to parse (unless it is the head).
    if which < len(CHAIN) - 1:
        with pytest.raises(BrakepedalError):
            _parse_into_chain(which, bytes(changed))


def _parse_into_chain(which: int, data: bytes) -> None:
    reports_now = list(CHAIN)
    reports_now[which] = parse_report(data)
    verify_chain(reports_now)


def test_report_from_a_file_backed_signer_type() -> None:
    assert isinstance(SIGNER, CryptoSigner)
