"""The simulated world of a scenario: devices, who owns them, and what each does when.

:class:`World` expands a :class:`~brakepedal.sim.scenario.Scenario` into devices (each with its
own Ed25519 key, as enrolled hardware has), an ownership graph, and a schedule: for every
device and window, the :class:`Work` it does (the truth: minute by minute shapes of
:mod:`brakepedal.sim.telemetry`) and how it is attributed (job, tenant, workload label,
permit). Strategies (:mod:`brakepedal.sim.strategies`) change the work of the devices their
actor controls; the engine (:mod:`brakepedal.sim.engine`) turns work into signed reports.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction

from brakepedal.accounting.catalogue import Catalogue
from brakepedal.accounting.groups import Holding, OwnershipGraph
from brakepedal.accounting.usage import Workload
from brakepedal.crypto.keys import CryptoSigner, generate_ed25519
from brakepedal.model.types import EntityId
from brakepedal.sim.scenario import Scenario, WorkloadSpec
from brakepedal.sim.telemetry import Shape
from brakepedal.wire.report import GENESIS_PREVIOUS
from brakepedal.wire.report_items import SnapshotCommitment

__all__ = ["Device", "Work", "World", "decode_runs", "encode_runs", "idle_work"]

MINUTE = timedelta(minutes=1)

_LABELS = {
    "pretraining": Workload.TRAINING,
    "finetune": Workload.TRAINING,
    "rl": Workload.TRAINING,
    "inference": Workload.INFERENCE,
    # No workload class exempts simulation: unknown counts as training (ADR 0005).
    "hpc": Workload.UNKNOWN,
}


@dataclass
class Device:
    """One accelerator: its identity, its owner and its agent's chain state."""

    id: str
    entity: str
    cluster: str
    site: str | None
    accelerator: str
    index: int
    enrolled: bool = True
    signer: CryptoSigner | None = None
    sequence: int = 0
    previous: str = GENESIS_PREVIOUS
    #: The agent's clock offset (a backdated clock is negative).
    clock: timedelta = timedelta(0)
    #: Reports it signed: sequence -> (window start, minute shapes run-length encoded,
    #: previous digest), for challenges (and for a forger, who knows the chain).
    signed: dict[int, tuple[datetime, tuple[tuple[Shape, int], ...], str]] = field(
        default_factory=dict
    )


@dataclass(frozen=True, slots=True)
class Work:
    """What a device does in one window (``shapes``, the truth) and what its report says
    about it (``job``, ``tenant``, ``label``, ``permit``)."""

    shapes: tuple[Shape, ...]
    job: str | None
    tenant: str
    label: Workload
    lineage: str | None = None
    permit: str | None = None
    #: The scenario workload it comes from (None: idle, or made up by a strategy).
    workload: str | None = None
    #: What the device really did, where the report commits to something else (forged).
    truth: tuple[Shape, ...] | None = None
    #: Weight-snapshot commitments the job hands in during the window.
    snapshots: tuple[SnapshotCommitment, ...] = ()

    @property
    def real(self) -> tuple[Shape, ...]:
        return self.shapes if self.truth is None else self.truth

    @property
    def training(self) -> bool:
        """Whether the device really trains in this window (whatever the label says)."""
        return any(s.kind in _TRAINING_KINDS for s in self.real)


_TRAINING_KINDS = frozenset({"train", "checkpoint", "throttled"})


@functools.lru_cache(maxsize=1024)
def encode_runs(shapes: tuple[Shape, ...]) -> tuple[tuple[Shape, int], ...]:
    """``shapes`` as (shape, repeats) runs: a window is mostly one shape."""
    runs: list[tuple[Shape, int]] = []
    for shape in shapes:
        if runs and runs[-1][0] == shape:
            runs[-1] = (shape, runs[-1][1] + 1)
        else:
            runs.append((shape, 1))
    return tuple(runs)


def decode_runs(runs: tuple[tuple[Shape, int], ...]) -> tuple[Shape, ...]:
    return tuple(shape for shape, count in runs for _ in range(count))


def idle_work(minutes: int, tenant: str) -> Work:
    return Work(_idle(minutes), None, tenant, Workload.UNKNOWN)


@functools.lru_cache(maxsize=64)
def _idle(minutes: int) -> tuple[Shape, ...]:
    return (Shape("idle"),) * minutes


