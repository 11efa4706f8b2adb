"""Signed notes, as specified by c2sp.org/signed-note (v1.0.0).

A note is UTF-8 text ending in a newline, a blank line, and one or more signature lines
``— <key name> base64(key ID || signature)``. This module parses notes, verifies them against
a caller-supplied set of Ed25519 verifier keys ("vkeys") and signs them through a
``securesystemslib`` signer, so that file, HSM and KMS keys all work.

Verification follows the spec section "Signatures" step by step (see :func:`verify_note`).
Nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# securesystemslib re-exports without __all__, which mypy --strict cannot see.
from securesystemslib.signer import Signer

from brakepedal.errors import InputError, TrustError
from brakepedal.model.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "ED25519_SIGNATURE_TYPE",
    "Note",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "VerifiedNote",
    "b64decode_canonical",
    "check_ed25519_key",
    "check_key_name",
    "check_note_text",
    "compute_key_id",
    "ed25519_verify",
    "format_vkey",
    "open_note",
    "parse_vkey",
    "sign_note",
    "signer_public_key",
    "signer_sign",
    "verify_note",
]

#: Signature type byte for plain Ed25519 note signatures (signed-note, "Signature types").
ED25519_SIGNATURE_TYPE = 0x01
_ED25519_PUBLIC_KEY_BYTES = 32
_ED25519_SIGNATURE_BYTES = 64
_KEY_ID_BYTES = 4
_SIGNATURE_PREFIX = "\u2014 "  # em dash, space
_CONTROL_CHARACTER = re.compile("[\x00-\x09\x0b-\x1f]")


def b64decode_canonical(text: str, *, reason: str, where: str) -> bytes:
    """Decode standard base64 (RFC 4648 section 4), accepting only its canonical spelling.

    Python's decoder ignores non-zero padding bits, so two spellings would decode to one
    value; re-encoding and comparing makes every accepted string the only one for its bytes.
    """
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InputError(reason, f"{where}: not valid base64") from e
    if base64.b64encode(decoded).decode("ascii") != text:
        raise InputError(reason, f"{where}: base64 is not in canonical form")
    return decoded


def check_key_name(name: str, *, reason: str, where: str) -> None:
    """Raise unless ``name`` is a valid key name: non-empty, no Unicode spaces, no ``+``."""
    if not name:
        raise InputError(reason, f"{where}: key name is empty")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(reason, f"{where}: key name is not valid Unicode") from e
    for char in name:
        # Control characters are never valid in a note, so refuse them in names too.
        if char.isspace() or char == "+" or ord(char) < 0x20:
            raise InputError(reason, f"{where}: key name {name!r} contains {char!r}")


def compute_key_id(name: str, signature_type: int, public_key: bytes) -> bytes:
    """Key ID = SHA-256(key name || 0x0A || signature type || public key)[:4]."""
    material = name.encode("utf-8") + b"\n" + bytes([signature_type]) + public_key
    return hashlib.sha256(material).digest()[:_KEY_ID_BYTES]


def parse_vkey(vkey: str, signature_type: int) -> tuple[str, bytes, bytes]:
    """Split a verifier key ``name+hex(key ID)+base64(type || public key)``.

    Returns ``(name, key_id, public_key)`` after checking the type byte, the Ed25519 key
    length and that the key ID is the one derived from the rest (signed-note, "Signatures").
    """
    parts = vkey.split("+", 2)  # base64 may itself contain "+"
    if len(parts) != 3:
        raise InputError("vkey.malformed", "verifier key must have the form name+keyid+key")
    name, key_id_hex, key_b64 = parts
    check_key_name(name, reason="vkey.invalid_name", where="verifier key")
    if len(key_id_hex) != 2 * _KEY_ID_BYTES or any(c not in "0123456789abcdef" for c in key_id_hex):
        raise InputError("vkey.invalid_key_id", "verifier key ID must be 8 lowercase hex digits")
    key_id = bytes.fromhex(key_id_hex)
    material = b64decode_canonical(key_b64, reason="vkey.invalid_base64", where="verifier key")
    if not material or material[0] != signature_type:
        raise InputError("vkey.unknown_type", f"verifier key type must be {signature_type:#04x}")
    public_key = material[1:]
    check_ed25519_key(name, key_id, public_key, signature_type)
    return name, key_id, public_key


def format_vkey(name: str, signature_type: int, public_key: bytes) -> str:
    """Encode a verifier key; the inverse of :func:`parse_vkey`."""
    key_id = compute_key_id(name, signature_type, public_key)
    encoded = base64.b64encode(bytes([signature_type]) + public_key).decode("ascii")
    return f"{name}+{key_id.hex()}+{encoded}"


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """RFC 8032 verification via ``cryptography``; False for any malformed input."""
    if len(signature) != _ED25519_SIGNATURE_BYTES:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def check_ed25519_key(name: str, key_id: bytes, public_key: bytes, signature_type: int) -> None:
    """Raise unless the fields describe one Ed25519 key of the given signature type."""
    check_key_name(name, reason="vkey.invalid_name", where="verifier")
    if len(public_key) != _ED25519_PUBLIC_KEY_BYTES:
        raise InputError(
            "vkey.invalid_key_length", f"Ed25519 public key is {len(public_key)} bytes, not 32"
        )
    if compute_key_id(name, signature_type, public_key) != key_id:
        raise InputError("vkey.key_id_mismatch", f"key ID for {name} does not match its key")


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """A known Ed25519 note key (signature type 0x01): a name, its key ID and the raw key."""

    name: str
    key_id: bytes
    public_key: bytes

    def __post_init__(self) -> None:
        check_ed25519_key(self.name, self.key_id, self.public_key, ED25519_SIGNATURE_TYPE)

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> NoteVerifier:
        """The verifier for ``name`` and a raw 32-byte Ed25519 public key."""
        return cls(name, compute_key_id(name, ED25519_SIGNATURE_TYPE, public_key), public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse a vkey ``name+hex(keyid)+base64(0x01 || pub)``."""
        return cls(*parse_vkey(vkey, ED25519_SIGNATURE_TYPE))

    def to_vkey(self) -> str:
        """The vkey string for this verifier."""
        return format_vkey(self.name, ED25519_SIGNATURE_TYPE, self.public_key)

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise :class:`TrustError` unless ``signature`` is this key's over ``message``."""
        if not ed25519_verify(self.public_key, message, signature):
            raise TrustError(
                "note.signature_invalid",
                f"signature by {self.name}+{self.key_id.hex()} does not verify",
            )


