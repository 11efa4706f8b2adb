"""``brakepedal demo``: the whole protocol, on one machine, in about a minute.

A small world runs through the real code: a registry on a SQLite file served over HTTP on
loopback, with its transparency log and three witnesses; seven signatories and a permit
authority under a TUF governance agreement; 52 simulated H100s of three labs and a subsidiary
whose signed, hash-chained reports reach the registry over HTTP; the gate; and the independent
auditor with its report. Six simulated hours pass in seconds (the registry runs on the world's
clock, and every report's window is in the world's past when it is posted).

The story, in simulated time from ``S``:

* ``S``: the agreement's root, targets and roles are published, each with its quorum.
* ``S`` to ``S + 2h``: ``lab-a`` trains ``frontier`` on its 20 GPUs, ``lab-b`` trains a
  smaller run on 16, ``lab-c`` serves inference on 8, ``lab-a-sub`` (wholly owned by
  ``lab-a``) idles its 8.
* ``S + 2h``: a pause order, signed by 4 of the 7 parties, is published and witnessed; in force
  after 10 minutes' grace, above a threshold between what ``lab-a`` trained alone and what
  ``lab-a`` and its subsidiary train together.
* The gate refuses ``lab-a``'s next ``frontier`` job (its lineage is in the order's scope).
  ``lab-b`` stops training and serves inference. ``lab-a`` moves ``frontier`` to its
  subsidiary's 8 GPUs, declared as the subsidiary's own small run: each entity alone stays
  under the threshold.
* ``S + 6h``: the auditor verifies the log, every report, the governance view, and evaluates the
  ``pause`` policy preset over its own ledger, with the public ownership holdings: ``lab-a``
  and ``lab-a-sub`` form one group, and their undeclared training pools into one lineage,
  ``unattributed:lab-a``, whose compute is over the order's threshold and which trained during
  the pause without a permit (``policy.permit_missing``). The finding, its evidence and the
  plots go into the report.

Thresholds are scaled to the demo's six hours (an order's real threshold would be 10^25 FLOP
and more). The runs are left undeclared, as a lab splitting one would leave them; declared as
two unrelated runs, the split would need the snapshot commitments the agents attest to link
them (the declared-versus-attested check, not built yet).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import httpx

from brakepedal.accounting.catalogue import default_catalogue
from brakepedal.accounting.document import UsageDocument
from brakepedal.accounting.groups import Holding
from brakepedal.accounting.usage import Workload
from brakepedal.agent.gate import GateDecision, JobDeclaration, decide
from brakepedal.audit.auditor import AuditConfig, Auditor, AuditResult
from brakepedal.audit.report import render_report
from brakepedal.audit.source import RegistrySource
from brakepedal.audit.state import AuditState
from brakepedal.crypto.keys import CryptoSigner, generate_ed25519
from brakepedal.governance.documents import PauseOrder
from brakepedal.governance.repository import (
    Proposal,
)
from brakepedal.governance.view import GovernanceView, LogEvidence
from brakepedal.model.types import (
    DeviceId,
    EntityId,
    Flop,
    JobId,
    LineageId,
    OrderId,
)
from brakepedal.policy.load import load_preset
from brakepedal.registry.service import Registry, RegistryConfig
from brakepedal.sim.governance import Signatories, SimClock, serve_registry
from brakepedal.tlog.cosignature import Cosigner
from brakepedal.tlog.note import Note, NoteSigner
from brakepedal.wire.enrolment import build_enrolment
from brakepedal.wire.minute import Sample, summarise_minute
from brakepedal.wire.report import GENESIS_PREVIOUS, Attribution, build_report, sign_report

__all__ = ["DemoResult", "run_demo"]

ORIGIN = "demo.brakepedal.org/registry"
ACCELERATOR = "nvidia-h100-sxm5-80gb"
WINDOW = timedelta(minutes=5)
HOURS = 6
PAUSE_AT = timedelta(hours=2)
GRACE = timedelta(minutes=10)
#: The pause preset's jurisdiction: the agreement's parties.
JURISDICTIONS = frozenset({"agreement"})
#: lab -> (GPUs, owner of the devices)
FLEET = {"lab-a": 20, "lab-a-sub": 8, "lab-b": 16, "lab-c": 8}

#: Progress callback: (stage, done, total).
Progress = Callable[[str, int, int], None]


@dataclass
class _Gpu:
    name: str
    operator: str
    signer: CryptoSigner = field(default_factory=generate_ed25519)
    sequence: int = 0
    previous: str = GENESIS_PREVIOUS
    energy_mj: int = 0

    def report(
        self, start: datetime, *, job: str | None, tenant: str, workload: Workload, busy: float
    ) -> bytes:
        """The signed report of the window from ``start``.

        Samples at 1 Hz where the device is partly busy (``busy`` of each 20 s); a fully
        busy or idle device is sampled every 10 s only, to keep the demo quick: a second
        without a sample counts as busy, as the minute records count it.
        """
        minutes = []
        power = 120.0 + 560.0 * busy
        step = 10 if busy >= 1.0 else 1
        for m in range(WINDOW // timedelta(minutes=1)):
            minute = start + timedelta(minutes=m)
            samples = []
            for s in range(0, 60, step):
                self.energy_mj += int(power * 1000 * step)
                running = busy >= 1.0 or (s % 20) < round(20 * busy)
                samples.append(
                    Sample(
                        time=minute + timedelta(seconds=s),
                        power_w=power,
                        energy_mj=self.energy_mj,
                        utilisation=90 if running else 0,
                        memory_used_bytes=60 * 2**30 if busy else 2**30,
                        sm_clock_mhz=1980 if running else 345,
                    )
                )
            minutes.append(summarise_minute(DeviceId(self.name), minute, samples))
        report = build_report(
            device=DeviceId(self.name),
            accelerator=ACCELERATOR,
            sequence=self.sequence,
            previous=self.previous,
            window_start=start,
            window_end=start + WINDOW,
            minutes=minutes,
            attribution=Attribution(
                job=None if job is None else JobId(job),
                tenant=EntityId(tenant),
                workload=workload,
            ),
            governance=None,
        )
        self.sequence += 1
        self.previous = report.digest()
        return sign_report(report, self.signer)


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What the demo did and where its report is."""

    workdir: Path
    report: Path
    reports: int
    devices: int
    audit: AuditResult
    refused: GateDecision
    order_id: str
    threshold_flop: int
    seconds: float


