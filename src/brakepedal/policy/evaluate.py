"""Policy evaluation: accounting state plus orders and permits in, obligations and violations out.

:func:`evaluate` is pure: the ledger, the policy, the orders and permits the governance layer
verified, and the moment ``at`` are arguments. Every finding names the rule it comes from and
quotes the rule's citation, and the result is in a fixed order (rule, subject, order, reason,
permit), so two evaluations of the same state are equal. For each rule, in the policy's order:

1. Compute rules (subjects ``lineage``, ``run``, ``group``) measure each subject's attested
   compute up to ``at`` (or within the rolling window ending at ``at``) against the threshold
   band: above ``threshold_flop`` (or at it, if inclusive) and at most ``upper_flop``.
   ``notify`` and ``provider_status`` give an obligation due ``notify_within_days`` after the
   crossing; past due and not in ``notified`` it is also a ``notify_overdue`` violation.
   ``prohibited`` gives a violation. ``permit_required`` gives a ``permit_missing`` violation
   when any of the subject's compute lies outside every valid permit covering it, and checks
   each covering permit's FLOP budget and devices.
2. ``during_pause_only`` rules apply once per pause order that has started: subjects whose
   compute by the sunset (or ``at``) is above the order's threshold (and the rule's) and that
   trained between the end of the grace period and the sunset, outside permits issued under
   the order's quorum, violate the order. An order that has ended still judges what happened
   while it was in force.
3. ``downstream_modifier`` rules look at every continuation of a model by another group.
4. Cluster rules compare each site's combined peak capacity with the threshold.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from brakepedal.accounting.ledger import UNSITED, Ledger, Subject
from brakepedal.accounting.lineage import RunKind
from brakepedal.accounting.usage import EARLIEST, LATEST
from brakepedal.errors import InputError
from brakepedal.model.types import (
    EntityId,
    Flop,
    LineageId,
    OrderId,
    PermitId,
    RunId,
    SiteId,
    utc_datetime,
)
from brakepedal.policy import permits
from brakepedal.policy.findings import (
    Evaluation,
    Obligation,
    Quantity,
    RuleFinding,
    Unit,
    Violation,
    ViolationReason,
)
from brakepedal.policy.model import Policy, Rule, SubjectKind
from brakepedal.policy.terms import PauseOrderTerms, PermitTerms

__all__ = ["evaluate"]

_EPOCH = datetime.min.replace(tzinfo=UTC)
_SortKey = tuple[int, str, str, str, str, str]


def evaluate(
    policy: Policy,
    ledger: Ledger,
    *,
    at: datetime,
    orders: Sequence[PauseOrderTerms] = (),
    permits: Sequence[PermitTerms] = (),
    notified: Collection[tuple[str, str]] = (),
    monitored_sites: Collection[SiteId] = (),
) -> Evaluation:
    """Evaluate ``policy`` over ``ledger`` as of ``at`` (see the module docstring).

    ``notified`` holds the ``(rule_id, subject_id)`` pairs whose notification was made;
    ``monitored_sites`` the sites a ``monitored_sites_exempt`` cluster rule leaves alone (never
    the pseudo-site of windows that name no site).

    Raises:
        InputError: ``policy.ledger_mismatch`` when the ledger was not built with the
            policy's bound rule, control rule and exempt workloads.
    """
    _check_ledger(policy, ledger)
    moment = utc_datetime(at)
    if not EARLIEST <= moment <= LATEST:
        raise InputError(
            "policy.time_out_of_range", f"evaluation time {moment} is outside 1970 to 9000"
        )
    state = _Evaluator(policy, ledger, moment, tuple(permits), frozenset(notified))
    for index, rule in enumerate(policy.rules):
        if rule.subject == "site":
            state.cluster(index, rule, frozenset(monitored_sites) - {UNSITED})
        elif rule.subject == "downstream_modifier":
            state.modifier(index, rule)
        elif rule.during_pause_only:
            for order in orders:
                state.pause(index, rule, order)
        else:
            state.compute(index, rule)
    return Evaluation(
        policy_id=str(policy.id),
        policy_version=policy.version,
        at=state.at,
        obligations=tuple(item for _, item in sorted(state.obligations, key=lambda p: p[0])),
        violations=tuple(item for _, item in sorted(state.violations, key=lambda p: p[0])),
    )


def _check_ledger(policy: Policy, ledger: Ledger) -> None:
    accounting = policy.accounting
    checks = (
        ("bound rule", ledger.rule, accounting.bound_rule()),
        ("exempt workloads", ledger.exempt_workloads, accounting.exempt()),
        ("control rule", ledger.ownership.rule, accounting.control_rule()),
    )
    for what, actual, expected in checks:
        if actual != expected:
            raise InputError(
                "policy.ledger_mismatch",
                f"the ledger's {what} is {actual}; policy {policy.id} counts with {expected}",
                remediation="Build the ledger with the policy's accounting.bound_rule(), "
                "control_rule() and exempt().",
            )


def _flop(value: Flop | int | Fraction) -> str:
    return str(Quantity.of_flop(value))


def _compared(rule: Rule) -> str:
    return "at least" if rule.threshold_inclusive else "more than"


class _Evaluator:
    """One evaluation: its inputs and the findings gathered so far."""

    def __init__(
        self,
        policy: Policy,
        ledger: Ledger,
        at: datetime,
        permits: tuple[PermitTerms, ...],
        notified: frozenset[tuple[str, str]],
    ) -> None:
        self.policy, self.ledger, self.at = policy, ledger, at
        self.permits, self.notified = permits, notified
        self.obligations: list[tuple[_SortKey, Obligation]] = []
        self.violations: list[tuple[_SortKey, Violation]] = []
        self.by_group = policy.accounting.affiliates == "group"

    # ------------------------------------------------------------------ subjects

    def _kind(self, subject: SubjectKind) -> Subject:
        if subject == "lineage":
            return Subject.LINEAGE
        if subject == "run":
            return Subject.RUN
        return Subject.GROUP if self.by_group else Subject.ENTITY

    def _party(self, subject: SubjectKind, name: str) -> EntityId:
        if subject == "group":
            return EntityId(name)
        if subject == "run" or name in self.ledger.runs:
            owner = self.ledger.run(RunId(name)).owner
        else:  # an unattributed pseudo-lineage: all its windows have one owner
            owner = self.ledger.windows(Subject.LINEAGE, name)[0].window.owner
        return self.ledger.group_of(owner) if self.by_group else owner

    def _runs(self, subject: SubjectKind, name: str) -> tuple[RunId, ...]:
        if subject == "run":
            return (RunId(name),)
        if subject == "lineage":
            return self.ledger.runs.members(LineageId(name))
        return ()

    def _applies(self, rule: Rule, name: str) -> bool:
        runs = [self.ledger.run(r) for r in self._runs(rule.subject, name)]
        domain = rule.data_domain
        if domain is not None and not any(domain in r.data_domains for r in runs):
            return False
        if rule.post_training_only:
            return any(r.starts_from or r.kind is not RunKind.PRETRAINING for r in runs)
        return True

    def _measure(self, rule: Rule, name: str) -> tuple[Flop, datetime]:
        """The subject's compute and when it crossed the threshold (``at`` if unknown)."""
        kind = self._kind(rule.subject)
        days = self.policy.accounting.rolling_window_days
        if days is not None:
            return self.ledger.within(kind, name, self.at - timedelta(days=days), self.at), self.at
        measured = self.ledger.total(kind, name, until=self.at)
        crossed = self.ledger.crossed_at(
            kind, name, rule.flop_threshold, inclusive=rule.threshold_inclusive
        )
        return measured, self.at if crossed is None else min(crossed, self.at)

    def _in_band(self, rule: Rule, measured: Flop, threshold: Flop) -> bool:
        above = rule.exceeds(measured.value, threshold.value)
        return above and (rule.upper_flop is None or measured <= rule.upper_flop)

    def _facts(
        self,
        rule: Rule,
        name: str,
        measured: Quantity,
        threshold: Quantity,
        *,
        party: EntityId | None,
        explanation: str,
    ) -> RuleFinding:
        return RuleFinding(
            rule_id=str(rule.id),
            rule_kind=rule.kind,
            citation=self.policy.citation_text(rule),
            subject_kind=rule.subject,
            subject_id=str(name),
            party=party,
            measured=measured,
            threshold=threshold,
            binding=self.policy.binding,
            explanation=explanation,
        )

    def _compute_facts(self, rule: Rule, name: str, measured: Flop, threshold: Flop) -> RuleFinding:
        used, limit = Quantity.of_flop(measured), Quantity.of_flop(threshold)
        return self._facts(
            rule,
            name,
            used,
            limit,
            party=self._party(rule.subject, name),
            explanation=f"{rule.subject} {name} used {used}, {_compared(rule)} {limit}",
        )

    # ------------------------------------------------------------------ rules

    def compute(self, index: int, rule: Rule) -> None:
        """Step 1: a compute rule over every subject of its kind."""
        for name in self.ledger.subjects(self._kind(rule.subject)):
            measured, crossed = self._measure(rule, name)
            if not self._in_band(rule, measured, rule.flop_threshold):
                continue
            if not self._applies(rule, name):
                continue
            facts = self._compute_facts(rule, name, measured, rule.flop_threshold)
            if rule.kind == "prohibited":
                self._violate(index, facts, "prohibited", "above the prohibited threshold")
            elif rule.kind == "permit_required":
                self._permits(
                    index, rule, name=name, facts=facts, span=(_EPOCH, self.at), order=None
                )
            else:
                self._oblige(index, rule, facts, crossed)

    def pause(self, index: int, rule: Rule, order: PauseOrderTerms) -> None:
        """Step 2: a ``during_pause_only`` rule under one pause order."""
        span = (order.enforced_from, min(order.sunset, self.at))
        if span[1] <= span[0]:
            return
        threshold = max(rule.flop_threshold, order.threshold_flop)
        kind = self._kind(rule.subject)
        for name in self.ledger.subjects(kind):
            # In scope by what it had used when the order ended (or now): training after the
            # sunset cannot bring earlier training into the order's scope.
            measured = self.ledger.total(kind, name, until=span[1])
            if not self._in_band(rule, measured, threshold):
                continue
            if not (self._in_scope(rule, name, order) and self._applies(rule, name)):
                continue
            facts = self._compute_facts(rule, name, measured, threshold)
            if rule.kind == "permit_required":
                self._permits(index, rule, name=name, facts=facts, span=span, order=order)
                continue
            trained = self.ledger.within(kind, name, *span)
            if trained.value:
                why = (
                    f"{_flop(trained)} of training while pause order {order.order_id} was in force"
                )
                self._violate(
                    index, facts, "pause_order", why, order=order.order_id, measured=trained
                )

    def _in_scope(self, rule: Rule, name: str, order: PauseOrderTerms) -> bool:
        declared = {str(self.policy.jurisdiction)}
        for run in self._runs(rule.subject, name):
            declared |= self.ledger.run(run).jurisdictions
        return order.applies_to(frozenset(declared))

    def modifier(self, index: int, rule: Rule) -> None:
        """Step 3: modifications of models above the threshold, by more than the fraction."""
        fraction = rule.fraction_of_original or Fraction(1)
        for item in self.ledger.modifications():
            if not rule.exceeds(item.original.value, rule.flop_threshold.value):
                continue
            limit = fraction * item.original.value
            if item.modification.value <= limit:
                continue
            facts = self._facts(
                rule,
                item.root,
                Quantity.of_flop(item.modification),
                Quantity.of_flop(limit),
                party=item.modifier,
                explanation=f"{item.modifier} spent {_flop(item.modification)} continuing "
                f"{item.root}, more than {fraction} of the original's {_flop(item.original)}",
            )
            self._oblige(index, rule, facts, None)

    def cluster(self, index: int, rule: Rule, monitored: frozenset[SiteId]) -> None:
        """Step 4: sites whose combined capacity is past a cluster threshold."""
        unit: Unit = "op/s" if rule.cluster_peak_ops_per_s is not None else "H100-equivalents"
        threshold = Quantity(rule.capacity_threshold, unit)
        for name in self.ledger.subjects(Subject.SITE):
            site = SiteId(name)
            if rule.monitored_sites_exempt and site in monitored:
                continue
            capacity = self.ledger.site_capacity(site)
            measured = Quantity(
                Fraction(capacity.peak_ops_per_s) if unit == "op/s" else capacity.h100_equivalents,
                unit,
            )
            if not rule.exceeds(measured.value, threshold.value):
                continue
            where = "unmonitored site" if rule.monitored_sites_exempt else "site"
            facts = self._facts(
                rule,
                site,
                measured,
                threshold,
                party=None,
                explanation=f"{where} {site} has {len(capacity.devices)} devices with "
                f"{measured}, {_compared(rule)} {threshold}",
            )
            if rule.kind == "cluster_notify":
                self._oblige(index, rule, facts, None)
            else:
                why = "outside a monitored site" if rule.monitored_sites_exempt else "prohibited"
                reason: ViolationReason = (
                    "cluster_unmonitored" if rule.monitored_sites_exempt else "cluster_prohibited"
                )
                self._violate(index, facts, reason, why)

    # ------------------------------------------------------------------ outcomes

    def _oblige(self, index: int, rule: Rule, facts: RuleFinding, crossed: datetime | None) -> None:
        days = rule.notify_within_days
        due = crossed + timedelta(days=days) if crossed is not None and days is not None else None
        satisfied = (facts.rule_id, facts.subject_id) in self.notified
        obligation = Obligation(**facts.facts(), crossed_at=crossed, due=due, satisfied=satisfied)
        self.obligations.append((_key(index, obligation), obligation))
        if due is not None and not satisfied and self.at > due:
            late = f"not notified by the deadline {due:%Y-%m-%d %H:%M:%S}Z"
            self._violate(index, facts, "notify_overdue", late)

    def _violate(
        self,
        index: int,
        facts: RuleFinding,
        reason: ViolationReason,
        why: str,
        *,
        order: OrderId | None = None,
        permit: PermitId | None = None,
        measured: Flop | None = None,
    ) -> None:
        facts = replace(facts, explanation=f"{facts.explanation}: {why}")
        if measured is not None:
            facts = replace(facts, measured=Quantity.of_flop(measured))
        violation = Violation(**facts.facts(), reason=reason, order_id=order, permit_id=permit)
        self.violations.append((_key(index, violation), violation))

    def _permits(
        self,
        index: int,
        rule: Rule,
        *,
        name: str,
        facts: RuleFinding,
        span: tuple[datetime, datetime],
        order: PauseOrderTerms | None,
    ) -> None:
        """Compute in ``span`` outside covering permits, and each covering permit's limits."""
        kind = self._kind(rule.subject)
        run = RunId(name) if rule.subject == "run" else None
        scope = permits.covering(
            self.permits,
            group=self._party(rule.subject, name),
            lineage=self.ledger.lineage_of(run) if run is not None else LineageId(name),
            run=run,
            order=None if order is None else order.order_id,
        )
        outside = permits.uncovered(self.ledger, kind, name, span, scope)
        if outside.value and order is None:
            why = f"{_flop(outside)} of it outside every valid permit covering it"
            self._violate(index, facts, "permit_missing", why, measured=outside)
        elif outside.value and order is not None:
            why = (
                f"{_flop(outside)} of training while pause order {order.order_id} was in "
                "force, outside every permit issued under its quorum"
            )
            self._violate(index, facts, "pause_order", why, order=order.order_id, measured=outside)
        for permit in scope:
            for breach in permits.breaches(self.ledger, kind, name, permit, at=self.at):
                self._violate(
                    index,
                    facts,
                    breach.reason,
                    breach.detail,
                    permit=permit.permit_id,
                    measured=breach.measured,
                )


def _key(index: int, finding: Obligation | Violation) -> _SortKey:
    subject = (index, finding.subject_kind, finding.subject_id)
    if isinstance(finding, Obligation):
        return (*subject, "", "", "")
    return (*subject, finding.order_id or "", finding.reason, finding.permit_id or "")
