"""Transparency log checkpoints, as specified by c2sp.org/tlog-checkpoint (v1.0.0).

A checkpoint is a signed note whose text is the origin line, the decimal tree size, the
base64 RFC 6962 root hash and optional non-empty extension lines, each ending in a newline.
:func:`open_checkpoint` verifies the log's signature before the body is trusted, and keeps the
exact bytes it verified.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from brakepedal.errors import InputError, TrustError
from brakepedal.model.limits import DEFAULT_LIMITS, Limits
from brakepedal.tlog.note import (
    Note,
    NoteSigner,
    NoteVerifier,
    b64decode_canonical,
    check_note_text,
    sign_note,
    verify_note,
)

__all__ = [
    "MAX_TREE_SIZE",
    "Checkpoint",
    "SignedCheckpoint",
    "open_checkpoint",
    "sign_checkpoint",
]

#: Tree sizes must fit a signed 64-bit integer (as in golang.org/x/mod/sumdb/tlog).
MAX_TREE_SIZE = 2**63 - 1
_ROOT_HASH_BYTES = 32
# "ASCII decimal ... with no leading zeroes (unless the tree is empty)": no sign, no spaces.
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_LINE_BREAK_OR_CONTROL = re.compile("[\x00-\x1f]")


def _check_line(value: str, field: str) -> None:
    """A body line must be non-empty and hold no newline or other control character."""
    if not value:
        raise InputError(f"checkpoint.empty_{field}", f"checkpoint {field} line is empty")
    if _LINE_BREAK_OR_CONTROL.search(value):
        raise InputError(
            "checkpoint.control_character", f"checkpoint {field} contains a control character"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError("checkpoint.invalid_utf8", f"checkpoint {field} is not UTF-8") from e


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's tree head: origin, tree size, RFC 6962 root hash and extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        if isinstance(self.size, bool) or not 0 <= self.size <= MAX_TREE_SIZE:
            raise InputError("checkpoint.size_too_large", f"tree size must be 0..{MAX_TREE_SIZE}")
        if len(self.root_hash) != _ROOT_HASH_BYTES:
            raise InputError(
                "checkpoint.root_hash_length",
                f"root hash is {len(self.root_hash)} bytes, not {_ROOT_HASH_BYTES}",
            )
        for extension in self.extensions:
            _check_line(extension, "extension")

    def to_body(self) -> bytes:
        """The note text: one newline-terminated line per field."""
        root = base64.b64encode(self.root_hash).decode("ascii")
        lines = [self.origin, str(self.size), root, *self.extensions]
        return "".join(line + "\n" for line in lines).encode("utf-8")

    @classmethod
    def from_body(cls, body: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Checkpoint:
        """Parse a checkpoint body (tlog-checkpoint, "Note text")."""
        if len(body) > limits.max_note_bytes:
            raise InputError("checkpoint.too_large", f"checkpoint body is {len(body)} bytes")
        text = check_note_text(body, reason_prefix="checkpoint")
        lines = text.split("\n")[:-1]
        if len(lines) < 3:
            raise InputError("checkpoint.too_few_lines", f"{len(lines)} lines, need at least 3")
        origin, size_line, root_line, *extensions = lines
        if len(extensions) > limits.max_checkpoint_extensions:
            raise InputError(
                "checkpoint.too_many_extensions",
                f"{len(extensions)} extension lines, limit {limits.max_checkpoint_extensions}",
            )
        for number, extension in enumerate(extensions, start=4):
            if not extension:
                raise InputError("checkpoint.empty_extension", f"line {number}: empty extension")
        if not _DECIMAL.fullmatch(size_line):
            raise InputError("checkpoint.size_not_decimal", f"line 2: tree size {size_line[:32]!r}")
        # The regex bounds nothing, so cap the digits before int() does quadratic work.
        if len(size_line) > len(str(MAX_TREE_SIZE)) or int(size_line) > MAX_TREE_SIZE:
            raise InputError("checkpoint.size_too_large", "line 2: tree size over 2^63 - 1")
        root = b64decode_canonical(
            root_line, reason="checkpoint.root_hash_not_base64", where="line 3"
        )
        return cls(origin, int(size_line), root, tuple(extensions))


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint whose log signature verified, with the note and the exact bytes read."""

    checkpoint: Checkpoint
    note: Note
    raw: bytes


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> bytes:
    """The signed note for ``checkpoint``, signed by the log key ``signer``."""
    return sign_note(checkpoint.to_body(), [signer])


def open_checkpoint(
    data: bytes,
    log_verifier: NoteVerifier,
    *,
    origin: str | None = None,
    require_key_name_is_origin: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> SignedCheckpoint:
    """Verify a signed checkpoint from the log whose key is ``log_verifier``.

    1. Parse the note (signed-note "Format"); signatures by other keys (witnesses) are kept.
    2. The log key must have signed the text (signed-note "Signatures").
    3. Only then parse the body (tlog-checkpoint "Note text").
    4. If ``origin`` is given, the origin line must equal it.
    5. The spec says the log's key name SHOULD equal the origin; sum.golang.org signs origin
       "go.sum database tree" as "sum.golang.org", so this is checked only on request.
    """
    note = Note.from_bytes(data, limits=limits)
    verify_note(note, [log_verifier])
    checkpoint = Checkpoint.from_body(note.text, limits=limits)
    if origin is not None and checkpoint.origin != origin:
        raise TrustError(
            "checkpoint.origin_mismatch",
            f"checkpoint origin {checkpoint.origin!r} is not the expected {origin!r}",
        )
    if require_key_name_is_origin and log_verifier.name != checkpoint.origin:
        raise TrustError(
            "checkpoint.key_name_mismatch",
            f"log key {log_verifier.name!r} differs from origin {checkpoint.origin!r}",
        )
    return SignedCheckpoint(checkpoint, note, data)
