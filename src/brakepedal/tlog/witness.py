"""An independent witness: cosign a log's checkpoint only if it extends what was cosigned before.

The rules are those of c2sp.org/tlog-witness ("add-checkpoint"), without the HTTP: for each
log it follows, identified by its origin line, a witness remembers the latest checkpoint it
cosigned (a :class:`WitnessState`) and cosigns a new one only if the log's key signed it and it
is consistent with that memory. A log that shows two different trees of the same size to two
parties (a *split view*) can get at most one of them cosigned by each honest witness.

The state is the witness's only memory and nothing here stores it: the caller persists the
new state (atomically) before handing out the cosignature, as the spec requires, and must not
run two :meth:`Witness.cosign` calls on one state concurrently (the spec's rollback race).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from brakepedal.crypto.canonical import canonical_json, parse_json_object
from brakepedal.errors import BrakepedalError, InputError, TrustError
from brakepedal.model.limits import DEFAULT_LIMITS, Limits
from brakepedal.model.types import utc_datetime
from brakepedal.tlog.checkpoint import Checkpoint
from brakepedal.tlog.cosignature import CosignatureVerifier, Cosigner
from brakepedal.tlog.merkle import EMPTY_ROOT
from brakepedal.tlog.note import Note, NoteSignature, NoteVerifier, b64decode_canonical, verify_note
from brakepedal.tlog.proof import ConsistencyProof

__all__ = [
    "STATE_FORMAT",
    "CosignResult",
    "Witness",
    "WitnessState",
    "WitnessedCheckpoint",
    "merge_cosigned_notes",
]

#: The ``format`` field of a serialised :class:`WitnessState`; bump it on any change.
STATE_FORMAT = "brakepedal/witness-state/v1"
_STATE_FIELDS = frozenset({"format", "witness", "logs"})
_LOG_FIELDS = frozenset({"size", "root_hash", "checkpoint"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class WitnessedCheckpoint:
    """The latest checkpoint a witness cosigned for one log: its exact body and what it says."""

    body: bytes
    checkpoint: Checkpoint

    def __post_init__(self) -> None:
        if Checkpoint.from_body(self.body) != self.checkpoint:
            raise InputError(
                "witness_state.checkpoint_mismatch", "checkpoint fields differ from its body"
            )

    @classmethod
    def from_body(cls, body: bytes) -> WitnessedCheckpoint:
        return cls(body, Checkpoint.from_body(body))


@dataclass(frozen=True, slots=True)
class WitnessState:
    """What one witness (its cosigning key) cosigned last, per log origin; immutable.

    ``logs`` is sorted by origin with each origin once, so that equal states serialise to
    equal bytes.
    """

    witness: CosignatureVerifier
    logs: tuple[WitnessedCheckpoint, ...] = ()

    def __post_init__(self) -> None:
        origins = [log.checkpoint.origin for log in self.logs]
        if origins != sorted(set(origins)):
            raise InputError(
                "witness_state.logs_not_sorted", "logs must be sorted by origin, each once"
            )

    @classmethod
    def empty(cls, witness: CosignatureVerifier) -> WitnessState:
        """The state of a witness that has cosigned nothing yet."""
        return cls(witness)

    def latest(self, origin: str) -> WitnessedCheckpoint | None:
        """The latest checkpoint cosigned for ``origin``, or None if there is none."""
        return next((log for log in self.logs if log.checkpoint.origin == origin), None)

    def with_latest(self, witnessed: WitnessedCheckpoint) -> WitnessState:
        """A new state in which ``witnessed`` is the latest checkpoint of its origin."""
        origin = witnessed.checkpoint.origin
        others = [log for log in self.logs if log.checkpoint.origin != origin]
        logs = sorted([*others, witnessed], key=lambda log: log.checkpoint.origin)
        return replace(self, logs=tuple(logs))

    def to_bytes(self) -> bytes:
        """The RFC 8785 canonical JSON form, read back by :meth:`from_bytes`."""
        return canonical_json(
            {
                "format": STATE_FORMAT,
                "witness": self.witness.to_vkey(),
                "logs": {
                    log.checkpoint.origin: {
                        "size": log.checkpoint.size,
                        "root_hash": base64.b64encode(log.checkpoint.root_hash).decode("ascii"),
                        "checkpoint": log.body.decode("utf-8"),
                    }
                    for log in self.logs
                },
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> WitnessState:
        """Parse a state strictly: every defect is an :class:`InputError` naming the field."""
        document = parse_json_object(data, limits=limits, what="witness state")
        found = document.get("format")
        if found != STATE_FORMAT:
            raise InputError(
                "witness_state.unknown_format",
                f"witness state format must be {STATE_FORMAT!r}, got {found!r:.60}",
            )
        _require_fields(document, _STATE_FIELDS, "witness state")
        witness_vkey = _string_field(document, "witness", "witness state")
        try:
            witness = CosignatureVerifier.from_vkey(witness_vkey)
        except InputError as e:
            raise InputError("witness_state.invalid_witness", f"witness key: {e.message}") from e
        logs = document["logs"]
        if not isinstance(logs, dict):
            raise InputError("witness_state.field_type", "witness state field 'logs' is no object")
        witnessed = [_parse_log(origin, entry) for origin, entry in sorted(logs.items())]
        return cls(witness, tuple(witnessed))


def _parse_log(origin: str, entry: object) -> WitnessedCheckpoint:
    where = f"witness state log {origin[:80]!r}"
    if not isinstance(entry, dict):
        raise InputError("witness_state.field_type", f"{where} is not an object")
    _require_fields(entry, _LOG_FIELDS, where)
    size = entry["size"]
    if not isinstance(size, int) or isinstance(size, bool):
        raise InputError("witness_state.field_type", f"{where}: 'size' is not an integer")
    root_hash = b64decode_canonical(
        _string_field(entry, "root_hash", where),
        reason="witness_state.root_hash_not_base64",
        where=f"{where}: 'root_hash'",
    )
    body = _string_field(entry, "checkpoint", where).encode("utf-8")
    try:
        witnessed = WitnessedCheckpoint.from_body(body)
    except InputError as e:
        raise InputError("witness_state.invalid_checkpoint", f"{where}: {e.message}") from e
    head = witnessed.checkpoint
    if (head.origin, head.size, head.root_hash) != (origin, size, root_hash):
        raise InputError(
            "witness_state.checkpoint_mismatch",
            f"{where}: origin, size or root hash differ from the stored checkpoint",
        )
    return witnessed


def _require_fields(document: Mapping[str, Any], expected: frozenset[str], where: str) -> None:
    missing = sorted(expected - document.keys())
    if missing:
        raise InputError("witness_state.missing_field", f"{where} lacks field(s) {missing}")
    unknown = sorted(document.keys() - expected)
    if unknown:
        raise InputError("witness_state.unknown_field", f"{where} has unknown field(s) {unknown}")


def _string_field(document: Mapping[str, Any], name: str, where: str) -> str:
    value = document[name]
    if not isinstance(value, str):
        raise InputError("witness_state.field_type", f"{where}: {name!r} is not a string")
    return value


@dataclass(frozen=True, slots=True)
class CosignResult:
    """A successful cosignature: persist ``state`` before anyone is given ``note``.

    ``note`` is the checkpoint text with the log's verified signature lines and this witness's
    ``cosignature`` line; ``previous`` is what the witness had cosigned before (None: first).
    """

    state: WitnessState
    note: bytes
    cosignature: NoteSignature
    checkpoint: Checkpoint
    previous: WitnessedCheckpoint | None

    def describe(self) -> str:
        """One line saying why the checkpoint was accepted."""
        head = self.checkpoint
        if self.previous is None:
            return (
                f"first checkpoint of {head.origin!r} at size {head.size}: "
                "accepted on first use, nothing earlier to check it against"
            )
        old_size = self.previous.checkpoint.size
        if old_size == head.size:
            return f"same tree of {head.origin!r} at size {head.size}: cosigned again"
        how = "consistency proof verified" if old_size else "the empty tree is a prefix of all"
        return f"{head.origin!r} grew from size {old_size} to {head.size}: {how}"


class Witness:
    """A witness with its own cosigning key that follows the logs in ``logs`` (origin -> key)."""

    def __init__(
        self,
        cosigner: Cosigner,
        logs: Mapping[str, NoteVerifier],
        *,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        if not logs:
            raise InputError("witness.no_logs", "a witness must follow at least one log")
        self._cosigner = cosigner
        self._logs = dict(logs)
        self._limits = limits

    @property
    def name(self) -> str:
        return self._cosigner.name

    def verifier(self) -> CosignatureVerifier:
        """The public key that checks this witness's cosignatures."""
        return self._cosigner.verifier()

    def cosign(
        self,
        state: WitnessState,
        note_bytes: bytes,
        *,
        consistency_proof: ConsistencyProof | None,
        at: datetime,
    ) -> CosignResult:
        """Cosign a checkpoint if it is consistent with all this witness cosigned before.

        Steps after c2sp.org/tlog-witness, "add-checkpoint":

        1. ``state`` must be this witness's (``witness.state_mismatch``); the note's origin
           must be a log this witness follows (``witness.unknown_log``) and the log's key must
           have signed it (``witness.log_signature_invalid``); other signatures are ignored.
        2. A size below the last cosigned one is refused (``witness.rollback``).
        3. The same size with another root is the split view the witness exists to catch
           (``witness.split_view``); the same size and root is cosigned again.
        4. A larger size needs a consistency proof (``witness.proof_missing``) that verifies
           (``witness.inconsistent``). A proof, when given, must run from the last cosigned
           size (0 if none) to the checkpoint's (``witness.proof_sizes_mismatch``). The first
           checkpoint of a log is accepted without a proof: trust on first use. RFC 9162 has
           no proof from the empty tree, the prefix of every tree, whose root must be
           SHA-256("") (``witness.empty_root_mismatch``).
        5. Cosign with the timestamp ``at`` (UTC) and return the new state with the note.
        """
        timestamp = _posix_seconds(at)
        self._check_state(state)
        note, checkpoint, log_signatures = self._open(note_bytes)
        _check_empty_root(checkpoint)
        previous = state.latest(checkpoint.origin)
        old = None if previous is None else previous.checkpoint
        if old is not None:
            _check_not_rollback(old, checkpoint)
            _check_same_size(old, checkpoint)
        self._check_extends(old, checkpoint, consistency_proof)
        cosignature = self._cosigner.cosign(note.text, timestamp)
        signed = Note(note.text, (*log_signatures, cosignature)).to_bytes()
        new_state = state.with_latest(WitnessedCheckpoint(note.text, checkpoint))
        return CosignResult(new_state, signed, cosignature, checkpoint, previous)

    def _check_state(self, state: WitnessState) -> None:
        if state.witness != self._cosigner.verifier():
            raise InputError(
                "witness.state_mismatch",
                f"the state belongs to witness key {state.witness.to_vkey()!r}, not to "
                f"{self._cosigner.verifier().to_vkey()!r}",
            )

    def _open(self, note_bytes: bytes) -> tuple[Note, Checkpoint, tuple[NoteSignature, ...]]:
        note = Note.from_bytes(note_bytes, limits=self._limits)
        # The first line names the log; it picks the key and is trusted only once that key
        # has verified the whole text.
        origin = note.text.split(b"\n", 1)[0].decode("utf-8")
        log_key = self._logs.get(origin)
        if log_key is None:
            raise TrustError(
                "witness.unknown_log", f"this witness does not follow a log {origin[:200]!r}"
            )
        try:
            verified = verify_note(note, [log_key])
        except TrustError as e:
            raise TrustError(
                "witness.log_signature_invalid",
                f"checkpoint of {origin!r} is not signed by the log key "
                f"{log_key.name}+{log_key.key_id.hex()}: {e.message}",
            ) from e
        checkpoint = Checkpoint.from_body(note.text, limits=self._limits)
        return note, checkpoint, verified.verified

    def _check_extends(
        self, old: Checkpoint | None, new: Checkpoint, proof: ConsistencyProof | None
    ) -> None:
        old_size = 0 if old is None else old.size
        if proof is not None and (proof.old_size, proof.new_size) != (old_size, new.size):
            raise InputError(
                "witness.proof_sizes_mismatch",
                f"the proof is from size {proof.old_size} to {proof.new_size}; this witness "
                f"last cosigned size {old_size} of {new.origin!r} and the checkpoint is at "
                f"size {new.size}",
            )
        if old_size == 0 and proof is not None and proof.hashes:
            raise InputError("witness.proof_not_empty", "a proof from size 0 must be empty")
        if old is None or old.size == 0 or (old.size == new.size and proof is None):
            return
        if proof is None:
            raise InputError(
                "witness.proof_missing",
                f"{new.origin!r} grew from size {old.size} to {new.size}: a consistency proof "
                f"from size {old.size} is needed",
            )
        try:
            proof.verify(old.root_hash, new.root_hash, limits=self._limits)
        except BrakepedalError as e:
            raise TrustError(
                "witness.inconsistent",
                f"{new.origin!r} at size {new.size} is not an extension of the tree of size "
                f"{old.size} this witness cosigned: {e.message} [{e.reason}]",
            ) from e


