"""Evaluation beyond the presets' thresholds: permits, pause orders, attribution, ordering."""

from __future__ import annotations

from datetime import timedelta
from fractions import Fraction
from typing import Any

import pytest

from brakepedal.accounting.flop import BoundBasis, BoundRule
from brakepedal.accounting.groups import ControlRule, Holding, OwnershipGraph
from brakepedal.accounting.ledger import Ledger
from brakepedal.accounting.lineage import LineageGraph
from brakepedal.accounting.usage import Workload
from brakepedal.errors import InputError
from brakepedal.model.types import DeviceId, EntityId, Flop, LineageId, OrderId, PermitId, RunId
from brakepedal.policy.evaluate import evaluate
from brakepedal.policy.findings import Evaluation
from brakepedal.policy.load import load_preset, policy_from_mapping
from brakepedal.policy.model import Policy
from brakepedal.policy.terms import PauseOrderTerms, PermitTerms
from tests.unit.policy.scenario import (
    CATALOGUE,
    DAY,
    EXA_DAY,
    T0,
    end_of,
    ledger_for,
    run,
    training,
)

E22, E24 = 10**22, 10**24


def make_policy(*rules: dict[str, Any], **accounting: Any) -> Policy:
    """A one-source policy with ``rules`` (citation filled in) and accounting overrides."""
    document = {
        "format": "brakepedal.policy",
        "id": "test",
        "version": 1,
        "title": "Test policy",
        "status": "in_force",
        "jurisdiction": "test",
        "sources": [{"id": "src", "title": "Source", "url": "https://example.org/src"}],
        "accounting": {"precisions": ["bf16"], **accounting},
        "rules": [
            {"title": "A rule", "citation": {"source": "src", "pinpoint": "s. 1"}, **rule}
            for rule in rules
        ],
    }
    return policy_from_mapping(document, name="test.toml")


def _permit(**changes: Any) -> PermitTerms:
    terms: dict[str, Any] = {
        "permit_id": PermitId("permit-1"),
        "owner_group": EntityId("acme"),
        "flop_budget": Flop(E24),
        "valid_from": T0,
        "valid_until": T0 + 400 * DAY,
        "lineage": LineageId("base"),
    }
    terms.update(changes)
    return PermitTerms(**terms)


def _treaty_band(flop: int, *permits: PermitTerms) -> Evaluation:
    policy = load_preset("draft-treaty")
    windows = training(flop, job="base")
    ledger = ledger_for(policy, windows, runs=[run("base")])
    evaluation = evaluate(policy, ledger, at=end_of(windows) + DAY, permits=permits)
    return Evaluation(
        evaluation.policy_id,
        evaluation.policy_version,
        evaluation.at,
        evaluation.for_rule("training-needs-approval")[0],
        evaluation.for_rule("training-needs-approval")[1],
    )


# ------------------------------------------------------------------------------- permits


def test_a_covering_valid_permit_satisfies_the_approval_band() -> None:
    assert _treaty_band(E22 + 1, _permit()).violations == ()


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param({"owner_group": EntityId("other")}, "permit_missing", id="other-group"),
        pytest.param({"lineage": LineageId("elsewhere")}, "permit_missing", id="other-lineage"),
        pytest.param(
            {"lineage": None, "run": RunId("base")}, "permit_missing", id="run-permit-for-lineage"
        ),
        pytest.param({"valid_from": T0 + DAY}, "permit_missing", id="starts-late"),
        pytest.param({"flop_budget": Flop(E22)}, "permit_budget_exceeded", id="over-budget"),
        pytest.param(
            {"devices": frozenset({DeviceId("exa-1")})},
            "permit_devices_exceeded",
            id="other-device",
        ),
    ],
)
def test_permits_that_do_not_cover_the_training(changes: dict[str, Any], reason: str) -> None:
    (violation,) = _treaty_band(E22 + 1, _permit(**changes)).violations
    assert violation.reason == reason
    if reason != "permit_missing":
        assert violation.permit_id == "permit-1"


