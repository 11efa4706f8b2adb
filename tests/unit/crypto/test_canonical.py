"""RFC 8785 canonical JSON and the strict JSON parser."""

from __future__ import annotations

import hashlib
import json
import math
import struct
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from brakepedal.crypto import canonical
from brakepedal.crypto.canonical import (
    MAX_SAFE_INTEGER,
    canonical_json,
    is_canonical,
    parse_json_object,
    require_canonical,
)
from brakepedal.errors import InputError
from brakepedal.model.limits import DEFAULT_LIMITS, Limits
from brakepedal.model.types import Flop

JCS = Path(__file__).parents[2] / "vectors" / "jcs"
JCS_NAMES = sorted(path.name for path in (JCS / "input").iterdir())


def _contains_float(value: object) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, list):
        return any(_contains_float(item) for item in value)
    if isinstance(value, dict):
        return any(_contains_float(item) for item in value.values())
    return False


def test_all_six_rfc8785_vectors_present() -> None:
    assert len(JCS_NAMES) == 6


@pytest.mark.parametrize("name", JCS_NAMES)
def test_rfc8785_vector_byte_for_byte(name: str) -> None:
    value = json.loads((JCS / "input" / name).read_bytes())
    expected = (JCS / "output" / name).read_bytes()
    if _contains_float(value):
        # Signed JSON refuses floats; the encoder we wrap must still be exact on them.
        assert rfc8785.dumps(value) == expected
        with pytest.raises(InputError) as raised:
            canonical_json(value)
        assert raised.value.reason == "canonical.float_not_allowed"
    else:
        assert canonical_json(value) == expected
        if isinstance(value, dict):  # arrays.json is a top-level array
            assert require_canonical(expected, what="jcs") == value


def _es6_stream(count: int) -> list[tuple[int, float]]:
    """The first ``count`` (bit pattern, double) pairs of the JCS number test stream."""
    document = json.loads((JCS / "es6_numbers.json").read_text())
    patterns = [int(text, 16) for text in document["static_u64_hex"]]
    patterns += [0x0010000000000000 + i for i in range(2000)]
    pairs = [(bits, struct.unpack("<d", struct.pack("<Q", bits))[0]) for bits in patterns]
    state = bytes(32)
    while len(pairs) < count:
        state = hashlib.sha256(state).digest()
        for (number,) in struct.iter_unpack("<d", state):
            if number != 0.0 and math.isfinite(number):
                pairs.append((struct.unpack("<Q", struct.pack("<d", number))[0], number))
    return pairs[:count]


@pytest.mark.parametrize("lines", [1000, 10000])
def test_es6_number_stream_digest(lines: int) -> None:
    document = json.loads((JCS / "es6_numbers.json").read_text())
    (expected,) = [
        row for row in document["expected_sha256_of_first_n_lines"] if row["lines"] == lines
    ]
    text = b"".join(
        f"{bits:x},".encode() + rfc8785.dumps(number) + b"\n" for bits, number in _es6_stream(lines)
    )
    assert len(text) == expected["bytes"]
    assert hashlib.sha256(text).hexdigest() == expected["sha256"]


def test_es6_safe_integers_match_canonical_ints() -> None:
    checked = 0
    for _, number in _es6_stream(10000):
        if number.is_integer() and abs(number) <= MAX_SAFE_INTEGER:
            assert canonical_json(int(number)) == rfc8785.dumps(number)
            checked += 1
    assert checked > 0


BAD_VALUES = [
    pytest.param(1.5, "canonical.float_not_allowed", id="float"),
    pytest.param(1.0, "canonical.float_not_allowed", id="integral-float"),
    pytest.param(math.nan, "canonical.float_not_allowed", id="nan"),
    pytest.param({"a": [math.inf]}, "canonical.float_not_allowed", id="nested-inf"),
    pytest.param(2**53, "canonical.integer_out_of_range", id="2^53"),
    pytest.param(-(2**53), "canonical.integer_out_of_range", id="minus-2^53"),
    pytest.param(10**30, "canonical.integer_out_of_range", id="huge-int"),
    pytest.param({1: "a"}, "canonical.key_not_string", id="int-key"),
    pytest.param({("a",): 1}, "canonical.key_not_string", id="tuple-key"),
    pytest.param({"a", "b"}, "canonical.type_unsupported", id="set"),
    pytest.param(b"bytes", "canonical.type_unsupported", id="bytes"),
    pytest.param(Flop(10), "canonical.type_unsupported", id="flop-object"),
    pytest.param("\ud800", "canonical.string_invalid", id="lone-surrogate"),
    pytest.param({"\udfff": 1}, "canonical.string_invalid", id="surrogate-key"),
    pytest.param(json.loads("[" * 200 + "]" * 200), "canonical.too_deep", id="nested-200-deep"),
]


