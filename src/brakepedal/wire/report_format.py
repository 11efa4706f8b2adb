"""The usage report's format: its fields, invariants, canonical bytes and strict parser.

The values and rules are those of :mod:`brakepedal.wire.report`, which builds, signs, opens,
chains and challenges reports and re-exports everything here; ``docs/agent.md`` gives every
field with its unit. Reasons are listed in :mod:`brakepedal.wire.report`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

import msgspec

from brakepedal.accounting.usage import MAX_WINDOW_SECONDS, Workload
from brakepedal.crypto.canonical import MAX_SAFE_INTEGER, typed_candidate
from brakepedal.errors import BrakepedalError, InputError
from brakepedal.model.limits import DEFAULT_LIMITS, Limits
from brakepedal.model.types import DeviceId, EntityId, Identifier, JobId, PermitId, SiteId
from brakepedal.wire._codec import (
    SHA256_HEX,
    SPEC_VERSION,
    Parse,
    as_is,
    canonical_time,
    check_datetime,
    check_int,
    fail,
    read_record,
    write_record,
)
from brakepedal.wire.report_items import (
    GateEvent,
    SnapshotCommitment,
    check_items,
    parse_events,
    parse_snapshots,
)

__all__ = [
    "GENESIS_PREVIOUS",
    "MINUTE",
    "REPORT_FORMAT",
    "Attribution",
    "GovernanceSeen",
    "UsageReport",
    "canonical_report",
    "parse_report",
    "sort_events",
    "sort_snapshots",
    "window_minutes",
]

REPORT_FORMAT = "brakepedal.usage-report"
#: ``previous`` of the first report of a device (sequence 0).
GENESIS_PREVIOUS = "0" * 64
MINUTE = timedelta(minutes=1)
_ACCELERATOR = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")
_NONE = type(None)
_Item = TypeVar("_Item", SnapshotCommitment, GateEvent)


@dataclass(frozen=True, slots=True, kw_only=True)
class GovernanceSeen:
    """The governance state the agent acted on: TUF timestamp version, log checkpoint size.

    Fields in the order of the report's canonical JSON (the typed reader re-encodes them).
    """

    checkpoint_size: int
    timestamp_version: int

    def __post_init__(self) -> None:
        check_int(self.timestamp_version, "governance.timestamp_version", "report", low=1)
        check_int(self.checkpoint_size, "governance.checkpoint_size", "report")

    def to_json(self) -> dict[str, int]:
        """The JSON object of the report's ``governance`` field."""
        return {
            "checkpoint_size": self.checkpoint_size,
            "timestamp_version": self.timestamp_version,
        }

    @classmethod
    def from_json(cls, value: object) -> GovernanceSeen:
        """Read the ``governance`` object: exactly its two integer fields."""
        if not isinstance(value, dict) or set(value) != {"checkpoint_size", "timestamp_version"}:
            raise InputError(
                "report.governance_invalid", "expected {checkpoint_size, timestamp_version}"
            )
        return cls(
            timestamp_version=value["timestamp_version"], checkpoint_size=value["checkpoint_size"]
        )


@dataclass(frozen=True, slots=True)
class Attribution:
    """Whose work the window was: scheduler job, tenant, permit, site and declared workload."""

    job: JobId | None = None
    tenant: EntityId | None = None
    permit: PermitId | None = None
    site: SiteId | None = None
    workload: Workload = Workload.UNKNOWN


#: Per field of a report: the types its value may have (the rest is checked by hand).
_TYPES: dict[str, tuple[type, ...]] = {
    "device": (DeviceId,),
    "accelerator": (str,),
    "previous": (str,),
    "minute_root": (str,),
    "job": (JobId, _NONE),
    "tenant": (EntityId, _NONE),
    "permit": (PermitId, _NONE),
    "site": (SiteId, _NONE),
    "workload": (Workload,),
    "governance": (GovernanceSeen, _NONE),
}


