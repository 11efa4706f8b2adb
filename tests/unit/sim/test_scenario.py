"""Scenario files: every shipped one parses; a table of named bad inputs, each refused with a
stable reason and a message naming the field; and properties over generated scenarios."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from brakepedal.errors import InputError
from brakepedal.sim.scenario import (
    catalogue_names,
    load_catalogue_scenario,
    load_scenario,
    parse_scenario,
)
from brakepedal.sim.strategies import STRATEGIES

Document = dict[str, Any]


def minimal() -> Document:
    return {
        "format": "brakepedal.scenario",
        "name": "t",
        "days": 1,
        "entities": [{"id": "lab-a"}, {"id": "lab-a-sub", "owner": "lab-a"}],
        "clusters": [{"id": "c1", "entity": "lab-a", "devices": 4}],
        "workloads": [
            {"id": "w1", "kind": "pretraining", "cluster": "c1", "lineage": "l1", "hours": 6}
        ],
        "governance": {"orders": [{"id": "o1", "at_hour": 2, "threshold_device_hours": 10}]},
        "actors": [{"entity": "lab-a", "strategy": "honest"}],
    }


def _dump(document: Document) -> str:
    return yaml.safe_dump(document, sort_keys=False)


def test_every_shipped_scenario_parses_and_names_known_strategies() -> None:
    names = catalogue_names()
    assert "honest" in names
    assert "sampling-sweep" in names
    for name in names:
        scenario = load_catalogue_scenario(name)
        assert scenario.name == name
        assert all(actor.strategy in STRATEGIES for actor in scenario.actors)


def test_the_catalogue_has_a_scenario_for_every_strategy() -> None:
    used = {a.strategy for n in catalogue_names() for a in load_catalogue_scenario(n).actors}
    assert used == set(STRATEGIES)


def test_a_minimal_scenario_parses_with_its_defaults() -> None:
    scenario = parse_scenario(_dump(minimal()))
    assert scenario.window_minutes == 60
    assert scenario.audit.every_hours == 6
    assert scenario.device_count == 4
    assert scenario.end - scenario.start == scenario.at(24) - scenario.start


def test_load_scenario_names_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as error:
        load_scenario(tmp_path / "missing.yaml")
    assert error.value.reason == "scenario.unreadable"


def test_an_unknown_shipped_name_is_refused() -> None:
    with pytest.raises(InputError) as error:
        load_catalogue_scenario("no-such-scenario")
    assert error.value.reason == "scenario.unknown"


Change = Callable[[Document], None]


def _set(path: str, value: object) -> Change:
    """Set the field at dotted ``path`` (``workloads.0.cluster``); ``...`` deletes it."""

    def change(document: Document) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        key: int | str = int(last) if isinstance(target, list) else last
        if value is ...:
            del target[key]
        else:
            target[key] = value

    return change


def _append(path: str, item: object) -> Change:
    def change(document: Document) -> None:
        document[path].append(copy.deepcopy(item))

    return change


def _both(*changes: Change) -> Change:
    def change(document: Document) -> None:
        for each in changes:
            each(document)

    return change


BAD: list[Any] = [
    pytest.param(_set("format", "other"), "scenario.field_invalid", "format", id="format-unknown"),
    pytest.param(_set("name", ...), "scenario.field_missing", "name", id="name-missing"),
    pytest.param(_set("name", "Has Spaces"), "scenario.field_invalid", "name", id="name-invalid"),
    pytest.param(_set("colour", "red"), "scenario.unknown_field", "colour", id="unknown-field"),
    pytest.param(_set("days", 0), "scenario.field_invalid", "days", id="days-zero"),
    pytest.param(_set("days", 400), "scenario.field_invalid", "days", id="days-too-many"),
    pytest.param(_set("days", "nan"), "scenario.field_invalid", "days", id="days-nan"),
    pytest.param(
        _set("window_minutes", 7), "scenario.field_invalid", "window_minutes", id="window-odd"
    ),
    pytest.param(
        _set("start", "2026-06-01T00:30:00Z"),
        "scenario.field_invalid",
        "start",
        id="start-not-whole-hour",
    ),
    pytest.param(
        _set("start", "2026-06-01T00:00:00"), "scenario.field_invalid", "start", id="start-naive"
    ),
    pytest.param(_set("entities", []), "scenario.field_invalid", "entities", id="no-entities"),
    pytest.param(
        _set("entities.1.owner", "nobody"),
        "scenario.reference_invalid",
        "entities[1].owner",
        id="owner-unknown",
    ),
    pytest.param(
        _set("entities.0.owner", "lab-a-sub"),
        "scenario.reference_invalid",
        "owner",
        id="ownership-cycle",
    ),
    pytest.param(
        # The cycle walk from lab-a reaches lab-a-sub's unknown owner before lab-a-sub's own
        # check: refused at lab-a-sub's owner, not a KeyError.
        _set(
            "entities", [{"id": "lab-a", "owner": "lab-a-sub"}, {"id": "lab-a-sub", "owner": "z"}]
        ),
        "scenario.reference_invalid",
        "entities[1].owner: no entity 'z'",
        id="owner-chain-to-unknown",
    ),
    pytest.param(
        _set("workloads.0.first", 6),
        "scenario.reference_invalid",
        "workloads[0].first: device 6 is not in c1 (devices 0..3)",
        id="workload-first-beyond-cluster",
    ),
    pytest.param(
        _set("days", 1.01),
        "scenario.field_invalid",
        "days: 1.01 days (1454.4 minutes) is not a whole number of 60-minute windows",
        id="days-not-whole-windows",
    ),
    pytest.param(
        # Half a day of daily windows: the world would simulate (and audit) a whole day.
        _both(_set("days", 0.5), _set("window_minutes", 1440)),
        "scenario.field_invalid",
        "days: 0.5 days (720 minutes) is not a whole number of 1440-minute windows",
        id="days-not-whole-windows-daily",
    ),
    pytest.param(
        _both(
            _set("workloads.0.hours", 5.5),
            _append(
                "workloads",
                {"id": "w2", "kind": "inference", "cluster": "c1", "start_hour": 5.5, "hours": 1},
            ),
        ),
        "scenario.devices_overlap",
        "workloads[1]: shares devices of c1 with workload 'w1' within one 60-minute window",
        id="devices-shared-within-a-window",
    ),
    pytest.param(
        _set("entities.1.share", 1.5),
        "scenario.field_invalid",
        "entities[1].share",
        id="share-above-one",
    ),
    pytest.param(
        _append("entities", {"id": "lab-a"}),
        "scenario.duplicate_id",
        "entities[2].id",
        id="entity-twice",
    ),
    pytest.param(
        _set("clusters.0.entity", "nobody"),
        "scenario.reference_invalid",
        "clusters[0].entity",
        id="cluster-entity-unknown",
    ),
    pytest.param(
        _set("clusters.0.devices", 0),
        "scenario.field_invalid",
        "clusters[0].devices",
        id="cluster-empty",
    ),
    pytest.param(
        _set("clusters.0.devices", 2_000_000),
        "scenario.field_invalid",
        "clusters[0].devices",
        id="cluster-too-large",
    ),
    pytest.param(
        _set("workloads.0.cluster", "c9"),
        "scenario.reference_invalid",
        "workloads[0].cluster",
        id="workload-cluster-unknown",
    ),
    pytest.param(
        _set("workloads.0.kind", "mining"),
        "scenario.field_invalid",
        "workloads[0].kind",
        id="workload-kind-unknown",
    ),
    pytest.param(
        _set("workloads.0.devices", 9),
        "scenario.reference_invalid",
        "workloads[0].devices",
        id="workload-more-devices-than-cluster",
    ),
    pytest.param(
        _set("workloads.0.lineage", ...),
        "scenario.reference_invalid",
        "workloads[0].lineage",
        id="training-without-lineage",
    ),
    pytest.param(
        _set("workloads.0.start_hour", 30),
        "scenario.reference_invalid",
        "workloads[0].start_hour",
        id="workload-after-end",
    ),
    pytest.param(
        _append("workloads", {"id": "w2", "kind": "inference", "cluster": "c1", "devices": 2}),
        "scenario.devices_overlap",
        "workloads[1]",
        id="devices-given-twice",
    ),
    pytest.param(
        _set("governance.orders.0.threshold_device_hours", -1),
        "scenario.field_invalid",
        "threshold_device_hours",
        id="threshold-negative",
    ),
    pytest.param(
        _set("governance", {"lifts": [{"id": "l1", "at_hour": 1, "lifts": "o9"}]}),
        "scenario.reference_invalid",
        "governance.lifts[0].lifts",
        id="lift-of-unknown-order",
    ),
    pytest.param(
        _set(
            "governance.permits",
            [
                {
                    "id": "p1",
                    "at_hour": 0,
                    "order": "o9",
                    "owner_group": "lab-a",
                    "lineage": "l1",
                    "budget_device_hours": 1,
                    "valid_hours": 1,
                }
            ],
        ),
        "scenario.reference_invalid",
        "governance.permits[0].order",
        id="permit-under-unknown-order",
    ),
    pytest.param(
        _set("actors.0.entity", "nobody"),
        "scenario.reference_invalid",
        "actors[0].entity",
        id="actor-unknown",
    ),
    pytest.param(
        _set("actors.0.strategy", "bribe"),
        "scenario.strategy_unknown",
        "actors[0].strategy",
        id="strategy-unknown",
    ),
    pytest.param(
        _set("actors.0.params", {"x": 1}),
        "scenario.strategy_invalid",
        "actors[0].params.x",
        id="strategy-param-unknown",
    ),
    pytest.param(
        _set(
            "actors.0",
            {"entity": "lab-a", "strategy": "subsidiary_split", "params": {"to": "lab-a"}},
        ),
        "scenario.strategy_invalid",
        "actors[0].params.to",
        id="split-to-not-owned",
    ),
    pytest.param(
        _set(
            "actors.0",
            {"entity": "lab-a", "strategy": "throttle_as_inference", "params": {"duty": 11}},
        ),
        "scenario.strategy_invalid",
        "actors[0].params.duty",
        id="duty-out-of-range",
    ),
    pytest.param(
        _set("actors.0", {"entity": "lab-a", "strategy": "smuggled_devices"}),
        "scenario.strategy_invalid",
        "actors[0].entity",
        id="smuggling-without-unenrolled-devices",
    ),
    pytest.param(
        _set(
            "actors.0",
            {"entity": "lab-a", "strategy": "registry_drop", "params": {"target": "lab-a"}},
        ),
        "scenario.strategy_invalid",
        "actors[0].entity",
        id="registry-strategy-for-a-lab",
    ),
    pytest.param(
        _set("audit", {"budget": -1}),
        "scenario.field_invalid",
        "audit.budget",
        id="budget-negative",
    ),
    pytest.param(
        _set("start", "9999-12-31T00:00:00Z"),
        "scenario.field_invalid",
        "start",
        id="start-far-future",
    ),
    pytest.param(
        _set("governance.orders.0.threshold_device_hours", 1e308),
        "scenario.field_invalid",
        "threshold_device_hours",
        id="threshold-huge",
    ),
    pytest.param(
        _set("entities", [{"id": "registry"}]),
        "scenario.reference_invalid",
        "entities[0].id",
        id="entity-named-registry",
    ),
    pytest.param(
        _set("clusters.0.accelerator", "abacus"),
        "scenario.reference_invalid",
        "clusters[0].accelerator",
        id="accelerator-unknown",
    ),
    pytest.param(
        _set("clusters.0.accelerator", "NVIDIA H100 SXM5 80GB"),
        "scenario.reference_invalid",
        "catalogue id",
        id="accelerator-not-an-id",
    ),
    pytest.param(
        _set(
            "actors.0", {"entity": "lab-a", "strategy": "chunked_run", "params": {"chunk_hours": 0}}
        ),
        "scenario.strategy_invalid",
        "chunk_hours",
        id="chunk-zero",
    ),
    pytest.param(
        _set(
            "actors.0",
            {"entity": "lab-a", "strategy": "chunked_run", "params": {"chunk_hours": float("inf")}},
        ),
        "scenario.strategy_invalid",
        "chunk_hours",
        id="chunk-infinite",
    ),
    pytest.param(
        _set(
            "actors.0",
            {"entity": "lab-a", "strategy": "chunked_run", "params": {"chunk_hours": 1.5}},
        ),
        "scenario.strategy_invalid",
        "chunk_hours",
        id="chunk-not-whole-windows",
    ),
    pytest.param(
        _set(
            "actors.0",
            {"entity": "lab-a", "strategy": "chunked_run", "params": {"chunk_hours": 0.001}},
        ),
        "scenario.strategy_invalid",
        "chunk_hours",
        id="chunk-shorter-than-a-window",
    ),
    pytest.param(
        _set("start", "9000-06-01T00:00:00Z"),
        "scenario.field_invalid",
        "start",
        id="start-beyond-usage-times",
    ),
    pytest.param(
        _set(
            "actors.0",
            {"entity": "lab-a", "strategy": "throttle_as_inference", "params": {"duty": 1}},
        ),
        "scenario.strategy_invalid",
        "duty",
        id="duty-below-what-is-busy",
    ),
    pytest.param(
        _set(
            "actors.0",
            {"entity": "lab-a", "strategy": "backdated_clock", "params": {"hours": 10**9}},
        ),
        "scenario.strategy_invalid",
        "hours",
        id="backdate-huge",
    ),
    pytest.param(
        _set(
            "actors.0", {"entity": "lab-a", "strategy": "cloned_identity", "params": {"devices": 0}}
        ),
        "scenario.strategy_invalid",
        "devices",
        id="clone-none",
    ),
]


@pytest.mark.parametrize(("change", "reason", "where"), BAD)
def test_bad_scenarios_are_refused_naming_the_field(
    change: Change, reason: str, where: str
) -> None:
    document = minimal()
    change(document)
    with pytest.raises(InputError) as error:
        parse_scenario(_dump(document), name="bad.yaml")
    assert error.value.reason == reason
    assert "scenario bad.yaml: " in error.value.message
    assert where in error.value.message


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("a: [", "scenario.syntax_invalid", id="not-yaml"),
        pytest.param("- 1\n- 2\n", "scenario.not_mapping", id="a-list"),
        pytest.param("a: &x 1\nb: *x\n", "scenario.syntax_invalid", id="alias"),
        pytest.param("a: 1\na: 2\n", "scenario.syntax_invalid", id="duplicate-key"),
        pytest.param("x" * 1_000_001, "scenario.too_large", id="too-large"),
        pytest.param(b"\xff\xfe", "scenario.encoding_invalid", id="not-utf8"),
    ],
)
def test_unreadable_text_is_refused(text: str | bytes, reason: str) -> None:
    with pytest.raises(InputError) as error:
        parse_scenario(text)
    assert error.value.reason == reason


_names = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(
    entities=st.lists(_names, min_size=1, max_size=4, unique=True),
    devices=st.integers(1, 64),
    windows=st.integers(1, 30),
    window=st.sampled_from([5, 15, 60, 240, 1440]),
)
def test_generated_scenarios_parse_and_keep_their_values(
    entities: list[str], devices: int, windows: int, window: int
) -> None:
    document = {
        "format": "brakepedal.scenario",
        "name": "gen",
        # A whole number of windows, written as a (often inexact) float of days.
        "days": windows * window / 1440,
        "window_minutes": window,
        "entities": [{"id": e} for e in entities],
        "clusters": [{"id": f"c-{e}", "entity": e, "devices": devices} for e in entities],
        "workloads": [{"id": f"w-{e}", "kind": "inference", "cluster": f"c-{e}"} for e in entities],
        "actors": [{"entity": e, "strategy": "honest"} for e in entities],
    }
    scenario = parse_scenario(_dump(document))
    assert scenario.device_count == devices * len(entities)
    assert scenario.window_minutes == window
    assert [e.id for e in scenario.entities] == entities


@settings(max_examples=150, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=12,
    ),
    st.sampled_from(["entities", "clusters", "workloads", "governance", "actors", "audit", "days"]),
)
def test_any_value_in_any_field_is_accepted_or_refused_with_an_input_error(
    value: object, key: str
) -> None:
    document = minimal()
    document[key] = value
    reason = None
    try:
        parse_scenario(yaml.safe_dump(document))
    except InputError as e:
        reason = e.reason
    assert reason is None or reason.startswith("scenario.")


def test_the_example_in_the_docs_parses() -> None:
    text = (Path(__file__).parents[3] / "docs" / "simulator.md").read_text()
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    scenario = parse_scenario(example, name="docs/simulator.md")
    assert scenario.name == "subsidiary-split"


def test_duplicate_governance_ids_name_the_list_and_the_first_use() -> None:
    """Orders, permits and lifts share one namespace; the path is the second use's own."""
    document = minimal()
    document["governance"]["permits"] = [
        {
            "id": "p1",
            "at_hour": 1,
            "order": "o1",
            "owner_group": "lab-a",
            "lineage": "l1",
            "budget_device_hours": 1,
            "valid_hours": 2,
        }
    ]
    document["governance"]["lifts"] = [{"id": "p1", "at_hour": 3, "lifts": "o1"}]
    with pytest.raises(InputError) as error:
        parse_scenario(_dump(document), name="bad.yaml")
    assert error.value.reason == "scenario.duplicate_id"
    assert error.value.message == (
        "scenario bad.yaml: governance.lifts[0].id: 'p1' appears twice "
        "(first at governance.permits[0].id)"
    )
    document["governance"]["lifts"] = []
    document["governance"]["orders"].append(dict(document["governance"]["orders"][0]))
    with pytest.raises(InputError) as error:
        parse_scenario(_dump(document), name="bad.yaml")
    assert "governance.orders[1].id: 'o1' appears twice" in error.value.message


