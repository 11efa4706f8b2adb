"""What a policy evaluation returns: obligations, violations, and the figures they cite.

Every :class:`Obligation` and :class:`Violation` is a :class:`RuleFinding`: the rule it comes
from, the rule's citation as text, the subject (a lineage, a run, a group, a site, a downstream
modification), the party responsible where there is one, the measured figure against the
threshold, whether the policy binds (only ``in_force`` policies do) and one line of explanation.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from fractions import Fraction
from typing import Any, Literal

from brakepedal.model.types import EntityId, Flop, OrderId, PermitId
from brakepedal.policy.explain import format_quantity
from brakepedal.policy.model import RuleKind, SubjectKind

__all__ = [
    "Evaluation",
    "Obligation",
    "Quantity",
    "RuleFinding",
    "Unit",
    "Violation",
    "ViolationReason",
]

Unit = Literal["FLOP", "op/s", "H100-equivalents"]

ViolationReason = Literal[
    "prohibited",
    "permit_missing",
    "permit_budget_exceeded",
    "permit_devices_exceeded",
    "notify_overdue",
    "pause_order",
    "cluster_prohibited",
    "cluster_unmonitored",
]


@dataclass(frozen=True, slots=True)
class Quantity:
    """An exact figure and its unit: FLOP, op/s or H100-equivalents."""

    value: Fraction
    unit: Unit

    @classmethod
    def of_flop(cls, flop: Flop | int | Fraction) -> Quantity:
        """A FLOP figure (a :class:`Flop`, or an exact number of FLOP)."""
        return cls(Fraction(flop.value if isinstance(flop, Flop) else flop), "FLOP")

    def __str__(self) -> str:
        return format_quantity(self.value, self.unit)


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleFinding:
    """What every obligation and violation says about its rule and subject."""

    rule_id: str
    rule_kind: RuleKind
    citation: str
    subject_kind: SubjectKind
    subject_id: str
    party: EntityId | None
    measured: Quantity
    threshold: Quantity
    binding: bool
    explanation: str

    def facts(self) -> dict[str, Any]:
        """The :class:`RuleFinding` fields, to build an obligation or violation from."""
        return {field.name: getattr(self, field.name) for field in fields(RuleFinding)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Obligation(RuleFinding):
    """Something a party must do because a threshold was crossed.

    ``due`` is None when the rule sets no deadline; ``satisfied`` says the caller reported the
    obligation met (for notifications: listed in ``notified``).
    """

    crossed_at: datetime | None
    due: datetime | None
    satisfied: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Violation(RuleFinding):
    """A breach of a rule, naming the pause order or permit involved where there is one."""

    reason: ViolationReason
    order_id: OrderId | None = None
    permit_id: PermitId | None = None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Everything a policy says about one accounting state at one moment, in a fixed order."""

    policy_id: str
    policy_version: int
    at: datetime
    obligations: tuple[Obligation, ...]
    violations: tuple[Violation, ...]

    @property
    def compliant(self) -> bool:
        """No binding violation."""
        return not any(v.binding for v in self.violations)

    def for_rule(self, rule_id: str) -> tuple[tuple[Obligation, ...], tuple[Violation, ...]]:
        """The obligations and violations of one rule."""
        return (
            tuple(o for o in self.obligations if o.rule_id == rule_id),
            tuple(v for v in self.violations if v.rule_id == rule_id),
        )