def signer_public_key(signer: Signer) -> bytes:
    """The raw Ed25519 public key behind a securesystemslib signer, or InputError."""
    key = signer.public_key
    if key.keytype != "ed25519" or key.scheme != "ed25519":
        raise InputError(
            "note.signer_not_ed25519",
            f"signer key is {key.keytype}/{key.scheme}, not ed25519/ed25519",
        )
    try:
        public_key = bytes.fromhex(str(key.keyval["public"]))
    except (KeyError, ValueError) as e:
        raise InputError("note.signer_not_ed25519", "signer public key is not hex") from e
    if len(public_key) != _ED25519_PUBLIC_KEY_BYTES:
        raise InputError("note.signer_not_ed25519", "signer public key is not 32 bytes")
    return public_key


def signer_sign(signer: Signer, message: bytes) -> bytes:
    """Sign with a securesystemslib signer and return the raw 64-byte Ed25519 signature."""
    try:
        signature = bytes.fromhex(signer.sign(message).signature)
    except ValueError as e:
        raise InputError("note.signer_output", "signer returned a non-hex signature") from e
    if len(signature) != _ED25519_SIGNATURE_BYTES:
        raise InputError("note.signer_output", f"signer returned {len(signature)} bytes, not 64")
    return signature


class NoteSigner:
    """Signs notes as ``name`` with an Ed25519 key held by a securesystemslib signer."""

    def __init__(self, name: str, signer: Signer) -> None:
        check_key_name(name, reason="note.invalid_key_name", where="signer")
        self.name = name
        self._signer = signer
        self._verifier = NoteVerifier.from_public_key(name, signer_public_key(signer))
        self.key_id = self._verifier.key_id

    def verifier(self) -> NoteVerifier:
        """The verifier key matching this signer."""
        return self._verifier

    def sign(self, message: bytes) -> bytes:
        """The raw 64-byte Ed25519 signature over ``message``.

        The signature is checked before it is returned: a remote signer holding some other
        key would otherwise publish notes nobody can verify.
        """
        signature = signer_sign(self._signer, message)
        self._verifier.verify(message, signature)
        return signature


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: key name, 4-byte key ID and the signature bytes after it."""

    name: str
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name, reason="note.invalid_key_name", where="signature")
        if len(self.key_id) != _KEY_ID_BYTES or not self.signature:
            raise InputError("note.signature_too_short", "a signature needs 4 + n bytes, n >= 1")

    def to_line(self) -> bytes:
        """``— <name> base64(key ID || signature)`` with its newline."""
        encoded = base64.b64encode(self.key_id + self.signature).decode("ascii")
        return f"{_SIGNATURE_PREFIX}{self.name} {encoded}\n".encode()


def check_note_text(text: bytes, *, reason_prefix: str = "note") -> str:
    """Decode note text: valid UTF-8, no control characters but newline, ends in newline."""
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as e:
        line = text[: e.start].count(b"\n") + 1
        raise InputError(f"{reason_prefix}.invalid_utf8", f"line {line}: invalid UTF-8") from e
    control = _CONTROL_CHARACTER.search(decoded)
    if control is not None:
        line = decoded[: control.start()].count("\n") + 1
        raise InputError(
            f"{reason_prefix}.control_character",
            f"line {line}: control character {control.group()!r} is not allowed",
        )
    if not decoded.endswith("\n"):
        raise InputError(f"{reason_prefix}.missing_final_newline", "text must end in a newline")
    return decoded


def _parse_signature_line(line: str, line_number: int) -> NoteSignature:
    where = f"line {line_number}"
    if not line.startswith(_SIGNATURE_PREFIX):
        raise InputError("note.malformed_signature_line", f"{where}: expected '\u2014 name sig'")
    name, space, encoded = line[len(_SIGNATURE_PREFIX) :].partition(" ")
    if not space:
        raise InputError("note.malformed_signature_line", f"{where}: no space after key name")
    check_key_name(name, reason="note.invalid_key_name", where=where)
    payload = b64decode_canonical(encoded, reason="note.signature_not_base64", where=where)
    if len(payload) <= _KEY_ID_BYTES:
        raise InputError("note.signature_too_short", f"{where}: signature has no bytes after ID")
    return NoteSignature(name, payload[:_KEY_ID_BYTES], payload[_KEY_ID_BYTES:])


@dataclass(frozen=True, slots=True)
class Note:
    """A parsed signed note: the text (with its final newline) and its signature lines.

    Duplicate lines are kept as read so that :meth:`to_bytes` gives back the input exactly.
    """

    text: bytes
    signatures: tuple[NoteSignature, ...]

    def __post_init__(self) -> None:
        check_note_text(self.text)
        if not self.signatures:
            raise InputError("note.no_signatures", "a note needs at least one signature")

    @classmethod
    def from_bytes(cls, data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Note:
        """Parse a signed note (signed-note, "Format"); raise :class:`InputError` if malformed."""
        if len(data) > limits.max_note_bytes:
            raise InputError(
                "note.too_large", f"note is {len(data)} bytes, limit {limits.max_note_bytes}"
            )
        decoded = check_note_text(data)
        # The text is separated from the signatures by the LAST empty line in the note.
        split = decoded.rfind("\n\n")
        if split < 0:
            raise InputError("note.missing_separator", "no blank line before the signatures")
        text = decoded[: split + 1]
        lines = decoded[split + 2 :].split("\n")[:-1]
        if not lines:
            raise InputError("note.no_signatures", "no signature lines after the blank line")
        if len(lines) > limits.max_note_signatures:
            raise InputError(
                "note.too_many_signatures",
                f"{len(lines)} signature lines, limit {limits.max_note_signatures}",
            )
        first = text.count("\n") + 2
        signatures = tuple(_parse_signature_line(line, first + i) for i, line in enumerate(lines))
        return cls(text.encode("utf-8"), signatures)

    def to_bytes(self) -> bytes:
        """The note as text, blank line and signature lines."""
        return self.text + b"\n" + b"".join(sig.to_line() for sig in self.signatures)


@dataclass(frozen=True, slots=True)
class VerifiedNote:
    """A note whose text at least one known key signed; unknown-key signatures are kept."""

    text: bytes
    verified: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]


def _matching_verifier(
    signature: NoteSignature, verifiers: Sequence[NoteVerifier]
) -> NoteVerifier | None:
    matches = [v for v in verifiers if v.name == signature.name and v.key_id == signature.key_id]
    if len(matches) > 1:
        raise InputError(
            "note.ambiguous_key",
            f"{len(matches)} verifiers for key {signature.name}+{signature.key_id.hex()}",
        )
    return matches[0] if matches else None


def verify_note(note: Note, verifiers: Sequence[NoteVerifier]) -> VerifiedNote:
    """Verify ``note`` against known keys (signed-note, "Signatures").

    1. The verifier set must not be empty (fail closed).
    2. Exact duplicate signature lines are counted once.
    3. A line whose (name, key ID) matches no verifier is an unknown key: kept, not trusted.
    4. A line matching two verifiers is ambiguous: refused.
    5. A line matching one verifier must verify, else the whole note is rejected.
    6. At least one signature from a known key must have verified.
    """
    if not verifiers:
        raise InputError("note.no_verifiers", "no verifier keys given: nothing can be trusted")
    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    for signature in dict.fromkeys(note.signatures):
        verifier = _matching_verifier(signature, verifiers)
        if verifier is None:
            unverified.append(signature)
            continue
        verifier.verify(note.text, signature.signature)
        verified.append(signature)
    if not verified:
        names = ", ".join(sorted({sig.name for sig in unverified}))
        raise TrustError("note.unknown_key", f"no signature from a known key (signed by: {names})")
    return VerifiedNote(note.text, tuple(verified), tuple(unverified))


def open_note(
    data: bytes, verifiers: Sequence[NoteVerifier], *, limits: Limits = DEFAULT_LIMITS
) -> VerifiedNote:
    """Parse and verify a signed note in one step."""
    return verify_note(Note.from_bytes(data, limits=limits), verifiers)


def sign_note(
    text: bytes, signers: Sequence[NoteSigner], *, existing: Sequence[NoteSignature] = ()
) -> bytes:
    """Sign ``text`` with every signer and return the note bytes.

    Existing signatures are kept first, except those by a key that signs again here (its new
    signature replaces the old one, as golang.org/x/mod/sumdb/note does).
    """
    check_note_text(text)
    if not signers:
        raise InputError("note.no_signers", "sign_note needs at least one signer")
    keys = [(signer.name, signer.key_id) for signer in signers]
    if len(set(keys)) != len(keys):
        raise InputError("note.duplicate_signer", "the same key appears twice among the signers")
    kept = tuple(sig for sig in existing if (sig.name, sig.key_id) not in set(keys))
    fresh = tuple(NoteSignature(s.name, s.key_id, s.sign(text)) for s in signers)
    return Note(text, kept + fresh).to_bytes()
