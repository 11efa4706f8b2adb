"""The ``keys`` and ``log`` commands end to end, on SQLite and on PostgreSQL, plus bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brakepedal.cli import app
from brakepedal.cli.output import EXIT_INPUT, EXIT_TRUST

ORIGIN = "test.brakepedal.org/log"


class Cli:
    """Runs the app in-process against one database, failing loudly on surprises."""

    def __init__(self, db: str, workdir: Path) -> None:
        self.runner = CliRunner()
        self.db = db
        self.workdir = workdir

    def __call__(self, *args: str, code: int = 0, stdin: str | None = None) -> str:
        result = self.runner.invoke(
            app, list(args), input=stdin, env={"BRAKEPEDAL_DB": self.db, "COLUMNS": "200"}
        )
        if result.exit_code != code:
            raise AssertionError(
                f"exit {result.exit_code} != {code} for {args}:\n{result.output}\n{result.stderr}"
            )
        return result.stdout + result.stderr

    def path(self, name: str) -> str:
        return str(self.workdir / name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Cli:
    if request.param == "sqlite":
        db = str(tmp_path / "log.db")
    else:
        db = str(request.getfixturevalue("postgres_url"))
    return Cli(db, tmp_path)


@pytest.fixture
def populated(cli: Cli) -> Cli:
    cli("keys", "generate", "--name", ORIGIN, "--out", cli.path("log"))
    cli("log", "init", "--origin", ORIGIN)
    cli("log", "append", "--lines", "-", stdin="".join(f"entry {i}\n" for i in range(10)))
    cli("log", "checkpoint", "--key", cli.path("log.key"), "--out", cli.path("cp10"))
    cli("log", "append", "--lines", "-", stdin="".join(f"entry {i}\n" for i in range(10, 37)))
    cli("log", "checkpoint", "--key", cli.path("log.key"), "--out", cli.path("cp37"))
    return cli


def test_key_file_is_private(populated: Cli) -> None:
    assert os.stat(populated.path("log.key")).st_mode & 0o777 == 0o600
    assert populated.workdir.joinpath("log.vkey").read_text().startswith(ORIGIN + "+")


def test_inclusion_proof_verifies_offline(populated: Cli) -> None:
    populated.workdir.joinpath("entry").write_bytes(b"entry 12")
    populated("log", "prove-inclusion", "--index", "12", "--out", populated.path("p.json"))
    out = populated(
        "log",
        "verify",
        "--vkey",
        populated.path("log.vkey"),
        "--checkpoint",
        populated.path("cp37"),
        "--proof",
        populated.path("p.json"),
        "--entry",
        populated.path("entry"),
    )
    assert "entry 12 is in the log at size 37" in out


def test_inclusion_proof_for_another_entry_is_refused(populated: Cli) -> None:
    populated.workdir.joinpath("entry").write_bytes(b"entry 13")
    populated("log", "prove-inclusion", "--index", "12", "--out", populated.path("p.json"))
    out = populated(
        "log",
        "verify",
        "--vkey",
        populated.path("log.vkey"),
        "--checkpoint",
        populated.path("cp37"),
        "--proof",
        populated.path("p.json"),
        "--entry",
        populated.path("entry"),
        code=EXIT_TRUST,
    )
    assert "verify.entry_mismatch" in out


def test_consistency_proof_verifies_offline(populated: Cli) -> None:
    populated("log", "prove-consistency", "--old", "10", "--out", populated.path("c.json"))
    out = populated(
        "log",
        "verify",
        "--vkey",
        populated.path("log.vkey"),
        "--checkpoint",
        populated.path("cp37"),
        "--old-checkpoint",
        populated.path("cp10"),
        "--proof",
        populated.path("c.json"),
    )
    assert "size 10 is a prefix of size 37" in out


def test_whole_log_verifies(populated: Cli) -> None:
    out = populated("log", "verify", "--vkey", populated.path("log.vkey"), "--db", populated.db)
    assert "ok: 37 entries" in out
    assert "2 checkpoints verified" in out
    shown = populated("log", "show")
    assert [line.split() for line in shown.splitlines()[:2]] == [["origin", ORIGIN], ["size", "37"]]
    assert shown.rstrip().splitlines()[-1].startswith("— " + ORIGIN + " ")


def test_checkpoint_signed_by_another_key_is_refused(populated: Cli) -> None:
    populated("keys", "generate", "--name", ORIGIN, "--out", populated.path("other"))
    out = populated(
        "log",
        "verify",
        "--vkey",
        populated.path("other.vkey"),
        "--checkpoint",
        populated.path("cp37"),
        code=EXIT_TRUST,
    )
    # Same key name, another key: its key ID differs, so no signature line is by a known key.
    assert "note.unknown_key" in out


def test_tampered_proof_is_refused(populated: Cli) -> None:
    populated("log", "prove-inclusion", "--index", "3", "--out", populated.path("p.json"))
    proof = json.loads(populated.workdir.joinpath("p.json").read_text())
    proof["log_index"] = 4
    populated.workdir.joinpath("p.json").write_text(json.dumps(proof))
    populated(
        "log",
        "verify",
        "--vkey",
        populated.path("log.vkey"),
        "--checkpoint",
        populated.path("cp37"),
        "--proof",
        populated.path("p.json"),
        code=EXIT_TRUST,
    )


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        pytest.param(["log", "append"], "log.nothing_to_append", id="append-nothing"),
        pytest.param(["log", "append", "/no/such/file"], "file.not_found", id="append-missing"),
        pytest.param(["log", "prove-inclusion", "--index", "99"], "index", id="index-beyond"),
        pytest.param(["log", "prove-consistency", "--old", "99"], "size", id="old-beyond"),
        pytest.param(["log", "verify", "--vkey", "x+y+z"], "vkey", id="garbage-vkey"),
        pytest.param(
            ["log", "verify", "--vkey", "/no/such/vkey"], "file.not_found", id="missing-vkey"
        ),
        pytest.param(["log", "init", "--origin", "other.org/log"], "origin", id="other-origin"),
        pytest.param(["log", "checkpoint", "--key", "/no/such/key"], "file.not_found", id="no-key"),
    ],
)
def test_bad_input_exits_2_with_reason(populated: Cli, args: list[str], reason: str) -> None:
    out = populated(*args, code=EXIT_INPUT)
    assert reason in out
    assert "Traceback" not in out


def test_garbage_key_file_is_refused(populated: Cli) -> None:
    populated.workdir.joinpath("junk.key").write_bytes(b"not a key")
    out = populated("log", "checkpoint", "--key", populated.path("junk.key"), code=EXIT_INPUT)
    assert "key" in out


def test_keys_generate_refuses_to_overwrite(populated: Cli) -> None:
    out = populated(
        "keys", "generate", "--name", ORIGIN, "--out", populated.path("log"), code=EXIT_INPUT
    )
    assert "file.exists" in out


def test_console_script_runs_as_a_real_process(tmp_path: Path) -> None:
    """The installed entry point, in a child process, exits with the documented codes."""
    command = [sys.executable, "-m", "brakepedal", "log", "show", "--db", str(tmp_path / "x.db")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == EXIT_INPUT, result.stderr
    assert "store.log_missing" in result.stderr


def test_checkpoint_of_another_log_by_the_same_key_is_refused(tmp_path: Path) -> None:
    cli = Cli(str(tmp_path / "other.db"), tmp_path)
    cli("keys", "generate", "--name", ORIGIN, "--out", cli.path("log"))
    cli("log", "init", "--origin", "other.brakepedal.org/log")
    cli("log", "append", "--lines", "-", stdin="a\nb\n")
    cli(
        "log", "checkpoint", "--key", cli.path("log.key"), "--name", ORIGIN, "--out", cli.path("cp")
    )
    verify = ("log", "verify", "--vkey", cli.path("log.vkey"), "--checkpoint", cli.path("cp"))
    assert "checkpoint.origin_mismatch" in cli(*verify, code=EXIT_TRUST)
    assert "ok" in cli(*verify, "--origin", "other.brakepedal.org/log")


def test_append_lines_splits_on_newline_only(tmp_path: Path) -> None:
    cli = Cli(str(tmp_path / "lines.db"), tmp_path)
    cli("log", "init", "--origin", ORIGIN)
    assert cli("log", "append", "--lines", "-", stdin="a\rb\n\nc\n").split() == ["0", "1"]
