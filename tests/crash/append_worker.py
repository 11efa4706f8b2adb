"""Crash-test worker: appends batches to a SQL log store until it is killed.

Run as ``python -m tests.crash.append_worker DBURL KEYFILE --seed N``. It prints ``ready`` once
the store is open, then for every batch ``ack <first> <count> <sha256>`` ONLY after
:meth:`TransparencyLog.append` returned, and ``checkpoint <size>`` after a checkpoint was
stored. Each line is flushed before the next write starts, so every line the parent reads is a
promise the store must keep after a SIGKILL.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from brakepedal.crypto.keys import signer_from_pem
from brakepedal.tlog.checkpoint import open_checkpoint
from brakepedal.tlog.log import TransparencyLog
from brakepedal.tlog.note import NoteSigner
from brakepedal.tlog.sqlstore import SqlLogStore

__all__ = ["ORIGIN", "batch_digest", "main"]

ORIGIN = "brakepedal.test/crash"


def batch_digest(entries: Sequence[bytes]) -> str:
    """SHA-256 over length-prefixed entries: two different batches never share a digest."""
    digest = hashlib.sha256()
    for entry in entries:
        digest.update(len(entry).to_bytes(4, "big"))
        digest.update(entry)
    return digest.hexdigest()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("keyfile", type=Path)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--checkpoint-every", type=int, default=5)
    parser.add_argument("--max-batch", type=int, default=32)
    args = parser.parse_args(argv)
    signer = NoteSigner(ORIGIN, signer_from_pem(args.keyfile.read_bytes()))
    rng = random.Random(args.seed)
    store = SqlLogStore(args.url, origin=ORIGIN)
    log = TransparencyLog(store)
    print("ready", flush=True)
    batches = 0
    while True:
        batch = [rng.randbytes(rng.randrange(200)) for _ in range(rng.randrange(1, args.max_batch))]
        indices = log.append(batch)
        print(f"ack {indices[0]} {len(batch)} {batch_digest(batch)}", flush=True)
        batches += 1
        if batches % args.checkpoint_every == 0:
            note = log.checkpoint(ORIGIN, signer)
            size = open_checkpoint(note, signer.verifier(), origin=ORIGIN).checkpoint.size
            print(f"checkpoint {size}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
