"""Fuzz target: C2SP signed notes (c2sp.org/signed-note), parsing then verification."""

from __future__ import annotations

from brakepedal.errors import BrakepedalError
from brakepedal.tlog.note import Note, NoteVerifier, open_note

# golang.org/x/mod sumdb/note test key; the seeds in fuzz/corpus/note are signed by it.
_VERIFIERS = (
    NoteVerifier.from_vkey("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
)


def test_one_input(data: bytes) -> None:
    try:
        note = Note.from_bytes(data)
        # A parsed note must serialise back to exactly the bytes that were read.
        assert note.to_bytes() == data
        open_note(data, _VERIFIERS)
    except BrakepedalError:
        pass


if __name__ == "__main__":
    from fuzz.harness import main

    main("note", test_one_input)
