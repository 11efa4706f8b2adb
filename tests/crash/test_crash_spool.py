"""Kill -9 an agent spooling reports at random moments: nothing acknowledged is lost, nothing
is stored twice, every device's chain stays continuous, and delivered stays delivered."""

from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from brakepedal.agent.spool import Spool
from brakepedal.model.types import DeviceId
from tests.crash.spool_worker import DEVICES, envelope_for

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
CYCLES = 15


def run_and_kill(spool: Path, tmp_path: Path, rng: random.Random, cycle: int) -> str:
    stdout, stderr = tmp_path / f"worker{cycle}.out", tmp_path / f"worker{cycle}.err"
    seed = str(rng.randrange(2**32))
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.crash.spool_worker", str(spool), "--seed", seed],
            stdout=out,
            stderr=err,
            cwd=REPO_ROOT,
        )
    deadline = time.monotonic() + 30
    while not stdout.read_text().startswith("ready\n") and cycle % 5 != 4:
        assert process.poll() is None, stderr.read_text()
        assert time.monotonic() < deadline, "spool worker did not start"
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.3))
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    return stdout.read_text()


def test_kill_9_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261123)
    path = tmp_path / "spool.db"
    acked: dict[tuple[DeviceId, int], str] = {}
    sent: set[tuple[DeviceId, int]] = set()
    for cycle in range(CYCLES):
        for line in run_and_kill(path, tmp_path, rng, cycle).splitlines(keepends=True):
            if not line.endswith("\n") or line == "ready\n":
                continue
            kind, device, sequence, *rest = line.split()
            if kind == "ack":
                acked[DeviceId(device), int(sequence)] = rest[0]
            else:
                sent.add((DeviceId(device), int(sequence)))
    assert len(acked) > 100
    spool = Spool(path)
    try:
        stored = {(r.device, r.sequence): r for d in DEVICES for r in spool.reports(d)}
        for key, digest in acked.items():
            assert stored[key].digest == digest  # every acknowledged report is there, once
        for device in DEVICES:
            reports = spool.reports(device)
            assert [r.sequence for r in reports] == list(range(len(reports)))  # no gap
            previous = "0" * 64
            for report in reports:  # the chain is continuous across every restart
                assert report.envelope == envelope_for(device, report.sequence, previous)
                assert hashlib.sha256(report.envelope).hexdigest() == report.digest
                previous = report.digest
        far_future = datetime(2100, 1, 1, tzinfo=UTC)
        undelivered = {(r.device, r.sequence) for r in spool.due(at=far_future, limit=10**6)}
        assert not (sent & undelivered)  # delivered stays delivered
        total, delivered = spool.counts()
        assert total == len(stored)
        assert delivered >= len(sent)
    finally:
        spool.close()
