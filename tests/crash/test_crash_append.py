"""Kill -9 a process appending to the log at random moments; nothing acknowledged may be lost.

DESIGN.md invariant 2 (nothing acknowledged is ever lost) and 3 (every checkpoint consistent
with every earlier one), tested against real processes, real files and the real server: the
worker (:mod:`tests.crash.append_worker`) prints an acknowledgement only after ``append``
returned; after every SIGKILL the store is reopened and checked against those lines.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from brakepedal.crypto.keys import generate_ed25519, private_key_to_pem
from brakepedal.tlog import merkle
from brakepedal.tlog.checkpoint import open_checkpoint
from brakepedal.tlog.log import TransparencyLog
from brakepedal.tlog.note import NoteSigner, NoteVerifier
from brakepedal.tlog.sqlstore import SqlLogStore
from tests.crash.append_worker import ORIGIN, batch_digest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0


@dataclass
class Acknowledged:
    """Everything the workers promised so far."""

    batches: list[tuple[int, int, str]] = field(default_factory=list)
    checkpoint_sizes: list[int] = field(default_factory=list)

    def read(self, output: str) -> None:
        # A line cut short by the kill has no newline and promises nothing.
        for line in output.splitlines(keepends=True):
            if not line.endswith("\n"):
                continue
            kind, *values = line.split()
            if kind == "ack":
                self.batches.append((int(values[0]), int(values[1]), values[2]))
            elif kind == "checkpoint":
                self.checkpoint_sizes.append(int(values[0]))


def wait_until_ready(process: subprocess.Popen[bytes], stdout: Path, stderr: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not stdout.read_text().startswith("ready\n"):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            pytest.fail(f"append worker did not start:\n{stderr.read_text()}")
        time.sleep(0.01)


def run_and_kill(url: str, key: Path, tmp_path: Path, rng: random.Random, cycle: int) -> str:
    """Start a worker, SIGKILL it at a random moment, return what it printed."""
    stdout, stderr = tmp_path / f"worker{cycle}.out", tmp_path / f"worker{cycle}.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [
                sys.executable,
                *("-m", "tests.crash.append_worker", url, str(key)),
                *("--seed", str(rng.randrange(2**32))),
            ],
            stdout=out,
            stderr=err,
            cwd=REPO_ROOT,
        )
    # One kill in five lands while the worker is still starting and opening the store.
    if cycle % 5 != 4:
        wait_until_ready(process, stdout, stderr)
    time.sleep(rng.uniform(0.0, 0.4))
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, stderr.read_text()
    return stdout.read_text()


def check_store(url: str, verifier: NoteVerifier, promised: Acknowledged) -> int:
    """Reopen the store and check every promise; return the stored size."""
    store = SqlLogStore(url, origin=ORIGIN)
    try:
        log = TransparencyLog(store)
        size = log.size()
        entries = store.read_entries(0, size)
        covered: set[int] = set()
        for first, count, digest in promised.batches:
            assert first + count <= size, f"acknowledged batch at {first} lost"
            assert batch_digest(entries[first : first + count]) == digest
            assert covered.isdisjoint(range(first, first + count)), "index acknowledged twice"
            covered.update(range(first, first + count))
        # Every node recomputes from the entries and every checkpoint verifies and chains.
        log.verify_integrity(verifier)
        stored = store.checkpoints()
        stored_sizes = [s for s, _ in stored]
        assert set(promised.checkpoint_sizes) <= set(stored_sizes)
        if stored:
            check_newest_checkpoints(log, verifier, [note for _, note in stored[-2:]])
        return size
    finally:
        store.close()


def check_newest_checkpoints(
    log: TransparencyLog, verifier: NoteVerifier, notes: list[bytes]
) -> None:
    heads = [open_checkpoint(note, verifier, origin=ORIGIN).checkpoint for note in notes]
    newest = heads[-1]
    assert log.root(newest.size) == newest.root_hash
    if len(heads) == 2 and heads[0].size > 0:
        previous = heads[0]
        merkle.verify_consistency(
            old_size=previous.size,
            new_size=newest.size,
            old_root=previous.root_hash,
            new_root=newest.root_hash,
            proof=log.consistency_proof(previous.size, newest.size),
        )


def crash_repeatedly(url: str, tmp_path: Path, *, kills: int, seed: int) -> Acknowledged:
    signer = generate_ed25519()
    key = tmp_path / "log-key.pem"
    key.write_bytes(private_key_to_pem(signer))
    verifier = NoteSigner(ORIGIN, signer).verifier()
    rng = random.Random(seed)
    promised = Acknowledged()
    for cycle in range(kills):
        promised.read(run_and_kill(url, key, tmp_path, rng, cycle))
        check_store(url, verifier, promised)
    return promised


def test_sigkill_during_sqlite_appends_loses_nothing_acknowledged(
    sqlite_url: str, tmp_path: Path
) -> None:
    # 25 kills: 20 land while the worker appends and checkpoints, 5 while it starts up.
    promised = crash_repeatedly(sqlite_url, tmp_path, kills=25, seed=20240601)
    # The test proves something only if the workers did real work between the kills.
    assert len(promised.batches) >= 100
    assert len(promised.checkpoint_sizes) >= 10


@pytest.mark.postgres
def test_sigkill_during_postgres_appends_loses_nothing_acknowledged(
    postgres_url: str, tmp_path: Path
) -> None:
    promised = crash_repeatedly(postgres_url, tmp_path, kills=6, seed=20240602)
    assert len(promised.batches) >= 30
    assert len(promised.checkpoint_sizes) >= 3
