"""``brakepedal registry`` and ``brakepedal agent`` commands, in process."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brakepedal.cli import app
from brakepedal.cli.output import EXIT_INPUT
from brakepedal.cli.registry import open_registry
from brakepedal.crypto.keys import generate_ed25519, private_key_to_pem
from brakepedal.registry.service import Registry
from tests.unit.registry.conftest import Server

runner = CliRunner()
ORIGIN = "cli.brakepedal.test/registry"


@pytest.fixture
def setup(tmp_path: Path) -> Path:
    (tmp_path / "log.key").write_bytes(private_key_to_pem(generate_ed25519()))
    result = runner.invoke(app, ["registry", "manufacturer", "--out", str(tmp_path / "ca")])
    assert result.exit_code == 0, result.output
    return tmp_path


@pytest.fixture
def registry(setup: Path) -> Iterator[Registry]:
    opened = open_registry(
        str(setup / "r.db"),
        ORIGIN,
        setup / "log.key",
        roots=[setup / "ca" / "root.pem"],
        max_batch=100,
    )
    yield opened
    opened.close()


def test_migrate_and_credentials(setup: Path) -> None:
    db = str(setup / "r.db")
    assert runner.invoke(app, ["registry", "migrate", "--db", db]).exit_code == 0
    common = ["--db", db, "--origin", ORIGIN, "--log-key", str(setup / "log.key")]
    issued = runner.invoke(app, ["registry", "credential", *common, "--name", "aud-1"])
    assert issued.exit_code == 0, issued.output
    assert issued.stdout.startswith("bp_")
    again = runner.invoke(app, ["registry", "credential", *common, "--name", "aud-1"])
    assert again.exit_code == EXIT_INPUT
    assert "registry.credential_exists" in again.output
    bad_role = runner.invoke(
        app, ["registry", "credential", *common, "--name", "x", "--role", "king"]
    )
    assert bad_role.exit_code == EXIT_INPUT


def test_agent_run_enrols_with_the_manufacturer_and_delivers(
    setup: Path, registry: Registry
) -> None:
    server = Server(registry)
    try:
        start = datetime.now(UTC) - timedelta(hours=1)
        result = runner.invoke(
            app,
            [
                "agent",
                "run",
                "--registry",
                server.url,
                "--state",
                str(setup / "agent"),
                "--operator",
                "lab-a",
                "--site",
                "site-1",
                "--devices",
                "2",
                "--manufacturer",
                str(setup / "ca" / "ca.pem"),
                "--start",
                start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "--speed",
                "300",
                "--window-minutes",
                "1",
                "--duration",
                "1.5",
                "--retry-cap-seconds",
                "1",
            ],
        )
        assert result.exit_code == 0, result.output
        assert "delivered" in result.output
        counts = registry.counts()
        assert counts["devices"] == 2
        assert counts["reports"] > 0
        enrolled = [registry.device(d, private=False) for d in _devices(registry)]
        assert {(d["operator"], d["site"]) for d in enrolled} == {("lab-a", "site-1")}
        trust = {registry.device(d, private=False)["trust_level"] for d in _devices(registry)}
        assert trust == {"manufacturer"}
    finally:
        server.stop()


def _devices(registry: Registry) -> list[str]:
    from sqlalchemy import select  # noqa: PLC0415

    from brakepedal.registry.schema import devices  # noqa: PLC0415

    with registry.engine.connect() as conn:
        return [str(d) for d in conn.execute(select(devices.c.device)).scalars()]


def test_agent_run_refuses_an_unknown_backend(setup: Path) -> None:
    result = runner.invoke(
        app,
        [
            "agent",
            "run",
            "--registry",
            "http://127.0.0.1:9",
            "--state",
            str(setup / "a"),
            "--operator",
            "lab-a",
            "--backend",
            "quantum",
        ],
    )
    assert result.exit_code == EXIT_INPUT
    assert "agent.backend_unknown" in result.output
