"""Every preset loads, and every threshold of every preset is tested one FLOP (or one op/s, or
a sliver of an H100) below and above, on real ledgers."""

from __future__ import annotations

from datetime import timedelta
from fractions import Fraction

import pytest

from brakepedal.accounting.catalogue import REFERENCE_ACCELERATOR
from brakepedal.accounting.groups import Holding
from brakepedal.accounting.lineage import RunKind
from brakepedal.errors import InputError
from brakepedal.model.types import EntityId, Flop, OrderId, SiteId
from brakepedal.policy.evaluate import evaluate
from brakepedal.policy.findings import Evaluation, Obligation, Violation
from brakepedal.policy.load import load_preset, preset_names
from brakepedal.policy.model import Policy
from brakepedal.policy.terms import PauseOrderTerms
from tests.unit.policy.scenario import (
    DAY,
    T0,
    devices_at,
    end_of,
    ledger_for,
    run,
    training,
)

E22, E23, E24, E25, E26 = (10**n for n in (22, 23, 24, 25, 26))
PRESETS = ("ca-sb-53", "draft-treaty", "eu-ai-act", "pause", "us-eo-14110")


def test_the_five_presets_are_shipped() -> None:
    assert preset_names() == PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_and_cites_its_sources(name: str) -> None:
    policy = load_preset(name)
    assert policy.id == name
    assert policy.sources
    assert policy.rules
    for rule in policy.rules:
        assert policy.citation_text(rule).endswith(rule.citation.pinpoint)
        assert rule.note, f"{name}:{rule.id} should explain itself"


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(InputError) as caught:
        load_preset("eu-ai-act-2")
    assert caught.value.reason == "policy.preset_unknown"
    assert all(name in caught.value.message for name in PRESETS)


def test_only_in_force_presets_bind() -> None:
    assert {name: load_preset(name).binding for name in PRESETS} == {
        "ca-sb-53": True,
        "draft-treaty": False,
        "eu-ai-act": True,
        "pause": True,
        "us-eo-14110": False,
    }


def _lineage(policy: Policy, flop: int, *, domains: tuple[str, ...] = ()) -> Evaluation:
    """One pre-training run ``base`` of ``flop``, evaluated the day after it ends."""
    windows = training(flop, job="base")
    ledger = ledger_for(policy, windows, runs=[run("base", domains=domains)])
    return evaluate(policy, ledger, at=end_of(windows) + DAY)


def _rule(evaluation: Evaluation, rule_id: str) -> tuple[list[Obligation], list[Violation]]:
    obligations, violations = evaluation.for_rule(rule_id)
    return list(obligations), list(violations)


# ------------------------------------------------------------------------------- EU AI Act


def test_eu_notification_just_below_and_above_1e25() -> None:
    policy = load_preset("eu-ai-act")
    assert _rule(_lineage(policy, E25), "systemic-risk-notification") == ([], [])
    (obligation,), violations = _rule(_lineage(policy, E25 + 1), "systemic-risk-notification")
    assert violations == []
    assert obligation.subject_id == "base"
    assert obligation.party == "acme"
    assert obligation.measured.value == E25 + 1
    assert obligation.threshold.value == E25
    assert obligation.binding
    assert obligation.citation.endswith("Art. 51(2) and Art. 52(1)")
    assert obligation.crossed_at is not None
    assert obligation.due == obligation.crossed_at + timedelta(days=14)


def test_eu_notification_becomes_overdue_after_two_weeks() -> None:
    policy = load_preset("eu-ai-act")
    windows = training(E25 + 1, job="base")
    ledger = ledger_for(policy, windows, runs=[run("base")])
    crossed = end_of(windows)
    due = crossed + timedelta(days=14)
    on_time = evaluate(policy, ledger, at=due)
    assert on_time.violations == ()
    late = evaluate(policy, ledger, at=due + timedelta(seconds=1))
    (violation,) = late.violations
    assert violation.reason == "notify_overdue"
    assert violation.rule_id == "systemic-risk-notification"
    notified = evaluate(
        policy, ledger, at=due + DAY, notified={("systemic-risk-notification", "base")}
    )
    assert notified.violations == ()
    assert notified.obligations[0].satisfied


def _modification(policy: Policy, original: int, modification: int) -> Evaluation:
    base = training(original, job="base")
    tuned = training(modification, job="tuned", owner="other", start=end_of(base))
    ledger = ledger_for(
        policy,
        base + tuned,
        runs=[run("base"), run("tuned", owner="other", parent="base", kind=RunKind.FINE_TUNING)],
        entities=("acme", "other"),
    )
    return evaluate(policy, ledger, at=end_of(tuned))


