"""Ed25519 against Wycheproof (all 151 cases) and RFC 8032 section 7.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from brakepedal.crypto.keys import (
    CryptoSigner,
    Signature,
    ed25519_public_key,
    verify_ed25519_raw,
)
from brakepedal.errors import InputError, TrustError

VECTORS = Path(__file__).parents[2] / "vectors" / "ed25519"


def _wycheproof_cases() -> list[Any]:
    document = json.loads((VECTORS / "wycheproof_ed25519_test.json").read_text())
    cases = []
    for group in document["testGroups"]:
        public_key = bytes.fromhex(group["publicKey"]["pk"])
        for test in group["tests"]:
            cases.append(
                pytest.param(
                    public_key,
                    bytes.fromhex(test["msg"]),
                    bytes.fromhex(test["sig"]),
                    test["result"],
                    id=f"tc{test['tcId']}-{test['result']}",
                )
            )
    return cases


def _rfc8032_vectors() -> list[Any]:
    document = json.loads((VECTORS / "rfc8032_section7_1.json").read_text())
    return [
        pytest.param(
            bytes.fromhex(vector["secret_key_hex"]),
            bytes.fromhex(vector["public_key_hex"]),
            bytes.fromhex(vector["message_hex"]),
            bytes.fromhex(vector["signature_hex"]),
            id=vector["name"],
        )
        for vector in document["vectors"]
    ]


WYCHEPROOF = _wycheproof_cases()
RFC8032 = _rfc8032_vectors()


def test_wycheproof_has_all_151_cases() -> None:
    assert len(WYCHEPROOF) == 151
    results = [case.values[3] for case in WYCHEPROOF]
    assert results.count("valid") == 88
    assert results.count("invalid") == 63


@pytest.mark.parametrize(("public_key", "message", "signature", "result"), WYCHEPROOF)
def test_wycheproof_case(public_key: bytes, message: bytes, signature: bytes, result: str) -> None:
    if result == "valid":
        verify_ed25519_raw(public_key, message, signature)  # returns None or raises
        return
    # A wrong length is malformed input; a 64-byte signature that fails is a trust failure.
    wrong_length = len(signature) != 64
    error = InputError if wrong_length else TrustError
    with pytest.raises(error) as raised:
        verify_ed25519_raw(public_key, message, signature)
    expected = "ed25519.signature_length" if wrong_length else "ed25519.signature_invalid"
    assert raised.value.reason == expected


def test_rfc8032_has_five_vectors() -> None:
    assert len(RFC8032) == 5


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032)
def test_rfc8032_sign_exact_and_verify(
    secret: bytes, public: bytes, message: bytes, signature: bytes
) -> None:
    private_key = Ed25519PrivateKey.from_private_bytes(secret)
    signer = CryptoSigner(private_key, ed25519_public_key(public))
    made = signer.sign(message)
    assert bytes.fromhex(made.signature) == signature
    verify_ed25519_raw(public, message, signature)
    signer.public_key.verify_signature(Signature(signer.public_key.keyid, made.signature), message)


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032)
def test_rfc8032_rejects_flipped_bit(
    secret: bytes, public: bytes, message: bytes, signature: bytes
) -> None:
    del secret
    tampered = bytes([signature[0] ^ 1]) + signature[1:]
    with pytest.raises(TrustError) as raised:
        verify_ed25519_raw(public, message, tampered)
    assert raised.value.reason == "ed25519.signature_invalid"


@pytest.mark.parametrize(
    ("public_key", "signature", "reason"),
    [
        pytest.param(b"\x00" * 31, b"\x00" * 64, "ed25519.public_key_length", id="short-key"),
        pytest.param(b"\x00" * 33, b"\x00" * 64, "ed25519.public_key_length", id="long-key"),
        pytest.param(b"", b"\x00" * 64, "ed25519.public_key_length", id="empty-key"),
        pytest.param(b"\x01" * 32, b"", "ed25519.signature_length", id="empty-signature"),
        pytest.param(b"\x01" * 32, b"\x00" * 65, "ed25519.signature_length", id="long-sig"),
    ],
)
def test_wrong_lengths_are_input_errors(public_key: bytes, signature: bytes, reason: str) -> None:
    with pytest.raises(InputError) as raised:
        verify_ed25519_raw(public_key, b"message", signature)
    assert raised.value.reason == reason
