"""Bounds on untrusted input, in one typed object (STYLE.md rule 9).

Parsers take a :class:`Limits` and refuse anything larger with an :class:`InputError` whose
reason ends in ``.too_large`` (or ``.too_many_*``). Services load one instance at start-up and
pass it down; nothing reads a global.
"""

from __future__ import annotations

from dataclasses import dataclass

from brakepedal.errors import InputError

__all__ = ["DEFAULT_LIMITS", "Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Maximum sizes and counts accepted from outside the process."""

    #: A signed note (checkpoint plus signatures), in bytes. C2SP signed-note suggests 1 MB.
    max_note_bytes: int = 1_000_000
    #: Signature lines in one note.
    max_note_signatures: int = 100
    #: Extension lines in a checkpoint body.
    max_checkpoint_extensions: int = 16
    #: Hashes in one inclusion or consistency proof. 2 * 64 covers every tree of 2^64 leaves.
    max_proof_hashes: int = 128
    #: A DSSE envelope as JSON, in bytes.
    max_envelope_bytes: int = 1_000_000
    #: Signatures on one DSSE envelope.
    max_envelope_signatures: int = 32
    #: One log entry, in bytes.
    max_entry_bytes: int = 1_000_000
    #: Entries appended to the log in one batch.
    max_batch_entries: int = 100_000
    #: Tiles listed for one tree size (``tlog.tiles.tiles_for_size``); 2^20 tiles cover 2^28 leaves.
    max_tiles: int = 1_048_576
    #: A JSON document parsed by ``crypto.canonical.parse_json_object``, in bytes.
    max_json_bytes: int = 1_000_000
    #: Nesting of arrays and objects in one JSON document; signed payloads are shallow.
    max_json_depth: int = 64

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InputError("limits.invalid", f"Limits.{name} must be a positive integer")


DEFAULT_LIMITS = Limits()
