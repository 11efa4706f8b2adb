"""Per-second telemetry traces: recorded nvidia-smi logs and synthetic workload profiles.

A :class:`Trace` is what drives one simulated device: one value per second of power (W),
utilisation (fraction of the second a kernel ran, 0..1) and, where the source measured them,
tensor-core activity (0..1), memory in use (bytes) and SM clock (MHz).

Recorded traces are read from nvidia-smi CSV logs (``--query-gpu=... --format=csv``), plain or
gzip-compressed, in the two layouts found in the project's shared data (``docs/telemetry.md``):

* **no index column** (``timestamp, power.draw [W], utilization.gpu [%], ...``): consecutive
  lines cycle over the GPUs in order, so line ``i`` belongs to GPU ``i mod n``. ``n`` is given,
  or inferred as the most common number of lines logged within 50 ms of each other.
* **with an index column** (``timestamp,index,uuid,power.draw [W],...``): rows are grouped by
  index.

Cells may carry their unit (``"72.36 W"``) or be bare numbers; a unit that disagrees with the
header is an error. A final line cut short by a killed logger (no newline at the end of the
file) is dropped; any other malformed row is an :class:`InputError` naming the file and line.
Samples are averaged into whole seconds counted from the file's first timestamp (so second ``k``
is the same wall-clock second for every GPU of a file); a second with no sample holds the
previous second's values. The readers only read: the data stays where it is.
"""

from __future__ import annotations

import gzip
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from brakepedal.errors import InputError

__all__ = [
    "MAX_TRACE_ROWS",
    "PROFILES",
    "Trace",
    "read_nvidia_smi_csv",
    "synthetic_trace",
]

FloatArray = npt.NDArray[np.float64]

#: Rows one file may hold; the largest shared trace has about 55,000.
MAX_TRACE_ROWS = 5_000_000
#: Lines logged closer together than this belong to one polling round of all GPUs.
_ROUND_GAP_S = 0.05
_MIB = 1024 * 1024
_STAMP = re.compile(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}\.\d{3}(?:\d{3})?")
_EPOCH = datetime(1970, 1, 1)  # nvidia-smi logs the host wall clock, no zone
_HEADER_CELL = re.compile(r"([a-z][a-z0-9._]*)(?: \[([^\]]+)\])?")
#: Columns read, with the unit nvidia-smi writes for them; others are ignored.
_UNITS = {"power.draw": "W", "utilization.gpu": "%", "memory.used": "MiB", "clocks.sm": "MHz"}
_REQUIRED = ("timestamp", "power.draw", "utilization.gpu")


def _frozen(values: object, name: str, trace: str) -> FloatArray:
    array = np.array(values, dtype=np.float64)
    if array.ndim != 1 or not np.all(np.isfinite(array)) or np.any(array < 0):
        raise InputError(
            "trace.value_invalid", f"trace {trace!r}: {name} must be finite and non-negative"
        )
    array.flags.writeable = False
    return array


@dataclass(frozen=True, slots=True, eq=False)
class Trace:
    """One device's telemetry, one value per second; ``None`` means not measured."""

    name: str
    power_w: FloatArray
    utilisation: FloatArray
    tensor_active: FloatArray | None = None
    memory_used_bytes: FloatArray | None = None
    sm_clock_mhz: FloatArray | None = None
    uuid: str | None = field(default=None)

    def __post_init__(self) -> None:
        power = _frozen(self.power_w, "power_w", self.name)
        if power.size == 0:
            raise InputError("trace.empty", f"trace {self.name!r} has no samples")
        object.__setattr__(self, "power_w", power)
        for name in ("utilisation", "tensor_active", "memory_used_bytes", "sm_clock_mhz"):
            values = getattr(self, name)
            if values is None:
                continue
            array = _frozen(values, name, self.name)
            if array.shape != power.shape:
                raise InputError(
                    "trace.length_mismatch",
                    f"trace {self.name!r}: {name} has {array.size} values, power {power.size}",
                )
            if name in {"utilisation", "tensor_active"} and np.any(array > 1):
                raise InputError("trace.value_invalid", f"trace {self.name!r}: {name} above 1")
            object.__setattr__(self, name, array)

    def __len__(self) -> int:
        return int(self.power_w.size)


