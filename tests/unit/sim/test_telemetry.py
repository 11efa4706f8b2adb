"""Simulated minutes are the agent's minute records: the templates rebuild exactly the bytes
``MinuteRecord.to_bytes`` writes, reports over them equal ``build_report``'s, and the
challenged-minute classifier tells training from the rest."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brakepedal.accounting.usage import Workload
from brakepedal.audit.workload import looks_like_training
from brakepedal.model.types import DeviceId, EntityId, JobId
from brakepedal.sim.telemetry import (
    KINDS,
    VARIANTS,
    Shape,
    minute_leaves,
    minute_root,
    shape_record,
    window_totals,
)
from brakepedal.wire.minute import parse_minute
from brakepedal.wire.report import GENESIS_PREVIOUS, Attribution, build_report

START = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)

_shapes = st.builds(Shape, st.sampled_from(KINDS), st.integers(0, 10), st.integers(0, VARIANTS - 1))


@settings(max_examples=40, deadline=None)
@given(_shapes, st.integers(0, 10_000), st.from_regex(r"[a-z0-9][a-z0-9.-]{0,30}", fullmatch=True))
def test_a_templated_minute_is_the_record_the_agent_writes(
    shape: Shape, minute: int, device: str
) -> None:
    moment = START + timedelta(minutes=minute)
    (leaf,) = minute_leaves(device, moment, [shape])
    real = dataclasses.replace(
        shape_record(shape), device=DeviceId(device), minute_start=moment
    ).to_bytes()
    assert leaf == real
    assert parse_minute(leaf).to_bytes() == leaf


@settings(max_examples=15, deadline=None)
@given(st.lists(_shapes, min_size=1, max_size=20))
def test_a_report_over_templated_minutes_equals_build_report(shapes: list[Shape]) -> None:
    leaves = minute_leaves("gpu-1", START, shapes)
    records = [parse_minute(leaf) for leaf in leaves]
    built = build_report(
        device=DeviceId("gpu-1"),
        accelerator="nvidia-h100-sxm5-80gb",
        sequence=0,
        previous=GENESIS_PREVIOUS,
        window_start=START,
        window_end=START + timedelta(minutes=len(shapes)),
        minutes=records,
        attribution=Attribution(JobId("j"), EntityId("lab-a"), None, None, Workload.TRAINING),
        governance=None,
    )
    totals = window_totals(tuple(shapes))
    assert built.minute_root == minute_root(leaves)
    assert (
        built.busy_ms,
        built.tensor_active_ms,
        built.energy_mj,
        built.memory_max_bytes,
        built.interconnect_bytes,
    ) == (
        totals["busy_ms"],
        totals["tensor_active_ms"],
        totals["energy_mj"],
        totals["memory_max_bytes"],
        totals["interconnect_bytes"],
    )


@pytest.mark.parametrize(
    ("kind", "level", "training"),
    [
        ("train", 10, True),
        ("throttled", 3, True),
        ("throttled", 5, True),
        ("throttled", 8, True),
        ("infer", 3, False),
        ("infer", 10, False),
        ("hpc", 10, False),
        ("idle", 10, False),
    ],
)
def test_the_classifier_sees_the_step_loop_in_every_variant(
    kind: str, level: int, training: bool
) -> None:
    for variant in range(VARIANTS):
        assert looks_like_training(shape_record(Shape(kind, level, variant))) is training


def test_an_unknown_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="no such shape"):
        shape_record(Shape("mining"))
