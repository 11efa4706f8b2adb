"""Within-minute features: power statistics, spectral peak, correlation, counter deltas.

Why these: a training job repeats one step (forward, backward, all-reduce) every few seconds,
so its power has a strong periodic component, high variance at that period, and moves in lock
step with the other devices of the job; inference follows request arrivals, with weak periods
and independent devices. Averages alone cannot tell them apart (``docs/agent.md``).

Statistics are exact integer functions of the series (so a record can be checked against its
own series); spectral and correlation features go through numpy floats and are rounded to
integers (mHz, ppm) before anything is signed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from fractions import Fraction
from itertools import combinations, pairwise
from typing import TYPE_CHECKING

import numpy as np

from brakepedal.model.types import DeviceId
from brakepedal.wire._codec import fail

if TYPE_CHECKING:
    from brakepedal.wire.minute import MinuteRecord, Sample

__all__ = [
    "MAX_INTERCONNECT_BYTES_PER_S",
    "MAX_POWER_MW",
    "MAX_POWER_W",
    "MIN_SPECTRAL_SAMPLES",
    "PPM",
    "bytes_over",
    "cross_device_correlation",
    "energy_over",
    "pearson_ppm",
    "power_statistics",
    "spectral_peak",
]

#: Fewer present seconds than this leave the spectrum meaningless: no spectral peak.
MIN_SPECTRAL_SAMPLES = 16
#: Parts per million: the unit of shares and correlations.
PPM = 1_000_000
#: No accelerator draws 100 kW; an energy counter step above this rate is a reset, not work.
MAX_POWER_W = 100_000
MAX_POWER_MW = MAX_POWER_W * 1000
#: A byte counter step above this rate (16 TiB/s, beyond any link) is a reset.
MAX_INTERCONNECT_BYTES_PER_S = 2**44
_SECOND_US = 1_000_000


def power_statistics(series: Sequence[int | None]) -> tuple[int, int, int, int] | None:
    """Mean, population variance, min and max of the present values; exact, rounded half-even.

    None when no value is present. Units are those of the series (mW gives mW and mW²).
    """
    values = [value for value in series if value is not None]
    if not values:
        return None
    count, total = len(values), sum(values)
    mean = round(Fraction(total, count))
    variance = round(Fraction(count * sum(v * v for v in values) - total * total, count * count))
    return mean, variance, min(values), max(values)


def spectral_peak(series: Sequence[int | None]) -> tuple[int, int] | None:
    """The strongest non-zero frequency of a 1 Hz series (mHz) and its share of energy (ppm).

    Missing seconds are filled by linear interpolation, a least-squares line is removed (so a
    ramp is not read as a slow period), and the power spectrum is ``|rfft|²`` without its DC
    term. None with fewer than :data:`MIN_SPECTRAL_SAMPLES` values or a series flat to within
    the 1 mW quantisation.
    """
    present = [index for index, value in enumerate(series) if value is not None]
    if len(present) < MIN_SPECTRAL_SAMPLES:
        return None
    seconds = np.arange(len(series), dtype=np.float64)
    known = np.array([series[index] for index in present], dtype=np.float64)
    filled = np.interp(seconds, np.array(present, dtype=np.float64), known)
    slope, intercept = np.polyfit(seconds, filled, 1)
    detrended = filled - (slope * seconds + intercept)
    if float(np.max(np.abs(detrended))) < 0.5:
        return None
    spectrum = np.abs(np.fft.rfft(detrended))[1:] ** 2
    strongest = int(np.argmax(spectrum))
    frequencies_hz = np.fft.rfftfreq(len(series), d=1.0)[1:]
    share = float(spectrum[strongest]) / float(np.sum(spectrum))
    return round(float(frequencies_hz[strongest]) * 1000), min(PPM, round(share * PPM))


def pearson_ppm(pairs: Sequence[tuple[int, int]]) -> int | None:
    """Pearson correlation of paired values in ppm; None with fewer than 3 pairs or a flat side."""
    if len(pairs) < 3:
        return None
    values = np.array(pairs, dtype=np.float64)
    if float(np.ptp(values[:, 0])) == 0.0 or float(np.ptp(values[:, 1])) == 0.0:
        return None
    correlation = float(np.corrcoef(values[:, 0], values[:, 1])[0, 1])
    return max(-PPM, min(PPM, round(correlation * PPM)))


def cross_device_correlation(
    records_by_device: Mapping[DeviceId, MinuteRecord],
) -> dict[tuple[DeviceId, DeviceId], int]:
    """Pearson correlation of per-second power between every two devices, in ppm.

    Data-parallel training moves devices in lock step (correlation near +1e6); independent
    inference replicas do not. Keys are ``(a, b)`` with ``a < b``; a pair with fewer than three
    common seconds or a flat series is left out (the correlation is undefined). All records must
    cover the same minute.
    """
    minutes = {record.minute_start for record in records_by_device.values()}
    if len(minutes) > 1:
        fail("minute.correlation_minutes_differ", "minute_record.minute_start", "not one minute")
    for device, record in records_by_device.items():
        if record.device != device:
            fail("minute.correlation_device_mismatch", "minute_record.device", f"{device}")
    result: dict[tuple[DeviceId, DeviceId], int] = {}
    for first, second in combinations(sorted(records_by_device), 2):
        pairs = [
            (a, b)
            for a, b in zip(
                records_by_device[first].power_mw, records_by_device[second].power_mw, strict=True
            )
            if a is not None and b is not None
        ]
        correlation = pearson_ppm(pairs)
        if correlation is not None:
            result[(first, second)] = correlation
    return result


def _elapsed_us(before: Sample, after: Sample) -> int:
    return (after.time - before.time) // timedelta(microseconds=1)


def energy_over(chain: list[Sample], modulus: int) -> tuple[int, int]:
    """Energy over the chain's intervals in mJ from the counter, and how many were resets."""
    total = resets = 0
    for before, after in pairwise(chain):
        elapsed_us = _elapsed_us(before, after)
        delta = (after.energy_mj - before.energy_mj) % modulus
        if delta > MAX_POWER_MW * elapsed_us // _SECOND_US:
            # Not work but a counter reset: estimate from the higher of the two power readings.
            resets += 1
            power_mw = round(max(before.power_w, after.power_w) * 1000)
            delta = -(-power_mw * elapsed_us // _SECOND_US)
        total += delta
    return total, resets


def bytes_over(chain: list[Sample], name: str, modulus: int) -> int | None:
    """Bytes moved over the intervals where both ends carry counter ``name``."""
    if all(getattr(sample, name) is None for sample in chain[1:] or chain):
        return None
    total = 0
    for before, after in pairwise(chain):
        first, second = getattr(before, name), getattr(after, name)
        if first is None or second is None:
            continue
        delta = (second - first) % modulus
        ceiling = MAX_INTERCONNECT_BYTES_PER_S * _elapsed_us(before, after) // _SECOND_US
        total += delta if delta <= ceiling else min(second, ceiling)  # a reset
    return total