@dataclass
class _World:
    workdir: Path
    progress: Progress
    clock: SimClock
    registry: Registry
    http: httpx.Client
    url: str
    witnesses: list[Cosigner]
    governance: Signatories
    admin: str
    gpus: dict[str, _Gpu] = field(default_factory=dict)
    posted: int = 0

    # -------------------------------------------------------------- governance

    def publish(self, proposal: Proposal, at: datetime) -> None:
        self.clock.moment = at
        answer = self.http.post("/v1/governance/proposals", content=proposal.to_bytes())
        answer.raise_for_status()
        self._sync()

    def _sync(self) -> None:
        names = self.http.get("/v1/governance/files").json()["files"]
        self.governance.files = {
            name: self.http.get(f"/v1/governance/files/{name}").content for name in names
        }

    def heartbeat(self, at: datetime) -> None:
        self.clock.moment = at
        self.http.post(
            "/v1/governance/timestamp", headers={"Authorization": f"Bearer {self.admin}"}
        ).raise_for_status()
        self._sync()

    def witness(self, at: datetime) -> None:
        """Two of the three witnesses cosign the registry's newest checkpoint."""
        self.clock.moment = at
        note = Note.from_bytes(self.http.get("/v1/log/checkpoint").content)
        for witness in self.witnesses[:2]:
            line = witness.cosign(note.text, int(at.timestamp()))
            own = Note(note.text, (*note.signatures, line)).to_bytes()
            self.http.post("/v1/log/cosignatures", content=own).raise_for_status()

    def bootstrap(self, at: datetime) -> None:
        for proposal in self.governance.bootstrap_proposals(at):
            self.publish(proposal, at)
        self.witness(at)

    def order(self, order: PauseOrder, signers: list[str], at: datetime) -> None:
        proposal = self.governance.document(
            str(order.order_id), order.target_path, order.to_bytes(), signers
        )
        self.publish(proposal, at)
        self.witness(at)

    def view(self, at: datetime) -> GovernanceView:
        self.heartbeat(at)
        self.witness(at)
        evidence = LogEvidence.from_bytes(self.http.get("/v1/governance/evidence").content)
        return GovernanceView.load(
            trusted_root=self.governance.files["metadata/1.root.json"],
            repository=self.governance.files,
            evidence=evidence,
            at=at,
        )

    # -------------------------------------------------------------- devices and reports

    def enrol(self, at: datetime) -> None:
        self.clock.moment = at
        for lab, count in FLEET.items():
            for i in range(count):
                gpu = _Gpu(f"{lab}-gpu-{i:02d}", lab)
                envelope = build_enrolment(
                    gpu.signer,
                    device=DeviceId(gpu.name),
                    accelerator=ACCELERATOR,
                    operator=EntityId(lab),
                    site=None,
                    chain=(),
                    at=at,
                )
                self.http.post("/v1/devices", content=envelope).raise_for_status()
                self.gpus[gpu.name] = gpu

    def post(self, envelopes: list[bytes], at: datetime) -> None:
        self.clock.moment = at
        body = b'{"reports":[' + b",".join(envelopes) + b"]}"
        answer = self.http.post("/v1/reports", content=body)
        answer.raise_for_status()
        statuses = {r["status"] for r in answer.json()["results"]}
        if statuses != {"accepted"}:
            raise RuntimeError(f"reports not accepted: {answer.json()['results'][:2]}")
        self.posted += len(envelopes)


