"""Delivery and the run loop, in process, against a real registry over loopback HTTP."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from brakepedal.accounting.catalogue import default_catalogue
from brakepedal.agent.delivery import Deliverer, RegistryClient, answer_challenges
from brakepedal.agent.identity import load_or_create_identities
from brakepedal.agent.runner import Agent, Clock
from brakepedal.agent.spool import RetryPolicy, Spool
from brakepedal.agent.telemetry import SimulatedBackend
from brakepedal.errors import InputError, TransportError
from brakepedal.registry.service import Registry
from tests.unit.registry.conftest import (
    ACCELERATOR,
    Server,
    loopback_socket,
    make_registry,
    software_enrolments,
)

START = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)


@pytest.fixture
def registry(sqlite_url: str) -> Iterator[Registry]:
    opened = make_registry(sqlite_url)
    yield opened
    opened.close()


@pytest.fixture
def server(registry: Registry) -> Iterator[Server]:
    running = Server(registry)
    yield running
    running.stop()


def _agent(tmp_path: Path, url: str, *, speed: float = 600.0, **kwargs: object) -> Agent:
    spec = default_catalogue().get(ACCELERATOR)
    backend = SimulatedBackend.synthetic(spec, "training", devices=2, start=START, seed=7)
    identities = load_or_create_identities(tmp_path / "state", backend.devices())
    spool_path = tmp_path / "state" / "spool.sqlite3"
    return Agent(
        backend=backend,
        spool=Spool(spool_path),
        deliver_spool=Spool(spool_path),
        identities=identities,
        client=RegistryClient(url, timeout=5),
        clock=Clock(START, speed),
        window=timedelta(minutes=1),
        deliver_every=0.05,
        challenge_every=0.05,
        retry=RetryPolicy(base=timedelta(milliseconds=50), cap=timedelta(milliseconds=200)),
        **kwargs,  # type: ignore[arg-type]
    )


def _enrol(agent: Agent) -> None:
    agent.enrol(software_enrolments(agent.identities))


def test_agent_runs_delivers_and_answers_challenges(
    tmp_path: Path, registry: Registry, server: Server
) -> None:
    agent = _agent(tmp_path, server.url)
    _enrol(agent)
    agent.start()
    agent.wait(2.0)
    token = registry.add_credential("auditor", "auditor")
    device = agent.identities[0].device
    number = server.client.post(
        "/v1/challenges",
        json={"device": device, "sequence": 0},
        headers={"Authorization": f"Bearer {token}"},
    ).json()["id"]
    agent.wait(1.0)
    agent.stop()
    agent.client.close()
    spooled, delivered = agent.spool.counts()
    assert spooled >= 2 * 10
    assert delivered == spooled
    assert registry.counts()["reports"] == spooled
    answered = server.client.get(
        f"/v1/challenges/{number}", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert answered["answered_at"] is not None
    assert len(answered["minutes"]) == 1
    assert agent.stats.ticks > 0


def test_outage_backs_off_then_delivers_everything(tmp_path: Path, sqlite_url: str) -> None:
    # The registry's port is held from the start, and refuses connections until it serves.
    with loopback_socket() as listener:
        agent = _agent(tmp_path, f"http://127.0.0.1:{listener.getsockname()[1]}")
        agent.start()
        agent.wait(1.0)  # the registry is not there: reports pile up in the spool
        assert agent.stats.unreachable > 0
        assert agent.deliverer.stats.unreachable > 0
        spooled, delivered = agent.deliver_spool.counts()
        assert spooled > 0
        assert delivered == 0
        registry = make_registry(sqlite_url)
        server = Server(registry, listener)  # the registry comes up on the address the agent uses
        try:
            _enrol(agent)
            agent.wait(1.5)
            agent.stop()
            agent.client.close()
            spooled, delivered = agent.spool.counts()
            assert delivered == spooled
            assert registry.counts()["reports"] == spooled
        finally:
            server.stop()
            registry.close()


def test_deliverer_resends_as_duplicates_and_keeps_rejected(
    tmp_path: Path, registry: Registry, server: Server
) -> None:
    agent = _agent(tmp_path, server.url, speed=3000.0)
    _enrol(agent)
    for second in range(200):
        agent.collector.tick(START + timedelta(seconds=second))
    # Another deliverer on a copy of the spool sends first: ours then sees duplicates.
    first = Deliverer(agent.deliver_spool, agent.client, rng=random.Random(1))
    stored = first.drain()
    assert stored > 0
    agent.deliver_spool._db.execute("UPDATE reports SET delivered_us = NULL")
    again = Deliverer(agent.deliver_spool, agent.client, rng=random.Random(1))
    assert again.drain() == stored
    assert again.stats.duplicate == stored
    assert again.stats.accepted == 0
    # A device the registry never enrolled: rejected, kept in the spool with a backoff.
    stranger = Spool(tmp_path / "other.sqlite3")
    stranger.append(agent.identities[0].device, 999, "ab" * 32, b"{}", at=datetime.now(UTC))
    odd = Deliverer(stranger, agent.client, rng=random.Random(1))
    assert odd.deliver() == 0
    assert odd.stats.rejected == 1
    assert stranger.counts() == (1, 0)
    assert answer_challenges(agent.deliver_spool, agent.client, []) == 0
    agent.client.close()


def test_client_names_refusals_and_unreachable(tmp_path: Path, server: Server) -> None:
    client = RegistryClient(server.url)
    with pytest.raises(InputError) as refused:
        client.enrol(b"{}")
    assert refused.value.reason.startswith("envelope.")
    dead = RegistryClient("http://127.0.0.1:9", timeout=0.5)
    with pytest.raises(TransportError) as unreachable:
        dead.checkpoint()
    assert unreachable.value.reason == "delivery.unreachable"
    failing = RegistryClient(
        "http://registry.test",
        transport=httpx.MockTransport(lambda _request: httpx.Response(503)),
    )
    with pytest.raises(TransportError):
        failing.submit([b"{}"])
    with pytest.raises(InputError, match="batch size"):
        Deliverer(Spool(tmp_path / "spool.sqlite3"), client, batch=0)
    client.close()
    dead.close()
    failing.close()


def test_clock_runs_fast_from_its_start() -> None:
    clock = Clock(START, 1000.0)
    assert START <= clock.now() < START + timedelta(minutes=5)
    with pytest.raises(InputError):
        Clock(START, 0.0)
