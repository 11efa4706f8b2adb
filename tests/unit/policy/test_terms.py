"""Pause-order and permit terms: invariants at construction, validity in time, scope."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from brakepedal.errors import InputError
from brakepedal.model.types import DeviceId, EntityId, Flop, LineageId, OrderId, PermitId, RunId
from brakepedal.policy.terms import PauseOrderTerms, PermitTerms

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def order(**changes: Any) -> PauseOrderTerms:
    terms: dict[str, Any] = {
        "order_id": OrderId("pause-1"),
        "threshold_flop": Flop(10**24),
        "jurisdictions": frozenset({"agreement"}),
        "effective_from": T0,
        "sunset": T0 + 90 * DAY,
        "grace_seconds": 3_600,
    }
    terms.update(changes)
    return PauseOrderTerms(**terms)


def permit(**changes: Any) -> PermitTerms:
    terms: dict[str, Any] = {
        "permit_id": PermitId("permit-1"),
        "owner_group": EntityId("acme"),
        "flop_budget": Flop(10**23),
        "valid_from": T0,
        "valid_until": T0 + 30 * DAY,
        "lineage": LineageId("base"),
    }
    terms.update(changes)
    return PermitTerms(**terms)


BAD_ORDERS = [
    pytest.param({"order_id": "pause-1"}, "order.field_invalid", id="plain-str-id"),
    pytest.param({"threshold_flop": 10**24}, "order.field_invalid", id="int-threshold"),
    pytest.param({"jurisdictions": frozenset()}, "order.jurisdictions_invalid", id="no-place"),
    pytest.param({"jurisdictions": {"eu"}}, "order.jurisdictions_invalid", id="mutable-set"),
    pytest.param({"jurisdictions": frozenset({"EU"})}, "identifier.invalid_character", id="caps"),
    pytest.param({"effective_from": T0.replace(tzinfo=None)}, "time.naive", id="naive-start"),
    pytest.param(
        {"sunset": (T0 + DAY).astimezone(timezone(timedelta(hours=2)))},
        "time.not_utc",
        id="non-utc-sunset",
    ),
    pytest.param({"sunset": T0}, "order.sunset_invalid", id="sunset-at-start"),
    pytest.param({"sunset": T0 + 4000 * DAY}, "order.sunset_invalid", id="no-real-sunset"),
    pytest.param({"grace_seconds": -1}, "order.grace_invalid", id="negative-grace"),
    pytest.param({"grace_seconds": 1.5}, "order.field_invalid", id="float-grace"),
    pytest.param({"grace_seconds": True}, "order.field_invalid", id="bool-grace"),
]


@pytest.mark.parametrize(("changes", "reason"), BAD_ORDERS)
def test_bad_orders(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InputError) as caught:
        order(**changes)
    assert caught.value.reason == reason


def test_order_in_force_from_start_until_sunset() -> None:
    terms = order()
    assert not terms.in_force_at(T0 - timedelta(microseconds=1))
    assert terms.in_force_at(T0)
    assert terms.in_force_at(terms.sunset - timedelta(microseconds=1))
    assert not terms.in_force_at(terms.sunset)
    assert terms.enforced_from == T0 + timedelta(hours=1)
    assert terms.applies_to(frozenset({"agreement", "us"}))
    assert not terms.applies_to(frozenset({"us"}))


def test_in_force_at_needs_utc() -> None:
    with pytest.raises(InputError) as caught:
        order().in_force_at(T0.replace(tzinfo=None))
    assert caught.value.reason == "time.naive"


BAD_PERMITS = [
    pytest.param({"permit_id": "permit-1"}, "permit.field_invalid", id="plain-str-id"),
    pytest.param({"owner_group": "acme"}, "permit.field_invalid", id="plain-str-owner"),
    pytest.param({"flop_budget": 5}, "permit.field_invalid", id="int-budget"),
    pytest.param({"lineage": None}, "permit.scope_missing", id="no-scope"),
    pytest.param({"lineage": "base"}, "permit.field_invalid", id="plain-str-lineage"),
    pytest.param({"run": "r"}, "permit.field_invalid", id="plain-str-run"),
    pytest.param({"valid_until": T0}, "permit.validity_invalid", id="expires-at-start"),
    pytest.param({"valid_from": T0.replace(tzinfo=None)}, "time.naive", id="naive"),
    pytest.param({"device_count": 0}, "permit.devices_invalid", id="zero-devices"),
    pytest.param({"device_count": True}, "permit.field_invalid", id="bool-count"),
    pytest.param({"devices": frozenset()}, "permit.devices_invalid", id="empty-devices"),
    pytest.param({"devices": frozenset({"gpu-0"})}, "permit.devices_invalid", id="str-device"),
    pytest.param(
        {"devices": frozenset({DeviceId("a"), DeviceId("b")}), "device_count": 1},
        "permit.devices_invalid",
        id="more-devices-than-count",
    ),
    pytest.param({"under_order_quorum": 1}, "permit.field_invalid", id="int-flag"),
    pytest.param({"under_order_quorum": True}, "permit.field_invalid", id="quorum-without-order"),
    pytest.param({"under_order": OrderId("pause-1")}, "permit.field_invalid", id="order-no-flag"),
    pytest.param(
        {"under_order": "pause-1", "under_order_quorum": True},
        "permit.field_invalid",
        id="order-not-an-order-id",
    ),
]


@pytest.mark.parametrize(("changes", "reason"), BAD_PERMITS)
def test_bad_permits(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InputError) as caught:
        permit(**changes)
    assert caught.value.reason == reason


def test_permit_validity_is_half_open() -> None:
    terms = permit()
    assert terms.valid_at(T0)
    assert not terms.valid_at(T0 + 30 * DAY)
    assert not terms.valid_at(T0 - DAY)


def test_permit_scope() -> None:
    acme, base = EntityId("acme"), LineageId("base")
    lineage_permit = permit()
    assert lineage_permit.covers(group=acme, lineage=base)
    assert lineage_permit.covers(group=acme, lineage=base, run=RunId("base"))
    assert not lineage_permit.covers(group=EntityId("other"), lineage=base)
    assert not lineage_permit.covers(group=acme, lineage=LineageId("other"))
    run_permit = permit(lineage=None, run=RunId("tune"))
    assert run_permit.covers(group=acme, lineage=base, run=RunId("tune"))
    assert not run_permit.covers(group=acme, lineage=base, run=RunId("other"))
    assert not run_permit.covers(group=acme, lineage=base)  # not a whole lineage
    both = permit(run=RunId("tune"))
    assert both.covers(group=acme, lineage=base, run=RunId("tune"))
    assert not both.covers(group=acme, lineage=LineageId("x"), run=RunId("tune"))
