"""``brakepedal agent snapshot`` end to end, in process, under a local ``agent`` group (the
same wiring the main app uses: ``agent.app.command(name="snapshot")(snapshot)``)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from brakepedal.agent.handin import HandIns
from brakepedal.cli.agent_handin import snapshot
from brakepedal.cli.output import EXIT_INFRASTRUCTURE, EXIT_INPUT
from brakepedal.model.types import DeviceId, JobId

RUNNER = CliRunner()
APP = typer.Typer()
AGENT = typer.Typer()
AGENT.command(name="snapshot")(snapshot)
APP.add_typer(AGENT, name="agent")


def run(*args: str, code: int = 0, env: dict[str, str] | None = None) -> str:
    result = RUNNER.invoke(APP, ["agent", "snapshot", *args], env={"COLUMNS": "200", **(env or {})})
    assert result.exit_code == code, result.output + result.stderr
    return result.stdout if code == 0 else result.stderr


def stored(path: Path, job: str = "slurm:4242") -> list[dict[str, object]]:
    now = datetime.now(UTC)
    with HandIns(path) as store:
        snapshots, _ = store.between(DeviceId("gpu-0"), JobId(job), now - timedelta(hours=1), now)
    return [item.to_json() for item in snapshots]


def test_a_file_is_hashed_and_its_commitment_stored(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(b'{"shards": []}')
    handins = tmp_path / "handins.db"
    printed = json.loads(
        run(
            "--handins",
            str(handins),
            "--job",
            "slurm:4242",
            "--step",
            "12000",
            "--file",
            str(manifest),
        )
    )
    assert printed["digest"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert (printed["step"], printed["job"], printed["parent"]) == (12000, "slurm:4242", None)
    assert stored(handins) == [printed]


def test_a_digest_and_the_environment_are_taken(tmp_path: Path) -> None:
    handins = tmp_path / "handins.db"
    env = {"BRAKEPEDAL_HANDINS": str(handins), "BRAKEPEDAL_JOB": "slurm:7"}
    printed = json.loads(run("--step", "3", "--digest", "ab" * 32, "--parent", "cd" * 32, env=env))
    assert (printed["job"], printed["digest"], printed["parent"]) == (
        "slurm:7",
        "ab" * 32,
        "cd" * 32,
    )
    assert stored(handins, "slurm:7") == [printed]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        pytest.param(["--step", "1"], "handin.digest_or_file", id="neither"),
        pytest.param(
            ["--step", "1", "--digest", "ab" * 32, "--file", "m.json"],
            "handin.digest_or_file",
            id="both",
        ),
        pytest.param(["--step", "1", "--digest", "AB" * 32], "handin.digest_invalid", id="upper"),
        pytest.param(
            ["--step", "1", "--file", "missing.json"], "handin.file_unreadable", id="file"
        ),
        pytest.param(
            ["--step", "1", "--digest", "ab" * 32, "--parent", "x"],
            "report.digest_invalid",
            id="parent",
        ),
    ],
)
def test_bad_input_is_refused_by_name(tmp_path: Path, args: list[str], reason: str) -> None:
    handins = tmp_path / "handins.db"
    stderr = run("--handins", str(handins), "--job", "slurm:1", *args, code=EXIT_INPUT)
    assert reason in stderr


def test_a_bad_job_or_step_is_refused(tmp_path: Path) -> None:
    handins = str(tmp_path / "handins.db")
    digest = ["--digest", "ab" * 32]
    assert "job_id.invalid_character" in run(
        "--handins", handins, "--job", "Job 1", "--step", "1", *digest, code=EXIT_INPUT
    )
    result = RUNNER.invoke(
        APP, ["agent", "snapshot", "--handins", handins, "--job", "j", "--step", "-1", *digest]
    )
    assert result.exit_code == EXIT_INPUT  # Typer's own usage error for --step below 0


def test_a_store_that_cannot_be_opened_exits_4(tmp_path: Path) -> None:
    handins = tmp_path / "no-such-folder" / "handins.db"
    stderr = run(
        "--handins",
        str(handins),
        "--job",
        "j",
        "--step",
        "1",
        "--digest",
        "ab" * 32,
        code=EXIT_INFRASTRUCTURE,
    )
    assert "handin.unavailable" in stderr
