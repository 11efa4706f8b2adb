"""Crash-test worker: runs a collector loop over 8 simulated devices until it is killed.

Run as ``python -m tests.crash.collector_worker STATEDIR --seed N``. It loads (or, on the first
run, creates) the device keys in ``STATEDIR/keys``, opens ``STATEDIR/spool.db`` and ticks a
one-minute-window :class:`Collector` as fast as it can on a simulated clock. The clock resumes
a random 0-89 s after the latest window end in the spool (or at :data:`START`), as a restarted
agent's real clock would. It prints ``ready`` once started and ``ack <device> <sequence>
<digest>`` for every report :meth:`Collector.tick` returned, i.e. after it was committed to the
spool; every line is flushed before the next tick.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from brakepedal.accounting.catalogue import default_catalogue
from brakepedal.agent.collector import Collector
from brakepedal.agent.identity import load_or_create_identities
from brakepedal.agent.spool import Spool
from brakepedal.agent.telemetry import SimulatedBackend

__all__ = ["START", "backend", "main"]

START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def backend() -> SimulatedBackend:
    """The same 8 devices (UUIDs, traces) in every run."""
    h100 = default_catalogue().get("NVIDIA H100 80GB HBM3")
    return SimulatedBackend.synthetic(
        h100, "training", devices=8, start=START, seconds=300, seed=11
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("state", type=Path)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    node = backend()
    identities = load_or_create_identities(args.state, node.devices())
    spool = Spool(args.state / "spool.db")
    collector = Collector(node, spool, identities, window=timedelta(minutes=1))
    heads = [spool.head(identity.device) for identity in identities]
    ends = [head.window_end for head in heads if head is not None and head.window_end]
    now = max(ends, default=START) + timedelta(seconds=rng.randrange(90))
    print("ready", flush=True)
    while True:
        for report in collector.tick(now):
            sys.stdout.write(f"ack {report.device} {report.sequence} {report.digest}\n")
            sys.stdout.flush()
        now += timedelta(seconds=1)


if __name__ == "__main__":
    main()
