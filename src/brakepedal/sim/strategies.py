"""The strategy catalogue: how an actor behaves, honest or defecting.

A strategy changes what the devices its actor controls do and report, or (for the registry's
operator) what the log holds. Each one is small: :meth:`Strategy.work` rewrites a device's
window of work (the truth and its label), :meth:`Strategy.deliver` decides which signed
reports reach the registry, :meth:`Strategy.log` what a registry does with them, and
:meth:`Strategy.bypasses_gate` whether the actor ignores its gate. A strategy records
``defected_at``, the first moment it acted, from which the engine measures time to finding.

``docs/verification.md`` lists, for each strategy, what catches it, how fast, and what does
not and why.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ClassVar

from brakepedal.accounting.usage import Workload
from brakepedal.sim.telemetry import Shape
from brakepedal.sim.world import Device, Work, idle_work
from brakepedal.wire.report_items import SnapshotCommitment

if TYPE_CHECKING:
    from brakepedal.sim.engine import Engine
    from brakepedal.sim.scenario import Actor, Scenario

__all__ = ["STRATEGIES", "Strategy"]

Problem = tuple[str, str] | None


class Strategy:
    """An actor's behaviour; the base class is the honest one."""

    name: ClassVar[str] = "honest"
    summary: ClassVar[str] = "follows every rule"
    #: Measured from the threshold crossing (policy strategies) or from the first act.
    threshold_based: ClassVar[bool] = False
    #: Whether the actor's devices train on whatever its gate says, once it acts.
    defies_gate: ClassVar[bool] = False

    def __init__(self, actor: Actor, engine: Engine) -> None:
        self.actor = actor
        self.engine = engine
        self.world = engine.world
        self.start = engine.scenario.at(actor.at_hour)
        self.defected_at: datetime | None = None
        self.entities = {actor.entity} if actor.entity == "registry" else self._own()

    def _own(self) -> set[str]:
        return self.world.group(self.actor.entity)

    @classmethod
    def check(cls, actor: Actor, scenario: Scenario) -> Problem:
        """A problem with ``actor``'s parameters: (field, message), or None."""
        return cls._params(actor, {})

    @staticmethod
    def _params(actor: Actor, allowed: dict[str, tuple[type, ...]]) -> Problem:
        for key, value in actor.params.items():
            expected = allowed.get(key)
            if expected is None:
                return f"params.{key}", f"unknown parameter; known: {sorted(allowed)}"
            if not isinstance(value, expected) or isinstance(value, bool) != (bool in expected):
                names = " or ".join(t.__name__ for t in expected)
                return f"params.{key}", f"expected {names}, got {value!r}"
        return None

    def active(self, at: datetime) -> bool:
        return at >= self.start

    def mark(self, at: datetime) -> None:
        if self.defected_at is None:
            self.defected_at = at

    def controls(self, device: Device) -> bool:
        return device.entity in self.entities

    def acting(self, device: Device, at: datetime) -> bool:
        """Whether the actor controls ``device`` and has begun at ``at``."""
        return self.controls(device) and self.active(at)

    # hooks ------------------------------------------------------------

    def work(self, device: Device, start: datetime, work: Work) -> Work:
        return work

    def bypasses_gate(self, device: Device, start: datetime) -> bool:
        return self.defies_gate and self.acting(device, start)

    def gate_view(self, device: Device, start: datetime, work: Work) -> tuple[str, float] | None:
        """What the actor's job tells the gate, if not the truth: (lineage, expected compute in
        device-hours of the reference accelerator)."""
        return None

    def deliver(self, device: Device, start: datetime, envelopes: list[bytes]) -> list[bytes]:
        return envelopes

    def log(self, device: Device, start: datetime, work: Work) -> str:
        """What the registry does with the device's report: ``ingest`` (as the code does),
        ``drop`` (say accepted, log nothing) or ``append`` (log it behind the API's checks)."""
        return "ingest"

    def answers(self, device: Device, at: datetime) -> bool:
        """Whether ``device`` answers a challenge at ``at`` (a stopped agent cannot)."""
        return True

    #: Whether the registry keeps a second log to show auditors (:class:`RegistrySplitView`).
    split_view: ClassVar[bool] = False

    def shown(self, device: Device, start: datetime, work: Work) -> str:
        """What the log shown to auditors does with the report (split views only)."""
        return "ingest"