def _posix_seconds(at: datetime) -> int:
    return (utc_datetime(at) - _EPOCH) // timedelta(seconds=1)


def _check_empty_root(checkpoint: Checkpoint) -> None:
    if checkpoint.size == 0 and checkpoint.root_hash != EMPTY_ROOT:
        raise TrustError(
            "witness.empty_root_mismatch",
            f"checkpoint of {checkpoint.origin!r} at size 0 lacks the empty tree's root",
        )


def _check_not_rollback(old: Checkpoint, new: Checkpoint) -> None:
    if new.size < old.size:
        raise TrustError(
            "witness.rollback",
            f"checkpoint of {new.origin!r} at size {new.size} is smaller than size "
            f"{old.size}, which this witness already cosigned",
        )


def _check_same_size(old: Checkpoint, new: Checkpoint) -> None:
    if new.size == old.size and new.root_hash != old.root_hash:
        raise TrustError(
            "witness.split_view",
            f"the log {new.origin!r} shows two different trees of size {new.size}: root "
            f"{new.root_hash.hex()} now, root {old.root_hash.hex()} cosigned before",
            remediation=(
                "The log signed two histories. Keep both checkpoints as evidence and report "
                "them; do not cosign anything from this log until the fork is explained."
            ),
        )


def merge_cosigned_notes(notes: Sequence[bytes], *, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """One note with every signature line of ``notes``, which must share one text.

    Lines are kept in order of first appearance, exact duplicates once. Nothing is verified
    here: whoever reads the merged note verifies the lines of the keys it trusts.
    """
    if not notes:
        raise InputError("witness.nothing_to_merge", "merge needs at least one note")
    parsed = [Note.from_bytes(data, limits=limits) for data in notes]
    text = parsed[0].text
    for position, note in enumerate(parsed[1:], start=2):
        if note.text != text:
            raise InputError(
                "witness.bodies_differ",
                f"note {position} carries another checkpoint than note 1; only cosignatures "
                "of the same checkpoint can be merged",
            )
    lines = tuple(dict.fromkeys(sig for note in parsed for sig in note.signatures))
    if len(lines) > limits.max_note_signatures:
        raise InputError(
            "witness.too_many_signatures",
            f"the merged note would have {len(lines)} signature lines, limit "
            f"{limits.max_note_signatures}",
        )
    return Note(text, lines).to_bytes()