def _code(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


class World:
    """Devices, ownership and schedule of ``scenario``; keys drawn fresh for each run."""

    def __init__(
        self,
        scenario: Scenario,
        catalogue: Catalogue,
        *,
        keys: Callable[[str], CryptoSigner] = lambda name: generate_ed25519(),
    ) -> None:
        self.scenario = scenario
        self.catalogue = catalogue
        self.entities = {e.id: e for e in scenario.entities}
        self.devices: list[Device] = []
        self.by_id: dict[str, Device] = {}
        self.clusters = {c.id: c for c in scenario.clusters}
        self._cluster_devices: dict[str, list[Device]] = {}
        for cluster in scenario.clusters:
            members = []
            for i in range(cluster.devices + cluster.unenrolled):
                device = Device(
                    id=f"{cluster.id}.gpu-{i:05d}",
                    entity=cluster.entity,
                    cluster=cluster.id,
                    site=cluster.site,
                    accelerator=cluster.accelerator,
                    index=i,
                    enrolled=i < cluster.devices,
                )
                device.signer = keys(f"device:{device.id}") if device.enrolled else None
                members.append(device)
                self.devices.append(device)
                self.by_id[device.id] = device
            self._cluster_devices[cluster.id] = members
        self.minutes_per_window = scenario.window_minutes
        #: Per device: (first minute, end minute, workload), to the minute from the start.
        self._segments: dict[str, list[tuple[int, int, WorkloadSpec]]] = {}
        for spec in scenario.workloads:
            start = round(spec.start_hour * 60)
            end = (
                round((spec.start_hour + spec.hours) * 60)
                if spec.hours is not None
                else math.ceil(scenario.hours * 60)
            )
            count = spec.devices if spec.devices is not None else None
            members = self._cluster_devices[spec.cluster]
            chosen = members[spec.first : spec.first + count] if count else members[spec.first :]
            for device in chosen:
                self._segments.setdefault(device.id, []).append((start, end, spec))
        self._job_codes: dict[str, int] = {}
        self._window_shapes: dict[tuple[str, int], tuple[Shape, ...]] = {}
        #: What the entities declare they hold (the auditor reads the same holdings).
        self.holdings = tuple(
            Holding(
                EntityId(e.owner),
                EntityId(e.id),
                Fraction(e.share).limit_denominator(1000),
                board_control=e.share > 0.5,
            )
            for e in scenario.entities
            if e.owner is not None
        )
        #: Groups under the accounting's control rule (more than one half), as the auditor
        #: forms them: a minority holding is no control, and its entity is a group of its own.
        self.ownership = OwnershipGraph((EntityId(e) for e in self.entities), self.holdings)
        self._members: dict[str, frozenset[str]] = {}

    # ------------------------------------------------------------------ ownership

    def root(self, entity: str) -> str:
        """The name of ``entity``'s ownership group (its ultimate controlling parent)."""
        return str(self.ownership.group_of(EntityId(entity)))

    def group(self, entity: str) -> set[str]:
        """Every entity of ``entity``'s ownership group."""
        head = self.ownership.group_of(EntityId(entity))
        members = self._members.get(head)
        if members is None:
            members = self._members[head] = frozenset(str(e) for e in self.ownership.members(head))
        return set(members)

    def devices_of(self, entity: str) -> list[Device]:
        return [d for d in self.devices if d.entity == entity]

    def windows(self) -> Iterator[datetime]:
        """The start of every window of the scenario."""
        moment, end = self.scenario.start, self.scenario.end
        while moment < end:
            yield moment
            moment += self.scenario.window

    def minute_of(self, moment: datetime) -> int:
        return (moment - self.scenario.start) // MINUTE

    # ------------------------------------------------------------------ work

    def planned(self, device: Device, start: datetime) -> Work:
        """What the scenario schedules on ``device`` for the window from ``start``: its
        workload's minutes, to the minute (a job starting or ending inside the window leaves
        the device idle for the rest of it). A window holds one workload at most (the
        scenario's check): a report names one job."""
        first = self.minute_of(start)
        count = self.minutes_per_window
        segments = self._segments.get(device.id, ())
        spec: WorkloadSpec | None = None
        begin = end = 0
        for begin, end, candidate in segments:
            if begin < first + count and first < end:
                spec = candidate
                break
        if spec is None:
            return idle_work(count, device.entity)
        key = (spec.id, first)
        shapes = self._window_shapes.get(key)
        if shapes is None:
            # Every device of a job draws the same minutes: computed once per job and window.
            if len(self._window_shapes) > 4096:
                self._window_shapes.clear()
            idle = Shape("idle")
            shapes = self._window_shapes[key] = tuple(
                self.shape(spec, minute) if begin <= minute < end else idle
                for minute in range(first, first + count)
            )
        return Work(
            shapes,
            spec.id,
            device.entity,
            _LABELS[spec.kind],
            lineage=spec.lineage,
            workload=spec.id,
        )

    def shape(self, spec: WorkloadSpec, minute: int) -> Shape:
        """The minute ``minute`` (from the start) of workload ``spec`` on any of its devices:
        the same for all of them, so a job's devices draw power in step."""
        code = self._job_codes.get(spec.id)
        if code is None:
            code = self._job_codes[spec.id] = _code(f"{self.scenario.seed}:{spec.id}")
        variant = (code + minute * 2654435761) % 4
        if spec.training:
            kind = "checkpoint" if (minute + code) % 30 == 29 else "train"
            return Shape(kind, 10, variant)
        if spec.kind == "hpc":
            return Shape("hpc", 10, variant)
        return Shape("infer", self.inference_level(spec, minute), variant)

    def inference_level(self, spec: WorkloadSpec, minute: int) -> int:
        """Busy tenths of an inference service: diurnal (peak at 14:00 UTC) with bursts."""
        hour = ((self.scenario.start.hour * 60 + minute) / 60) % 24
        diurnal = 0.55 + 0.45 * math.cos(2 * math.pi * (hour - 14) / 24)
        burst = 1.25 if (_code(f"{spec.id}:{minute // 7}") % 10) == 0 else 1.0
        return max(1, min(10, round(10 * spec.peak_busy * diurnal * burst)))
