"""Fuzz target: parse a DSSE envelope and verify it against a fixed test key.

Only :class:`~brakepedal.errors.BrakepedalError` may escape the parser; anything else is a bug.
The key is RFC 8032 TEST 1's published test key, so the committed seeds include validly
signed envelopes and the fuzzer reaches signature verification. What the typed fast reader
(``canonical_envelope``) accepts, the strict reader must accept with an equal envelope.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from brakepedal.crypto import canonical
from brakepedal.crypto.dsse import (
    brakepedal_payload_type,
    canonical_envelope,
    envelope_from_json,
    open_envelope,
)
from brakepedal.crypto.keys import CryptoSigner, ed25519_public_key
from brakepedal.errors import BrakepedalError
from brakepedal.model.limits import Limits

# RFC 8032 section 7.1 TEST 1 secret key: public test material, never a real secret.
TEST_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
TEST_PRIVATE_KEY = Ed25519PrivateKey.from_private_bytes(TEST_SEED)
TEST_KEY = ed25519_public_key(TEST_PRIVATE_KEY.public_key().public_bytes_raw())
TEST_SIGNER = CryptoSigner(TEST_PRIVATE_KEY, TEST_KEY)
PAYLOAD_TYPE = brakepedal_payload_type("fuzz", 1)
# Small bounds keep each run fast while still exercising the size checks.
LIMITS = Limits(max_envelope_bytes=64_000, max_json_bytes=64_000, max_envelope_signatures=8)


def test_one_input(data: bytes) -> None:
    """Open ``data`` as an envelope; only brakepedal's own errors are acceptable."""
    fast = canonical_envelope(data, limits=LIMITS)
    if fast is not None:
        document = canonical._parse_strict(data, LIMITS, "envelope")
        assert envelope_from_json(document, limits=LIMITS) == fast
    try:
        open_envelope(
            data,
            expected_payload_type=PAYLOAD_TYPE,
            keys=[TEST_KEY],
            threshold=1,
            limits=LIMITS,
        )
    except BrakepedalError:
        return


if __name__ == "__main__":
    from fuzz.harness import main

    main("envelope", test_one_input)