def test_a_first_device_beyond_the_cluster_is_named_as_first_with_or_without_devices() -> None:
    for extra in ({}, {"devices": 1}):
        document = minimal()
        document["workloads"][0] |= {"first": 6, **extra}
        with pytest.raises(InputError) as error:
            parse_scenario(_dump(document), name="bad.yaml")
        assert "workloads[0].first: device 6 is not in c1" in error.value.message
        assert "6..3" not in error.value.message


@pytest.mark.parametrize(
    ("days", "window"), [(1, 60), (0.25, 30), (1 / 3, 480), (7, 1440), (5 / 1440, 5)]
)
def test_whole_windows_of_days_are_accepted(days: float, window: int) -> None:
    document = minimal() | {"days": days, "window_minutes": window}
    document["workloads"][0]["hours"] = days * 24
    document["governance"]["orders"][0]["at_hour"] = 0
    assert parse_scenario(_dump(document)).days == days


def test_back_to_back_workloads_on_window_boundaries_are_accepted() -> None:
    """One device, one job per window: b-train then b-tune at hour 6 (a boundary)."""
    document = minimal()
    document["workloads"].append(
        {
            "id": "w2",
            "kind": "finetune",
            "cluster": "c1",
            "lineage": "l1",
            "start_hour": 6,
            "hours": 2,
        }
    )
    assert len(parse_scenario(_dump(document)).workloads) == 2