def test_a_permit_limits_how_many_devices_train() -> None:
    policy = load_preset("draft-treaty")
    windows = [*training(E22, job="base"), *training(1, job="base", device="exa-1")]
    ledger = ledger_for(policy, windows, runs=[run("base")])
    rule = "training-needs-approval"
    narrow = evaluate(policy, ledger, at=T0 + 9 * DAY, permits=[_permit(device_count=1)])
    (violation,) = narrow.for_rule(rule)[1]
    assert violation.reason == "permit_devices_exceeded"
    assert "allows 1 devices; 2 were used" in violation.explanation
    wide = evaluate(policy, ledger, at=T0 + 9 * DAY, permits=[_permit(device_count=2)])
    assert wide.for_rule(rule)[1] == ()


def test_a_permit_not_yet_valid_covers_nothing() -> None:
    (violation,) = _treaty_band(E22 + 1, _permit(valid_from=T0 + 300 * DAY)).violations
    assert violation.reason == "permit_missing"


def test_uncovered_compute_is_measured_exactly() -> None:
    # The permit starts one day in: the first (full) day of training is outside it.
    (violation,) = _treaty_band(EXA_DAY + 1, _permit(valid_from=T0 + DAY)).violations
    assert violation.measured.value == EXA_DAY
    assert "outside every valid permit" in violation.explanation


def test_two_permits_back_to_back_cover_the_whole_run() -> None:
    first = _permit(permit_id=PermitId("p-1"), valid_until=T0 + DAY)
    second = _permit(permit_id=PermitId("p-2"), valid_from=T0 + DAY)
    assert _treaty_band(EXA_DAY + 1, first, second).violations == ()
    (gap,) = _treaty_band(EXA_DAY + 1, first).violations
    assert gap.measured.value == 1


# ------------------------------------------------------------------------------- pause


ORDER = PauseOrderTerms(
    order_id=OrderId("pause-1"),
    threshold_flop=Flop(E22),
    jurisdictions=frozenset({"agreement"}),
    effective_from=T0 + 10 * DAY,
    sunset=T0 + 100 * DAY,
    grace_seconds=86_400,
)


def _paused(
    *,
    start_day: int,
    flop: int = E22 + 1,
    order: PauseOrderTerms = ORDER,
    permits: tuple[PermitTerms, ...] = (),
    jurisdictions: tuple[str, ...] = (),
    at_day: int | None = None,
) -> Evaluation:
    policy = load_preset("pause")
    before = training(E22, job="base", start=T0)
    during = training(flop - E22, job="base", start=T0 + start_day * DAY, device="exa-1")
    windows = before + during
    ledger = ledger_for(policy, windows, runs=[run("base", jurisdictions=jurisdictions)])
    at = end_of(windows) if at_day is None else T0 + at_day * DAY
    return evaluate(policy, ledger, at=at, orders=[order], permits=permits)


def test_training_after_the_grace_period_violates_the_order() -> None:
    (violation,) = _paused(start_day=11).violations
    assert violation.reason == "pause_order"
    assert violation.order_id == "pause-1"
    assert violation.measured.value == 1  # the one FLOP trained while the order was in force


def test_training_before_the_order_or_in_its_grace_period_does_not() -> None:
    assert _paused(start_day=5).violations == ()
    assert _paused(start_day=10).violations == ()  # the grace day


def test_training_after_the_sunset_does_not() -> None:
    assert _paused(start_day=100).violations == ()


def test_training_after_the_sunset_does_not_bring_earlier_training_into_scope() -> None:
    policy = load_preset("pause")
    windows = [
        *training(E22 - 5, job="base"),
        *training(2, job="base", start=T0 + 20 * DAY, device="exa-1"),  # during, below scope
        *training(10, job="base", start=T0 + 200 * DAY, device="exa-2"),  # after the sunset
    ]
    ledger = ledger_for(policy, windows, runs=[run("base")])
    assert evaluate(policy, ledger, at=T0 + 300 * DAY, orders=[ORDER]).violations == ()


def test_an_ended_order_still_judges_what_happened_during_it() -> None:
    (violation,) = _paused(start_day=20, at_day=200).violations
    assert violation.order_id == "pause-1"


def test_an_order_not_yet_started_is_silent() -> None:
    later = PauseOrderTerms(
        order_id=OrderId("pause-2"),
        threshold_flop=Flop(0),
        jurisdictions=frozenset({"agreement"}),
        effective_from=T0 + 500 * DAY,
        sunset=T0 + 600 * DAY,
    )
    assert _paused(start_day=20, order=later).violations == ()


