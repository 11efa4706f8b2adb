"""Registry fixtures: a registry on SQLite and on PostgreSQL, served over real HTTP on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn

from brakepedal.crypto.keys import CryptoSigner, generate_ed25519
from brakepedal.model.types import DeviceId, EntityId
from brakepedal.registry.app import create_app
from brakepedal.registry.devices import build_enrolment
from brakepedal.registry.service import Registry, RegistryConfig
from brakepedal.tlog.cosignature import Cosigner
from brakepedal.tlog.note import NoteSigner
from brakepedal.wire.minute import Sample, summarise_minute
from brakepedal.wire.report import GENESIS_PREVIOUS, Attribution, build_report, sign_report

ORIGIN = "brakepedal.test/registry"
ACCELERATOR = "nvidia-h100-sxm5-80gb"
LOG_SIGNER = NoteSigner(ORIGIN, generate_ed25519())
WITNESS = Cosigner("witness.test/w1", generate_ed25519())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def registry_url(request: pytest.FixtureRequest) -> str:
    """A fresh database of each kind: every registry test runs on both."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


def make_registry(url: str, **overrides: Any) -> Registry:
    settings: dict[str, Any] = {
        "url": url,
        "origin": ORIGIN,
        "log_signer": LOG_SIGNER,
        "allow_software_keys": True,
        "witnesses": [WITNESS.verifier()],
    }
    return Registry(RegistryConfig(**(settings | overrides)))


@pytest.fixture
def registry(registry_url: str) -> Iterator[Registry]:
    opened = make_registry(registry_url)
    yield opened
    opened.close()


def loopback_socket() -> socket.socket:
    """A TCP socket bound to a free loopback port and not listening yet.

    Connections to it are refused until a :class:`Server` serves on it, and no other test (nor
    another pytest-xdist worker) can take the port in between.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


class Server:
    """uvicorn serving a registry on a loopback port, in a thread of this process."""

    def __init__(self, registry: Registry, sock: socket.socket | None = None) -> None:
        if sock is None:
            sock = loopback_socket()
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            create_app(registry), host="127.0.0.1", port=self.port, log_level="error"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def stop(self) -> None:
        self.client.close()
        self._server.should_exit = True
        self._thread.join(10)


@pytest.fixture
def server(registry: Registry) -> Iterator[Server]:
    running = Server(registry)
    yield running
    running.stop()


T0 = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)


@dataclass
class Device:
    """A simulated device that builds, chains and signs its own reports."""

    name: str
    signer: CryptoSigner = field(default_factory=generate_ed25519)
    accelerator: str = ACCELERATOR
    sequence: int = 0
    previous: str = GENESIS_PREVIOUS
    start: datetime = T0

    @property
    def id(self) -> DeviceId:
        return DeviceId(self.name)

    def enrolment(self, *, operator: str = "lab-a", chain: Sequence[bytes] = ()) -> bytes:
        return build_enrolment(
            self.signer,
            device=self.id,
            accelerator=self.accelerator,
            operator=EntityId(operator),
            site=None,
            chain=chain,
            at=datetime.now(UTC),
        )

    def report(
        self, *, minutes: int = 5, power: float = 400.0, advance: bool = True, **changes: Any
    ) -> bytes:
        """The next report, signed; ``changes`` override built fields before signing."""
        start = changes.pop("window_start", self.start)
        signer = changes.pop("signer", self.signer)
        records = [
            summarise_minute(
                self.id,
                start + timedelta(minutes=m),
                [
                    Sample(
                        time=start + timedelta(minutes=m, seconds=s),
                        power_w=power,
                        energy_mj=int(power * 1000 * s),
                        utilisation=95,
                        memory_used_bytes=2**30,
                        sm_clock_mhz=1700,
                    )
                    for s in range(0, 60, 10)
                ],
            )
            for m in range(minutes)
        ]
        report = build_report(
            device=self.id,
            accelerator=self.accelerator,
            sequence=changes.pop("sequence", self.sequence),
            previous=changes.pop("previous", self.previous),
            window_start=start,
            window_end=start + timedelta(minutes=minutes),
            minutes=records,
            attribution=Attribution(),
            governance=None,
        )
        if changes:
            report = msgspec.structs.replace(report, **changes)
        envelope = sign_report(report, signer)
        if advance:
            self.sequence = report.sequence + 1
            self.previous = report.digest()
            self.start = report.window_end
        self.last_minutes = records
        return envelope


def batch(*envelopes: bytes) -> bytes:
    return json.dumps({"reports": [json.loads(e) for e in envelopes]}).encode()


Post = Callable[[bytes], httpx.Response]


def software_enrolments(identities: Sequence[Any], operator: str = "lab-a") -> list[bytes]:
    """Enrolment envelopes without a chain for an agent's device identities."""
    return [
        build_enrolment(
            identity.signer,
            device=identity.device,
            accelerator=identity.accelerator,
            operator=EntityId(operator),
            site=None,
            chain=[],
            at=datetime.now(UTC),
        )
        for identity in identities
    ]
