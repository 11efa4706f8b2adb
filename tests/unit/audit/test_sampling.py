"""The sampling lottery and its arithmetic."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brakepedal.audit.sampling import catch_probability, choose, plan, samples_needed
from brakepedal.errors import InputError


def test_catch_probability_is_one_minus_the_miss_probability() -> None:
    assert catch_probability(0.01, 100) == pytest.approx(1 - 0.99**100)
    assert catch_probability(0.0, 1000) == 0
    assert catch_probability(1.0, 1) == 1
    assert catch_probability(0.5, 0) == 0


@pytest.mark.parametrize(("fraction", "probability"), [(0.01, 0.95), (0.001, 0.99), (0.2, 0.5)])
def test_samples_needed_is_the_smallest_budget_that_reaches_the_probability(
    fraction: float, probability: float
) -> None:
    needed = samples_needed(fraction, probability)
    assert catch_probability(fraction, needed) >= probability
    assert catch_probability(fraction, needed - 1) < probability


@pytest.mark.parametrize(
    ("call", "args"),
    [
        (catch_probability, (1.5, 3)),
        (catch_probability, (0.5, -1)),
        (samples_needed, (0.0, 0.5)),
        (samples_needed, (0.5, 1.0)),
        (choose, (b"s", -1, 1)),
    ],
    ids=["fraction-above-one", "negative-samples", "zero-fraction", "certainty", "negative-pop"],
)
def test_bad_sampling_arguments_are_refused(call: object, args: tuple[object, ...]) -> None:
    with pytest.raises(InputError) as raised:
        call(*args)  # type: ignore[operator]
    assert raised.value.reason == "sampling.invalid"


@given(st.binary(max_size=32), st.integers(0, 300), st.integers(0, 400))
def test_a_draw_is_distinct_in_range_and_reproducible(
    seed: bytes, population: int, count: int
) -> None:
    chosen = choose(seed, population, count)
    assert len(chosen) == min(count, population)
    assert len(set(chosen)) == len(chosen)
    assert all(0 <= i < population for i in chosen)
    assert choose(seed, population, count) == chosen  # anyone re-runs it from the seed


def test_the_lottery_catches_as_often_as_the_arithmetic_says() -> None:
    """1,000 seeds, 1,000 reports of which 10 are false (f = 1%), 100 draws each: the share of
    samples holding a false report is the hypergeometric catch probability (~0.653), within
    four standard errors, and at least the with-replacement bound 1 - 0.99^100 (~0.634)."""
    population, bad, budget, trials = 1000, set(range(0, 1000, 100)), 100, 1000
    caught = sum(
        bool(bad & set(choose(f"seed-{t}".encode(), population, budget))) for t in range(trials)
    )
    exact = 1 - math.comb(population - len(bad), budget) / math.comb(population, budget)
    error = math.sqrt(exact * (1 - exact) / trials)
    assert abs(caught / trials - exact) < 4 * error
    assert exact >= catch_probability(len(bad) / population, budget)


def test_a_plan_states_its_catch_probability() -> None:
    sample = plan(b"\x01" * 32, list(range(500)), 50, 0.02)
    assert sample.budget == 50
    assert sample.probability == pytest.approx(1 - 0.98**50)
    assert "P(caught) = 1 - (1 - 0.02)^50" in sample.describe()
