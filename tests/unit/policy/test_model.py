"""The policy models: accessors, derived rules for the ledger, immutability."""

from __future__ import annotations

from fractions import Fraction

import pytest
from pydantic import ValidationError

from brakepedal.accounting.catalogue import Precision
from brakepedal.accounting.flop import BoundBasis, BoundRule
from brakepedal.accounting.groups import ControlRule
from brakepedal.accounting.usage import Workload
from brakepedal.errors import InputError
from brakepedal.policy.load import load_preset, policy_from_mapping
from brakepedal.policy.model import Policy
from tests.unit.policy.documents import minimal


def test_accounting_rules_build_the_ledger_rules() -> None:
    document = minimal()
    document["accounting"].update(
        bound_basis="tensor_active",
        control_threshold="0.25",
        control_inclusive=True,
        control_by_board=False,
        exempt_workloads=["inference"],
    )
    accounting = policy_from_mapping(document, name="p").accounting
    assert accounting.bound_rule() == BoundRule(
        frozenset({Precision.BF16, Precision.FP8}), BoundBasis.TENSOR_ACTIVE
    )
    assert accounting.control_rule() == ControlRule(
        threshold=Fraction(1, 4), inclusive=True, board_control=False, indirect=True
    )
    assert accounting.exempt() == frozenset({Workload.INFERENCE})


def test_defaults_are_the_conservative_ones() -> None:
    accounting = policy_from_mapping(minimal(), name="p").accounting
    assert accounting.bound_basis == "busy"
    assert accounting.count_fine_tuning
    assert accounting.affiliates == "group"
    assert accounting.exempt_workloads == ()
    assert accounting.rolling_window_days is None


def test_lookups_by_id() -> None:
    policy = load_preset("eu-ai-act")
    assert policy.rule("systemic-risk-notification").kind == "notify"
    assert policy.source("eu-ai-act").url.startswith("https://eur-lex.europa.eu/")
    for lookup in (policy.rule, policy.source):
        with pytest.raises(InputError) as caught:
            lookup("nothing")
        assert caught.value.reason.endswith("_unknown")


def test_thresholds_by_rule_kind() -> None:
    treaty = load_preset("draft-treaty")
    compute, cluster = treaty.rule("training-prohibited"), treaty.rule("unmonitored-chip-cluster")
    assert compute.flop_threshold.value == 10**24
    assert cluster.capacity_threshold == 16
    with pytest.raises(InputError):
        _ = compute.capacity_threshold
    with pytest.raises(InputError):
        _ = cluster.flop_threshold
    assert compute.exceeds(10**24 + 1, 10**24)
    assert not compute.exceeds(10**24, 10**24)
    eo = load_preset("us-eo-14110").rule("computing-cluster-report")
    assert eo.capacity_threshold == 10**20
    assert eo.exceeds(10**20, 10**20)  # inclusive


def test_policies_are_frozen_and_hashable() -> None:
    policy = load_preset("pause")
    with pytest.raises(ValidationError):
        policy.version = 2
    assert hash(policy) == hash(load_preset("pause"))


def test_direct_construction_raises_pydantics_error() -> None:
    # parse_policy / policy_from_mapping are the entry points that give InputError.
    with pytest.raises(ValidationError):
        Policy.model_validate({"format": "brakepedal.policy"})


def test_a_share_may_be_a_whole_number() -> None:
    document = minimal()
    document["accounting"]["control_threshold"] = 1
    assert policy_from_mapping(document, name="p").accounting.control_threshold == 1
