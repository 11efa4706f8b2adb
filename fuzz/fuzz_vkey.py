"""Fuzz target: signed-note and cosignature verifier keys (``name+keyid+base64``)."""

from __future__ import annotations

import contextlib

from brakepedal.errors import BrakepedalError
from brakepedal.tlog.cosignature import CosignatureVerifier
from brakepedal.tlog.note import NoteVerifier


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    for parse in (NoteVerifier.from_vkey, CosignatureVerifier.from_vkey):
        with contextlib.suppress(BrakepedalError):
            parse(text)


if __name__ == "__main__":
    from fuzz.harness import main

    main("vkey", test_one_input)
