"""Declared against attested: runs' declarations beside the snapshots and compute devices attest."""

from __future__ import annotations

import hashlib
import sqlite3
from contextlib import closing
from dataclasses import replace
from datetime import timedelta

import pytest

from brakepedal.accounting.document import UsageDocument
from brakepedal.accounting.lineage import RunDeclaration
from brakepedal.accounting.lineage import SnapshotCommitment as Declared
from brakepedal.audit.state import SCHEMA_VERSION, AuditState
from brakepedal.model.types import EntityId, Flop, JobId, RunId
from brakepedal.policy.load import load_preset
from brakepedal.wire.report_items import SnapshotCommitment
from tests.unit.audit.conftest import World, detectors, quiet
from tests.unit.registry.conftest import ORIGIN

D1 = hashlib.sha256(b"pre-training step 1000").hexdigest()
D2 = hashlib.sha256(b"fine-tune step 10").hexdigest()


def _train(world: World, declared_continuation: bool) -> UsageDocument:
    """A pre-training run commits D1; a fine-tune in a subsidiary continues it as D2."""
    _pretrain_then_finetune(world, [(D2, 9, D1)])
    return _declared(declared_continuation)


def _pretrain_then_finetune(world: World, finetune: list[tuple[str, int, str | None]]) -> None:
    """gpu-0 (lab-a) commits D1 at step 1000 in job pre-1; gpu-1 (lab-a-sub) then attests the
    fine-tune's commitments (digest, minute of the window, parent) at step 10 in job ft-1."""
    pre, ft = world.enrol("gpu-0", "lab-a"), world.enrol("gpu-1", "lab-a-sub")
    start = pre.start
    world.post(
        pre.report(
            job=JobId("pre-1"),
            snapshots=(
                SnapshotCommitment(
                    job=JobId("pre-1"), step=1000, digest=D1, at=start + timedelta(minutes=4)
                ),
            ),
        )
    )
    world.post(
        ft.report(
            job=JobId("ft-1"),
            window_start=start + timedelta(minutes=5),
            snapshots=tuple(
                SnapshotCommitment(
                    job=JobId("ft-1"),
                    step=10,
                    digest=digest,
                    at=start + timedelta(minutes=minute),
                    parent=parent,
                )
                for digest, minute, parent in finetune
            ),
        )
    )


def _declared(declared_continuation: bool) -> UsageDocument:
    return UsageDocument(
        entities=(EntityId("lab-a"), EntityId("lab-a-sub")),
        holdings=(),
        runs=(
            RunDeclaration(
                RunId("pre"),
                EntityId("lab-a"),
                frozenset({JobId("pre-1")}),
                produces=frozenset({Declared("sha256:" + D1)}),
            ),
            RunDeclaration(
                RunId("ft"),
                EntityId("lab-a-sub"),
                frozenset({JobId("ft-1")}),
                starts_from=frozenset({Declared("sha256:" + D1)} if declared_continuation else ()),
                produces=frozenset({Declared("sha256:" + D2)}),
            ),
        ),
        windows=(),
    )


@pytest.mark.parametrize("declared", [True, False])
def test_a_continuation_the_declarations_hide_is_found(world: World, declared: bool) -> None:
    declarations = _train(world, declared_continuation=declared)
    result = world.audit(at=quiet(world), declarations=declarations)
    hidden = [f for f in result.findings if f.detector == "declared.continuation_hidden"]
    if declared:
        assert hidden == []
        return
    (finding,) = hidden
    assert finding.key == {"job": "ft-1", "parent": D1}
    assert finding.figures == {"child_run": "ft", "parent_run": "pre", "parent_job": "pre-1"}
    assert [e.role for e in finding.entries] == [
        "the parent snapshot attested",
        "the continuation attested",
    ]


def _train_twice_attested(world: World) -> UsageDocument:
    """As :func:`_train`, the fine-tune undeclared, but its one report attests D2 twice: first
    with no parent, then (a later commitment of the same step) continuing D1."""
    _pretrain_then_finetune(world, [(D2, 6, None), (D2, 9, D1)])
    return _declared(declared_continuation=False)


