"""``brakepedal witness`` end to end, on real keys and a SQLite log made by ``brakepedal log``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brakepedal.cli import app as main_app
from brakepedal.cli import witness
from brakepedal.cli.output import EXIT_INFRASTRUCTURE, EXIT_INPUT, EXIT_TRUST
from brakepedal.tlog.cosignature import CosignatureVerifier, verify_cosignatures
from brakepedal.tlog.note import Note
from brakepedal.tlog.witness import WitnessState

ORIGIN = "test.brakepedal.org/log"


class Cli:
    """Runs ``brakepedal`` in-process; ``witness`` commands go to the witness sub-app itself."""

    def __init__(self, workdir: Path) -> None:
        self.runner = CliRunner()
        self.workdir = workdir
        self.db = str(workdir / "log.db")

    def __call__(self, *args: str, code: int = 0, stdin: str | None = None) -> str:
        target, argv = (witness.app, args[1:]) if args[0] == "witness" else (main_app, args)
        result = self.runner.invoke(
            target, list(argv), input=stdin, env={"BRAKEPEDAL_DB": self.db, "COLUMNS": "200"}
        )
        if result.exit_code != code:
            raise AssertionError(
                f"exit {result.exit_code} != {code} for {args}:\n{result.output}\n{result.stderr}"
            )
        return result.stdout + result.stderr

    def path(self, name: str) -> str:
        return str(self.workdir / name)

    def read(self, name: str) -> bytes:
        return (self.workdir / name).read_bytes()

    def append(self, first: int, count: int, *, db: str | None = None) -> None:
        lines = "".join(f"entry {i}\n" for i in range(first, first + count))
        self("log", "append", "--db", db or self.db, "--lines", "-", stdin=lines)

    def checkpoint(self, out: str, *, db: str | None = None) -> None:
        key = self.path("log.key")
        self("log", "checkpoint", "--db", db or self.db, "--key", key, "--out", self.path(out))

    def cosign(self, checkpoint: str, *extra: str, code: int = 0, who: str = "w1") -> str:
        return self(
            "witness",
            "cosign",
            "--key",
            self.path(f"{who}.key"),
            "--state",
            self.path(f"{who}.state"),
            "--log-vkey",
            self.path("log.vkey"),
            "--checkpoint",
            self.path(checkpoint),
            "--out",
            self.path(f"{checkpoint}.{who}"),
            *extra,
            code=code,
        )

    def witness_vkey(self, who: str) -> str:
        out = self("witness", "show", "--state", self.path(f"{who}.state"))
        return next(line.split()[1] for line in out.splitlines() if line.startswith("vkey"))


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A log with checkpoints at sizes 5 and 12, and a witness w1 that has cosigned nothing."""
    cli = Cli(tmp_path)
    cli("keys", "generate", "--name", ORIGIN, "--out", cli.path("log"))
    cli("log", "init", "--origin", ORIGIN)
    cli.append(0, 5)
    cli.checkpoint("cp5")
    cli.append(5, 7)
    cli.checkpoint("cp12")
    cli("log", "prove-consistency", "--old", "5", "--out", cli.path("c5-12.json"))
    for who in ("w1", "w2"):
        cli("keys", "generate", "--name", f"witness.test/{who}", "--out", cli.path(who))
    out = cli(
        "witness",
        "init",
        "--name",
        "witness.test/w1",
        "--key",
        cli.path("w1.key"),
        "--log-vkey",
        cli.path("log.vkey"),
        "--state",
        cli.path("w1.state"),
    )
    assert f"follows        {ORIGIN}" in out
    return cli


def test_witness_follows_a_growing_log(cli: Cli) -> None:
    assert "accepted on first use" in cli.cosign("cp5")
    assert "grew from size 5 to 12" in cli.cosign("cp12", "--proof", cli.path("c5-12.json"))
    assert "cosigned again" in cli.cosign("cp12")
    shown = cli("witness", "show", "--state", cli.path("w1.state"))
    assert shown.splitlines()[-1].split()[:2] == [ORIGIN, "12"]
    cosigned = Note.from_bytes(cli.read("cp12.w1"))
    verifier = CosignatureVerifier.from_vkey(cli.witness_vkey("w1"))
    assert verify_cosignatures(cosigned, cosigned.text, [verifier], 1) == ("witness.test/w1",)
    out = cli("log", "verify", "--vkey", cli.path("log.vkey"), "--checkpoint", cli.path("cp12.w1"))
    assert "size 12" in out
    assert sorted(os.listdir(cli.workdir)) == sorted(
        [
            *("log.db", "log.key", "log.pub.json", "log.vkey", "c5-12.json"),
            *("cp5", "cp12", "cp5.w1", "cp12.w1", "w1.state", "w1.state.lock"),
            *(f"{w}.{ext}" for w in ("w1", "w2") for ext in ("key", "pub.json", "vkey")),
        ]
    )


def test_split_view_is_refused_and_the_state_kept(cli: Cli) -> None:
    cli.cosign("cp12", "--proof", cli.path("c5-12.json"), code=EXIT_INPUT)  # never saw size 5
    cli.cosign("cp12")
    state = cli.read("w1.state")
    fork = cli.path("fork.db")
    cli("log", "init", "--db", fork, "--origin", ORIGIN)
    cli.append(100, 12, db=fork)  # the same key signs another tree of size 12
    cli.checkpoint("fork12", db=fork)
    out = cli.cosign("fork12", code=EXIT_TRUST)
    assert "witness.split_view" in out
    assert "two different trees of size 12" in out
    assert cli.read("w1.state") == state
    assert not (cli.workdir / "fork12.w1").exists()


