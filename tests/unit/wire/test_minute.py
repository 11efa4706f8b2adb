"""Minute records: exact busy/tensor/energy, spectral peaks, counters, gaps, strict parsing."""

from __future__ import annotations

import contextlib
import json
import math
import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brakepedal.crypto.canonical import canonical_json
from brakepedal.errors import BrakepedalError, InputError
from brakepedal.model.types import DeviceId
from brakepedal.wire.features import pearson_ppm, power_statistics, spectral_peak
from brakepedal.wire.minute import (
    SLOTS,
    MinuteRecord,
    Sample,
    cross_device_correlation,
    parse_minute,
    summarise_minute,
)

T0 = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
DEV = DeviceId("gpu-0")


def series_samples(
    powers: list[float],
    *,
    start: datetime = T0,
    energy0: int = 1_000_000,
    utilisation: list[int] | None = None,
    tensor: Sequence[float | None] | None = None,
    modulus: int = 2**64,
) -> list[Sample]:
    """One sample per second; the energy counter advances by each second's power (mJ)."""
    samples, energy = [], energy0
    for second, power in enumerate(powers):
        energy = (energy + round(power * 1000)) % modulus
        samples.append(
            Sample(
                time=start + second * SECOND,
                power_w=power,
                energy_mj=energy,
                utilisation=100 if utilisation is None else utilisation[second],
                memory_used_bytes=10**9 + second,
                sm_clock_mhz=1980 - second,
                tensor_active=None if tensor is None else tensor[second],
                pcie_bytes=1000 * second,
                nvlink_bytes=None,
                processes=(4242, 17) if second % 2 else (17,),
            )
        )
    return samples


def previous_of(first: Sample) -> Sample:
    """The last sample of the previous minute, one second before, counter one second behind."""
    return replace(
        first, time=first.time - SECOND, energy_mj=first.energy_mj - round(first.power_w * 1000)
    )


def training_profile() -> tuple[list[float], list[int], list[float | None]]:
    """Steady high power with a 2 s dip every 10 s (an all-reduce or data-loader stall)."""
    dips = [second % 10 in (8, 9) for second in range(SLOTS)]
    power = [300.0 if dip else 650.0 for dip in dips]
    utilisation = [30 if dip else 100 for dip in dips]
    tensor: list[float | None] = [0.25 if dip else 0.75 for dip in dips]
    return power, utilisation, tensor


def inference_profile(seed: int = 7) -> tuple[list[float], list[int], list[float | None]]:
    """Idle with random request bursts of 1-4 s."""
    rng = random.Random(seed)
    busy = [False] * SLOTS
    second = 0
    while second < SLOTS:
        second += rng.randint(1, 6)
        for offset in range(rng.randint(1, 4)):
            if second + offset < SLOTS:
                busy[second + offset] = True
        second += 4
    power = [rng.uniform(350, 500) if b else 90.0 for b in busy]
    utilisation = [rng.randint(20, 90) if b else 0 for b in busy]
    tensor: list[float | None] = [0.2 if b else 0.0 for b in busy]
    return power, utilisation, tensor


# ------------------------------------------------------------------- summarising profiles


def test_training_profile_is_exact_and_periodic() -> None:
    power, utilisation, tensor = training_profile()
    samples = series_samples(power, utilisation=utilisation, tensor=tensor)
    record = summarise_minute(DEV, T0, samples, previous=previous_of(samples[0]))
    assert record.sample_count == SLOTS
    assert record.busy_ms == 60_000
    assert record.tensor_active_ms == 48 * 750 + 12 * 250
    assert record.energy_mj == sum(round(p * 1000) for p in power)
    assert record.counter_resets == 0
    assert record.power_min_mw == 300_000
    assert record.power_max_mw == 650_000
    assert record.power_mean_mw == (48 * 650_000 + 12 * 300_000) // 60
    assert record.spectral_peak_mhz == 100  # one dip every 10 s
    assert record.spectral_peak_ppm is not None
    assert record.spectral_peak_ppm > 300_000  # a pulse train: the rest is in harmonics
    assert record.memory_max_bytes == 10**9 + 59
    assert record.sm_clock_max_mhz == 1980
    assert record.pcie_bytes == 59_000
    assert record.nvlink_bytes is None
    assert record.processes == (17, 4242)
    assert record.tensor_active_share_ppm == 650_000


