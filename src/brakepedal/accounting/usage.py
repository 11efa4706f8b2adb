"""Attested usage windows: the raw material of every compute figure.

A :class:`UsageWindow` is what one device's signed report says about one window of time: which
accelerator, whose job, how many seconds busy and tensor-active. The registry builds them from
verified reports (a later layer); :func:`parse_usage_document` reads the same facts, with runs
and holdings, from the JSON document that ``brakepedal policy check --usage`` and the tests use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from fractions import Fraction

from brakepedal.errors import InputError
from brakepedal.model.types import DeviceId, EntityId, JobId, SiteId, utc_datetime

__all__ = ["EARLIEST", "LATEST", "UsageWindow", "Workload"]


class Workload(StrEnum):
    """What the window's job declared it was doing (unknown counts as training)."""

    TRAINING = "training"
    INFERENCE = "inference"
    UNKNOWN = "unknown"


#: Longest window one record may cover; reports are minutes long, a day is generous.
MAX_WINDOW_SECONDS = 86_400
#: Usage before attestation existed or in the far future is refused, which also keeps every
#: interval the ledger and policies compute (rolling windows, notification deadlines) far
#: from the ends of the datetime range.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class UsageWindow:
    """One device, one window of time, its attested counters and its attribution."""

    device: DeviceId
    accelerator: str
    owner: EntityId
    start: datetime
    end: datetime
    busy_seconds: Fraction | None
    tensor_active_seconds: Fraction | None = None
    job: JobId | None = None
    site: SiteId | None = None
    workload: Workload = Workload.UNKNOWN

    def __post_init__(self) -> None:
        where = f"window of {self.device} at {self.start}"
        object.__setattr__(self, "start", utc_datetime(self.start))
        object.__setattr__(self, "end", utc_datetime(self.end))
        if not EARLIEST <= self.start < self.end <= LATEST and self.end > self.start:
            raise InputError("usage.time_out_of_range", f"{where}: outside 1970 to 9000")
        if self.end <= self.start:
            raise InputError("usage.window_empty", f"{where}: end is not after start")
        if self.wall_seconds > MAX_WINDOW_SECONDS:
            raise InputError("usage.window_too_long", f"{where}: longer than one day")
        busy = self.busy_seconds
        if busy is not None and not 0 <= busy <= self.wall_seconds:
            raise InputError(
                "usage.busy_invalid", f"{where}: busy_seconds {busy} not within the window"
            )
        tensor = self.tensor_active_seconds
        ceiling = busy if busy is not None else self.wall_seconds
        if tensor is not None and not 0 <= tensor <= ceiling:
            raise InputError(
                "usage.tensor_active_invalid",
                f"{where}: tensor_active_seconds {tensor} exceeds busy time {ceiling}",
            )

    @property
    def wall_seconds(self) -> Fraction:
        """The window's length in seconds (exact, microsecond resolution)."""
        delta = self.end - self.start
        return Fraction(delta.days * 86_400 + delta.seconds) + Fraction(delta.microseconds, 10**6)