@pytest.mark.parametrize(("value", "reason"), BAD_VALUES)
def test_canonical_json_refuses(value: object, reason: str) -> None:
    with pytest.raises(InputError) as raised:
        canonical_json(value)
    assert raised.value.reason == reason


def test_canonical_json_edges() -> None:
    assert canonical_json(MAX_SAFE_INTEGER) == b"9007199254740991"
    assert canonical_json(-MAX_SAFE_INTEGER) == b"-9007199254740991"
    assert canonical_json((1, True, None)) == b"[1,true,null]"
    assert canonical_json({"b": 1, "a": "\u00e9"}) == '{"a":"\u00e9","b":1}'.encode()


SMALL = Limits(max_json_bytes=64, max_json_depth=3)

BAD_DOCUMENTS = [
    pytest.param(b'{"a":"' + b"x" * 64 + b'"}', "json.too_large", id="too-large"),
    pytest.param(b'{"a":"\xff"}', "json.encoding_invalid", id="invalid-utf8"),
    pytest.param(b'{"a":"\xed\xa0\x80"}', "json.encoding_invalid", id="utf8-encoded-surrogate"),
    pytest.param(b'\xef\xbb\xbf{"a":1}', "json.invalid", id="byte-order-mark"),
    pytest.param(b"", "json.invalid", id="empty"),
    pytest.param(b"{", "json.invalid", id="truncated"),
    pytest.param(b'{"a":1} x', "json.invalid", id="trailing-garbage"),
    pytest.param(b"{'a':1}", "json.invalid", id="single-quotes"),
    pytest.param(b'{"a":1,}', "json.invalid", id="trailing-comma"),
    pytest.param(b'{"a":1,"a":2}', "json.duplicate_key", id="duplicate-key"),
    pytest.param(b'{"a":{"b":1,"b":1}}', "json.duplicate_key", id="nested-duplicate"),
    pytest.param(b'{"a":NaN}', "json.constant_not_allowed", id="nan"),
    pytest.param(b'{"a":Infinity}', "json.constant_not_allowed", id="infinity"),
    pytest.param(b'{"a":-Infinity}', "json.constant_not_allowed", id="minus-infinity"),
    pytest.param(b'{"a":1.5}', "json.float_not_allowed", id="float"),
    pytest.param(b'{"a":1e3}', "json.float_not_allowed", id="exponent"),
    pytest.param(b'{"a":9007199254740992}', "json.integer_out_of_range", id="2^53"),
    pytest.param(b'{"a":-9007199254740992}', "json.integer_out_of_range", id="minus-2^53"),
    pytest.param(b'{"a":' + b"9" * 50 + b"}", "json.integer_out_of_range", id="many-digits"),
    pytest.param(b'{"a":"\\ud800"}', "json.string_invalid", id="escaped-lone-surrogate"),
    pytest.param(b'{"\\udc00":1}', "json.string_invalid", id="surrogate-key"),
    pytest.param(b'{"a":[[[1]]]}', "json.too_deep", id="deeper-than-limit"),
    pytest.param(b"[1]", "json.not_object", id="array"),
    pytest.param(b'"text"', "json.not_object", id="string"),
    pytest.param(b"null", "json.not_object", id="null"),
]


@pytest.mark.parametrize(("data", "reason"), BAD_DOCUMENTS)
def test_parse_json_object_refuses(data: bytes, reason: str) -> None:
    with pytest.raises(InputError) as raised:
        parse_json_object(data, limits=SMALL, what="doc")
    assert raised.value.reason == reason


def test_parse_recursion_bomb_is_our_error() -> None:
    data = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(InputError) as raised:
        parse_json_object(data, limits=Limits(max_json_bytes=10**6), what="doc")
    assert raised.value.reason == "json.too_deep"


def test_parse_accepts_depth_at_limit() -> None:
    assert parse_json_object(b'{"a":[{"b":1}]}', limits=SMALL, what="doc") == {"a": [{"b": 1}]}