def test_inference_profile_busy_is_exactly_the_active_seconds() -> None:
    power, utilisation, tensor = inference_profile()
    samples = series_samples(power, utilisation=utilisation, tensor=tensor)
    record = summarise_minute(DEV, T0, samples, previous=previous_of(samples[0]))
    active = sum(1 for u in utilisation if u > 0)
    assert 0 < active < SLOTS
    assert record.busy_ms == active * 1000
    assert record.tensor_active_ms == active * 200
    assert record.energy_mj == sum(round(p * 1000) for p in power)
    training = summarise_minute(DEV, T0, series_samples(training_profile()[0]))
    assert record.spectral_peak_ppm is not None
    assert training.spectral_peak_ppm is not None
    assert record.spectral_peak_ppm < training.spectral_peak_ppm


@pytest.mark.parametrize("period", [3, 4, 5, 6, 10, 12, 15, 20, 30])
def test_spectral_peak_finds_an_injected_period(period: int) -> None:
    power = [400 + 150 * math.sin(2 * math.pi * s / period) + 7 * (s % 2) for s in range(SLOTS)]
    record = summarise_minute(DEV, T0, series_samples(power))
    assert record.spectral_peak_mhz == round(1000 / period)
    assert record.spectral_peak_ppm is not None
    assert record.spectral_peak_ppm > 800_000


def test_spectral_peak_survives_missing_seconds_and_a_ramp() -> None:
    power = [300 + 2 * s + 100 * math.sin(2 * math.pi * s / 12) for s in range(SLOTS)]
    samples = [s for i, s in enumerate(series_samples(power)) if i % 7 != 3]
    record = summarise_minute(DEV, T0, samples)
    assert record.spectral_peak_mhz == 83  # 1/12 Hz


def test_flat_ramp_and_sparse_series_have_no_spectral_peak() -> None:
    assert spectral_peak([500_000] * SLOTS) is None
    assert spectral_peak([500_000 + 10 * s for s in range(SLOTS)]) is None
    assert spectral_peak([1, 2, 3] + [None] * (SLOTS - 3)) is None


def test_power_statistics_are_exact_integers() -> None:
    assert power_statistics([None] * 3) is None
    assert power_statistics([1, None, 2]) == (2, 0, 1, 2)  # 1.5 -> 2 half-even, var 0.25 -> 0
    assert power_statistics([0, 10]) == (5, 25, 0, 10)


# ---------------------------------------------------------------------- counters and gaps


def test_energy_counter_wrap_is_exact() -> None:
    modulus = 2**32
    power = [700.0] * SLOTS
    samples = series_samples(power, energy0=modulus - 3_000_000, modulus=modulus)
    assert samples[-1].energy_mj < samples[0].energy_mj  # it wrapped
    record = summarise_minute(DEV, T0, samples, counter_modulus=modulus)
    assert record.energy_mj == 59 * 700_000
    assert record.counter_resets == 0


def test_counter_reset_is_estimated_from_power() -> None:
    samples = series_samples([500.0] * SLOTS)
    # A driver reload between seconds 29 and 30: the counter restarts from zero.
    base = samples[30].energy_mj
    samples[30:] = [replace(s, energy_mj=s.energy_mj - base) for s in samples[30:]]
    record = summarise_minute(DEV, T0, samples)
    assert record.counter_resets == 1
    assert record.energy_mj == 59 * 500_000


