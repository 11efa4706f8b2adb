"""``brakepedal sim`` end to end, in process: list, run (matrix, JSON, plot), sweep, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from brakepedal.cli import app
from brakepedal.cli.output import EXIT_INPUT
from brakepedal.sim import matrix as matrix_module
from brakepedal.sim.engine import Outcome
from brakepedal.sim.scenario import catalogue_names

RUNNER = CliRunner()


def run(*args: str, code: int = 0) -> str:
    result = RUNNER.invoke(app, ["sim", *args], env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output + result.stderr
    return result.stdout + result.stderr


def test_list_names_every_strategy_and_shipped_scenario() -> None:
    output = run("list")
    for name in ("subsidiary_split", "registry_drop", "honest", "sampling-sweep"):
        assert name in output


def test_run_prints_the_matrix_and_writes_json_and_a_plot(tmp_path: Path) -> None:
    output = run("run", "go-dark", "honest", "--out", str(tmp_path))
    assert "Detection matrix" in output
    assert "go_dark" in output
    assert "device.silent" in output
    document = json.loads((tmp_path / "matrix.json").read_text())
    rows = {row["strategy"]: row for row in document["rows"]}
    assert rows["go_dark"]["caught"] == 1
    assert rows["go_dark"]["rate"] == 1.0
    assert rows["honest"]["false_high"] == 0
    assert (tmp_path / "matrix.png").read_bytes()[:4] == b"\x89PNG"


def test_run_reads_a_scenario_file(tmp_path: Path) -> None:
    scenario = Path(__file__).parents[3] / "bench" / "scenarios" / "honest-50x2d.yaml"
    output = run("run", str(scenario), "--out", str(tmp_path))
    assert "honest-50x2d" in output


def test_sweep_writes_its_points(tmp_path: Path) -> None:
    output = run("sweep", "--budgets", "2,30", "--seeds", "3", "--out", str(tmp_path))
    assert "1 - (1 - f)^s" in output
    points = json.loads((tmp_path / "sweep.json").read_text())
    assert [p["budget"] for p in points] == [2, 30]
    assert all(0 <= p["measured"] <= 1 and 0 < p["fraction"] < 1 for p in points)
    assert (tmp_path / "sweep.png").exists()


def test_a_bad_scenario_file_exits_with_the_input_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("format: brakepedal.scenario\nname: x\n")
    output = run("run", str(bad), "--out", str(tmp_path), code=EXIT_INPUT)
    assert "scenario.field_missing" in output


def test_an_unknown_scenario_name_exits_with_the_input_code(tmp_path: Path) -> None:
    output = run("run", "no-such-world", "--out", str(tmp_path), code=EXIT_INPUT)
    assert "scenario.unknown" in output


def test_bad_budgets_are_a_usage_error(tmp_path: Path) -> None:
    run("sweep", "--budgets", "two", "--out", str(tmp_path), code=2)


TINY = """format: brakepedal.scenario
name: tiny
seed: 7
days: 1
window_minutes: 240
entities: [{id: lab-a}]
clusters: [{id: c1, entity: lab-a, devices: 1}]
workloads: [{id: s, kind: inference, cluster: c1}]
actors: [{entity: lab-a, strategy: honest}]
audit: {every_hours: 24, budget: 0}
"""


def test_run_seeds_from_the_scenarios_own_seed_and_records_it(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(TINY)
    run("run", str(scenario), "--seeds", "2", "--out", str(tmp_path))
    document = json.loads((tmp_path / "matrix.json").read_text())
    assert [r["seed"] for r in document["runs"]] == [7, 8]


def test_a_split_view_named_over_http_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("a scenario ran")

    monkeypatch.setattr(matrix_module, "run_scenario", never)
    output = run(
        "run", "go-dark", "registry-split-view", "--http", "--out", str(tmp_path), code=EXIT_INPUT
    )
    assert "scenario.http_unsupported" in output
    assert "registry-split-view" in output
    assert not (tmp_path / "matrix.json").exists()


def test_the_catalogue_over_http_leaves_out_a_split_view_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[tuple[str, bool]] = []

    def fake(scenarios: list[Any], seeds: int, **kwargs: Any) -> list[Outcome]:
        ran.extend((s.name, kwargs["http"]) for s in scenarios)
        return [Outcome("honest", 1, 44, 10, 1, (), (), (), 3, 0.1, 0)]

    monkeypatch.setattr(matrix_module, "matrix", fake)
    output = run("run", "catalogue", "--http", "--out", str(tmp_path))
    assert "registry-split-view left out of the catalogue" in output
    expected = set(catalogue_names()) - {"sampling-sweep", "registry-split-view"}
    assert {name for name, _ in ran} == expected
    assert all(http for _, http in ran)