def _param(actor: Actor, key: str, default: object) -> object:
    return actor.params.get(key, default)


def _number(actor: Actor, key: str, default: float) -> float:
    """A numeric parameter (checked by the strategy's ``check``)."""
    value = actor.params.get(key, default)
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default
    )


class IgnorePause(Strategy):
    name = "ignore_pause"
    summary = "keeps training through a pause, reporting it honestly"
    threshold_based = True
    defies_gate = True


class SubsidiarySplit(Strategy):
    name = "subsidiary_split"
    summary = "moves a paused run to a subsidiary's devices, undeclared, as the subsidiary's own"
    threshold_based = True

    @classmethod
    def check(cls, actor: Actor, scenario: Scenario) -> Problem:
        problem = cls._params(actor, {"to": (str,)})
        if problem is not None:
            return problem
        to = actor.params.get("to")
        entities = {e.id: e for e in scenario.entities}
        if to not in entities or entities[str(to)].owner != actor.entity:
            return "params.to", "must name an entity the actor owns"
        return None

    def work(self, device: Device, start: datetime, work: Work) -> Work:
        if not self.active(start):
            return work
        to = str(self.actor.params["to"])
        if device.entity == self.actor.entity and work.training:
            return idle_work(len(work.shapes), device.entity)  # its own gate refused it
        if device.entity != to:
            return work
        source = self._source(device)
        if source is None:
            return work
        moved = self.world.planned(source, start)
        if not moved.training:
            return work
        self.mark(start)
        return replace(
            moved, job=f"{moved.job}-sub", tenant=to, lineage=None, workload=None, permit=None
        )

    def _source(self, device: Device) -> Device | None:
        """The actor's training device whose work ``device`` (of the subsidiary) takes over:
        the i-th enrolled device of one for the i-th of the other."""
        if self._pairs is None:
            mine = [d for d in self.world.devices_of(self.actor.entity) if d.enrolled]
            theirs = [d for d in self.world.devices_of(str(self.actor.params["to"])) if d.enrolled]
            self._pairs = {t.id: m for t, m in zip(theirs, mine, strict=False)}
        return self._pairs.get(device.id)

    _pairs: dict[str, Device] | None = None

    def _own(self) -> set[str]:
        # The actor acts through the subsidiary's devices even where its holding is no control
        # under the accounting's rule (and the subsidiary a group of its own).
        return self.world.group(self.actor.entity) | {str(self.actor.params["to"])}

    def bypasses_gate(self, device: Device, start: datetime) -> bool:
        # The moved job passes the subsidiary's gate as a small new lineage.
        return self.active(start) and device.entity == self.actor.params.get("to")


