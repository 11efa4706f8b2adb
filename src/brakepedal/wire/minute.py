"""One device's minute: 1 Hz samples in, one canonical minute record out.

Pure: samples and times are arguments. A :class:`MinuteRecord` keeps the within-minute
structure that averages lose (a training step loop and a queue of inference requests can draw
the same mean power): the per-second power series itself, its variance and spectral peak,
busy and tensor-active time, the energy counter's delta. Records stay on the node; a usage
report signs only the Merkle root over their canonical bytes (:mod:`brakepedal.wire.report`),
and a challenge reveals one with its inclusion proof. ``docs/agent.md`` gives every field.

Signed JSON carries no floats (:mod:`brakepedal.crypto.canonical`), so every fractional feature
is an integer in a fixed unit: power in mW, variance in mW², energy in mJ, time in ms,
frequency in mHz, shares in parts per million (ppm).

Conservative rules: a second without a sample counts as busy and, when tensor activity is
measured, as tensor-active, so a sampler that drops readings can only overstate compute.

Reasons: ``sample.*`` for a bad reading; ``minute.*`` for a bad minute or record (``field_*``,
``format_unknown``, ``version_unsupported``, ``time_not_canonical``, ``start_not_aligned``,
``sample_outside``, ``sample_duplicate``, ``previous_invalid``, ``counter_invalid``,
``busy_invalid``, ``tensor_active_invalid``, ``power_stats_mismatch``, ``spectral_invalid``,
``series_invalid``, ``processes_invalid``, ``correlation_*``), with the field's path first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from itertools import pairwise
from typing import ClassVar

from brakepedal.model.limits import DEFAULT_LIMITS, Limits
from brakepedal.model.types import DeviceId
from brakepedal.wire._codec import (
    Parse,
    canonical_time,
    check_datetime,
    check_int,
    fail,
    read_record,
    write_record,
)
from brakepedal.wire.features import (
    MAX_POWER_MW,
    MAX_POWER_W,
    MIN_SPECTRAL_SAMPLES,
    PPM,
    bytes_over,
    cross_device_correlation,
    energy_over,
    power_statistics,
    spectral_peak,
)

__all__ = [
    "DEFAULT_COUNTER_MODULUS",
    "MAX_POWER_W",
    "MINUTE_FORMAT",
    "SLOTS",
    "MinuteRecord",
    "Sample",
    "cross_device_correlation",
    "parse_minute",
    "summarise_minute",
]

MINUTE_FORMAT = "brakepedal.minute-record"
#: One-second slots in a minute; slot ``i`` holds the sample taken in ``[start+i s, start+i+1 s)``.
SLOTS = 60
#: NVML's energy counter is an unsigned 64-bit count of mJ.
DEFAULT_COUNTER_MODULUS = 2**64
MAX_PROCESSES = 1024
MAX_PID = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Sample:
    """One 1 Hz reading of one device, as the telemetry source (NVML, DCGM) gives it.

    ``power_w`` in watts; ``energy_mj`` the device's cumulative energy counter in mJ;
    ``utilisation`` the percentage of the interval a kernel ran (0..100); ``tensor_active``
    the fraction of cycles the tensor pipes were active (0..1, None when not measured);
    ``pcie_bytes``/``nvlink_bytes`` cumulative byte counters (None when not measured).
    """

    time: datetime
    power_w: float
    energy_mj: int
    utilisation: int
    memory_used_bytes: int
    sm_clock_mhz: int
    tensor_active: float | None = None
    pcie_bytes: int | None = None
    nvlink_bytes: int | None = None
    processes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", check_datetime(self.time, "sample.time", "sample"))
        _check_real(self.power_w, "sample.power_w", 0.0, float(MAX_POWER_W))
        if self.tensor_active is not None:
            _check_real(self.tensor_active, "sample.tensor_active", 0.0, 1.0)
        check_int(self.utilisation, "sample.utilisation", "sample", high=100)
        for name in ("energy_mj", "memory_used_bytes", "sm_clock_mhz"):
            check_int(getattr(self, name), f"sample.{name}", "sample", high=2**64 - 1)
        for name in ("pcie_bytes", "nvlink_bytes"):
            check_int(
                getattr(self, name), f"sample.{name}", "sample", high=2**64 - 1, nullable=True
            )
        if not isinstance(self.processes, tuple) or len(self.processes) > MAX_PROCESSES:
            fail("sample.field_invalid", "sample.processes", f"a tuple of <= {MAX_PROCESSES}")
        for pid in self.processes:
            check_int(pid, "sample.processes", "sample", high=MAX_PID)

    @property
    def busy(self) -> bool:
        """Whether anything ran: a kernel, or the tensor pipes."""
        return self.utilisation > 0 or bool(self.tensor_active)


def _check_real(value: object, path: str, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail("sample.field_invalid", path, f"expected a number, got {value!r:.40}")
    if not (math.isfinite(value) and low <= value <= high):
        fail("sample.field_invalid", path, f"{value} is not in [{low}, {high}]")


@dataclass(frozen=True, slots=True, kw_only=True)
class MinuteRecord:
    """The canonical summary of one device's minute; see the module docstring for units.

    ``power_mw`` has one entry per second (None: no sample). Power statistics are exact
    functions of it (checked here); the spectral peak is the strongest non-zero frequency of the
    detrended series and its share of the spectrum's energy. ``counter_resets`` counts energy
    counter steps that could not be work (a driver reload) and were estimated from power.
    """

    device: DeviceId
    minute_start: datetime
    power_mw: tuple[int | None, ...]
    busy_ms: int
    tensor_active_ms: int | None
    energy_mj: int
    counter_resets: int
    power_mean_mw: int | None
    power_variance_mw2: int | None
    power_min_mw: int | None
    power_max_mw: int | None
    spectral_peak_mhz: int | None
    spectral_peak_ppm: int | None
    memory_max_bytes: int | None
    sm_clock_max_mhz: int | None
    pcie_bytes: int | None
    nvlink_bytes: int | None
    processes: tuple[int, ...]

    kind: ClassVar[str] = "minute_record"

    def __post_init__(self) -> None:
        if not isinstance(self.device, DeviceId):
            fail("minute.field_invalid", "minute_record.device", "expected a DeviceId")
        start = check_datetime(self.minute_start, "minute_record.minute_start", "minute")
        object.__setattr__(self, "minute_start", _aligned(start, "minute_record.minute_start"))
        self._check_series()
        self._check_counts()
        self._check_features()

    def _check_series(self) -> None:
        series = self.power_mw
        if not isinstance(series, tuple) or len(series) != SLOTS:
            fail("minute.series_invalid", "minute_record.power_mw", f"needs {SLOTS} entries")
        for value in series:
            check_int(value, "minute_record.power_mw", "minute", high=MAX_POWER_MW, nullable=True)
        processes = self.processes
        if not isinstance(processes, tuple) or len(processes) > MAX_PROCESSES:
            fail("minute.processes_invalid", "minute_record.processes", "a tuple of pids")
        for pid in processes:
            check_int(pid, "minute_record.processes", "minute", high=MAX_PID)
        if any(left >= right for left, right in pairwise(processes)):
            fail("minute.processes_invalid", "minute_record.processes", "not sorted and distinct")

    def _check_counts(self) -> None:
        missing_ms = (SLOTS - self.sample_count) * 1000
        busy_path, tensor_path = "minute_record.busy_ms", "minute_record.tensor_active_ms"
        busy_reason, tensor_reason = "minute.busy_invalid", "minute.tensor_active_invalid"
        check_int(
            self.busy_ms, busy_path, "minute", low=missing_ms, high=SLOTS * 1000, reason=busy_reason
        )
        check_int(
            self.tensor_active_ms,
            tensor_path,
            "minute",
            high=self.busy_ms,
            nullable=True,
            reason=tensor_reason,
        )
        for name in ("energy_mj", "counter_resets"):
            check_int(getattr(self, name), f"minute_record.{name}", "minute")
        nullable = ("memory_max_bytes", "sm_clock_max_mhz", "pcie_bytes", "nvlink_bytes")
        for name in nullable:
            check_int(getattr(self, name), f"minute_record.{name}", "minute", nullable=True)
        for name in ("memory_max_bytes", "sm_clock_max_mhz"):
            if (getattr(self, name) is None) != (self.sample_count == 0):
                fail(
                    "minute.field_invalid", f"minute_record.{name}", "null exactly without samples"
                )

    def _check_features(self) -> None:
        stats = (self.power_mean_mw, self.power_variance_mw2, self.power_min_mw, self.power_max_mw)
        if stats != (power_statistics(self.power_mw) or (None,) * 4):
            fail(
                "minute.power_stats_mismatch",
                "minute_record.power_mean_mw",
                "power statistics do not match the power_mw series",
            )
        peak = (self.spectral_peak_mhz, self.spectral_peak_ppm)
        if peak == (None, None):
            return
        path = "minute_record.spectral_peak_mhz"
        if self.sample_count < MIN_SPECTRAL_SAMPLES or None in peak:
            fail("minute.spectral_invalid", path, "needs both fields and enough samples")
        nyquist_mhz = 1000 // 2
        check_int(
            self.spectral_peak_mhz,
            path,
            "minute",
            low=1,
            high=nyquist_mhz,
            reason="minute.spectral_invalid",
        )
        check_int(
            self.spectral_peak_ppm,
            "minute_record.spectral_peak_ppm",
            "minute",
            high=PPM,
            reason="minute.spectral_invalid",
        )

    @property
    def sample_count(self) -> int:
        """Seconds of the minute with a sample."""
        return sum(value is not None for value in self.power_mw)

    @property
    def tensor_active_share_ppm(self) -> int | None:
        """Tensor-active time over busy time, in ppm (None: not measured or never busy)."""
        if self.tensor_active_ms is None or not self.busy_ms:
            return None
        return self.tensor_active_ms * PPM // self.busy_ms

    def to_bytes(self) -> bytes:
        """The canonical bytes: the Merkle leaf a report commits to, revealed on challenge."""
        values = {field.name: getattr(self, field.name) for field in fields(self)}
        return write_record(MINUTE_FORMAT, values)

    @property
    def leaf(self) -> bytes:
        """The Merkle leaf (the entry, not its hash): :meth:`to_bytes`."""
        return self.to_bytes()


def _aligned(start: datetime, path: str) -> datetime:
    if start.second or start.microsecond:
        fail("minute.start_not_aligned", path, f"{start.isoformat()} is not a whole minute")
    return start


# ---------------------------------------------------------------------------- summarising


def summarise_minute(
    device: DeviceId,
    minute_start: datetime,
    samples: Sequence[Sample],
    *,
    previous: Sample | None = None,
    counter_modulus: int = DEFAULT_COUNTER_MODULUS,
) -> MinuteRecord:
    """The minute record of ``samples`` (time-ordered, at most one per second of the minute).

    ``previous`` is the last sample before the minute (from any earlier minute): energy and byte
    counters then tile exactly, each interval counted in the minute of its later sample. Without
    it the interval before the first sample is not counted. ``counter_modulus`` is where the
    counters wrap; a step larger than any device could make is a reset, estimated from power.
    """
    start = _aligned(check_datetime(minute_start, "minute.minute_start", "minute"), "minute")
    slots = _slots(start, samples)
    present = [sample for sample in slots if sample is not None]
    chain = _counter_chain(start, previous, present, counter_modulus)
    series = tuple(None if s is None else round(s.power_w * 1000) for s in slots)
    stats = power_statistics(series) or (None, None, None, None)
    peak = spectral_peak(series) or (None, None)
    energy, resets = energy_over(chain, counter_modulus)
    return MinuteRecord(
        device=device,
        minute_start=start,
        power_mw=series,
        busy_ms=sum(1000 if s is None or s.busy else 0 for s in slots),
        tensor_active_ms=_tensor_active_ms(slots),
        energy_mj=energy,
        counter_resets=resets,
        power_mean_mw=stats[0],
        power_variance_mw2=stats[1],
        power_min_mw=stats[2],
        power_max_mw=stats[3],
        spectral_peak_mhz=peak[0],
        spectral_peak_ppm=peak[1],
        memory_max_bytes=max((s.memory_used_bytes for s in present), default=None),
        sm_clock_max_mhz=max((s.sm_clock_mhz for s in present), default=None),
        pcie_bytes=bytes_over(chain, "pcie_bytes", counter_modulus),
        nvlink_bytes=bytes_over(chain, "nvlink_bytes", counter_modulus),
        processes=tuple(sorted({pid for s in present for pid in s.processes})),
    )


def _slots(start: datetime, samples: Sequence[Sample]) -> list[Sample | None]:
    slots: list[Sample | None] = [None] * SLOTS
    last: datetime | None = None
    for index, sample in enumerate(samples):
        path = f"minute.samples[{index}]"
        if not isinstance(sample, Sample):
            fail("minute.field_invalid", path, "expected a Sample")
        if last is not None and sample.time <= last:
            fail("minute.sample_duplicate", path, "samples must be in strictly increasing time")
        last = sample.time
        offset = sample.time - start
        if not timedelta(0) <= offset < timedelta(seconds=SLOTS):
            fail("minute.sample_outside", path, f"{sample.time.isoformat()} is not in the minute")
        slot = offset // timedelta(seconds=1)
        if slots[slot] is not None:
            fail("minute.sample_duplicate", path, f"a second sample in second {slot}")
        slots[slot] = sample
    return slots


def _counter_chain(
    start: datetime, previous: Sample | None, present: list[Sample], modulus: int
) -> list[Sample]:
    if isinstance(modulus, bool) or not isinstance(modulus, int) or modulus < 2:
        fail("minute.counter_invalid", "minute.counter_modulus", "must be an integer >= 2")
    if previous is not None and (not isinstance(previous, Sample) or previous.time >= start):
        fail("minute.previous_invalid", "minute.previous", "must be a Sample before the minute")
    chain = ([previous] if previous is not None else []) + present
    for sample in chain:
        counters = (sample.energy_mj, sample.pcie_bytes or 0, sample.nvlink_bytes or 0)
        if max(counters) >= modulus:
            fail("minute.counter_invalid", "minute.samples", f"a counter is >= {modulus}")
    return chain


def _tensor_active_ms(slots: list[Sample | None]) -> int | None:
    total = 0
    for sample in slots:
        if sample is None:
            total += 1000  # conservative: a missing second counts as tensor-active
        elif sample.tensor_active is None:
            return None
        else:
            # Rounding to 1 us first absorbs binary representation error (0.3 * 1000).
            total += min(1000, math.ceil(round(sample.tensor_active * 1000, 3)))
    return total


# ------------------------------------------------------------------------------- parsing


def _series(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


_MINUTE_SCHEMA: dict[str, Parse] = {
    field.name: _series for field in fields(MinuteRecord) if field.name != "kind"
}
_MINUTE_SCHEMA["device"] = DeviceId
_MINUTE_SCHEMA["minute_start"] = canonical_time("minute")


def parse_minute(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> MinuteRecord:
    """Parse a minute record strictly: its bytes must be its one canonical form.

    Raises:
        InputError: the ``json.*``/``canonical.not_canonical`` reasons of the strict parser,
            ``minute.*`` (see the module docstring) or a value type's own (``device_id.*``).
    """
    values = read_record(
        data,
        format_tag=MINUTE_FORMAT,
        kind=MinuteRecord.kind,
        prefix="minute",
        schema=_MINUTE_SCHEMA,
        limits=limits,
    )
    return MinuteRecord(**values)
