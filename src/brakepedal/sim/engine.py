"""Run a scenario through the real pipeline and measure what the auditor catches, and when.

The engine drives the real code, in one process for speed: every device's reports are built
and signed with its own key (:class:`~brakepedal.wire.report_format.UsageReport`, DSSE over
Ed25519), posted in batches to a :class:`~brakepedal.registry.service.Registry` on a SQLite
file (verification, chains, the transparency log), governance decisions are signed by the
quorum and published there, two witnesses cosign its checkpoints, the gate decides every
training job with :func:`brakepedal.agent.gate.decide` against the verified governance view,
and the independent :class:`~brakepedal.audit.auditor.Auditor` audits the registry every
``audit.every_hours``, opening sampling challenges that the devices answer with their minute
records. The world runs on a simulated clock, which the registry reads too.

What comes out is an :class:`Outcome`: for each actor, whether a finding (or a registry
refusal) concerned it, which detector first, and how long after it defected (or after its
hidden compute crossed the order's threshold); and the findings against honest actors.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from brakepedal.accounting.catalogue import default_catalogue
from brakepedal.accounting.document import UsageDocument
from brakepedal.accounting.lineage import RunDeclaration
from brakepedal.accounting.usage import Workload
from brakepedal.agent.gate import JobDeclaration, decide
from brakepedal.audit.auditor import AuditConfig, Auditor, open_challenges
from brakepedal.audit.detectors import Thresholds
from brakepedal.audit.findings import Finding, Severity
from brakepedal.audit.source import LocalSource, RegistrySource
from brakepedal.audit.state import AuditState
from brakepedal.crypto.keys import CryptoSigner, ed25519_from_seed
from brakepedal.errors import BrakepedalError, InputError
from brakepedal.governance.documents import LiftOrder, PauseOrder, TrainingPermit
from brakepedal.governance.view import GovernanceView
from brakepedal.model.types import (
    DeviceId,
    EntityId,
    Flop,
    JobId,
    LineageId,
    OrderId,
    PermitId,
    RunId,
    SiteId,
)
from brakepedal.policy.load import load_preset
from brakepedal.registry.ingest import IngestLimits, ItemResult
from brakepedal.registry.service import Registry, RegistryConfig
from brakepedal.sim.governance import (
    ORDER_QUORUM,
    Signatories,
    SimClock,
    serve_registry,
    view_in_process,
    witness_in_process,
)
from brakepedal.sim.scenario import Scenario, WorkloadSpec
from brakepedal.sim.strategies import STRATEGIES, Strategy
from brakepedal.sim.telemetry import Shape, minute_leaves, minute_root, minute_shape, window_totals
from brakepedal.sim.world import Device, Work, World, decode_runs, encode_runs, idle_work
from brakepedal.tlog.cosignature import Cosigner
from brakepedal.tlog.note import NoteSigner
from brakepedal.wire.enrolment import build_enrolment
from brakepedal.wire.report import sign_report
from brakepedal.wire.report_format import UsageReport
from brakepedal.wire.report_items import SnapshotCommitment

__all__ = [
    "ActorOutcome",
    "Engine",
    "Outcome",
    "check_http",
    "governance_horizon",
    "http_supported",
    "run_scenario",
]

ORIGIN = "sim.brakepedal.org/registry"
JURISDICTIONS = frozenset({"agreement"})
REFERENCE_ACCELERATOR = "nvidia-h100-sxm5-80gb"
#: Reports per ingest call (the registry's batch limit).
BATCH = 1000

#: Progress callback: (stage, done, total).
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class Caught:
    """The first sign of an actor: when, by what (a detector, or ``refused:<reason>``)."""

    at: datetime
    by: str
    severity: str


@dataclass(frozen=True, slots=True)
class ActorOutcome:
    """What became of one actor."""

    entity: str
    strategy: str
    defected_at: datetime | None
    crossed_at: datetime | None
    caught: Caught | None
    detectors: tuple[str, ...]

    @property
    def defected(self) -> bool:
        return self.defected_at is not None

    @property
    def hours_to_finding(self) -> float | None:
        """From the first act, or for policy strategies the later of it and the moment the
        group's compute crossed the order's threshold, to the first finding (negative: found
        before the crossing); None when not caught."""
        if self.caught is None or self.defected_at is None:
            return None
        since = max(self.crossed_at or self.defected_at, self.defected_at)
        return (self.caught.at - since).total_seconds() / 3600


@dataclass(frozen=True, slots=True)
class Outcome:
    """One run of a scenario."""

    scenario: str
    seed: int
    devices: int
    reports: int
    audits: int
    actors: tuple[ActorOutcome, ...]
    #: Findings of severity high or worse that concern no defecting actor.
    false_high: tuple[str, ...]
    #: Findings of lower severity that concern no defecting actor.
    false_low: tuple[str, ...]
    honest_entities: int
    seconds: float
    challenges: int
    findings: tuple[dict[str, Any], ...] = ()
    #: Per challenge round: (population, falsified in it, falsified drawn, drawn).
    rounds: tuple[tuple[int, int, int, int], ...] = ()
    #: Device-windows whose training the gate refused.
    gate_refusals: int = 0
    #: Reports of honest actors the registry refused (reason and device).
    false_refusals: tuple[str, ...] = ()

    @property
    def false_rate(self) -> float:
        """High findings against honest actors per honest entity and audit."""
        denominator = max(1, self.honest_entities * self.audits)
        return len(self.false_high) / denominator


@dataclass
class _Tally:
    """Ground truth the engine keeps: compute by lineage, group and permit."""

    lineage_flop: dict[str, int] = field(default_factory=dict)
    group_flop: dict[str, int] = field(default_factory=dict)
    permit_flop: dict[str, int] = field(default_factory=dict)
    #: When each group's training compute first reached a published order's threshold.
    crossed: dict[str, datetime] = field(default_factory=dict)


class Engine:
    """One scenario, one seed, one working directory."""

    def __init__(
        self,
        scenario: Scenario,
        workdir: Path,
        *,
        seed: int | None = None,
        budget: int | None = None,
        progress: Progress | None = None,
        http: bool = False,
    ) -> None:
        if seed is not None:
            scenario = scenario.model_copy(update={"seed": seed})
        if budget is not None:
            if budget < 0:
                raise InputError("sim.budget_invalid", f"a challenge budget of {budget}")
            scenario = scenario.model_copy(
                update={"audit": scenario.audit.model_copy(update={"budget": budget})}
            )
        self.scenario = scenario
        self.workdir = workdir
        self.progress = progress or (lambda stage, done, total: None)
        self.catalogue = default_catalogue()
        self.world = World(scenario, self.catalogue, keys=self.key)
        self.clock = SimClock(scenario.start)
        self.log_signer = NoteSigner(ORIGIN, self.key("log"))
        self.witnesses = [
            Cosigner(f"witness-{i}.sim", self.key(f"witness-{i}")) for i in range(1, 4)
        ]
        self.signatories = Signatories(
            self.log_signer,
            self.witnesses,
            scenario.start,
            ORIGIN,
            keys=self.key,
            horizon=governance_horizon(scenario.days),
        )
        self.peak = max(self.catalogue.get(REFERENCE_ACCELERATOR).peak.values())
        self.strategies: list[Strategy] = [STRATEGIES[a.strategy](a, self) for a in scenario.actors]
        self._by_entity = {
            e: s for s in self.strategies for e in s.entities if s.actor.strategy != "honest"
        }
        self._split = any(s.split_view for s in self.strategies)
        if http:
            check_http(scenario)
        #: Over HTTP: reports, enrolments and answers are posted, and the auditor reads the
        #: registry's API (RegistrySource), as in production.
        self.http = http
        self.client: httpx.Client | None = None
        self.tally = _Tally()
        self.runs: dict[str, RunDeclaration] = {}
        self.view: GovernanceView | None = None
        self._published: set[str] = set()
        self._leads: dict[str, str] = {}
        self._gate_cache: dict[tuple[str, str, int, datetime], tuple[bool, str | None]] = {}
        self._snapshots: dict[tuple[str, int], str] = {}
        self._first_sent: dict[str, bytes] = {}
        self._thresholds: list[int] = []
        #: Reports whose label hides training (device, sequence): what sampling should find.
        self.falsified: set[tuple[str, int]] = set()
        #: Per challenge round: (population, falsified in it, falsified drawn, drawn).
        self.rounds: list[tuple[int, int, int, int]] = []
        self.reports = 0
        self.refusals: list[tuple[datetime, str, str]] = []
        self.first_seen: dict[str, tuple[datetime, Finding]] = {}
        #: Every audit that raised each finding (a finding persists across audits).
        self.sightings: dict[str, list[datetime]] = {}
        self.audits = 0
        self.challenges = 0
        #: Device-windows whose training the gate refused (and an honest actor stopped).
        self.gate_refusals = 0
        for spec in scenario.workloads:
            if spec.training and spec.declared:
                self.declare_run(spec.id, self.world.clusters[spec.cluster].entity)

    # ------------------------------------------------------------------ set-up

    def key(self, name: str) -> CryptoSigner:
        """The world's key ``name``, derived from the scenario's seed: a run is reproducible,
        sampling included (its seed is the log's root, which the keys determine)."""
        seed = f"brakepedal-sim:{self.scenario.seed}:{name}".encode()
        return ed25519_from_seed(hashlib.sha256(seed).digest())

    def _registry(self, name: str = "registry") -> Registry:
        database = self.workdir / f"{name}.sqlite3"
        for stale in self.workdir.glob(f"{name}.sqlite3*"):
            stale.unlink()
        shutil.rmtree(self.workdir / "audit", ignore_errors=True)
        return Registry(
            RegistryConfig(
                url=f"sqlite:///{database}",
                origin=ORIGIN,
                log_signer=self.log_signer,
                witnesses=[w.verifier() for w in self.witnesses],
                allow_software_keys=True,
                governance_operator=self.signatories.operator,
                now=self.clock,
                limits=IngestLimits(max_reports=BATCH),
            )
        )

    def run(self) -> Outcome:
        began = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        # What is opened is closed, in reverse order, whatever fails to open after it.
        with contextlib.ExitStack() as opened:
            self.registry = self._registry()
            opened.callback(self.registry.close)
            # A registry showing a split view keeps a second log, signed with the same key,
            # for auditors; the witnesses cosign the true one.
            self.shown = self._registry("shown") if self._split else None
            if self.shown is not None:
                opened.callback(self.shown.close)
            self.state = AuditState(self.workdir / "audit")
            opened.callback(self.state.close)
            self.source: LocalSource | RegistrySource = (
                LocalSource(self.registry, auditor="sim-auditor")
                if self.shown is None
                else _SplitView(self.shown, self.registry)
            )
            if not self.http:
                return self._run(began)
            url = opened.enter_context(serve_registry(self.registry))
            self.client = opened.enter_context(httpx.Client(base_url=url, timeout=300))
            token = self.registry.add_credential("sim-auditor", "auditor")
            remote = RegistrySource(url, token, timeout=300)
            opened.callback(remote.close)
            self.source = remote
            return self._run(began)
        raise AssertionError("unreachable")  # pragma: no cover - the block returns

    def _run(self, began: float) -> Outcome:
        s = self.scenario
        for proposal in self.signatories.bootstrap_proposals(s.start):
            self._publish_proposal(proposal.to_bytes())
        self._enrol()
        self._witness(s.start)
        self._refresh_view(s.start)
        windows = list(self.world.windows())
        every = timedelta(hours=s.audit.every_hours)
        next_audit = s.start + every
        for step, start in enumerate(windows):
            self._governance(start)
            self._window(start)
            end = start + s.window
            if end >= next_audit or step == len(windows) - 1:
                self._audit(end)
                while next_audit <= end:
                    next_audit += every
            self.progress("simulated windows", step + 1, len(windows))
        return self._outcome(began)

    def _enrol(self) -> None:
        self.clock.moment = self.scenario.start
        for device in self.world.devices:
            if not device.enrolled or device.signer is None:
                continue
            envelope = build_enrolment(
                device.signer,
                device=DeviceId(device.id),
                accelerator=device.accelerator,
                operator=EntityId(device.entity),
                site=None if device.site is None else SiteId(device.site),
                chain=(),
                at=self.scenario.start,
            )
            if self.client is not None:
                self.client.post("/v1/devices", content=envelope).raise_for_status()
            else:
                self.registry.enrol(envelope)
            if self.shown is not None:
                self.shown.enrol(envelope)

    def _witness(self, at: datetime) -> None:
        """The witnesses cosign the registry's newest checkpoint. A registry keeping a second
        log copies their cosignatures onto it while its history is the same (it cannot after)."""
        witness_in_process(self.registry, self.witnesses, at)
        if self.shown is None:
            return
        note = self.registry.witnessed_checkpoint(2)
        if note is not None:
            with contextlib.suppress(BrakepedalError):
                self.shown.add_cosignatures(bytes(note))

    def _mirror(self, action: Callable[[Registry], object]) -> None:
        """Do ``action`` on the registry, and on the log shown to auditors if there is one."""
        action(self.registry)
        if self.shown is not None:
            action(self.shown)

    # ------------------------------------------------------------------ governance

    def _governance(self, at: datetime) -> None:
        s = self.scenario
        parties = [f"party-{i}" for i in (1, 2, 4, 6)][:ORDER_QUORUM]
        changed = False
        for order in s.governance.orders:
            if order.id in self._published or s.at(order.at_hour) > at:
                continue
            document = PauseOrder(
                order_id=OrderId(order.id),
                threshold_flop=Flop(self.threshold(order.threshold_device_hours)),
                jurisdictions=JURISDICTIONS,
                effective_from=s.at(order.at_hour),
                sunset=s.at(order.at_hour) + timedelta(days=order.sunset_days),
                grace_seconds=order.grace_minutes * 60,
                reason=f"simulated pause {order.id}",
            )
            self._publish(order.id, document.target_path, document.to_bytes(), parties, at)
            threshold = int(document.threshold_flop.value)
            self._thresholds.append(threshold)
            # A group already over the threshold crosses when the order takes effect.
            for group, flop in self.tally.group_flop.items():
                if flop >= threshold:
                    self.tally.crossed.setdefault(group, s.at(order.at_hour))
            changed = True
        for serial, permit in enumerate(s.governance.permits, start=1):
            if permit.id in self._published or s.at(permit.at_hour) > at:
                continue
            document_p = TrainingPermit(
                permit_id=PermitId(permit.id),
                serial=serial,
                owner_group=EntityId(self.world.root(permit.owner_group)),
                flop_budget=Flop(self.threshold(permit.budget_device_hours)),
                valid_from=s.at(permit.at_hour),
                valid_until=s.at(permit.at_hour + permit.valid_hours),
                lineage=LineageId(self._lineage_id(permit.lineage)),
                under_order=OrderId(permit.order),
            )
            self._publish(permit.id, document_p.target_path, document_p.to_bytes(), parties, at)
            changed = True
        for lift in s.governance.lifts:
            if lift.id in self._published or s.at(lift.at_hour) > at:
                continue
            document_l = LiftOrder(
                lift_id=OrderId(lift.id),
                lifts=OrderId(lift.lifts),
                effective_from=s.at(lift.at_hour),
                reason=f"simulated lift of {lift.lifts}",
            )
            self._publish(lift.id, document_l.target_path, document_l.to_bytes(), parties, at)
            changed = True
        if changed:
            self._refresh_view(at)

    def _publish(self, name: str, path: str, data: bytes, signers: list[str], at: datetime) -> None:
        self.clock.moment = at
        proposal = self.signatories.document(name, path, data, signers)
        self._publish_proposal(proposal.to_bytes())
        self._published.add(name)

    def _publish_proposal(self, data: bytes) -> None:
        self._mirror(lambda registry: registry.publish_governance(data))
        self.signatories.files = dict(self.registry.governance_files())

    def _refresh_view(self, at: datetime) -> None:
        self.clock.moment = at
        self._mirror(lambda r: r.refresh_governance_timestamp())
        self.signatories.files = dict(self.registry.governance_files())
        self._witness(at)
        self.view = view_in_process(self.registry, self.signatories, at)
        self._gate_cache.clear()

    def threshold(self, device_hours: float) -> int:
        """FLOP of ``device_hours`` of the reference accelerator at its peak."""
        return round(device_hours * 3600 * self.peak)

    def _lineage_id(self, lineage: str) -> str:
        """The ledger's lineage id of a scenario lineage: its first declared run."""
        for spec in self.scenario.workloads:
            if spec.lineage == lineage and spec.declared:
                return spec.id
        return lineage

    # ------------------------------------------------------------------ the gate

    def _gate(self, device: Device, work: Work, start: datetime) -> tuple[bool, str | None]:
        """Whether the job may train in this window, and the permit that covers it."""
        lineage = work.lineage or work.job or "unknown"
        expected = self._remaining(work, start)
        for strategy in self.strategies:
            told = strategy.gate_view(device, start, work)
            if told is not None:
                lineage, expected = told[0], self.threshold(told[1])
        group = self.world.root(device.entity)
        key = (group, lineage, expected, start)
        cached = self._gate_cache.get(key)
        if cached is not None:
            return cached
        decision = decide(
            JobDeclaration(
                job=JobId(work.job or "unknown"),
                owner_group=EntityId(group),
                workload=Workload.TRAINING,
                jurisdictions=JURISDICTIONS,
                lineage=LineageId(self._lineage_id(lineage)),
                expected_flop=Flop(expected),
                lineage_flop=Flop(self.tally.lineage_flop.get(lineage, 0)),
            ),
            at=start,
            orders=None if self.view is None else self.view.orders_in_force(start),
            permits=() if self.view is None else self.view.permits_valid(start),
        )
        result = (decision.allowed, None if decision.permit is None else str(decision.permit))
        if result[1] is not None and self._permit_exhausted(result[1]):
            result = (False, result[1])
        self._gate_cache[key] = result
        return result

    def workload_devices(self, name: str) -> int:
        """How many devices workload ``name`` runs on."""
        spec = self.workload(name)
        return spec.devices or self.world.clusters[spec.cluster].devices - spec.first

    def _remaining(self, work: Work, start: datetime) -> int:
        """What the job declares it will still compute: its devices at their peak to the end
        of its planned span."""
        if work.workload is None:
            return 0
        spec = self.workload(work.workload)
        devices = self.workload_devices(spec.id)
        # Absent hours: to the end of the scenario (not start_hour + its length).
        end = spec.start_hour + spec.hours if spec.hours is not None else self.scenario.hours
        now = max(spec.start_hour, (start - self.scenario.start).total_seconds() / 3600)
        hours = max(0.0, end - now)
        return self.threshold(devices * hours)

    def _permit_exhausted(self, permit: str) -> bool:
        spec = next(p for p in self.scenario.governance.permits if p.id == permit)
        return self.tally.permit_flop.get(permit, 0) >= self.threshold(spec.budget_device_hours)

    def runs_on(self, spec: WorkloadSpec, device: Device) -> bool:
        """Whether workload ``spec`` is scheduled on ``device``."""
        if device.cluster != spec.cluster:
            return False
        count = (
            spec.devices
            if spec.devices is not None
            else self.world.clusters[spec.cluster].devices - spec.first
        )
        return spec.first <= device.index < spec.first + count

    # ------------------------------------------------------------------ a window

    def _window(self, start: datetime) -> None:
        true_log = _Delivery()
        shown_log = _Delivery()
        for device in self.world.devices:
            work = self._work(device, start)
            self._count(device, work, start)
            if not device.enrolled:
                continue
            envelopes = [self._report(device, start, work)]
            for strategy in self.strategies:
                envelopes = strategy.deliver(device, start, envelopes)
            true_log.route(
                envelopes, [partial(s.log, device, start, work) for s in self.strategies]
            )
            if self.shown is not None:
                shown_log.route(
                    envelopes, [partial(s.shown, device, start, work) for s in self.strategies]
                )
        self.clock.moment = start + self.scenario.window + timedelta(seconds=30)
        for result in true_log.deliver(self.registry, self.client):
            if result.status not in {"accepted", "duplicate"}:
                self.refusals.append(
                    (self.clock.moment, result.device or "?", result.reason or result.status)
                )
        if self.shown is not None:
            shown_log.deliver(self.shown)

    def _work(self, device: Device, start: datetime) -> Work:
        work = self.world.planned(device, start)
        if work.label is not Workload.INFERENCE and work.workload is not None:
            allowed, permit = self._gate(device, work, start)
            owner = self._by_entity.get(device.entity)
            bypass = any(s.bypasses_gate(device, start) for s in self.strategies)
            if not allowed and not bypass:
                self.gate_refusals += 1
                work = idle_work(len(work.shapes), device.entity)
            elif permit is not None:
                work = replace(work, permit=permit)
            if not allowed and bypass and owner is not None:
                owner.mark(start)
        for strategy in self.strategies:
            work = strategy.work(device, start, work)
        return work

    def _count(self, device: Device, work: Work, start: datetime) -> None:
        if not work.training:
            return
        busy = sum(minute_shape(s).busy_ms for s in work.real if s.kind != "idle")
        flop = busy * self.peak // 1000
        lineage = work.lineage or work.job or "unknown"
        t = self.tally
        t.lineage_flop[lineage] = t.lineage_flop.get(lineage, 0) + flop
        if work.permit is not None:
            t.permit_flop[work.permit] = t.permit_flop.get(work.permit, 0) + flop
        group = self.world.root(device.entity)
        t.group_flop[group] = t.group_flop.get(group, 0) + flop
        if (
            group not in t.crossed
            and self._thresholds
            and t.group_flop[group] >= min(self._thresholds)
        ):
            t.crossed[group] = start + self.scenario.window

    def _report(self, device: Device, start: datetime, work: Work) -> bytes:
        moment = start + device.clock
        digest, envelope = self._sign(device, device.sequence, device.previous, moment, work)
        device.signed[device.sequence] = (moment, encode_runs(work.shapes), device.previous)
        if work.label is Workload.INFERENCE and work.training:
            self.falsified.add((device.id, device.sequence))
        device.sequence += 1
        device.previous = digest
        self.reports += 1
        self._first_sent.setdefault(device.id, envelope)
        return envelope

    def _sign(
        self, device: Device, sequence: int, previous: str, moment: datetime, work: Work
    ) -> tuple[str, bytes]:
        """The digest and signed envelope of ``device``'s report ``sequence`` over ``work``."""
        assert device.signer is not None
        shapes = work.shapes
        totals = window_totals(shapes)
        report = UsageReport(
            device=DeviceId(device.id),
            accelerator=device.accelerator,
            sequence=sequence,
            previous=previous,
            window_start=moment,
            window_end=moment + timedelta(minutes=len(shapes)),
            busy_ms=int(totals["busy_ms"] or 0),
            tensor_active_ms=totals["tensor_active_ms"],
            energy_mj=int(totals["energy_mj"] or 0),
            memory_max_bytes=totals["memory_max_bytes"],
            interconnect_bytes=totals["interconnect_bytes"],
            job=None if work.job is None else JobId(work.job),
            tenant=EntityId(work.tenant),
            permit=None if work.permit is None else PermitId(work.permit),
            site=None if device.site is None else SiteId(device.site),
            workload=work.label,
            minute_count=len(shapes),
            minute_root=minute_root(minute_leaves(device.id, moment, shapes)),
            governance=None,
            snapshots=work.snapshots,
        )
        data = report.to_bytes()
        return hashlib.sha256(data).hexdigest(), sign_report(report, device.signer)

    # ------------------------------------------------------------------ for strategies

    def workload(self, name: str) -> WorkloadSpec:
        return next(w for w in self.scenario.workloads if w.id == name)

    def declare_run(self, job: str, owner: str) -> None:
        if job not in self.runs:
            self.runs[job] = RunDeclaration(
                run=RunId(job),
                owner=EntityId(owner),
                jobs=frozenset({JobId(job)}),
                jurisdictions=JURISDICTIONS,
            )

    def is_lead(self, device: Device, workload: str) -> bool:
        """Whether ``device`` is the workload's first device (its framework's rank 0)."""
        return self._leads.setdefault(workload, device.id) == device.id

    def chunk_snapshots(
        self, workload: str, chunk: int, start: datetime, first: bool, last: bool
    ) -> tuple[SnapshotCommitment, ...]:
        """A chunk's commitments: from the last chunk's snapshot at its start, its own at
        its end."""
        job = JobId(f"{workload}-c{chunk}")
        out = []
        if first and chunk > 0:
            parent = self._snapshots.get((workload, chunk - 1))
            if parent is not None:
                digest = hashlib.sha256(f"{workload}:{chunk}:start".encode()).hexdigest()
                out.append(
                    SnapshotCommitment(
                        job=job, step=chunk * 1000, digest=digest, at=start, parent=parent
                    )
                )
        if last:
            digest = hashlib.sha256(f"{workload}:{chunk}:end".encode()).hexdigest()
            self._snapshots[(workload, chunk)] = digest
            at = start + self.scenario.window - timedelta(seconds=1)
            out.append(SnapshotCommitment(job=job, step=chunk * 1000 + 999, digest=digest, at=at))
        return tuple(out)

    def forge_idle(self, device: Device) -> bytes:
        """A report for ``device``'s newest chain slot claiming it idle, signed with its key
        elsewhere (by whoever extracted it)."""
        return self._alternate(device, (Shape("idle"),) * self.scenario.window_minutes, None)

    def clone_report(self, device: Device) -> bytes:
        """The clone's report for the same chain slot as ``device``'s newest: it trains."""
        shapes = tuple(Shape("train", 10, i % 4) for i in range(self.scenario.window_minutes))
        return self._alternate(device, shapes, "clone")

    def _alternate(self, device: Device, shapes: tuple[Shape, ...], job: str | None) -> bytes:
        assert device.signer is not None
        sequence = device.sequence - 1
        moment, _, previous = device.signed[sequence]
        label = Workload.TRAINING if job else Workload.UNKNOWN
        work = Work(shapes, job, device.entity, label)
        return self._sign(device, sequence, previous, moment, work)[1]

    def first_sent(self, device: Device) -> bytes | None:
        """The first envelope ``device`` sent (what a replay resends)."""
        return self._first_sent.get(device.id)

    # ------------------------------------------------------------------ auditing

    def declarations(self) -> UsageDocument:
        entities = tuple(EntityId(e) for e in self.world.entities)
        return UsageDocument(
            entities=entities,
            holdings=self.world.holdings,
            runs=tuple(self.runs.values()),
            windows=(),
        )

    def _audit(self, at: datetime) -> None:
        self.clock.moment = at
        self._mirror(lambda r: r.refresh_governance_timestamp())
        self.signatories.files = dict(self.registry.governance_files())
        self._witness(at)
        self._answer_challenges()
        window = self.scenario.window
        config = AuditConfig(
            origin=ORIGIN,
            log_key=self.log_signer.verifier(),
            witnesses=tuple(w.verifier() for w in self.witnesses),
            witness_threshold=2,
            name="sim-auditor",
            trusted_root=self.signatories.trusted_root,
            policy=load_preset("pause"),
            declarations=self.declarations(),
            thresholds=Thresholds(
                allowed_gap=max(timedelta(minutes=30), 2 * window),
                clock_skew=timedelta(minutes=5),
            ),
            challenge_deadline=timedelta(hours=self.scenario.audit.every_hours * 1.5),
            shipments=self.shipments(),
        )
        auditor = Auditor(config, self.state)
        result = auditor.run(self.source, at=at)
        self.audits += 1
        for finding in result.findings:
            self.first_seen.setdefault(finding.id, (at, finding))
            self.sightings.setdefault(finding.id, []).append(at)
        budget = self.scenario.audit.budget
        if budget:
            asked = {(c.device, c.sequence) for c in self.state.challenges()}
            size = max((c.size for c in self.state.checkpoints()), default=0)
            population = [
                (r.device, r.sequence)
                for r in self.state.reports()
                if r.log_index < size and (r.device, r.sequence) not in asked
            ]
            open_challenges(
                self.state,
                self.source,
                budget=budget,
                fraction=self.scenario.audit.fraction,
                at=at,
            )
            # What was opened (a draw the registry would not relay is not).
            opened = {(c.device, c.sequence) for c in self.state.challenges()} - asked
            self.challenges += len(opened)
            self.rounds.append(
                (
                    len(population),
                    sum(key in self.falsified for key in population),
                    sum(key in self.falsified for key in opened),
                    len(opened),
                )
            )

    def shipments(self) -> dict[str, int]:
        """What the manufacturers shipped, by entity (enrolled or not)."""
        shipped: dict[str, int] = {}
        for cluster in self.scenario.clusters:
            shipped[cluster.entity] = (
                shipped.get(cluster.entity, 0) + cluster.devices + cluster.unenrolled
            )
        return shipped

    def _answer_challenges(self) -> None:
        for challenge in self.state.challenges():
            if challenge.status != "open":
                continue
            device = self.world.by_id.get(challenge.device)
            if device is None or challenge.sequence not in device.signed:
                continue
            if not all(s.answers(device, self.clock.moment) for s in self.strategies):
                continue
            moment, runs, _ = device.signed[challenge.sequence]
            shapes = decode_runs(runs)
            leaves = minute_leaves(device.id, moment, shapes)
            if self.client is not None:
                body = b'{"minutes":[' + b",".join(leaves) + b"]}"
                answer = self.client.post(f"/v1/challenges/{challenge.id}/answer", content=body)
                if answer.status_code >= 500:
                    answer.raise_for_status()  # the registry failed: not a refusal
                continue  # a refused answer (4xx) leaves the challenge open
            try:
                (self.shown or self.registry).answer_challenge(challenge.id, leaves)
            except BrakepedalError:
                continue  # an answer the registry refuses leaves the challenge open

    # ------------------------------------------------------------------ the outcome

    def concerns(self, finding: Finding) -> set[str]:
        """The entities (or ``registry``) a finding concerns."""
        kind, _, name = finding.subject.partition(":")
        out: set[str] = set()
        if finding.detector.startswith(("log.", "registry.")) or kind in {"log", "governance"}:
            # The registry serves the log and the governance repository with its proofs.
            out.add("registry")
        if finding.detector == "chain.gap":
            out.add("registry")
        if kind == "device" and name in self.world.by_id:
            out.add(self.world.by_id[name].entity)
        elif kind == "lineage":
            group = name.removeprefix("unattributed:")
            if group in self.world.entities:
                out |= self.world.group(group)
            else:
                out |= self._owners_of_job(name)
        elif kind in {"job", "run"}:
            out |= self._owners_of_job(name)
        elif kind in {"group", "entity", "operator"} and name in self.world.entities:
            out |= self.world.group(name)
        owners = finding.figures.get("owners")
        if isinstance(owners, list):
            out |= {str(o) for o in owners if str(o) in self.world.entities}
        return out

    def _owners_of_job(self, job: str) -> set[str]:
        run = self.runs.get(job)
        if run is not None:
            return self.world.group(str(run.owner))
        spec = _workload_of_job(self.scenario.workloads, job)
        if spec is not None:
            return self.world.group(self.world.clusters[spec.cluster].entity)
        return set()

    def _outcome(self, began: float) -> Outcome:
        defectors = [s for s in self.strategies if s.actor.strategy != "honest"]
        blamed = {e for s in defectors for e in s.entities}
        actors = []
        found = sorted(self.first_seen.values(), key=lambda item: item[0])
        for strategy in self.strategies:
            caught: Caught | None = None
            detectors: list[str] = []
            # Only what came after the first act is a sign of it.
            since = strategy.defected_at
            defecting = strategy.actor.strategy != "honest" and since is not None
            for _first, finding in found:
                if not (
                    defecting and since is not None and strategy.entities & self.concerns(finding)
                ):
                    continue
                # The first audit after the act that still raised it (an act is marked at its
                # window's start; an audit at that moment ran before the window).
                at = next((t for t in self.sightings[finding.id] if t > since), None)
                if at is None:
                    continue
                detectors.append(finding.detector)
                if caught is None or at < caught.at:
                    caught = Caught(at, finding.detector, finding.severity.value)
            for at, device, reason in self.refusals:
                owner = self.world.by_id[device].entity if device in self.world.by_id else None
                if owner in strategy.entities and defecting and since is not None and at >= since:
                    detectors.append(f"refused:{reason}")
                    if caught is None or at < caught.at:
                        caught = Caught(at, f"refused:{reason}", "refused")
            actors.append(
                ActorOutcome(
                    entity=strategy.actor.entity,
                    strategy=strategy.actor.strategy,
                    defected_at=strategy.defected_at,
                    crossed_at=self._crossed(strategy),
                    caught=caught if strategy.defected_at is not None else None,
                    detectors=tuple(dict.fromkeys(detectors)),
                )
            )
        false_high: list[str] = []
        false_low: list[str] = []
        for _at, finding in found:
            concerned = self.concerns(finding)
            if concerned & blamed:
                continue
            label = f"{finding.detector} {finding.subject}"
            high = finding.severity in {Severity.HIGH, Severity.CRITICAL}
            (false_high if high else false_low).append(label)
        false_refusals = tuple(
            f"{reason} device:{device}"
            for _at, device, reason in self.refusals
            if device in self.world.by_id and self.world.by_id[device].entity not in blamed
        )
        honest = {e for e in self.world.entities if e not in blamed}
        return Outcome(
            scenario=self.scenario.name,
            seed=self.scenario.seed,
            devices=len(self.world.devices),
            reports=self.reports,
            audits=self.audits,
            actors=tuple(actors),
            false_high=tuple(false_high),
            false_low=tuple(false_low),
            false_refusals=false_refusals,
            honest_entities=len(honest),
            seconds=time.monotonic() - began,
            challenges=self.challenges,
            rounds=tuple(self.rounds),
            gate_refusals=self.gate_refusals,
            findings=tuple(
                {
                    "at": at.isoformat(),
                    "detector": f.detector,
                    "severity": f.severity.value,
                    "subject": f.subject,
                    "summary": f.summary,
                }
                for at, f in found
            ),
        )

    def _crossed(self, strategy: Strategy) -> datetime | None:
        """When the actor's group's training compute first reached the smallest threshold of
        the orders published by then (policy strategies only)."""
        if not strategy.threshold_based or strategy.defected_at is None:
            return None
        groups = {self.world.root(e) for e in strategy.entities if e in self.world.entities}
        moments = [self.tally.crossed[g] for g in groups if g in self.tally.crossed]
        return min(moments, default=None)


#: What strategies append to a workload's id to name the jobs they make of it: a chunk
#: (``-c3``), a run moved to a subsidiary (``-sub``), training served as inference (``-serve``).
_JOB_SUFFIXES = r"(?:-c[0-9]+|-sub|-serve)*"


def _workload_of_job(workloads: tuple[WorkloadSpec, ...], job: str) -> WorkloadSpec | None:
    """The workload whose job ``job`` is: its id, or its id with the suffixes strategies add;
    the longest such id (workload ``b`` does not claim ``b-train``'s jobs)."""
    matches = [w for w in workloads if re.fullmatch(re.escape(w.id) + _JOB_SUFFIXES, job)]
    return max(matches, key=lambda w: len(w.id), default=None)


def _in_process_only(scenario: Scenario) -> str | None:
    """The strategy of ``scenario`` that runs in process only (a split view), if any."""
    return next((a.strategy for a in scenario.actors if STRATEGIES[a.strategy].split_view), None)


def http_supported(scenario: Scenario) -> bool:
    """Whether ``scenario`` can run over HTTP (see :func:`check_http`)."""
    return _in_process_only(scenario) is None


def check_http(scenario: Scenario) -> None:
    """Refuse a scenario that cannot run over HTTP, before anything of it runs.

    Raises:
        InputError: ``scenario.http_unsupported``, naming the scenario and the strategy.
    """
    strategy = _in_process_only(scenario)
    if strategy is not None:
        raise InputError(
            "scenario.http_unsupported",
            f"scenario {scenario.name}: {strategy} (a split view) runs in process only",
            remediation="Run it without --http.",
        )


#: Governance metadata outlives the scenario by this much (and is good for a year at least).
GOVERNANCE_MARGIN = timedelta(days=30)


def governance_horizon(days: float) -> timedelta:
    """How long the simulated governance metadata is valid from the start: a year, or the
    scenario's length and a margin if that is longer (the auditor verifies it at the end)."""
    return max(timedelta(days=365), timedelta(days=days) + GOVERNANCE_MARGIN)


@dataclass
class _Delivery:
    """One window's reports for one log: through the API, or appended behind it."""

    batch: list[bytes] = field(default_factory=list)
    appended: list[bytes] = field(default_factory=list)

    def route(self, envelopes: list[bytes], verdicts: list[Callable[[], str]]) -> None:
        """Route ``envelopes`` by the first verdict that is not ``ingest``."""
        verdict = next((v for v in (ask() for ask in verdicts) if v != "ingest"), "ingest")
        if verdict == "ingest":
            self.batch += envelopes
        elif verdict == "append":
            self.appended += envelopes

    def deliver(self, registry: Registry, client: httpx.Client | None = None) -> list[ItemResult]:
        """Post the batch (over HTTP when ``client`` is given) and append the rest behind the
        API; what became of each posted report."""
        results: list[ItemResult] = []
        for i in range(0, len(self.batch), BATCH):
            body = b'{"reports":[' + b",".join(self.batch[i : i + BATCH]) + b"]}"
            if client is None:
                results += registry.ingest_body(body)
                continue
            answer = client.post("/v1/reports", content=body)
            answer.raise_for_status()
            results += [
                ItemResult(
                    index=item["index"],
                    status=item["status"],
                    device=item.get("device"),
                    sequence=item.get("sequence"),
                    log_index=item.get("log_index"),
                    reason=item.get("reason"),
                )
                for item in answer.json()["results"]
            ]
        if self.appended:
            registry.store.append(self.appended)
        return results


class _SplitView(LocalSource):
    """What a registry showing a split view serves an auditor: its doctored log, and the
    witnesses' cosigned checkpoints of the true one (which it cannot forge)."""

    def __init__(self, shown: Registry, true: Registry) -> None:
        super().__init__(shown, auditor="sim-auditor")
        self._true = true

    def witnessed_checkpoint(self, cosignatures: int = 1) -> bytes | None:
        note = self._true.witnessed_checkpoint(cosignatures)
        return None if note is None else bytes(note)


def run_scenario(
    scenario: Scenario,
    *,
    seed: int | None = None,
    budget: int | None = None,
    workdir: Path | None = None,
    progress: Progress | None = None,
    http: bool = False,
) -> Outcome:
    """Run ``scenario`` (with ``seed`` and challenge ``budget`` if given) in ``workdir`` (a
    temporary directory if None)."""
    if workdir is not None:
        return Engine(
            scenario, workdir, seed=seed, budget=budget, progress=progress, http=http
        ).run()
    with tempfile.TemporaryDirectory(prefix="brakepedal-sim-") as directory:
        return Engine(
            scenario, Path(directory), seed=seed, budget=budget, progress=progress, http=http
        ).run()