class ChunkedRun(Strategy):
    name = "chunked_run"
    summary = "runs one lineage as chunks below the threshold, each declared as a new run"

    @classmethod
    def check(cls, actor: Actor, scenario: Scenario) -> Problem:
        problem = cls._params(actor, {"chunk_hours": (float, int)})
        hours = actor.params.get("chunk_hours", 6)
        if problem is None and not (
            isinstance(hours, int | float)
            and 0 < hours <= scenario.hours
            and round(hours * 60) >= scenario.window_minutes
            and round(hours * 60) % scenario.window_minutes == 0
        ):
            return "params.chunk_hours", "whole windows, more than 0, at most the scenario"
        return problem

    def gate_view(self, device: Device, start: datetime, work: Work) -> tuple[str, float] | None:
        """Each chunk goes to the gate as a new run: its own lineage, and only the chunk's
        remaining device-hours as its expected compute."""
        if not (self.controls(device) and work.training and work.workload and self.active(start)):
            return None
        chunk_minutes, minute, chunk = self._chunk(start)
        devices = self.engine.workload_devices(work.workload)
        left = (chunk_minutes - minute % chunk_minutes) / 60
        return f"{work.workload}-c{chunk}", devices * left

    def _chunk(self, start: datetime) -> tuple[int, int, int]:
        """(chunk length, minutes since the first chunk began, chunk number) at ``start``.

        The first chunk begins with the first window at or after ``at_hour`` (the strategy
        acts from there, as every strategy does), so chunks begin and end on window
        boundaries, where a chunk's snapshots are committed, whatever ``at_hour`` is."""
        chunk_minutes = round(_number(self.actor, "chunk_hours", 6) * 60)
        window = self.world.minutes_per_window
        origin = -(-round(self.actor.at_hour * 60) // window) * window
        minute = self.world.minute_of(start) - origin
        return chunk_minutes, minute, minute // chunk_minutes

    def work(self, device: Device, start: datetime, work: Work) -> Work:
        if not (self.controls(device) and work.training and work.workload and self.active(start)):
            return work
        chunk_minutes, minute, chunk = self._chunk(start)
        job = f"{work.workload}-c{chunk}"
        self.engine.declare_run(job, device.entity)
        snapshots: tuple[SnapshotCommitment, ...] = ()
        if self.engine.is_lead(device, work.workload):
            first = minute % chunk_minutes == 0
            last = (minute + len(work.shapes)) % chunk_minutes == 0
            snapshots = self.engine.chunk_snapshots(work.workload, chunk, start, first, last)
        if chunk > 0:
            self.mark(start)
        return replace(work, job=job, lineage=job, snapshots=snapshots)


class GoDark(Strategy):
    name = "go_dark"
    summary = "stops its agents and keeps training: the devices fall silent"
    defies_gate = True

    def deliver(self, device: Device, start: datetime, envelopes: list[bytes]) -> list[bytes]:
        if self.acting(device, start):
            self.mark(start)
            return []
        return envelopes

    def answers(self, device: Device, at: datetime) -> bool:
        return not (self.controls(device) and self.active(at))


class ThrottleAsInference(Strategy):
    name = "throttle_as_inference"
    summary = "throttles training to an inference-like duty cycle and labels it inference"
    # Declared inference passes every gate.
    defies_gate = True

    @classmethod
    def check(cls, actor: Actor, scenario: Scenario) -> Problem:
        problem = cls._params(actor, {"duty": (int,)})
        duty = actor.params.get("duty", 5)
        if problem is None and not (isinstance(duty, int) and 2 <= duty <= 10):
            # One tenth (6 busy seconds) is under what the workload check reads as busy.
            return "params.duty", "busy tenths, 2 to 10"
        return problem

    def work(self, device: Device, start: datetime, work: Work) -> Work:
        if not (self.acting(device, start) and work.workload):
            return work
        spec = self.engine.workload(work.workload)
        if not spec.training:
            return work
        self.mark(start)
        duty = int(_number(self.actor, "duty", 5))
        shapes = tuple(
            Shape("throttled", duty, s.variant) if s.kind != "idle" else s for s in work.shapes
        )
        return replace(work, shapes=shapes, label=Workload.INFERENCE, job=f"{work.job}-serve")


class MixedTrainingInference(Strategy):
    name = "mixed_training_inference"
    summary = "trains between the requests of an inference service on the same devices"

    def work(self, device: Device, start: datetime, work: Work) -> Work:
        if not (self.acting(device, start) and work.workload):
            return work
        if work.label is not Workload.INFERENCE:
            return work
        self.mark(start)
        shapes = tuple(
            Shape("train", 10, s.variant) if i % 3 != 2 and s.kind != "idle" else s
            for i, s in enumerate(work.shapes)
        )
        return replace(work, shapes=shapes)


class ForgedReports(Strategy):
    name = "forged_reports"
    summary = "trains with its agents stopped; reports of idle devices forged with their keys"
    defies_gate = True

    @classmethod
    def check(cls, actor: Actor, scenario: Scenario) -> Problem:
        problem = cls._params(actor, {"mode": (str,)})
        if problem is None and actor.params.get("mode", "replace") not in {"replace", "alongside"}:
            return "params.mode", "replace (the agent is stopped) or alongside (it still runs)"
        return problem

    def work(self, device: Device, start: datetime, work: Work) -> Work:
        if not (self.acting(device, start) and work.training):
            return work
        self.mark(start)
        if _param(self.actor, "mode", "replace") == "alongside":
            return work
        # What the report commits to: an idle device, minute by minute; the truth trains.
        return replace(idle_work(len(work.shapes), device.entity), truth=work.shapes)

    def deliver(self, device: Device, start: datetime, envelopes: list[bytes]) -> list[bytes]:
        if (
            self.controls(device)
            and self.active(start)
            and _param(self.actor, "mode", "replace") == "alongside"
            and envelopes
        ):
            # The real agent reports the training; the forger, elsewhere, signs an idle
            # report for the same slot of the chain with the extracted key.
            return [*envelopes, self.engine.forge_idle(device)]
        return envelopes


class ReplayReports(Strategy):
    name = "replay_reports"
    summary = "stops its agents while training and replays their earlier reports"
    defies_gate = True

    def deliver(self, device: Device, start: datetime, envelopes: list[bytes]) -> list[bytes]:
        if not (self.acting(device, start)):
            return envelopes
        self.mark(start)
        old = self.engine.first_sent(device)
        return [old] if old is not None else []

    def answers(self, device: Device, at: datetime) -> bool:
        return not (self.controls(device) and self.active(at))


class BackdatedClock(Strategy):
    name = "backdated_clock"
    summary = "sets its agents' clocks back, so training windows read as before the pause"
    defies_gate = True

    @classmethod
    def check(cls, actor: Actor, scenario: Scenario) -> Problem:
        problem = cls._params(actor, {"hours": (int,)})
        if problem is None and not 1 <= int(actor.params.get("hours", 6)) <= 24 * 366:
            return "params.hours", "1 to 8784 hours"
        return problem

    def work(self, device: Device, start: datetime, work: Work) -> Work:
        if self.acting(device, start):
            self.mark(start)
            device.clock = -timedelta(hours=_number(self.actor, "hours", 6))
        return work


class ClonedIdentity(Strategy):
    name = "cloned_identity"
    summary = "runs unenrolled hardware under a copy of an enrolled device's identity and key"
    _cloned: set[str] | None = None

    @classmethod
    def check(cls, actor: Actor, scenario: Scenario) -> Problem:
        problem = cls._params(actor, {"devices": (int,)})
        if problem is None and not 1 <= int(actor.params.get("devices", 2)) <= 1_000_000:
            return "params.devices", "1 or more devices"
        return problem

    def deliver(self, device: Device, start: datetime, envelopes: list[bytes]) -> list[bytes]:
        if self._cloned is None:
            count = int(_number(self.actor, "devices", 2))
            mine = [d for d in self.world.devices_of(self.actor.entity) if d.enrolled]
            self._cloned = {d.id for d in mine[:count]}
        if not (self.active(start) and device.id in self._cloned and envelopes):
            return envelopes
        self.mark(start)
        return [*envelopes, self.engine.clone_report(device)]


class PermitOverrun(Strategy):
    name = "permit_overrun"
    summary = "keeps training under its permit for extra hours past the run its budget covered"
    threshold_based = True

    @classmethod
    def check(cls, actor: Actor, scenario: Scenario) -> Problem:
        problem = cls._params(actor, {"extra_hours": (int,)})
        if problem is None and not 1 <= int(actor.params.get("extra_hours", 12)) <= 24 * 366:
            return "params.extra_hours", "1 to 8784 hours"
        if problem is None and not any(
            p.owner_group == actor.entity for p in scenario.governance.permits
        ):
            return "entity", "permit_overrun needs a permit for the actor's group"
        return problem

    def work(self, device: Device, start: datetime, work: Work) -> Work:
        if not self.controls(device) or work.training or not self.active(start):
            return work
        extra = timedelta(hours=_number(self.actor, "extra_hours", 12))
        for permit in self.engine.scenario.governance.permits:
            if permit.owner_group not in self.entities:
                continue
            for spec in self.engine.scenario.workloads:
                if spec.lineage != permit.lineage or spec.hours is None:
                    continue
                end = self.engine.scenario.at(spec.start_hour + spec.hours)
                if not end <= start < end + extra or not self.engine.runs_on(spec, device):
                    continue
                self.mark(start)
                first = self.world.minute_of(start)
                shapes = tuple(self.world.shape(spec, first + i) for i in range(len(work.shapes)))
                return replace(
                    work,
                    shapes=shapes,
                    job=spec.id,
                    label=Workload.TRAINING,
                    lineage=spec.lineage,
                    permit=permit.id,
                    workload=spec.id,
                )
        return work


class SmuggledDevices(Strategy):
    name = "smuggled_devices"
    summary = "trains on devices it never enrolled (shipped to it, unreported)"

    @classmethod
    def check(cls, actor: Actor, scenario: Scenario) -> Problem:
        problem = cls._params(actor, {})
        clusters = [c for c in scenario.clusters if c.entity == actor.entity and c.unenrolled]
        if problem is None and not clusters:
            return "entity", "smuggled_devices needs a cluster of the actor with unenrolled devices"
        return problem

    def work(self, device: Device, start: datetime, work: Work) -> Work:
        if device.enrolled or not self.controls(device) or not self.active(start):
            return work
        self.mark(start)
        shapes = tuple(
            Shape("train", 10, (self.world.minute_of(start) + i) % 4)
            for i in range(len(work.shapes))
        )
        return replace(work, shapes=shapes, job="smuggled", label=Workload.TRAINING)


class RegistryDrop(Strategy):
    name = "registry_drop"
    summary = "the registry's operator drops a colluding lab's training reports from the log"

    @classmethod
    def check(cls, actor: Actor, scenario: Scenario) -> Problem:
        problem = cls._params(actor, {"target": (str,)})
        if problem is None and actor.entity != "registry":
            return "entity", "registry_drop is the registry's strategy (entity: registry)"
        target = actor.params.get("target")
        if problem is None and target not in {e.id for e in scenario.entities}:
            return "params.target", "must name an entity"
        return problem

    def log(self, device: Device, start: datetime, work: Work) -> str:
        if not self.active(start) or device.entity != self.actor.params["target"]:
            return "ingest"
        if work.training:
            self.mark(start)
            return "drop"
        # The chain no longer links to what the log holds: the code would refuse it.
        return "append" if self.defected_at is not None else "ingest"


class RegistrySplitView(RegistryDrop):
    name = "registry_split_view"
    summary = (
        "the registry's operator shows auditors a log without a colluding lab's training "
        "reports, and witnesses the true one"
    )
    #: The engine keeps a second log (the one auditors are shown) when a strategy says so.
    split_view: ClassVar[bool] = True

    @classmethod
    def check(cls, actor: Actor, scenario: Scenario) -> Problem:
        problem = super().check(actor, scenario)
        return None if problem is None else (problem[0], problem[1].replace("drop", "split_view"))

    def log(self, device: Device, start: datetime, work: Work) -> str:
        return "ingest"  # the true log, which the witnesses see

    def shown(self, device: Device, start: datetime, work: Work) -> str:
        """What the log shown to auditors does with the report."""
        return RegistryDrop.log(self, device, start, work)


def _strategies(*classes: type[Strategy]) -> dict[str, type[Strategy]]:
    return {cls.name: cls for cls in classes}


#: Every strategy by name.
STRATEGIES: dict[str, type[Strategy]] = _strategies(
    Strategy,
    IgnorePause,
    SubsidiarySplit,
    ChunkedRun,
    GoDark,
    ThrottleAsInference,
    MixedTrainingInference,
    ForgedReports,
    ReplayReports,
    BackdatedClock,
    ClonedIdentity,
    PermitOverrun,
    SmuggledDevices,
    RegistryDrop,
    RegistrySplitView,
)
