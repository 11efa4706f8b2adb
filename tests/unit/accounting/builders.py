"""Small constructors for accounting tests: windows, runs and ledgers with exact figures."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from brakepedal.accounting.catalogue import Precision, default_catalogue
from brakepedal.accounting.flop import BoundBasis, BoundRule
from brakepedal.accounting.groups import ControlRule, Holding, OwnershipGraph
from brakepedal.accounting.ledger import Ledger
from brakepedal.accounting.lineage import LineageGraph, RunDeclaration, RunKind, SnapshotCommitment
from brakepedal.accounting.usage import UsageWindow, Workload
from brakepedal.model.types import DeviceId, EntityId, JobId, RunId, SiteId

T0 = datetime(2026, 1, 1, tzinfo=UTC)
H100 = "nvidia-h100-sxm5-80gb"
#: The H100 SXM5's fastest rate the default rule covers (FP8 dense, FLOP/s).
H100_FP8 = 1_979_000_000_000_000
RULE = BoundRule(frozenset({Precision.BF16, Precision.FP8}))


def snapshot(tag: str) -> SnapshotCommitment:
    """A commitment that differs per ``tag``."""
    return SnapshotCommitment("sha256:" + tag.encode().hex().ljust(64, "0")[:64])


def window(
    device: str = "gpu-0",
    *,
    owner: str = "acme",
    minute: int = 0,
    minutes: int = 5,
    busy: Fraction | int | None = None,
    tensor: Fraction | int | None = None,
    job: str | None = "job-1",
    site: str | None = "dc-1",
    accelerator: str = H100,
    workload: Workload = Workload.TRAINING,
) -> UsageWindow:
    """A window starting ``minute`` minutes after T0; busy for the whole of it by default."""
    start = T0 + timedelta(minutes=minute)
    return UsageWindow(
        device=DeviceId(device),
        accelerator=accelerator,
        owner=EntityId(owner),
        start=start,
        end=start + timedelta(minutes=minutes),
        busy_seconds=Fraction(minutes * 60 if busy is None else busy),
        tensor_active_seconds=None if tensor is None else Fraction(tensor),
        job=None if job is None else JobId(job),
        site=None if site is None else SiteId(site),
        workload=workload,
    )


def run(
    name: str,
    *,
    owner: str = "acme",
    jobs: Iterable[str] | None = None,
    parent: str | None = None,
    kind: RunKind = RunKind.PRETRAINING,
    domains: Iterable[str] = (),
) -> RunDeclaration:
    """Run ``name`` with job ``name`` that produces ``snapshot(name)``, continuing ``parent``."""
    return RunDeclaration(
        run=RunId(name),
        owner=EntityId(owner),
        jobs=frozenset(JobId(j) for j in (jobs if jobs is not None else [name])),
        kind=kind,
        starts_from=frozenset() if parent is None else frozenset({snapshot(parent)}),
        produces=frozenset({snapshot(name)}),
        data_domains=frozenset(domains),
    )


def ledger(
    windows: Iterable[UsageWindow],
    *,
    runs: Iterable[RunDeclaration] = (),
    entities: Iterable[str] = ("acme",),
    holdings: Iterable[Holding] = (),
    rule: BoundRule = RULE,
    control: ControlRule | None = None,
    exempt: frozenset[Workload] = frozenset(),
) -> Ledger:
    """A ledger over the default catalogue."""
    return Ledger(
        windows,
        runs=LineageGraph(runs),
        ownership=OwnershipGraph([EntityId(e) for e in entities], holdings, control),
        catalogue=default_catalogue(),
        rule=rule,
        exempt_workloads=exempt,
    )


__all__ = ["H100", "H100_FP8", "RULE", "T0", "BoundBasis", "ledger", "run", "snapshot", "window"]
