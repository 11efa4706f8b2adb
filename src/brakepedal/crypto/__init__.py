"""Keys, signers, envelopes, canonical encoding and domain separation.

* :mod:`~brakepedal.crypto.canonical`: RFC 8785 canonical JSON and the strict JSON parser.
* :mod:`~brakepedal.crypto.keys`: Ed25519 keys, PEM, public key JSON, fingerprints.
* :mod:`~brakepedal.crypto.dsse`: DSSE envelopes with payload types and k-of-n thresholds.
"""

from brakepedal.crypto.canonical import (
    canonical_json,
    is_canonical,
    parse_json_object,
    require_canonical,
)
from brakepedal.crypto.dsse import (
    PAYLOAD_TYPE_FORMAT,
    ThresholdResult,
    VerifiedEnvelope,
    brakepedal_payload_type,
    open_envelope,
    sign_envelope,
)
from brakepedal.crypto.keys import (
    generate_ed25519,
    key_fingerprint,
    public_key_from_json,
    public_key_to_json,
    signer_from_pem,
    verify_ed25519_raw,
)

__all__ = [
    "PAYLOAD_TYPE_FORMAT",
    "ThresholdResult",
    "VerifiedEnvelope",
    "brakepedal_payload_type",
    "canonical_json",
    "generate_ed25519",
    "is_canonical",
    "key_fingerprint",
    "open_envelope",
    "parse_json_object",
    "public_key_from_json",
    "public_key_to_json",
    "require_canonical",
    "sign_envelope",
    "signer_from_pem",
    "verify_ed25519_raw",
]
