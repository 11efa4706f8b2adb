"""Ed25519 keys through securesystemslib: generation, PEM, public key JSON, fingerprints.

Everything that signs takes a :class:`securesystemslib.signer.Signer`, so an HSM, KMS or
hardware-token signer plugs in wherever the file-backed :class:`CryptoSigner` made here does.
Everything that verifies takes a :class:`securesystemslib.signer.Key`.

A key's identity is its **fingerprint**: SHA-256 (lowercase hex) over the RFC 8785 canonical
JSON of ``{"keytype", "scheme", "keyval"}``. For Ed25519 keys (hex ``keyval``, ASCII only) these
bytes equal securesystemslib's own canonical form, so the fingerprint is the same string as
securesystemslib's default keyid and TUF's keyid; ``tests/unit/crypto/test_keys.py`` checks it.
We compute it through our canonical encoder rather than securesystemslib's OLPC encoder
because the two differ for PEM key values (OLPC does not escape newlines), and the fingerprint
must follow the one canonical encoding the rest of brakepedal signs.

Key material enters and leaves as bytes; reading and writing files is the CLI's job.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    load_pem_private_key,
)

# securesystemslib.signer has no __all__, so mypy --strict sees no re-exports; the names are
# its documented public API. brakepedal re-exports them from here for its own modules.
from securesystemslib.signer import (
    CryptoSigner,
    Key,
    Signature,
    Signer,
    SSlibKey,
)

from brakepedal.crypto.canonical import canonical_json, parse_json_object
from brakepedal.errors import InputError, TrustError
from brakepedal.model.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "ED25519_PUBLIC_KEY_BYTES",
    "ED25519_SIGNATURE_BYTES",
    "SUPPORTED_KEY_TYPES",
    "CryptoSigner",
    "Key",
    "SSlibKey",
    "Signature",
    "Signer",
    "ed25519_from_seed",
    "ed25519_public_key",
    "generate_ed25519",
    "key_fingerprint",
    "private_key_to_pem",
    "public_key_from_json",
    "public_key_to_json",
    "require_trusted_key",
    "signer_from_pem",
    "verify_ed25519_raw",
]

ED25519_PUBLIC_KEY_BYTES = 32
ED25519_SIGNATURE_BYTES = 64

#: (keytype, scheme) pairs accepted from public key JSON. Fail closed: a new algorithm is a
#: deliberate change here, with its own vectors, not something a key file can ask for.
SUPPORTED_KEY_TYPES = frozenset({("ed25519", "ed25519")})

_KEY_FIELDS = frozenset({"keyid", "keytype", "scheme", "keyval"})
_ED25519_HEX = re.compile(r"[0-9a-f]{64}")
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_ENCRYPTED_PEM = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"


def key_fingerprint(key: Key) -> str:
    """The canonical fingerprint of ``key`` (see the module docstring); ignores ``keyid``."""
    identity = {"keytype": key.keytype, "scheme": key.scheme, "keyval": key.keyval}
    return hashlib.sha256(canonical_json(identity)).hexdigest()


def ed25519_public_key(raw: bytes) -> SSlibKey:
    """An :class:`SSlibKey` for a raw 32-byte Ed25519 public key, keyid = fingerprint."""
    if len(raw) != ED25519_PUBLIC_KEY_BYTES:
        raise InputError(
            "ed25519.public_key_length", f"Ed25519 public key has {len(raw)} bytes, not 32"
        )
    key = SSlibKey("", "ed25519", "ed25519", {"public": raw.hex()})
    key.keyid = key_fingerprint(key)
    return key


def generate_ed25519() -> CryptoSigner:
    """A fresh Ed25519 signer whose public key's keyid is its fingerprint."""
    private_key = Ed25519PrivateKey.generate()
    return CryptoSigner(private_key, _public_key_of(private_key))


def ed25519_from_seed(seed: bytes) -> CryptoSigner:
    """The Ed25519 signer whose RFC 8032 private key is ``seed`` (32 bytes).

    For simulations and tests that must be reproducible from a seed; a real key comes from
    :func:`generate_ed25519` (or hardware), never from a guessable seed.
    """
    private_key = Ed25519PrivateKey.from_private_bytes(seed)
    return CryptoSigner(private_key, _public_key_of(private_key))


def _public_key_of(private_key: Ed25519PrivateKey) -> SSlibKey:
    return ed25519_public_key(private_key.public_key().public_bytes_raw())


def private_key_to_pem(signer: CryptoSigner, *, password: bytes | None = None) -> bytes:
    """The signer's private key as PKCS#8 PEM, encrypted when ``password`` is given.

    Encryption uses pyca/cryptography's best available PKCS#8 scheme (PBES2 with AES-256-CBC
    and a scrypt or PBKDF2 key derivation, depending on the OpenSSL build).
    """
    if password is not None and not password:
        raise InputError("key.password_empty", "an empty password would not protect the key")
    if password is None:
        return bytes(signer.private_bytes)
    # CryptoSigner exposes only unencrypted PEM; reload it to re-serialise with encryption.
    private_key = load_pem_private_key(signer.private_bytes, password=None)
    return private_key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(password)
    )


