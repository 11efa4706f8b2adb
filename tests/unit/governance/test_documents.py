"""Governance documents: golden seeds, a table of named bad documents, properties, terms."""

from __future__ import annotations

import contextlib
import json
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brakepedal.crypto.canonical import canonical_json
from brakepedal.errors import BrakepedalError, InputError
from brakepedal.governance.documents import (
    GovernanceDocument,
    LiftOrder,
    PauseOrder,
    PolicyVersion,
    TrainingPermit,
    parse_document,
)
from brakepedal.governance.rules import (
    check_permit_serial,
    check_sunset,
    needs_order_quorum,
    order_terms,
    permit_terms,
)
from brakepedal.model.types import (
    MAX_FLOP,
    DeviceId,
    EntityId,
    Flop,
    LineageId,
    OrderId,
    PermitId,
    PolicyId,
    RunId,
)
from brakepedal.policy.terms import MAX_GRACE_SECONDS, MAX_ORDER_DAYS

CORPUS = Path(__file__).resolve().parents[3] / "fuzz" / "corpus" / "governance_document"
T0 = datetime(2027, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def seed(name: str) -> bytes:
    return (CORPUS / f"{name}.json").read_bytes()


def pause(**changes: Any) -> PauseOrder:
    base = PauseOrder(
        OrderId("pause-1"), Flop(10**26), frozenset({"eu"}), T0, T0 + 180 * DAY, 0, "pause"
    )
    return replace(base, **changes)


def lift(**changes: Any) -> LiftOrder:
    return replace(
        LiftOrder(OrderId("lift-1"), OrderId("pause-1"), T0 + 60 * DAY, "done"), **changes
    )


def permit(**changes: Any) -> TrainingPermit:
    base = TrainingPermit(
        permit_id=PermitId("permit-1"),
        serial=1,
        owner_group=EntityId("acme"),
        flop_budget=Flop(10**24),
        valid_from=T0,
        valid_until=T0 + 30 * DAY,
        lineage=LineageId("base"),
    )
    return replace(base, **changes)


# ------------------------------------------------------------------------ golden seeds

SEEDS = sorted(path.stem for path in CORPUS.glob("*.json") if path.stem != "unknown_field")


@pytest.mark.parametrize("name", SEEDS)
def test_seed_round_trips_to_identical_bytes(name: str) -> None:
    data = seed(name)
    document = parse_document(data)
    assert document.to_bytes() == data
    assert parse_document(document.to_bytes()) == document
    keys = set(json.loads(data))
    assert keys == {f.name for f in fields(document)} | {"type", "spec_version"}


def test_pause_seed_reads_as_written() -> None:
    order = parse_document(seed("pause_order"))
    assert order == PauseOrder(
        OrderId("pause-2027-01"),
        Flop(10**26),
        frozenset({"eu", "us"}),
        T0,
        T0 + 180 * DAY,
        86_400,
        "Frontier training pauses for six months while evaluations are agreed.",
    )
    assert order.target_path == "orders/pause-2027-01.json"
    assert seed("pause_order").startswith(b'{"effective_from":"2027-01-01T00:00:00Z",')
    assert b'"threshold_flop":"100000000000000000000000000"' in seed("pause_order")


def test_seeds_of_every_kind_and_their_target_paths() -> None:
    paths = {parse_document(seed(name)).target_path for name in SEEDS}
    assert paths == {
        "orders/pause-2027-01.json",
        "orders/pause-2027-07.json",
        "lifts/lift-2027-03.json",
        "permits/00000007-permit-acme-7.json",
        "quorum-permits/00000008-permit-safety-1.json",
        "policies/draft-treaty/3.json",
    }
    renewal = parse_document(seed("pause_order_renewal"))
    assert isinstance(renewal, PauseOrder)
    assert renewal.renews == "pause-2027-01"
    under = parse_document(seed("training_permit_under_order"))
    assert isinstance(under, TrainingPermit)
    assert (under.under_order, under.lineage, under.run) == ("pause-2027-01", None, "eval-run-3")
    lifted = parse_document(seed("lift_order"))
    assert isinstance(lifted, LiftOrder)
    assert lifted.effective_from == T0 + 60 * DAY + timedelta(microseconds=250_000)


# ------------------------------------------------------------------ named bad documents

_DELETE = object()


def _with(name: str, **changes: object) -> bytes:
    """Seed ``name`` with fields set (or deleted), re-encoded canonically."""
    document = json.loads(seed(name))
    for key, value in changes.items():
        if value is _DELETE:
            del document[key]
        else:
            document[key] = value
    return canonical_json(document)


BAD: list[tuple[str, bytes, str, str]] = [
    # (name, bytes, reason, text the message must contain)
    (
        "unknown field",
        seed("unknown_field"),
        "governance.unknown_field",
        "pause_order.sunsett: unknown field",
    ),
    ("extra whitespace", seed("pause_order") + b"\n", "canonical.not_canonical", "governance"),
    (
        "reordered keys",
        json.dumps(dict(reversed(json.loads(seed("lift_order")).items()))).encode(),
        "canonical.not_canonical",
        "governance document",
    ),
    ("not an object", b"[]", "json.not_object", "governance document"),
    ("not UTF-8", b'{"type":"\xff"}', "json.encoding_invalid", "governance document"),
    ("duplicate key", b'{"type":"a","type":"b"}', "json.duplicate_key", "governance document"),
    (
        "float FLOP",
        seed("pause_order").replace(b'"100000000000000000000000000"', b"1.5"),
        "json.float_not_allowed",
        "document",
    ),
    ("type missing", _with("pause_order", type=_DELETE), "document.field_missing", "document.type"),
    (
        "wrong type tag",
        _with("pause_order", type="brakepedal.pause"),
        "document.type_unknown",
        "document.type",
    ),
    ("type not a string", _with("pause_order", type=5), "document.type_unknown", "document.type"),
    (
        "future spec_version",
        _with("pause_order", spec_version=2),
        "document.version_unsupported",
        "pause_order.spec_version",
    ),
    (
        "spec_version missing",
        _with("lift_order", spec_version=_DELETE),
        "document.version_unsupported",
        "lift_order.spec_version",
    ),
    (
        "spec_version true",
        _with("lift_order", spec_version=True),
        "document.version_unsupported",
        "lift_order.spec_version",
    ),
    (
        "field missing",
        _with("pause_order", reason=_DELETE),
        "document.field_missing",
        "pause_order.reason: missing",
    ),
    (
        "optional field missing, not null",
        _with("pause_order", renews=_DELETE),
        "document.field_missing",
        "pause_order.renews",
    ),
    (
        "sunset before start",
        _with("pause_order", sunset="2026-12-31T00:00:00Z"),
        "document.sunset_invalid",
        "pause_order.sunset",
    ),
    (
        "sunset at start",
        _with("pause_order", sunset="2027-01-01T00:00:00Z"),
        "document.sunset_invalid",
        "pause_order.sunset",
    ),
    (
        "sunset beyond the longest order",
        _with("pause_order", sunset="2038-01-01T00:00:00Z"),
        "document.sunset_invalid",
        "pause_order.sunset",
    ),
    (
        "negative FLOP",
        _with("pause_order", threshold_flop="-1"),
        "flop.negative",
        "pause_order.threshold_flop",
    ),
    (
        "FLOP as a number",
        _with("pause_order", threshold_flop=100),
        "flop.not_string",
        "pause_order.threshold_flop",
    ),
    (
        "FLOP with a leading zero",
        _with("training_permit", flop_budget="01"),
        "flop.not_canonical",
        "training_permit.flop_budget",
    ),
    (
        "zero budget",
        _with("training_permit", flop_budget="0"),
        "document.budget_invalid",
        "training_permit.flop_budget",
    ),
    (
        "negative grace",
        _with("pause_order", grace_seconds=-1),
        "document.grace_invalid",
        "pause_order.grace_seconds",
    ),
    (
        "grace too long",
        _with("pause_order", grace_seconds=MAX_GRACE_SECONDS + 1),
        "document.grace_invalid",
        "pause_order.grace_seconds",
    ),
    (
        "grace as a string",
        _with("pause_order", grace_seconds="0"),
        "document.field_invalid",
        "pause_order.grace_seconds",
    ),
    (
        "jurisdictions empty",
        _with("pause_order", jurisdictions=[]),
        "document.jurisdictions_invalid",
        "pause_order.jurisdictions",
    ),
    (
        "jurisdictions unsorted",
        _with("pause_order", jurisdictions=["us", "eu"]),
        "document.set_not_canonical",
        "pause_order.jurisdictions",
    ),
    (
        "jurisdictions repeated",
        _with("pause_order", jurisdictions=["eu", "eu"]),
        "document.set_not_canonical",
        "pause_order.jurisdictions",
    ),
    (
        "jurisdiction uppercase",
        _with("pause_order", jurisdictions=["EU"]),
        "identifier.invalid_character",
        "pause_order.jurisdictions",
    ),
    (
        "jurisdictions not a list",
        _with("pause_order", jurisdictions="eu"),
        "document.field_invalid",
        "pause_order.jurisdictions",
    ),
    (
        "reason empty",
        _with("pause_order", reason=" "),
        "document.text_invalid",
        "pause_order.reason",
    ),
    (
        "reason not text",
        _with("lift_order", reason=None),
        "document.field_invalid",
        "lift_order.reason",
    ),
    (
        "order renews itself",
        _with("pause_order", renews="pause-2027-01"),
        "document.renews_invalid",
        "pause_order.renews",
    ),
    (
        "lift lifts itself",
        _with("lift_order", lifts="lift-2027-03"),
        "document.lift_invalid",
        "lift_order.lifts",
    ),
    (
        "time without zone",
        _with("pause_order", sunset="2027-06-01T00:00:00"),
        "time.format_invalid",
        "pause_order.sunset",
    ),
    (
        "time with offset",
        _with("pause_order", effective_from="2027-01-01T00:00:00+00:00"),
        "time.not_utc",
        "pause_order.effective_from",
    ),
    (
        "time with a short fraction",
        _with("lift_order", effective_from="2027-03-02T00:00:00.25Z"),
        "document.time_not_canonical",
        "lift_order.effective_from",
    ),
    (
        "time with a zero fraction",
        _with("lift_order", effective_from="2027-03-02T00:00:00.000000Z"),
        "document.time_not_canonical",
        "lift_order.effective_from",
    ),
    (
        "no such date",
        _with("training_permit", valid_until="2027-02-30T00:00:00Z"),
        "time.out_of_range",
        "training_permit.valid_until",
    ),
    (
        "time as a number",
        _with("training_permit", valid_from=1),
        "time.not_string",
        "training_permit.valid_from",
    ),
    (
        "expires before it starts",
        _with("training_permit", valid_until="2026-12-01T00:00:00Z"),
        "document.validity_invalid",
        "training_permit.valid_until",
    ),
    (
        "serial 0",
        _with("training_permit", serial=0),
        "document.serial_invalid",
        "training_permit.serial",
    ),
    (
        "serial as a string",
        _with("training_permit", serial="7"),
        "document.field_invalid",
        "training_permit.serial",
    ),
    (
        "serial as a boolean",
        _with("training_permit", serial=True),
        "document.field_invalid",
        "training_permit.serial",
    ),
    (
        "permit without lineage or run",
        _with("training_permit", lineage=None),
        "document.scope_missing",
        "training_permit.lineage",
    ),
    (
        "devices empty",
        _with("training_permit", devices=[]),
        "document.devices_invalid",
        "training_permit.devices",
    ),
    (
        "devices unsorted",
        _with("training_permit", devices=["gpu-0002", "gpu-0001"]),
        "document.set_not_canonical",
        "training_permit.devices",
    ),
    (
        "device identifier invalid",
        _with("training_permit", devices=["GPU 1"]),
        "device_id.invalid_character",
        "training_permit.devices",
    ),
    (
        "device_count 0",
        _with("training_permit", device_count=0),
        "document.devices_invalid",
        "training_permit.device_count",
    ),
    (
        "more devices than device_count",
        _with("training_permit", device_count=1),
        "document.devices_invalid",
        "training_permit.devices",
    ),
    (
        "conditions repeated",
        _with("training_permit", conditions=["a", "a"]),
        "document.conditions_invalid",
        "training_permit.conditions",
    ),
    (
        "condition empty",
        _with("training_permit", conditions=[""]),
        "document.text_invalid",
        "training_permit.conditions",
    ),
    (
        "condition not text",
        _with("training_permit", conditions=[1]),
        "document.text_invalid",
        "training_permit.conditions",
    ),
    (
        "conditions not a list",
        _with("training_permit", conditions="a"),
        "document.field_invalid",
        "training_permit.conditions",
    ),
    (
        "order identifier uppercase",
        _with("pause_order", order_id="Pause-1"),
        "order_id.invalid_character",
        "pause_order.order_id",
    ),
    ("order identifier empty", _with("lift_order", lifts=""), "order_id.empty", "lift_order.lifts"),
    (
        "order identifier too long",
        _with("lift_order", lift_id="l" * 129),
        "order_id.too_long",
        "lift_order.lift_id",
    ),
    (
        "owner not a string",
        _with("training_permit", owner_group=5),
        "entity_id.not_string",
        "training_permit.owner_group",
    ),
    (
        "permit identifier like an option",
        _with("training_permit", permit_id="-rf"),
        "permit_id.invalid_character",
        "training_permit.permit_id",
    ),
    (
        "under_order invalid",
        _with("training_permit", under_order="../x"),
        "order_id.invalid_character",
        "training_permit.under_order",
    ),
    (
        "policy version 0",
        _with("policy_version", version=0),
        "document.version_invalid",
        "policy_version.version",
    ),
    (
        "policy media type",
        _with("policy_version", media_type="application/json"),
        "document.media_type_invalid",
        "policy_version.media_type",
    ),
    (
        "policy digest uppercase",
        _with("policy_version", content_sha256="A" * 64),
        "document.digest_invalid",
        "policy_version.content_sha256",
    ),
    (
        "policy digest short",
        _with("policy_version", content_sha256="a" * 63),
        "document.digest_invalid",
        "policy_version.content_sha256",
    ),
    (
        "policy title too long",
        _with("policy_version", title="t" * 257),
        "document.text_invalid",
        "policy_version.title",
    ),
    (
        "policy identifier invalid",
        _with("policy_version", policy_id="Draft"),
        "policy_id.invalid_character",
        "policy_version.policy_id",
    ),
]


@pytest.mark.parametrize(
    ("data", "reason", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_document_is_refused_naming_the_field(data: bytes, reason: str, fragment: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_document(data)
    assert caught.value.reason == reason
    assert fragment in caught.value.message


def test_bad_names_are_distinct() -> None:
    assert len({b[0] for b in BAD}) == len(BAD)


def test_not_bytes_is_refused() -> None:
    with pytest.raises(InputError, match="expected bytes") as caught:
        parse_document("{}")  # type: ignore[arg-type]
    assert caught.value.reason == "document.not_bytes"


# -------------------------------------------------------------- constructors in Python


CONSTRUCTED: list[tuple[str, Any, str, str]] = [
    ("naive time", lambda: pause(sunset=datetime(2027, 6, 1)), "time.naive", "pause_order.sunset"),
    (
        "time not UTC",
        lambda: lift(effective_from=datetime(2027, 2, 1, tzinfo=timezone(timedelta(hours=1)))),
        "time.not_utc",
        "lift_order.effective_from",
    ),
    ("plain str id", lambda: pause(order_id="pause-1"), "document.field_invalid", "order_id"),
    ("bool grace", lambda: pause(grace_seconds=False), "document.field_invalid", "grace_seconds"),
    ("int FLOP", lambda: permit(flop_budget=5), "document.field_invalid", "flop_budget"),
    ("jurisdictions a list", lambda: pause(jurisdictions=["eu"]), "document.field_invalid", "jur"),
    (
        "plain str device",
        lambda: permit(devices=frozenset({"gpu-1"})),
        "document.devices_invalid",
        "training_permit.devices",
    ),
    (
        "serial beyond JSON",
        lambda: permit(serial=2**53),
        "document.serial_invalid",
        "training_permit.serial",
    ),
    (
        "conditions a list",
        lambda: permit(conditions=["a"]),
        "document.field_invalid",
        "training_permit.conditions",
    ),
    (
        "too many conditions",
        lambda: permit(conditions=tuple(str(i) for i in range(65))),
        "document.conditions_invalid",
        "training_permit.conditions",
    ),
    (
        "media type",
        lambda: PolicyVersion(PolicyId("p"), 1, "text/plain", "0" * 64, "t"),  # type: ignore[arg-type]
        "document.media_type_invalid",
        "policy_version.media_type",
    ),
]


@pytest.mark.parametrize(
    ("build", "reason", "fragment"), [c[1:] for c in CONSTRUCTED], ids=[c[0] for c in CONSTRUCTED]
)
def test_constructor_refuses(build: Any, reason: str, fragment: str) -> None:
    with pytest.raises(InputError) as caught:
        build()
    assert caught.value.reason == reason
    assert fragment in caught.value.message


def test_constructor_normalises_utc() -> None:
    order = pause(effective_from=datetime(2027, 1, 1, tzinfo=timezone.utc))  # noqa: UP017
    assert order.effective_from.tzinfo is UTC
    assert order.to_bytes() == pause().to_bytes()


def test_order_may_last_exactly_the_longest_allowed() -> None:
    assert pause(sunset=T0 + MAX_ORDER_DAYS * DAY).sunset == T0 + MAX_ORDER_DAYS * DAY


# ------------------------------------------------------------------------- properties

_IDS = st.from_regex(r"[a-z0-9][a-z0-9._:-]{0,20}", fullmatch=True)
_TEXT = st.text(min_size=1, max_size=40).filter(str.strip)
_TIMES = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
_FLOP = st.integers(0, MAX_FLOP).map(Flop)
_SPAN = st.timedeltas(min_value=timedelta(microseconds=1), max_value=MAX_ORDER_DAYS * DAY)


@st.composite
def _pause_orders(draw: st.DrawFn) -> PauseOrder:
    start = draw(_TIMES)
    order_id = OrderId(draw(_IDS))
    renews = draw(st.none() | _IDS.map(OrderId))
    return PauseOrder(
        order_id,
        draw(_FLOP),
        draw(st.frozensets(_IDS, min_size=1, max_size=4)),
        start,
        start + draw(_SPAN),
        draw(st.integers(0, MAX_GRACE_SECONDS)),
        draw(_TEXT),
        renews=None if renews == order_id else renews,
    )


@st.composite
def _lift_orders(draw: st.DrawFn) -> LiftOrder:
    lift_id, lifts = draw(st.lists(_IDS.map(OrderId), min_size=2, max_size=2, unique=True))
    return LiftOrder(lift_id, lifts, draw(_TIMES), draw(_TEXT))


@st.composite
def _permits(draw: st.DrawFn) -> TrainingPermit:
    start = draw(_TIMES)
    devices = draw(st.none() | st.frozensets(_IDS.map(DeviceId), min_size=1, max_size=4))
    lineage = draw(st.none() | _IDS.map(LineageId))
    return TrainingPermit(
        permit_id=PermitId(draw(_IDS)),
        serial=draw(st.integers(1, 2**53 - 1)),
        owner_group=EntityId(draw(_IDS)),
        flop_budget=Flop(draw(st.integers(1, MAX_FLOP))),
        valid_from=start,
        valid_until=start + draw(_SPAN),
        lineage=lineage,
        run=draw(_IDS.map(RunId) if lineage is None else st.none() | _IDS.map(RunId)),
        device_count=draw(st.none() | st.integers(len(devices or ()) or 1, 2**53 - 1)),
        devices=devices,
        conditions=tuple(draw(st.lists(_TEXT, max_size=3, unique=True))),
        under_order=draw(st.none() | _IDS.map(OrderId)),
    )


_DOCUMENTS: st.SearchStrategy[GovernanceDocument] = st.one_of(
    _pause_orders(),
    _lift_orders(),
    _permits(),
    st.builds(
        PolicyVersion,
        _IDS.map(PolicyId),
        st.integers(1, 2**53 - 1),
        st.sampled_from(["application/toml", "application/yaml"]),
        st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
        _TEXT,
    ),
)


@settings(max_examples=300)
@given(_DOCUMENTS)
def test_any_valid_document_round_trips_to_identical_bytes(document: GovernanceDocument) -> None:
    data = document.to_bytes()
    parsed = parse_document(data)
    assert parsed == document
    assert parsed.to_bytes() == data
    assert parsed.target_path.endswith(".json")


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_brakepedal_errors(data: bytes) -> None:
    with contextlib.suppress(BrakepedalError):
        parse_document(data)


@settings(max_examples=300)
@given(_DOCUMENTS, st.data())
def test_an_edited_document_parses_only_in_its_one_form(
    document: GovernanceDocument, data: st.DataObject
) -> None:
    body = json.loads(document.to_bytes())
    key = data.draw(st.sampled_from(sorted(body)))
    body[key] = data.draw(
        st.none() | st.booleans() | st.integers(-3, 3) | _TEXT | st.lists(_IDS, max_size=3)
    )
    encoded = canonical_json(body)
    try:
        parsed = parse_document(encoded)
    except InputError as e:
        reason = e.reason
    else:
        assert parsed.to_bytes() == encoded
        return
    assert reason != "document.not_canonical"  # the backstop is never what refuses


# ------------------------------------------------------------------- agreement checks


def test_check_sunset() -> None:
    check_sunset(pause(), max_sunset=180 * DAY)
    with pytest.raises(InputError, match=r"pause_order\.sunset") as caught:
        check_sunset(pause(), max_sunset=179 * DAY)
    assert caught.value.reason == "document.sunset_too_long"


@pytest.mark.parametrize(
    ("serial", "last", "ok"),
    [(1, 0, True), (5, 4, True), (9, 4, True), (5, 5, False), (5, 9, False)],
)
def test_check_permit_serial(serial: int, last: int, ok: bool) -> None:
    if ok:
        check_permit_serial(permit(serial=serial), last_serial=last)
        return
    with pytest.raises(InputError, match=r"training_permit\.serial") as caught:
        check_permit_serial(permit(serial=serial), last_serial=last)
    assert caught.value.reason == "document.serial_not_monotonic"


# ------------------------------------------------------------------------------ terms


def test_order_terms_without_lifts_are_the_order() -> None:
    order = pause(grace_seconds=3600, jurisdictions=frozenset({"eu", "us"}))
    terms = order_terms(order, [])
    assert terms is not None
    assert (terms.order_id, terms.threshold_flop, terms.jurisdictions) == (
        order.order_id,
        order.threshold_flop,
        order.jurisdictions,
    )
    assert (terms.effective_from, terms.sunset, terms.grace_seconds) == (T0, T0 + 180 * DAY, 3600)


LIFTS: list[tuple[str, list[LiftOrder], datetime | None]] = [
    ("lift mid-way ends the order then", [lift()], T0 + 60 * DAY),
    (
        "lift after the sunset changes nothing",
        [lift(effective_from=T0 + 200 * DAY)],
        T0 + 180 * DAY,
    ),
    ("lift at the sunset changes nothing", [lift(effective_from=T0 + 180 * DAY)], T0 + 180 * DAY),
    ("lift of another order is ignored", [lift(lifts=OrderId("pause-2"))], T0 + 180 * DAY),
    (
        "the earliest of two lifts counts",
        [lift(effective_from=T0 + 90 * DAY), lift(lift_id=OrderId("lift-2"))],
        T0 + 60 * DAY,
    ),
    (
        "lift during the grace period",
        [lift(effective_from=T0 + timedelta(minutes=1))],
        T0 + timedelta(minutes=1),
    ),
    ("lift at the start: never in force", [lift(effective_from=T0)], None),
    ("lift before the start: never in force", [lift(effective_from=T0 - DAY)], None),
]


@pytest.mark.parametrize(("lifts", "sunset"), [c[1:] for c in LIFTS], ids=[c[0] for c in LIFTS])
def test_lifts_end_orders(lifts: list[LiftOrder], sunset: datetime | None) -> None:
    terms = order_terms(pause(grace_seconds=3600), lifts)
    assert (terms.sunset if terms is not None else None) == sunset


@pytest.mark.parametrize("under_order", [None, OrderId("pause-1")])
def test_permit_terms(under_order: OrderId | None) -> None:
    document = permit(
        run=RunId("r1"),
        device_count=8,
        devices=frozenset({DeviceId("gpu-1")}),
        conditions=("weekly reports",),
        under_order=under_order,
    )
    terms = permit_terms(document)
    assert terms.under_order_quorum is (under_order is not None)
    assert terms.under_order == under_order  # the order, not only a flag (the gate compares)
    for name in ("permit_id", "owner_group", "flop_budget", "valid_from", "valid_until"):
        assert getattr(terms, name) == getattr(document, name)
    assert (terms.lineage, terms.run, terms.device_count, terms.devices) == (
        "base",
        "r1",
        8,
        frozenset({"gpu-1"}),
    )


# -------------------------------------------------------------------- order quorum rule

_ORDER = pause(threshold_flop=Flop(10**26))  # in force T0 .. T0 + 180 days
QUORUM: list[tuple[str, TrainingPermit, list[PauseOrder], Flop | None, bool]] = [
    ("no order in force", permit(flop_budget=Flop(10**27)), [], None, False),
    ("budget alone above the threshold", permit(flop_budget=Flop(10**27)), [_ORDER], None, True),
    ("budget alone at the threshold", permit(flop_budget=Flop(10**26)), [_ORDER], None, True),
    (
        "budget alone below, lineage unknown",
        permit(flop_budget=Flop(10**25)),
        [_ORDER],
        None,
        False,
    ),
    (
        "lineage total plus budget reaches the threshold",
        permit(flop_budget=Flop(10**25)),
        [_ORDER],
        Flop(9 * 10**25),
        True,
    ),
    (
        "lineage total plus budget below",
        permit(flop_budget=Flop(10**25)),
        [_ORDER],
        Flop(10**25),
        False,
    ),
    ("lineage already above", permit(flop_budget=Flop(1)), [_ORDER], Flop(10**27), True),
    (
        "permit valid only after the sunset",
        permit(flop_budget=Flop(10**27), valid_from=T0 + 180 * DAY, valid_until=T0 + 200 * DAY),
        [_ORDER],
        None,
        False,
    ),
    (
        "permit valid only before the order",
        permit(flop_budget=Flop(10**27), valid_from=T0 - 30 * DAY, valid_until=T0),
        [_ORDER],
        None,
        False,
    ),
    (
        "permit straddling the sunset",
        permit(flop_budget=Flop(10**27), valid_from=T0 + 170 * DAY, valid_until=T0 + 200 * DAY),
        [_ORDER],
        None,
        True,
    ),
    (
        "one of two orders in scope",
        permit(flop_budget=Flop(10**25)),
        [_ORDER, pause(order_id=OrderId("pause-low"), threshold_flop=Flop(10**24))],
        None,
        True,
    ),
    (
        "threshold 0 pauses everything",
        permit(flop_budget=Flop(1)),
        [pause(threshold_flop=Flop(0))],
        None,
        True,
    ),
    (
        "totals near the FLOP limit",
        permit(flop_budget=Flop(MAX_FLOP)),
        [_ORDER],
        Flop(MAX_FLOP),
        True,
    ),
]


@pytest.mark.parametrize(
    ("document", "orders", "total", "expected"), [q[1:] for q in QUORUM], ids=[q[0] for q in QUORUM]
)
def test_needs_order_quorum(
    document: TrainingPermit, orders: list[PauseOrder], total: Flop | None, expected: bool
) -> None:
    assert needs_order_quorum(document, orders, total) is expected
