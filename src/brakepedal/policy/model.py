"""Policy documents as typed, frozen models: thresholds as code, every rule citing its source.

A :class:`Policy` is valid from the moment it exists: unknown fields, negative or inexact
thresholds, citations to sources the policy does not list and rule fields that make no sense
for the rule's kind are all refused while it is built. Build one from a file with
:func:`brakepedal.policy.load.parse_policy`, which turns every defect into an
:class:`~brakepedal.errors.InputError` naming the field (``rules[1].threshold_flop``);
constructing the models directly raises pydantic's ``ValidationError`` instead.

Quantities never pass through a float. FLOP counts are written as strings (``"1e25"``) and read
exactly by :meth:`~brakepedal.model.types.Flop.parse_human`; shares and fractions are decimal or
``a/b`` strings read into :class:`~fractions.Fraction`. ``docs/policy.md`` describes every field.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator
from pydantic_core import PydanticCustomError

from brakepedal.accounting.flop import BoundBasis, BoundRule
from brakepedal.accounting.groups import ControlRule
from brakepedal.accounting.usage import Workload
from brakepedal.errors import InputError
from brakepedal.model.types import Flop, Identifier
from brakepedal.policy.fields import (
    MAX_DAYS,
    MAX_MINUTES,
    Amount,
    Days,
    FlopField,
    Minutes,
    Name,
    Note,
    OpsRate,
    PolicyIdField,
    PrecisionField,
    Share,
    StrictBool,
    Title,
    Url,
    policy_error,
)

__all__ = [
    "POLICY_FORMAT",
    "AccountingRules",
    "Citation",
    "Policy",
    "Rule",
    "RuleKind",
    "Source",
    "SubjectKind",
]

POLICY_FORMAT = "brakepedal.policy"

RuleKind = Literal[
    "notify",
    "permit_required",
    "prohibited",
    "provider_status",
    "cluster_notify",
    "cluster_prohibited",
]
SubjectKind = Literal["lineage", "run", "group", "site", "downstream_modifier"]

_CLUSTER_KINDS = frozenset({"cluster_notify", "cluster_prohibited"})
_PAUSE_KINDS = frozenset({"permit_required", "prohibited"})
_DEADLINE_KINDS = frozenset({"notify", "provider_status"})


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------- models


class Source(_Frozen):
    """A document rules cite: a regulation, an order, a draft treaty, a design."""

    id: Name
    title: Title
    url: Url
    note: Note | None = None


class Citation(_Frozen):
    """Where a rule comes from: one of the policy's sources and a pinpoint inside it."""

    source: Name
    pinpoint: Title
    note: Note | None = None


class AccountingRules(_Frozen):
    """How compute is counted before any rule compares it with a threshold."""

    precisions: Annotated[tuple[PrecisionField, ...], Field(min_length=1)]
    bound_basis: Literal["wall", "busy", "tensor_active"] = "busy"
    count_fine_tuning: StrictBool = True
    affiliates: Literal["group", "entity"] = "group"
    control_threshold: Share = Fraction(1, 2)
    control_inclusive: StrictBool = False
    control_by_board: StrictBool = True
    control_indirect: StrictBool = True
    rolling_window_days: Annotated[int, Strict(), Field(ge=1, le=MAX_DAYS)] | None = None
    exempt_workloads: tuple[Literal["inference"], ...] = ()
    reporting_cadence_minutes: Minutes = 5
    max_report_gap_minutes: Annotated[int, Strict(), Field(ge=0, le=MAX_MINUTES)] = 15

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if len(set(self.precisions)) != len(self.precisions):
            raise policy_error("field_invalid", "lists a precision twice", field="precisions")
        if len(set(self.exempt_workloads)) != len(self.exempt_workloads):
            raise policy_error("field_invalid", "lists a workload twice", field="exempt_workloads")
        return self

    def bound_rule(self) -> BoundRule:
        """The rule the ledger bounds every usage window with."""
        return BoundRule(frozenset(self.precisions), BoundBasis(self.bound_basis))

    def control_rule(self) -> ControlRule:
        """The rule that makes ownership groups out of holdings."""
        return ControlRule(
            threshold=self.control_threshold,
            inclusive=self.control_inclusive,
            board_control=self.control_by_board,
            indirect=self.control_indirect,
        )

    def exempt(self) -> frozenset[Workload]:
        """Workloads whose compute does not count toward training totals."""
        return frozenset(Workload(w) for w in self.exempt_workloads)