class UsageReport(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One device's usage in one window; units: ms, mJ, bytes (``docs/agent.md``).

    The fields are declared in the order of the canonical JSON (code-point order of their
    names), header included, so that the typed reader of :func:`parse_report` can decode a
    report straight into this class and compare its re-encoding with the bytes. However made
    (constructed, decoded, ``msgspec.structs.replace``), every instance passes the checks of
    ``__post_init__``.
    """

    accelerator: str
    busy_ms: int
    device: DeviceId
    energy_mj: int
    #: The node's gate events during the window (every job's), in order.
    events: tuple[GateEvent, ...] = ()
    format: str = REPORT_FORMAT
    governance: GovernanceSeen | None
    interconnect_bytes: int | None
    job: JobId | None
    memory_max_bytes: int | None
    minute_count: int
    minute_root: str
    permit: PermitId | None
    previous: str
    sequence: int
    site: SiteId | None
    #: Weight-snapshot commitments of ``job`` handed in during the window, in order.
    snapshots: tuple[SnapshotCommitment, ...] = ()
    spec_version: int = SPEC_VERSION
    tenant: EntityId | None
    tensor_active_ms: int | None
    window_end: datetime
    window_start: datetime
    workload: Workload

    kind: ClassVar[str] = "usage_report"

    def __post_init__(self) -> None:
        if not _plainly_valid(self):
            self._check()

    def _check(self) -> None:
        """Every check of a report, each refusal naming its field."""
        if self.format != REPORT_FORMAT or self.spec_version != SPEC_VERSION:
            fail("report.format_unknown", "usage_report.format", "not this format's header")
        for name, expected in _TYPES.items():
            value = getattr(self, name)
            if not isinstance(value, expected):
                fail("report.field_invalid", f"usage_report.{name}", f"got {value!r:.60}")
        if _ACCELERATOR.fullmatch(self.accelerator) is None:
            fail("report.accelerator_invalid", "usage_report.accelerator", "not a catalogue id")
        check_int(
            self.sequence, "usage_report.sequence", "report", reason="report.sequence_invalid"
        )
        for name in ("previous", "minute_root"):
            if SHA256_HEX.fullmatch(getattr(self, name)) is None:
                fail("report.digest_invalid", f"usage_report.{name}", "needs 64 lowercase hex")
        if (self.sequence == 0) != (self.previous == GENESIS_PREVIOUS):
            fail("report.previous_invalid", "usage_report.previous", "zeros exactly at sequence 0")
        minutes = window_minutes(self.window_start, self.window_end, self._set_time)
        check_int(
            self.minute_count,
            "usage_report.minute_count",
            "report",
            low=minutes,
            high=minutes,
            reason="report.minute_count_invalid",
        )
        self._check_quantities()
        self._check_hand_ins()

    def _set_time(self, name: str, value: datetime) -> None:
        if getattr(self, name) is not value:
            msgspec.structs.force_setattr(self, name, value)

    def _check_quantities(self) -> None:
        window_ms = self.minute_count * 60_000
        check_int(
            self.busy_ms,
            "usage_report.busy_ms",
            "report",
            high=window_ms,
            reason="report.busy_above_window",
        )
        check_int(
            self.tensor_active_ms,
            "usage_report.tensor_active_ms",
            "report",
            high=self.busy_ms,
            nullable=True,
            reason="report.tensor_active_invalid",
        )
        check_int(self.energy_mj, "usage_report.energy_mj", "report")
        for name in ("memory_max_bytes", "interconnect_bytes"):
            check_int(getattr(self, name), f"usage_report.{name}", "report", nullable=True)

    def _check_hand_ins(self) -> None:
        window = (self.window_start, self.window_end)
        check_items(self.snapshots, "snapshots", SnapshotCommitment, window=window)
        check_items(self.events, "events", GateEvent, window=window)
        for index, snapshot in enumerate(self.snapshots):
            if snapshot.job != self.job:
                fail(
                    "report.snapshot_job_mismatch",
                    f"usage_report.snapshots[{index}].job",
                    f"{snapshot.job} is not the report's job {self.job}",
                )

    @property
    def attribution(self) -> Attribution:
        """The report's attribution fields together."""
        return Attribution(self.job, self.tenant, self.permit, self.site, self.workload)

    def to_bytes(self) -> bytes:
        """The canonical bytes: what the device signs and the next report's ``previous`` hashes."""
        values: dict[str, object] = {name: getattr(self, name) for name in _BODY}
        values["governance"] = None if self.governance is None else self.governance.to_json()
        values["snapshots"] = [snapshot.to_json() for snapshot in self.snapshots]
        values["events"] = [event.to_json() for event in self.events]
        return write_record(REPORT_FORMAT, values)

    def digest(self) -> str:
        """SHA-256 (lowercase hex) of :meth:`to_bytes`: the chain link."""
        return hashlib.sha256(self.to_bytes()).hexdigest()


def window_minutes(
    start: object, end: object, store: Callable[[str, datetime], None] | None = None
) -> int:
    """Whole minutes in the window ``[start, end)``, after checking it."""
    times = []
    for name, value in (("window_start", start), ("window_end", end)):
        moment = check_datetime(value, f"usage_report.{name}", "report")
        if moment.second or moment.microsecond:
            fail("report.window_not_aligned", f"usage_report.{name}", "not a whole minute")
        if store is not None:
            store(name, moment)
        times.append(moment)
    length = times[1] - times[0]
    if not timedelta(0) < length <= timedelta(seconds=MAX_WINDOW_SECONDS):
        fail("report.window_invalid", "usage_report.window_end", "not 1 min to 1 day after start")
    return length // MINUTE


def _plainly_valid(report: UsageReport) -> bool:
    """Whether ``report`` is valid the way nearly every report is: UTC window ends, no hand-ins,
    every field of its type and in range. One expression, without the calls and messages of
    :meth:`UsageReport._check`, which decides (and names the defect) whenever this says no.
    ``tests/unit/wire/test_report.py`` checks that this never accepts what ``_check`` refuses.
    """
    start, end = report.window_start, report.window_end
    sequence, busy, tensor = report.sequence, report.busy_ms, report.tensor_active_ms
    memory, interconnect = report.memory_max_bytes, report.interconnect_bytes
    job, tenant, permit, site = report.job, report.tenant, report.permit, report.site
    return (
        report.format == REPORT_FORMAT
        and report.spec_version == SPEC_VERSION
        and type(report.snapshots) is tuple
        and not report.snapshots
        and type(report.events) is tuple
        and not report.events
        and type(start) is datetime
        and type(end) is datetime
        and start.tzinfo is end.tzinfo is UTC
        and not (start.second or start.microsecond or end.second or end.microsecond)
        and timedelta(0) < end - start <= _MAX_WINDOW
        and type(report.minute_count) is int
        and report.minute_count == (end - start) // MINUTE
        and isinstance(report.device, DeviceId)
        and type(report.accelerator) is str
        and _ACCELERATOR.fullmatch(report.accelerator) is not None
        and type(sequence) is int
        and 0 <= sequence <= MAX_SAFE_INTEGER
        and type(report.previous) is str
        and SHA256_HEX.fullmatch(report.previous) is not None
        and (sequence == 0) == (report.previous == GENESIS_PREVIOUS)
        and type(report.minute_root) is str
        and SHA256_HEX.fullmatch(report.minute_root) is not None
        and (job is None or isinstance(job, JobId))
        and (tenant is None or isinstance(tenant, EntityId))
        and (permit is None or isinstance(permit, PermitId))
        and (site is None or isinstance(site, SiteId))
        and isinstance(report.workload, Workload)
        and (report.governance is None or isinstance(report.governance, GovernanceSeen))
        and type(busy) is int
        and 0 <= busy <= report.minute_count * 60_000
        and (tensor is None or (type(tensor) is int and 0 <= tensor <= busy))
        and type(report.energy_mj) is int
        and 0 <= report.energy_mj <= MAX_SAFE_INTEGER
        and (memory is None or (type(memory) is int and 0 <= memory <= MAX_SAFE_INTEGER))
        and (
            interconnect is None
            or (type(interconnect) is int and 0 <= interconnect <= MAX_SAFE_INTEGER)
        )
    )


_MAX_WINDOW = timedelta(seconds=MAX_WINDOW_SECONDS)


def _nullable(parse: Parse) -> Parse:
    return lambda value: None if value is None else parse(value)


_WORKLOADS = frozenset(item.value for item in Workload)


def _workload(value: object) -> Workload:
    if not isinstance(value, str) or value not in _WORKLOADS:
        raise InputError("report.workload_invalid", f"{str(value)[:40]!r} is not a workload")
    return Workload(value)


#: The report's fields after the header, in canonical order.
_BODY = tuple(
    name for name in UsageReport.__struct_fields__ if name not in {"format", "spec_version"}
)
_SCHEMA: dict[str, Parse] = dict.fromkeys(_BODY, as_is)
_SCHEMA |= {
    "device": DeviceId,
    "window_start": canonical_time("report"),
    "window_end": canonical_time("report"),
    "job": _nullable(JobId),
    "tenant": _nullable(EntityId),
    "permit": _nullable(PermitId),
    "site": _nullable(SiteId),
    "workload": _workload,
    "governance": _nullable(GovernanceSeen.from_json),
    "snapshots": parse_snapshots,
    "events": parse_events,
}


def sort_snapshots(snapshots: Iterable[SnapshotCommitment]) -> tuple[SnapshotCommitment, ...]:
    """``snapshots`` in the one order a report holds them, duplicates dropped."""
    items = _distinct(snapshots, SnapshotCommitment, "snapshots")
    return tuple(sorted(items, key=lambda snapshot: snapshot.sort_key))


def sort_events(events: Iterable[GateEvent]) -> tuple[GateEvent, ...]:
    """``events`` in the one order a report holds them, duplicates dropped."""
    return tuple(sorted(_distinct(events, GateEvent, "events"), key=lambda event: event.sort_key))


def _distinct(items: Iterable[_Item], item_type: type[_Item], name: str) -> set[_Item]:
    distinct: set[_Item] = set()
    for index, item in enumerate(items):
        if not isinstance(item, item_type):
            fail(
                "report.field_invalid",
                f"usage_report.{name}[{index}]",
                f"not a {item_type.__name__}",
            )
        distinct.add(item)
    return distinct


def parse_report(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> UsageReport:
    """Parse a report's canonical bytes strictly (unsigned: see :func:`open_report`)."""
    fast = canonical_report(data, limits=limits)
    return fast if fast is not None else _parse_report_strict(data, limits)


def _parse_report_strict(data: bytes, limits: Limits) -> UsageReport:
    """:func:`parse_report` without its fast path: every input, every defect named."""
    values: dict[str, Any] = read_record(
        data,
        format_tag=REPORT_FORMAT,
        kind=UsageReport.kind,
        prefix="report",
        schema=_SCHEMA,
        limits=limits,
    )
    return UsageReport(**values)


def _decode_identifier(kind: type, value: object) -> object:
    # The typed reader's hook for the identifier types (str subclasses that check themselves).
    if isinstance(kind, type) and issubclass(kind, Identifier):
        return kind(value)
    raise NotImplementedError(kind)


def _encode_identifier(value: object) -> object:
    if isinstance(value, Identifier):
        return str(value)
    raise NotImplementedError(type(value))


_REPORT_DECODER = msgspec.json.Decoder(UsageReport, dec_hook=_decode_identifier)
_REPORT_ENCODER = msgspec.json.Encoder(enc_hook=_encode_identifier)
#: A report nests three deep: the report, its snapshots or events, an item.
_REPORT_DEPTH = 3


def canonical_report(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> UsageReport | None:
    """The report in ``data`` if ``data`` is ASCII, within ``limits`` and exactly the canonical
    bytes of a valid report; otherwise ``None``, and :func:`parse_report`'s strict reader
    decides (and names the defect).

    The fast path of :func:`parse_report` (every report an agent signs is canonical). The
    typed decoder (msgspec, C) builds the report, its items and identifiers through their
    constructors, so every check of theirs runs; re-encoding equal to ``data`` leaves no room
    for a missing or unknown field, duplicate keys, whitespace, unsorted keys, a time not in
    its one form or (without a backslash) an escape, and integers beyond 2^53 - 1 are refused
    by the constructors' range checks. Acceptance here implies the strict reader's, with an
    equal report: ``tests/unit/wire/test_report.py`` compares both on generated reports and
    near misses.
    """
    if not typed_candidate(data, limits, depth=_REPORT_DEPTH):
        return None
    try:
        report = _REPORT_DECODER.decode(data)
    except (msgspec.DecodeError, BrakepedalError, RecursionError):
        return None
    if _REPORT_ENCODER.encode(report) != data:
        return None
    return report