def signer_from_pem(data: bytes, *, password: bytes | None = None) -> CryptoSigner:
    """Load an Ed25519 PKCS#8 PEM private key as a signer.

    Reasons: ``key.password_required`` (encrypted, no password), ``key.password_unexpected``
    (not encrypted, password given), ``key.password_wrong``, ``key.pem_invalid`` (not a PEM
    private key), ``key.type_unsupported`` (not Ed25519).
    """
    encrypted = data.lstrip().startswith(_ENCRYPTED_PEM)
    if encrypted and password is None:
        raise InputError("key.password_required", "the private key is encrypted; give a password")
    if not encrypted and password is not None:
        raise InputError("key.password_unexpected", "the private key is not encrypted")
    try:
        private_key = load_pem_private_key(data, password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        if encrypted:
            raise InputError(
                "key.password_wrong", "cannot decrypt the private key: wrong password?"
            ) from e
        raise InputError("key.pem_invalid", "not a PEM-encoded PKCS#8 private key") from e
    if not isinstance(private_key, Ed25519PrivateKey):
        raise InputError(
            "key.type_unsupported",
            f"private key is {type(private_key).__name__}; only Ed25519 is supported",
        )
    return CryptoSigner(private_key, _public_key_of(private_key))


def public_key_to_json(key: Key) -> bytes:
    """Canonical JSON of ``{"keyid", "keytype", "scheme", "keyval"}``, keyid = fingerprint.

    Fields securesystemslib keeps as ``unrecognized_fields`` are not part of a key's
    identity, so a key carrying any is refused (``key.field_unknown``) rather than silently
    trimmed.
    """
    if key.unrecognized_fields:
        raise InputError(
            "key.field_unknown", f"key has extra fields {sorted(key.unrecognized_fields)}"
        )
    if (key.keytype, key.scheme) not in SUPPORTED_KEY_TYPES:
        raise InputError("key.type_unsupported", f"key type {key.keytype}/{key.scheme}")
    document: dict[str, Any] = {
        "keyid": key_fingerprint(key),
        "keytype": key.keytype,
        "scheme": key.scheme,
        "keyval": key.keyval,
    }
    return canonical_json(document)


def public_key_from_json(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> SSlibKey:
    """Parse public key JSON, recompute the fingerprint and insist the keyid matches it.

    Reasons: those of ``parse_json_object`` (``json.*``), ``key.field_missing``,
    ``key.field_unknown``, ``key.type_unsupported``, ``key.public_invalid`` (InputError) and
    ``key.fingerprint_mismatch`` (TrustError: the keyid names another key).
    """
    document = parse_json_object(data, limits=limits, what="key")
    fields = set(document)
    if missing := _KEY_FIELDS - fields:
        raise InputError("key.field_missing", f"public key lacks {sorted(missing)}")
    if unknown := fields - _KEY_FIELDS:
        raise InputError("key.field_unknown", f"public key has unknown fields {sorted(unknown)}")
    key = _strict_ed25519(document["keytype"], document["scheme"], document["keyval"])
    keyid = document["keyid"]
    if not isinstance(keyid, str) or _FINGERPRINT.fullmatch(keyid) is None:
        raise InputError("key.keyid_invalid", "keyid must be 64 lowercase hex characters")
    if keyid != key.keyid:
        raise TrustError(
            "key.fingerprint_mismatch",
            f"keyid {keyid} does not match the key's fingerprint {key.keyid}",
        )
    return key


def require_trusted_key(key: Key) -> SSlibKey:
    """``key`` as the one canonical :class:`SSlibKey` for its raw public key, or raise.

    A trusted key set must not hold one key twice under different spellings (upper-case hex,
    whitespace, extra keyval fields all decode to the same key in securesystemslib), or one
    key could meet a threshold alone; so every trusted key is re-derived from its raw bytes.
    """
    return _strict_ed25519(key.keytype, key.scheme, key.keyval)


def _strict_ed25519(keytype: object, scheme: object, keyval: object) -> SSlibKey:
    if not isinstance(keytype, str) or not isinstance(scheme, str):
        raise InputError("key.type_unsupported", "keytype and scheme must be strings")
    if (keytype, scheme) not in SUPPORTED_KEY_TYPES:
        raise InputError("key.type_unsupported", f"key type {keytype!r:.40}/{scheme!r:.40}")
    public = keyval.get("public") if isinstance(keyval, dict) and len(keyval) == 1 else None
    if not isinstance(public, str):
        raise InputError("key.public_invalid", 'keyval must be exactly {"public": <hex>}')
    if _ED25519_HEX.fullmatch(public) is None:
        raise InputError("key.public_invalid", "Ed25519 public key must be 64 lowercase hex")
    return ed25519_public_key(bytes.fromhex(public))


def verify_ed25519_raw(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Verify a raw Ed25519 signature (RFC 8032, as pyca/cryptography implements it).

    For wire formats that carry raw keys and signatures (C2SP signed notes). Returns None or
    raises: ``ed25519.public_key_length``/``ed25519.signature_length`` (InputError),
    ``ed25519.public_key_invalid``/``ed25519.signature_invalid`` (TrustError).
    """
    if len(public_key) != ED25519_PUBLIC_KEY_BYTES:
        raise InputError(
            "ed25519.public_key_length", f"public key has {len(public_key)} bytes, not 32"
        )
    if len(signature) != ED25519_SIGNATURE_BYTES:
        raise InputError(
            "ed25519.signature_length", f"signature has {len(signature)} bytes, not 64"
        )
    try:
        verifier = Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError as e:  # pragma: no cover (OpenSSL accepts any 32 bytes here)
        raise TrustError("ed25519.public_key_invalid", "not an Ed25519 public key") from e
    try:
        verifier.verify(signature, message)
    except InvalidSignature as e:
        raise TrustError(
            "ed25519.signature_invalid", "Ed25519 signature does not verify under the key"
        ) from e
