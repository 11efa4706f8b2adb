"""The gate with real child processes: refused under a pause, allowed with a permit, stopped
when an order comes into force mid-run; plus the pure decision table."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from brakepedal.accounting.usage import Workload
from brakepedal.agent.gate import JobDeclaration, decide, parse_declaration
from brakepedal.errors import InputError
from brakepedal.governance.documents import PauseOrder, TrainingPermit
from brakepedal.model.types import EntityId, Flop, JobId, LineageId, OrderId, PermitId
from brakepedal.policy.terms import PauseOrderTerms, PermitTerms
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
        self.world.heartbeat(NOW)
        repo = self.folder / "repo"
        for name, data in self.world.files.items():
            path = repo / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        (self.folder / "evidence.json").write_bytes(self.world.evidence().to_bytes())
        (self.folder / "root.json").write_bytes(self.world.files["metadata/1.root.json"])

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

    def gate(
        self, declaration: Path, child: str, *, timeout: float = 60
    ) -> tuple[subprocess.CompletedProcess[str], float]:
        executable = shutil.which("brakepedal", path=str(Path(sys.executable).parent))
        assert executable is not None
        started = time.monotonic()
        result = subprocess.run(
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
                "--",
                sys.executable,
                "-c",
                child,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "COLUMNS": "200"},
        )
        return result, time.monotonic() - started

    def events(self) -> list[str]:
        lines = (self.folder / "events.jsonl").read_text().splitlines()
        return [json.loads(line)["event"] for line in lines]


def child(marker: Path, seconds: float, *, ignore_term: bool = False) -> str:
    trap = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); " if ignore_term else ""
    body = f"import pathlib, time; pathlib.Path({str(marker)!r}).write_text('ran')"
    return f"{trap}{body}; time.sleep({seconds})"


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


def test_allowed_with_a_permit_under_the_order_quorum(site: Site) -> None:
    site.publish(pause("pause-1", NOW - HOUR), "pause-1")
    site.publish(permit(), "permit-1")
    site.write()
    marker = site.folder / "ran"
    result, _ = site.gate(site.declaration(), child(marker, 0))
    assert result.returncode == 0, result.stderr
    assert marker.exists()
    assert site.events() == ["started", "exited"]


def test_inference_runs_under_a_pause(site: Site) -> None:
    site.publish(pause("pause-1", NOW - HOUR), "pause-1")
    site.write()
    marker = site.folder / "ran"
    result, _ = site.gate(site.declaration("inference"), child(marker, 0))
    assert result.returncode == 0, result.stderr
    assert marker.exists()


def test_stopped_when_an_order_comes_into_force_mid_run(site: Site) -> None:
    start = datetime.now(UTC) + timedelta(seconds=4)
    site.publish(pause("pause-1", start, grace=1), "pause-1")
    site.write()
    marker = site.folder / "ran"
    result, elapsed = site.gate(site.declaration(), child(marker, 60))
    assert result.returncode == EXIT_REFUSED, result.stderr
    assert marker.exists()
    assert elapsed < 30
    assert site.events() == ["started", "order_in_force", "sigterm", "exited"]


def test_a_job_ignoring_sigterm_is_killed(site: Site) -> None:
    start = datetime.now(UTC) + timedelta(seconds=3)
    site.publish(pause("pause-1", start), "pause-1")
    site.write()
    result, elapsed = site.gate(
        site.declaration(), child(site.folder / "ran", 60, ignore_term=True)
    )
    assert result.returncode == EXIT_REFUSED
    assert site.events() == ["started", "order_in_force", "sigterm", "sigkill", "exited"]
    assert elapsed < 30


def test_training_fails_closed_without_verified_governance(site: Site) -> None:
    site.write()
    (site.folder / "evidence.json").write_text("{}")
    marker = site.folder / "ran"
    result, _ = site.gate(site.declaration(), child(marker, 0))
    assert result.returncode == EXIT_REFUSED
    assert "gate.governance_unavailable" in result.stderr
    assert not marker.exists()
    inference, _ = site.gate(site.declaration("inference"), child(marker, 0))
    assert inference.returncode == 0


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


def terms(**changes: object) -> PermitTerms:
    fields: dict[str, object] = {
        "permit_id": PermitId("x"),
        "owner_group": EntityId("lab"),
        "flop_budget": Flop(10**24),
        "valid_from": NOW - HOUR,
        "valid_until": NOW + HOUR,
        "lineage": LineageId("atlas"),
        "under_order_quorum": True,
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
            [terms(under_order_quorum=False)],
            "gate.paused",
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
