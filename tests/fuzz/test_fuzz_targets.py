"""Every fuzz target, driven by Hypothesis in the ordinary test run.

The targets in ``fuzz/`` let only :class:`BrakepedalError` out of their parser; anything else
(an untyped exception) fails here. Inputs are arbitrary bytes and single-byte mutations,
truncations and splices of the committed seeds, which reach far deeper than random bytes.
Coverage-guided runs under atheris happen in ``scripts/test`` as well.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.harness import seeds

FUZZ_DIR = Path(__file__).resolve().parents[2] / "fuzz"
TARGETS = sorted(path.stem.removeprefix("fuzz_") for path in FUZZ_DIR.glob("fuzz_*.py"))


def _target(name: str) -> Callable[[bytes], None]:
    module = importlib.import_module(f"fuzz.fuzz_{name}")
    target: Callable[[bytes], None] = module.test_one_input
    return target


@st.composite
def _mutated_seed(draw: st.DrawFn, pool: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(pool)))
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "splice"]))
        position = draw(st.integers(0, len(data)))
        if action == "flip" and data:
            data[min(position, len(data) - 1)] ^= 1 << draw(st.integers(0, 7))
        elif action == "cut":
            del data[position : position + draw(st.integers(1, 16))]
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        else:
            other = draw(st.sampled_from(pool))
            data[position:] = other[draw(st.integers(0, len(other))) :]
    return bytes(data)


def test_every_parser_has_a_target() -> None:
    assert {
        "checkpoint",
        "enrolment",
        "enrolment_request",
        "envelope",
        "governance_document",
        "ingest_batch",
        "key_json",
        "note",
        "policy",
        "proof",
        "proof_json",
        "tile",
        "usage",
        "usage_report",
        "vkey",
        "witness_state",
    } <= set(TARGETS)


@pytest.mark.parametrize("name", TARGETS)
def test_target_has_seeds(name: str) -> None:
    assert seeds(name), f"fuzz/corpus/{name}/ needs seed inputs"


@pytest.mark.parametrize("name", TARGETS)
def test_target_raises_only_typed_errors(name: str) -> None:
    target = _target(name)
    pool = seeds(name) or [b""]

    @settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.binary(max_size=512), _mutated_seed(pool)))
    def run(data: bytes) -> None:
        target(data)

    run()
