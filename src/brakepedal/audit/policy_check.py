"""The policy, evaluated over the compute the log attests, against the orders and permits in
force: the auditor's own ledger, not the registry's.

Every verified report becomes a usage window (:class:`~brakepedal.accounting.usage.UsageWindow`)
owned by its tenant, or else by the operator its device was enrolled under; the run
declarations and the ownership holdings come from a public declarations document (the usage
document format of :mod:`brakepedal.accounting.document`, without windows). The ledger sums
them by run, lineage and ownership group under the policy's own bound and control rules, so
compute split across subsidiaries is summed into one group, and
:func:`brakepedal.policy.evaluate.evaluate` judges it against the governance view's orders and
permits. Each violation becomes a ``policy.<reason>`` finding citing the reports it rests on
(``permit_missing`` inside a pause is the split-run or unpermitted-training finding).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from fractions import Fraction

from brakepedal.accounting.catalogue import Catalogue
from brakepedal.accounting.document import UsageDocument
from brakepedal.accounting.groups import OwnershipGraph
from brakepedal.accounting.ledger import Ledger, Subject
from brakepedal.accounting.lineage import LineageGraph
from brakepedal.accounting.usage import UsageWindow, Workload
from brakepedal.audit.detectors import Draft
from brakepedal.audit.findings import Severity
from brakepedal.audit.state import DeviceRow, ReportRow
from brakepedal.errors import BrakepedalError
from brakepedal.model.types import DeviceId, EntityId, JobId, SiteId, epoch_micros
from brakepedal.policy.evaluate import evaluate
from brakepedal.policy.model import Policy
from brakepedal.policy.terms import PauseOrderTerms, PermitTerms

__all__ = ["policy_findings", "usage_windows"]

_US = 1_000_000
_SUBJECTS = {"run": Subject.RUN, "lineage": Subject.LINEAGE, "group": Subject.GROUP}
#: Violations of an order in force are the gravest a party can commit.
_CRITICAL_REASONS = frozenset({"permit_missing", "prohibited", "pause_order"})


def usage_windows(
    devices: Mapping[str, DeviceRow], reports: Sequence[ReportRow]
) -> tuple[list[UsageWindow], dict[tuple[str, int], int]]:
    """One window per logged report slot (of a fork's copies the busier; of two overlapping
    windows the earlier: the ledger refuses overlaps), and the log index of each window by
    (device, start in µs)."""
    windows: list[UsageWindow] = []
    where: dict[tuple[str, int], int] = {}
    # Of two signed copies of one slot (a fork), the one attesting more busy time counts:
    # accounting errs toward counting more (ADR 0005); chain.fork reports the fork.
    chosen: dict[tuple[str, int], ReportRow] = {}
    for row in reports:
        held = chosen.get((row.device, row.sequence))
        if held is None or (row.busy_ms, -row.log_index) > (held.busy_ms, -held.log_index):
            chosen[(row.device, row.sequence)] = row
    for row in sorted(chosen.values(), key=lambda r: (r.device, r.sequence)):
        enrolled = devices.get(row.device)
        if enrolled is None:
            continue
        last = windows[-1] if windows else None
        if (
            last is not None
            and last.device == row.device
            and row.window_start_us < epoch_micros(last.end)
        ):
            continue  # an overlap: chain.overlap reports it, the ledger counts one
        windows.append(
            UsageWindow(
                device=DeviceId(row.device),
                accelerator=row.accelerator,
                owner=EntityId(row.tenant or enrolled.operator),
                start=datetime.fromtimestamp(row.window_start_us / _US, UTC),
                end=datetime.fromtimestamp(row.window_end_us / _US, UTC),
                busy_seconds=Fraction(row.busy_ms, 1000),
                tensor_active_seconds=None
                if row.tensor_active_ms is None
                else Fraction(row.tensor_active_ms, 1000),
                job=None if row.job is None else JobId(row.job),
                site=None if row.site is None else SiteId(row.site),
                workload=Workload(row.workload),
            )
        )
        where[(row.device, row.window_start_us)] = row.log_index
    return windows, where


def policy_findings(
    policy: Policy,
    declarations: UsageDocument | None,
    devices: Mapping[str, DeviceRow],
    reports: Sequence[ReportRow],
    *,
    catalogue: Catalogue,
    at: datetime,
    orders: Sequence[PauseOrderTerms] = (),
    permits: Sequence[PermitTerms] = (),
) -> list[Draft]:
    """A draft finding for every violation of ``policy`` the logged compute commits."""
    windows, where = usage_windows(devices, reports)
    entities = {w.owner for w in windows}
    if declarations is not None:
        entities |= set(declarations.entities)
        entities |= {h.holder for h in declarations.holdings}
        entities |= {h.held for h in declarations.holdings}
    rules = policy.accounting
    try:
        ledger = Ledger(
            windows,
            runs=LineageGraph(declarations.runs if declarations is not None else ()),
            ownership=OwnershipGraph(
                tuple(sorted(entities)),
                declarations.holdings if declarations is not None else (),
                rules.control_rule(),
            ),
            catalogue=catalogue,
            rule=rules.bound_rule(),
            exempt_workloads=rules.exempt(),
        )
        evaluation = evaluate(policy, ledger, at=at, orders=orders, permits=permits)
    except BrakepedalError as e:
        return [
            Draft(
                "policy.unevaluable",
                "the policy can be evaluated over the logged compute",
                Severity.HIGH,
                f"policy:{policy.id}",
                f"policy {policy.id} could not be evaluated: {e.reason}",
                {"policy": str(policy.id), "reason": e.reason},
                {"detail": e.message[:300]},
            )
        ]
    drafts = _compute_declared(declarations, ledger, where, policy=f"{policy.id} v{policy.version}")
    for violation in evaluation.violations:
        kind = _SUBJECTS.get(violation.subject_kind)
        cited = ledger.windows(kind, violation.subject_id) if kind is not None else ledger.windows()
        indices = sorted(
            {where[(str(w.window.device), epoch_micros(w.window.start))] for w in cited}
            & set(where.values())
        )
        drafts.append(
            Draft(
                f"policy.{violation.reason}",
                f"{violation.rule_id}: {violation.citation}",
                Severity.CRITICAL if violation.reason in _CRITICAL_REASONS else Severity.HIGH,
                f"{violation.subject_kind}:{violation.subject_id}",
                violation.explanation,
                {
                    "policy": str(policy.id),
                    "rule": violation.rule_id,
                    "subject": violation.subject_id,
                    "reason": str(violation.reason),
                    "order": violation.order_id,
                    "permit": violation.permit_id,
                },
                {
                    "measured": str(violation.measured),
                    "threshold": str(violation.threshold),
                    "measured_flop": str(violation.measured.value),
                    "party": violation.party,
                    "binding": violation.binding,
                    "devices": len({w.window.device for w in cited}),
                    "owners": sorted({str(w.window.owner) for w in cited}),
                    "reports": len(indices),
                },
                tuple((index, "a report counted") for index in indices[:5]),
            )
        )
    return drafts


def _compute_declared(
    declarations: UsageDocument | None,
    ledger: Ledger,
    where: dict[tuple[str, int], int],
    *,
    policy: str,
) -> list[Draft]:
    """``declared.compute_exceeded``: runs whose attested compute passes what they declared
    by more than a tenth (see :mod:`brakepedal.audit.declarations`), under the bound rule of
    ``policy`` (named in the finding: with several policies, the first by id that finds it
    gives the one finding per run)."""
    drafts: list[Draft] = []
    for run in declarations.runs if declarations is not None else ():
        if run.declared_flop is None or str(run.run) not in ledger.subjects(Subject.RUN):
            continue
        attested = ledger.total(Subject.RUN, run.run).value
        if attested * 10 <= run.declared_flop.value * 11:
            continue
        windows = ledger.windows(Subject.RUN, run.run)
        indices = sorted(
            where[(str(w.window.device), epoch_micros(w.window.start))] for w in windows
        )
        drafts.append(
            Draft(
                "declared.compute_exceeded",
                "a run's attested compute stays within what it declared (plus 10 %)",
                Severity.MEDIUM,
                f"run:{run.run}",
                f"run {run.run} attested {attested:.3e} FLOP (under policy {policy}'s bound "
                f"rule), declared {run.declared_flop.value:.3e}",
                {"run": str(run.run)},
                {
                    "attested_flop": str(attested),
                    "declared_flop": str(run.declared_flop.value),
                    "policy": policy,
                },
                tuple((index, "a report counted") for index in indices[:3]),
            )
        )
    return drafts
