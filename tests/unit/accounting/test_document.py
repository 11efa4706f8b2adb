"""The usage document: a table of named bad inputs, a property, and the happy path."""

from __future__ import annotations

import contextlib
import copy
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brakepedal.accounting.catalogue import default_catalogue
from brakepedal.accounting.document import (
    HOLDING_FIELDS,
    RUN_FIELDS,
    WINDOW_FIELDS,
    build_ledger,
    parse_exact,
    parse_usage_document,
)
from brakepedal.accounting.groups import ControlRule
from brakepedal.accounting.ledger import Subject
from brakepedal.accounting.lineage import RunKind
from brakepedal.accounting.usage import Workload
from brakepedal.errors import BrakepedalError, InputError
from brakepedal.model.types import Flop, JobId

from .builders import H100_FP8, RULE

CORPUS = Path(__file__).resolve().parents[3] / "fuzz" / "corpus" / "usage"
SEED: dict[str, Any] = json.loads((CORPUS / "split_lineage.json").read_bytes())


def encode(document: object) -> bytes:
    return json.dumps(document).encode()


def test_seed_document_parses_to_the_expected_ledger() -> None:
    document = parse_usage_document(encode(SEED))
    assert [r.kind for r in document.runs] == [
        RunKind.PRETRAINING,
        RunKind.REINFORCEMENT_LEARNING,
        RunKind.FINE_TUNING,
    ]
    assert document.windows[1].busy_seconds == Fraction(599, 2)
    assert document.windows[3].workload is Workload.INFERENCE
    assert document.holdings[1].voting_share == Fraction(1, 5)
    ledger = build_ledger(document, catalogue=default_catalogue(), rule=RULE, control=ControlRule())
    assert ledger.subjects(Subject.LINEAGE) == ("base", "unattributed:rival")
    assert ledger.total(Subject.RUN, "base") == Flop(300 * H100_FP8)
    rl = ledger.runs.run_of_job(JobId("j2"))
    assert rl is not None
    assert ledger.group_of(ledger.run(rl).owner) == "acme"
    (modification,) = ledger.modifications()
    assert modification.modifier == "rival"


def _with(path: str, value: object) -> dict[str, Any]:
    """SEED with the field at ``path`` (dotted, list indices as numbers) set, or deleted."""
    document = copy.deepcopy(SEED)
    *parents, last = path.split(".")
    node: Any = document
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key: Any = int(last) if last.isdigit() else last
    if value is _DELETE:
        del node[key]
    else:
        node[key] = value
    return document


_DELETE = object()

BAD: list[tuple[str, object, str, str]] = [
    # (name, document, reason, text the message must contain)
    ("top-level unknown field", _with("extra", 1), "usage.unknown_field", "usage.extra"),
    (
        "window unknown field",
        _with("windows.0.bussy", "3"),
        "usage.unknown_field",
        "windows[0].bussy",
    ),
    ("run unknown field", _with("runs.1.parent", "base"), "usage.unknown_field", "runs[1].parent"),
    ("wrong format", _with("format", "brakepedal.usages"), "usage.format_invalid", "usage.format"),
    ("future version", _with("version", 2), "usage.version_unsupported", "usage.version"),
    (
        "negative seconds",
        _with("windows.0.busy_seconds", "-3"),
        "usage.number_invalid",
        "windows[0].busy_seconds",
    ),
    (
        "float seconds",
        _with("windows.0.busy_seconds", 3),
        "usage.number_invalid",
        "windows[0].busy_seconds",
    ),
    (
        "busy beyond window",
        _with("windows.0.busy_seconds", "301"),
        "usage.busy_invalid",
        "windows[0]",
    ),
    (
        "tensor beyond busy",
        _with("windows.0.tensor_active_seconds", "301"),
        "usage.tensor_active_invalid",
        "windows[0]",
    ),
    (
        "naive time",
        _with("windows.0.start", "2026-01-01T00:00:00"),
        "time.format_invalid",
        "windows[0].start",
    ),
    (
        "offset time",
        _with("windows.0.end", "2026-01-01T00:05:00+01:00"),
        "time.not_utc",
        "windows[0].end",
    ),
    ("missing owner", _with("windows.2.owner", _DELETE), "usage.field_missing", "windows[2].owner"),
    (
        "owner not an entity",
        _with("windows.2.owner", "ghost"),
        "usage.entity_unknown",
        "windows[2].owner",
    ),
    (
        "run owner not an entity",
        _with("runs.0.owner", "ghost"),
        "usage.entity_unknown",
        "runs[0].owner",
    ),
    (
        "bad identifier",
        _with("windows.0.device", "GPU 0"),
        "device_id.invalid_character",
        "windows[0].device",
    ),
    (
        "bad workload",
        _with("windows.0.workload", "mining"),
        "usage.field_invalid",
        "windows[0].workload",
    ),
    ("bad run kind", _with("runs.0.kind", "magic"), "usage.field_invalid", "runs[0].kind"),
    (
        "bad commitment",
        _with("runs.0.produces", ["sha256:00"]),
        "lineage.commitment_invalid",
        "runs[0].produces",
    ),
    ("jobs not a list", _with("runs.0.jobs", "j1"), "usage.field_invalid", "runs[0].jobs"),
    (
        "negative declared flop",
        _with("runs.1.declared_flop", "-5"),
        "flop.negative",
        "runs[1].declared_flop",
    ),
    (
        "share above one",
        _with("holdings.0.voting_share", "3/2"),
        "ownership.share_invalid",
        "holdings[0]",
    ),
    (
        "share as float",
        _with("holdings.0.voting_share", 0.6),
        "json.float_not_allowed",
        "usage document",
    ),
    (
        "board control not bool",
        _with("holdings.0.board_control", "yes"),
        "usage.field_invalid",
        "holdings[0].board_control",
    ),
    ("windows not a list", _with("windows", {}), "usage.field_invalid", "windows"),
    ("window not an object", _with("windows.0", 5), "usage.field_invalid", "windows[0]"),
    ("duplicate entity", _with("entities", ["acme", "acme"]), "usage.duplicate_entity", "entities"),
    ("bad entity", _with("entities.0", "Acme"), "entity_id.invalid_character", "entities[0]"),
    (
        "empty window",
        _with("windows.0.end", "2026-01-01T00:00:00Z"),
        "usage.window_empty",
        "windows[0]",
    ),
    (
        "accelerator empty",
        _with("windows.0.accelerator", ""),
        "usage.field_invalid",
        "windows[0].accelerator",
    ),
    ("not an object", [], "json.not_object", "usage document"),
]


