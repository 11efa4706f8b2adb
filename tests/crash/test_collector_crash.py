"""Kill -9 a running collector at random moments: after every restart each device's chain is
continuous, no window overlaps another, every acknowledged report is in the spool, and every
report's stored minute records rebuild it exactly.

A kill can land anywhere: while the keys are being created (the first run is sometimes killed
before it says ``ready``), between samples, inside a minute's summary, during signing, or inside
the spool's transaction.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from brakepedal.agent.identity import load_or_create_identities
from brakepedal.agent.spool import Spool
from brakepedal.model.types import DeviceId
from brakepedal.wire.minute import parse_minute
from brakepedal.wire.report import open_report, verify_chain, verify_minutes
from tests.crash.collector_worker import backend

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
CYCLES = 8


def run_and_kill(state: Path, tmp_path: Path, rng: random.Random, cycle: int) -> str:
    stdout, stderr = tmp_path / f"worker{cycle}.out", tmp_path / f"worker{cycle}.err"
    seed = str(rng.randrange(2**32))
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.crash.collector_worker", str(state), "--seed", seed],
            stdout=out,
            stderr=err,
            cwd=REPO_ROOT,
        )
    deadline = time.monotonic() + 30
    while not stdout.read_text().startswith("ready\n") and cycle % 4 != 0:
        assert process.poll() is None, stderr.read_text()
        assert time.monotonic() < deadline, "collector worker did not start"
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.5))
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, stderr.read_text()
    return stdout.read_text()


def test_kill_9_leaves_continuous_chains_whose_minutes_verify(tmp_path: Path) -> None:
    rng = random.Random(20261123)
    state = tmp_path / "state"
    state.mkdir()
    acked: dict[tuple[DeviceId, int], str] = {}
    for cycle in range(CYCLES):
        for line in run_and_kill(state, tmp_path, rng, cycle).splitlines(keepends=True):
            if line.startswith("ack ") and line.endswith("\n"):
                _, device, sequence, digest = line.split()
                acked[DeviceId(device), int(sequence)] = digest
    assert len(acked) >= 16
    identities = load_or_create_identities(state, backend().devices())
    assert sorted(p.suffix for p in (state / "keys").iterdir()) == [".pem"] * 8
    spool = Spool(state / "spool.db")
    try:
        stored = {}
        for identity in identities:
            spooled = spool.reports(identity.device)
            reports = [
                open_report(r.envelope, identity.key, device=identity.device) for r in spooled
            ]
            assert [r.sequence for r in reports] == list(range(len(reports)))
            verify_chain(reports)  # continuous, and no window overlaps the one before
            for report, row in zip(reports, spooled, strict=True):
                assert report.digest() == row.digest
                records = spool.minutes(identity.device, report.sequence)
                verify_minutes(report, [parse_minute(record) for record in records])
                stored[identity.device, report.sequence] = row.digest
        for key, digest in acked.items():
            assert stored[key] == digest  # every acknowledged report is there, unchanged
    finally:
        spool.close()
