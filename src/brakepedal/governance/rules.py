"""Rules between governance documents and the agreement: sunsets, serials, terms, quorum.

The documents themselves (``documents.py``) are values with one byte form; these functions
relate them to the agreement root and turn them into the terms policy evaluation consumes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from brakepedal.errors import InputError, TrustError
from brakepedal.governance.documents import (
    GovernanceDocument,
    LiftOrder,
    PauseOrder,
    PolicyVersion,
    TrainingPermit,
    parse_document,
)
from brakepedal.model.types import Flop
from brakepedal.policy.terms import PauseOrderTerms, PermitTerms

__all__ = [
    "POLICY_FILE_SUFFIXES",
    "check_permit_serial",
    "check_sunset",
    "document_at",
    "is_policy_file",
    "needs_order_quorum",
    "order_terms",
    "permit_terms",
    "policy_file_path",
]

#: A target under ``policies/`` with one of these suffixes is a policy file, not a document:
#: a :class:`~brakepedal.governance.documents.PolicyVersion` names it by hash.
POLICY_FILE_SUFFIXES = (".toml", ".yaml")


def is_policy_file(path: str) -> bool:
    """Whether the target at ``path`` is a policy file (not a governance document)."""
    return path.startswith("policies/") and path.endswith(POLICY_FILE_SUFFIXES)


def policy_file_path(version: PolicyVersion) -> str:
    """Where the policy file a :class:`PolicyVersion` names is published."""
    suffix = ".toml" if version.media_type == "application/toml" else ".yaml"
    return f"policies/{version.policy_id}/{version.version}{suffix}"


def document_at(path: str, data: bytes, *, max_sunset: timedelta) -> GovernanceDocument | None:
    """The governance document published at target ``path``, checked as a view checks it:
    strictly parsed, at its own target path, an order no longer than the agreement allows.
    None for a policy file (checked against its policy version instead).

    Raises:
        InputError: the parser's reasons, ``document.sunset_too_long``.
        TrustError: ``governance.path_mismatch`` for a document at another document's path.
    """
    if is_policy_file(path):
        return None
    document = parse_document(data)
    if document.target_path != path:
        raise TrustError("governance.path_mismatch", f"{path} holds {document.target_path}")
    if isinstance(document, PauseOrder):
        check_sunset(document, max_sunset=max_sunset)
    return document


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
    """The terms policy evaluation needs, with the permit's ``under_order``;
    ``under_order_quorum`` iff ``under_order`` is set."""
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
        under_order=permit.under_order,
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
