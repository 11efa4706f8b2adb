"""Permits against the ledger: which compute they cover, and how their own limits are broken.

Pure functions over a :class:`~brakepedal.accounting.ledger.Ledger`. Compute outside permits
is measured over the gaps between the permits' validity intervals, never as a total minus a
covered part: :meth:`~brakepedal.accounting.ledger.Ledger.within` is an upper bound, so
measuring the gaps directly keeps the uncovered figure an upper bound too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from brakepedal.accounting.ledger import Ledger, Subject
from brakepedal.model.types import EntityId, Flop, LineageId, OrderId, RunId
from brakepedal.policy.explain import format_flop
from brakepedal.policy.terms import PermitTerms

__all__ = ["PermitBreach", "breaches", "covering", "gaps", "uncovered"]

Span = tuple[datetime, datetime]


@dataclass(frozen=True, slots=True)
class PermitBreach:
    """One way a permit's own limits were exceeded."""

    reason: Literal["permit_budget_exceeded", "permit_devices_exceeded"]
    detail: str
    measured: Flop | None = None


def covering(
    permits: Iterable[PermitTerms],
    *,
    group: EntityId,
    lineage: LineageId,
    run: RunId | None,
    order: OrderId | None,
) -> list[PermitTerms]:
    """The permits whose scope includes the subject (``run`` None: the whole ``lineage``);
    with ``order`` (a pause order in force), only the permits issued under that order."""
    return [
        permit
        for permit in permits
        if permit.covers(group=group, lineage=lineage, run=run)
        and (order is None or permit.under_order == order)
    ]


def gaps(span: Span, covered: Iterable[Span]) -> list[Span]:
    """The parts of ``span`` outside every interval of ``covered`` (intervals half-open)."""
    start, end = span
    found: list[Span] = []
    cursor = start
    for low, high in sorted(covered):
        if high <= cursor or low >= end:
            continue
        if low > cursor:
            found.append((cursor, low))
        cursor = max(cursor, high)
    if cursor < end:
        found.append((cursor, end))
    return found


def uncovered(
    ledger: Ledger, kind: Subject, subject: str, span: Span, permits: Sequence[PermitTerms]
) -> Flop:
    """The subject's compute in ``span`` outside the validity of every one of ``permits``."""
    intervals = [(permit.valid_from, permit.valid_until) for permit in permits]
    return Flop.total(
        ledger.within(kind, subject, low, high) for low, high in gaps(span, intervals)
    )


def breaches(
    ledger: Ledger, kind: Subject, subject: str, permit: PermitTerms, *, at: datetime
) -> list[PermitBreach]:
    """How the subject's use of ``permit`` up to ``at`` exceeds its budget or devices."""
    start, end = permit.valid_from, min(permit.valid_until, at)
    if end <= start:
        return []
    found: list[PermitBreach] = []
    used = ledger.within(kind, subject, start, end)
    if used > permit.flop_budget:
        found.append(
            PermitBreach(
                "permit_budget_exceeded",
                f"permit {permit.permit_id} allows {format_flop(permit.flop_budget)}; "
                f"{format_flop(used)} was used under it",
                used,
            )
        )
    devices = ledger.devices(kind, subject, start, end)
    outside = sorted(devices - permit.devices) if permit.devices is not None else []
    if outside:
        detail = f"permit {permit.permit_id} does not allow devices {', '.join(outside)}"
        found.append(PermitBreach("permit_devices_exceeded", detail))
    elif permit.device_count is not None and len(devices) > permit.device_count:
        detail = (
            f"permit {permit.permit_id} allows {permit.device_count} devices; "
            f"{len(devices)} were used"
        )
        found.append(PermitBreach("permit_devices_exceeded", detail))
    return found
