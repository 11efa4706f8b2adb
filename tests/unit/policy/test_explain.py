"""Plain-language policy text and human-readable quantities."""

from __future__ import annotations

from fractions import Fraction

import pytest

from brakepedal.model.types import Flop
from brakepedal.policy.explain import explain, format_flop, format_quantity
from brakepedal.policy.findings import Quantity
from brakepedal.policy.load import load_preset, policy_from_mapping, preset_names
from tests.unit.policy.documents import minimal


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0 FLOP"),
        (16, "16 FLOP"),
        (12_345, "12345 FLOP"),
        (10**22, "1e22 FLOP (10 ZFLOP)"),
        (10**25, "1e25 FLOP (10 YFLOP)"),
        (38 * 10**24, "3.8e25 FLOP (38 YFLOP)"),
        (10**26, "1e26 FLOP (100 YFLOP)"),
        (1_500_000, "1.5e6 FLOP (1.5 MFLOP)"),
        (10**25 + 1, "10000000000000000000000001 FLOP (about 1.000e25)"),
    ],
)
def test_format_flop(value: int, text: str) -> None:
    assert format_flop(Flop(value)) == text
    assert str(Quantity.of_flop(value)) == text


def test_format_other_units() -> None:
    assert format_quantity(Fraction(10**25 + 1, 3), "FLOP") == (
        "10000000000000000000000001/3 FLOP (about 3.333e24)"
    )
    assert format_quantity(10**20, "op/s") == "1e20 op/s"
    assert format_quantity(Fraction(16), "H100-equivalents") == "16 H100-equivalents"
    assert format_quantity(Fraction(33, 2), "H100-equivalents") == (
        "16.5 H100-equivalents (exactly 33/2)"
    )


@pytest.mark.parametrize("name", preset_names())
def test_explain_names_every_rule_threshold_and_citation(name: str) -> None:
    policy = load_preset(name)
    text = explain(policy)
    assert text.startswith(policy.title)
    for rule in policy.rules:
        assert f"[{rule.id}]" in text
        assert policy.citation_text(rule) in text
    for source in policy.sources:
        assert source.url in text


def test_explain_shows_thresholds_in_human_units() -> None:
    assert "more than 1e25 FLOP (10 YFLOP)" in explain(load_preset("eu-ai-act"))
    treaty = explain(load_preset("draft-treaty"))
    assert "more than 1e22 FLOP (10 ZFLOP) and at most 1e24 FLOP (1 YFLOP)" in treaty
    assert "more than 16 H100-equivalents outside monitored sites" in treaty
    assert "at least 1e20 op/s" in explain(load_preset("us-eo-14110"))
    assert "kept for reference" in explain(load_preset("us-eo-14110"))
    assert "above the pause order's threshold" in explain(load_preset("pause"))


def test_explain_shows_exemptions_and_rolling_windows() -> None:
    document = minimal()
    document["accounting"].update(
        exempt_workloads=["inference"], rolling_window_days=90, affiliates="entity"
    )
    text = explain(policy_from_mapping(document, name="p"))
    assert "exempt workloads: inference" in text
    assert "rolling window: 90 days" in text
    assert "summed per entity" in text