def test_eu_downstream_modifier_just_below_and_above_a_third() -> None:
    policy = load_preset("eu-ai-act")
    original = E25 + 1
    third = original // 3  # 3333333333333333333333333 < original / 3 < third + 1
    assert _rule(_modification(policy, original, third), "downstream-modifier-provider") == (
        [],
        [],
    )
    (obligation,), _ = _rule(
        _modification(policy, original, third + 1), "downstream-modifier-provider"
    )
    assert obligation.subject_id == "tuned"
    assert obligation.party == "other"
    assert obligation.measured.value == third + 1
    assert obligation.threshold.value == Fraction(original, 3)
    assert obligation.due is None


def test_eu_downstream_modifier_needs_an_original_above_1e25() -> None:
    policy = load_preset("eu-ai-act")
    assert _rule(_modification(policy, E25, E25), "downstream-modifier-provider") == ([], [])
    (found,), _ = _rule(_modification(policy, E25 + 1, E25), "downstream-modifier-provider")
    assert found.rule_kind == "provider_status"


def test_eu_same_group_fine_tuning_is_not_a_downstream_modification() -> None:
    policy = load_preset("eu-ai-act")
    base = training(E25 + 1, job="base")
    tuned = training(E25, job="tuned", owner="acme-sub", start=end_of(base))
    ledger = ledger_for(
        policy,
        base + tuned,
        runs=[run("base"), run("tuned", owner="acme-sub", parent="base")],
        entities=("acme", "acme-sub"),
        holdings=[Holding(EntityId("acme"), EntityId("acme-sub"), Fraction(3, 4))],
    )
    evaluation = evaluate(policy, ledger, at=end_of(tuned))
    assert _rule(evaluation, "downstream-modifier-provider") == ([], [])


# ------------------------------------------------------------------------------- US EO 14110


def test_eo_14110_model_report_just_below_and_above_1e26_is_informational() -> None:
    policy = load_preset("us-eo-14110")
    assert _rule(_lineage(policy, E26), "dual-use-model-report") == ([], [])
    (obligation,), _ = _rule(_lineage(policy, E26 + 1), "dual-use-model-report")
    assert not obligation.binding
    assert obligation.due is None
    assert "Executive Order 14110" in obligation.citation


def test_eo_14110_biological_sequence_report_just_below_and_above_1e23() -> None:
    policy = load_preset("us-eo-14110")
    rule = "biological-sequence-model-report"
    bio = ("biological_sequence",)
    assert _rule(_lineage(policy, E23, domains=bio), rule) == ([], [])
    (obligation,), _ = _rule(_lineage(policy, E23 + 1, domains=bio), rule)
    assert obligation.threshold.value == E23
    # Without the declared data domain the 1e23 rule does not apply.
    assert _rule(_lineage(policy, E23 + 1), rule) == ([], [])


def test_eo_14110_cluster_report_just_below_and_at_1e20_ops() -> None:
    policy = load_preset("us-eo-14110")
    below = devices_at("dc-9", {"test-peta": 99, "test-peta-less": 1})
    at_threshold = devices_at("dc-9", {"test-peta": 100})
    rule = "computing-cluster-report"
    evaluation = evaluate(policy, ledger_for(policy, below), at=T0 + DAY)
    assert _rule(evaluation, rule) == ([], [])
    evaluation = evaluate(policy, ledger_for(policy, at_threshold), at=T0 + DAY)
    (obligation,), _ = _rule(evaluation, rule)
    assert obligation.subject_kind == "site"
    assert obligation.subject_id == "dc-9"
    assert obligation.measured.value == 10**20
    assert obligation.measured.unit == "op/s"


# ------------------------------------------------------------------------------- CA SB 53


def test_sb_53_counts_fine_tuning_just_below_and_above_1e26() -> None:
    policy = load_preset("ca-sb-53")

    def lineage(fine_tuning: int) -> Evaluation:
        base = training(6 * E25, job="base")
        tuned = training(fine_tuning, job="rl", owner="acme-labs", start=end_of(base))
        ledger = ledger_for(
            policy,
            base + tuned,
            runs=[
                run("base"),
                run("rl", owner="acme-labs", parent="base", kind=RunKind.REINFORCEMENT_LEARNING),
            ],
            entities=("acme", "acme-labs"),
            holdings=[Holding(EntityId("acme"), EntityId("acme-labs"), Fraction(51, 100))],
        )
        return evaluate(policy, ledger, at=end_of(tuned))

    assert _rule(lineage(4 * E25), "frontier-developer") == ([], [])
    (obligation,), _ = _rule(lineage(4 * E25 + 1), "frontier-developer")
    assert obligation.rule_kind == "provider_status"
    assert obligation.subject_id == "base"
    assert obligation.party == "acme"  # the affiliate's parent: one ownership group
    assert obligation.measured.value == E26 + 1