class Rule(_Frozen):
    """One threshold and what crossing it means. ``docs/policy.md`` explains each field."""

    id: Name
    title: Title
    citation: Citation
    kind: RuleKind
    subject: SubjectKind
    threshold_flop: FlopField | None = None
    threshold_inclusive: StrictBool = False
    upper_flop: FlopField | None = None
    data_domain: Name | None = None
    post_training_only: StrictBool = False
    notify_within_days: Days | None = None
    fraction_of_original: Share | None = None
    cluster_peak_ops_per_s: OpsRate | None = None
    cluster_h100_equivalents: Amount | None = None
    monitored_sites_exempt: StrictBool = False
    during_pause_only: StrictBool = False
    note: Note | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.kind in _CLUSTER_KINDS or self.subject == "site":
            self._check_cluster()
        else:
            self._check_compute()
        if self.notify_within_days is not None and self.kind not in _DEADLINE_KINDS:
            raise _only("notify_within_days", "notify and provider_status rules")
        return self

    def _check_cluster(self) -> None:
        if self.kind not in _CLUSTER_KINDS:
            raise _only("subject", "cluster_notify and cluster_prohibited rules (subject 'site')")
        if self.subject != "site":
            raise policy_error(
                "field_invalid", "a cluster rule has subject 'site'", field="subject"
            )
        capacity = (self.cluster_peak_ops_per_s, self.cluster_h100_equivalents)
        if sum(value is not None for value in capacity) != 1:
            raise policy_error(
                "field_missing",
                "a cluster rule needs exactly one of cluster_peak_ops_per_s and "
                "cluster_h100_equivalents",
                field="cluster_peak_ops_per_s",
            )
        for name in ("threshold_flop", "upper_flop", "data_domain", "fraction_of_original"):
            if getattr(self, name) is not None:
                raise _only(name, "compute rules, not cluster rules")
        for name in ("post_training_only", "during_pause_only"):
            if getattr(self, name):
                raise _only(name, "compute rules, not cluster rules")

    def _check_compute(self) -> None:
        if self.threshold_flop is None:
            raise policy_error("field_missing", "required for this rule", field="threshold_flop")
        if self.upper_flop is not None and self.upper_flop <= self.threshold_flop:
            raise policy_error("field_invalid", "must exceed threshold_flop", field="upper_flop")
        for name in ("cluster_peak_ops_per_s", "cluster_h100_equivalents"):
            if getattr(self, name) is not None:
                raise _only(name, "cluster rules")
        if self.monitored_sites_exempt:
            raise _only("monitored_sites_exempt", "cluster rules")
        modifier = self.subject == "downstream_modifier"
        if modifier != (self.fraction_of_original is not None):
            raise policy_error(
                "field_invalid" if not modifier else "field_missing",
                "required for, and only for, subject 'downstream_modifier'",
                field="fraction_of_original",
            )
        if modifier and self.kind not in ("notify", "provider_status"):
            raise _only("kind", "notify and provider_status rules (subject 'downstream_modifier')")
        if modifier and self.notify_within_days is not None:
            raise _only("notify_within_days", "lineage, run and group subjects")
        if self.kind == "permit_required" and self.subject not in ("lineage", "run"):
            raise _only("subject", "lineage and run subjects of permit_required rules")
        if self.data_domain is not None and self.subject not in ("lineage", "run"):
            raise _only("data_domain", "lineage and run rules")
        if self.post_training_only and self.subject != "run":
            raise _only("post_training_only", "run rules")
        if self.during_pause_only and (
            self.kind not in _PAUSE_KINDS or self.subject not in ("lineage", "run")
        ):
            raise _only("during_pause_only", "permit_required and prohibited lineage or run rules")

    @property
    def capacity_threshold(self) -> Fraction:
        """A cluster rule's threshold in its own unit (op/s or H100-equivalents)."""
        if self.cluster_peak_ops_per_s is not None:
            return Fraction(self.cluster_peak_ops_per_s)
        if self.cluster_h100_equivalents is not None:
            return self.cluster_h100_equivalents
        raise InputError("policy.not_cluster_rule", f"rule {self.id} is not a cluster rule")

    @property
    def flop_threshold(self) -> Flop:
        """A compute rule's threshold (lower bound of its band)."""
        if self.threshold_flop is None:
            raise InputError("policy.not_compute_rule", f"rule {self.id} is a cluster rule")
        return self.threshold_flop

    def exceeds(self, measured: Fraction | int, threshold: Fraction | int) -> bool:
        """Whether ``measured`` is past ``threshold`` under this rule's inclusiveness."""
        return measured >= threshold if self.threshold_inclusive else measured > threshold


