"""``brakepedal sim`` end to end, in process: list, run (matrix, JSON, plot), sweep, errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from brakepedal.cli import app
from brakepedal.cli.output import EXIT_INPUT

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