def test_commitments_differing_only_in_parent_are_both_remembered(world: World) -> None:
    declarations = _train_twice_attested(world)
    first = world.audit(at=quiet(world), declarations=declarations)
    assert detectors(first) == ["declared.continuation_hidden"]
    # The next run reads nothing new: the continuation comes from the state, and stays.
    again = world.audit(at=quiet(world), declarations=declarations)
    assert again.new_entries == 0
    assert [f.id for f in again.findings] == [f.id for f in first.findings]
    state = AuditState(world.state_dir)
    try:
        kept = [(s.step, s.parent) for s in state.snapshots() if s.job == "ft-1"]
    finally:
        state.close()
    assert kept == [(10, None), (10, D1)]


def test_a_state_written_with_the_old_snapshot_key_is_migrated(world: World) -> None:
    declarations = _train_twice_attested(world)
    world.audit(at=quiet(world), declarations=declarations)
    # Rewrite the state as a version-1 auditor left it: the narrow key, one commitment kept.
    path = world.state_dir / "audit.sqlite3"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("DROP INDEX snapshots_key")
        db.execute("ALTER TABLE snapshots RENAME TO now")
        db.execute(
            "CREATE TABLE snapshots (log_index INTEGER NOT NULL, job TEXT NOT NULL, "
            "step INTEGER NOT NULL, digest TEXT NOT NULL, parent TEXT, at TEXT NOT NULL, "
            "PRIMARY KEY (log_index, job, step, digest))"
        )
        db.execute("INSERT OR IGNORE INTO snapshots SELECT * FROM now ORDER BY rowid")
        db.execute("DROP TABLE now")
        db.execute("DELETE FROM meta WHERE key = 'schema'")
    state = AuditState(world.state_dir)
    try:
        assert state.meta("schema") == str(SCHEMA_VERSION)
        assert state.meta("snapshots_incomplete") == "1"  # what v1 dropped is not recovered
        assert [(s.step, s.parent) for s in state.snapshots() if s.job == "ft-1"] == [(10, None)]
        (row,) = [s for s in state.snapshots() if s.job == "ft-1"]
        # The migrated table keeps two commitments that differ only in parent.
        state.commit_run(
            origin=ORIGIN,
            checkpoints=(),
            seen_at="2026-01-01T00:00:00Z",
            leaves=(),
            devices=(),
            reports=(),
            bad=(),
            snapshots=[row, replace(row, parent=D1)],
            verified_size=state.verified_size(),
            findings=(),
        )
        assert [(s.step, s.parent) for s in state.snapshots() if s.job == "ft-1"] == [
            (10, None),
            (10, D1),
        ]
    finally:
        state.close()


def test_snapshots_a_run_does_not_declare_are_found(world: World) -> None:
    declarations = _train(world, declared_continuation=True)
    other = RunDeclaration(
        RunId("pre"),
        EntityId("lab-a"),
        frozenset({JobId("pre-1")}),
        produces=frozenset({Declared("sha256:" + "0" * 64)}),
    )
    wrong = UsageDocument(declarations.entities, (), (other, declarations.runs[1]), ())
    result = world.audit(at=quiet(world), declarations=wrong)
    assert "declared.undeclared_snapshot" in detectors(result)


@pytest.mark.parametrize(("declared_flop", "found"), [(10**30, False), (10**15, True)])
def test_compute_beyond_the_declared_is_found(
    world: World, declared_flop: int, found: bool
) -> None:
    world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=2, job="pre-1")
    run = RunDeclaration(
        RunId("pre"),
        EntityId("lab-a"),
        frozenset({JobId("pre-1")}),
        declared_flop=Flop(declared_flop),
    )
    declarations = UsageDocument((EntityId("lab-a"),), (), (run,), ())
    result = world.audit(at=quiet(world), declarations=declarations, policy=load_preset("pause"))
    assert ("declared.compute_exceeded" in detectors(result)) is found
    if found:
        (finding,) = [f for f in result.findings if f.detector == "declared.compute_exceeded"]
        pause = load_preset("pause")
        # The finding names the policy whose bound rule gave the attested compute.
        assert finding.figures["policy"] == f"{pause.id} v{pause.version}"
        assert f"under policy {pause.id} v{pause.version}'s bound rule" in finding.summary