NOT_CANONICAL = [
    pytest.param(b'{ "a":1}', id="whitespace"),
    pytest.param(b'{"b":1,"a":2}', id="unsorted-keys"),
    pytest.param(b'{"a":"\\u0041"}', id="needless-escape"),
    pytest.param(b'{"a":-0}', id="negative-zero"),
    pytest.param(b'{"a":1}\n', id="trailing-newline"),
    pytest.param(b'{"a":"\\/"}', id="escaped-solidus"),
]


@pytest.mark.parametrize("data", NOT_CANONICAL)
def test_require_canonical_refuses(data: bytes) -> None:
    with pytest.raises(InputError) as raised:
        require_canonical(data)
    assert raised.value.reason == "canonical.not_canonical"
    assert not is_canonical(data)


def test_is_canonical_false_for_garbage_true_for_canonical() -> None:
    assert not is_canonical(b"not json")
    assert is_canonical(b'{"a":[1,"\\u000f"],"b":null}')


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=6)


@given(json_objects)
def test_canonical_parse_round_trip(value: dict[str, Any]) -> None:
    encoded = canonical_json(value)
    assert canonical_json(parse_json_object(encoded, what="doc")) == encoded
    assert require_canonical(encoded) == value
    assert json.loads(encoded) == value


@given(json_objects)
def test_canonical_is_independent_of_key_order(value: dict[str, Any]) -> None:
    reversed_order = dict(reversed(list(value.items())))
    assert canonical_json(reversed_order) == canonical_json(value)


_fast_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=4),
            inner,
            max_size=3,
        )
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=4), _fast_json, max_size=4), st.integers(0, 3))
def test_the_ascii_fast_path_agrees_with_rfc8785(document: dict[str, Any], form: int) -> None:
    """require_canonical's verdict equals comparing with the rfc8785 package's bytes."""
    encodings = [
        rfc8785.dumps(document),
        json.dumps(document, separators=(",", ":"), sort_keys=True).encode(),  # ASCII escapes
        json.dumps(document, sort_keys=True).encode(),
        json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode(),
    ]
    data = encodings[form]
    try:
        parsed = parse_json_object(data, what="t")
    except InputError:
        return
    expected = rfc8785.dumps(parsed) == data
    try:
        require_canonical(data)
        verdict = True
    except InputError:
        verdict = False
    assert verdict == expected


# ---------------------------------------------------------------- the fast path of canonical input

_any_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


def _mutations(document: dict[str, Any]) -> list[bytes]:
    """Canonical-looking bytes and near misses: escapes, spacing, order, duplicates, NaN."""
    compact = json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    forms = [
        compact.encode("utf-8", "surrogatepass"),
        json.dumps(document, separators=(",", ":"), sort_keys=True).encode(),
        json.dumps(document, sort_keys=True).encode(),
        json.dumps(document, separators=(",", ":")).encode(),
    ]
    if compact.startswith('{"'):
        forms.append(('{"' + compact[2:].split(",", 1)[0] + "," + compact[1:]).encode())
        forms.append(compact.replace("0", "-0", 1).encode("utf-8", "surrogatepass"))
    return forms


@given(st.dictionaries(st.text(max_size=4), _any_json, max_size=4), st.integers(0, 5))
def test_the_fast_path_only_accepts_what_the_strict_parser_accepts_alike(
    document: dict[str, Any], form: int
) -> None:
    """Acceptance by the fast path implies the strict parser's, with the same document,
    and that the bytes are exactly RFC 8785's; it never refuses on its own."""
    forms = _mutations(document)
    data = forms[form % len(forms)]
    fast = canonical._canonical_ascii(data, DEFAULT_LIMITS)
    if fast is None:
        return
    assert canonical._parse_strict(data, DEFAULT_LIMITS, "t") == fast
    assert rfc8785.dumps(fast) == data


DECLINED = [
    pytest.param(b'{"a":1,"a":1}', id="duplicate-key"),
    pytest.param(b'{"a":1.5}', id="float"),
    pytest.param(b'{"a":NaN}', id="nan"),
    pytest.param(b'{"a":9007199254740992}', id="beyond-2^53"),
    pytest.param(b'{"a":"\\ud800"}', id="lone-surrogate"),
    pytest.param(b'{"a":[[[[1]]]]}', id="deeper-than-brackets-allow"),
    pytest.param(b'{"a":1} ', id="trailing-space"),
    pytest.param(b'{"b":1,"a":1}', id="unsorted"),
    pytest.param(b"[1]", id="not-an-object"),
    pytest.param(b'{"\x00":1}', id="raw-nul"),
    pytest.param(b'{"a":1e5}', id="exponent"),
    pytest.param(b'{"a":-0}', id="minus-zero"),
    pytest.param(b'{"a":12345678901234567890123}', id="beyond-2^64"),
]