def test_energy_without_previous_counts_intervals_inside_the_minute() -> None:
    samples = series_samples([400.0] * SLOTS)
    assert summarise_minute(DEV, T0, samples).energy_mj == 59 * 400_000
    assert summarise_minute(DEV, T0, samples, previous=previous_of(samples[0])).energy_mj == (
        60 * 400_000
    )


def test_consecutive_minutes_tile_the_energy_counter() -> None:
    samples = series_samples([400.0 + s for s in range(120)])
    first = summarise_minute(DEV, T0, samples[:60], previous=previous_of(samples[0]))
    second = summarise_minute(DEV, T0 + 60 * SECOND, samples[60:], previous=samples[59])
    assert (
        first.energy_mj + second.energy_mj
        == samples[-1].energy_mj - previous_of(samples[0]).energy_mj
    )


def test_missing_samples_count_as_busy_and_tensor_active() -> None:
    idle = series_samples([80.0] * SLOTS, utilisation=[0] * SLOTS, tensor=[0.0] * SLOTS)
    kept = [s for i, s in enumerate(idle) if not 10 <= i < 25]
    record = summarise_minute(DEV, T0, kept)
    assert record.sample_count == 45
    assert record.busy_ms == 15_000
    assert record.tensor_active_ms == 15_000
    assert record.power_mw[10:25] == (None,) * 15
    # The energy counter still covers the gap: 44 intervals of 80 W plus one of 16 s.
    assert record.energy_mj == 59 * 80_000


def test_no_samples_is_a_fully_busy_minute() -> None:
    record = summarise_minute(DEV, T0, [])
    assert (record.busy_ms, record.tensor_active_ms, record.energy_mj) == (60_000, 60_000, 0)
    assert record.power_mean_mw is None
    assert record.spectral_peak_mhz is None
    assert record.memory_max_bytes is None
    assert record.pcie_bytes is None
    assert parse_minute(record.to_bytes()) == record


def test_tensor_active_is_unknown_when_any_sample_lacks_it() -> None:
    tensor: list[float | None] = [0.5] * SLOTS
    tensor[7] = None
    record = summarise_minute(DEV, T0, series_samples([300.0] * SLOTS, tensor=tensor))
    assert record.tensor_active_ms is None
    assert record.tensor_active_share_ppm is None


def test_tensor_active_rounds_up_to_the_millisecond_without_float_noise() -> None:
    samples = series_samples([300.0] * SLOTS, tensor=[0.3] * 30 + [0.0003] * 30)
    assert summarise_minute(DEV, T0, samples).tensor_active_ms == 30 * 300 + 30 * 1


# ----------------------------------------------------------------------------- refusals


def sample(**changes: Any) -> Sample:
    return replace(series_samples([100.0])[0], **changes)


@pytest.mark.parametrize(
    ("changes", "reason", "path"),
    [
        ({"power_w": math.nan}, "sample.field_invalid", "sample.power_w"),
        ({"power_w": -1.0}, "sample.field_invalid", "sample.power_w"),
        ({"power_w": True}, "sample.field_invalid", "sample.power_w"),
        ({"utilisation": 101}, "sample.field_invalid", "sample.utilisation"),
        ({"tensor_active": 1.5}, "sample.field_invalid", "sample.tensor_active"),
        ({"energy_mj": -1}, "sample.field_invalid", "sample.energy_mj"),
        ({"pcie_bytes": 1.0}, "sample.field_invalid", "sample.pcie_bytes"),
        ({"processes": [1]}, "sample.field_invalid", "sample.processes"),
        ({"processes": (-1,)}, "sample.field_invalid", "sample.processes"),
        ({"time": datetime(2027, 1, 1)}, "time.naive", "sample.time"),
    ],
)
def test_bad_samples_are_refused(changes: dict[str, Any], reason: str, path: str) -> None:
    with pytest.raises(InputError) as caught:
        sample(**changes)
    assert caught.value.reason == reason
    assert caught.value.message.startswith(path)


