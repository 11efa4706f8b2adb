"""DSSE envelopes (secure-systems-lab/dsse v1) with explicit payload types and k-of-n keys.

Domain separation: every signature covers DSSE's pre-authentication encoding
``PAE(payloadType, payload)``, computed by :class:`securesystemslib.dsse.Envelope`, so a
signature over one kind of document can never be replayed as another. brakepedal names its
payload types after :data:`PAYLOAD_TYPE_FORMAT`, e.g.
``application/vnd.brakepedal.usage-report+json; version=1`` (build them with
:func:`brakepedal_payload_type`); a new version of a document is a new payload type. Which
types a reader accepts is the reader's decision: :func:`open_envelope` takes the one
``expected_payload_type`` and refuses any other.

We wrap securesystemslib's ``Envelope`` for PAE and serialisation but parse and count
signatures ourselves, because its ``verify``: matches signatures to keys by the unsigned
``keyid`` hint (DSSE treats keyid as a hint only), counts keys by keyid (two ``Key`` objects
for one key material would count twice) and is lenient about base64. Here the JSON is strict,
base64 must be canonical standard base64, every signature is tried against every trusted key,
and keys are counted by their canonical fingerprint
(:func:`~brakepedal.crypto.keys.key_fingerprint`).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import UnverifiedSignatureError

from brakepedal.crypto.canonical import canonical_json, parse_json_object, typed_candidate
from brakepedal.crypto.keys import Key, Signature, Signer, key_fingerprint, require_trusted_key
from brakepedal.errors import InputError, TrustError
from brakepedal.model.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "PAYLOAD_TYPE_FORMAT",
    "EnvelopeSignature",
    "ParsedEnvelope",
    "ThresholdResult",
    "VerifiedEnvelope",
    "brakepedal_payload_type",
    "canonical_envelope",
    "check_threshold",
    "envelope_from_json",
    "open_envelope",
    "parse_envelope",
    "require_threshold",
    "sign_envelope",
]

#: The naming scheme of brakepedal payload types: ``thing`` is a lowercase kebab-case noun
#: ("usage-report", "pause-order"), ``version`` a positive integer.
PAYLOAD_TYPE_FORMAT = "application/vnd.brakepedal.{thing}+json; version={version}"

_THING = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_ENVELOPE_FIELDS = frozenset({"payload", "payloadType", "signatures"})
_SIGNATURE_FIELDS = frozenset({"sig", "keyid"})
_MAX_PAYLOAD_TYPE = 256


def brakepedal_payload_type(thing: str, version: int) -> str:
    """The payload type of brakepedal document ``thing`` at ``version``."""
    if _THING.fullmatch(thing) is None or len(thing) > 64:
        raise InputError("envelope.payload_type_invalid", f"bad document name {thing!r}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InputError("envelope.payload_type_invalid", f"bad version {version!r}")
    return PAYLOAD_TYPE_FORMAT.format(thing=thing, version=version)


class EnvelopeSignature(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, forbid_unknown_fields=True
):
    """One signature as carried: the optional keyid hint and the raw signature bytes.

    A msgspec struct whose JSON form is the signature object of the wire format (fields in
    code-point order, an absent keyid omitted), so that :func:`canonical_envelope` decodes
    straight into it."""

    keyid: str | None = None
    sig: bytes


class ParsedEnvelope(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    rename={"payload_type": "payloadType"},
):
    """A well-formed envelope whose signatures have not been checked.

    A msgspec struct whose JSON form is the envelope's wire format, fields in code-point
    order (:func:`canonical_envelope` decodes straight into it)."""

    payload: bytes
    payload_type: str
    signatures: tuple[EnvelopeSignature, ...]

    def pae(self) -> bytes:
        """The pre-authentication encoding every signature covers."""
        return bytes(Envelope(self.payload, self.payload_type, {}).pae())


@dataclass(frozen=True, slots=True)
class ThresholdResult:
    """Who signed, out of a threshold; a report, not a verdict (see :func:`require_threshold`).

    ``signed_by`` holds the distinct fingerprints of trusted keys with a valid signature,
    sorted; ``unmatched`` counts signatures that verify under no trusted key.
    """

    threshold: int
    signed_by: tuple[str, ...]
    unmatched: int

    @property
    def missing(self) -> int:
        """How many more distinct keys must sign to reach the threshold."""
        return max(0, self.threshold - len(self.signed_by))


@dataclass(frozen=True, slots=True)
class VerifiedEnvelope:
    """The payload of an envelope that met its threshold under the expected payload type."""

    payload: bytes
    payload_type: str
    signed_by: tuple[str, ...]


def sign_envelope(payload: bytes, payload_type: str, signers: Sequence[Signer]) -> bytes:
    """Sign ``payload`` under ``payload_type`` with every signer; the envelope as JSON bytes.

    Each signature's keyid is the signer's key fingerprint. Every new signature is verified
    before it is returned, so a faulty signer (HSM, KMS) is caught here and not by readers.
    """
    _check_payload_type(payload_type)
    if not signers:
        raise InputError("envelope.no_signers", "an envelope needs at least one signer")
    envelope = Envelope(payload, payload_type, {})
    pae = envelope.pae()
    for signer in signers:
        key = signer.public_key
        fingerprint = key_fingerprint(key)
        if fingerprint in envelope.signatures:
            raise InputError("envelope.duplicate_signer", f"key {fingerprint} given twice")
        signature = signer.sign(pae)
        try:
            key.verify_signature(Signature(key.keyid, signature.signature), pae)
        except UnverifiedSignatureError as e:
            raise TrustError(
                "envelope.signer_faulty", f"signer for {fingerprint} made a bad signature"
            ) from e
        envelope.signatures[fingerprint] = Signature(fingerprint, signature.signature)
    return canonical_json(envelope.to_dict())


def parse_envelope(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> ParsedEnvelope:
    """Parse envelope JSON strictly; every defect is an :class:`InputError` ``envelope.*``."""
    fast = canonical_envelope(data, limits=limits)
    if fast is not None:
        return fast
    if len(data) > limits.max_envelope_bytes:
        raise InputError(
            "envelope.too_large", f"envelope: {len(data)} bytes > {limits.max_envelope_bytes}"
        )
    document = parse_json_object(data, limits=limits, what="envelope")
    return envelope_from_json(document, limits=limits)


_WIRE_DECODER = msgspec.json.Decoder(ParsedEnvelope)
_WIRE_ENCODER = msgspec.json.Encoder()
#: An envelope nests three deep: object, signatures list, signature object.
_WIRE_DEPTH = 3


def canonical_envelope(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> ParsedEnvelope | None:
    """The envelope in ``data`` if ``data`` is ASCII, within ``limits`` and exactly the RFC 8785
    encoding of a well-formed envelope; otherwise ``None``, and :func:`parse_envelope` decides.

    The fast path of :func:`parse_envelope` (every envelope brakepedal writes is canonical). It
    decides only acceptance, never refusal, and what it accepts the strict path accepts with
    the same result: the typed decoder (msgspec, C) admits only the envelope's fields with
    their JSON types, and re-encoding equal to ``data`` leaves no room for duplicate keys,
    whitespace, unsorted keys, escapes (there is no backslash) or base64 that is not the one
    padded standard form of its bytes. The limits and the payload type are checked as the
    strict path checks them. ``tests/unit/crypto/test_dsse.py`` compares both paths.
    """
    if not typed_candidate(data, limits, depth=_WIRE_DEPTH, size=limits.max_envelope_bytes):
        return None
    try:
        envelope = _WIRE_DECODER.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return None
    signatures = envelope.signatures
    if (
        not signatures
        or len(signatures) > limits.max_envelope_signatures
        or not _payload_type_valid(envelope.payload_type)
        # Also refuses "keyid": null, which decodes as an absent keyid.
        or _WIRE_ENCODER.encode(envelope) != data
    ):
        return None
    return envelope


def envelope_from_json(
    document: dict[str, Any], *, limits: Limits = DEFAULT_LIMITS
) -> ParsedEnvelope:
    """The envelope of a JSON object that :func:`parse_json_object` (or an equally strict
    reader) produced: the checks of :func:`parse_envelope` after its JSON stage."""
    _require_fields(document, _ENVELOPE_FIELDS, _ENVELOPE_FIELDS, "envelope")
    payload_type = document["payloadType"]
    if not isinstance(payload_type, str):
        raise InputError("envelope.payload_type_invalid", "payloadType must be a string")
    _check_payload_type(payload_type)
    raw_signatures = document["signatures"]
    if not isinstance(raw_signatures, list) or not raw_signatures:
        raise InputError("envelope.no_signatures", "signatures must be a non-empty list")
    if len(raw_signatures) > limits.max_envelope_signatures:
        raise InputError(
            "envelope.too_many_signatures",
            f"{len(raw_signatures)} signatures > {limits.max_envelope_signatures}",
        )
    return ParsedEnvelope(
        payload=_base64_field(document["payload"], "payload"),
        payload_type=payload_type,
        signatures=tuple(
            _parse_signature(item, index) for index, item in enumerate(raw_signatures)
        ),
    )


def _parse_signature(item: object, index: int) -> EnvelopeSignature:
    where = f"signatures[{index}]"
    if not isinstance(item, dict):
        raise InputError("envelope.signature_malformed", f"{where} is not an object")
    _require_fields(item, _SIGNATURE_FIELDS, frozenset({"sig"}), where)
    keyid = item.get("keyid")
    if keyid is not None and not isinstance(keyid, str):
        raise InputError("envelope.signature_malformed", f"{where}.keyid is not a string")
    return EnvelopeSignature(keyid=keyid, sig=_base64_field(item["sig"], f"{where}.sig"))


def _require_fields(
    document: dict[str, Any], allowed: frozenset[str], required: frozenset[str], where: str
) -> None:
    if document.keys() == allowed:  # the common case, one comparison
        return
    if missing := required - document.keys():
        raise InputError("envelope.field_missing", f"{where} lacks {sorted(missing)}")
    if unknown := document.keys() - allowed:
        raise InputError("envelope.field_unknown", f"{where} has unknown {sorted(unknown)}")


def _base64_field(value: object, where: str) -> bytes:
    """Decode canonical standard base64 (padded, no stray bits), which has one text per value."""
    if not isinstance(value, str) or not value.isascii():
        raise InputError("envelope.base64_invalid", f"{where} is not a base64 string")
    try:
        decoded = binascii.a2b_base64(value, strict_mode=True)
    except binascii.Error as e:
        raise InputError("envelope.base64_invalid", f"{where} is not standard base64") from e
    if binascii.b2a_base64(decoded, newline=False) != value.encode("ascii"):
        raise InputError("envelope.base64_invalid", f"{where} is not canonical base64")
    return decoded


def _check_payload_type(payload_type: str) -> None:
    if not _payload_type_valid(payload_type):
        raise InputError(
            "envelope.payload_type_invalid", "payloadType must be 1-256 printable ASCII"
        )


def _payload_type_valid(payload_type: str) -> bool:
    # Printable ASCII keeps PAE lengths equal to character counts and types readable in logs.
    printable = payload_type.isascii() and payload_type.isprintable()
    return bool(payload_type) and len(payload_type) <= _MAX_PAYLOAD_TYPE and printable


def _trusted_keys(keys: Sequence[Key], threshold: int) -> dict[str, Key]:
    """The keys by fingerprint; refuses empty and duplicate key sets and a bad threshold."""
    if not keys:
        raise InputError("envelope.no_keys", "no trusted keys given")
    by_fingerprint: dict[str, Key] = {}
    for given in keys:
        key = require_trusted_key(given)  # one spelling per raw key: no double counting
        fingerprint = key_fingerprint(key)
        if fingerprint in by_fingerprint:
            raise InputError("envelope.duplicate_key", f"key {fingerprint} is listed twice")
        by_fingerprint[fingerprint] = key
    if isinstance(threshold, bool) or not 1 <= threshold <= len(by_fingerprint):
        raise InputError(
            "envelope.threshold_invalid",
            f"threshold {threshold} must be between 1 and the {len(keys)} keys",
        )
    return by_fingerprint


def check_threshold(
    envelope: ParsedEnvelope, *, keys: Sequence[Key], threshold: int
) -> ThresholdResult:
    """Count the distinct trusted keys with a valid signature on ``envelope``.

    Every signature is tried against every key not yet counted (keyid is only a hint), so
    work is bounded by ``max_envelope_signatures * len(keys)`` verifications.
    """
    trusted = _trusted_keys(keys, threshold)
    pae = envelope.pae()
    signed_by: set[str] = set()
    unmatched = 0
    for carried in envelope.signatures:
        signer = _first_verifying_key(trusted, signed_by, carried.sig, pae)
        if signer is None:
            unmatched += 1
        else:
            signed_by.add(signer)
    return ThresholdResult(threshold, tuple(sorted(signed_by)), unmatched)


def _first_verifying_key(
    trusted: dict[str, Key], counted: set[str], sig: bytes, pae: bytes
) -> str | None:
    for fingerprint, key in trusted.items():
        if fingerprint in counted:
            continue
        try:
            key.verify_signature(Signature(key.keyid, sig.hex()), pae)
        except UnverifiedSignatureError:
            continue
        return fingerprint
    return None


def require_threshold(result: ThresholdResult) -> None:
    """Raise :class:`TrustError` unless ``result`` met its threshold.

    ``envelope.signature_invalid`` when no trusted key signed at all,
    ``envelope.threshold_not_met`` when some did but too few.
    """
    if not result.signed_by:
        raise TrustError(
            "envelope.signature_invalid",
            f"no signature verifies under any of the trusted keys ({result.unmatched} tried)",
        )
    if result.missing:
        raise TrustError(
            "envelope.threshold_not_met",
            f"{len(result.signed_by)} of {result.threshold} required keys signed; "
            f"{result.missing} missing",
        )


def open_envelope(
    data: bytes,
    *,
    expected_payload_type: str,
    keys: Sequence[Key],
    threshold: int,
    limits: Limits = DEFAULT_LIMITS,
) -> VerifiedEnvelope:
    """Verify an envelope and return its payload.

    1. Check the caller's keys and threshold (InputError: ``no_keys``, ``duplicate_key``,
       ``threshold_invalid``).
    2. Parse the envelope strictly (InputError, see :func:`parse_envelope`).
    3. Refuse any payload type but ``expected_payload_type``
       (TrustError ``envelope.payload_type_unexpected``).
    4. Count distinct trusted keys with a valid signature over PAE and require ``threshold``
       (TrustError, see :func:`require_threshold`).
    """
    _trusted_keys(keys, threshold)
    envelope = parse_envelope(data, limits=limits)
    if envelope.payload_type != expected_payload_type:
        raise TrustError(
            "envelope.payload_type_unexpected",
            f"payloadType {envelope.payload_type!r} is not {expected_payload_type!r}",
        )
    result = check_threshold(envelope, keys=keys, threshold=threshold)
    require_threshold(result)
    return VerifiedEnvelope(envelope.payload, envelope.payload_type, result.signed_by)