@dataclass(slots=True)
class _Columns:
    """Raw rows of one file, in file order, before they are split by GPU."""

    seconds: list[float] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)
    index: list[int] = field(default_factory=list)
    uuid: list[str] = field(default_factory=list)


def read_nvidia_smi_csv(
    path: Path, *, devices: int | None = None, max_rows: int = MAX_TRACE_ROWS
) -> list[Trace]:
    """Read an nvidia-smi CSV log into one 1 Hz :class:`Trace` per GPU, in GPU order.

    ``devices`` is the number of GPUs for a log without an index column (inferred when
    ``None``); it must not be given for a log that has one.

    Raises:
        InputError: ``trace.unreadable``, ``trace.header_invalid``, ``trace.column_missing``,
            ``trace.row_invalid``, ``trace.time_backwards``, ``trace.too_large`` or
            ``trace.empty``, each naming the file (and line).
    """
    text = _read_text(path)
    lines = text.split("\n")
    truncated = not text.endswith("\n")
    if not truncated:
        lines.pop()
    if len(lines) - 1 > max_rows:
        raise InputError("trace.too_large", f"{path}: more than {max_rows} rows")
    columns = _parse_header(path, lines[0] if lines else "")
    rows = _parse_rows(path, columns, lines[1:], truncated=truncated)
    if not rows.seconds:
        raise InputError("trace.empty", f"{path}: no data rows")
    if rows.seconds[-1] - rows.seconds[0] > max_rows:
        # Every second of the span becomes an array cell: bound it before allocating.
        raise InputError(
            "trace.too_large", f"{path}: spans {rows.seconds[-1] - rows.seconds[0]:.0f} seconds"
        )
    if devices is not None and (type(devices) is not int or devices < 1):
        raise InputError("trace.devices_invalid", f"{path}: devices must be a positive integer")
    if "index" in columns:
        if devices is not None:
            raise InputError("trace.devices_given", f"{path}: has an index column; omit devices")
        return _split_by_index(path, rows)
    return _split_by_position(path, rows, devices)


def _read_text(path: Path) -> str:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as compressed:
                raw = compressed.read()
        else:
            raw = path.read_bytes()
        return raw.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise InputError("trace.unreadable", f"{path}: cannot read: {error}") from error


def _parse_header(path: Path, header: str) -> dict[str, int]:
    """Column name to position, checking the unit of every column that is read."""
    columns: dict[str, int] = {}
    for position, cell in enumerate(header.split(",")):
        match = _HEADER_CELL.fullmatch(cell.strip())
        if match is None:
            raise InputError("trace.header_invalid", f"{path}:1: column {cell.strip()!r}")
        name, unit = match.groups()
        if name in _UNITS and unit != _UNITS[name]:
            raise InputError(
                "trace.header_invalid", f"{path}:1: {name} in {unit!r}, expected {_UNITS[name]!r}"
            )
        if name in columns:
            raise InputError("trace.header_invalid", f"{path}:1: column {name!r} twice")
        columns[name] = position
    missing = [name for name in _REQUIRED if name not in columns]
    if missing:
        raise InputError("trace.column_missing", f"{path}:1: no column {', '.join(missing)}")
    return columns


def _parse_rows(
    path: Path, columns: dict[str, int], lines: Sequence[str], *, truncated: bool
) -> _Columns:
    rows = _Columns(values={name: [] for name in _UNITS if name in columns})
    for offset, line in enumerate(lines):
        number = offset + 2
        try:
            _parse_row(columns, line, rows)
        except ValueError as error:
            if truncated and offset == len(lines) - 1:
                break  # the logger was killed mid-line
            raise InputError("trace.row_invalid", f"{path}:{number}: {error}") from error
        if len(rows.seconds) > 1 and rows.seconds[-1] < rows.seconds[-2]:
            raise InputError("trace.time_backwards", f"{path}:{number}: timestamp goes back")
    return rows


