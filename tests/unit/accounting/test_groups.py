"""Ownership groups under configurable control rules."""

from __future__ import annotations

from fractions import Fraction

import pytest

from brakepedal.accounting.groups import ControlRule, Holding, OwnershipGraph
from brakepedal.errors import InputError
from brakepedal.model.types import EntityId

E = EntityId


def holding(holder: str, held: str, share: str, *, board: bool = False) -> Holding:
    return Holding(E(holder), E(held), Fraction(share), board_control=board)


def graph(holdings: list[Holding], rule: ControlRule | None = None) -> OwnershipGraph:
    entities = {h.holder for h in holdings} | {h.held for h in holdings} | {E("loner")}
    return OwnershipGraph(sorted(entities), holdings, rule)


def test_majority_subsidiary_joins_its_parent() -> None:
    g = graph([holding("acme", "acme-cloud", "0.6")])
    assert g.group_of(E("acme-cloud")) == "acme"
    assert g.members(E("acme")) == ("acme", "acme-cloud")
    assert g.group_of(E("loner")) == "loner"
    assert g.groups() == ("acme", "loner")


def test_exactly_half_is_not_control_unless_inclusive() -> None:
    holdings = [holding("acme", "jv", "1/2")]
    assert graph(holdings).group_of(E("jv")) == "jv"
    inclusive = ControlRule(inclusive=True)
    assert graph(holdings, inclusive).group_of(E("jv")) == "acme"


def test_configurable_threshold() -> None:
    holdings = [holding("acme", "minority", "0.3")]
    assert graph(holdings).group_of(E("minority")) == "minority"
    assert graph(holdings, ControlRule(threshold=Fraction(1, 4))).group_of(E("minority")) == "acme"


def test_board_control_confers_control_unless_the_rule_ignores_it() -> None:
    holdings = [holding("acme", "shell", "0.1", board=True)]
    assert graph(holdings).controls(E("acme"), E("shell"))
    assert not graph(holdings, ControlRule(board_control=False)).controls(E("acme"), E("shell"))


def test_indirect_control_through_controlled_entities_sums() -> None:
    # acme holds 30% of target directly and 30% through a subsidiary it controls.
    holdings = [
        holding("acme", "sub", "0.51"),
        holding("acme", "target", "0.3"),
        holding("sub", "target", "0.3"),
    ]
    assert graph(holdings).group_of(E("target")) == "acme"
    assert graph(holdings, ControlRule(indirect=False)).group_of(E("target")) == "target"


def test_chain_of_subsidiaries_reaches_the_ultimate_parent() -> None:
    holdings = [holding("a", "b", "0.9"), holding("b", "c", "0.9"), holding("c", "d", "0.9")]
    g = graph(holdings)
    assert {g.group_of(E(x)) for x in "abcd"} == {"a"}
    assert g.controls(E("a"), E("d"))


def test_joint_control_joins_both_parents_conservatively() -> None:
    rule = ControlRule(inclusive=True)
    g = graph([holding("p1", "jv", "0.5"), holding("p2", "jv", "0.5")], rule)
    assert g.group_of(E("p1")) == g.group_of(E("p2")) == g.group_of(E("jv")) == "p1"


def test_minority_cross_holdings_are_not_a_cycle() -> None:
    g = graph([holding("a", "b", "0.2"), holding("b", "a", "0.2")])
    assert g.group_of(E("a")) == "a"
    assert g.group_of(E("b")) == "b"


@pytest.mark.parametrize(
    ("build", "reason", "named"),
    [
        (
            lambda: graph([holding("a", "b", "0.6"), holding("b", "a", "0.6")]),
            "ownership.control_cycle",
            "a -> b -> a",
        ),
        (
            lambda: graph([holding("a", "b", "0.7"), holding("c", "b", "0.7")]),
            "ownership.shares_exceed_total",
            "b",
        ),
        (lambda: holding("a", "a", "0.5"), "ownership.self_holding", "a"),
        (lambda: holding("a", "b", "1.5"), "ownership.share_invalid", "a -> b"),
        (
            lambda: OwnershipGraph([E("a")], [holding("a", "ghost", "0.6")]),
            "ownership.entity_unknown",
            "ghost",
        ),
        (
            lambda: graph([holding("a", "b", "0.3"), holding("a", "b", "0.3")]),
            "ownership.duplicate_holding",
            "a -> b",
        ),
        (lambda: ControlRule(threshold=Fraction(0)), "ownership.threshold_invalid", "threshold"),
        (lambda: graph([]).group_of(E("nobody")), "ownership.entity_unknown", "nobody"),
    ],
)
def test_bad_ownership_inputs(build: object, reason: str, named: str) -> None:
    with pytest.raises(InputError) as caught:
        build()  # type: ignore[operator]
    assert caught.value.reason == reason
    assert named in caught.value.message
