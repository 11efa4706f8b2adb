"""Rules between governance documents and the agreement: sunsets, serials, terms, quorum.

The documents themselves (``documents.py``) are values with one byte form; these functions
relate them to the agreement root and turn them into the terms policy evaluation consumes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from brakepedal.errors import InputError
from brakepedal.governance.documents import LiftOrder, PauseOrder, TrainingPermit
from brakepedal.model.types import Flop
from brakepedal.policy.terms import PauseOrderTerms, PermitTerms

__all__ = [
    "check_permit_serial",
    "check_sunset",
    "needs_order_quorum",
    "order_terms",
    "permit_terms",
]


def check_sunset(order: PauseOrder, *, max_sunset: timedelta) -> None:
    """Refuse ``order`` if it lasts longer than the agreement root allows (``max_sunset``).

    Raises:
        InputError: ``document.sunset_too_long``.
    """
    length = order.sunset - order.effective_from
    if length > max_sunset:
        raise InputError(
            "document.sunset_too_long",
            f"pause_order.sunset: order {order.order_id} lasts {length}, the agreement allows "
            f"at most {max_sunset}",
        )


def check_permit_serial(permit: TrainingPermit, *, last_serial: int) -> None:
    """Refuse ``permit`` unless its serial is above ``last_serial`` (0 before the first).

    Serials only increase, so a withheld or replayed permit shows; gaps are allowed (a
    proposal that never reached its quorum still used its number).

    Raises:
        InputError: ``document.serial_not_monotonic``.
    """
    if permit.serial <= last_serial:
        raise InputError(
            "document.serial_not_monotonic",
            f"training_permit.serial: {permit.serial} is not above the last serial {last_serial}",
        )


def order_terms(order: PauseOrder, lifts: Iterable[LiftOrder]) -> PauseOrderTerms | None:
    """The terms of ``order`` as lifted by ``lifts`` (lifts of other orders are ignored).

    The earliest lift of ``order`` that takes effect before its sunset ends the order at the
    lift's time (the terms' sunset). A lift in effect at or before the order's start means the
    order never takes effect: the result is None, not a zero-length order.
    """
    ends = [lift.effective_from for lift in lifts if lift.lifts == order.order_id]
    sunset = min([order.sunset, *ends])
    if sunset <= order.effective_from:
        return None
    return PauseOrderTerms(
        order_id=order.order_id,
        threshold_flop=order.threshold_flop,
        jurisdictions=order.jurisdictions,
        effective_from=order.effective_from,
        sunset=sunset,
        grace_seconds=order.grace_seconds,
    )


def permit_terms(permit: TrainingPermit) -> PermitTerms:
    """The terms policy evaluation needs; ``under_order_quorum`` iff ``under_order`` is set."""
    return PermitTerms(
        permit_id=permit.permit_id,
        owner_group=permit.owner_group,
        flop_budget=permit.flop_budget,
        valid_from=permit.valid_from,
        valid_until=permit.valid_until,
        lineage=permit.lineage,
        run=permit.run,
        device_count=permit.device_count,
        devices=permit.devices,
        under_order_quorum=permit.under_order is not None,
    )


def needs_order_quorum(
    permit: TrainingPermit, orders_in_force: Iterable[PauseOrder], lineage_total: Flop | None
) -> bool:
    """Whether ``permit`` needs the quorum of a pause order, not only the permit authority.

    The rule, conservative where the permit cannot say: a permit is in an order's scope when

    1. its validity overlaps the order's ``[effective_from, sunset)`` (training under the
       permit can happen while the order is in force); and
    2. the compute it would allow reaches the order's threshold:
       ``lineage_total + flop_budget >= threshold_flop``, where ``lineage_total`` is what the
       permit's lineage (or the run's lineage) has already used; None when unknown, when the
       budget alone counts. Reaching, not only passing, the threshold counts, because a policy
       rule may be inclusive.

    Jurisdictions are not compared: a permit does not name where it trains, so every order in
    ``orders_in_force`` counts. The caller passes the orders in force (lifts applied).
    """
    projected = permit.flop_budget.value + (0 if lineage_total is None else lineage_total.value)
    return any(
        permit.valid_from < order.sunset
        and order.effective_from < permit.valid_until
        and projected >= order.threshold_flop.value
        for order in orders_in_force
    )