def _parse_row(columns: dict[str, int], line: str, rows: _Columns) -> None:
    """Append one row to ``rows``; ``ValueError`` (and nothing appended) if it is malformed."""
    cells = [cell.strip() for cell in line.split(",")]
    if len(cells) != len(columns):
        raise ValueError(f"{len(cells)} cells, header has {len(columns)}")
    stamp = _timestamp(cells[columns["timestamp"]])
    values = {name: _quantity(cells[columns[name]], _UNITS[name]) for name in rows.values}
    index = int(cells[columns["index"]]) if "index" in columns else 0
    if index < 0:
        raise ValueError(f"negative GPU index {index}")
    if values["utilization.gpu"] > 100:
        raise ValueError(f"utilization.gpu {values['utilization.gpu']} % above 100")
    rows.seconds.append(stamp)
    for name, value in values.items():
        rows.values[name].append(value)
    rows.index.append(index)
    rows.uuid.append(cells[columns["uuid"]] if "uuid" in columns else "")


def _timestamp(cell: str) -> float:
    """Seconds since the epoch of nvidia-smi's ``YYYY/MM/DD HH:MM:SS.fff`` (host clock)."""
    if _STAMP.fullmatch(cell) is None:
        raise ValueError(f"timestamp {cell!r} is not YYYY/MM/DD HH:MM:SS.fff")
    return (datetime.fromisoformat(cell.replace("/", "-")) - _EPOCH).total_seconds()


def _quantity(cell: str, unit: str) -> float:
    number = cell.removesuffix(f" {unit}")
    value = float(number)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{cell!r} is not a non-negative number of {unit}")
    return value


def _split_by_index(path: Path, rows: _Columns) -> list[Trace]:
    index = np.array(rows.index)
    traces = []
    for gpu in sorted(set(rows.index)):
        (where,) = np.nonzero(index == gpu)
        uuids = {rows.uuid[i] for i in where}
        if len(uuids) != 1:
            raise InputError("trace.row_invalid", f"{path}: GPU {gpu} has {len(uuids)} uuids")
        name = f"{path.name}#gpu{gpu}"
        traces.append(_resampled(name, rows, where, uuids.pop() or None, span=len(rows.seconds)))
    return traces


def _split_by_position(path: Path, rows: _Columns, devices: int | None) -> list[Trace]:
    count = _infer_devices(rows.seconds) if devices is None else devices
    if count < 1:
        raise InputError("trace.devices_invalid", f"{path}: devices must be at least 1")
    complete = len(rows.seconds) - len(rows.seconds) % count
    if complete == 0:
        raise InputError("trace.empty", f"{path}: fewer rows than the {count} GPUs")
    positions = np.arange(complete)
    return [
        _resampled(f"{path.name}#gpu{gpu}", rows, positions[gpu::count], None, span=complete)
        for gpu in range(count)
    ]


def _infer_devices(seconds: Sequence[float]) -> int:
    """The most common number of lines in one polling round (lines < 50 ms apart)."""
    gaps = np.diff(np.array(seconds))
    starts = np.concatenate(([0], np.nonzero(gaps > _ROUND_GAP_S)[0] + 1, [len(seconds)]))
    sizes = Counter(int(size) for size in np.diff(starts))
    return sizes.most_common(1)[0][0]


def _resampled(
    name: str, rows: _Columns, where: npt.NDArray[np.intp], uuid: str | None, *, span: int
) -> Trace:
    """One GPU's rows (``where``) in whole seconds from the file's first row to row ``span - 1``,
    so that second ``k`` of every GPU of one file is the same wall-clock second."""
    start = rows.seconds[0]
    length = int(np.floor(rows.seconds[span - 1] - start)) + 1
    bins = np.floor(np.array(rows.seconds)[where] - start).astype(np.intp)

    def per_second(column: str) -> FloatArray | None:
        if column not in rows.values:
            return None
        return _bin_means(bins, np.array(rows.values[column])[where], length)

    memory = per_second("memory.used")
    utilisation = per_second("utilization.gpu")
    assert utilisation is not None  # a required column
    return Trace(
        name=name,
        power_w=_bin_means(bins, np.array(rows.values["power.draw"])[where], length),
        utilisation=np.clip(utilisation / 100.0, 0.0, 1.0),
        memory_used_bytes=None if memory is None else np.rint(memory * _MIB),
        sm_clock_mhz=per_second("clocks.sm"),
        uuid=uuid,
    )


