"""What a usage report carries besides its sums: weight-snapshot commitments and gate events.

A training framework hook hands in a :class:`SnapshotCommitment` (the SHA-256 of a weight
snapshot's manifest or bytes at a training step) and the gate hands in a :class:`GateEvent`
(``refused``, ``started``, ``signalled_term``, ``signalled_kill``, ``exited``) through the
node's hand-in store (:mod:`brakepedal.agent.handin`); the agent puts those of a window into the
window's reports (:mod:`brakepedal.wire.report_format`). Both are values whose constructors
check every field; :meth:`~SnapshotCommitment.to_json` gives the JSON object the report's
canonical bytes hold and :func:`parse_snapshots` / :func:`parse_events` read a report's arrays
strictly, with each error's message starting at the item's path
(``usage_report.snapshots[2].digest``).

The counts are bounded here, not in :class:`~brakepedal.model.limits.Limits`: the bound is part
of the format, because a device must never sign a report that a registry with other settings
refuses. The bounds keep a report with every item at its longest inside the default JSON and
envelope sizes (``tests/unit/wire/test_report.py`` builds one).

Reasons (``report.*``): ``field_invalid``, ``field_unknown``, ``field_missing``,
``digest_invalid``, ``parent_invalid``, ``event_kind_invalid``, ``detail_invalid``,
``time_not_canonical``, ``too_many_snapshots``, ``too_many_events``, ``snapshots_unsorted``,
``events_unsorted``, ``snapshot_outside_window``, ``event_outside_window`` (and, checked by the
report, ``snapshot_job_mismatch``); and the identifiers' and times' own (``job_id.*``,
``order_id.*``, ``time.*``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from itertools import pairwise
from typing import Any, TypeVar, cast

from brakepedal.errors import InputError, located
from brakepedal.model.types import JobId, OrderId
from brakepedal.wire._codec import (
    SHA256_HEX,
    canonical_time,
    check_datetime,
    check_int,
    encode,
    fail,
)

__all__ = [
    "MAX_DETAIL",
    "MAX_EVENTS",
    "MAX_SNAPSHOTS",
    "GateEvent",
    "GateEventKind",
    "SnapshotCommitment",
    "check_items",
    "parse_events",
    "parse_snapshots",
    "short_detail",
]

#: Snapshot commitments in one report (one job, one window of at most a day).
MAX_SNAPSHOTS = 256
#: Gate events in one report (every job the node's gate ran in the window).
MAX_EVENTS = 1024
#: Characters in a gate event's ``detail``: printable ASCII, so one spelling and no control
#: characters reach a signed report or a terminal.
MAX_DETAIL = 96
_DETAIL = re.compile(rf"[\x20-\x7e]{{0,{MAX_DETAIL}}}")
_CANONICAL_TIME = canonical_time("report")


class GateEventKind(StrEnum):
    """What the gate did: refused a job, started it, signalled it, or saw it exit."""

    REFUSED = "refused"
    STARTED = "started"
    SIGNALLED_TERM = "signalled_term"
    SIGNALLED_KILL = "signalled_kill"
    EXITED = "exited"


def _relocated(error: InputError, kind: str, path: str) -> InputError:
    """``error`` raised by an item's constructor, its ``kind.field`` path moved under ``path``."""
    if error.message.startswith(f"{kind}."):
        return InputError(error.reason, f"{path}{error.message[len(kind) :]}")
    return located(error, path)


