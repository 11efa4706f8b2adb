"""The gate with real child processes: refused under a pause, allowed with a permit, stopped
when an order comes into force mid-run; plus the pure decision table."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from brakepedal.accounting.usage import Workload
from brakepedal.agent.gate import JobDeclaration, decide, parse_declaration
from brakepedal.agent.handin import HandIns
from brakepedal.errors import InputError
from brakepedal.governance.documents import PauseOrder, TrainingPermit
from brakepedal.model.types import DeviceId, EntityId, Flop, JobId, LineageId, OrderId, PermitId
from brakepedal.policy.terms import PauseOrderTerms, PermitTerms
from brakepedal.wire.report import GateEvent, GateEventKind
from tests.unit.governance.world import World

EXIT_REFUSED = 5
NOW = datetime.now(UTC).replace(microsecond=0)
HOUR = timedelta(hours=1)
QUORUM = ("party-1", "party-2", "party-3", "party-4")


def pause(order_id: str, start: datetime, *, grace: int = 0) -> PauseOrder:
    return PauseOrder(
        order_id=OrderId(order_id),
        threshold_flop=Flop(10**24),
        jurisdictions=frozenset({"treaty-parties"}),
        effective_from=start,
        sunset=start + 24 * HOUR,
        grace_seconds=grace,
        reason="test pause",
    )


def permit() -> TrainingPermit:
    return TrainingPermit(
        permit_id=PermitId("eval-permit"),
        serial=1,
        owner_group=EntityId("frontier-lab"),
        flop_budget=Flop(10**25),
        valid_from=NOW - HOUR,
        valid_until=NOW + 24 * HOUR,
        lineage=LineageId("atlas"),
        under_order=OrderId("pause-1"),
    )


class Site:
    """A governance repository on disk, verified by a real gate process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.world = World()
        self.world.bootstrap()

    def publish(self, document: PauseOrder | TrainingPermit, name: str) -> None:
        proposal = self.world.sign(self.world.propose(name, document), *QUORUM)
        self.world.publish(proposal, NOW - HOUR)

    def write(self) -> None:
        """Write the repository for the gate; each file appears whole (written aside, then
        renamed), since a running gate may read while the test publishes."""
        self.world.heartbeat(NOW)
        files = {f"repo/{name}": data for name, data in self.world.files.items()}
        files["evidence.json"] = self.world.evidence().to_bytes()
        files["root.json"] = self.world.files["metadata/1.root.json"]
        for name, data in files.items():
            path = self.folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            aside = path.with_name(path.name + ".new")
            aside.write_bytes(data)
            aside.replace(path)

    def declaration(self, workload: str = "training", expected: str = "1e24") -> Path:
        path = self.folder / f"job-{workload}.json"
        path.write_text(
            json.dumps(
                {
                    "format": "brakepedal.job-declaration",
                    "version": 1,
                    "job": "job-7",
                    "lineage": "atlas",
                    "owner_group": "frontier-lab",
                    "workload": workload,
                    "expected_flop": expected,
                    "lineage_flop": "5e23",
                    "jurisdictions": ["treaty-parties"],
                }
            )
        )
        return path

    @property
    def handins(self) -> Path:
        return self.folder / "handins.db"

    def start(
        self,
        declaration: Path,
        child: str,
        *,
        handins: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[str]:
        """Start the gate around ``child``; hand-ins go to ``handins`` (by default the site's
        store, named through ``BRAKEPEDAL_HANDINS``; explicitly with ``--handins``)."""
        executable = shutil.which("brakepedal", path=str(Path(sys.executable).parent))
        assert executable is not None
        environment = {**os.environ, "COLUMNS": "200", "BRAKEPEDAL_HANDINS": str(self.handins)}
        environment.update(env or {})
        option = [] if handins is None else ["--handins", str(handins)]
        return subprocess.Popen(
            [
                executable,
                "gate",
                "--declaration",
                str(declaration),
                "--repo",
                str(self.folder / "repo"),
                "--trusted-root",
                str(self.folder / "root.json"),
                "--evidence",
                str(self.folder / "evidence.json"),
                "--events",
                str(self.folder / "events.jsonl"),
                "--poll-seconds",
                "0.2",
                "--kill-after",
                "2",
                *option,
                "--",
                sys.executable,
                "-c",
                child,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )

    def gate(
        self,
        declaration: Path,
        child: str,
        *,
        timeout: float = 60,
        mid_run: Callable[[], PauseOrder] | None = None,
        marker: Path | None = None,
        **options: Any,
    ) -> tuple[subprocess.CompletedProcess[str], float]:
        """Run the gate to its end; with ``mid_run``, publish that order once the job runs
        (``marker`` exists), however long the gate took to start."""
        process = self.start(declaration, child, **options)
        started = time.monotonic()
        if mid_run is not None:
            assert marker is not None
            self.wait_until_running(process, marker, timeout)
            started = time.monotonic()
            self.publish(mid_run(), "pause-1")
            self.write()
        stdout, stderr = process.communicate(timeout=timeout)
        result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        return result, time.monotonic() - started

    @staticmethod
    def wait_until_running(process: subprocess.Popen[str], marker: Path, timeout: float) -> None:
        """Return once the gated job runs (it made ``marker``); fail if the gate ends first."""
        began = time.monotonic()
        while not marker.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() - began < timeout, "the job never started"
            time.sleep(0.05)

    def events(self) -> list[str]:
        """The steps in ``--events``, less refreshes that failed while the test wrote files."""
        lines = (self.folder / "events.jsonl").read_text().splitlines()
        steps = [json.loads(line)["event"] for line in lines]
        return [step for step in steps if step != "governance_unavailable"]

    def handed_in(self, store: Path | None = None) -> list[GateEvent]:
        """The gate events in the hand-in store, as any device's report of the hour gets them."""
        with HandIns(store or self.handins) as handins:
            start = datetime.now(UTC) - HOUR
            return list(handins.between(DeviceId("gpu-0"), None, start, start + 2 * HOUR)[1])


def kinds(events: list[GateEvent]) -> list[str]:
    """The events' kinds in the order they happened (the report sorts ties by kind)."""
    return [e.kind.value for e in sorted(events, key=lambda e: (e.at, _ORDER.index(e.kind.value)))]


_ORDER = ["refused", "started", "signalled_term", "signalled_kill", "exited"]


def child(marker: Path, seconds: float, *, ignore_term: bool = False) -> str:
    """A job that writes its attribution environment (job, permit) to ``marker`` and sleeps."""
    trap = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); " if ignore_term else ""
    seen = "[os.environ.get('BRAKEPEDAL_JOB'), os.environ.get('BRAKEPEDAL_PERMIT')]"
    write = f"pathlib.Path({str(marker)!r}).write_text(json.dumps({seen}))"
    body = f"import json, os, pathlib, time; {write}"
    return f"{trap}{body}; time.sleep({seconds})"


def attribution_seen(marker: Path) -> list[str | None]:
    seen: list[str | None] = json.loads(marker.read_text())
    return seen


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def test_refused_under_a_pause_naming_the_order(site: Site) -> None:
    site.publish(pause("pause-1", NOW - HOUR), "pause-1")
    site.write()
    marker = site.folder / "ran"
    result, _ = site.gate(site.declaration(), child(marker, 0))
    assert result.returncode == EXIT_REFUSED
    assert "pause-1" in result.stderr
    assert "gate.paused" in result.stderr
    assert not marker.exists()
    assert site.events() == ["refused"]
    [refused] = site.handed_in()
    assert (refused.kind, refused.job, refused.order) == (
        GateEventKind.REFUSED,
        JobId("job-7"),
        OrderId("pause-1"),
    )
    assert refused.detail == "reason=gate.paused"


def test_allowed_with_a_permit_under_the_order_quorum(site: Site) -> None:
    site.publish(pause("pause-1", NOW - HOUR), "pause-1")
    site.publish(permit(), "permit-1")
    site.write()
    marker = site.folder / "ran"
    explicit = site.folder / "explicit-handins.db"
    result, _ = site.gate(site.declaration(), child(marker, 0), handins=explicit)
    assert result.returncode == 0, result.stderr
    assert attribution_seen(marker) == ["job-7", "eval-permit"]
    assert site.events() == ["started", "exited"]
    assert not site.handins.exists()  # --handins wins over BRAKEPEDAL_HANDINS
    started, exited = sorted(site.handed_in(explicit), key=lambda e: e.at)
    assert (started.kind, started.order) == (GateEventKind.STARTED, OrderId("pause-1"))
    assert "permit=eval-permit" in started.detail
    assert "reason=gate.permitted" in started.detail
    assert (exited.kind, exited.order) == (GateEventKind.EXITED, None)
    assert exited.detail == "returncode=0 stopped_by_gate=false"


def test_inference_runs_under_a_pause(site: Site) -> None:
    site.publish(pause("pause-1", NOW - HOUR), "pause-1")
    site.write()
    marker = site.folder / "ran"
    inherited = {"BRAKEPEDAL_PERMIT": "not-the-gates-to-vouch-for"}
    result, _ = site.gate(site.declaration("inference"), child(marker, 0), env=inherited)
    assert result.returncode == 0, result.stderr
    assert attribution_seen(marker) == ["job-7", None]
    assert kinds(site.handed_in()) == ["started", "exited"]


def test_stopped_when_an_order_comes_into_force_mid_run(site: Site) -> None:
    site.write()
    marker = site.folder / "ran"
    starts: list[datetime] = []

    def order() -> PauseOrder:  # published while the job runs, in force a second later
        starts.append(datetime.now(UTC) + timedelta(seconds=1))
        return pause("pause-1", starts[0], grace=1)

    result, elapsed = site.gate(site.declaration(), child(marker, 60), mid_run=order, marker=marker)
    assert result.returncode == EXIT_REFUSED, result.stderr
    assert marker.exists()
    assert elapsed < 30
    assert site.events() == ["started", "order_in_force", "sigterm", "exited"]
    handed_in = site.handed_in()
    assert kinds(handed_in) == ["started", "signalled_term", "exited"]
    started, term, exited = sorted(handed_in, key=lambda e: e.at)
    assert started.order is None
    assert term.order == exited.order == OrderId("pause-1")
    assert term.at >= starts[0] + timedelta(seconds=1)  # not before the grace period ran out
    assert term.detail.startswith("pid=")
    assert "stopped_by_gate=true" in exited.detail


def test_a_job_ignoring_sigterm_is_killed(site: Site) -> None:
    site.write()
    marker = site.folder / "ran"
    result, elapsed = site.gate(
        site.declaration(),
        child(marker, 60, ignore_term=True),
        mid_run=lambda: pause("pause-1", datetime.now(UTC)),
        marker=marker,
    )
    assert result.returncode == EXIT_REFUSED
    assert site.events() == ["started", "order_in_force", "sigterm", "sigkill", "exited"]
    assert elapsed < 30
    handed_in = site.handed_in()
    assert kinds(handed_in) == ["started", "signalled_term", "signalled_kill", "exited"]
    _, term, kill, exited = sorted(handed_in, key=lambda e: e.at)
    # --kill-after 2 (each record is taken just after its signal, hence the small tolerance)
    assert kill.at - term.at >= timedelta(seconds=1.9)
    assert kill.order == exited.order == OrderId("pause-1")
    assert exited.detail == "returncode=-9 stopped_by_gate=true"


def test_training_fails_closed_without_verified_governance(site: Site) -> None:
    site.write()
    (site.folder / "evidence.json").write_text("{}")
    marker = site.folder / "ran"
    result, _ = site.gate(site.declaration(), child(marker, 0))
    assert result.returncode == EXIT_REFUSED
    assert "gate.governance_unavailable" in result.stderr
    assert not marker.exists()
    [refused] = site.handed_in()
    assert (refused.kind, refused.order) == (GateEventKind.REFUSED, None)
    assert refused.detail == "reason=gate.governance_unavailable"
    inference, _ = site.gate(site.declaration("inference"), child(marker, 0))
    assert inference.returncode == 0


def test_a_broken_hand_in_store_does_not_stop_a_refusal(site: Site) -> None:
    site.publish(pause("pause-1", NOW - HOUR), "pause-1")
    site.write()
    marker = site.folder / "ran"
    broken = site.folder / "no-such-folder" / "handins.db"
    result, _ = site.gate(site.declaration(), child(marker, 0), handins=broken)
    assert result.returncode == EXIT_REFUSED
    assert not marker.exists()
    assert "could not record refused" in result.stderr
    assert site.events() == ["refused"]


def test_a_broken_hand_in_store_does_not_stop_the_brake_mid_run(site: Site) -> None:
    site.write()
    marker = site.folder / "ran"
    broken = site.folder / "no-such-folder" / "handins.db"
    result, elapsed = site.gate(
        site.declaration(),
        child(marker, 60, ignore_term=True),
        mid_run=lambda: pause("pause-1", datetime.now(UTC)),
        marker=marker,
        handins=broken,
    )
    assert result.returncode == EXIT_REFUSED
    assert elapsed < 30
    for kind in ("started", "signalled_term", "signalled_kill", "exited"):
        assert f"could not record {kind}" in result.stderr
    assert site.events() == ["started", "order_in_force", "sigterm", "sigkill", "exited"]


def test_a_permit_under_another_order_does_not_cover_the_one_in_force(site: Site) -> None:
    """The permit names pause-1 (ended); pause-2 is in force: the job is refused under it."""
    site.publish(pause("pause-1", NOW - 30 * HOUR), "pause-1")
    site.publish(permit(), "permit-1")  # under pause-1, valid now
    site.publish(pause("pause-2", NOW - HOUR), "pause-2")
    site.write()
    marker = site.folder / "ran"
    result, _ = site.gate(site.declaration(), child(marker, 0))
    assert result.returncode == EXIT_REFUSED, result.stderr
    assert "pause-2" in result.stderr
    assert "gate.paused" in result.stderr
    assert not marker.exists()
    [refused] = site.handed_in()
    assert (refused.kind, refused.order) == (GateEventKind.REFUSED, OrderId("pause-2"))


def _raw_events(site: Site) -> list[dict[str, Any]]:
    lines = (site.folder / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_junk_at_permits_does_not_hide_a_later_order_from_a_running_job(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The permit authority alone (not the order quorum) gets junk published at permits/ (by
    a publisher that does not check it); the view drops it and the order still stops the job."""
    from brakepedal.governance import repository  # noqa: PLC0415

    site.write()
    marker = site.folder / "ran"

    def junk_then_order() -> PauseOrder:
        world = site.world
        junk = repository.propose_document(
            world.files, "junk", "permits/junk.json", b"{}", expires=NOW + 300 * HOUR
        )
        with monkeypatch.context() as unchecked:
            unchecked.setattr(repository, "_check_documents", lambda *_: None)
            world.publish(world.sign(junk, "authority-1", "authority-2"), NOW - HOUR)
        return pause("pause-1", datetime.now(UTC))

    result, elapsed = site.gate(
        site.declaration(), child(marker, 60), mid_run=junk_then_order, marker=marker
    )
    assert result.returncode == EXIT_REFUSED, result.stderr
    assert elapsed < 30
    assert site.events() == ["started", "document_dropped", "order_in_force", "sigterm", "exited"]
    [dropped] = [e for e in _raw_events(site) if e["event"] == "document_dropped"]
    assert (dropped["path"], dropped["role"]) == ("permits/junk.json", "permits")
    assert dropped["reason"] == "document.field_missing"


def test_a_failed_refresh_keeps_enforcing_the_last_verified_orders(site: Site) -> None:
    """Verified before the job starts: an order that comes into force a few seconds later.
    Then every refresh fails (the evidence is replaced by junk); the order still stops the
    job when it comes into force, and its grace period is kept."""
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=8)
    site.publish(pause("pause-1", start, grace=1), "pause-1")
    site.write()
    marker = site.folder / "ran"
    process = site.start(site.declaration(), child(marker, 60))
    site.wait_until_running(process, marker, 30)
    assert datetime.now(UTC) < start, "the gate took too long to start the job"
    junk = site.folder / "evidence.json.new"
    junk.write_text("{}")
    junk.replace(site.folder / "evidence.json")  # whole, as the gate may read meanwhile
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == EXIT_REFUSED, stderr
    events = _raw_events(site)
    steps = [e["event"] for e in events]
    assert steps == ["started", "governance_unavailable", "order_in_force", "sigterm", "exited"]
    unavailable = events[1]
    assert unavailable["reason"] == "evidence.format_invalid"
    assert unavailable["last_verified_view"] is True
    term = next(e for e in site.handed_in() if e.kind is GateEventKind.SIGNALLED_TERM)
    assert term.order == OrderId("pause-1")
    assert term.at >= start + timedelta(seconds=1)


def test_a_replayed_older_state_does_not_hide_a_verified_order(site: Site) -> None:
    """A mirror swaps in the timestamp from before the order (still unexpired, in the log):
    the gate refuses it as a rollback against the view it verified, and the order stops the
    job."""
    site.write()
    older = site.world.files["metadata/timestamp.json"]
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=8)
    site.publish(pause("pause-1", start), "pause-1")
    site.write()
    marker = site.folder / "ran"
    process = site.start(site.declaration(), child(marker, 60))
    site.wait_until_running(process, marker, 30)
    assert datetime.now(UTC) < start, "the gate took too long to start the job"
    replayed = site.folder / "repo" / "metadata" / "timestamp.json"
    aside = replayed.with_name("timestamp.json.new")
    aside.write_bytes(older)
    aside.replace(replayed)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == EXIT_REFUSED, stderr
    events = _raw_events(site)
    assert [e["event"] for e in events] == [
        "started",
        "governance_unavailable",
        "order_in_force",
        "sigterm",
        "exited",
    ]
    assert events[1]["reason"] == "governance.rollback"


# ---------------------------------------------------------------------------- pure decisions

JOB = JobDeclaration(
    job=JobId("j"),
    owner_group=EntityId("lab"),
    workload=Workload.TRAINING,
    jurisdictions=frozenset({"eu"}),
    lineage=LineageId("atlas"),
    expected_flop=Flop(10**23),
    lineage_flop=Flop(0),
)
ORDER = PauseOrderTerms(OrderId("p"), Flop(10**23), frozenset({"eu"}), NOW - HOUR, NOW + HOUR)


ORDER_2 = replace(ORDER, order_id=OrderId("q"))


def terms(**changes: object) -> PermitTerms:
    fields: dict[str, object] = {
        "permit_id": PermitId("x"),
        "owner_group": EntityId("lab"),
        "flop_budget": Flop(10**24),
        "valid_from": NOW - HOUR,
        "valid_until": NOW + HOUR,
        "lineage": LineageId("atlas"),
        "under_order_quorum": True,
        "under_order": OrderId("p"),
    }
    fields.update(changes)
    return PermitTerms(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("job", "orders", "permits", "reason"),
    [
        (JOB, [ORDER], [], "gate.no_order"),  # exactly at the threshold: not above it
        (replace(JOB, lineage_flop=Flop(1)), [ORDER], [], "gate.paused"),
        (replace(JOB, expected_flop=None), [ORDER], [], "gate.paused"),
        (
            replace(JOB, jurisdictions=frozenset({"us"})),
            [ORDER],
            [],
            "gate.no_order",
        ),
        (
            replace(JOB, lineage_flop=Flop(1)),
            [ORDER],
            [terms()],
            "gate.permitted",
        ),
        (
            replace(JOB, lineage_flop=Flop(1)),
            [ORDER],
            [terms(under_order_quorum=False, under_order=None)],
            "gate.paused",
        ),
        # A permit under another order (a lifted or ended one) does not cover this one.
        (
            replace(JOB, lineage_flop=Flop(1)),
            [ORDER],
            [terms(under_order=OrderId("q"))],
            "gate.paused",
        ),
        # In scope of two orders: a permit under each is needed.
        (
            replace(JOB, lineage_flop=Flop(1)),
            [ORDER, ORDER_2],
            [terms()],
            "gate.paused",
        ),
        (
            replace(JOB, lineage_flop=Flop(1)),
            [ORDER, ORDER_2],
            [terms(), terms(permit_id=PermitId("y"), under_order=OrderId("q"))],
            "gate.permitted",
        ),
        (
            replace(JOB, lineage_flop=Flop(1)),
            [ORDER],
            [terms(owner_group=EntityId("other"))],
            "gate.paused",
        ),
        (
            replace(JOB, lineage_flop=Flop(1)),
            [ORDER],
            [terms(flop_budget=Flop(10))],
            "gate.paused",
        ),
        (
            replace(JOB, lineage_flop=Flop(1)),
            [ORDER],
            [terms(lineage=LineageId("other"))],
            "gate.paused",
        ),
        (JOB, None, [], "gate.governance_unavailable"),
        (
            replace(JOB, workload=Workload.INFERENCE),
            None,
            [],
            "gate.inference",
        ),
    ],
)
def test_decision_table(
    job: JobDeclaration,
    orders: list[PauseOrderTerms] | None,
    permits: list[PermitTerms],
    reason: str,
) -> None:
    assert decide(job, at=NOW, orders=orders, permits=permits).reason == reason


def test_a_refusal_names_the_uncovered_order_enforced_first() -> None:
    job = replace(JOB, lineage_flop=Flop(1))
    later = replace(ORDER, grace_seconds=600)  # "p", enforced ten minutes after "q"
    decision = decide(job, at=NOW, orders=[later, ORDER_2], permits=[])
    assert (decision.reason, decision.order) == ("gate.paused", OrderId("q"))
    covered = decide(
        job, at=NOW, orders=[later, ORDER_2], permits=[terms(under_order=OrderId("q"))]
    )
    assert (covered.reason, covered.order) == ("gate.paused", OrderId("p"))
    assert covered.enforced_from == later.enforced_from


def declaration(**fields: object) -> bytes:
    base: dict[str, object] = {
        "format": "brakepedal.job-declaration",
        "version": 1,
        "job": "job-1",
        "owner_group": "lab",
        "jurisdictions": ["eu"],
    }
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not DROP}).encode()


DROP = object()


@pytest.mark.parametrize(
    ("document", "reason", "named"),
    [
        (b"not json", "json.invalid", "declaration"),
        (b"[]", "json.not_object", "declaration"),
        (b"[" * 32_000 + b"]" * 32_000, "json.too_deep", "declaration"),
        (declaration(format="other"), "declaration.format_invalid", "declaration.format"),
        (declaration(jobb="x"), "declaration.unknown_field", "declaration.jobb"),
        (declaration(version=2), "declaration.version_unsupported", "declaration.version"),
        (declaration(version=True), "declaration.version_unsupported", "declaration.version"),
        (declaration(job=DROP), "declaration.field_missing", "declaration.job"),
        (declaration(job="J"), "job_id.invalid_character", "declaration.job"),
        (declaration(workload="mining"), "declaration.field_invalid", "declaration.workload"),
        (declaration(workload=3), "declaration.field_invalid", "declaration.workload"),
        (declaration(jurisdictions="eu"), "declaration.field_invalid", "declaration.jurisdictions"),
        (declaration(jurisdictions=[]), "declaration.field_invalid", "declaration.jurisdictions"),
        (declaration(jurisdictions=[""]), "identifier.empty", "declaration.jurisdictions"),
        (declaration(expected_flop=5), "flop.format_invalid", "declaration.expected_flop"),
        (declaration(lineage_flop="-1"), "flop.format_invalid", "declaration.lineage_flop"),
        (b"x" * 70_000, "declaration.too_large", "declaration"),
    ],
)
def test_bad_declarations(document: bytes, reason: str, named: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_declaration(document)
    assert caught.value.reason == reason
    assert named in caught.value.message


def test_a_minimal_declaration_reads_its_defaults() -> None:
    job = parse_declaration(declaration())
    assert job.workload is Workload.UNKNOWN
    assert job.lineage_flop == Flop(0)
    assert job.expected_flop is None
