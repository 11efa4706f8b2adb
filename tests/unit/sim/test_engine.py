"""Every catalogue scenario through the real pipeline at small scale: signed reports, the
registry on SQLite, governance with its quorum and witnesses, the gate, the auditor with its
sampling challenges. Each defection is caught by what should catch it, or (a forger holding
the device keys) by nothing; no finding falls on an honest actor."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from brakepedal.errors import InputError
from brakepedal.registry.service import Registry
from brakepedal.sim.engine import Engine, governance_horizon, run_scenario
from brakepedal.sim.scenario import (
    Scenario,
    catalogue_names,
    load_catalogue_scenario,
    parse_scenario,
)
from brakepedal.sim.strategies import ChunkedRun

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
    # A forged report for a slot the device's own chain fills is equivocation (in one batch or
    # across batches); one for a slot already behind the chain head is an old sequence.
    "forged-reports-alongside": {
        "lab-a": {
            "refused:ingest.equivocation",
            "refused:ingest.sequence_old",
            "policy.pause_order",
        }
    },
    "replay-reports": {
        "lab-a": {"device.silent", "challenge.unanswered", "refused:ingest.duplicate"}
    },
    "backdated-clock": {"lab-a": {"refused:ingest.window_overlap", "device.silent"}},
    "cloned-identity": {"lab-b": {"refused:ingest.equivocation", "refused:ingest.sequence_old"}},
    "permit-overrun": {"lab-b": {"policy.permit_budget_exceeded"}},
    "smuggled-devices": {"lab-b": {"devices.unenrolled"}},
    "registry-drop": {"lab-a": {"device.silent", "chain.gap"}, "registry": {"chain.gap"}},
    # The auditor sees the registry's lie and stops reading its entries: the lab's training,
    # which the shown log left out, is not attributed to it. First the registry cannot prove
    # the witnessed checkpoint consistent with the log it shows (registry.answer_invalid); the
    # proof that it rewrote history (log.inconsistent) follows.
    "registry-split-view": {
        "lab-a": None,
        "registry": {"registry.answer_invalid", "log.inconsistent"},
    },
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


def _one_lab(body: str, *, days: float = 1, window: int = 60, seed: int = 0) -> Scenario:
    return parse_scenario(
        f"""format: brakepedal.scenario
name: t
seed: {seed}
days: {days}
window_minutes: {window}
{body}"""
    )


def test_a_workload_without_hours_declares_compute_to_the_end_only(tmp_path: Path) -> None:
    """From hour 10 of a day, "to the end" is 14 hours, not 24: under an order of 20
    device-hours the honest job passes its gate (it was refused, declaring 24)."""
    scenario = _one_lab(
        """entities: [{id: lab-a}]
clusters: [{id: c1, entity: lab-a, devices: 1}]
workloads: [{id: w, kind: pretraining, cluster: c1, lineage: w, start_hour: 10}]
governance:
  orders: [{id: o1, at_hour: 0, threshold_device_hours: 20}]
actors: [{entity: lab-a, strategy: honest}]
audit: {every_hours: 24, budget: 0}
"""
    )
    engine = Engine(scenario, tmp_path / "unit")
    work = engine.world.planned(engine.world.devices[0], scenario.at(10))
    assert engine._remaining(work, scenario.at(10)) == engine.threshold(14)
    assert engine._remaining(work, scenario.at(20)) == engine.threshold(4)
    outcome = run_scenario(scenario, workdir=tmp_path / "run")
    assert outcome.gate_refusals == 0
    assert not outcome.findings


def test_a_job_starting_inside_a_window_declares_from_its_start(tmp_path: Path) -> None:
    scenario = _one_lab(
        """entities: [{id: lab-a}]
clusters: [{id: c1, entity: lab-a, devices: 2}]
workloads: [{id: w, kind: pretraining, cluster: c1, lineage: w, start_hour: 10.5, hours: 2}]
"""
    )
    engine = Engine(scenario, tmp_path)
    work = engine.world.planned(engine.world.devices[0], scenario.at(10))
    assert engine._remaining(work, scenario.at(10)) == engine.threshold(2 * 2)


SHARE = """entities: [{{id: lab-a}}, {{id: mino, owner: lab-a, share: {share}}}]
clusters: [{{id: c1, entity: mino, devices: 2}}]
workloads: [{{id: m, kind: pretraining, cluster: c1, lineage: m, declared: true}}]
governance:
  orders: [{{id: o1, at_hour: 0, threshold_device_hours: 10}}]
  permits: [{{id: p1, at_hour: 0, order: o1, owner_group: lab-a, lineage: m,
              budget_device_hours: 1000, valid_hours: 48}}]