#: lab -> (before the pause is in force, after): (job, workload, busy share) of its GPUs.
PLAN: dict[str, tuple[tuple[str | None, Workload, float], tuple[str | None, Workload, float]]] = {
    # Its gate refuses the next frontier job: lab-a's own GPUs idle after the pause.
    "lab-a": (("frontier-1", Workload.TRAINING, 1.0), (None, Workload.UNKNOWN, 0.0)),
    # ...and frontier continues on the subsidiary, declared as the subsidiary's small run.
    "lab-a-sub": ((None, Workload.UNKNOWN, 0.0), ("sub-finetune-1", Workload.TRAINING, 1.0)),
    # Stopped by its gate, lab-b serves its deployed model.
    "lab-b": (("mid-run-b", Workload.TRAINING, 1.0), ("serve-b", Workload.INFERENCE, 0.45)),
    "lab-c": (("serve-c", Workload.INFERENCE, 0.35), ("serve-c", Workload.INFERENCE, 0.35)),
}


def _plan(gpu: _Gpu, offset: timedelta) -> tuple[str | None, str, Workload, float]:
    """(job, tenant, workload, busy share) of ``gpu`` in the window ``offset`` after S."""
    job, workload, busy = PLAN[gpu.operator][offset >= PAUSE_AT + GRACE]
    return job, gpu.operator, workload, busy


