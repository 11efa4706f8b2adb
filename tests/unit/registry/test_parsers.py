"""The registry's own parsers: batch bodies and enrolment requests.

Named bad inputs, Hypothesis properties; the fuzz targets are ``fuzz/fuzz_ingest_batch.py``
and ``fuzz/fuzz_enrolment_request.py``.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brakepedal.crypto.canonical import canonical_json
from brakepedal.crypto.dsse import ParsedEnvelope, parse_envelope, sign_envelope
from brakepedal.crypto.keys import generate_ed25519
from brakepedal.errors import BrakepedalError
from brakepedal.model.limits import DEFAULT_LIMITS
from brakepedal.model.types import DeviceId, EntityId, SiteId
from brakepedal.registry.devices import (
    ENROLMENT_PAYLOAD_TYPE,
    build_enrolment,
    parse_enrolment,
)
from brakepedal.registry.ingest import IngestLimits, _parse_items, parse_batch

SIGNER = generate_ed25519()
LIMITS = IngestLimits(max_reports=3, max_body_bytes=10_000)

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(st.lists(st.dictionaries(st.text(max_size=6), _json, max_size=4), min_size=1, max_size=3))
def test_batch_items_are_the_canonical_bytes_of_what_was_sent(items: list[dict[str, Any]]) -> None:
    body = json.dumps({"reports": items}).encode()
    assert parse_batch(body, LIMITS) == [canonical_json(item) for item in items]


_awkward = st.recursive(
    st.none()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(), max_size=4)
    | st.text(alphabet=st.characters(categories=["Cs"]), max_size=2),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


def _as_sent_or_canonical(item: object) -> bytes:
    try:
        return canonical_json(item)
    except BrakepedalError:
        return json.dumps(item, ensure_ascii=True).encode()


@given(st.lists(st.dictionaries(st.text(max_size=4), _awkward, max_size=3), min_size=1, max_size=3))
def test_batch_items_fast_or_slow_are_the_same_bytes(items: list[dict[str, Any]]) -> None:
    """Floats, huge integers and lone surrogates anywhere in the body (which turn the fast
    encoding off) or in one item: every item still reads as canonical bytes, or as sent."""
    body = json.dumps({"reports": items}).encode()
    # As the body reads back: JSON joins an escaped surrogate pair into one character.
    sent = json.loads(body)["reports"]
    assert parse_batch(body, LIMITS) == [_as_sent_or_canonical(item) for item in sent]


@given(st.binary(max_size=200))
def test_batch_parser_only_raises_named_errors(data: bytes) -> None:
    reason = "ingest.ok"
    try:
        parse_batch(data, LIMITS)
    except BrakepedalError as e:
        reason = e.reason
    assert reason.startswith("ingest.")


@given(
    st.lists(st.binary(max_size=40), min_size=1, max_size=3),
    st.sampled_from(["compact", "spaced", "one-spaced", "one-not-envelope"]),
)
def test_batches_of_canonical_envelopes_read_as_the_general_reader_reads_them(
    payloads: list[bytes], form: str
) -> None:
    """A body of envelopes as agents send them (canonical) is read without re-encoding, each
    item with its envelope; any other body, or one odd item, goes the general way. Both give
    every item's canonical bytes."""
    sent = [sign_envelope(p, "application/vnd.test+json; version=1", [SIGNER]) for p in payloads]
    documents: list[Any] = [json.loads(item) for item in sent]
    if form == "one-not-envelope":
        documents[-1] = {"payload": 1}
    items = [json.dumps(d, separators=(",", ":"), sort_keys=True) for d in documents]
    if form == "one-spaced":
        items[0] = json.dumps(documents[0])
    body = ('{"reports": [' + ", ".join(items) + "]}").encode()
    if form == "spaced":
        body = json.dumps({"reports": documents}, indent=1).encode()
    parsed = _parse_items(body, LIMITS, DEFAULT_LIMITS)
    assert [data for data, _ in parsed] == [canonical_json(d) for d in documents]
    fast = form == "compact"
    assert all(isinstance(known, ParsedEnvelope) for _, known in parsed) is fast
    for data, known in parsed:
        if isinstance(known, ParsedEnvelope):
            assert known == parse_envelope(data)


