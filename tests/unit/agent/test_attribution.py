"""Attribution of a device's window to a job, from the real environment of real processes."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from brakepedal.accounting.usage import Workload
from brakepedal.agent import attribution as attribution_module
from brakepedal.agent.attribution import (
    CONFLICT,
    UNREADABLE,
    VALUE_INVALID,
    EnvironmentAttributor,
    StaticAttributor,
)
from brakepedal.agent.identity import DeviceIdentity
from brakepedal.crypto.keys import generate_ed25519
from brakepedal.model.types import DeviceId, EntityId, JobId, PermitId, SiteId
from brakepedal.wire.report import Attribution

SITE = SiteId("site-a")
SLEEP = shutil.which("sleep") or "/bin/sleep"
#: Spawns ``sleep 30`` with exactly the given environment; returns its pid.
Spawn = Callable[[dict[str, str]], int]


def _identity() -> DeviceIdentity:
    signer = generate_ed25519()
    return DeviceIdentity(
        0, DeviceId("gpu-0"), "nvidia-h100-sxm5-80gb", "GPU-0", signer, signer.public_key
    )


DEVICE = _identity()


def _settled(pid: int, environment: dict[str, str]) -> None:
    """Wait until the kernel shows the child's environment (empty for a moment after exec)."""
    deadline = time.monotonic() + 30
    while environment and time.monotonic() < deadline:
        if Path(f"/proc/{pid}/environ").read_bytes():
            return
        time.sleep(0.001)


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    children: list[subprocess.Popen[bytes]] = []

    def start(environment: dict[str, str]) -> int:
        child = subprocess.Popen([SLEEP, "30"], env=environment)
        children.append(child)
        _settled(child.pid, environment)
        return child.pid

    yield start
    for child in children:
        child.kill()
        child.wait()


def test_static_attribution_is_returned_as_given() -> None:
    given = Attribution(JobId("job-1"), EntityId("lab"), PermitId("p-1"), SITE, Workload.TRAINING)
    assert StaticAttributor(given).attribute(DEVICE, (1, 2)) == given


def test_slurm_variables_name_job_and_tenant(spawn: Spawn) -> None:
    pid = spawn({"SLURM_JOB_ID": "81234", "SLURM_JOB_ACCOUNT": "lab-a", "HOME": "/root"})
    attributor = EnvironmentAttributor(site=SITE)
    assert attributor.attribute(DEVICE, (pid,)) == Attribution(
        job=JobId("81234"), tenant=EntityId("lab-a"), site=SITE
    )
    assert not attributor.stats


def test_brakepedal_variables_win_over_slurm(spawn: Spawn) -> None:
    pid = spawn(
        {
            "SLURM_JOB_ID": "81234",
            "SLURM_JOB_ACCOUNT": "lab-a",
            "BRAKEPEDAL_JOB": "pretrain-7",
            "BRAKEPEDAL_TENANT": "lab-b",
            "BRAKEPEDAL_PERMIT": "permit-2026-01",
            "BRAKEPEDAL_WORKLOAD": "inference",
        }
    )
    assert EnvironmentAttributor().attribute(DEVICE, (pid,)) == Attribution(
        job=JobId("pretrain-7"),
        tenant=EntityId("lab-b"),
        permit=PermitId("permit-2026-01"),
        workload=Workload.INFERENCE,
    )


def test_invalid_values_are_ignored_and_counted(spawn: Spawn) -> None:
    pid = spawn(
        {
            "BRAKEPEDAL_JOB": "Pretrain 7",  # not an identifier: SLURM_JOB_ID applies
            "SLURM_JOB_ID": "81234",
            "SLURM_JOB_ACCOUNT": "ProjectX",  # uppercase: ignored, not lowercased
            "BRAKEPEDAL_PERMIT": "-p",
            "BRAKEPEDAL_WORKLOAD": "mining",
        }
    )
    attributor = EnvironmentAttributor(site=SITE)
    assert attributor.attribute(DEVICE, (pid,)) == Attribution(job=JobId("81234"), site=SITE)
    assert attributor.stats[VALUE_INVALID] == 4


def test_processes_that_cannot_be_read_are_skipped(spawn: Spawn, tmp_path: Path) -> None:
    pid = spawn({"SLURM_JOB_ID": "5"})
    gone = subprocess.Popen([SLEEP, "0"])
    gone.wait()
    attributor = EnvironmentAttributor()
    assert attributor.attribute(DEVICE, (gone.pid, pid)).job == JobId("5")
    assert attributor.stats[UNREADABLE] == 1

    (tmp_path / "42" / "environ").mkdir(parents=True)  # unreadable: a directory
    fake = EnvironmentAttributor(site=SITE, proc_root=tmp_path)
    assert fake.attribute(DEVICE, (42, 43)) == Attribution(site=SITE)
    assert fake.stats[UNREADABLE] == 2


def test_a_process_read_while_running_still_counts_after_it_exits() -> None:
    child = subprocess.Popen([SLEEP, "30"], env={"SLURM_JOB_ID": "77"})
    _settled(child.pid, {"SLURM_JOB_ID": "77"})
    try:
        attributor = EnvironmentAttributor()
        assert attributor.attribute(DEVICE, (child.pid,)).job == JobId("77")
    finally:
        child.kill()
        child.wait()
    assert attributor.attribute(DEVICE, (child.pid,)).job == JobId("77")
    assert not attributor.stats[UNREADABLE]


def test_remembered_processes_are_bounded(spawn: Spawn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attribution_module, "_CACHE_ENTRIES", 1)
    first = subprocess.Popen([SLEEP, "30"], env={"SLURM_JOB_ID": "1"})
    _settled(first.pid, {"SLURM_JOB_ID": "1"})
    try:
        attributor = EnvironmentAttributor()
        assert attributor.attribute(DEVICE, (first.pid,)).job == JobId("1")
        assert attributor.attribute(DEVICE, (spawn({"SLURM_JOB_ID": "2"}),)).job == JobId("2")
    finally:
        first.kill()
        first.wait()
    assert attributor.attribute(DEVICE, (first.pid,)) == Attribution()  # forgotten
    assert attributor.stats[UNREADABLE] == 1


def test_disagreeing_processes_most_declared_wins_ties_to_the_lowest_pid(spawn: Spawn) -> None:
    a1, a2 = spawn({"SLURM_JOB_ID": "100"}), spawn({"SLURM_JOB_ID": "100"})
    b = spawn({"SLURM_JOB_ID": "200", "BRAKEPEDAL_PERMIT": "permit-b"})
    silent = [spawn({}), spawn({"PATH": "/usr/bin"}), spawn({})]
    attributor = EnvironmentAttributor()
    # Silent processes are set aside while another declares something.
    assert attributor.attribute(DEVICE, (b, *silent)) == Attribution(
        job=JobId("200"), permit=PermitId("permit-b")
    )
    # Two processes declare job 100, one job 200: job 100, taken whole (no permit-b).
    assert attributor.attribute(DEVICE, (a1, a2, b)) == Attribution(job=JobId("100"))
    # One each: the lowest pid's declaration.
    winner = JobId("100") if a1 < b else JobId("200")
    assert attributor.attribute(DEVICE, (b, a1)).job == winner
    assert attributor.stats[CONFLICT] == 2
    assert attributor.attribute(DEVICE, tuple(silent)) == Attribution()
    assert attributor.attribute(DEVICE, ()) == Attribution()
