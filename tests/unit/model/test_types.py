"""Identifiers, UTC time and FLOP quantities."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brakepedal.crypto.canonical import canonical_json, parse_json_object
from brakepedal.errors import InputError
from brakepedal.model.types import (
    MAX_FLOP,
    DeviceId,
    EntityId,
    Flop,
    Identifier,
    epoch_micros,
    format_utc,
    from_epoch_micros,
    parse_utc_timestamp,
    utc_datetime,
)

# ------------------------------------------------------------------------- identifiers


@pytest.mark.parametrize(
    "text", ["a", "0", "gpu-0", "node_7.rack:3", "x" * 128, "urn:brakepedal:device:h100-42"]
)
def test_identifier_accepts(text: str) -> None:
    device = DeviceId(text)
    assert device == text
    assert isinstance(device, str)
    assert json.dumps({"device": device}) == json.dumps({"device": text})
    assert repr(device) == f"DeviceId({text!r})"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("", "device_id.empty", id="empty"),
        pytest.param("x" * 129, "device_id.too_long", id="129-chars"),
        pytest.param("GPU-0", "device_id.invalid_character", id="uppercase"),
        pytest.param("gpu 0", "device_id.invalid_character", id="space"),
        pytest.param("gpu-0\n", "device_id.invalid_character", id="trailing-newline"),
        pytest.param("-gpu", "device_id.invalid_character", id="leading-dash"),
        pytest.param(".hidden", "device_id.invalid_character", id="leading-dot"),
        pytest.param("gpu/0", "device_id.invalid_character", id="slash"),
        pytest.param("gpü", "device_id.invalid_character", id="non-ascii"),
        pytest.param("gpu\u0660", "device_id.invalid_character", id="arabic-digit"),
        pytest.param(7, "device_id.not_string", id="int"),
        pytest.param(b"gpu", "device_id.not_string", id="bytes"),
    ],
)
def test_identifier_refuses(value: object, reason: str) -> None:
    with pytest.raises(InputError) as raised:
        DeviceId(value)
    assert raised.value.reason == reason


def test_identifier_kinds_name_themselves() -> None:
    with pytest.raises(InputError) as raised:
        EntityId("Bad")
    assert raised.value.reason == "entity_id.invalid_character"
    assert "EntityId" in raised.value.message
    assert Identifier("a").kind == "identifier"


@given(st.from_regex(r"[a-z0-9][a-z0-9._:-]{0,127}", fullmatch=True))
def test_identifier_property(text: str) -> None:
    assert DeviceId(text) == text
    assert DeviceId(DeviceId(text)) == text


# -------------------------------------------------------------------------------- time


def test_utc_datetime_normalises_zero_offsets() -> None:
    for tz in (UTC, timezone(timedelta(0), "GMT"), ZoneInfo("UTC")):
        moment = utc_datetime(datetime(2025, 1, 2, 3, 4, 5, tzinfo=tz))
        assert moment.tzinfo is UTC
        assert moment == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param(datetime(2025, 1, 1), "time.naive", id="naive"),
        pytest.param(
            datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=1))), "time.not_utc", id="+01"
        ),
        pytest.param(
            datetime(2025, 7, 1, tzinfo=ZoneInfo("Europe/London")), "time.not_utc", id="bst"
        ),
        pytest.param("2025-01-01T00:00:00Z", "time.not_datetime", id="string"),
        pytest.param(0, "time.not_datetime", id="int"),
    ],
)
def test_utc_datetime_refuses(value: object, reason: str) -> None:
    with pytest.raises(InputError) as raised:
        utc_datetime(value)
    assert raised.value.reason == reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-02T03:04:05Z", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-02T03:04:05.5Z", datetime(2025, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)),
        ("2024-02-29T23:59:59.000001Z", datetime(2024, 2, 29, 23, 59, 59, 1, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_utc_timestamp(text: str, expected: datetime) -> None:
    parsed = parse_utc_timestamp(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("2025-01-02T03:04:05+00:00", "time.not_utc", id="zero-offset"),
        pytest.param("2025-01-02T03:04:05-05:00", "time.not_utc", id="offset"),
        pytest.param("2025-01-02T03:04:05", "time.format_invalid", id="no-zone"),
        pytest.param("2025-01-02t03:04:05z", "time.format_invalid", id="lowercase"),
        pytest.param("2025-01-02 03:04:05Z", "time.format_invalid", id="space"),
        pytest.param("2025-01-02T03:04:05.1234567Z", "time.format_invalid", id="nanoseconds"),
        pytest.param("2025-01-02T03:04:05.Z", "time.format_invalid", id="empty-fraction"),
        pytest.param("2025-1-2T03:04:05Z", "time.format_invalid", id="short-fields"),
        pytest.param("2025-01-02T03:04Z", "time.format_invalid", id="no-seconds"),
        pytest.param("2025-01-02T03:04:05Z\n", "time.format_invalid", id="trailing-newline"),
        pytest.param("2025-01-02T03:04:05Z" * 3, "time.format_invalid", id="too-long"),
        pytest.param("", "time.format_invalid", id="empty"),
        pytest.param("2025-02-30T00:00:00Z", "time.out_of_range", id="feb-30"),
        pytest.param("2016-12-31T23:59:60Z", "time.out_of_range", id="leap-second"),
        pytest.param("2025-01-01T24:00:00Z", "time.out_of_range", id="hour-24"),
        pytest.param("0000-01-01T00:00:00Z", "time.out_of_range", id="year-zero"),
        pytest.param(1735689600, "time.not_string", id="epoch-int"),
    ],
)
def test_parse_utc_timestamp_refuses(text: object, reason: str) -> None:
    with pytest.raises(InputError) as raised:
        parse_utc_timestamp(text)
    assert raised.value.reason == reason


def test_format_utc_canonical() -> None:
    assert format_utc(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2025-01-02T03:04:05Z"
    assert format_utc(datetime(5, 1, 2, 3, 4, 5, 7, tzinfo=UTC)) == "0005-01-02T03:04:05.000007Z"
    with pytest.raises(InputError) as raised:
        format_utc(datetime(2025, 1, 1))
    assert raised.value.reason == "time.naive"


utc_datetimes = st.datetimes(timezones=st.just(UTC))


@given(utc_datetimes)
def test_time_round_trip(moment: datetime) -> None:
    text = format_utc(moment)
    assert parse_utc_timestamp(text) == moment
    assert format_utc(parse_utc_timestamp(text)) == text


@given(utc_datetimes, utc_datetimes)
def test_formatted_times_sort_like_times(first: datetime, second: datetime) -> None:
    # Only when both carry fractions or neither does: "Z" sorts after "." in ASCII.
    if (first.microsecond == 0) == (second.microsecond == 0):
        assert (format_utc(first) < format_utc(second)) == (first < second)


# -------------------------------------------------------------------------------- FLOP

flops = st.integers(min_value=0, max_value=MAX_FLOP).map(Flop)
big_flops = st.integers(min_value=2**53 + 1, max_value=10**30).map(Flop)


def test_flop_json_beyond_2_53_is_exact() -> None:
    flop = Flop(2**53 + 1)
    assert flop.to_json() == "9007199254740993"
    assert canonical_json({"flop": flop.to_json()}) == b'{"flop":"9007199254740993"}'
    assert Flop.from_json(parse_json_object(b'{"f":"9007199254740993"}', what="x")["f"]) == flop


@given(flops)
def test_flop_json_round_trip(flop: Flop) -> None:
    text = flop.to_json()
    assert Flop.from_json(text) == flop
    assert text == str(flop.value)


@given(big_flops, big_flops)
def test_flop_arithmetic_beyond_2_53(first: Flop, second: Flop) -> None:
    assert (first + second).value == first.value + second.value
    assert (first + second) - second == first
    assert (first * 3).value == first.value * 3
    assert 3 * first == first * 3
    assert (first < second) == (first.value < second.value)
    assert Flop.total([first, second, first]) == first + second + first
    # Decimal strings without leading zeros order length-first, then lexicographically.
    a, b = first.to_json(), second.to_json()
    assert ((len(a), a) < (len(b), b)) == (first < second)


def test_flop_total_of_nothing_is_zero() -> None:
    assert Flop.total([]) == Flop(0)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param(12, "flop.not_string", id="json-number"),
        pytest.param(None, "flop.not_string", id="null"),
        pytest.param("", "flop.not_canonical", id="empty"),
        pytest.param("012", "flop.not_canonical", id="leading-zero"),
        pytest.param("+12", "flop.not_canonical", id="plus-sign"),
        pytest.param("-12", "flop.negative", id="negative"),
        pytest.param("1e25", "flop.not_canonical", id="scientific"),
        pytest.param("1.0", "flop.not_canonical", id="decimal-point"),
        pytest.param(" 12", "flop.not_canonical", id="whitespace"),
        pytest.param("1_000", "flop.not_canonical", id="underscore"),
        pytest.param("\u0661\u0662", "flop.not_canonical", id="arabic-digits"),
        pytest.param("1" * 41, "flop.too_large", id="41-digits"),
    ],
)
def test_flop_from_json_refuses(value: object, reason: str) -> None:
    with pytest.raises(InputError) as raised:
        Flop.from_json(value)
    assert raised.value.reason == reason


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param(-1, "flop.negative", id="negative"),
        pytest.param(MAX_FLOP + 1, "flop.too_large", id="above-max"),
        pytest.param(1.0, "flop.not_integer", id="float"),
        pytest.param(True, "flop.not_integer", id="bool"),
        pytest.param("12", "flop.not_integer", id="string"),
    ],
)
def test_flop_constructor_refuses(value: object, reason: str) -> None:
    with pytest.raises(InputError) as raised:
        Flop(value)  # type: ignore[arg-type]
    assert raised.value.reason == reason


def test_flop_arithmetic_refusals() -> None:
    with pytest.raises(InputError) as raised:
        _ = Flop(1) - Flop(2)
    assert raised.value.reason == "flop.negative"
    with pytest.raises(InputError) as raised:
        _ = Flop(1) * -1
    assert raised.value.reason == "flop.negative"
    with pytest.raises(InputError) as raised:
        _ = Flop(MAX_FLOP) + Flop(1)
    assert raised.value.reason == "flop.too_large"
    with pytest.raises(TypeError):
        _ = Flop(1) + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = Flop(1) * 1.5  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = Flop(1) - 1  # type: ignore[operator]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1e25", 10**25),
        ("3.8e25", 38 * 10**24),
        ("1E26", 10**26),
        ("1.2 EFLOP", 12 * 10**17),
        ("100 ZFLOP", 10**23),
        ("5kFLOP", 5000),
        ("2.5 YFLOPs", 25 * 10**23),
        ("  42  ", 42),
        ("9007199254740993", 2**53 + 1),
        ("12345678901234567890123456789e1", 123456789012345678901234567890),
    ],
)
def test_flop_parse_human(text: str, expected: int) -> None:
    assert Flop.parse_human(text) == Flop(expected)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("1.5", "flop.not_integer", id="fraction"),
        pytest.param("1e-3", "flop.not_integer", id="negative-exponent"),
        pytest.param("1.0000000000000000000001e3", "flop.not_integer", id="long-fraction"),
        pytest.param("-1e25", "flop.format_invalid", id="negative"),
        pytest.param("1e41", "flop.too_large", id="too-large"),
        pytest.param("1e999", "flop.too_large", id="huge-exponent"),
        pytest.param("nan", "flop.format_invalid", id="nan"),
        pytest.param("Infinity", "flop.format_invalid", id="infinity"),
        pytest.param("1_000", "flop.format_invalid", id="underscore"),
        pytest.param("1.2 XFLOP", "flop.format_invalid", id="unknown-prefix"),
        pytest.param("1.2 eflop", "flop.format_invalid", id="lowercase-unit"),
        pytest.param("", "flop.format_invalid", id="empty"),
        pytest.param("1" * 65, "flop.format_invalid", id="too-long"),
        pytest.param(1e25, "flop.format_invalid", id="float-object"),
    ],
)
def test_flop_parse_human_refuses(text: object, reason: str) -> None:
    with pytest.raises(InputError) as raised:
        Flop.parse_human(text)
    assert raised.value.reason == reason


@given(st.integers(min_value=0, max_value=10**29), st.integers(min_value=0, max_value=10))
def test_flop_parse_human_scientific_is_exact(mantissa: int, exponent: int) -> None:
    assert Flop.parse_human(f"{mantissa}e{exponent}") == Flop(mantissa * 10**exponent)


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1)))
def test_epoch_micros_round_trips_and_sorts_like_time(naive: datetime) -> None:
    moment = naive.replace(tzinfo=UTC)
    value = epoch_micros(moment)
    assert from_epoch_micros(value) == moment
    assert epoch_micros(moment + timedelta(microseconds=1)) == value + 1


def test_epoch_micros_refuses_what_utc_datetime_refuses_even_after_an_equal_utc_time() -> None:
    """The UTC fast path is cached; an equal instant in another zone must not hit the cache."""
    moment = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
    assert epoch_micros(moment) == 1_798_804_800_000_000
    assert epoch_micros(moment.replace(tzinfo=ZoneInfo("UTC"))) == 1_798_804_800_000_000
    with pytest.raises(InputError, match=r"time\.not_utc"):
        epoch_micros(moment.astimezone(timezone(timedelta(hours=1))))
    with pytest.raises(InputError, match=r"time\.naive"):
        epoch_micros(moment.replace(tzinfo=None))
