"""End to end over real HTTP on loopback: 3 agent processes x 8 simulated GPUs -> registry.

Then the faults: agents killed with SIGKILL at random moments, the registry killed while
agents deliver, and the registry down long enough for several windows to close. Afterwards
every report produced is stored exactly once, chains are continuous, and the agent that was
never killed has no gap in its windows. Both on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import itertools
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.system.harness import (
    AgentProcess,
    RegistryProcess,
    check_exactly_once,
    check_inclusion,
    windows,
)

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def _agents(tmp_path: Path, registry: RegistryProcess, count: int = 3) -> list[AgentProcess]:
    # Simulated time starts three hours back and runs 60x: one 1-minute window per second.
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    return [
        AgentProcess(
            tmp_path / f"agent-{n}", registry, operator=f"lab-{n}", start_at=start, seed=n + 1
        )
        for n in range(count)
    ]


def _wait_for_reports(agents: list[AgentProcess], seconds: float) -> None:
    time.sleep(seconds)
    for agent in agents:
        assert agent.process is not None
        assert agent.process.poll() is None, agent.log_text()


def test_three_agents_eight_gpus_end_to_end(tmp_path: Path, db_url: str) -> None:
    registry = RegistryProcess(tmp_path / "registry", db_url)
    registry.start()
    agents = _agents(tmp_path, registry)
    try:
        for agent in agents:
            agent.start()
        _wait_for_reports(agents, 12)
        for agent in agents:
            assert agent.stop() == 0, agent.log_text()
        everything = check_exactly_once(db_url, [a.state for a in agents])
        assert len({p.device for p in everything}) == 24
        assert len(everything) >= 24 * 5
        assert check_inclusion(registry, everything) == len(everything)
    finally:
        for agent in agents:
            if agent.process is not None and agent.process.poll() is None:
                agent.kill()
        registry.stop()


def test_kills_and_outage_lose_nothing_and_count_nothing_twice(tmp_path: Path, db_url: str) -> None:
    rng = random.Random(20261123)
    registry = RegistryProcess(tmp_path / "registry", db_url)
    registry.start()
    agents = _agents(tmp_path, registry)
    steady = agents[2]  # never killed: its windows must have no gap at all
    try:
        for agent in agents:
            agent.start()
        _wait_for_reports(agents, 2)
        # kill -9 the agents at random moments, twice each, restarting them each time.
        for _ in range(2):
            for agent in agents[:2]:
                time.sleep(rng.uniform(0.2, 1.5))
                agent.kill()
                agent.start()
        # kill -9 the registry while the agents deliver, and bring it back.
        time.sleep(rng.uniform(0.3, 1.0))
        registry.kill()
        time.sleep(1)
        registry.start()
        # Down long enough for several windows to close (5 s = 5 simulated minutes).
        time.sleep(1.5)
        registry.kill()
        time.sleep(5)
        registry.start()
        # Back with a backlog to deliver: kill it again in the middle of that.
        time.sleep(0.3)
        registry.kill()
        registry.start()
        _wait_for_reports(agents, 3)
        for agent in agents:
            assert agent.stop() == 0, agent.log_text()
        everything = check_exactly_once(db_url, [a.state for a in agents])
        assert len(everything) >= 24 * 10
        # Every report's proof is checked end to end above; here a random fifth of them.
        sample = rng.sample(everything, len(everything) // 5)
        assert check_inclusion(registry, sample) == len(sample)
        for device, spans in windows(steady.state).items():
            for (_, end), (start, _) in itertools.pairwise(spans):
                assert start == end, f"{device}: gap from {end} to {start}"
    finally:
        for agent in agents:
            if agent.process is not None and agent.process.poll() is None:
                agent.kill()
        registry.stop()