def _only(name: str, where: str) -> PydanticCustomError:
    return policy_error("field_invalid", f"allowed only for {where}", field=name)


class Policy(_Frozen):
    """A versioned policy: its sources, how it counts compute, and its rules."""

    format: Literal["brakepedal.policy"]
    id: PolicyIdField
    version: Annotated[int, Strict(), Field(ge=1)]
    title: Title
    status: Literal["in_force", "reference", "draft"]
    jurisdiction: Name
    sources: Annotated[tuple[Source, ...], Field(min_length=1)]
    accounting: AccountingRules
    rules: Annotated[tuple[Rule, ...], Field(min_length=1)]
    note: Note | None = None

    @model_validator(mode="after")
    def _references(self) -> Self:
        _distinct_ids("sources", [s.id for s in self.sources])
        _distinct_ids("rules", [r.id for r in self.rules])
        known = {s.id for s in self.sources}
        for index, rule in enumerate(self.rules):
            if rule.citation.source not in known:
                raise policy_error(
                    "citation_unknown_source",
                    f"'{rule.citation.source}' is not among the policy's sources "
                    f"({', '.join(sorted(known))})",
                    field=f"rules[{index}].citation.source",
                )
            if rule.subject == "lineage" and not self.accounting.count_fine_tuning:
                raise policy_error(
                    "field_invalid",
                    "a lineage rule counts fine-tuning; set accounting.count_fine_tuning = "
                    "true or use subject 'run'",
                    field=f"rules[{index}].subject",
                )
        return self

    @property
    def binding(self) -> bool:
        """Whether obligations under this policy bind anyone (only ``in_force`` ones do)."""
        return self.status == "in_force"

    def source(self, source_id: str) -> Source:
        """The source called ``source_id``."""
        for source in self.sources:
            if source.id == source_id:
                return source
        raise InputError("policy.source_unknown", f"policy {self.id} has no source {source_id!r}")

    def rule(self, rule_id: str) -> Rule:
        """The rule called ``rule_id``."""
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise InputError("policy.rule_unknown", f"policy {self.id} has no rule {rule_id!r}")

    def citation_text(self, rule: Rule) -> str:
        """``"<source title>, <pinpoint>"``: what a finding prints as its legal basis."""
        return f"{self.source(rule.citation.source).title}, {rule.citation.pinpoint}"


def _distinct_ids(where: str, ids: list[Identifier]) -> None:
    seen: set[str] = set()
    for index, name in enumerate(ids):
        if name in seen:
            raise policy_error(
                "duplicate_id", f"'{name}' is used twice", field=f"{where}[{index}].id"
            )
        seen.add(name)
