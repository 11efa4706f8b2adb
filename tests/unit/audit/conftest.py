"""A real registry on loopback, devices that report through it, and an auditor of its log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from brakepedal.audit.auditor import AuditConfig, Auditor, AuditResult
from brakepedal.audit.source import RegistrySource
from brakepedal.audit.state import AuditState
from brakepedal.crypto.keys import generate_ed25519
from brakepedal.model.types import JobId
from brakepedal.registry.service import Registry
from brakepedal.tlog.note import Note
from tests.unit.registry.conftest import (
    LOG_SIGNER,
    ORIGIN,
    WITNESS,
    Device,
    Server,
    batch,
    make_registry,
)

AUDITOR_KEY = generate_ed25519()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def registry_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


class World:
    """A registry serving over HTTP, its devices, its witness, and an auditor with a state."""

    def __init__(self, url: str, state_dir: Path, **registry: Any) -> None:
        self.registry: Registry = make_registry(url, **registry)
        self.server = Server(self.registry)
        self.token = self.registry.add_credential("auditor-1", "auditor")
        self.devices: dict[str, Device] = {}
        self.state_dir = state_dir
        self.now = datetime.now(UTC)

    def close(self) -> None:
        self.server.stop()
        self.registry.close()

    def enrol(self, name: str, operator: str = "lab-a", **device: Any) -> Device:
        gpu = Device(name, **device)
        answer = self.server.client.post("/v1/devices", content=gpu.enrolment(operator=operator))
        assert answer.status_code == 200, answer.text
        self.devices[name] = gpu
        return gpu

    def post(self, *envelopes: bytes) -> list[dict[str, Any]]:
        answer = self.server.client.post("/v1/reports", content=batch(*envelopes))
        assert answer.status_code == 200, answer.text
        results: list[dict[str, Any]] = answer.json()["results"]
        return results

    def report_all(self, rounds: int = 3, job: str | None = "train-1", **changes: Any) -> None:
        """Every device reports ``rounds`` consecutive five-minute windows of ``job``."""
        for _ in range(rounds):
            results = self.post(
                *(
                    gpu.report(job=None if job is None else JobId(job), **changes)
                    for gpu in self.devices.values()
                )
            )
            assert all(r["status"] == "accepted" for r in results), results

    def witness(self) -> None:
        note = Note.from_bytes(self.server.client.get("/v1/log/checkpoint").content)
        line = WITNESS.cosign(note.text, int(self.now.timestamp()))
        own = Note(note.text, (*note.signatures, line)).to_bytes()
        answer = self.server.client.post("/v1/log/cosignatures", content=own)
        assert answer.status_code == 200, answer.text

    def config(self, **overrides: Any) -> AuditConfig:
        settings: dict[str, Any] = {
            "origin": ORIGIN,
            "log_key": LOG_SIGNER.verifier(),
            "witnesses": (WITNESS.verifier(),),
            "witness_threshold": 1,
            "signer": AUDITOR_KEY,
        }
        return AuditConfig(**(settings | overrides))

    def audit(self, at: datetime | None = None, **overrides: Any) -> AuditResult:
        state = AuditState(self.state_dir)
        source = RegistrySource(self.server.url, self.token)
        try:
            return Auditor(self.config(**overrides), state).run(source, at=at or self.now)
        finally:
            source.close()
            state.close()

    def challenge_statuses(self) -> list[str]:
        """The status of each challenge the auditor's state holds, in its order."""
        state = AuditState(self.state_dir)
        try:
            return [c.status for c in state.challenges()]
        finally:
            state.close()

    def latest_window_end(self) -> datetime:
        return max(gpu.start for gpu in self.devices.values())


@pytest.fixture
def world(registry_url: str, tmp_path: Path) -> Iterator[World]:
    opened = World(registry_url, tmp_path / "audit-state")
    yield opened
    opened.close()


def detectors(result: AuditResult) -> list[str]:
    return sorted(f.detector for f in result.findings)


def quiet(world: World) -> datetime:
    """An audit moment just after the last window: no device has been silent yet."""
    return world.latest_window_end() + timedelta(minutes=1)