@pytest.mark.parametrize("data", DECLINED)
def test_the_fast_path_declines_and_leaves_the_verdict_to_the_strict_parser(data: bytes) -> None:
    assert canonical._canonical_ascii(data, SMALL) is None
    with pytest.raises(InputError):
        require_canonical(data, limits=SMALL)


def test_the_fast_path_leaves_non_ascii_to_the_strict_parser() -> None:
    data = '{"a":"é"}'.encode()
    assert canonical._canonical_ascii(data, SMALL) is None
    assert require_canonical(data, limits=SMALL) == {"a": "é"}


def test_the_fast_path_takes_canonical_ascii() -> None:
    data = b'{"a":[1,"x/y",null,true,false],"b":{"c":-900719925474099,"d":[]}}'
    assert canonical._canonical_ascii(data, DEFAULT_LIMITS) == json.loads(data)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b'{"a":-9007199254740991}', id="sixteen-digits"),
        pytest.param(b'{"a":"0123456789012345"}', id="sixteen-digits-in-a-string"),
    ],
)
def test_long_digit_runs_take_the_standard_library_path(data: bytes) -> None:
    assert canonical._canonical_ascii(data, DEFAULT_LIMITS) == json.loads(data)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b'{"a":"\\u000f"}', id="escape"),
        pytest.param(b'{"a":"\\"x"}', id="escaped-quote"),
    ],
)
def test_canonical_input_the_fast_path_leaves_is_accepted_by_the_strict_parser(
    data: bytes,
) -> None:
    assert canonical._canonical_ascii(data, DEFAULT_LIMITS) is None
    assert require_canonical(data) == json.loads(data)


_PLAIN_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'),
    max_size=6,
)
_PLAIN_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**15) + 1, 10**15 - 1) | _PLAIN_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_PLAIN_TEXT, inner, max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(_PLAIN_TEXT, _PLAIN_JSON, max_size=5))
def test_the_fast_path_takes_every_canonical_document_without_escapes(
    document: dict[str, Any],
) -> None:
    """So the property above is not met vacuously: what brakepedal writes takes the fast path."""
    data = rfc8785.dumps(document)
    assert canonical._canonical_ascii(data, DEFAULT_LIMITS) == document


_ANY_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=True)
    | st.text(max_size=6)
    | st.datetimes()
    | st.binary(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=4) | st.integers(0, 3), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=4), _ANY_VALUE, max_size=4))
def test_canonical_json_fast_path_gives_rfc8785_bytes_or_declines(document: dict[str, Any]) -> None:
    """The msgspec encoding is used only where it is RFC 8785's exact bytes of ``document``;
    everything else goes to the walk, which accepts or refuses as before."""
    fast = canonical._canonical_fast(document)
    try:
        canonical._check_encodable(document, "$", 0)
    except InputError:
        assert fast is None
        with pytest.raises(InputError):
            canonical_json(document)
        return
    expected = rfc8785.dumps(document)
    assert canonical_json(document) == expected
    if fast is not None:
        assert fast == expected


@given(st.dictionaries(_PLAIN_TEXT, _PLAIN_JSON, max_size=5))
def test_canonical_json_takes_the_fast_path_for_plain_documents(document: dict[str, Any]) -> None:
    assert canonical._canonical_fast(document) == rfc8785.dumps(document)


class _Loose:
    """A value whose equality says yes to anything."""

    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = object.__hash__


class _Agreeable(dict):  # type: ignore[type-arg]
    def __ne__(self, other: object) -> bool:
        return False


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"a": _Loose(1)}, id="loose-equality"),
        pytest.param(_Agreeable({"a": 1}), id="dict-subclass"),
        pytest.param({"a": [_Loose(1)]}, id="nested-loose"),
        pytest.param({"a": (1, 2)}, id="tuple"),
    ],
)
def test_values_msgspec_would_encode_differently_take_the_walk(value: object) -> None:
    assert canonical._canonical_fast(value) is None
