"""``brakepedal policy`` end to end, in process, over the example usage document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brakepedal.cli import app
from brakepedal.cli.output import EXIT_INPUT, EXIT_VIOLATION

RUNNER = CliRunner()
ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = str(ROOT / "docs" / "examples" / "usage-small-lab.json")
AT = "2026-04-01T00:00:00Z"


def run(*args: str, code: int = 0) -> str:
    result = RUNNER.invoke(app, ["policy", *args], env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output + result.stderr
    return result.stdout + result.stderr


def test_presets_lists_every_preset() -> None:
    output = run("presets")
    for name in ("eu-ai-act", "us-eo-14110", "ca-sb-53", "draft-treaty", "pause"):
        assert name in output


def test_check_validates_a_preset_and_a_file(tmp_path: Path) -> None:
    assert "valid" in run("check", "eu-ai-act")
    text = (ROOT / "src" / "brakepedal" / "policy" / "presets" / "ca-sb-53.toml").read_text()
    own = tmp_path / "mine.toml"
    own.write_text(text.replace('id = "ca-sb-53"', 'id = "mine"', 1))
    assert "mine v1 (in_force): 1 rules" in run("check", str(own))
    explained = run("explain", "eu-ai-act")
    assert "1e25" in explained
    assert "2024/1689" in explained


def test_draft_treaty_over_the_example_reports_permit_and_cluster_findings() -> None:
    document = json.loads(run("check", "draft-treaty", "--usage", EXAMPLE, "--at", AT, "--json"))
    reasons = {(v["rule"], v["subject"]["id"]) for v in document["violations"]}
    assert ("training-needs-approval", "atlas") in reasons
    assert ("unmonitored-chip-cluster", "dc-east") in reasons
    # A draft binds nobody: the findings are informational and the exit status is 0.
    assert document["compliant"] is True
    assert all(v["binding"] is False for v in document["violations"])


def test_monitored_site_removes_the_cluster_finding() -> None:
    document = json.loads(
        run(
            "check",
            "draft-treaty",
            "--usage",
            EXAMPLE,
            "--at",
            AT,
            "--json",
            "--monitored-site",
            "dc-east",
        )
    )
    assert "dc-east" not in {v["subject"]["id"] for v in document["violations"]}


def test_binding_violation_exits_5(tmp_path: Path) -> None:
    text = (ROOT / "src" / "brakepedal" / "policy" / "presets" / "draft-treaty.toml").read_text()
    binding = tmp_path / "treaty-in-force.toml"
    binding.write_text(text.replace('status = "draft"', 'status = "in_force"'))
    output = run("check", str(binding), "--usage", EXAMPLE, "--at", AT, code=EXIT_VIOLATION)
    assert "VIOLATION" in output
    assert "training-needs-approval" in output


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("check", "no-such-preset"), "policy.preset_unknown"),
        (("check", "missing.toml"), "file.not_found"),
        (("check", "eu-ai-act", "--usage", "missing.json"), "file.not_found"),
        (("check", "eu-ai-act", "--usage", EXAMPLE, "--at", "yesterday"), "time.format_invalid"),
        (
            ("check", "eu-ai-act", "--usage", EXAMPLE, "--notified", "nocolon"),
            "cli.notified_invalid",
        ),
    ],
)
def test_bad_arguments_name_the_problem(args: tuple[str, ...], reason: str) -> None:
    assert f"reason: {reason}" in run(*args, code=EXIT_INPUT)


def test_bad_policy_file_names_the_field(tmp_path: Path) -> None:
    text = (ROOT / "src" / "brakepedal" / "policy" / "presets" / "eu-ai-act.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("[accounting]", "[accounting]\nprecisionz = []", 1))
    output = run("check", str(bad), code=EXIT_INPUT)
    assert "policy.unknown_field" in output
    assert "accounting.precisionz" in output


def test_notify_obligation_shows_its_due_date_and_notified_marks_it_done(tmp_path: Path) -> None:
    text = (ROOT / "src" / "brakepedal" / "policy" / "presets" / "eu-ai-act.toml").read_text()
    low = tmp_path / "eu-low.toml"
    low.write_text(text.replace('threshold_flop = "1e25"', 'threshold_flop = "1e21"'))
    output = run("check", str(low), "--usage", EXAMPLE, "--at", "2026-03-05T00:00:00Z")
    assert "systemic-risk-notification" in output
    assert "due 2026-03-" in output
    overdue = run("check", str(low), "--usage", EXAMPLE, "--at", AT, code=EXIT_VIOLATION)
    assert "notify_overdue" in overdue
    done = run(
        "check",
        str(low),
        "--usage",
        EXAMPLE,
        "--at",
        AT,
        "--notified",
        "systemic-risk-notification:atlas",
    )
    assert "(done)" in done


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
def test_evaluation_times_at_the_ends_of_the_calendar_are_refused(at: str) -> None:
    output = run("check", "eu-ai-act", "--usage", EXAMPLE, "--at", at, code=EXIT_INPUT)
    assert "reason: policy.time_out_of_range" in output