def test_rollback_and_missing_proof_are_refused(cli: Cli) -> None:
    cli.cosign("cp5")
    assert "witness.proof_missing" in cli.cosign("cp12", code=EXIT_INPUT)
    cli.cosign("cp12", "--proof", cli.path("c5-12.json"))
    state = cli.read("w1.state")
    assert "witness.rollback" in cli.cosign("cp5", code=EXIT_TRUST)
    assert cli.read("w1.state") == state


def test_a_proof_from_a_forked_log_is_refused(cli: Cli) -> None:
    cli.cosign("cp5")
    fork = cli.path("fork.db")
    cli("log", "init", "--db", fork, "--origin", ORIGIN)
    cli.append(0, 4, db=fork)
    cli.append(99, 8, db=fork)
    cli.checkpoint("fork12", db=fork)
    proof = cli.path("fork-proof.json")
    cli("log", "prove-consistency", "--db", fork, "--old", "5", "--out", proof)
    assert "witness.inconsistent" in cli.cosign("fork12", "--proof", proof, code=EXIT_TRUST)


def test_two_witnesses_merge_and_meet_a_threshold(cli: Cli) -> None:
    key, state = cli.path("w2.key"), cli.path("w2.state")
    cli("witness", "init", "--name", "witness.test/w2", "--key", key, "--state", state)
    cli.cosign("cp12")
    cli.cosign("cp12", who="w2")
    merged = cli.path("cp12.both")
    files = ("--checkpoint", cli.path("cp12.w1"), "--checkpoint", cli.path("cp12.w2"))
    assert "with 3 signature lines" in cli("witness", "merge", *files, "--out", merged)
    w1, w2 = cli.witness_vkey("w1"), cli.witness_vkey("w2")
    check = ("witness", "verify", "--log-vkey", cli.path("log.vkey"), "--checkpoint")
    out = cli(*check, merged, "--witness-vkey", w1, "--witness-vkey", w2)
    assert "cosigned by 2 of 2 required" in out
    out = cli(*check, cli.path("cp12.w1"), "--witness-vkey", w1, "--witness-vkey", w2, code=3)
    assert "cosignature.threshold_not_met" in out
    out = cli(
        *check, cli.path("cp12.w1"), "--witness-vkey", w1, "--witness-vkey", w2, "--threshold", "1"
    )
    assert "cosigned by 1 of 1 required" in out
    out = cli("witness", "merge", "--checkpoint", cli.path("cp5"), *files, "--out", merged, code=2)
    assert "witness.bodies_differ" in out


def test_init_refuses_to_overwrite_a_state(cli: Cli) -> None:
    state = cli.read("w1.state")
    args = ("--name", "witness.test/w1", "--key", cli.path("w1.key"))
    out = cli("witness", "init", *args, "--state", cli.path("w1.state"), code=EXIT_INPUT)
    assert "file.exists" in out
    assert cli.read("w1.state") == state
    assert WitnessState.from_bytes(state).logs == ()


COSIGN_DEFAULTS = {
    "--key": "w1.key",
    "--state": "w1.state",
    "--log-vkey": "log.vkey",
    "--checkpoint": "cp5",
    "--out": "out",
}


@pytest.mark.parametrize(
    ("options", "extra", "reason", "code"),
    [
        ({}, ["--log-vkey", "log.vkey"], "witness.duplicate_log", EXIT_INPUT),
        ({}, ["--proof", "incl.json"], "witness.proof_not_consistency", EXIT_INPUT),
        ({"--key": "w2.key"}, [], "witness.state_mismatch", EXIT_INPUT),
        ({"--log-vkey": "w2.vkey"}, [], "witness.unknown_log", EXIT_TRUST),
        ({"--state": "log.vkey"}, [], "json.invalid", EXIT_INPUT),
        ({"--checkpoint": "log.vkey"}, [], "note.missing_separator", EXIT_INPUT),
        ({"--state": "nowhere/w1.state"}, [], "file.not_found", EXIT_INPUT),
        ({"--state": "w2.state"}, [], "file.not_found", EXIT_INPUT),
    ],
    ids=[
        "duplicate-log",
        "inclusion-proof",
        "other-witness-key",
        "unknown-log",
        "bad-state",
        "not-a-checkpoint",
        "no-state-folder",
        "no-state-file",
    ],
)
def test_bad_cosign_requests_are_refused(
    cli: Cli, options: dict[str, str], extra: list[str], reason: str, code: int
) -> None:
    cli("log", "prove-inclusion", "--index", "1", "--out", cli.path("incl.json"))
    chosen = COSIGN_DEFAULTS | options
    args = [part for option, name in chosen.items() for part in (option, cli.path(name))]
    args += [extra[0], cli.path(extra[1])] if extra else []
    out = cli("witness", "cosign", *args, code=code)
    assert reason in out
    assert not (cli.workdir / "out").exists()


def test_a_failed_state_write_gives_no_cosignature(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = cli.read("w1.state")

    def broken_replace(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    out = cli.cosign("cp5", code=EXIT_INFRASTRUCTURE)
    assert "witness.state_unwritable" in out
    assert cli.read("w1.state") == state
    assert not (cli.workdir / "cp5.w1").exists()
    assert not [name for name in os.listdir(cli.workdir) if name.startswith(".w1.state")]


def test_show_an_empty_state(cli: Cli) -> None:
    out = cli("witness", "show", "--state", cli.path("w1.state"))
    assert "no checkpoint cosigned yet" in out
    assert "witness  witness.test/w1" in out