def _check_digest(value: object, path: str, *, nullable: bool = False) -> None:
    if value is None and nullable:
        return
    if not isinstance(value, str) or SHA256_HEX.fullmatch(value) is None:
        fail("report.digest_invalid", path, "needs 64 lowercase hex (SHA-256)")


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotCommitment:
    """A training job's commitment to its weights at ``step``: SHA-256 of the snapshot.

    ``digest`` is the SHA-256 (64 lowercase hex) of the snapshot's manifest or bytes; ``parent``
    is the digest of the snapshot the run started from when it continues another run's lineage
    (``None`` otherwise); ``at`` is when it was handed in (UTC).
    """

    # In the order of the report's canonical JSON (the typed reader re-encodes them).
    at: datetime
    digest: str
    job: JobId
    parent: str | None = None
    step: int

    def __post_init__(self) -> None:
        if not isinstance(self.job, JobId):
            fail("report.field_invalid", "snapshot.job", f"expected a JobId, got {self.job!r:.40}")
        check_int(self.step, "snapshot.step", "report")
        _check_digest(self.digest, "snapshot.digest")
        _check_digest(self.parent, "snapshot.parent", nullable=True)
        if self.parent == self.digest:
            fail("report.parent_invalid", "snapshot.parent", "a snapshot is not its own parent")
        object.__setattr__(self, "at", check_datetime(self.at, "snapshot.at", "report"))

    @property
    def sort_key(self) -> tuple[datetime, str, int, str, str]:
        """The order of snapshots in a report: by time, then by every other field."""
        return (self.at, self.job, self.step, self.digest, self.parent or "")

    def to_json(self) -> dict[str, object]:
        """The JSON object in the report's ``snapshots`` array: every field, ``parent`` null."""
        return {
            "at": encode(self.at),
            "digest": self.digest,
            "job": encode(self.job),
            "parent": self.parent,
            "step": self.step,
        }

    @classmethod
    def from_json(cls, value: object, path: str) -> SnapshotCommitment:
        """Read one item of a report's ``snapshots`` array; errors start with ``path``."""
        fields = _object(value, path, frozenset({"at", "digest", "job", "parent", "step"}))
        try:
            return cls(
                job=_field(fields, "job", JobId, path),
                step=fields["step"],
                digest=fields["digest"],
                at=_field(fields, "at", _time, path),
                parent=fields["parent"],
            )
        except InputError as e:
            raise _relocated(e, "snapshot", path) from e


@dataclass(frozen=True, slots=True, kw_only=True)
class GateEvent:
    """One step of the node's gate: ``kind`` of job ``job`` at ``at`` under ``order``.

    ``order`` is the pause order that made the gate refuse or stop the job (``None`` when none
    did); ``detail`` is short printable ASCII (the gate's reason code or the exit status,
    never the job's command line, which may hold a customer's secrets).
    """

    # In the order of the report's canonical JSON (the typed reader re-encodes them).
    at: datetime
    detail: str = ""
    job: JobId | None
    kind: GateEventKind
    order: OrderId | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.job, JobId | None):
            fail("report.field_invalid", "event.job", f"expected a JobId, got {self.job!r:.40}")
        if not isinstance(self.kind, GateEventKind):
            fail("report.event_kind_invalid", "event.kind", f"{self.kind!r:.40} is not a kind")
        if not isinstance(self.order, OrderId | None):
            fail(
                "report.field_invalid",
                "event.order",
                f"expected an OrderId, got {self.order!r:.40}",
            )
        if not isinstance(self.detail, str) or _DETAIL.fullmatch(self.detail) is None:
            fail("report.detail_invalid", "event.detail", f"<= {MAX_DETAIL} printable ASCII")
        object.__setattr__(self, "at", check_datetime(self.at, "event.at", "report"))

    @property
    def sort_key(self) -> tuple[datetime, str, str, str, str]:
        """The order of events in a report: by time, then by every other field."""
        return (self.at, self.kind.value, self.job or "", self.order or "", self.detail)

    def to_json(self) -> dict[str, object]:
        """The JSON object in the report's ``events`` array: every field, absent ones null."""
        return {
            "at": encode(self.at),
            "detail": self.detail,
            "job": encode(self.job),
            "kind": self.kind.value,
            "order": encode(self.order),
        }

    @classmethod
    def from_json(cls, value: object, path: str) -> GateEvent:
        """Read one item of a report's ``events`` array; errors start with ``path``."""
        fields = _object(value, path, frozenset({"at", "detail", "job", "kind", "order"}))
        try:
            return cls(
                at=_field(fields, "at", _time, path),
                job=_field(fields, "job", _nullable(JobId), path),
                kind=_field(fields, "kind", _kind, path),
                order=_field(fields, "order", _nullable(OrderId), path),
                detail=fields["detail"],
            )
        except InputError as e:
            raise _relocated(e, "event", path) from e


