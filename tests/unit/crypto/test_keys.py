"""Ed25519 keys: generation, PEM, public key JSON, fingerprints, custom signers."""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from brakepedal.crypto.canonical import canonical_json
from brakepedal.crypto.dsse import open_envelope, sign_envelope
from brakepedal.crypto.keys import (
    CryptoSigner,
    Key,
    Signature,
    Signer,
    SSlibKey,
    ed25519_public_key,
    generate_ed25519,
    key_fingerprint,
    private_key_to_pem,
    public_key_from_json,
    public_key_to_json,
    signer_from_pem,
)
from brakepedal.errors import InputError, TrustError

# RFC 8032 TEST 1: a published test key, never a secret.
TEST_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
TEST_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"


def test_generated_keyid_is_fingerprint() -> None:
    signer = generate_ed25519()
    assert signer.public_key.keyid == key_fingerprint(signer.public_key)
    assert signer.public_key.keytype == "ed25519"


def test_fingerprint_is_sha256_of_canonical_identity() -> None:
    key = ed25519_public_key(bytes.fromhex(TEST_PUBLIC))
    identity = {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": TEST_PUBLIC}}
    assert key_fingerprint(key) == hashlib.sha256(canonical_json(identity)).hexdigest()


def test_fingerprint_equals_securesystemslib_default_keyid() -> None:
    for _ in range(8):
        public = Ed25519PrivateKey.generate().public_key()
        assert SSlibKey.from_crypto(public).keyid == key_fingerprint(SSlibKey.from_crypto(public))


def test_fingerprint_ignores_declared_keyid() -> None:
    key = ed25519_public_key(bytes.fromhex(TEST_PUBLIC))
    relabelled = SSlibKey("not-the-fingerprint", key.keytype, key.scheme, dict(key.keyval))
    assert key_fingerprint(relabelled) == key_fingerprint(key)


@pytest.mark.parametrize("password", [None, b"correct horse"], ids=["plain", "encrypted"])
def test_pem_round_trip(password: bytes | None) -> None:
    signer = generate_ed25519()
    pem = private_key_to_pem(signer, password=password)
    loaded = signer_from_pem(pem, password=password)
    assert loaded.public_key == signer.public_key
    assert loaded.private_bytes == signer.private_bytes
    if password is not None:
        assert b"ENCRYPTED" in pem
        assert signer.private_bytes not in pem


def _plain_pem() -> bytes:
    return private_key_to_pem(generate_ed25519())


def _encrypted_pem() -> bytes:
    return private_key_to_pem(generate_ed25519(), password=b"right")


def _ecdsa_pem() -> bytes:
    private_key = generate_private_key(SECP256R1())
    return private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


BAD_PEMS = [
    pytest.param(b"", None, "key.pem_invalid", id="empty"),
    pytest.param(b"garbage", None, "key.pem_invalid", id="garbage"),
    pytest.param(
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        None,
        "key.pem_invalid",
        id="bad-der",
    ),
    pytest.param(TEST_SEED, None, "key.pem_invalid", id="raw-seed"),
    pytest.param(_ecdsa_pem(), None, "key.type_unsupported", id="ecdsa-key"),
    pytest.param(_encrypted_pem(), None, "key.password_required", id="no-password"),
    pytest.param(_encrypted_pem(), b"wrong", "key.password_wrong", id="wrong-password"),
    pytest.param(_plain_pem(), b"unneeded", "key.password_unexpected", id="needless-password"),
]


@pytest.mark.parametrize(("pem", "password", "reason"), BAD_PEMS)
def test_signer_from_pem_refuses(pem: bytes, password: bytes | None, reason: str) -> None:
    with pytest.raises(InputError) as raised:
        signer_from_pem(pem, password=password)
    assert raised.value.reason == reason


def test_empty_password_refused() -> None:
    with pytest.raises(InputError) as raised:
        private_key_to_pem(generate_ed25519(), password=b"")
    assert raised.value.reason == "key.password_empty"


def test_public_key_json_round_trip_and_golden() -> None:
    key = ed25519_public_key(bytes.fromhex(TEST_PUBLIC))
    data = public_key_to_json(key)
    assert data == canonical_json(
        {
            "keyid": key_fingerprint(key),
            "keytype": "ed25519",
            "keyval": {"public": TEST_PUBLIC},
            "scheme": "ed25519",
        }
    )
    assert public_key_from_json(data) == key


def _key_json(**changes: object) -> bytes:
    key = ed25519_public_key(bytes.fromhex(TEST_PUBLIC))
    document = json.loads(public_key_to_json(key))
    document.update(changes)
    return json.dumps({k: v for k, v in document.items() if v is not None}).encode()


BAD_KEY_JSON = [
    pytest.param(b"[]", InputError, "json.not_object", id="not-object"),
    pytest.param(b'{"keyid":"a","keyid":"a"}', InputError, "json.duplicate_key", id="dup-field"),
    pytest.param(_key_json(keyid=None), InputError, "key.field_missing", id="no-keyid"),
    pytest.param(_key_json(extra=1), InputError, "key.field_unknown", id="unknown-field"),
    pytest.param(_key_json(keytype="rsa"), InputError, "key.type_unsupported", id="rsa"),
    pytest.param(
        _key_json(keytype=["ed25519"]), InputError, "key.type_unsupported", id="keytype-list"
    ),
    pytest.param(
        _key_json(scheme={"a": 1}), InputError, "key.type_unsupported", id="scheme-object"
    ),
    pytest.param(_key_json(scheme="x"), InputError, "key.type_unsupported", id="bad-scheme"),
    pytest.param(_key_json(keyval="ab"), InputError, "key.public_invalid", id="keyval-str"),
    pytest.param(_key_json(keyval={}), InputError, "key.public_invalid", id="keyval-empty"),
    pytest.param(
        _key_json(keyval={"public": TEST_PUBLIC, "private": "00"}),
        InputError,
        "key.public_invalid",
        id="keyval-private",
    ),
    pytest.param(
        _key_json(keyval={"public": TEST_PUBLIC.upper()}),
        InputError,
        "key.public_invalid",
        id="uppercase-hex",
    ),
    pytest.param(
        _key_json(keyval={"public": TEST_PUBLIC[:-2]}), InputError, "key.public_invalid", id="short"
    ),
    pytest.param(_key_json(keyid=5), InputError, "key.keyid_invalid", id="keyid-int"),
    pytest.param(_key_json(keyid="ab"), InputError, "key.keyid_invalid", id="keyid-short"),
    pytest.param(
        _key_json(keyid="0" * 64), TrustError, "key.fingerprint_mismatch", id="keyid-mismatch"
    ),
]


@pytest.mark.parametrize(("data", "error", "reason"), BAD_KEY_JSON)
def test_public_key_from_json_refuses(data: bytes, error: type[Exception], reason: str) -> None:
    with pytest.raises(error) as raised:
        public_key_from_json(data)
    assert isinstance(raised.value, InputError | TrustError)
    assert raised.value.reason == reason


def test_public_key_to_json_refuses_extra_fields_and_other_types() -> None:
    key = ed25519_public_key(bytes.fromhex(TEST_PUBLIC))
    extra = SSlibKey(key.keyid, key.keytype, key.scheme, dict(key.keyval), {"x": 1})
    with pytest.raises(InputError) as raised:
        public_key_to_json(extra)
    assert raised.value.reason == "key.field_unknown"
    ecdsa = SSlibKey.from_crypto(generate_private_key(SECP256R1()).public_key())
    with pytest.raises(InputError) as raised:
        public_key_to_json(ecdsa)
    assert raised.value.reason == "key.type_unsupported"


def test_raw_public_key_length_checked() -> None:
    with pytest.raises(InputError) as raised:
        ed25519_public_key(b"\x00" * 31)
    assert raised.value.reason == "ed25519.public_key_length"


class RemoteSigner(Signer):
    """A minimal non-CryptoSigner, standing in for an HSM or KMS signer."""

    def __init__(self, seed: bytes) -> None:
        self._private_key = Ed25519PrivateKey.from_private_bytes(seed)
        self._public_key = ed25519_public_key(self._private_key.public_key().public_bytes_raw())
        self.calls = 0

    @classmethod
    def from_priv_key_uri(
        cls, priv_key_uri: str, public_key: Key, secrets_handler: object = None
    ) -> RemoteSigner:
        raise NotImplementedError

    @property
    def public_key(self) -> Key:
        return self._public_key

    def sign(self, payload: bytes) -> Signature:
        self.calls += 1
        return Signature(self._public_key.keyid, self._private_key.sign(payload).hex())


def test_custom_signer_plugs_into_envelopes() -> None:
    remote = RemoteSigner(TEST_SEED)
    assert CryptoSigner not in type(remote).__mro__
    payload_type = "application/vnd.brakepedal.test+json; version=1"
    envelope = sign_envelope(b"{}", payload_type, [remote])
    opened = open_envelope(
        envelope, expected_payload_type=payload_type, keys=[remote.public_key], threshold=1
    )
    assert remote.calls == 1
    assert opened.signed_by == (key_fingerprint(remote.public_key),)
    assert remote.public_key.keyval == {"public": TEST_PUBLIC}