BAD_BATCHES = [
    ("too many bytes", b" " * 10_001, "ingest.batch_too_large"),
    ("too many reports", b'{"reports": [{}, {}, {}, {}]}', "ingest.batch_too_large"),
    ("not utf-8", b'{"reports": ["\xff"]}', "ingest.body_malformed"),
    ("a string", b'"reports"', "ingest.body_malformed"),
    ("no reports", b"{}", "ingest.body_malformed"),
    ("null reports", b'{"reports": null}', "ingest.body_malformed"),
    ("empty", b'{"reports": []}', "ingest.batch_empty"),
]


@pytest.mark.parametrize(
    ("body", "reason"), [c[1:] for c in BAD_BATCHES], ids=[c[0] for c in BAD_BATCHES]
)
def test_bad_batch_bodies(body: bytes, reason: str) -> None:
    with pytest.raises(BrakepedalError) as caught:
        parse_batch(body, LIMITS)
    assert caught.value.reason == reason


_id = st.from_regex(r"[a-z0-9][a-z0-9._:-]{0,20}", fullmatch=True)


@settings(max_examples=30, deadline=None)
@given(device=_id, operator=_id, site=st.none() | _id)
def test_enrolment_round_trips(device: str, operator: str, site: str | None) -> None:
    at = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    data = build_enrolment(
        SIGNER,
        device=DeviceId(device),
        accelerator="nvidia-h100-sxm5-80gb",
        operator=EntityId(operator),
        site=None if site is None else SiteId(site),
        chain=[],
        at=at,
    )
    request = parse_enrolment(data)
    assert (request.device, request.operator, request.site, request.at) == (
        device,
        operator,
        site,
        at,
    )


def _payload(**changes: Any) -> dict[str, Any]:
    data = build_enrolment(
        SIGNER,
        device=DeviceId("gpu-0"),
        accelerator="nvidia-h100-sxm5-80gb",
        operator=EntityId("lab-a"),
        site=None,
        chain=[],
        at=datetime(2026, 11, 23, tzinfo=UTC),
    )
    payload: dict[str, Any] = json.loads(base64.b64decode(json.loads(data)["payload"]))
    for key, value in changes.items():
        if value is KeyError:
            del payload[key]
        else:
            payload[key] = value
    return payload


def _signed(
    payload: dict[str, Any], signer: Any = SIGNER, kind: str = ENROLMENT_PAYLOAD_TYPE
) -> bytes:
    return sign_envelope(canonical_json(payload), kind, [signer])


BAD_ENROLMENTS = [
    ("signed by another key", _signed(_payload(), generate_ed25519()), "enrolment.not_self_signed"),
    (
        "wrong payload type",
        _signed(_payload(), kind="application/vnd.other+json"),
        "enrolment.payload_type_unexpected",
    ),
    ("field missing", _signed(_payload(site=KeyError)), "enrolment.request_invalid"),
    ("unknown field", _signed(_payload(extra=1)), "enrolment.request_invalid"),
    ("wrong version", _signed(_payload(version=2)), "enrolment.request_invalid"),
    ("chain not a list", _signed(_payload(chain="pem")), "enrolment.request_invalid"),
    ("chain too long", _signed(_payload(chain=["x"] * 6)), "enrolment.request_invalid"),
    ("device id invalid", _signed(_payload(device="GPU 0")), "device_id."),
    ("time not UTC", _signed(_payload(at="2026-11-23T00:00:00+01:00")), "time."),
    (
        "public key not an object",
        _signed(_payload(public_key="ed25519")),
        "enrolment.request_invalid",
    ),
    ("not an envelope", b"[]", "json."),
]


@pytest.mark.parametrize(
    ("data", "reason"), [c[1:] for c in BAD_ENROLMENTS], ids=[c[0] for c in BAD_ENROLMENTS]
)
def test_bad_enrolment_requests(data: bytes, reason: str) -> None:
    with pytest.raises(BrakepedalError) as caught:
        parse_enrolment(data)
    if reason.endswith("."):  # the value parsers' own family of reasons
        assert caught.value.reason.startswith(reason), caught.value
    else:
        assert caught.value.reason == reason, caught.value