def short_detail(text: str) -> str:
    """``text`` as a valid ``detail``: non-printable or non-ASCII characters become ``?``, and
    anything past :data:`MAX_DETAIL` characters is cut (ending in ``...``)."""
    printable = "".join(c if " " <= c <= "~" else "?" for c in text)
    if len(printable) <= MAX_DETAIL:
        return printable
    return printable[: MAX_DETAIL - 3] + "..."


# ------------------------------------------------------------------------------ parsing

_T = TypeVar("_T")


def _object(value: object, path: str, names: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        fail("report.field_invalid", path, "expected an object")
    unknown = sorted(set(value) - names)
    if unknown:
        fail("report.field_unknown", f"{path}.{unknown[0][:64]}", "unknown field")
    missing = sorted(names - set(value))
    if missing:
        fail("report.field_missing", f"{path}.{missing[0]}", "missing")
    return value


def _field(fields: dict[str, Any], name: str, parse: Callable[[Any], _T], path: str) -> _T:
    try:
        return parse(fields[name])
    except InputError as e:
        raise located(e, f"{path}.{name}") from e


def _time(value: object) -> datetime:
    return cast("datetime", _CANONICAL_TIME(value))


def _nullable(parse: Callable[[Any], _T]) -> Callable[[Any], _T | None]:
    return lambda value: None if value is None else parse(value)


def _kind(value: object) -> GateEventKind:
    if not isinstance(value, str) or value not in {kind.value for kind in GateEventKind}:
        raise InputError("report.event_kind_invalid", f"{str(value)[:40]!r} is not a gate event")
    return GateEventKind(value)


def _array(value: object, path: str, limit: int, reason: str) -> list[object]:
    if not isinstance(value, list):
        fail("report.field_invalid", path, "expected an array")
    if len(value) > limit:  # before reading any item: the work stays bounded
        fail(reason, path, f"{len(value)} items, at most {limit}")
    return value


def parse_snapshots(value: object) -> tuple[SnapshotCommitment, ...]:
    """A report's ``snapshots`` array (order and window are checked by the report)."""
    path = "usage_report.snapshots"
    items = _array(value, path, MAX_SNAPSHOTS, "report.too_many_snapshots")
    return tuple(
        SnapshotCommitment.from_json(item, f"{path}[{index}]") for index, item in enumerate(items)
    )


def parse_events(value: object) -> tuple[GateEvent, ...]:
    """A report's ``events`` array (order and window are checked by the report)."""
    path = "usage_report.events"
    items = _array(value, path, MAX_EVENTS, "report.too_many_events")
    return tuple(GateEvent.from_json(item, f"{path}[{index}]") for index, item in enumerate(items))


# ---------------------------------------------------------------------- report's arrays


def check_items(
    items: object,
    name: str,
    item_type: type[SnapshotCommitment] | type[GateEvent],
    *,
    window: tuple[datetime, datetime],
) -> None:
    """Refuse a report's ``snapshots`` or ``events`` unless they are a tuple of at most the
    bound, of ``item_type``, strictly increasing by ``sort_key`` (one byte form, no duplicates)
    and inside the report's window ``[start, end)``."""
    path = f"usage_report.{name}"
    limit, what = (
        (MAX_SNAPSHOTS, "snapshot") if item_type is SnapshotCommitment else (MAX_EVENTS, "event")
    )
    if not isinstance(items, tuple):
        fail("report.field_invalid", path, f"expected a tuple, got {type(items).__name__}")
    if len(items) > limit:
        fail(f"report.too_many_{name}", path, f"{len(items)} items, at most {limit}")
    for index, item in enumerate(items):
        if not isinstance(item, item_type):
            fail("report.field_invalid", f"{path}[{index}]", f"expected a {item_type.__name__}")
        if not window[0] <= item.at < window[1]:
            fail(f"report.{what}_outside_window", f"{path}[{index}].at", "not in the window")
    for index, (before, after) in enumerate(pairwise(items), start=1):
        if not before.sort_key < after.sort_key:
            fail(f"report.{name}_unsorted", f"{path}[{index}]", "not after the item before it")
