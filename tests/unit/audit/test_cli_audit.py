"""``brakepedal audit run`` and ``audit export`` against a registry on loopback."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from brakepedal.cli import build_app
from brakepedal.crypto.keys import generate_ed25519, private_key_to_pem
from brakepedal.model.types import format_utc
from brakepedal.wire.endorsement import Manufacturer
from tests.unit.audit.conftest import World, quiet
from tests.unit.registry.conftest import LOG_SIGNER, ORIGIN, WITNESS

RUNNER = CliRunner()


def _audit(world: World, tmp_path: Path, *extra: str) -> tuple[int, str]:
    result = RUNNER.invoke(
        build_app("audit"),
        [
            "audit",
            "run",
            "--state",
            str(tmp_path / "state"),
            "--origin",
            ORIGIN,
            "--log-key",
            LOG_SIGNER.verifier().to_vkey(),
            "--witness",
            WITNESS.verifier().to_vkey(),
            *extra,
        ],
        env={"BRAKEPEDAL_AUDIT_TOKEN": world.token, "COLUMNS": "200"},
    )
    return result.exit_code, result.output


def test_audit_run_prints_findings_and_exits_by_severity(world: World, tmp_path: Path) -> None:
    world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=2)
    world.witness()
    key = tmp_path / "auditor.key"
    key.write_bytes(private_key_to_pem(generate_ed25519()))
    code, output = _audit(
        world,
        tmp_path,
        "--registry",
        world.server.url,
        "--at",
        format_utc(quiet(world).replace(microsecond=0)),
        "--key",
        str(key),
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 0, output
    assert "no findings" in output
    assert (tmp_path / "out" / "findings.dsse.json").is_file()
    later = format_utc((quiet(world) + timedelta(hours=2)).replace(microsecond=0))
    code, output = _audit(world, tmp_path, "--registry", world.server.url, "--at", later)
    assert code == 5, output  # a high finding
    assert "device.silent" in output


def test_audit_export_then_audit_the_bundle_offline(world: World, tmp_path: Path) -> None:
    world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=2)
    day = (quiet(world) - timedelta(minutes=5)).date().isoformat()
    exported = RUNNER.invoke(
        build_app("audit"),
        [
            "audit",
            "export",
            "--registry",
            world.server.url,
            "--out",
            str(tmp_path / "b"),
            "--day",
            day,
        ],
        env={"BRAKEPEDAL_AUDIT_TOKEN": world.token},
    )
    assert exported.exit_code == 0, exported.output
    at = format_utc(quiet(world).replace(microsecond=0))
    code, output = _audit(
        world, tmp_path, "--bundle", str(tmp_path / "b"), "--at", at, "--out", str(tmp_path / "o")
    )
    assert code == 0, output
    written = json.loads((tmp_path / "o" / "findings.json").read_text())
    assert written["findings"] == []
    assert written["tree_size"] == world.registry.store.size()


def test_audit_run_needs_exactly_one_source(world: World, tmp_path: Path) -> None:
    code, output = _audit(world, tmp_path)
    assert code == 2
    assert "audit.source_invalid" in output


def test_audit_report_shows_the_findings_with_their_evidence(world: World, tmp_path: Path) -> None:
    world.enrol("gpu-0", "lab-a")
    world.enrol("gpu-1", "lab-b")
    world.report_all(rounds=2)
    later = format_utc((quiet(world) + timedelta(hours=2)).replace(microsecond=0))
    code, _ = _audit(world, tmp_path, "--registry", world.server.url, "--at", later)
    assert code == 5
    result = RUNNER.invoke(
        build_app("audit"),
        ["audit", "report", "--state", str(tmp_path / "state"), "--out", str(tmp_path / "r")],
    )
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r" / "report.html").read_text()
    assert page.count('class="finding"') == 2
    assert "device.silent" in page
    assert page.count("data:image/png;base64,") == 3
    document = json.loads((tmp_path / "r" / "report.json").read_text())
    assert {f["subject"] for f in document["findings"]} == {"device:gpu-0", "device:gpu-1"}
    assert set(document["compute"]) == {"lab-a", "lab-b"}


def test_audit_report_needs_a_state(tmp_path: Path) -> None:
    result = RUNNER.invoke(
        build_app("audit"),
        ["audit", "report", "--state", str(tmp_path / "none"), "--out", str(tmp_path / "r")],
    )
    assert result.exit_code == 2
    assert "audit.state_missing" in result.output


def test_audit_challenge_opens_a_sample_and_states_its_odds(world: World, tmp_path: Path) -> None:
    world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=4)
    at = format_utc(quiet(world).replace(microsecond=0))
    code, output = _audit(world, tmp_path, "--registry", world.server.url, "--at", at)
    assert code == 0, output
    result = RUNNER.invoke(
        build_app("audit"),
        [
            "audit",
            "challenge",
            "--state",
            str(tmp_path / "state"),
            "--registry",
            world.server.url,
            "--budget",
            "2",
            "--fraction",
            "0.05",
            "--at",
            at,
        ],
        env={"BRAKEPEDAL_AUDIT_TOKEN": world.token, "COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "2 of 4 reports" in result.output
    assert "P(caught) = 1 - (1 - 0.05)^2 = 0.0975" in result.output
    assert result.output.count("challenge ") == 2


def test_a_witness_threshold_above_the_witnesses_given_is_refused(
    world: World, tmp_path: Path
) -> None:
    code, output = _audit(
        world, tmp_path, "--registry", world.server.url, "--witness-threshold", "2"
    )
    assert code == 2
    assert "audit.witness_threshold_invalid" in output


def test_audit_run_verifies_chains_under_the_roots_it_is_given(
    world: World, tmp_path: Path
) -> None:
    """A software key is a medium finding (exit 0); the root file is read and used."""
    world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=1)
    yesterday = datetime.now(UTC) - timedelta(days=1)
    ca, other = (Manufacturer.generate(name, now=yesterday) for name in ("Co A", "Co B"))
    root = tmp_path / "roots.pem"  # a bundle of two roots
    root.write_bytes(ca.root_pem + b"\n" + other.root_pem)
    at = format_utc(quiet(world).replace(microsecond=0))
    url = world.server.url
    code, output = _audit(
        world, tmp_path, "--registry", url, "--at", at, "--manufacturer-root", str(root)
    )
    assert code == 0, output
    assert "device.unendorsed" in output
    missing = str(tmp_path / "no")
    code, output = _audit(world, tmp_path, "--registry", url, "--manufacturer-root", missing)
    assert code != 0
    assert "file.not_found" in output
    junk = tmp_path / "junk.pem"
    junk.write_bytes(ca.root_pem + b"\nnot a certificate\n")
    code, output = _audit(world, tmp_path, "--registry", url, "--manufacturer-root", str(junk))
    assert code != 0
    assert "roots.invalid" in output
    assert "junk.pem" in output