def test_bad_minutes_are_refused() -> None:
    samples = series_samples([100.0] * 3)
    cases: list[tuple[Any, str]] = [
        (lambda: summarise_minute(DEV, T0 + SECOND, []), "minute.start_not_aligned"),
        (lambda: summarise_minute(DEV, T0 + 60 * SECOND, samples), "minute.sample_outside"),
        (lambda: summarise_minute(DEV, T0, samples[::-1]), "minute.sample_duplicate"),
        (
            lambda: summarise_minute(
                DEV, T0, [samples[0], replace(samples[0], time=T0 + SECOND / 2)]
            ),
            "minute.sample_duplicate",
        ),
        (
            lambda: summarise_minute(DEV, T0, samples, previous=samples[0]),
            "minute.previous_invalid",
        ),
        (
            lambda: summarise_minute(DEV, T0, samples, counter_modulus=1000),
            "minute.counter_invalid",
        ),
        (lambda: summarise_minute(DEV, T0, samples, counter_modulus=1), "minute.counter_invalid"),
    ]
    for call, reason in cases:
        with pytest.raises(InputError) as caught:
            call()
        assert caught.value.reason == reason


# ------------------------------------------------------------------------ bytes and parsing


def record_document() -> dict[str, Any]:
    power, utilisation, tensor = training_profile()
    record = summarise_minute(
        DEV, T0, series_samples(power, utilisation=utilisation, tensor=tensor)
    )
    document: dict[str, Any] = json.loads(record.to_bytes())
    return document


def test_minute_record_round_trips_to_identical_bytes() -> None:
    data = canonical_json(record_document())
    record = parse_minute(data)
    assert record.to_bytes() == data
    assert record.leaf == data


@pytest.mark.parametrize(
    ("change", "reason", "path"),
    [
        ({"extra": 1}, "minute.field_unknown", "minute_record.extra"),
        ({"busy_ms": None}, "minute.field_invalid", "minute_record.busy_ms"),
        ({"busy_ms": 60_001}, "minute.busy_invalid", "minute_record.busy_ms"),
        ({"tensor_active_ms": 60_001}, "minute.tensor_active_invalid", "minute_record.tensor"),
        ({"power_mean_mw": 1}, "minute.power_stats_mismatch", "minute_record.power_mean_mw"),
        ({"power_mw": [1] * 59}, "minute.series_invalid", "minute_record.power_mw"),
        ({"power_mw": "x"}, "minute.series_invalid", "minute_record.power_mw"),
        ({"spectral_peak_ppm": None}, "minute.spectral_invalid", "minute_record.spectral"),
        ({"spectral_peak_mhz": 501}, "minute.spectral_invalid", "minute_record.spectral"),
        ({"processes": [2, 1]}, "minute.processes_invalid", "minute_record.processes"),
        ({"memory_max_bytes": None}, "minute.field_invalid", "minute_record.memory_max_bytes"),
        ({"minute_start": "2027-01-01T12:00:01Z"}, "minute.start_not_aligned", "minute_record"),
        ({"minute_start": "2027-01-01T12:00:00.0Z"}, "minute.time_not_canonical", "minute_rec"),
        ({"device": "GPU"}, "device_id.invalid_character", "minute_record.device"),
        ({"format": "x"}, "minute.format_unknown", "minute_record.format"),
        ({"spec_version": 2}, "minute.version_unsupported", "minute_record.spec_version"),
    ],
)
def test_bad_minute_documents(change: dict[str, Any], reason: str, path: str) -> None:
    document = record_document() | change
    with pytest.raises(InputError) as caught:
        parse_minute(canonical_json(document))
    assert caught.value.reason == reason
    assert caught.value.message.startswith(path)