def test_an_order_for_another_jurisdiction_is_silent_unless_the_run_declares_it() -> None:
    elsewhere = PauseOrderTerms(
        order_id=OrderId("pause-us"),
        threshold_flop=Flop(E22),
        jurisdictions=frozenset({"us"}),
        effective_from=ORDER.effective_from,
        sunset=ORDER.sunset,
    )
    assert _paused(start_day=20, order=elsewhere).violations == ()
    (violation,) = _paused(start_day=20, order=elsewhere, jurisdictions=("us",)).violations
    assert violation.order_id == "pause-us"


def test_only_a_permit_under_the_order_quorum_allows_training() -> None:
    ordinary = _permit(flop_budget=Flop(E24))
    (violation,) = _paused(start_day=20, permits=(ordinary,)).violations
    assert violation.reason == "pause_order"
    quorum = _permit(flop_budget=Flop(E24), under_order_quorum=True, under_order=ORDER.order_id)
    assert _paused(start_day=20, permits=(quorum,)).violations == ()


def test_a_permit_under_another_order_does_not_allow_training_under_this_one() -> None:
    """A permit issued by pause-0's quorum says nothing about pause-1, which is in force."""
    other = _permit(flop_budget=Flop(E24), under_order_quorum=True, under_order=OrderId("pause-0"))
    (violation,) = _paused(start_day=20, permits=(other,)).violations
    assert (violation.reason, violation.order_id) == ("pause_order", ORDER.order_id)


def test_a_quorum_permit_past_its_budget_is_a_violation() -> None:
    quorum = _permit(flop_budget=Flop(0), under_order_quorum=True, under_order=ORDER.order_id)
    (violation,) = _paused(start_day=20, permits=(quorum,)).violations
    assert violation.reason == "permit_budget_exceeded"


def test_a_prohibited_during_pause_rule() -> None:
    policy = make_policy(
        {
            "id": "no-training",
            "kind": "prohibited",
            "subject": "lineage",
            "threshold_flop": "0",
            "during_pause_only": True,
        },
        exempt_workloads=[],
    )
    order = PauseOrderTerms(
        order_id=OrderId("pause-3"),
        threshold_flop=Flop(0),
        jurisdictions=frozenset({"test"}),
        effective_from=T0,
        sunset=T0 + 10 * DAY,
    )
    windows = training(5, job="base")
    ledger = ledger_for(policy, windows, runs=[run("base")])
    (violation,) = evaluate(policy, ledger, at=T0 + 2 * DAY, orders=[order]).violations
    assert violation.reason == "pause_order"
    assert violation.measured.value == 5


# ------------------------------------------------------------------------------- attribution


NOTIFY_1E22 = {"id": "notify", "kind": "notify", "subject": "lineage", "threshold_flop": "1e22"}


def test_unattributed_compute_counts_toward_its_owner() -> None:
    policy = make_policy(NOTIFY_1E22)
    windows = training(E22 + 1, job=None, owner="shadow")
    ledger = ledger_for(policy, windows, entities=("shadow",))
    (obligation,) = evaluate(policy, ledger, at=end_of(windows)).obligations
    assert obligation.subject_id == "unattributed:shadow"
    assert obligation.party == "shadow"


def test_exempt_inference_does_not_count() -> None:
    policy = make_policy(NOTIFY_1E22, exempt_workloads=["inference"])
    windows = training(E22 + 1, job="base", workload=Workload.INFERENCE)
    ledger = ledger_for(policy, windows, runs=[run("base")])
    assert evaluate(policy, ledger, at=end_of(windows)).obligations == ()


