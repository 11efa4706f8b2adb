"""FLOP bounds and estimates: exact figures, refusals, and the discrepancy."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from brakepedal.accounting.catalogue import Precision, default_catalogue
from brakepedal.accounting.flop import (
    BoundBasis,
    BoundRule,
    attested_bound,
    discrepancy,
    hardware_flop,
    inference_flop,
    parse_quantity,
    training_flop_6nd,
)
from brakepedal.errors import InputError
from brakepedal.model.types import Flop

H100 = default_catalogue().get("NVIDIA H100 80GB HBM3")
A100 = default_catalogue().get("NVIDIA A100-SXM4-80GB")
BF16_FP8 = frozenset({Precision.BF16, Precision.FP8})


def test_busy_bound_uses_the_fastest_covered_precision() -> None:
    rule = BoundRule(BF16_FP8)
    bound = attested_bound(H100, rule, wall_seconds=300, busy_seconds=120)
    assert bound == Flop(120 * 1_979_000_000_000_000)


def test_bf16_only_policy_bounds_at_bf16() -> None:
    rule = BoundRule(frozenset({Precision.BF16}))
    assert attested_bound(H100, rule, wall_seconds=300, busy_seconds=300) == Flop(
        300 * 989_400_000_000_000
    )


def test_wall_basis_ignores_the_busy_counter() -> None:
    rule = BoundRule(BF16_FP8, BoundBasis.WALL)
    assert attested_bound(H100, rule, wall_seconds=300, busy_seconds=1) == Flop(
        300 * 1_979_000_000_000_000
    )


def test_missing_busy_counter_falls_back_to_the_window() -> None:
    rule = BoundRule(BF16_FP8)
    assert attested_bound(H100, rule, wall_seconds=60, busy_seconds=None) == Flop(
        60 * 1_979_000_000_000_000
    )


def test_tensor_active_basis_adds_vector_work_at_the_vector_peak() -> None:
    rule = BoundRule(frozenset({Precision.FP8, Precision.FP32}), BoundBasis.TENSOR_ACTIVE)
    bound = attested_bound(
        H100, rule, wall_seconds=300, busy_seconds=200, tensor_active_seconds=100
    )
    fp32 = H100.peak_at(Precision.FP32)
    assert bound == Flop(100 * 1_979_000_000_000_000 + 200 * fp32)


def test_tensor_active_basis_without_counter_is_the_busy_bound() -> None:
    tensor_rule = BoundRule(BF16_FP8, BoundBasis.TENSOR_ACTIVE)
    busy_rule = BoundRule(BF16_FP8)
    assert attested_bound(H100, tensor_rule, wall_seconds=300, busy_seconds=200) == attested_bound(
        H100, busy_rule, wall_seconds=300, busy_seconds=200
    )


def test_fractional_seconds_round_up_to_whole_flop() -> None:
    rule = BoundRule(frozenset({Precision.BF16}))
    bound = attested_bound(H100, rule, wall_seconds=1, busy_seconds=Fraction(1, 3))
    assert bound == Flop(math.ceil(Fraction(989_400_000_000_000, 3)))


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"wall_seconds": 10, "busy_seconds": 11}, "bound.counter_exceeds_window"),
        (
            {"wall_seconds": 10, "busy_seconds": 5, "tensor_active_seconds": 6},
            "bound.counter_exceeds_window",
        ),
        ({"wall_seconds": -1, "busy_seconds": None}, "bound.negative"),
        ({"wall_seconds": 10, "busy_seconds": -1}, "bound.negative"),
        ({"wall_seconds": 1.5, "busy_seconds": None}, "bound.not_exact"),
    ],
)
def test_bad_counters_are_refused(kwargs: dict[str, object], reason: str) -> None:
    rule = BoundRule(BF16_FP8, BoundBasis.TENSOR_ACTIVE)
    with pytest.raises(InputError) as caught:
        attested_bound(H100, rule, **kwargs)  # type: ignore[arg-type]
    assert caught.value.reason == reason


def test_a_precision_the_device_lacks_is_refused() -> None:
    rule = BoundRule(frozenset({Precision.FP8}))
    with pytest.raises(InputError) as caught:
        attested_bound(A100, rule, wall_seconds=1, busy_seconds=1)
    assert caught.value.reason == "catalogue.precision_unknown"
    assert "A100" in caught.value.message


def test_empty_rule_is_refused() -> None:
    with pytest.raises(InputError, match=r"bound\.precisions_empty"):
        BoundRule(frozenset())


def test_six_n_d_for_llama_3_1_405b() -> None:
    assert training_flop_6nd(405 * 10**9, 15_600 * 10**9) == Flop(6 * 405 * 15_600 * 10**18)


def test_inference_is_two_n_per_token() -> None:
    assert inference_flop(37 * 10**9, 1000) == Flop(74 * 10**12)


def test_hardware_estimate_with_mfu() -> None:
    estimate = hardware_flop(
        H100,
        devices=16_384,
        seconds=2142 * 3600,
        precision=Precision.BF16,
        utilisation=Fraction("0.4042"),
    )
    assert abs(math.log10(estimate.value / 3.8e25)) < math.log10(2)


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: training_flop_6nd(-1, 1), "estimate.negative"),
        (lambda: training_flop_6nd(True, 1), "estimate.not_integer"),
        (lambda: inference_flop(10**41, 1), "estimate.too_large"),
        (
            lambda: hardware_flop(
                H100, devices=1, seconds=1, precision=Precision.BF16, utilisation=Fraction(0)
            ),
            "estimate.utilisation_invalid",
        ),
        (
            lambda: hardware_flop(
                H100, devices=1, seconds=1, precision=Precision.BF16, utilisation=Fraction(3, 2)
            ),
            "estimate.utilisation_invalid",
        ),
        (
            lambda: hardware_flop(A100, devices=1, seconds=1, precision=Precision.FP8),
            "catalogue.precision_unknown",
        ),
    ],
)
def test_bad_estimate_inputs(call: object, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        call()  # type: ignore[operator]
    assert caught.value.reason == reason


def test_discrepancy_above_the_bound_means_unattested_hardware() -> None:
    result = discrepancy(Flop(300), Flop(100))
    assert result.exceeds_bound
    assert result.implied_utilisation == 3
    assert result.log10_ratio == pytest.approx(math.log10(3))


def test_discrepancy_far_below_the_bound_is_understated() -> None:
    result = discrepancy(Flop(1), Flop(100))
    assert not result.exceeds_bound
    assert result.understated(Fraction(1, 10))
    assert not discrepancy(Flop(40), Flop(100)).understated(Fraction(1, 10))


@pytest.mark.parametrize(
    ("declared", "bound", "log10"),
    [(0, 0, 0.0), (5, 0, math.inf), (0, 5, -math.inf)],
)
def test_discrepancy_edges(declared: int, bound: int, log10: float) -> None:
    result = discrepancy(Flop(declared), Flop(bound))
    assert result.log10_ratio == log10
    assert (result.implied_utilisation is None) == (bound == 0)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("405e9", 405 * 10**9),
        ("405B", 405 * 10**9),
        ("15.6T", 15_600 * 10**9),
        ("37 B", 37 * 10**9),
        ("1200", 1200),
        ("2k", 2000),
        ("1.5M", 1_500_000),
    ],
)
def test_parse_quantity(text: str, value: int) -> None:
    assert parse_quantity(text, what="parameters") == value


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "quantity.format_invalid"),
        ("-5", "quantity.format_invalid"),
        ("1.5", "quantity.not_integer"),
        ("12 apples", "quantity.format_invalid"),
        ("1e99", "quantity.too_large"),
        ("9" * 80, "quantity.format_invalid"),
    ],
)
def test_parse_quantity_refusals(text: str, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_quantity(text, what="tokens")
    assert caught.value.reason == reason
    assert "tokens" in caught.value.message


def test_parse_quantity_fraction_allowed() -> None:
    assert parse_quantity("0.4", what="mfu", allow_fraction=True) == Fraction(2, 5)