def test_minute_parser_refuses_non_canonical_bytes_floats_and_non_bytes() -> None:
    data = canonical_json(record_document())
    with pytest.raises(InputError, match="canonical"):
        parse_minute(data.replace(b",", b", ", 1))
    with pytest.raises(InputError) as caught:
        parse_minute(data.replace(b'"busy_ms":60000', b'"busy_ms":60000.0'))
    assert caught.value.reason == "json.float_not_allowed"
    with pytest.raises(InputError) as caught:
        parse_minute(data.decode())  # type: ignore[arg-type]
    assert caught.value.reason == "minute.not_bytes"


def test_record_constructor_refuses_a_bare_string_device() -> None:
    record = parse_minute(canonical_json(record_document()))
    with pytest.raises(InputError, match=r"minute_record\.device"):
        replace(record, device="gpu-0")  # type: ignore[arg-type]


# ------------------------------------------------------------------------- correlation


def test_cross_device_correlation_of_lock_step_and_anti_phase_devices() -> None:
    power = [400 + 100 * math.sin(2 * math.pi * s / 8) for s in range(SLOTS)]
    a = summarise_minute(DeviceId("gpu-a"), T0, series_samples(power))
    b = summarise_minute(DeviceId("gpu-b"), T0, series_samples([p * 1.5 for p in power]))
    c = summarise_minute(DeviceId("gpu-c"), T0, series_samples([800 - p for p in power]))
    flat = summarise_minute(DeviceId("gpu-d"), T0, series_samples([300.0] * SLOTS))
    result = cross_device_correlation({r.device: r for r in (c, flat, b, a)})
    assert result[(DeviceId("gpu-a"), DeviceId("gpu-b"))] >= 999_990
    assert result[(DeviceId("gpu-a"), DeviceId("gpu-c"))] <= -999_990
    assert set(result) == {
        (DeviceId("gpu-a"), DeviceId("gpu-b")),
        (DeviceId("gpu-a"), DeviceId("gpu-c")),
        (DeviceId("gpu-b"), DeviceId("gpu-c")),
    }


def test_correlation_needs_one_minute_and_matching_devices() -> None:
    a = summarise_minute(DeviceId("gpu-a"), T0, [])
    later = summarise_minute(DeviceId("gpu-b"), T0 + 60 * SECOND, [])
    with pytest.raises(InputError) as caught:
        cross_device_correlation({a.device: a, later.device: later})
    assert caught.value.reason == "minute.correlation_minutes_differ"
    with pytest.raises(InputError) as caught:
        cross_device_correlation({DeviceId("gpu-z"): a})
    assert caught.value.reason == "minute.correlation_device_mismatch"
    assert pearson_ppm([(1, 2), (2, 3)]) is None


# ---------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(
    present=st.lists(st.booleans(), min_size=SLOTS, max_size=SLOTS),
    powers=st.lists(st.floats(0, 1500), min_size=SLOTS, max_size=SLOTS),
    utilisation=st.lists(st.integers(0, 100), min_size=SLOTS, max_size=SLOTS),
    tensor=st.lists(st.floats(0, 1), min_size=SLOTS, max_size=SLOTS),
)
def test_any_sampled_minute_round_trips_and_stays_conservative(
    present: list[bool], powers: list[float], utilisation: list[int], tensor: list[float]
) -> None:
    samples = series_samples(powers, utilisation=utilisation, tensor=list(tensor))
    kept = [s for s, keep in zip(samples, present, strict=True) if keep]
    record = summarise_minute(DEV, T0, kept)
    assert parse_minute(record.to_bytes()).to_bytes() == record.to_bytes()
    missing = SLOTS - len(kept)
    assert missing * 1000 <= record.busy_ms <= 60_000
    assert record.tensor_active_ms is not None
    assert missing * 1000 <= record.tensor_active_ms <= record.busy_ms


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_brakepedal_errors(data: bytes) -> None:
    with contextlib.suppress(BrakepedalError):
        parse_minute(data)


def test_minute_record_type_is_exported() -> None:
    assert MinuteRecord.kind == "minute_record"