def _threshold(peak: int, busy_ms: int) -> int:
    """The order's threshold: above every entity's own training, below lab-a's group's.

    Each training window of one GPU is bounded by ``peak`` x its busy seconds (``busy_ms``, as
    a fully busy report attests); the plan says which windows train.
    """
    per_window = peak * busy_ms // 1000
    trained: dict[str, int] = dict.fromkeys(FLEET, 0)
    probe = {lab: _Gpu("probe", lab) for lab in FLEET}
    for step in range(HOURS * timedelta(hours=1) // WINDOW):
        for lab, gpu in probe.items():
            _job, _tenant, workload, busy = _plan(gpu, step * WINDOW)
            if workload is Workload.TRAINING and busy:
                trained[lab] += FLEET[lab] * per_window
    alone = max(trained.values())
    group = trained["lab-a"] + trained["lab-a-sub"]
    return (alone + group) // 2


def run_demo(workdir: Path, progress: Progress) -> DemoResult:
    """Run the demo world in ``workdir``; ``progress`` narrates the stages (a stage with a
    total of 0 is an event, others advance to their total)."""
    began = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    start = (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    clock = SimClock(start)
    log_signer = NoteSigner(ORIGIN, generate_ed25519())
    witnesses = [Cosigner(f"witness-{i}.demo", generate_ed25519()) for i in range(1, 4)]
    governance = Signatories(log_signer, witnesses, start, ORIGIN)
    database = workdir / "registry.sqlite3"
    # A second run starts from nothing: a new log key with the old audit state would read
    # as a split view, and the old report would pass for the new one.
    for stale in [*workdir.glob("registry.sqlite3*"), workdir / "findings.dsse.json"]:
        stale.unlink(missing_ok=True)
    for folder in (workdir / "audit", workdir / "report"):
        shutil.rmtree(folder, ignore_errors=True)
    registry = Registry(
        RegistryConfig(
            url=f"sqlite:///{database}",
            origin=ORIGIN,
            log_signer=log_signer,
            witnesses=[w.verifier() for w in witnesses],
            allow_software_keys=True,
            governance_operator=governance.operator,
            now=clock,
        )
    )
    try:
        with serve_registry(registry) as url, httpx.Client(base_url=url, timeout=120) as http:
            admin = registry.add_credential("demo-admin", "admin")
            world = _World(
                workdir, progress, clock, registry, http, url, witnesses, governance, admin
            )
            return _story(world, began)
    finally:
        registry.close()


def _story(world: _World, began: float) -> DemoResult:
    catalogue = default_catalogue()
    spec = catalogue.get(ACCELERATOR)
    threshold = _threshold(max(spec.peak.values()), _busy_ms_of_a_training_window())
    start = world.governance.start
    say = world.progress
    say("governance: 7 parties, root and roles published with their quorums", 0, 0)
    world.bootstrap(start)
    world.enrol(start)
    say(f"enrolled {len(world.gpus)} simulated H100s of lab-a, lab-a-sub, lab-b, lab-c", 0, 0)
    order = PauseOrder(
        order_id=OrderId("pause-2026-1"),
        threshold_flop=Flop(threshold),
        jurisdictions=JURISDICTIONS,
        effective_from=start + PAUSE_AT,
        sunset=start + timedelta(days=30),
        grace_seconds=int(GRACE.total_seconds()),
        reason="frontier training pause (demo thresholds)",
    )
    windows = HOURS * timedelta(hours=1) // WINDOW
    refused: GateDecision | None = None
    for step in range(windows):
        offset = step * WINDOW
        if offset == PAUSE_AT:
            world.order(order, [f"party-{i}" for i in (1, 2, 4, 6)], start + offset)
            say(f"pause order {order.order_id}: signed 4 of 7, published and witnessed", 0, 0)
            view = world.view(start + offset + GRACE)
            refused = decide(
                JobDeclaration(
                    job=JobId("frontier-2"),
                    owner_group=EntityId("lab-a"),
                    workload=Workload.TRAINING,
                    jurisdictions=JURISDICTIONS,
                    lineage=LineageId("frontier"),
                    expected_flop=Flop(threshold // 2),
                    lineage_flop=Flop(threshold * 4 // 5),
                ),
                at=start + offset + GRACE,
                orders=view.orders_in_force(start + offset + GRACE),
                permits=view.permits_valid(start + offset + GRACE),
            )
        envelopes = []
        for gpu in world.gpus.values():
            job, tenant, workload, busy = _plan(gpu, offset)
            envelopes.append(
                gpu.report(start + offset, job=job, tenant=tenant, workload=workload, busy=busy)
            )
        world.post(envelopes, start + offset + WINDOW + timedelta(seconds=30))
        say("simulated hours: reports signed and ingested over HTTP", step + 1, windows)
    end = start + HOURS * timedelta(hours=1) + timedelta(minutes=1)
    world.view(end)  # a fresh timestamp, and the witnesses cosign the final log
    assert refused is not None
    audit = _audit(world, end)
    state = AuditState(world.workdir / "audit")
    try:
        report = render_report(state, world.workdir / "report")
    finally:
        state.close()
    return DemoResult(
        workdir=world.workdir,
        report=report,
        reports=world.posted,
        devices=len(world.gpus),
        audit=audit,
        refused=refused,
        order_id=str(order.order_id),
        threshold_flop=threshold,
        seconds=time.monotonic() - began,
    )


def _busy_ms_of_a_training_window() -> int:
    """What a fully busy window attests as busy time (a report built and read back)."""
    from brakepedal.crypto.dsse import parse_envelope  # noqa: PLC0415
    from brakepedal.wire.report_format import parse_report  # noqa: PLC0415

    envelope = _Gpu("probe", "lab-a").report(
        datetime(2026, 1, 1, tzinfo=UTC),
        job="probe",
        tenant="lab-a",
        workload=Workload.TRAINING,
        busy=1.0,
    )
    return parse_report(parse_envelope(envelope).payload).busy_ms


def _audit(world: _World, at: datetime) -> AuditResult:
    world.progress("auditor: verifying the log, every report, governance and the policy", 0, 0)
    auditor_key = generate_ed25519()
    token = world.registry.add_credential("demo-auditor", "auditor")
    declarations = UsageDocument(
        entities=tuple(EntityId(lab) for lab in FLEET),
        holdings=(Holding(EntityId("lab-a"), EntityId("lab-a-sub"), Fraction(1)),),
        runs=(),
        windows=(),
    )
    config = AuditConfig(
        origin=ORIGIN,
        log_key=world.registry.config.log_signer.verifier(),
        witnesses=tuple(w.verifier() for w in world.witnesses),
        witness_threshold=2,
        name="demo-auditor",
        signer=auditor_key,
        trusted_root=world.governance.files["metadata/1.root.json"],
        policy=load_preset("pause"),
        declarations=declarations,
    )
    state = AuditState(world.workdir / "audit")
    source = RegistrySource(world.url, token)
    try:
        result = Auditor(config, state).run(source, at=at, progress=world.progress)
    finally:
        source.close()
        state.close()
    if result.signed is not None:
        (world.workdir / "findings.dsse.json").write_bytes(result.signed)
    return result
