"""The terms of pause orders and permits, as policy evaluation needs them.

These are plain values: what an order or a permit says, not whether anyone signed it. The
governance layer builds them from documents it has verified (quorum, log inclusion, expiry) and
hands them to :func:`brakepedal.policy.evaluate.evaluate`; nothing here checks a signature.
Constructors enforce every invariant (UTC-aware times, a sunset after the start, a permit that
scopes something), so a value that exists can be relied on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from brakepedal.errors import InputError
from brakepedal.model.types import (
    DeviceId,
    EntityId,
    Flop,
    Identifier,
    LineageId,
    OrderId,
    PermitId,
    RunId,
    utc_datetime,
)

__all__ = ["PauseOrderTerms", "PermitTerms"]

#: The longest a pause order may last before its mandatory sunset, and the longest grace.
MAX_ORDER_DAYS = 3660
MAX_GRACE_SECONDS = 30 * 86_400


def _require(value: object, kind: type, reason: str, what: str) -> None:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InputError(reason, f"{what} must be a {kind.__name__}, got {type(value).__name__}")


def _jurisdictions(values: object, where: str) -> frozenset[str]:
    if not isinstance(values, frozenset) or not values:
        raise InputError("order.jurisdictions_invalid", f"{where}: needs a non-empty frozenset")
    for value in values:
        Identifier(value)  # the same alphabet as every other name
    return values


@dataclass(frozen=True, slots=True)
class PauseOrderTerms:
    """A pause order: lineages above ``threshold_flop`` in ``jurisdictions`` stop training.

    The order is in force from ``effective_from`` until its mandatory ``sunset`` (exclusive).
    Training in the first ``grace_seconds`` is tolerated so running jobs can stop cleanly.
    """

    order_id: OrderId
    threshold_flop: Flop
    jurisdictions: frozenset[str]
    effective_from: datetime
    sunset: datetime
    grace_seconds: int = 0

    def __post_init__(self) -> None:
        where = f"order {self.order_id}"
        _require(self.order_id, OrderId, "order.field_invalid", f"{where}: order_id")
        _require(self.threshold_flop, Flop, "order.field_invalid", f"{where}: threshold_flop")
        _jurisdictions(self.jurisdictions, where)
        object.__setattr__(self, "effective_from", utc_datetime(self.effective_from))
        object.__setattr__(self, "sunset", utc_datetime(self.sunset))
        if self.sunset <= self.effective_from:
            raise InputError("order.sunset_invalid", f"{where}: sunset is not after its start")
        if self.sunset - self.effective_from > timedelta(days=MAX_ORDER_DAYS):
            raise InputError(
                "order.sunset_invalid", f"{where}: lasts more than {MAX_ORDER_DAYS} days"
            )
        _require(self.grace_seconds, int, "order.field_invalid", f"{where}: grace_seconds")
        if not 0 <= self.grace_seconds <= MAX_GRACE_SECONDS:
            raise InputError(
                "order.grace_invalid", f"{where}: grace_seconds not in [0, {MAX_GRACE_SECONDS}]"
            )

    def in_force_at(self, at: datetime) -> bool:
        """Whether the order is in force at ``at`` (from its start until its sunset)."""
        return self.effective_from <= utc_datetime(at) < self.sunset

    @property
    def enforced_from(self) -> datetime:
        """When the grace period ends and training in scope must have stopped."""
        return self.effective_from + timedelta(seconds=self.grace_seconds)

    def applies_to(self, jurisdictions: frozenset[str]) -> bool:
        """Whether the order reaches anything in ``jurisdictions``."""
        return not self.jurisdictions.isdisjoint(jurisdictions)


@dataclass(frozen=True, slots=True, kw_only=True)
class PermitTerms:
    """A training permit: ``owner_group`` may train ``lineage`` (or ``run``) within a budget.

    A permit with ``lineage`` covers every run of that lineage; one with only ``run`` covers
    that run and nothing else; with both, it covers ``run`` if it belongs to ``lineage``.
    ``flop_budget`` bounds the compute done under the permit while it is valid; ``devices``
    and ``device_count``, when given, bound which and how many devices may do it.
    ``under_order`` names the pause order whose quorum issued the permit, the only kind that
    allows training during a pause, and then only during that order: a permit issued under
    ``pause-1`` says nothing about ``pause-2`` (docs/governance.md, "Permits in a pause").
    ``under_order_quorum`` is set exactly when ``under_order`` is.
    """

    permit_id: PermitId
    owner_group: EntityId
    flop_budget: Flop
    valid_from: datetime
    valid_until: datetime
    lineage: LineageId | None = None
    run: RunId | None = None
    device_count: int | None = None
    devices: frozenset[DeviceId] | None = None
    under_order_quorum: bool = False
    under_order: OrderId | None = None

    def __post_init__(self) -> None:
        where = f"permit {self.permit_id}"
        _require(self.permit_id, PermitId, "permit.field_invalid", f"{where}: permit_id")
        _require(self.owner_group, EntityId, "permit.field_invalid", f"{where}: owner_group")
        _require(self.flop_budget, Flop, "permit.field_invalid", f"{where}: flop_budget")
        if self.lineage is None and self.run is None:
            raise InputError("permit.scope_missing", f"{where}: names neither lineage nor run")
        if self.lineage is not None:
            _require(self.lineage, LineageId, "permit.field_invalid", f"{where}: lineage")
        if self.run is not None:
            _require(self.run, RunId, "permit.field_invalid", f"{where}: run")
        object.__setattr__(self, "valid_from", utc_datetime(self.valid_from))
        object.__setattr__(self, "valid_until", utc_datetime(self.valid_until))
        if self.valid_until <= self.valid_from:
            raise InputError("permit.validity_invalid", f"{where}: expires before it starts")
        self._check_devices(where)
        _require(self.under_order_quorum, bool, "permit.field_invalid", f"{where}: quorum flag")
        if self.under_order is not None:
            _require(self.under_order, OrderId, "permit.field_invalid", f"{where}: under_order")
        if (self.under_order is not None) != self.under_order_quorum:
            raise InputError(
                "permit.field_invalid", f"{where}: under_order_quorum iff under_order is set"
            )

    def _check_devices(self, where: str) -> None:
        if self.device_count is not None:
            _require(self.device_count, int, "permit.field_invalid", f"{where}: device_count")
            if self.device_count < 1:
                raise InputError("permit.devices_invalid", f"{where}: device_count below 1")
        if self.devices is not None:
            if not isinstance(self.devices, frozenset) or not self.devices:
                raise InputError("permit.devices_invalid", f"{where}: devices must be non-empty")
            for device in self.devices:
                _require(device, DeviceId, "permit.devices_invalid", f"{where}: device")
            if self.device_count is not None and len(self.devices) > self.device_count:
                raise InputError(
                    "permit.devices_invalid", f"{where}: lists more devices than device_count"
                )

    def valid_at(self, at: datetime) -> bool:
        """Whether the permit is valid at ``at`` (``valid_from`` inclusive, until exclusive)."""
        return self.valid_from <= utc_datetime(at) < self.valid_until

    def covers(self, *, group: EntityId, lineage: LineageId, run: RunId | None = None) -> bool:
        """Whether the permit's scope includes ``lineage`` (or ``run`` of it) of ``group``.

        ``run`` is None when the subject is a whole lineage: only a lineage permit covers it.
        Validity in time is a separate question (:meth:`valid_at`).
        """
        if group != self.owner_group:
            return False
        if self.lineage is not None and self.lineage != lineage:
            return False
        return self.run is None or self.run == run
