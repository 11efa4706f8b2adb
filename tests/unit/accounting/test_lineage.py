"""Runs continue each other through snapshot commitments; lineages are what they form."""

from __future__ import annotations

import pytest

from brakepedal.accounting.lineage import LineageGraph, RunDeclaration, SnapshotCommitment
from brakepedal.errors import InputError
from brakepedal.model.types import EntityId, JobId, RunId

from .builders import run, snapshot


def test_fine_tune_and_rl_join_the_base_lineage() -> None:
    g = LineageGraph(
        [run("base"), run("sft", parent="base"), run("rl", parent="sft"), run("other")]
    )
    assert g.lineage_of(RunId("rl")) == "base"
    assert g.members(g.lineage_of(RunId("sft"))) == ("base", "rl", "sft")
    assert g.lineages() == ("base", "other")
    assert g.ancestors(RunId("rl")) == ("base", "sft")
    assert g.descendants(RunId("base")) == ("rl", "sft")


def test_jobs_map_to_runs() -> None:
    g = LineageGraph([run("base", jobs=["j1", "j2"])])
    assert g.run_of_job(JobId("j2")) == "base"
    assert g.run_of_job(JobId("j9")) is None
    assert RunId("base") in g


def test_external_base_starts_its_own_lineage_and_is_listed() -> None:
    g = LineageGraph([run("tune", parent="open-weights")])
    assert g.lineage_of(RunId("tune")) == "tune"
    assert g.external_bases == {snapshot("open-weights")}


def test_a_merge_joins_both_lineages() -> None:
    merged = RunDeclaration(
        run=RunId("merge"),
        owner=EntityId("acme"),
        jobs=frozenset({JobId("m")}),
        starts_from=frozenset({snapshot("a"), snapshot("b")}),
    )
    g = LineageGraph([run("a"), run("b"), merged])
    assert g.lineage_of(RunId("b")) == g.lineage_of(RunId("a")) == "a"


def _cycle() -> LineageGraph:
    one = RunDeclaration(
        RunId("one"),
        EntityId("x"),
        frozenset(),
        starts_from=frozenset({snapshot("two")}),
        produces=frozenset({snapshot("one")}),
    )
    two = RunDeclaration(
        RunId("two"),
        EntityId("x"),
        frozenset(),
        starts_from=frozenset({snapshot("one")}),
        produces=frozenset({snapshot("two")}),
    )
    return LineageGraph([one, two])


@pytest.mark.parametrize(
    ("build", "reason", "named"),
    [
        (lambda: LineageGraph([run("a"), run("a", jobs=["x"])]), "lineage.duplicate_run", "a"),
        (
            lambda: LineageGraph([run("a", jobs=["j"]), run("b", jobs=["j"])]),
            "lineage.job_in_two_runs",
            "j",
        ),
        (
            lambda: LineageGraph(
                [
                    run("a"),
                    RunDeclaration(
                        RunId("b"), EntityId("x"), frozenset(), produces=frozenset({snapshot("a")})
                    ),
                ]
            ),
            "lineage.snapshot_conflict",
            "a and b",
        ),
        (_cycle, "lineage.cycle", "->"),
        (
            lambda: RunDeclaration(
                RunId("a"),
                EntityId("x"),
                frozenset(),
                starts_from=frozenset({snapshot("s")}),
                produces=frozenset({snapshot("s")}),
            ),
            "lineage.self_continuation",
            "a",
        ),
        (lambda: SnapshotCommitment("sha256:XYZ"), "lineage.commitment_invalid", "sha256:XYZ"),
        (lambda: LineageGraph([]).lineage_of(RunId("ghost")), "lineage.run_unknown", "ghost"),
    ],
)
def test_bad_run_declarations(build: object, reason: str, named: str) -> None:
    with pytest.raises(InputError) as caught:
        build()  # type: ignore[operator]
    assert caught.value.reason == reason
    assert named in caught.value.message