actors: [{{entity: lab-a, strategy: honest}}]
audit: {{every_hours: 12, budget: 0}}
"""


def test_a_minority_held_entity_is_not_under_its_holders_permit(tmp_path: Path) -> None:
    """30% of mino is no control (the auditor's rule): mino is a group of its own, lab-a's
    permit does not cover it, and its gate stops its run; with it wholly owned, the permit
    covers it. Either way no false finding (the sim gave 30% control, and the auditor found
    mino training without a permit)."""
    minority = run_scenario(_one_lab(SHARE.format(share=0.3)), workdir=tmp_path / "minority")
    assert minority.gate_refusals > 0
    assert minority.false_high == ()
    assert minority.honest_entities == 2
    whole = run_scenario(_one_lab(SHARE.format(share=1.0)), workdir=tmp_path / "whole")
    assert whole.gate_refusals == 0
    assert whole.false_high == ()


def test_the_auditor_is_declared_the_holdings_the_world_groups_by(tmp_path: Path) -> None:
    engine = Engine(_one_lab(SHARE.format(share=0.3)), tmp_path)
    assert engine.declarations().holdings == engine.world.holdings
    assert engine.world.root("mino") == "mino"


def test_a_job_belongs_to_its_own_workload_not_one_whose_id_prefixes_it(tmp_path: Path) -> None:
    scenario = _one_lab(
        """entities: [{id: lab-a}, {id: lab-c}]
clusters: [{id: a1, entity: lab-a, devices: 1}, {id: c1, entity: lab-c, devices: 1}]
workloads:
  - {id: b, kind: pretraining, cluster: a1, lineage: b}
  - {id: b-train, kind: pretraining, cluster: c1, lineage: bt}
"""
    )
    engine = Engine(scenario, tmp_path)
    assert engine._owners_of_job("b-train") == {"lab-c"}
    assert engine._owners_of_job("b-train-c3") == {"lab-c"}
    assert engine._owners_of_job("b-train-sub") == {"lab-c"}
    assert engine._owners_of_job("b-c1") == {"lab-a"}
    assert engine._owners_of_job("b-serve") == {"lab-a"}
    assert engine._owners_of_job("bx") == set()
    assert engine._owners_of_job("b-trainer") == set()


def test_a_registry_that_fails_to_open_closes_the_one_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []
    original = Engine._registry

    def opening(self: Engine, name: str = "registry") -> Registry:
        if name == "shown":
            raise RuntimeError("the disk is full")
        registry = original(self, name)
        close = registry.close

        def closing() -> None:
            closed.append(name)
            close()

        monkeypatch.setattr(registry, "close", closing)
        return registry

    monkeypatch.setattr(Engine, "_registry", opening)
    engine = Engine(load_catalogue_scenario("registry-split-view"), tmp_path)
    with pytest.raises(RuntimeError, match="disk is full"):
        engine.run()
    assert closed == ["registry"]


def test_governance_is_valid_past_a_year_for_a_long_world() -> None:
    assert governance_horizon(2) == timedelta(days=365)
    assert governance_horizon(366) == timedelta(days=396)


def test_a_quiet_month_does_not_expire_the_governance_repository(tmp_path: Path) -> None:
    """The registry's snapshots are valid 30 days; with nothing published for longer, the
    operator's heartbeat before each audit re-signs the snapshot, and an honest world has no
    finding (it had governance.unverifiable from day 30)."""
    scenario = _one_lab(
        """entities: [{id: lab-a}]
clusters: [{id: c1, entity: lab-a, devices: 1}]
workloads: [{id: s, kind: inference, cluster: c1}]
actors: [{entity: lab-a, strategy: honest}]
audit: {every_hours: 240, budget: 0}
""",
        days=70,
        window=1440,
    )
    outcome = run_scenario(scenario, workdir=tmp_path)
    assert outcome.audits == 7
    assert outcome.findings == ()


@pytest.mark.slow
def test_a_world_longer_than_a_year_has_valid_governance_to_its_end(tmp_path: Path) -> None:
    """Roles and documents expired a year after the start: a 366-day honest world had a false
    governance.unverifiable at its last audits."""
    scenario = _one_lab(
        """entities: [{id: lab-a}]
clusters: [{id: c1, entity: lab-a, devices: 1}]
workloads: [{id: s, kind: inference, cluster: c1}]
governance:
  orders: [{id: o1, at_hour: 8760, threshold_device_hours: 100000}]
actors: [{entity: lab-a, strategy: honest}]
audit: {every_hours: 720, budget: 0}
""",
        days=366,
        window=1440,
    )
    outcome = run_scenario(scenario, workdir=tmp_path)
    assert outcome.audits == 13
    assert outcome.findings == ()


@pytest.mark.slow
def test_chunks_begin_on_a_window_boundary_whatever_at_hour_is(tmp_path: Path) -> None:
    """A chunked run from hour 0.5 chunks from the first window after it (hour 1): each chunk
    commits its snapshots, and the hidden continuation is found (it went unnoticed)."""
    scenario = load_catalogue_scenario("chunked-run")
    late = scenario.model_copy(
        update={
            "actors": tuple(
                a.model_copy(update={"at_hour": 0.5}) if a.strategy == "chunked_run" else a
                for a in scenario.actors
            )
        }
    )
    engine = Engine(late, tmp_path / "unit")
    (chunked,) = [s for s in engine.strategies if s.actor.strategy == "chunked_run"]
    assert isinstance(chunked, ChunkedRun)
    assert chunked._chunk(scenario.at(1)) == (360, 0, 0)
    assert chunked._chunk(scenario.at(7)) == (360, 360, 1)
    outcome = run_scenario(late, workdir=tmp_path / "run")
    (actor,) = [a for a in outcome.actors if a.strategy == "chunked_run"]
    assert actor.defected_at == scenario.at(7)
    assert actor.caught is not None
    assert actor.caught.by == "declared.continuation_hidden"
    assert outcome.false_high == ()
