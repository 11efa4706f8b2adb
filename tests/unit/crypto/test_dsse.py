"""DSSE envelopes: round trip, thresholds, and a table of named bad inputs."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from brakepedal.crypto import canonical
from brakepedal.crypto.dsse import (
    PAYLOAD_TYPE_FORMAT,
    ParsedEnvelope,
    ThresholdResult,
    brakepedal_payload_type,
    canonical_envelope,
    check_threshold,
    envelope_from_json,
    open_envelope,
    parse_envelope,
    require_threshold,
    sign_envelope,
)
from brakepedal.crypto.keys import CryptoSigner, Key, ed25519_public_key, key_fingerprint
from brakepedal.errors import BrakepedalError, InputError, TrustError
from brakepedal.model.limits import DEFAULT_LIMITS, Limits

PAYLOAD_TYPE = brakepedal_payload_type("usage-report", 1)
PAYLOAD = b'{"device":"gpu-0","sequence":1}'


def _signer(index: int) -> CryptoSigner:
    private_key = Ed25519PrivateKey.from_private_bytes(bytes([index + 1]) * 32)
    public = ed25519_public_key(private_key.public_key().public_bytes_raw())
    return CryptoSigner(private_key, public)


SIGNERS = [_signer(i) for i in range(4)]
KEYS: list[Key] = [signer.public_key for signer in SIGNERS]
ONE = sign_envelope(PAYLOAD, PAYLOAD_TYPE, SIGNERS[:1])
TWO = sign_envelope(PAYLOAD, PAYLOAD_TYPE, SIGNERS[:2])


def _edit(data: bytes, change: Callable[[dict[str, Any]], object]) -> bytes:
    document = json.loads(data)
    change(document)
    return json.dumps(document).encode()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _flip_sig(document: dict[str, Any]) -> None:
    sig = bytearray(base64.b64decode(document["signatures"][0]["sig"]))
    sig[10] ^= 1
    document["signatures"][0]["sig"] = _b64(bytes(sig))


def _duplicate_first_sig(document: dict[str, Any]) -> None:
    document["signatures"] = [document["signatures"][0]] * 2


def test_payload_type_scheme() -> None:
    assert PAYLOAD_TYPE == "application/vnd.brakepedal.usage-report+json; version=1"
    assert PAYLOAD_TYPE_FORMAT.format(thing="pause-order", version=2) == brakepedal_payload_type(
        "pause-order", 2
    )


@pytest.mark.parametrize(
    ("thing", "version"),
    [
        pytest.param("Usage", 1, id="uppercase"),
        pytest.param("usage report", 1, id="space"),
        pytest.param("-usage", 1, id="leading-dash"),
        pytest.param("usage", 0, id="version-zero"),
        pytest.param("usage", True, id="version-bool"),
    ],
)
def test_payload_type_scheme_refuses(thing: str, version: int) -> None:
    with pytest.raises(InputError) as raised:
        brakepedal_payload_type(thing, version)
    assert raised.value.reason == "envelope.payload_type_invalid"


def test_round_trip_one_key() -> None:
    opened = open_envelope(ONE, expected_payload_type=PAYLOAD_TYPE, keys=KEYS[:1], threshold=1)
    assert opened.payload == PAYLOAD
    assert opened.payload_type == PAYLOAD_TYPE
    assert opened.signed_by == (key_fingerprint(KEYS[0]),)


def test_round_trip_two_of_three_keys() -> None:
    opened = open_envelope(TWO, expected_payload_type=PAYLOAD_TYPE, keys=KEYS[:3], threshold=2)
    assert opened.signed_by == tuple(sorted(key_fingerprint(key) for key in KEYS[:2]))


def test_envelope_is_canonical_dsse_json() -> None:
    document = json.loads(ONE)
    assert set(document) == {"payload", "payloadType", "signatures"}
    assert base64.b64decode(document["payload"]) == PAYLOAD
    assert document["signatures"][0]["keyid"] == key_fingerprint(KEYS[0])
    assert sign_envelope(PAYLOAD, PAYLOAD_TYPE, SIGNERS[:1]) == ONE  # Ed25519 is deterministic


def test_keyid_is_only_a_hint() -> None:
    relabelled = _edit(ONE, lambda d: d["signatures"][0].update(keyid="someone-else"))
    unlabelled = _edit(ONE, lambda d: d["signatures"][0].pop("keyid"))
    for data in (relabelled, unlabelled):
        opened = open_envelope(data, expected_payload_type=PAYLOAD_TYPE, keys=KEYS, threshold=1)
        assert opened.signed_by == (key_fingerprint(KEYS[0]),)


def test_threshold_result_reports_who_signed_and_missing() -> None:
    result = check_threshold(parse_envelope(TWO), keys=KEYS, threshold=3)
    assert result == ThresholdResult(3, tuple(sorted(key_fingerprint(k) for k in KEYS[:2])), 0)
    assert result.missing == 1
    with pytest.raises(TrustError) as raised:
        require_threshold(result)
    assert raised.value.reason == "envelope.threshold_not_met"


def test_same_key_under_two_keyids_counts_once() -> None:
    # Two Key objects for one key material: securesystemslib would count them twice by keyid.
    key = KEYS[0]
    other_label = type(key)("alias", key.keytype, key.scheme, dict(key.keyval))
    with pytest.raises(InputError) as raised:
        open_envelope(ONE, expected_payload_type=PAYLOAD_TYPE, keys=[key, other_label], threshold=2)
    assert raised.value.reason == "envelope.duplicate_key"


@pytest.mark.parametrize(
    ("respell", "reason"),
    [
        pytest.param(str.upper, "key.public_invalid", id="upper-case-hex"),
        pytest.param(lambda hexkey: " " + hexkey, "key.public_invalid", id="leading-space"),
        pytest.param(lambda hexkey: hexkey + "\n", "key.public_invalid", id="trailing-newline"),
    ],
)
def test_one_key_respelled_cannot_meet_a_threshold_alone(
    respell: Callable[[str], str], reason: str
) -> None:
    key = KEYS[0]
    other = type(key)("b", key.keytype, key.scheme, {"public": respell(key.keyval["public"])})
    envelope = json.loads(ONE)
    envelope["signatures"] = envelope["signatures"] * 2
    with pytest.raises(InputError) as raised:
        open_envelope(
            json.dumps(envelope).encode(),
            expected_payload_type=PAYLOAD_TYPE,
            keys=[key, other],
            threshold=2,
        )
    assert raised.value.reason == reason


@pytest.mark.parametrize(
    "keyval",
    [
        pytest.param(lambda public: {"public": public, "private": ""}, id="extra-keyval-field"),
    ],
)
def test_malformed_trusted_key_is_refused(keyval: Callable[[str], dict[str, str]]) -> None:
    key = KEYS[0]
    odd = type(key)("b", key.keytype, key.scheme, keyval(key.keyval["public"]))
    with pytest.raises(InputError) as raised:
        open_envelope(ONE, expected_payload_type=PAYLOAD_TYPE, keys=[odd], threshold=1)
    assert raised.value.reason == "key.public_invalid"


Case = tuple[bytes, dict[str, Any], type[BrakepedalError], str]


def _case(
    data: bytes,
    reason: str,
    error: type[BrakepedalError] = InputError,
    *,
    keys: Sequence[Key] = KEYS[:1],
    threshold: int = 1,
    limits: Limits | None = None,
) -> Case:
    options: dict[str, Any] = {"keys": list(keys), "threshold": threshold}
    if limits is not None:
        options["limits"] = limits
    return data, options, error, reason


MANY = sign_envelope(PAYLOAD, PAYLOAD_TYPE, SIGNERS)

BAD_ENVELOPES = [
    pytest.param(
        *_case(
            sign_envelope(PAYLOAD, brakepedal_payload_type("pause-order", 1), SIGNERS[:1]),
            "envelope.payload_type_unexpected",
            TrustError,
        ),
        id="wrong-payload-type",
    ),
    pytest.param(
        *_case(
            _edit(ONE, lambda d: d.update(payload=_b64(PAYLOAD + b" "))),
            "envelope.signature_invalid",
            TrustError,
        ),
        id="tampered-payload",
    ),
    pytest.param(
        *_case(
            _edit(ONE, lambda d: d.update(payloadType=brakepedal_payload_type("usage-report", 2))),
            "envelope.payload_type_unexpected",
            TrustError,
        ),
        id="tampered-payload-type",
    ),
    pytest.param(
        *_case(_edit(ONE, _flip_sig), "envelope.signature_invalid", TrustError), id="tampered-sig"
    ),
    pytest.param(
        *_case(
            _edit(ONE, _duplicate_first_sig),
            "envelope.threshold_not_met",
            TrustError,
            keys=KEYS[:2],
            threshold=2,
        ),
        id="duplicate-signature-counted-once",
    ),
    pytest.param(
        *_case(ONE, "envelope.signature_invalid", TrustError, keys=KEYS[1:3]), id="unknown-key"
    ),
    pytest.param(
        *_case(ONE, "envelope.threshold_not_met", TrustError, keys=KEYS[:2], threshold=2),
        id="threshold-not-met",
    ),
    pytest.param(
        *_case(ONE, "envelope.threshold_invalid", keys=KEYS[:2], threshold=3),
        id="threshold-above-keys",
    ),
    pytest.param(*_case(ONE, "envelope.threshold_invalid", threshold=0), id="threshold-zero"),
    pytest.param(*_case(ONE, "envelope.no_keys", keys=[]), id="empty-keys"),
    pytest.param(
        *_case(ONE, "envelope.duplicate_key", keys=[KEYS[0], KEYS[0]]), id="duplicate-keys"
    ),
    pytest.param(
        *_case(_edit(ONE, lambda d: d.update(payload="!!!!")), "envelope.base64_invalid"),
        id="non-base64-payload",
    ),
    pytest.param(
        *_case(_edit(ONE, lambda d: d.update(payload="e30")), "envelope.base64_invalid"),
        id="unpadded-base64",
    ),
    pytest.param(
        *_case(_edit(ONE, lambda d: d.update(payload="e31=")), "envelope.base64_invalid"),
        id="non-canonical-base64-bits",
    ),
    pytest.param(
        *_case(_edit(ONE, lambda d: d.update(payload="e3 0=")), "envelope.base64_invalid"),
        id="base64-with-space",
    ),
    pytest.param(
        *_case(
            _edit(ONE, lambda d: d.update(payload=_b64(b"{}").replace("=", "") + "-_")),
            "envelope.base64_invalid",
        ),
        id="url-safe-alphabet",
    ),
    pytest.param(
        *_case(
            _edit(ONE, lambda d: d["signatures"][0].update(sig="not base64!")),
            "envelope.base64_invalid",
        ),
        id="non-base64-sig",
    ),
    pytest.param(*_case(b"not json", "json.invalid"), id="not-json"),
    pytest.param(*_case(b"[]", "json.not_object"), id="json-array"),
    pytest.param(
        *_case(ONE[:-1] + b',"payload":"e30="}', "json.duplicate_key"), id="duplicate-field"
    ),
    pytest.param(
        *_case(ONE, "envelope.too_large", limits=Limits(max_envelope_bytes=len(ONE) - 1)),
        id="too-large",
    ),
    pytest.param(
        *_case(MANY, "envelope.too_many_signatures", limits=Limits(max_envelope_signatures=3)),
        id="too-many-signatures",
    ),
    pytest.param(
        *_case(_edit(ONE, lambda d: d.update(signatures=[])), "envelope.no_signatures"),
        id="no-signatures",
    ),
    pytest.param(
        *_case(_edit(ONE, lambda d: d.pop("payloadType")), "envelope.field_missing"),
        id="missing-payload-type",
    ),
    pytest.param(
        *_case(_edit(ONE, lambda d: d.update(extra=1)), "envelope.field_unknown"),
        id="unknown-field",
    ),
    pytest.param(
        *_case(_edit(ONE, lambda d: d["signatures"][0].update(cert="x")), "envelope.field_unknown"),
        id="unknown-signature-field",
    ),
    pytest.param(
        *_case(_edit(ONE, lambda d: d["signatures"][0].pop("sig")), "envelope.field_missing"),
        id="signature-without-sig",
    ),
    pytest.param(
        *_case(_edit(ONE, lambda d: d.update(signatures=["x"])), "envelope.signature_malformed"),
        id="signature-not-object",
    ),
    pytest.param(
        *_case(
            _edit(ONE, lambda d: d["signatures"][0].update(keyid=7)),
            "envelope.signature_malformed",
        ),
        id="keyid-not-string",
    ),
    pytest.param(
        *_case(_edit(ONE, lambda d: d.update(payloadType="")), "envelope.payload_type_invalid"),
        id="empty-payload-type",
    ),
    pytest.param(
        *_case(_edit(ONE, lambda d: d.update(payloadType=7)), "envelope.payload_type_invalid"),
        id="payload-type-not-string",
    ),
    pytest.param(
        *_case(
            _edit(ONE, lambda d: d.update(payloadType="t\u00e9st")),
            "envelope.payload_type_invalid",
        ),
        id="non-ascii-payload-type",
    ),
]


@pytest.mark.parametrize(("data", "options", "error", "reason"), BAD_ENVELOPES)
def test_open_envelope_refuses(
    data: bytes, options: dict[str, Any], error: type[BrakepedalError], reason: str
) -> None:
    with pytest.raises(BrakepedalError) as raised:
        open_envelope(data, expected_payload_type=PAYLOAD_TYPE, **options)
    assert type(raised.value) is error
    assert raised.value.reason == reason


def test_sign_refuses_no_signers_and_duplicates() -> None:
    with pytest.raises(InputError) as raised:
        sign_envelope(PAYLOAD, PAYLOAD_TYPE, [])
    assert raised.value.reason == "envelope.no_signers"
    with pytest.raises(InputError) as raised:
        sign_envelope(PAYLOAD, PAYLOAD_TYPE, [SIGNERS[0], SIGNERS[0]])
    assert raised.value.reason == "envelope.duplicate_signer"
    with pytest.raises(InputError) as raised:
        sign_envelope(PAYLOAD, "", SIGNERS[:1])
    assert raised.value.reason == "envelope.payload_type_invalid"


@given(payload=st.binary(max_size=256), count=st.integers(min_value=1, max_value=4))
def test_round_trip_property(payload: bytes, count: int) -> None:
    data = sign_envelope(payload, PAYLOAD_TYPE, SIGNERS[:count])
    opened = open_envelope(data, expected_payload_type=PAYLOAD_TYPE, keys=KEYS, threshold=count)
    assert opened.payload == payload
    assert len(opened.signed_by) == count


class FaultySigner(CryptoSigner):
    """Signs with one key and claims another: a broken HSM."""

    def __init__(self) -> None:
        super().__init__(Ed25519PrivateKey.from_private_bytes(bytes([9]) * 32), None)
        self._claimed = SIGNERS[0].public_key

    @property
    def public_key(self) -> Any:
        return self._claimed


def test_faulty_signer_is_caught_at_signing() -> None:
    with pytest.raises(TrustError) as raised:
        sign_envelope(PAYLOAD, PAYLOAD_TYPE, [FaultySigner()])
    assert raised.value.reason == "envelope.signer_faulty"


# ---------------------------------------------------------------- the fast path of canonical input


def _strict(data: bytes, limits: Limits = DEFAULT_LIMITS) -> ParsedEnvelope | BrakepedalError:
    """The strict path alone (JSON reader, then the envelope's checks): its envelope or error."""
    try:
        return envelope_from_json(canonical._parse_strict(data, limits, "envelope"), limits=limits)
    except BrakepedalError as e:
        return e


_envelope_like = st.fixed_dictionaries(
    {
        "payload": st.binary(max_size=24).map(_b64) | st.sampled_from(["QQ", "QR==", "", "!"]),
        "payloadType": st.sampled_from([PAYLOAD_TYPE, "", "t\u00e9", 'a"b', "x" * 257]),
        "signatures": st.lists(
            st.fixed_dictionaries(
                {"sig": st.binary(max_size=8).map(_b64)},
                optional={"keyid": st.none() | st.text(max_size=3) | st.integers(0, 2)},
            ),
            max_size=3,
        ),
    },
    optional={"extra": st.integers(0, 2)},
)


@given(_envelope_like, st.integers(0, 4))
def test_the_envelope_fast_path_only_accepts_what_the_strict_path_accepts_alike(
    document: dict[str, Any], form: int
) -> None:
    """What canonical_envelope accepts, the strict path accepts with an equal envelope; it
    never refuses on its own (``None`` sends the input to the strict path)."""
    compact = json.dumps(document, separators=(",", ":"), sort_keys=True)
    forms = [
        json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode(),
        compact.encode(),
        json.dumps(document, sort_keys=True).encode(),
        json.dumps(document, separators=(",", ":")).encode(),
        compact.replace('"sig":"', '"sig":"\\u0041', 1).encode(),
    ]
    data = forms[form]
    fast = canonical_envelope(data)
    strict = _strict(data)
    if fast is not None:
        assert strict == fast
    _assert_same(_parse(data), strict)


def _parse(data: bytes, limits: Limits = DEFAULT_LIMITS) -> ParsedEnvelope | BrakepedalError:
    try:
        return parse_envelope(data, limits=limits)
    except BrakepedalError as e:
        return e


def _assert_same(
    got: ParsedEnvelope | BrakepedalError, expected: ParsedEnvelope | BrakepedalError
) -> None:
    if isinstance(got, BrakepedalError) and isinstance(expected, BrakepedalError):
        assert (got.reason, got.message) == (expected.reason, expected.message)
    else:
        assert got == expected


def test_the_envelope_fast_path_takes_what_brakepedal_writes() -> None:
    fast = canonical_envelope(ONE)
    assert fast is not None
    assert fast == _strict(ONE)
    assert fast.signatures[0].keyid is not None


@pytest.mark.parametrize(
    ("data", "limits"),
    [
        pytest.param(_edit(ONE, lambda d: d.update(extra=1)), DEFAULT_LIMITS, id="unknown-field"),
        pytest.param(ONE.replace(b",", b", ", 1), DEFAULT_LIMITS, id="whitespace"),
        pytest.param(
            _edit(ONE, lambda d: d["signatures"][0].update(keyid=None)),
            DEFAULT_LIMITS,
            id="keyid-null",
        ),
        pytest.param(_edit(ONE, lambda d: d.update(signatures=[])), DEFAULT_LIMITS, id="no-sigs"),
        pytest.param(
            _edit(ONE, lambda d: d.update(payload=d["payload"][:-2] + "==")),
            DEFAULT_LIMITS,
            id="base64-stray-bits",
        ),
        pytest.param(ONE, Limits(max_envelope_bytes=len(ONE) - 1), id="over-size-limit"),
        pytest.param(ONE, Limits(max_json_depth=2), id="over-depth-limit"),
        pytest.param(
            sign_envelope(PAYLOAD, PAYLOAD_TYPE, SIGNERS[:2]),
            Limits(max_envelope_signatures=1),
            id="over-signature-limit",
        ),
    ],
)
def test_the_envelope_fast_path_declines(data: bytes, limits: Limits) -> None:
    """Near misses go to the strict path, which gives its own verdict (and names defects)."""
    assert canonical_envelope(data, limits=limits) is None
    if len(data) <= limits.max_envelope_bytes:
        _assert_same(_parse(data, limits), _strict(data, limits))
    else:
        with pytest.raises(InputError) as raised:
            parse_envelope(data, limits=limits)
        assert raised.value.reason == "envelope.too_large"
