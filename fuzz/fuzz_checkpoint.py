"""Fuzz target: C2SP checkpoints (c2sp.org/tlog-checkpoint), body parsing and signed opening."""

from __future__ import annotations

import contextlib

from brakepedal.errors import BrakepedalError
from brakepedal.tlog.checkpoint import Checkpoint, open_checkpoint
from brakepedal.tlog.note import NoteVerifier

# The sum.golang.org production key; the seeds in fuzz/corpus/checkpoint are real checkpoints.
_LOG = NoteVerifier.from_vkey(
    "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
)


def test_one_input(data: bytes) -> None:
    try:
        checkpoint = Checkpoint.from_body(data)
        # A parsed body must format back to exactly the bytes that were read.
        assert checkpoint.to_body() == data
    except BrakepedalError:
        pass
    with contextlib.suppress(BrakepedalError):
        open_checkpoint(data, _LOG, origin="go.sum database tree")


if __name__ == "__main__":
    from fuzz.harness import main

    main("checkpoint", test_one_input)
