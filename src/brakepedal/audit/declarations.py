"""Declared against attested: what labs say their runs are, beside what their devices attest.

A run declaration (:class:`~brakepedal.accounting.lineage.RunDeclaration`) names the jobs a run
ran as, the snapshots it started from and produced, and its expected compute. Lineage
accounting trusts the declared continuations; the devices, though, attest the weight-snapshot
commitments the training framework handed in (``snapshots`` of each report, with the
``parent`` a job started from). This detector compares the two:

* ``declared.continuation_hidden`` (high): a job's attested snapshot names as its parent a
  snapshot that another run's job attested, while the job's declared run does not declare
  that it starts from it. The lab split one lineage into runs that each stay under a threshold
  (or hid that a "fine-tune" continues a frontier run): lineage totals are understated.
* ``declared.undeclared_snapshot`` (medium): a declared run's job attests snapshots none of
  which its run declares among what it produces, while the run declares others: the
  declaration does not describe the weights trained.
* ``declared.compute_exceeded`` (medium): a run's attested compute, as the FLOP bound of its
  jobs' busy time, is above what it declared (by more than the 10 % margin a plan may miss).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from brakepedal.accounting.document import UsageDocument
from brakepedal.audit.detectors import Draft
from brakepedal.audit.findings import Severity
from brakepedal.audit.state import ReportRow, SnapshotRow

__all__ = ["declaration_findings"]

_PREFIX = "sha256:"


def declaration_findings(
    declarations: UsageDocument, reports: Sequence[ReportRow], snapshots: Sequence[SnapshotRow]
) -> list[Draft]:
    """Drafts for continuations and snapshots the declarations do not account for."""
    run_of_job = {str(job): run for run in declarations.runs for job in run.jobs}
    # Which job first attested each snapshot digest, and where.
    producer: dict[str, SnapshotRow] = {}
    for row in sorted(snapshots, key=lambda r: r.log_index):
        producer.setdefault(row.digest, row)
    drafts: list[Draft] = []
    seen: set[tuple[str, str]] = set()
    for row in snapshots:
        if row.parent is None or row.parent not in producer:
            continue
        origin = producer[row.parent]
        child_run, parent_run = run_of_job.get(row.job), run_of_job.get(origin.job)
        if origin.job == row.job or (child_run is not None and child_run is parent_run):
            continue
        declared = child_run is not None and _PREFIX + row.parent in child_run.starts_from
        if declared or (row.job, row.parent) in seen:
            continue
        seen.add((row.job, row.parent))
        drafts.append(
            Draft(
                "declared.continuation_hidden",
                "a run declares the snapshots it continues from (lineage accounting)",
                Severity.HIGH,
                f"job:{row.job}",
                f"job {row.job} ({'run ' + str(child_run.run) if child_run else 'no run'}) "
                f"continues snapshot {row.parent[:12]}... attested by job {origin.job} "
                f"({'run ' + str(parent_run.run) if parent_run else 'no run'}), and its "
                "declaration does not say so: one lineage counted as two",
                {"job": row.job, "parent": row.parent},
                {
                    "child_run": None if child_run is None else str(child_run.run),
                    "parent_run": None if parent_run is None else str(parent_run.run),
                    "parent_job": origin.job,
                },
                (
                    (origin.log_index, "the parent snapshot attested"),
                    (row.log_index, "the continuation attested"),
                ),
            )
        )
    drafts += _undeclared_snapshots(declarations, snapshots)
    return drafts


def _undeclared_snapshots(
    declarations: UsageDocument, snapshots: Sequence[SnapshotRow]
) -> list[Draft]:
    attested: dict[str, list[SnapshotRow]] = defaultdict(list)
    for row in snapshots:
        attested[row.job].append(row)
    drafts = []
    for run in declarations.runs:
        if not run.produces:
            continue
        rows = [row for job in sorted(map(str, run.jobs)) for row in attested.get(job, [])]
        if rows and not any(_PREFIX + row.digest in run.produces for row in rows):
            drafts.append(
                Draft(
                    "declared.undeclared_snapshot",
                    "a run declares the snapshots it produces",
                    Severity.MEDIUM,
                    f"run:{run.run}",
                    f"run {run.run}'s jobs attested {len(rows)} snapshots, none of which it "
                    "declares producing",
                    {"run": str(run.run)},
                    {"attested": sorted({row.digest for row in rows})[:5]},
                    tuple((row.log_index, "an attested snapshot") for row in rows[:3]),
                )
            )
    return drafts
