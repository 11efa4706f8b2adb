"""``brakepedal gov`` in process: signer URIs, client state and refusals by name.

The whole ceremony through the command line is tests/unit/governance/test_governance_doc.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brakepedal.cli import app
from brakepedal.cli.output import EXIT_INPUT, EXIT_TRUST

RUNNER = CliRunner()


def run(*args: str, code: int = 0) -> str:
    result = RUNNER.invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output + result.stderr
    return result.stdout + result.stderr


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    keys.mkdir()
    names = ["p1", "p2", "p3", "a1", "operator", "w1"]
    for name in names:
        run("keys", "generate", "--name", name, "--out", str(keys / name))
    run("keys", "generate", "--name", "gov.test/log", "--out", str(keys / "log"))
    run(
        "witness",
        "init",
        "--name",
        "w1",
        "--key",
        str(keys / "w1.key"),
        "--state",
        str(keys / "w1.state"),
        "--vkey-out",
        str(keys / "w1.cosign.vkey"),
    )
    parties = "".join(
        f'[[parties]]\nname = "{p}"\nkey = "keys/{p}.pub.json"\n' for p in ("p1", "p2", "p3")
    )
    (tmp_path / "agreement.toml").write_text(
        "[agreement]\npolicy_threshold = 2\norder_threshold = 2\npermit_threshold = 1\n"
        'witness_threshold = 1\nmax_sunset_days = 30\nexpires = "2027-12-31T00:00:00Z"\n'
        'log_origin = "gov.test/log"\nlog_vkey = "keys/log.vkey"\n'
        'operator_keys = ["keys/operator.pub.json"]\n'
        + parties
        + '[[permit_authority]]\nname = "a1"\nkey = "keys/a1.pub.json"\n'
        + '[[witnesses]]\nvkey = "keys/w1.cosign.vkey"\n'
    )
    run(
        "gov",
        "init",
        "--repo",
        str(tmp_path / "repo"),
        "--agreement",
        str(tmp_path / "agreement.toml"),
    )
    return tmp_path


def test_init_writes_the_five_proposals(repo: Path) -> None:
    names = sorted(p.stem for p in (repo / "repo" / "proposals").iterdir())
    assert names == ["orders-1", "permits-1", "policies-1", "root-1", "targets-1"]
    again = run(
        "gov",
        "init",
        "--repo",
        str(repo / "repo"),
        "--agreement",
        str(repo / "agreement.toml"),
        code=EXIT_INPUT,
    )
    assert "reason: file.exists" in again  # proposals are never overwritten


def test_a_signer_uri_signs_like_a_key_file(repo: Path) -> None:
    output = run(
        "gov",
        "sign",
        "--repo",
        str(repo / "repo"),
        "--proposal",
        "root-1",
        "--signer-uri",
        f"file2:{repo / 'keys' / 'p1.key'}",
        "--public-key",
        str(repo / "keys" / "p1.pub.json"),
    )
    assert "1 of 2 signed" in output
    assert "signed: p1" in output


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("--key", "keys/p1.key", "--signer-uri", "file2:x"), "cli.signer_ambiguous"),
        ((), "cli.signer_ambiguous"),
        (("--signer-uri", "file2:keys/p1.key"), "cli.signer_ambiguous"),
        (
            ("--signer-uri", "nope:thing", "--public-key", "keys/p1.pub.json"),
            "cli.signer_unavailable",
        ),
    ],
)
def test_signer_choice_refusals(
    repo: Path, args: tuple[str, ...], reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    output = run("gov", "sign", "--repo", "repo", "--proposal", "root-1", *args, code=EXIT_INPUT)
    assert f"reason: {reason}" in output


def test_publish_without_quorum_and_bad_names(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    db = str(repo / "log.db")
    run("log", "init", "--db", db, "--origin", "gov.test/log")
    run("gov", "sign", "--repo", "repo", "--proposal", "root-1", "--key", "keys/p1.key")
    output = run(
        "gov",
        "publish",
        "--repo",
        "repo",
        "--proposal",
        "root-1",
        "--operator-key",
        "keys/operator.key",
        "--db",
        db,
        code=EXIT_TRUST,
    )
    assert "governance.quorum_not_met" in output
    assert "cli.proposal_name_invalid" in run(
        "gov", "status", "--repo", "repo", "--proposal", "../etc", code=EXIT_INPUT
    )


def test_bad_client_state_is_named(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    (repo / "state.json").write_text(json.dumps({"versions": "x"}))
    (repo / "evidence.json").write_text("{}")
    output = run(
        "gov",
        "view",
        "--repo",
        "repo",
        "--trusted-root",
        "keys/p1.pub.json",
        "--evidence",
        "evidence.json",
        "--state",
        "state.json",
        code=EXIT_INPUT,
    )
    assert "cli.client_state_invalid" in output


def test_bad_agreement_files_name_the_field(repo: Path) -> None:
    text = (repo / "agreement.toml").read_text()
    (repo / "bad.toml").write_text(text.replace("order_threshold", "order_thresold"))
    output = run(
        "gov",
        "init",
        "--repo",
        str(repo / "other"),
        "--agreement",
        str(repo / "bad.toml"),
        code=EXIT_INPUT,
    )
    assert "agreement.order_thresold" in output
    (repo / "bad2.toml").write_text(text.replace("witness_threshold = 1", "witness_threshold = 2"))
    output = run(
        "gov",
        "init",
        "--repo",
        str(repo / "other2"),
        "--agreement",
        str(repo / "bad2.toml"),
        code=EXIT_INPUT,
    )
    assert "agreement.threshold_invalid" in output


@pytest.mark.parametrize(
    ("replace_from", "replace_to", "reason", "named"),
    [
        (
            "witness_threshold = 1\n",
            'witness_threshold = 1\nwitnesses = "x"\n',
            "agreement.unknown_field",
            "witnesses",
        ),
        (
            "max_sunset_days = 30",
            'max_sunset_days = "30"',
            "agreement.field_invalid",
            "max_sunset_days",
        ),
        (
            "max_sunset_days = 30",
            "max_sunset_days = 1000000000",
            "agreement.sunset_invalid",
            "max_sunset_days",
        ),
        (
            'operator_keys = ["keys/operator.pub.json"]',
            'operator_keys = "keys/operator.pub.json"',
            "agreement.field_invalid",
            "operator_keys",
        ),
        ('log_origin = "gov.test/log"', "log_origin = 7", "agreement.field_invalid", "log_origin"),
        (
            "policy_threshold = 2",
            "policy_threshold = true",
            "agreement.field_invalid",
            "policy_threshold",
        ),
        (
            '[[witnesses]]\nvkey = "keys/w1.cosign.vkey"\n',
            '[[witnesses]]\nvkey = "keys/w1.cosign.vkey"\nname = {a = 1}\ncolour = "red"\n',
            "agreement.field_invalid",
            "witnesses[0]",
        ),
        ("[agreement]\n", "agreement = 1\n[other]\n", "agreement.field_invalid", "[agreement]"),
    ],
)
def test_wrongly_typed_agreement_values_are_named(
    repo: Path, replace_from: str, replace_to: str, reason: str, named: str
) -> None:
    text = (repo / "agreement.toml").read_text()
    assert replace_from in text
    (repo / "bad.toml").write_text(text.replace(replace_from, replace_to, 1))
    output = run(
        "gov",
        "init",
        "--repo",
        str(repo / "x"),
        "--agreement",
        str(repo / "bad.toml"),
        code=EXIT_INPUT,
    )
    assert f"reason: {reason}" in output
    assert named in output
    assert "Traceback" not in output


def test_deeply_nested_proposal_and_evidence_are_refused(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    (repo / "repo" / "proposals" / "deep.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    output = run("gov", "status", "--repo", "repo", "--proposal", "deep", code=EXIT_INPUT)
    assert "reason: json.too_deep" in output
    (repo / "evidence.json").write_bytes(b'{"a": ' * 1000 + b"1" + b"}" * 1000)
    output = run(
        "gov",
        "view",
        "--repo",
        "repo",
        "--trusted-root",
        "keys/p1.pub.json",
        "--evidence",
        "evidence.json",
        code=EXIT_INPUT,
    )
    assert "reason: json.too_deep" in output
    missing = run(
        "gov",
        "timestamp",
        "--repo",
        "nowhere",
        "--operator-key",
        "keys/operator.key",
        "--db",
        "x.db",
        code=EXIT_INPUT,
    )
    assert "reason: file.not_found" in missing
