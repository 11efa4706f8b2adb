"""Real processes for system tests: a registry and agents, started, killed and restarted.

Everything runs as ``python -m brakepedal ...`` child processes talking HTTP on loopback;
``kill()`` is SIGKILL, so nothing gets to clean up.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import httpx
from sqlalchemy import create_engine, select

from brakepedal.agent.spool import Spool
from brakepedal.crypto.dsse import parse_envelope
from brakepedal.crypto.keys import generate_ed25519, private_key_to_pem
from brakepedal.registry.schema import reports
from brakepedal.tlog.checkpoint import open_checkpoint
from brakepedal.tlog.merkle import leaf_hash
from brakepedal.tlog.note import NoteSigner
from brakepedal.tlog.proof import InclusionProof, parse_proof
from brakepedal.wire.endorsement import Manufacturer
from brakepedal.wire.report_format import parse_report

ORIGIN = "brakepedal.test/system"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "brakepedal", *args]


@dataclass
class RegistryProcess:
    """``brakepedal registry serve`` on a fixed loopback port, restartable on the same data."""

    workdir: Path
    db_url: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        signer = generate_ed25519()
        self.log_key = self.workdir / "log.key"
        self.log_key.write_bytes(private_key_to_pem(signer))
        self.verifier = NoteSigner(ORIGIN, signer).verifier()
        ca = Manufacturer.generate("Simulated Co", now=datetime.now(UTC) - timedelta(days=1))
        self.ca_bundle = self.workdir / "ca.pem"
        self.ca_bundle.write_bytes(ca.to_pem())
        self.root = self.workdir / "root.pem"
        self.root.write_bytes(ca.root_pem)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with (self.workdir / "registry.log").open("ab") as log:
            self.process = self._spawn(log)
        self._wait_until_up()

    def _spawn(self, log: BinaryIO) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            _cli(
                "registry",
                "serve",
                "--db",
                self.db_url,
                "--origin",
                ORIGIN,
                "--log-key",
                str(self.log_key),
                "--manufacturer-root",
                str(self.root),
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ),
            stdout=log,
            stderr=log,
        )

    def _wait_until_up(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"registry exited: {(self.workdir / 'registry.log').read_text()}"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("registry did not come up")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


@dataclass
class AgentProcess:
    """``brakepedal agent run`` with simulated GPUs on an accelerated clock."""

    state: Path
    registry: RegistryProcess
    operator: str
    start_at: datetime
    speed: float = 60.0
    devices: int = 8
    window_minutes: int = 1
    seed: int = 0
    extra: Sequence[str] = ()
    process: subprocess.Popen[bytes] | None = None
    started: datetime | None = None

    def start(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        # The simulated clock continues where real time has carried it since the first start.
        if self.started is None:
            self.started = datetime.now(UTC)
        elapsed = (datetime.now(UTC) - self.started) * self.speed
        clock = (self.start_at + elapsed).strftime("%Y-%m-%dT%H:%M:%SZ")
        with (self.state / "agent.log").open("ab") as log:
            self.process = self._spawn(log, clock)

    def _spawn(self, log: BinaryIO, clock: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            _cli(
                "agent",
                "run",
                "--registry",
                self.registry.url,
                "--state",
                str(self.state),
                "--operator",
                self.operator,
                "--manufacturer",
                str(self.registry.ca_bundle),
                "--devices",
                str(self.devices),
                "--start",
                clock,
                "--speed",
                str(self.speed),
                "--retry-cap-seconds",
                "2",
                "--window-minutes",
                str(self.window_minutes),
                "--seed",
                str(self.seed),
                *self.extra,
            ),
            stdout=log,
            stderr=log,
            env=os.environ | {"PYTHONUNBUFFERED": "1"},
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> int:
        """SIGTERM: the agent stops its loops and delivers what it can; its exit status."""
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(90)

    def log_text(self) -> str:
        return (self.state / "agent.log").read_text(errors="replace")


@dataclass(frozen=True)
class Produced:
    device: str
    sequence: int
    digest: str
    envelope: bytes


def produced(state: Path) -> list[Produced]:
    """Every report an agent's spool holds (the reports it produced)."""
    spool = Spool(state / "spool.sqlite3")
    try:
        rows = spool._db.execute(
            "SELECT device, sequence, digest, envelope FROM reports ORDER BY device, sequence"
        ).fetchall()
    finally:
        spool.close()
    return [Produced(str(r[0]), int(r[1]), str(r[2]), bytes(r[3])) for r in rows]


def stored(db_url: str) -> dict[tuple[str, int], tuple[str, int]]:
    """(device, sequence) -> (digest, log index) as the registry stored them."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(reports.c.device, reports.c.sequence, reports.c.digest, reports.c.log_index)
            ).all()
    finally:
        engine.dispose()
    return {(str(r[0]), int(r[1])): (str(r[2]), int(r[3])) for r in rows}


def check_exactly_once(db_url: str, states: Sequence[Path]) -> list[Produced]:
    """Every report produced is stored once, with its digest; chains have no hole; nothing
    else is stored. Returns everything produced."""
    everything = [p for state in states for p in produced(state)]
    registry = stored(db_url)
    assert len(registry) == len(everything), (len(registry), len(everything))
    for p in everything:
        assert registry[(p.device, p.sequence)][0] == p.digest, p
    by_device: dict[str, list[int]] = {}
    for p in everything:
        by_device.setdefault(p.device, []).append(p.sequence)
    for device, sequences in by_device.items():
        assert sorted(sequences) == list(range(len(sequences))), device
    indices = [index for _, index in registry.values()]
    assert len(set(indices)) == len(indices)
    return everything


def check_inclusion(registry: RegistryProcess, everything: Sequence[Produced]) -> int:
    """Each report's inclusion proof verifies with the foundations' verifier."""
    client = httpx.Client(base_url=registry.url, timeout=30)
    try:
        note = client.get("/v1/log/checkpoint").content
        checkpoint = open_checkpoint(note, registry.verifier, origin=ORIGIN).checkpoint
        index_of = stored(registry.db_url)
        for p in everything:
            index = index_of[(p.device, p.sequence)][1]
            proof = parse_proof(
                client.get(
                    "/v1/log/proof/inclusion", params={"index": index, "size": checkpoint.size}
                ).content
            )
            assert isinstance(proof, InclusionProof)
            assert proof.leaf_hash == leaf_hash(p.envelope)
            proof.verify(checkpoint.root_hash)
    finally:
        client.close()
    return len(everything)


def windows(state: Path) -> dict[str, list[tuple[datetime, datetime]]]:
    """Each device's report windows, in sequence order."""
    result: dict[str, list[tuple[datetime, datetime]]] = {}
    for p in produced(state):
        report = parse_report(parse_envelope(p.envelope).payload)
        result.setdefault(p.device, []).append((report.window_start, report.window_end))
    return result
