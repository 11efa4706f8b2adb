"""Runs and lineages: compute counts toward every model it went into.

A **run** is one training effort as its owner declares it: the scheduler jobs it consists of,
the weight snapshots it started from and those it produced (by commitment: a hash of the
weights, see DESIGN.md's transcript module). A run that starts from another run's snapshot
**continues** it: fine-tuning, RL and plain restarts alike. Lineages are the weakly connected
components of the continuation graph, so the compute of a lineage is lifecycle-cumulative as
California SB 53 and the EU's GPAI guidelines require, and a run split into pieces that hand
snapshots to each other sums back to the whole.

A run that starts from a snapshot no declared run produced (an open-weights base model, say)
starts a lineage of its own; :attr:`LineageGraph.external_bases` lists those snapshots so the
auditor can ask where they came from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import networkx as nx

from brakepedal.accounting.graphs import component_roots, describe_cycle
from brakepedal.errors import InputError
from brakepedal.model.types import EntityId, Flop, JobId, LineageId, RunId

__all__ = ["LineageGraph", "RunDeclaration", "RunKind", "SnapshotCommitment"]

_COMMITMENT = re.compile(r"sha256:[0-9a-f]{64}")


class SnapshotCommitment(str):
    """``sha256:`` and 64 lower-case hex digits: the commitment to one weight snapshot."""

    __slots__ = ()

    def __new__(cls, value: object) -> SnapshotCommitment:
        if not isinstance(value, str) or _COMMITMENT.fullmatch(value) is None:
            raise InputError(
                "lineage.commitment_invalid",
                f"snapshot commitment {value!r} is not 'sha256:' and 64 lower-case hex digits",
            )
        return super().__new__(cls, value)


class RunKind(StrEnum):
    """What the run does to its weights (as declared; the auditor checks declarations)."""

    PRETRAINING = "pretraining"
    FINE_TUNING = "fine_tuning"
    REINFORCEMENT_LEARNING = "reinforcement_learning"
    DISTILLATION = "distillation"
    OTHER = "other"


#: The prefix of the ledger's pseudo-lineages of undeclared work (``unattributed:<group>``).
UNATTRIBUTED_PREFIX = "unattributed:"


@dataclass(frozen=True, slots=True)
class RunDeclaration:
    """One declared run: whose it is, which jobs it ran as, and which weights it touched."""

    run: RunId
    owner: EntityId
    jobs: frozenset[JobId]
    kind: RunKind = RunKind.PRETRAINING
    starts_from: frozenset[SnapshotCommitment] = frozenset()
    produces: frozenset[SnapshotCommitment] = frozenset()
    data_domains: frozenset[str] = frozenset()
    declared_flop: Flop | None = None
    jurisdictions: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if str(self.run).startswith(UNATTRIBUTED_PREFIX):
            # The ledger's pools of undeclared work are named so: a run named like one would
            # merge with another group's pool.
            raise InputError(
                "lineage.reserved_name", f"run {self.run}: {UNATTRIBUTED_PREFIX!r} is reserved"
            )
        overlap = self.starts_from & self.produces
        if overlap:
            raise InputError(
                "lineage.self_continuation",
                f"run {self.run} both starts from and produces {sorted(overlap)[0]}",
            )


class LineageGraph:
    """The continuation graph over declared runs and the lineages it makes."""

    def __init__(self, runs: Iterable[RunDeclaration]) -> None:
        self._runs: dict[RunId, RunDeclaration] = {}
        self._job_run: dict[JobId, RunId] = {}
        producer: dict[SnapshotCommitment, RunId] = {}
        for run in runs:
            self._add(run, producer)
        self.graph: nx.DiGraph[str] = nx.DiGraph()
        self.graph.add_nodes_from(self._runs)
        bases: set[SnapshotCommitment] = set()
        for run in self._runs.values():
            for snapshot in run.starts_from:
                parent = producer.get(snapshot)
                if parent is None:
                    bases.add(snapshot)
                else:
                    self.graph.add_edge(parent, run.run)
        self.external_bases = frozenset(bases)
        self._check_acyclic()
        self._lineage = self._lineages()

    def _add(self, run: RunDeclaration, producer: dict[SnapshotCommitment, RunId]) -> None:
        if run.run in self._runs:
            raise InputError("lineage.duplicate_run", f"run {run.run} declared twice")
        for job in sorted(run.jobs):
            other = self._job_run.setdefault(job, run.run)
            if other != run.run:
                raise InputError(
                    "lineage.job_in_two_runs", f"job {job} is claimed by runs {other} and {run.run}"
                )
        for snapshot in sorted(run.produces):
            other = producer.setdefault(snapshot, run.run)
            if other != run.run:
                raise InputError(
                    "lineage.snapshot_conflict",
                    f"snapshot {snapshot} is produced by both {other} and {run.run}",
                )
        self._runs[run.run] = run

    def _check_acyclic(self) -> None:
        cycle = describe_cycle(self.graph)
        if cycle is not None:
            raise InputError("lineage.cycle", f"runs continue each other in a cycle: {cycle}")

    def _lineages(self) -> dict[str, LineageId]:
        return {run: LineageId(root) for run, root in component_roots(self.graph).items()}

    def __contains__(self, run: object) -> bool:
        return run in self._runs

    def run(self, run: RunId) -> RunDeclaration:
        """The declaration of ``run`` (``lineage.run_unknown`` if none)."""
        try:
            return self._runs[run]
        except KeyError:
            raise InputError("lineage.run_unknown", f"run {run!r} is not declared") from None

    def runs(self) -> tuple[RunDeclaration, ...]:
        """Every declared run, by id."""
        return tuple(self._runs[r] for r in sorted(self._runs))

    def run_of_job(self, job: JobId) -> RunId | None:
        """The run a scheduler job belongs to, or None if no run declares it."""
        return self._job_run.get(job)

    def lineage_of(self, run: RunId) -> LineageId:
        """The lineage ``run`` belongs to, named after its root run."""
        self.run(run)
        return self._lineage[run]

    def lineages(self) -> tuple[LineageId, ...]:
        """Every lineage name, sorted."""
        return tuple(sorted(set(self._lineage.values())))

    def members(self, lineage: LineageId) -> tuple[RunId, ...]:
        """The runs of ``lineage``, sorted."""
        return tuple(RunId(r) for r in sorted(self._lineage) if self._lineage[r] == lineage)

    def ancestors(self, run: RunId) -> tuple[RunId, ...]:
        """Runs whose weights ``run`` continues, directly or not (sorted)."""
        self.run(run)
        return tuple(RunId(r) for r in sorted(nx.ancestors(self.graph, run)))

    def descendants(self, run: RunId) -> tuple[RunId, ...]:
        """Runs that continue ``run``'s weights, directly or not (sorted)."""
        self.run(run)
        return tuple(RunId(r) for r in sorted(nx.descendants(self.graph, run)))
