"""Simulated telemetry: minute records of what a device does, and the reports over them.

Each kind of minute is summarised once, through the agent's own code: 1 Hz samples (NumPy)
go through :func:`brakepedal.wire.minute.summarise_minute`, which computes the power series,
its statistics and spectral peak, busy and tensor-active time and the energy counter's delta,
exactly as on a node. The record's canonical bytes then serve as a template: a minute of any
device at any time is that template with the device and the minute's start written in (both
plain strings in the canonical JSON, so the bytes stay canonical and equal
``MinuteRecord.to_bytes()`` of the same record; ``tests/unit/sim/test_telemetry.py`` checks).
That is what lets a world of 100,000 devices produce real minute records and real Merkle
roots in minutes rather than days.

Kinds (``Shape.kind``):

* ``train``: a synchronous training step loop (the step period, 3 to 10 s, makes the spectral
  peak), tensor pipes busy 85 % of the time, NVLink traffic; every device of a job draws the
  same variant in the same minute, so their power is synchronised.
* ``checkpoint``: a training minute with a 25 s dip while the job writes a checkpoint.
* ``throttled``: training at a duty cycle (``level``), shaped to look like inference in its
  averages: the busy seconds keep the step loop's periodicity and tensor activity.
* ``infer``: request bursts; each second busy with probability ``level``, less tensor work.
* ``hpc``: a flat, high draw with almost no tensor-pipe activity (FP64 simulation).
* ``idle``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import numpy as np

from brakepedal.audit.workload import looks_like_training
from brakepedal.model.types import DeviceId, format_utc
from brakepedal.tlog.merkle import root_from_leaf_hashes
from brakepedal.wire.minute import MinuteRecord, Sample, summarise_minute

__all__ = [
    "KINDS",
    "LEVELS",
    "MinuteShape",
    "Shape",
    "minute_leaves",
    "minute_root",
    "shape_record",
    "window_totals",
]

KINDS = ("train", "checkpoint", "throttled", "infer", "hpc", "idle")
#: Busy levels of the kinds that have one, in tenths.
LEVELS = tuple(range(0, 11))
#: Variants of each (kind, level): noise and step periods differ between them.
VARIANTS = 4

_PLACEHOLDER_DEVICE = "sim-placeholder-device"
_PLACEHOLDER_TIME = datetime(2000, 1, 1, tzinfo=UTC)
_GIB = 2**30


class Shape(NamedTuple):
    """What a device did in one minute: ``kind``, busy ``level`` in tenths, ``variant``.

    A named tuple: hashed in C, as windows of 1,440 of them are cache keys."""

    kind: str
    level: int = 10
    variant: int = 0


@dataclass(frozen=True, slots=True)
class MinuteShape:
    """A minute record as a template, and the sums a report takes from it."""

    head: bytes
    middle: bytes
    tail: bytes
    busy_ms: int
    tensor_active_ms: int | None
    energy_mj: int
    memory_max_bytes: int | None
    interconnect_bytes: int | None
    #: Whether the minute looks like training to a classifier that sees it (challenged).
    training_like: bool

    def leaf(self, device: bytes, minute: bytes) -> bytes:
        """The canonical bytes of this minute of ``device`` starting at ``minute`` (both
        ASCII, as in the record: an identifier, a ``format_utc`` time)."""
        return b"".join((self.head, device, self.middle, minute, self.tail))


@functools.cache
def shape_record(shape: Shape) -> MinuteRecord:
    """The minute record of ``shape`` for a placeholder device and time (through the
    agent's summariser)."""
    if shape.kind not in KINDS or shape.level not in LEVELS or not 0 <= shape.variant < VARIANTS:
        raise ValueError(f"no such shape: {shape}")
    rng = np.random.default_rng([KINDS.index(shape.kind), shape.level, shape.variant])
    seconds = np.arange(60)
    busy = np.ones(60, dtype=bool)
    tensor = np.zeros(60)
    nvlink_rate = 0.0
    memory = 70 * _GIB
    if shape.kind in {"train", "checkpoint", "throttled"}:
        period = 3 + (shape.variant * 7 + shape.level) % 8
        phase = (seconds % period) / period
        power = 610 + 70 * np.sin(2 * np.pi * phase) + rng.normal(0, 6, 60)
        tensor = np.where(phase < 0.85, 0.85, 0.3)
        nvlink_rate = 40e9
        if shape.kind == "checkpoint":
            dip = seconds < 25
            power = np.where(dip, 185 + rng.normal(0, 4, 60), power)
            tensor = np.where(dip, 0.0, tensor)
        if shape.kind == "throttled":
            busy = _duty(shape.level, rng)
            power = np.where(busy, power, 85 + rng.normal(0, 2, 60))
            tensor = np.where(busy, tensor, 0.0)
    elif shape.kind == "infer":
        busy = rng.random(60) < shape.level / 10
        power = np.where(busy, 330 + rng.normal(0, 70, 60), 92 + rng.normal(0, 4, 60))
        tensor = np.where(busy, 0.35, 0.0)
        memory = 40 * _GIB
        nvlink_rate = 0.0
    elif shape.kind == "hpc":
        power = 520 + rng.normal(0, 12, 60)
        tensor = np.full(60, 0.02)
        memory = 50 * _GIB
    else:  # idle
        busy = np.zeros(60, dtype=bool)
        power = 70 + rng.normal(0, 1.5, 60)
        memory = 1 * _GIB
    power = np.clip(power, 20, 900)
    return _summarise(power, busy, tensor, memory, nvlink_rate)


def _duty(level: int, rng: np.random.Generator) -> np.ndarray:
    """Busy seconds of a throttled step loop: runs of a few steps, then pauses, ``level``/10
    of the minute in all."""
    busy = np.zeros(60, dtype=bool)
    target = round(6 * level)
    block = 12
    for start in range(0, 60, block):
        on = min(block, target - int(busy.sum()))
        if on <= 0:
            break
        offset = int(rng.integers(0, block - on + 1))
        busy[start + offset : start + offset + on] = True
    return busy


def _summarise(
    power: np.ndarray, busy: np.ndarray, tensor: np.ndarray, memory: int, nvlink_rate: float
) -> MinuteRecord:
    start = _PLACEHOLDER_TIME
    counter = 10**9
    nvlink = 0
    previous = Sample(
        time=start - timedelta(seconds=1),
        power_w=float(power[0]),
        energy_mj=counter,
        utilisation=0,
        memory_used_bytes=memory,
        sm_clock_mhz=345,
        tensor_active=0.0,
        pcie_bytes=0,
        nvlink_bytes=0,
    )
    samples = []
    for second in range(60):
        watts = float(power[second])
        counter += round(watts * 1000)
        on = bool(busy[second])
        nvlink += round(nvlink_rate) if on else 0
        samples.append(
            Sample(
                time=start + timedelta(seconds=second),
                power_w=watts,
                energy_mj=counter,
                utilisation=97 if on else 0,
                memory_used_bytes=memory,
                sm_clock_mhz=1980 if on else 345,
                tensor_active=float(tensor[second]) if on else 0.0,
                pcie_bytes=second * 2_000_000,
                nvlink_bytes=nvlink,
            )
        )
    return summarise_minute(DeviceId(_PLACEHOLDER_DEVICE), start, samples, previous=previous)


@functools.cache
def minute_shape(shape: Shape) -> MinuteShape:
    """``shape``'s record as a template (see the module docstring)."""
    record = shape_record(shape)
    data = record.to_bytes()
    device = f'"device":"{_PLACEHOLDER_DEVICE}"'.encode()
    minute = f'"minute_start":"{format_utc(_PLACEHOLDER_TIME)}"'.encode()
    if (
        data.count(device) != 1
        or data.count(minute) != 1
        or data.index(device) > data.index(minute)
    ):
        raise AssertionError("minute record layout changed: the templates need updating")
    before, rest = data.split(device)
    between, after = rest.split(minute)
    links = [v for v in (record.pcie_bytes, record.nvlink_bytes) if v is not None]
    return MinuteShape(
        head=before + b'"device":"',
        middle=b'"' + between + b'"minute_start":"',
        tail=b'"' + after,
        busy_ms=record.busy_ms,
        tensor_active_ms=record.tensor_active_ms,
        energy_mj=record.energy_mj,
        memory_max_bytes=record.memory_max_bytes,
        interconnect_bytes=sum(links) if links else None,
        training_like=looks_like_training(record),
    )


def minute_leaves(device: str, start: datetime, shapes: Sequence[Shape]) -> list[bytes]:
    """The canonical minute records of ``device`` from ``start``, one per shape."""
    name = device.encode("ascii")
    times = _minute_texts(start, len(shapes))
    templates = _templates(tuple(shapes))
    return [
        b"".join((t.head, name, t.middle, moment, t.tail))
        for t, moment in zip(templates, times, strict=True)
    ]


@functools.lru_cache(maxsize=4096)
def _minute_texts(start: datetime, count: int) -> tuple[bytes, ...]:
    """The ``format_utc`` text of each minute of a window (shared by every device)."""
    return tuple(format_utc(start + timedelta(minutes=i)).encode("ascii") for i in range(count))


@functools.lru_cache(maxsize=1024)
def _templates(shapes: tuple[Shape, ...]) -> tuple[MinuteShape, ...]:
    return tuple(minute_shape(shape) for shape in shapes)


def minute_root(leaves: Sequence[bytes]) -> str:
    """The Merkle root (hex) a report commits to: RFC 6962 over the records' bytes."""
    sha = hashlib.sha256
    return root_from_leaf_hashes([sha(b"\x00" + leaf).digest() for leaf in leaves]).hex()


@functools.lru_cache(maxsize=1024)
def window_totals(shapes: tuple[Shape, ...]) -> dict[str, int | None]:
    """The report's sums over its minutes, as :func:`brakepedal.wire.report.build_report`
    takes them from the records."""
    minutes = _templates(shapes)
    tensor = [m.tensor_active_ms for m in minutes]
    memory = [m.memory_max_bytes for m in minutes if m.memory_max_bytes is not None]
    links = [m.interconnect_bytes for m in minutes if m.interconnect_bytes is not None]
    return {
        "busy_ms": sum(m.busy_ms for m in minutes),
        "tensor_active_ms": None if None in tensor else sum(t or 0 for t in tensor),
        "energy_mj": sum(m.energy_mj for m in minutes),
        "memory_max_bytes": max(memory, default=None),
        "interconnect_bytes": sum(links) if links else None,
    }
