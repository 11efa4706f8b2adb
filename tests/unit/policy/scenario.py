"""Real ledgers with exact totals, for policy tests.

A test catalogue holds a hypothetical accelerator that does 10^19 operations per second at
every precision, so whole days of busy time reach 10^26 FLOP in a few dozen windows, and a
final window busy for ``r / 10^19`` seconds lands the total on any integer ``r`` exactly (the
bound rounds up, and ``ceil(r / P × P) = r``). The H100 entry is the reference for
H100-equivalents; ``test-tiny`` adds a sliver of capacity to land just above a cluster
threshold.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from brakepedal.accounting.catalogue import REFERENCE_ACCELERATOR, Accelerator, Catalogue, Precision
from brakepedal.accounting.groups import Holding, OwnershipGraph
from brakepedal.accounting.ledger import Ledger
from brakepedal.accounting.lineage import LineageGraph, RunDeclaration, RunKind, SnapshotCommitment
from brakepedal.accounting.usage import UsageWindow, Workload
from brakepedal.model.types import DeviceId, EntityId, JobId, RunId, SiteId
from brakepedal.policy.model import Policy

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)

#: Operations per second of the ``test-exa`` accelerator, at every precision.
EXA_PEAK = 10**19
#: A full busy day on one ``test-exa`` device.
EXA_DAY = EXA_PEAK * 86_400
#: Dense BF16 of the reference H100, the unit of H100-equivalents.
H100_BF16 = 989_000_000_000_000
#: Peak of ``test-peta`` at its fastest precision (FP8), and of ``test-peta-less``.
PETA_PEAK = 10**18

CATALOGUE = Catalogue(
    1,
    "policy test catalogue (hypothetical devices except the H100 reference)",
    [
        Accelerator(
            id=REFERENCE_ACCELERATOR,
            name="NVIDIA H100 SXM5 80GB",
            manufacturer="NVIDIA",
            peak={Precision.BF16: H100_BF16, Precision.FP8: 2 * H100_BF16},
        ),
        Accelerator(
            id="test-exa",
            name="Test Exa",
            manufacturer="Test",
            peak=dict.fromkeys(Precision, EXA_PEAK),
        ),
        Accelerator(
            id="test-peta",
            name="Test Peta",
            manufacturer="Test",
            peak={Precision.BF16: PETA_PEAK // 2, Precision.FP8: PETA_PEAK},
        ),
        Accelerator(
            id="test-peta-less",
            name="Test Peta Less",
            manufacturer="Test",
            peak={Precision.BF16: PETA_PEAK // 2, Precision.FP8: PETA_PEAK - 1},
        ),
        Accelerator(
            id="test-tiny", name="Test Tiny", manufacturer="Test", peak={Precision.BF16: 1}
        ),
    ],
)


def snapshot(tag: str) -> SnapshotCommitment:
    """A weight-snapshot commitment unique to ``tag``."""
    return SnapshotCommitment("sha256:" + tag.encode().hex().ljust(64, "0")[:64])


def run(
    name: str,
    *,
    owner: str = "acme",
    parent: str | None = None,
    kind: RunKind = RunKind.PRETRAINING,
    domains: Iterable[str] = (),
    jurisdictions: Iterable[str] = (),
) -> RunDeclaration:
    """Run ``name`` (job ``name``), producing ``snapshot(name)`` and continuing ``parent``."""
    return RunDeclaration(
        run=RunId(name),
        owner=EntityId(owner),
        jobs=frozenset({JobId(name)}),
        kind=kind,
        starts_from=frozenset() if parent is None else frozenset({snapshot(parent)}),
        produces=frozenset({snapshot(name)}),
        data_domains=frozenset(domains),
        jurisdictions=frozenset(jurisdictions),
    )


def training(
    flop: int,
    *,
    job: str | None,
    owner: str = "acme",
    device: str = "exa-0",
    start: datetime = T0,
    site: str | None = "dc-1",
    workload: Workload = Workload.TRAINING,
) -> list[UsageWindow]:
    """Back-to-back day windows on one ``test-exa`` device whose bounds sum to ``flop``."""
    days, rest = divmod(flop, EXA_DAY)
    busy = [Fraction(86_400)] * days + ([Fraction(rest, EXA_PEAK)] if rest else [])
    return [
        UsageWindow(
            device=DeviceId(device),
            accelerator="test-exa",
            owner=EntityId(owner),
            start=start + index * DAY,
            end=start + (index + 1) * DAY,
            busy_seconds=seconds,
            job=None if job is None else JobId(job),
            site=None if site is None else SiteId(site),
            workload=workload,
        )
        for index, seconds in enumerate(busy)
    ]


def end_of(windows: Iterable[UsageWindow]) -> datetime:
    """When the last of ``windows`` ends."""
    return max(window.end for window in windows)


def devices_at(site: str, counts: dict[str, int], *, owner: str = "acme") -> list[UsageWindow]:
    """One idle five-minute window per device: ``counts`` maps accelerator to how many."""
    windows = []
    for accelerator, count in sorted(counts.items()):
        for index in range(count):
            windows.append(
                UsageWindow(
                    device=DeviceId(f"{site}-{accelerator}-{index}"),
                    accelerator=accelerator,
                    owner=EntityId(owner),
                    start=T0,
                    end=T0 + timedelta(minutes=5),
                    busy_seconds=Fraction(0),
                    site=SiteId(site),
                )
            )
    return windows


def ledger_for(
    policy: Policy,
    windows: Iterable[UsageWindow],
    *,
    runs: Iterable[RunDeclaration] = (),
    entities: Iterable[str] = ("acme",),
    holdings: Iterable[Holding] = (),
) -> Ledger:
    """A ledger built the way ``policy`` counts compute."""
    accounting = policy.accounting
    return Ledger(
        windows,
        runs=LineageGraph(runs),
        ownership=OwnershipGraph(
            [EntityId(e) for e in entities], holdings, accounting.control_rule()
        ),
        catalogue=CATALOGUE,
        rule=accounting.bound_rule(),
        exempt_workloads=accounting.exempt(),
    )