def test_group_rules_sum_affiliates_or_entities_as_the_policy_says() -> None:
    rule = {"id": "group", "kind": "notify", "subject": "group", "threshold_flop": "1e22"}
    holdings = [Holding(EntityId("acme"), EntityId("acme-sub"), Fraction(3, 5))]
    first = training(E22 // 2 + 1, job=None)
    second = training(E22 // 2, job=None, owner="acme-sub", device="exa-1")
    for affiliates, expected in (("group", ["acme"]), ("entity", [])):
        policy = make_policy(rule, affiliates=affiliates)
        ledger = ledger_for(
            policy, first + second, entities=("acme", "acme-sub"), holdings=holdings
        )
        found = evaluate(policy, ledger, at=T0 + 9 * DAY).obligations
        assert [o.subject_id for o in found] == expected


def test_a_rolling_window_counts_only_recent_compute() -> None:
    policy = make_policy(NOTIFY_1E22, rolling_window_days=1)
    windows = training(2 * EXA_DAY, job="base")  # two full days
    ledger = ledger_for(policy, windows, runs=[run("base")])
    assert evaluate(policy, ledger, at=end_of(windows) + 30 * DAY).obligations == ()
    (obligation,) = evaluate(policy, ledger, at=T0 + DAY).obligations
    assert obligation.measured.value == EXA_DAY


def test_an_inclusive_threshold_triggers_at_the_threshold() -> None:
    policy = make_policy({**NOTIFY_1E22, "threshold_inclusive": True})
    windows = training(E22, job="base")
    ledger = ledger_for(policy, windows, runs=[run("base")])
    (obligation,) = evaluate(policy, ledger, at=end_of(windows)).obligations
    assert obligation.measured == obligation.threshold


# ------------------------------------------------------------------------------- contract


def test_a_ledger_built_under_other_rules_is_refused() -> None:
    policy = load_preset("eu-ai-act")
    accounting = policy.accounting
    windows = training(10, job="base")
    wall = BoundRule(frozenset(accounting.precisions), BoundBasis.WALL)
    none: frozenset[Workload] = frozenset()
    for rule, exempt, control in (
        (wall, accounting.exempt(), accounting.control_rule()),
        (accounting.bound_rule(), none, accounting.control_rule()),
        (accounting.bound_rule(), accounting.exempt(), ControlRule(inclusive=True)),
    ):
        ledger = Ledger(
            windows,
            runs=LineageGraph([run("base")]),
            ownership=OwnershipGraph([EntityId("acme")], (), control),
            catalogue=CATALOGUE,
            rule=rule,
            exempt_workloads=exempt,
        )
        with pytest.raises(InputError) as caught:
            evaluate(policy, ledger, at=T0)
        assert caught.value.reason == "policy.ledger_mismatch"


def test_evaluation_is_deterministic_and_ordered() -> None:
    policy = load_preset("draft-treaty")
    windows = [
        *training(E24 + 1, job="b", device="exa-1"),
        *training(E22 + 1, job="a", device="exa-2"),
        *training(E22 + 1, job=None, owner="acme", device="exa-3"),
    ]
    runs = [run("a"), run("b")]
    first = evaluate(policy, ledger_for(policy, windows, runs=runs), at=T0 + 90 * DAY)
    again = evaluate(policy, ledger_for(policy, reversed(windows), runs=runs[::-1]), at=first.at)
    assert first == again
    assert [(v.rule_id, v.subject_id, v.reason) for v in first.violations] == [
        ("training-prohibited", "b", "prohibited"),
        ("training-needs-approval", "a", "permit_missing"),
        ("training-needs-approval", "unattributed:acme", "permit_missing"),
        ("unmonitored-chip-cluster", "dc-1", "cluster_unmonitored"),
    ]
    # The draft treaty binds nobody: every finding is informational, so the state complies.
    assert first.compliant
    assert not any(v.binding for v in first.violations)


def test_evaluation_time_must_be_utc() -> None:
    policy = load_preset("eu-ai-act")
    ledger = ledger_for(policy, training(1, job="base"), runs=[run("base")])
    with pytest.raises(InputError) as caught:
        evaluate(policy, ledger, at=T0.replace(tzinfo=None))
    assert caught.value.reason == "time.naive"


def test_only_compute_before_at_counts() -> None:
    policy = make_policy(NOTIFY_1E22)
    windows = training(E22 + 1, job="base")
    ledger = ledger_for(policy, windows, runs=[run("base")])
    # 1000 s of busy time at 1e19 op/s: 500 s into the window at most 5e21 can have been done.
    assert evaluate(policy, ledger, at=T0 + timedelta(seconds=500)).obligations == ()
    assert evaluate(policy, ledger, at=T0 + timedelta(seconds=1001)).obligations != ()
