"""Every catalogue scenario through the real pipeline at small scale: signed reports, the
registry on SQLite, governance with its quorum and witnesses, the gate, the auditor with its
sampling challenges. Each defection is caught by what should catch it, or (a forger holding
the device keys) by nothing; no finding falls on an honest actor."""

from __future__ import annotations

from pathlib import Path

import pytest

from brakepedal.errors import InputError
from brakepedal.sim.engine import run_scenario
from brakepedal.sim.scenario import catalogue_names, load_catalogue_scenario

#: Scenario -> defecting entity -> what catches it first (None: nothing, as documented).
EXPECTED: dict[str, dict[str, set[str] | None]] = {
    "honest": {},
    "ignore-pause": {"lab-a": {"policy.pause_order"}},
    "subsidiary-split": {"lab-a": {"policy.pause_order"}},
    "chunked-run": {"lab-b": {"declared.continuation_hidden"}},
    "go-dark": {"lab-a": {"device.silent", "challenge.unanswered"}},
    "throttle-as-inference": {"lab-a": {"challenge.workload_mismatch"}},
    "mixed-training-inference": {"cloud-c": {"challenge.workload_mismatch"}},
    "forged-reports": {"lab-a": None},
    "forged-reports-alongside": {"lab-a": {"refused:ingest.sequence_old", "policy.pause_order"}},
    "replay-reports": {
        "lab-a": {"device.silent", "challenge.unanswered", "refused:ingest.duplicate"}
    },
    "backdated-clock": {"lab-a": {"refused:ingest.window_overlap", "device.silent"}},
    "cloned-identity": {"lab-b": {"refused:ingest.sequence_old"}},
    "permit-overrun": {"lab-b": {"policy.permit_budget_exceeded"}},
    "smuggled-devices": {"lab-b": {"devices.unenrolled"}},
    "registry-drop": {"lab-a": {"device.silent", "chain.gap"}, "registry": {"chain.gap"}},
    # The auditor sees the registry's lie and stops reading its entries: the lab's training,
    # which the shown log left out, is not attributed to it.
    "registry-split-view": {"lab-a": None, "registry": {"log.inconsistent"}},
    "sampling-sweep": {"lab-a": {"challenge.workload_mismatch"}},
}


def test_every_shipped_scenario_has_an_expectation() -> None:
    assert set(EXPECTED) == set(catalogue_names())


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_catalogue_scenario(name: str, tmp_path: Path) -> None:
    scenario = load_catalogue_scenario(name)
    # Sampling draws from the log's root (fixed by the seed's keys); these budgets make the
    # mislabelled work's detection all but certain for any seed.
    budget = {"throttle-as-inference": 30, "mixed-training-inference": 30, "sampling-sweep": 60}
    outcome = run_scenario(scenario, seed=1, budget=budget.get(name), workdir=tmp_path)
    assert outcome.reports > 0
    assert outcome.audits > 0
    assert outcome.false_high == (), outcome.false_high
    assert outcome.false_refusals == (), outcome.false_refusals
    expected = EXPECTED[name]
    defectors = {a.entity: a for a in outcome.actors if a.strategy != "honest"}
    assert set(defectors) == set(expected)
    if not expected:
        assert not outcome.findings
    for entity, detectors in expected.items():
        actor = defectors[entity]
        assert actor.defected, f"{actor.strategy} never acted"
        if detectors is None:
            assert actor.caught is None, actor.caught
            continue
        assert actor.caught is not None, f"{actor.strategy} was not caught: {actor.detectors}"
        assert actor.caught.by in detectors, actor.caught
        assert actor.hours_to_finding is not None
        assert actor.hours_to_finding < 48


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "budget"),
    [("go-dark", None), ("throttle-as-inference", 30), ("cloned-identity", None)],
)
def test_over_http_the_outcome_is_the_same(name: str, budget: int | None, tmp_path: Path) -> None:
    """The registry served on loopback: enrolments, reports and challenge answers posted, the
    auditor reading the API (RegistrySource), as in production."""
    scenario = load_catalogue_scenario(name)
    local = run_scenario(scenario, budget=budget, workdir=tmp_path / "local")
    remote = run_scenario(scenario, budget=budget, workdir=tmp_path / "http", http=True)
    assert [(f["at"], f["detector"], f["subject"]) for f in remote.findings] == [
        (f["at"], f["detector"], f["subject"]) for f in local.findings
    ]
    assert [a.caught for a in remote.actors] == [a.caught for a in local.actors]
    assert remote.reports == local.reports


def test_a_split_view_runs_in_process_only() -> None:
    with pytest.raises(InputError) as error:
        run_scenario(load_catalogue_scenario("registry-split-view"), http=True)
    assert error.value.reason == "scenario.http_unsupported"


@pytest.mark.slow
def test_a_policy_breach_is_timed_from_the_later_of_the_act_and_the_crossing(
    tmp_path: Path,
) -> None:
    """lab-a's lineage is over the order's threshold when the order takes effect (hour 12);
    it trains on from the window at hour 13; the audit at hour 18 finds it: 5 hours."""
    outcome = run_scenario(load_catalogue_scenario("ignore-pause"), workdir=tmp_path)
    (actor,) = [a for a in outcome.actors if a.strategy == "ignore_pause"]
    scenario = load_catalogue_scenario("ignore-pause")
    assert actor.crossed_at == scenario.at(12)
    assert actor.defected_at == scenario.at(13)
    assert actor.hours_to_finding == 5.0


@pytest.mark.slow
def test_a_finding_raised_before_the_act_counts_when_it_persists_after(tmp_path: Path) -> None:
    """Shipped-but-unenrolled devices show from the first audit; a smuggler who starts using
    them at hour 12 is caught by the same finding at the first audit after."""
    scenario = load_catalogue_scenario("smuggled-devices")
    late = scenario.model_copy(
        update={"actors": tuple(a.model_copy(update={"at_hour": 12.0}) for a in scenario.actors)}
    )
    outcome = run_scenario(late, workdir=tmp_path)
    (actor,) = [a for a in outcome.actors if a.strategy == "smuggled_devices"]
    assert actor.caught is not None
    assert actor.caught.by == "devices.unenrolled"
    assert actor.caught.at == scenario.at(18)
