"""Crash-test worker: spools reports for 8 devices until it is killed.

Run as ``python -m tests.crash.spool_worker SPOOLFILE --seed N``. After a restart it resumes
each device's chain from :meth:`Spool.last`. It prints ``ack <device> <sequence> <digest>``
only after :meth:`Spool.append` returned (the report is on disk), and ``sent <device>
<sequence>`` after :meth:`Spool.delivered`; every line is flushed before the next write.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from brakepedal.agent.spool import RetryPolicy, Spool
from brakepedal.model.types import DeviceId

__all__ = ["DEVICES", "envelope_for", "main"]

DEVICES = [DeviceId(f"gpu-{i}") for i in range(8)]
_ZERO = "0" * 64


def envelope_for(device: str, sequence: int, previous: str) -> bytes:
    """A stand-in for a signed report: deterministic bytes naming its predecessor."""
    return f"{device} {sequence} {previous}".encode() * 20


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("spool", type=Path)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    spool = Spool(args.spool)
    heads = {d: spool.last(d) for d in DEVICES}
    print("ready", flush=True)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    while True:
        device = rng.choice(DEVICES)
        head = heads[device]
        sequence, previous = (0, _ZERO) if head is None else (head[0] + 1, head[1])
        envelope = envelope_for(device, sequence, previous)
        digest = hashlib.sha256(envelope).hexdigest()
        now += timedelta(seconds=1)
        spool.append(device, sequence, digest, envelope, at=now)
        heads[device] = (sequence, digest)
        sys.stdout.write(f"ack {device} {sequence} {digest}\n")
        sys.stdout.flush()
        for report in spool.due(at=now, limit=rng.randint(0, 3)):
            if rng.random() < 0.7:
                spool.delivered(report.device, report.sequence, at=now)
                sys.stdout.write(f"sent {report.device} {report.sequence}\n")
                sys.stdout.flush()
            else:
                spool.failed(report.device, report.sequence, at=now, policy=RetryPolicy(), rng=rng)


if __name__ == "__main__":
    main()