# ------------------------------------------------------------------------------- draft treaty


def test_treaty_approval_band_just_below_and_above_1e22() -> None:
    policy = load_preset("draft-treaty")
    assert _rule(_lineage(policy, E22), "training-needs-approval") == ([], [])
    _, (violation,) = _rule(_lineage(policy, E22 + 1), "training-needs-approval")
    assert violation.reason == "permit_missing"
    assert violation.measured.value == E22 + 1
    assert not violation.binding


def test_treaty_prohibition_just_below_and_above_1e24() -> None:
    policy = load_preset("draft-treaty")
    at_limit = _lineage(policy, E24)
    assert _rule(at_limit, "training-prohibited") == ([], [])
    # Still inside the approval band (its upper end is inclusive).
    assert [v.reason for v in at_limit.for_rule("training-needs-approval")[1]] == ["permit_missing"]
    above = _lineage(policy, E24 + 1)
    _, (violation,) = _rule(above, "training-prohibited")
    assert violation.reason == "prohibited"
    assert above.for_rule("training-needs-approval") == ((), ())


def test_treaty_post_training_just_below_and_above_1e23() -> None:
    policy = load_preset("draft-treaty")

    def tuned(flop: int) -> Evaluation:
        base = training(E22, job="base")
        post = training(flop, job="tuned", start=end_of(base))
        ledger = ledger_for(policy, base + post, runs=[run("base"), run("tuned", parent="base")])
        return evaluate(policy, ledger, at=end_of(post))

    assert _rule(tuned(E23), "post-training-prohibited") == ([], [])
    _, (violation,) = _rule(tuned(E23 + 1), "post-training-prohibited")
    assert violation.subject_kind == "run"
    assert violation.subject_id == "tuned"
    # A pre-training run of the same size is not post-training.
    assert _rule(_lineage(policy, E23 + 1), "post-training-prohibited") == ([], [])


def test_treaty_cluster_just_at_and_above_16_h100_equivalents() -> None:
    policy = load_preset("draft-treaty")
    sixteen = devices_at("dc-2", {REFERENCE_ACCELERATOR: 16})
    sliver_more = devices_at("dc-2", {REFERENCE_ACCELERATOR: 16, "test-tiny": 1})
    rule = "unmonitored-chip-cluster"
    assert _rule(evaluate(policy, ledger_for(policy, sixteen), at=T0 + DAY), rule) == ([], [])
    evaluation = evaluate(policy, ledger_for(policy, sliver_more), at=T0 + DAY)
    _, (violation,) = _rule(evaluation, rule)
    assert violation.reason == "cluster_unmonitored"
    assert violation.measured.unit == "H100-equivalents"
    assert violation.measured.value == 16 + Fraction(1, 989_000_000_000_000)
    monitored = evaluate(
        policy, ledger_for(policy, sliver_more), at=T0 + DAY, monitored_sites={SiteId("dc-2")}
    )
    assert _rule(monitored, rule) == ([], [])


# ------------------------------------------------------------------------------- pause


ORDER = PauseOrderTerms(
    order_id=OrderId("pause-2026-01"),
    threshold_flop=Flop(E24),
    jurisdictions=frozenset({"agreement"}),
    effective_from=T0,
    sunset=T0 + 365 * DAY,
)


def test_pause_order_threshold_just_below_and_above() -> None:
    policy = load_preset("pause")

    def paused(flop: int) -> Evaluation:
        windows = training(flop, job="base")
        ledger = ledger_for(policy, windows, runs=[run("base")])
        return evaluate(policy, ledger, at=end_of(windows), orders=[ORDER])

    assert paused(E24).violations == ()
    (violation,) = paused(E24 + 1).violations
    assert violation.reason == "pause_order"
    assert violation.order_id == "pause-2026-01"
    assert violation.threshold.value == E24
    assert "pause-2026-01" in violation.explanation
    assert violation.binding


def test_pause_is_silent_without_an_order() -> None:
    policy = load_preset("pause")
    windows = training(E26, job="base")
    ledger = ledger_for(policy, windows, runs=[run("base")])
    assert evaluate(policy, ledger, at=end_of(windows)) == evaluate(
        policy, ledger, at=end_of(windows), orders=()
    )
    assert evaluate(policy, ledger, at=end_of(windows)).violations == ()
