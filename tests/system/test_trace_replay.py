"""The real traces in ../shared/data, replayed through the whole pipeline.

Each nvidia-smi log drives simulated devices (one per GPU in the log) through the agent's
collector (minute records, signed chained reports, the spool), delivery over HTTP, and the
registry (SQLite and PostgreSQL). Every report must be accepted, and the energy the registry
holds must be the energy of the trace. Skipped where the shared data is absent; the traces
are read in place, never copied.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from brakepedal.accounting.catalogue import default_catalogue
from brakepedal.agent.collector import Collector
from brakepedal.agent.delivery import Deliverer, RegistryClient
from brakepedal.agent.identity import load_or_create_identities
from brakepedal.agent.spool import Spool
from brakepedal.agent.telemetry import SimulatedBackend
from brakepedal.agent.traces import read_nvidia_smi_csv
from brakepedal.registry.service import Registry
from tests.unit.registry.conftest import Server, software_enrolments

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TRACES = {
    "telemetry_h100_training_wilkins/ckpt100.csv.gz": "nvidia-h100-sxm5-80gb",
    "telemetry_h100_training_wilkins/power-trace_2025-07-26-23-32-09.csv.gz": (
        "nvidia-h100-sxm5-80gb"
    ),
    "telemetry_a100_inference_wilkins/llama2-70b_nvidia-smi.csv.gz": "nvidia-a100-sxm4-80-gb",
    "telemetry_a100_inference_wilkins/mixtral-8x7b_nvidia-smi.csv.gz": "nvidia-a100-sxm4-80-gb",
    "telemetry_h100_inference_powertrace_sim/h100_qwen3-8b_vllm_tp1_r4p0_power.csv": (
        "nvidia-h100-sxm5-80gb"
    ),
}
SECONDS = 600  # ten minutes of each log
START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"no shared data at {SHARED_DATA}"),
]


@pytest.mark.parametrize("name", sorted(TRACES))
def test_real_trace_replays_through_agent_and_registry(
    tmp_path: Path, registry: Registry, server: Server, name: str
) -> None:
    traces = read_nvidia_smi_csv(SHARED_DATA / name)
    spec = default_catalogue().get(TRACES[name])
    backend = SimulatedBackend(spec, traces, start=START, seed=zlib.crc32(name.encode()))
    identities = load_or_create_identities(tmp_path / "state", backend.devices())
    spool = Spool(tmp_path / "state" / "spool.sqlite3")
    client = RegistryClient(server.url)
    for envelope in software_enrolments(identities):
        client.enrol(envelope)
    collector = Collector(backend, spool, identities, window=timedelta(minutes=1))
    seconds = min(SECONDS, *(len(t) for t in traces))
    for second in range(seconds):
        collector.tick(START + timedelta(seconds=second))
    collector.flush(START + timedelta(seconds=seconds - 1))
    deliverer = Deliverer(spool, client)
    stored = deliverer.drain()
    client.close()
    spooled, delivered = spool.counts()
    assert deliverer.stats.rejected == 0, deliverer.stats.reasons
    assert stored == spooled == delivered
    assert registry.counts()["reports"] == spooled
    for identity, trace in zip(identities, traces, strict=True):
        usage = registry.device_usage(identity.device, start=START, end=START + timedelta(hours=1))[
            "reports"
        ]
        energy_j = sum(r["energy_mj"] for r in usage) / 1000
        # The counter is integrated from the first sample on: seconds 1 .. seconds-1.
        expected_j = float(np.rint(trace.power_w[: seconds - 1] * 1000).sum()) / 1000
        assert energy_j == pytest.approx(expected_j, rel=0.01, abs=1.0)
        assert sum(r["busy_ms"] for r in usage) <= seconds * 1000 + 60_000
    spool.close()
