"""Reading policy files: a table of named bad inputs, in TOML and in YAML, each refused with a
stable reason and a message naming the field."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from brakepedal.errors import InputError
from brakepedal.model.limits import Limits
from brakepedal.policy.load import load_preset, parse_policy, policy_from_mapping
from tests.unit.policy.documents import Document, encode, minimal, to_toml, to_yaml

Change = Callable[[Document], None]


def _set(path: str, value: object) -> Change:
    """Set the field at dotted ``path`` (``rules.0.kind``); ``...`` deletes it."""

    def change(document: Document) -> None:
        *parents, last = path.split(".")
        target: object = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]  # type: ignore[index]
        assert isinstance(target, dict)
        if value is ...:
            del target[last]
        else:
            target[last] = value

    return change


def _second_rule(**fields: object) -> Change:
    def change(document: Document) -> None:
        document["rules"].append({**copy.deepcopy(document["rules"][0]), **fields})

    return change


def _replace_rule(**fields: object) -> Change:
    def change(document: Document) -> None:
        rule = document["rules"][0]
        for key in ("notify_within_days", "threshold_flop"):
            rule.pop(key, None)
        rule.update(fields)

    return change


CLUSTER = {"kind": "cluster_notify", "subject": "site", "cluster_peak_ops_per_s": "1e20"}

# change, reason, field the message must name
BAD_FIELDS = [
    pytest.param(_set("colour", "red"), "unknown_field", "colour", id="unknown-top-level-field"),
    pytest.param(
        _set("rules.0.bogus", 1), "unknown_field", "rules[0].bogus", id="unknown-rule-field"
    ),
    pytest.param(
        _set("accounting.precison", []),
        "unknown_field",
        "accounting.precison",
        id="unknown-accounting-field",
    ),
    pytest.param(
        _set("rules.0.citation.article", "x"),
        "unknown_field",
        "rules[0].citation.article",
        id="unknown-citation-field",
    ),
    pytest.param(
        _set("sources.0.doi", "x"), "unknown_field", "sources[0].doi", id="unknown-source-field"
    ),
    pytest.param(
        _set("rules.0.threshold_flop", "-1e25"),
        "threshold_negative",
        "rules[0].threshold_flop",
        id="negative-threshold",
    ),
    pytest.param(
        _set("rules.0.threshold_flop", -1),
        "threshold_negative",
        "rules[0].threshold_flop",
        id="negative-integer-threshold",
    ),
    pytest.param(
        _set("rules.0.threshold_flop", "lots"),
        "threshold_invalid",
        "rules[0].threshold_flop",
        id="threshold-not-a-number",
    ),
    pytest.param(
        _set("rules.0.threshold_flop", "1.5"),
        "threshold_invalid",
        "rules[0].threshold_flop",
        id="threshold-fractional",
    ),
    pytest.param(
        _set("rules.0.threshold_flop", "1e41"),
        "threshold_invalid",
        "rules[0].threshold_flop",
        id="threshold-too-large",
    ),
    pytest.param(
        _set("rules.0.threshold_flop", 1e25),
        "threshold_not_exact",
        "rules[0].threshold_flop",
        id="threshold-float",
    ),
    pytest.param(
        _set("rules.0.threshold_flop", True),
        "threshold_invalid",
        "rules[0].threshold_flop",
        id="threshold-bool",
    ),
    pytest.param(
        _set("rules.0.threshold_flop", ["1e25"]),
        "threshold_invalid",
        "rules[0].threshold_flop",
        id="threshold-list",
    ),
    pytest.param(
        _set("rules.0.threshold_flop", ...),
        "field_missing",
        "rules[0].threshold_flop",
        id="missing-threshold",
    ),
    pytest.param(
        _set("rules.0.citation", ...),
        "citation_missing",
        "rules[0].citation",
        id="missing-citation",
    ),
    pytest.param(
        _set("rules.0.citation.pinpoint", ...),
        "field_missing",
        "rules[0].citation.pinpoint",
        id="citation-without-pinpoint",
    ),
    pytest.param(
        _set("rules.0.citation.pinpoint", "  "),
        "field_invalid",
        "rules[0].citation.pinpoint",
        id="citation-blank-pinpoint",
    ),
    pytest.param(
        _set("rules.0.citation.source", "elsewhere"),
        "citation_unknown_source",
        "rules[0].citation.source",
        id="citation-unknown-source",
    ),
    pytest.param(
        _set("accounting.precisions", ["fp33"]),
        "precision_unknown",
        "accounting.precisions[0]",
        id="unknown-precision",
    ),
    pytest.param(
        _set("accounting.precisions", ["fp8", "fp8"]),
        "field_invalid",
        "accounting.precisions",
        id="precision-twice",
    ),
    pytest.param(
        _set("accounting.precisions", []), "list_empty", "accounting.precisions", id="no-precisions"
    ),
    pytest.param(_set("rules", []), "list_empty", "rules", id="no-rules"),
    pytest.param(_set("sources", []), "list_empty", "sources", id="no-sources"),
    pytest.param(_set("accounting", ...), "field_missing", "accounting", id="missing-accounting"),
    pytest.param(_set("version", 0), "field_invalid", "version", id="version-zero"),
    pytest.param(_set("version", "1"), "field_invalid", "version", id="version-string"),
    pytest.param(_set("version", True), "field_invalid", "version", id="version-bool"),
    pytest.param(_set("format", "brakepedal.usage"), "field_invalid", "format", id="wrong-format"),
    pytest.param(_set("format", ...), "field_missing", "format", id="missing-format"),
    pytest.param(_set("id", "EU AI Act"), "field_invalid", "id", id="id-not-an-identifier"),
    pytest.param(_set("status", "repealed"), "field_invalid", "status", id="unknown-status"),
    pytest.param(_set("title", ""), "field_invalid", "title", id="empty-title"),
    pytest.param(
        _set("sources.0.url", "http://example.org"),
        "field_invalid",
        "sources[0].url",
        id="http-url",
    ),
    pytest.param(
        _set("accounting.control_threshold", "1.5"),
        "field_invalid",
        "accounting.control_threshold",
        id="control-share-above-one",
    ),
    pytest.param(
        _set("accounting.control_threshold", 0.5),
        "field_invalid",
        "accounting.control_threshold",
        id="control-share-float",
    ),
    pytest.param(
        _set("accounting.control_threshold", "-1/2"),
        "threshold_negative",
        "accounting.control_threshold",
        id="control-share-negative",
    ),
    pytest.param(
        _set("accounting.bound_basis", "hope"),
        "field_invalid",
        "accounting.bound_basis",
        id="bound-basis-unknown",
    ),
    pytest.param(
        _set("accounting.exempt_workloads", ["training"]),
        "field_invalid",
        "accounting.exempt_workloads[0]",
        id="exempt-training",
    ),
    pytest.param(
        _set("accounting.reporting_cadence_minutes", 0),
        "field_invalid",
        "accounting.reporting_cadence_minutes",
        id="cadence-zero",
    ),
    pytest.param(
        _set("accounting.count_fine_tuning", False),
        "field_invalid",
        "rules[0].subject",
        id="lineage-without-fine-tuning",
    ),
    pytest.param(_second_rule(), "duplicate_id", "rules[1].id", id="duplicate-rule-id"),
    pytest.param(
        lambda d: d["sources"].append(copy.deepcopy(d["sources"][0])),
        "duplicate_id",
        "sources[1].id",
        id="duplicate-source-id",
    ),
    pytest.param(
        _set("rules.0.upper_flop", "1e24"),
        "field_invalid",
        "rules[0].upper_flop",
        id="upper-not-above-threshold",
    ),
    pytest.param(
        _set("rules.0.notify_within_days", -1),
        "field_invalid",
        "rules[0].notify_within_days",
        id="negative-notify-days",
    ),
    pytest.param(
        _set("rules.0.kind", "prohibited"),
        "field_invalid",
        "rules[0].notify_within_days",
        id="deadline-on-prohibition",
    ),
    pytest.param(
        _replace_rule(**CLUSTER, threshold_flop="1e25"),
        "field_invalid",
        "rules[0].threshold_flop",
        id="cluster-with-flop-threshold",
    ),
    pytest.param(
        _replace_rule(kind="cluster_notify", subject="site"),
        "field_missing",
        "rules[0].cluster_peak_ops_per_s",
        id="cluster-without-capacity",
    ),
    pytest.param(
        _replace_rule(**CLUSTER, cluster_h100_equivalents="16"),
        "field_missing",
        "rules[0].cluster_peak_ops_per_s",
        id="cluster-with-both-capacities",
    ),
    pytest.param(
        _replace_rule(**{**CLUSTER, "cluster_peak_ops_per_s": "-1"}),
        "threshold_negative",
        "rules[0].cluster_peak_ops_per_s",
        id="cluster-negative-capacity",
    ),
    pytest.param(
        _replace_rule(subject="site", kind="notify", threshold_flop="1"),
        "field_invalid",
        "rules[0].subject",
        id="site-subject-notify",
    ),
    pytest.param(
        _set("rules.0.cluster_h100_equivalents", "16"),
        "field_invalid",
        "rules[0].cluster_h100_equivalents",
        id="capacity-on-compute-rule",
    ),
    pytest.param(
        _replace_rule(kind="provider_status", subject="downstream_modifier", threshold_flop="0"),
        "field_missing",
        "rules[0].fraction_of_original",
        id="modifier-without-fraction",
    ),
    pytest.param(
        _set("rules.0.fraction_of_original", "1/3"),
        "field_invalid",
        "rules[0].fraction_of_original",
        id="fraction-on-lineage-rule",
    ),
    pytest.param(
        _replace_rule(kind="permit_required", subject="group", threshold_flop="1"),
        "field_invalid",
        "rules[0].subject",
        id="permit-for-a-group",
    ),
    pytest.param(
        _set("rules.0.during_pause_only", True),
        "field_invalid",
        "rules[0].during_pause_only",
        id="pause-only-notify",
    ),
    pytest.param(
        _set("rules.0.post_training_only", True),
        "field_invalid",
        "rules[0].post_training_only",
        id="post-training-lineage",
    ),
    pytest.param(
        _set("accounting.exempt_workloads", ["inference", "inference"]),
        "field_invalid",
        "accounting.exempt_workloads",
        id="exempt-twice",
    ),
    pytest.param(_set("title", "x" * 201), "field_invalid", "title", id="title-too-long"),
    pytest.param(
        _replace_rule(kind="cluster_notify", subject="lineage", cluster_peak_ops_per_s="1"),
        "field_invalid",
        "rules[0].subject",
        id="cluster-kind-for-lineage",
    ),
    pytest.param(
        _replace_rule(**CLUSTER, during_pause_only=True),
        "field_invalid",
        "rules[0].during_pause_only",
        id="cluster-during-pause",
    ),
    pytest.param(
        _replace_rule(**{**CLUSTER, "cluster_peak_ops_per_s": "0"}),
        "threshold_invalid",
        "rules[0].cluster_peak_ops_per_s",
        id="cluster-zero-capacity",
    ),
    pytest.param(
        _set("rules.0.monitored_sites_exempt", True),
        "field_invalid",
        "rules[0].monitored_sites_exempt",
        id="monitored-exemption-on-compute-rule",
    ),
    pytest.param(
        _replace_rule(
            kind="prohibited",
            subject="downstream_modifier",
            threshold_flop="0",
            fraction_of_original="1/3",
        ),
        "field_invalid",
        "rules[0].kind",
        id="modifier-prohibited",
    ),
    pytest.param(
        _replace_rule(
            kind="notify",
            subject="downstream_modifier",
            threshold_flop="0",
            fraction_of_original="1/3",
            notify_within_days=14,
        ),
        "field_invalid",
        "rules[0].notify_within_days",
        id="modifier-deadline",
    ),
    pytest.param(
        _replace_rule(kind="notify", subject="group", threshold_flop="1", data_domain="bio"),
        "field_invalid",
        "rules[0].data_domain",
        id="data-domain-for-group",
    ),
    pytest.param(
        _set("rules.0.data_domain", "Bio Seq"),
        "field_invalid",
        "rules[0].data_domain",
        id="data-domain-not-identifier",
    ),
]


@pytest.mark.parametrize("name", ["bad.toml", "bad.yaml"])
@pytest.mark.parametrize(("change", "reason", "field"), BAD_FIELDS)
def test_bad_policy_files_name_the_field(
    name: str, change: Change, reason: str, field: str
) -> None:
    document = minimal()
    change(document)
    with pytest.raises(InputError) as caught:
        parse_policy(encode(document, name), name=name)
    assert caught.value.reason == f"policy.{reason}"
    assert caught.value.message.startswith(f"policy {name}: {field}: ")


ALIAS_BOMB = b"""\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]
"""

BAD_FILES = [
    pytest.param(b"\xff\xfe", "p.toml", "not_utf8", "not UTF-8", id="not-utf8-toml"),
    pytest.param(b"id: \xc3\x28", "p.yaml", "not_utf8", "not UTF-8", id="not-utf8-yaml"),
    pytest.param(b"x" * 20_001, "p.toml", "too_large", "20001 bytes", id="too-large"),
    pytest.param(b"format = ", "p.toml", "syntax_invalid", "not valid TOML", id="toml-syntax"),
    pytest.param(b"a = 1\na = 2\n", "p.toml", "syntax_invalid", "not valid TOML", id="toml-dup"),
    pytest.param(b"[" * 15_000, "p.toml", "syntax_invalid", "TOML", id="toml-deep"),
    pytest.param(b"a: [1\n", "p.yaml", "syntax_invalid", "not valid YAML", id="yaml-syntax"),
    pytest.param(ALIAS_BOMB, "p.yaml", "syntax_invalid", "aliases", id="yaml-alias-bomb"),
    pytest.param(b"a: 1\na: 2\n", "p.yaml", "syntax_invalid", "duplicate key", id="yaml-dup"),
    pytest.param(b"<<: {a: 1}\n", "p.yaml", "syntax_invalid", "merge keys", id="yaml-merge"),
    pytest.param(b"[" * 15_000, "p.yaml", "syntax_invalid", "YAML", id="yaml-deep"),
    pytest.param(
        b"a: !!python/object/apply:os.system ['true']\n",
        "p.yml",
        "syntax_invalid",
        "python/object",
        id="yaml-python-tag",
    ),
    pytest.param(b"- 1\n- 2\n", "p.yaml", "not_a_table", "not list", id="top-level-list"),
    pytest.param(b"42\n", "p.yaml", "not_a_table", "not int", id="top-level-scalar"),
    pytest.param(b"", "p.yaml", "not_a_table", "not NoneType", id="empty-yaml"),
    pytest.param(b"{}", "p.json", "format_unknown", ".toml, .yaml or .yml", id="json-name"),
    pytest.param(b"", "p.toml", "field_missing", "format: field required", id="empty-toml"),
]


@pytest.mark.parametrize(("data", "name", "reason", "text"), BAD_FILES)
def test_bad_policy_bytes(data: bytes, name: str, reason: str, text: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_policy(data, name=name, limits=Limits(max_json_bytes=20_000))
    assert caught.value.reason == f"policy.{reason}"
    assert caught.value.message.startswith(f"policy {name}: ")
    assert text in caught.value.message


def test_parse_policy_needs_bytes() -> None:
    with pytest.raises(InputError) as caught:
        parse_policy("format = 1", name="p.toml")  # type: ignore[arg-type]
    assert caught.value.reason == "policy.not_bytes"


def test_policy_from_mapping_refuses_non_mappings() -> None:
    with pytest.raises(InputError) as caught:
        policy_from_mapping(["rules"], name="doc")
    assert caught.value.reason == "policy.not_a_table"


def test_several_problems_are_counted() -> None:
    document = minimal()
    document["colour"] = "red"
    document["version"] = 0
    with pytest.raises(InputError) as caught:
        parse_policy(encode(document, "p.toml"), name="p.toml")
    assert "(and 1 more problems)" in caught.value.message


@pytest.mark.parametrize("name", ["ok.toml", "ok.yaml", "ok.yml"])
def test_the_minimal_document_parses_in_every_format(name: str) -> None:
    policy = parse_policy(encode(minimal(), name), name=name)
    assert policy.id == "minimal"
    assert policy.rules[0].threshold_flop is not None
    assert policy.rules[0].threshold_flop.value == 10**25


def test_thresholds_accept_exact_integers_and_si_prefixes() -> None:
    for spelling in (10**25, "10000000000000000000000000", "1e25", "1.0e25", "10 YFLOP"):
        document = minimal()
        document["rules"][0]["threshold_flop"] = spelling
        policy = parse_policy(to_toml(document).encode(), name="p.toml")
        assert policy.rules[0].flop_threshold.value == 10**25


def test_presets_round_trip_through_both_formats() -> None:
    for name in ("eu-ai-act", "us-eo-14110", "ca-sb-53", "draft-treaty", "pause"):
        preset = load_preset(name)
        dumped = preset.model_dump(exclude_none=True)
        assert parse_policy(to_toml(dumped).encode(), name="p.toml") == preset
        assert parse_policy(to_yaml(dumped).encode(), name="p.yaml") == preset