@pytest.mark.parametrize(("name", "document", "reason", "named"), BAD, ids=[b[0] for b in BAD])
def test_bad_usage_documents(name: str, document: object, reason: str, named: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_usage_document(encode(document))
    assert caught.value.reason == reason, name
    assert named in caught.value.message, caught.value.message


def test_unknown_accelerator_is_named_when_the_ledger_is_built() -> None:
    document = parse_usage_document(encode(_with("windows.0.accelerator", "H100 SXM6")))
    with pytest.raises(InputError) as caught:
        build_ledger(document, catalogue=default_catalogue(), rule=RULE, control=ControlRule())
    assert caught.value.reason == "catalogue.accelerator_unknown"
    assert "H100 SXM6" in caught.value.message


def test_control_cycle_is_named_when_the_ledger_is_built() -> None:
    cyclic = _with(
        "holdings",
        [
            {"holder": "acme", "held": "rival", "voting_share": "0.6"},
            {"holder": "rival", "held": "acme", "voting_share": "0.6"},
        ],
    )
    with pytest.raises(InputError) as caught:
        build_ledger(
            parse_usage_document(encode(cyclic)),
            catalogue=default_catalogue(),
            rule=RULE,
            control=ControlRule(),
        )
    assert caught.value.reason == "ownership.control_cycle"
    assert "acme -> rival -> acme" in caught.value.message


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("0.6", Fraction(3, 5)), ("1/3", Fraction(1, 3)), ("299.5", Fraction(599, 2))],
)
def test_parse_exact(text: str, value: Fraction) -> None:
    assert parse_exact(text, "x") == value


@pytest.mark.parametrize("text", ["", "-1", "1e3", "1/0", ".5", "5.", " 1", "1/", "0x10", "1" * 16])
def test_parse_exact_refuses(text: str) -> None:
    with pytest.raises(InputError, match=r"usage\.number_invalid"):
        parse_exact(text, "x")


KNOWN = {"windows": WINDOW_FIELDS, "runs": RUN_FIELDS, "holdings": HOLDING_FIELDS}


@settings(max_examples=200)
@given(st.sampled_from(["windows", "runs", "holdings"]), st.text(min_size=1, max_size=12))
def test_any_unknown_field_is_refused_by_name(section: str, key: str) -> None:
    document = copy.deepcopy(SEED)
    record = document[section][0]
    if key in KNOWN[section]:
        return
    record[key] = "x"
    with pytest.raises(InputError) as caught:
        parse_usage_document(encode(document))
    assert caught.value.reason == "usage.unknown_field"
    assert f"{section}[0].{key}" in caught.value.message


@settings(max_examples=200)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_our_errors(data: bytes) -> None:
    with contextlib.suppress(BrakepedalError):
        parse_usage_document(data)
