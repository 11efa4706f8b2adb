"""The detection matrix's bookkeeping: rows count runs once, seeds start from the scenario's
own, and a scenario that cannot run over HTTP is refused before anything runs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from brakepedal.errors import InputError
from brakepedal.sim import matrix as matrix_module
from brakepedal.sim.engine import ActorOutcome, Caught, Outcome
from brakepedal.sim.matrix import matrix, rows_of, seeds_of
from brakepedal.sim.scenario import load_catalogue_scenario

T = datetime(2026, 6, 1, tzinfo=UTC)


def _actor(entity: str, *, caught: bool = False) -> ActorOutcome:
    return ActorOutcome(
        entity,
        "ignore_pause",
        T,
        None,
        Caught(T, "policy.pause_order", "high") if caught else None,
        (),
    )


def _outcome(*actors: ActorOutcome, false_high: tuple[str, ...] = ()) -> Outcome:
    return Outcome("s", 1, 10, 100, 8, actors, false_high, ("low",), 1, 1.0, 0)


def test_two_actors_of_one_strategy_in_one_run_count_one_run() -> None:
    """runs and false findings count runs; defected and caught count actors."""
    outcome = _outcome(
        _actor("lab-a", caught=True), _actor("lab-b"), false_high=("x.high device:1",)
    )
    (row,) = rows_of([outcome])
    assert (row.runs, row.false_high, row.false_low) == (1, 1, 1)
    assert (row.defected, row.caught, row.rate) == (2, 1, 0.5)
    (row,) = rows_of([outcome, _outcome(_actor("lab-a"), _actor("lab-b"))])
    assert (row.runs, row.false_high, row.false_low, row.defected) == (2, 1, 2, 4)


def test_an_honest_run_is_one_row_of_one_run() -> None:
    (row,) = rows_of([_outcome(false_high=("a", "b"))])
    assert (row.strategy, row.runs, row.false_high, row.defected) == ("honest", 1, 2, 0)


def test_seeds_start_from_the_scenarios_own() -> None:
    scenario = load_catalogue_scenario("honest").model_copy(update={"seed": 7})
    assert seeds_of(scenario, 3) == [7, 8, 9]
    with pytest.raises(InputError):
        seeds_of(scenario, 0)


def test_the_matrix_runs_each_scenario_from_its_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[tuple[str, int | None]] = []

    def fake(scenario: Any, *, seed: int | None = None, http: bool = False) -> str:
        runs.append((scenario.name, seed))
        return "outcome"

    monkeypatch.setattr(matrix_module, "run_scenario", fake)
    honest = load_catalogue_scenario("honest").model_copy(update={"seed": 7})
    dark = load_catalogue_scenario("go-dark").model_copy(update={"seed": 40})
    progress: list[tuple[int, int]] = []
    matrix([honest, dark], 2, progress=lambda stage, done, total: progress.append((done, total)))
    assert runs == [("honest", 7), ("honest", 8), ("go-dark", 40), ("go-dark", 41)]
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_over_http_a_split_view_is_refused_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs: list[str] = []
    monkeypatch.setattr(
        matrix_module, "run_scenario", lambda scenario, **_: runs.append(scenario.name)
    )
    chosen = [load_catalogue_scenario("go-dark"), load_catalogue_scenario("registry-split-view")]
    with pytest.raises(InputError) as error:
        matrix(chosen, 1, http=True)
    assert error.value.reason == "scenario.http_unsupported"
    assert "registry-split-view" in error.value.message
    assert runs == []
    matrix(chosen, 1)  # in process, both run
    assert runs == ["go-dark", "registry-split-view"]
