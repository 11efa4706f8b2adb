"""Hypothesis properties of policy parsing: round trips, typed errors only, unknown keys named."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brakepedal.errors import InputError
from brakepedal.model.types import MAX_FLOP
from brakepedal.policy.load import parse_policy, policy_from_mapping
from brakepedal.policy.model import AccountingRules, Citation, Policy, Rule, Source
from tests.unit.policy.documents import Document, minimal, to_toml, to_yaml

IDENTIFIERS = st.from_regex(r"[a-z0-9][a-z0-9._:-]{0,24}", fullmatch=True)
TEXT = st.text(
    alphabet=st.characters(min_codepoint=32, exclude_categories=("Cs", "Cc", "Zl", "Zp")),
    min_size=1,
    max_size=40,
).filter(str.strip)
FLOP = st.integers(0, MAX_FLOP)
PRECISIONS = st.lists(
    st.sampled_from(["fp64", "fp32", "fp16", "tf32", "bf16", "fp8", "fp4", "int8", "int4"]),
    min_size=1,
    max_size=9,
    unique=True,
)
SHARES = st.one_of(
    st.sampled_from(["1/2", "0.5", "1", "1/3", "0.25"]),
    st.fractions(min_value=0, max_value=1, max_denominator=1000).filter(bool).map(str),
)


@st.composite
def compute_rules(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["notify", "provider_status", "prohibited", "permit_required"]))
    threshold = draw(FLOP)
    rule: dict[str, Any] = {
        "kind": kind,
        "subject": draw(st.sampled_from(["lineage", "run"])),
        "threshold_flop": str(threshold) if draw(st.booleans()) else threshold,
        "threshold_inclusive": draw(st.booleans()),
    }
    if threshold < MAX_FLOP and draw(st.booleans()):
        rule["upper_flop"] = str(draw(st.integers(threshold + 1, MAX_FLOP)))
    if kind in ("notify", "provider_status") and draw(st.booleans()):
        rule["notify_within_days"] = draw(st.integers(0, 3660))
    if draw(st.booleans()):
        rule["data_domain"] = draw(IDENTIFIERS)
    return rule


@st.composite
def other_rules(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        capacity = (
            {"cluster_peak_ops_per_s": str(draw(st.integers(1, 10**30)))}
            if draw(st.booleans())
            else {"cluster_h100_equivalents": str(draw(st.integers(1, 10**6)))}
        )
        kind = draw(st.sampled_from(["cluster_notify", "cluster_prohibited"]))
        return {"kind": kind, "subject": "site", **capacity}
    return {
        "kind": "provider_status",
        "subject": "downstream_modifier",
        "threshold_flop": str(draw(FLOP)),
        "fraction_of_original": draw(SHARES),
    }


@st.composite
def documents(draw: st.DrawFn) -> Document:
    sources = draw(st.lists(IDENTIFIERS, min_size=1, max_size=3, unique=True))
    rule_ids = draw(st.lists(IDENTIFIERS, min_size=1, max_size=4, unique=True))
    rules = [
        {
            "id": rule_id,
            "title": draw(TEXT),
            "citation": {"source": draw(st.sampled_from(sources)), "pinpoint": draw(TEXT)},
            **draw(st.one_of(compute_rules(), other_rules())),
        }
        for rule_id in rule_ids
    ]
    return {
        "format": "brakepedal.policy",
        "id": draw(IDENTIFIERS),
        "version": draw(st.integers(1, 2**31)),
        "title": draw(TEXT),
        "status": draw(st.sampled_from(["in_force", "reference", "draft"])),
        "jurisdiction": draw(IDENTIFIERS),
        "sources": [
            {"id": s, "title": draw(TEXT), "url": f"https://example.org/{i}"}
            for i, s in enumerate(sources)
        ],
        "accounting": {
            "precisions": draw(PRECISIONS),
            "bound_basis": draw(st.sampled_from(["wall", "busy", "tensor_active"])),
            "control_threshold": draw(SHARES),
            "control_inclusive": draw(st.booleans()),
            "exempt_workloads": draw(st.sampled_from([[], ["inference"]])),
        },
        "rules": rules,
    }


@settings(max_examples=150, deadline=None)
@given(documents())
def test_generated_policies_read_the_same_in_toml_and_yaml_and_round_trip(
    document: Document,
) -> None:
    policy = policy_from_mapping(document, name="generated")
    assert parse_policy(to_toml(document).encode(), name="p.toml") == policy
    assert parse_policy(to_yaml(document).encode(), name="p.yaml") == policy
    dumped = policy.model_dump(exclude_none=True)
    assert parse_policy(to_toml(dumped).encode(), name="again.toml") == policy


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.sampled_from(["p.toml", "p.yaml"]))
def test_arbitrary_bytes_raise_only_input_errors(data: bytes, name: str) -> None:
    with contextlib.suppress(InputError):
        parse_policy(data, name=name)


_LEVELS: list[tuple[str, tuple[str | int, ...], type[Any]]] = [
    ("", (), Policy),
    ("accounting", ("accounting",), AccountingRules),
    ("sources[0]", ("sources", 0), Source),
    ("rules[0]", ("rules", 0), Rule),
    ("rules[0].citation", ("rules", 0, "citation"), Citation),
]


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(_LEVELS),
    st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True),
    st.one_of(st.integers(-5, 5), st.booleans(), TEXT),
    st.sampled_from(["p.toml", "p.yaml"]),
)
def test_one_unknown_key_is_always_refused_by_name(
    level: tuple[str, tuple[str | int, ...], type[Any]], key: str, value: object, name: str
) -> None:
    prefix, path, model = level
    if key in model.model_fields:
        return
    document = copy.deepcopy(minimal())
    target: Any = document
    for part in path:
        target = target[part]
    target[key] = value
    text = to_toml(document) if name.endswith(".toml") else to_yaml(document)
    with pytest.raises(InputError) as caught:
        parse_policy(text.encode(), name=name)
    assert caught.value.reason == "policy.unknown_field"
    field = f"{prefix}.{key}" if prefix else key
    assert caught.value.message.startswith(f"policy {name}: {field}: ")


@given(st.integers(min_value=-MAX_FLOP, max_value=-1), st.booleans())
def test_negative_thresholds_are_refused(threshold: int, as_text: bool) -> None:
    document = minimal()
    document["rules"][0]["threshold_flop"] = str(threshold) if as_text else threshold
    with pytest.raises(InputError) as caught:
        policy_from_mapping(document, name="p")
    assert caught.value.reason == "policy.threshold_negative"
    assert caught.value.message.startswith("policy p: rules[0].threshold_flop: ")


@given(FLOP)
def test_exact_thresholds_are_kept_exactly(threshold: int) -> None:
    document = minimal()
    document["rules"][0]["threshold_flop"] = str(threshold)
    assert policy_from_mapping(document, name="p").rules[0].flop_threshold.value == threshold