def _bin_means(bins: npt.NDArray[np.intp], values: FloatArray, length: int) -> FloatArray:
    """Mean of ``values`` in each of ``length`` seconds; an empty second holds the previous
    second's mean (or, before the first sample, takes the first)."""
    counts = np.bincount(bins, minlength=length)
    sums = np.bincount(bins, weights=values, minlength=length)
    present = counts > 0
    source = np.maximum.accumulate(np.where(present, np.arange(length), -1))
    source[source < 0] = int(np.argmax(present))
    means: FloatArray = sums[source] / counts[source]
    return means


# ------------------------------------------------------------------------------ synthetic

#: Built-in workload shapes for :func:`synthetic_trace`.
PROFILES = ("training", "inference", "idle")


def synthetic_trace(
    profile: str,
    *,
    seconds: int,
    tdp_w: float,
    memory_bytes: int,
    seed: int | Sequence[int],
    dip_every_s: int = 30,
) -> Trace:
    """A deterministic synthetic trace of ``profile`` (one of :data:`PROFILES`).

    * ``training``: power near 88 % of TDP, utilisation 97-100 %, tensor activity near 0.8,
      with a one-second dip (gradient sync, data loading) every ``dip_every_s`` seconds.
    * ``inference``: requests arrive at random; each keeps the device busy 1-4 s, so the
      duty cycle is about a quarter and power swings between idle and 70 % of TDP.
    * ``idle``: nothing runs; power near 10 % of TDP.

    The same arguments always give the same trace (``numpy.random.default_rng(seed)``).
    """
    if seconds < 1 or dip_every_s < 2 or tdp_w <= 0 or memory_bytes <= 0:
        raise InputError("trace.profile_invalid", "seconds, dip_every_s, tdp_w, memory must be > 0")
    rng = np.random.default_rng(seed)
    name = f"synthetic-{profile}"
    if profile == "training":
        return _training(name, rng, seconds, tdp_w, memory_bytes, period=dip_every_s)
    if profile == "inference":
        return _inference(name, rng, seconds, tdp_w, memory_bytes)
    if profile == "idle":
        power = np.clip(rng.normal(0.10, 0.002, seconds), 0.0, None) * tdp_w
        zeros = np.zeros(seconds)
        memory = np.full(seconds, float(min(memory_bytes, 512 * _MIB)))
        return Trace(name, power, zeros, tensor_active=zeros, memory_used_bytes=memory)
    raise InputError(
        "trace.profile_unknown", f"unknown profile {profile!r}; known: {', '.join(PROFILES)}"
    )


def _training(
    name: str, rng: np.random.Generator, seconds: int, tdp_w: float, memory: int, *, period: int
) -> Trace:
    dip = np.arange(seconds) % period == period - 1
    utilisation = np.where(dip, 0.35, rng.uniform(0.97, 1.0, seconds))
    power = np.where(dip, 0.45, np.clip(rng.normal(0.88, 0.03, seconds), 0.7, 1.0)) * tdp_w
    tensor = np.where(dip, 0.05, np.clip(rng.normal(0.8, 0.03, seconds), 0.0, 1.0))
    memory_used = np.full(seconds, float(round(memory * 0.92)))
    return Trace(name, power, utilisation, tensor_active=tensor, memory_used_bytes=memory_used)


def _inference(
    name: str, rng: np.random.Generator, seconds: int, tdp_w: float, memory: int
) -> Trace:
    second = np.arange(seconds)
    arrivals = rng.random(seconds) < 0.1
    ends = np.where(arrivals, second + rng.integers(1, 5, seconds), 0)
    busy = np.maximum.accumulate(ends) > second
    load = np.where(busy, rng.uniform(0.5, 0.95, seconds), 0.0)
    power = (0.12 + 0.6 * load) * tdp_w
    memory_used = np.full(seconds, float(round(memory * 0.6)))
    return Trace(name, power, load, tensor_active=0.4 * load, memory_used_bytes=memory_used)
