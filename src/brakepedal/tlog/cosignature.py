"""Witness cosignatures, as specified by c2sp.org/tlog-cosignature (Ed25519, ``cosignature/v1``).

A cosignature is a note signature line on a checkpoint whose key ID uses signature type 0x04
and whose payload after the key ID is a ``timestamped_signature``: a big-endian uint64 POSIX
timestamp and an Ed25519 signature over::

    cosignature/v1\\n
    time <timestamp>\\n
    <the whole checkpoint body>

:func:`verify_cosignatures` counts each witness key once, however many lines it has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from securesystemslib.signer import Signer  # no __all__ there

from brakepedal.errors import InputError, TrustError
from brakepedal.tlog.checkpoint import Checkpoint
from brakepedal.tlog.note import (
    Note,
    NoteSignature,
    check_ed25519_key,
    check_key_name,
    compute_key_id,
    ed25519_verify,
    format_vkey,
    parse_vkey,
    signer_public_key,
    signer_sign,
)

__all__ = [
    "COSIGNATURE_V1_TYPE",
    "CosignatureVerifier",
    "Cosigner",
    "cosigned_message",
    "verify_cosignatures",
]

#: Signature type byte for timestamped Ed25519 cosignatures (signed-note, "Signature types").
COSIGNATURE_V1_TYPE = 0x04
_KEY_ID_BYTES = 4
_TIMESTAMP_BYTES = 8
_PAYLOAD_BYTES = _KEY_ID_BYTES + _TIMESTAMP_BYTES + 64
#: "It MUST NOT exceed 2^63 - 1" (tlog-cosignature, "Format").
MAX_TIMESTAMP = 2**63 - 1


def cosigned_message(checkpoint_body: bytes, timestamp: int) -> bytes:
    """The bytes a v1 cosigner signs (tlog-cosignature, "Ed25519 signed message")."""
    return b"cosignature/v1\ntime %d\n" % timestamp + checkpoint_body


def _check_timestamp(timestamp: int) -> None:
    if isinstance(timestamp, bool) or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise InputError(
            "cosignature.timestamp_out_of_range", f"timestamp {timestamp} is not in 0..2^63-1"
        )


@dataclass(frozen=True, slots=True)
class CosignatureVerifier:
    """A witness's Ed25519 cosigning key (type 0x04): name, key ID and raw public key."""

    name: str
    key_id: bytes
    public_key: bytes

    def __post_init__(self) -> None:
        check_ed25519_key(self.name, self.key_id, self.public_key, COSIGNATURE_V1_TYPE)

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> CosignatureVerifier:
        """The verifier for witness ``name`` and a raw 32-byte Ed25519 public key."""
        return cls(name, compute_key_id(name, COSIGNATURE_V1_TYPE, public_key), public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignatureVerifier:
        """Parse a vkey ``name+hex(keyid)+base64(0x04 || pub)``."""
        return cls(*parse_vkey(vkey, COSIGNATURE_V1_TYPE))

    def to_vkey(self) -> str:
        """The vkey string for this witness key."""
        return format_vkey(self.name, COSIGNATURE_V1_TYPE, self.public_key)

    def verify(self, body: bytes, sig_payload: bytes) -> int:
        """Verify ``key ID || timestamp || signature`` over ``body``; return the timestamp.

        Raises :class:`TrustError` if the payload is not this key's valid cosignature.
        """
        where = f"cosignature by {self.name}+{self.key_id.hex()}"
        if len(sig_payload) != _PAYLOAD_BYTES:
            raise TrustError(
                "cosignature.signature_invalid",
                f"{where}: payload is {len(sig_payload)} bytes, not {_PAYLOAD_BYTES}",
            )
        if sig_payload[:_KEY_ID_BYTES] != self.key_id:
            raise TrustError("cosignature.key_id_mismatch", f"{where}: key ID differs")
        timestamp = int.from_bytes(sig_payload[_KEY_ID_BYTES : _KEY_ID_BYTES + 8], "big")
        if timestamp > MAX_TIMESTAMP:
            raise TrustError("cosignature.timestamp_out_of_range", f"{where}: timestamp >= 2^63")
        message = cosigned_message(body, timestamp)
        if not ed25519_verify(self.public_key, message, sig_payload[_KEY_ID_BYTES + 8 :]):
            raise TrustError("cosignature.signature_invalid", f"{where}: does not verify")
        return timestamp


class Cosigner:
    """A witness that cosigns checkpoints with an Ed25519 key held by a securesystemslib signer."""

    def __init__(self, name: str, signer: Signer) -> None:
        check_key_name(name, reason="cosignature.invalid_key_name", where="cosigner")
        self.name = name
        self._signer = signer
        self._verifier = CosignatureVerifier.from_public_key(name, signer_public_key(signer))
        self.key_id = self._verifier.key_id

    def verifier(self) -> CosignatureVerifier:
        """The verifier key matching this cosigner."""
        return self._verifier

    def cosign(self, checkpoint_body: bytes, timestamp: int) -> NoteSignature:
        """The signature line cosigning ``checkpoint_body`` as of ``timestamp`` (POSIX seconds).

        The body is parsed first: a witness must never sign bytes that are not a checkpoint.
        """
        Checkpoint.from_body(checkpoint_body)
        _check_timestamp(timestamp)
        signature = signer_sign(self._signer, cosigned_message(checkpoint_body, timestamp))
        payload = self.key_id + timestamp.to_bytes(_TIMESTAMP_BYTES, "big") + signature
        self._verifier.verify(checkpoint_body, payload)
        return NoteSignature(self.name, self.key_id, payload[_KEY_ID_BYTES:])


def _check_witnesses(witnesses: Sequence[CosignatureVerifier], threshold: int) -> None:
    if isinstance(threshold, bool) or not 1 <= threshold <= len(witnesses):
        raise InputError(
            "cosignature.invalid_threshold",
            f"threshold {threshold} must be between 1 and {len(witnesses)} witnesses",
        )
    # One key listed twice (under any name) would count twice towards the threshold.
    keys = [w.public_key for w in witnesses]
    ids = [(w.name, w.key_id) for w in witnesses]
    if len(set(keys)) != len(keys) or len(set(ids)) != len(ids):
        raise InputError("cosignature.duplicate_witness", "a witness key is listed twice")


def _witness_signed(note: Note, body: bytes, witness: CosignatureVerifier) -> bool:
    lines = [s for s in note.signatures if (s.name, s.key_id) == (witness.name, witness.key_id)]
    for line in lines:
        # A known key whose signature fails rejects the note (signed-note, "Signatures").
        witness.verify(body, line.key_id + line.signature)
    return bool(lines)


def verify_cosignatures(
    signed_note: Note,
    checkpoint_body: bytes,
    witnesses: Sequence[CosignatureVerifier],
    threshold: int,
) -> tuple[str, ...]:
    """Names of the witnesses whose cosignature on ``checkpoint_body`` verifies.

    1. ``1 <= threshold <= len(witnesses)`` and no witness key is listed twice.
    2. The note's text must be exactly ``checkpoint_body``.
    3. Lines matching a witness's name and key ID must all verify; others are ignored.
    4. Each witness counts once; fewer than ``threshold`` raises ``cosignature.threshold_not_met``.
    """
    _check_witnesses(witnesses, threshold)
    if signed_note.text != checkpoint_body:
        raise TrustError("cosignature.body_mismatch", "the note does not carry this checkpoint")
    signed = [w for w in witnesses if _witness_signed(signed_note, checkpoint_body, w)]
    if len(signed) < threshold:
        missing = ", ".join(w.name for w in witnesses if w not in signed) or "none"
        raise TrustError(
            "cosignature.threshold_not_met",
            f"{len(signed)} of {threshold} required cosignatures verified; missing: {missing}",
        )
    return tuple(w.name for w in signed)
