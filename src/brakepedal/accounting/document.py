"""The usage document: windows, runs and holdings as one JSON file.

The registry builds accounting state from verified reports; this document carries the same
facts for ``brakepedal policy check --usage``, for examples in the docs and for tests::

    {"format": "brakepedal.usage", "version": 1,
     "entities": ["acme", "acme-cloud"],
     "holdings": [{"holder": "acme", "held": "acme-cloud", "voting_share": "0.6"}],
     "runs": [{"run": "base", "owner": "acme", "jobs": ["j1"], "produces": ["sha256:..."]}],
     "windows": [{"device": "gpu-0", "accelerator": "NVIDIA H100 80GB HBM3", "owner": "acme",
                  "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:05:00Z",
                  "busy_seconds": "300", "job": "j1", "site": "dc-1"}]}

Quantities are decimal strings (``"0.6"``, ``"1/3"``, ``"299.5"``), never JSON floats; unknown
fields anywhere are refused, naming the path (``windows[3].bussy``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, TypeVar

from brakepedal.accounting.catalogue import Catalogue
from brakepedal.accounting.flop import BoundRule
from brakepedal.accounting.groups import ControlRule, Holding, OwnershipGraph
from brakepedal.accounting.ledger import Ledger
from brakepedal.accounting.lineage import LineageGraph, RunDeclaration, RunKind, SnapshotCommitment
from brakepedal.accounting.usage import UsageWindow, Workload
from brakepedal.crypto.canonical import parse_json_object
from brakepedal.errors import InputError, located
from brakepedal.model.limits import DEFAULT_LIMITS, Limits
from brakepedal.model.types import (
    DeviceId,
    EntityId,
    Flop,
    JobId,
    RunId,
    SiteId,
    parse_utc_timestamp,
)

__all__ = [
    "HOLDING_FIELDS",
    "RUN_FIELDS",
    "USAGE_FORMAT",
    "WINDOW_FIELDS",
    "UsageDocument",
    "build_ledger",
    "parse_exact",
    "parse_usage_document",
]

USAGE_FORMAT = "brakepedal.usage"

_EXACT = re.compile(
    r"(?P<int>[0-9]{1,15})(?:\.(?P<frac>[0-9]{1,9}))?|(?P<num>[0-9]{1,15})/(?P<den>[1-9][0-9]{0,14})"
)
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class UsageDocument:
    """A parsed usage document."""

    entities: tuple[EntityId, ...]
    holdings: tuple[Holding, ...]
    runs: tuple[RunDeclaration, ...]
    windows: tuple[UsageWindow, ...]


def parse_exact(value: object, where: str) -> Fraction:
    """A non-negative exact quantity from ``"12"``, ``"0.6"`` or ``"1/3"``."""
    match = _EXACT.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise InputError(
            "usage.number_invalid",
            f'{where}: expected a decimal string like "0.6" or a fraction like "1/3"',
        )
    if match["num"] is not None:
        return Fraction(int(match["num"]), int(match["den"]))
    return Fraction(int(match["int"])) + Fraction(
        int(match["frac"] or "0"), 10 ** len(match["frac"] or "")
    )


def _field(record: Mapping[str, Any], key: str, where: str, parse: Callable[[object], _T]) -> _T:
    if key not in record:
        raise InputError("usage.field_missing", f"{where}.{key}: missing")
    try:
        return parse(record[key])
    except InputError as e:
        raise located(e, f"{where}.{key}") from e


def _optional(
    record: Mapping[str, Any], key: str, where: str, parse: Callable[[object], _T]
) -> _T | None:
    if record.get(key) is None:
        return None
    return _field(record, key, where, parse)


def _check_fields(record: object, where: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(record, dict):
        raise InputError("usage.field_invalid", f"{where}: expected an object")
    unknown = sorted(set(record) - allowed)
    if unknown:
        raise InputError("usage.unknown_field", f"{where}.{unknown[0]}: unknown field")
    return record


def _list(document: Mapping[str, Any], key: str) -> list[Any]:
    value = document.get(key, [])
    if not isinstance(value, list):
        raise InputError("usage.field_invalid", f"{key}: expected a list")
    return value


def _strings(parse: Callable[[object], _T]) -> Callable[[object], frozenset[_T]]:
    def parse_all(value: object) -> frozenset[_T]:
        if not isinstance(value, list):
            raise InputError("usage.field_invalid", "expected a list of strings")
        return frozenset(parse(item) for item in value)

    return parse_all


def _text(value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 128:
        raise InputError("usage.field_invalid", "expected a string of 1 to 128 characters")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise InputError("usage.field_invalid", "expected true or false")
    return value


def _enum(kind: Callable[[str], _T]) -> Callable[[object], _T]:
    def parse(value: object) -> _T:
        try:
            return kind(_text(value))
        except ValueError:
            raise InputError(
                "usage.field_invalid", f"{value!r} is not one of the allowed values"
            ) from None

    return parse


HOLDING_FIELDS = frozenset({"holder", "held", "voting_share", "board_control"})
RUN_FIELDS = frozenset(
    {
        "run",
        "owner",
        "jobs",
        "kind",
        "starts_from",
        "produces",
        "data_domains",
        "declared_flop",
        "jurisdictions",
    }
)
WINDOW_FIELDS = frozenset(
    {
        "device",
        "accelerator",
        "owner",
        "start",
        "end",
        "busy_seconds",
        "tensor_active_seconds",
        "job",
        "site",
        "workload",
    }
)


def _holding(record: object, where: str) -> Holding:
    fields = _check_fields(record, where, HOLDING_FIELDS)
    try:
        return Holding(
            holder=_field(fields, "holder", where, EntityId),
            held=_field(fields, "held", where, EntityId),
            voting_share=_field(fields, "voting_share", where, lambda v: parse_exact(v, "share")),
            board_control=_optional(fields, "board_control", where, _bool) or False,
        )
    except InputError as e:
        raise located(e, where) from e


def _run(record: object, where: str) -> RunDeclaration:
    fields = _check_fields(record, where, RUN_FIELDS)
    try:
        return RunDeclaration(
            run=_field(fields, "run", where, RunId),
            owner=_field(fields, "owner", where, EntityId),
            jobs=_field(fields, "jobs", where, _strings(JobId)),
            kind=_optional(fields, "kind", where, _enum(RunKind)) or RunKind.PRETRAINING,
            starts_from=_optional(fields, "starts_from", where, _strings(SnapshotCommitment))
            or frozenset(),
            produces=_optional(fields, "produces", where, _strings(SnapshotCommitment))
            or frozenset(),
            data_domains=_optional(fields, "data_domains", where, _strings(_text)) or frozenset(),
            declared_flop=_optional(fields, "declared_flop", where, Flop.from_json),
            jurisdictions=_optional(fields, "jurisdictions", where, _strings(_text)) or frozenset(),
        )
    except InputError as e:
        raise located(e, where) from e


def _window(record: object, where: str) -> UsageWindow:
    fields = _check_fields(record, where, WINDOW_FIELDS)
    try:
        return UsageWindow(
            device=_field(fields, "device", where, DeviceId),
            accelerator=_field(fields, "accelerator", where, _text),
            owner=_field(fields, "owner", where, EntityId),
            start=_field(fields, "start", where, parse_utc_timestamp),
            end=_field(fields, "end", where, parse_utc_timestamp),
            busy_seconds=_optional(
                fields, "busy_seconds", where, lambda v: parse_exact(v, "seconds")
            ),
            tensor_active_seconds=_optional(
                fields, "tensor_active_seconds", where, lambda v: parse_exact(v, "seconds")
            ),
            job=_optional(fields, "job", where, JobId),
            site=_optional(fields, "site", where, SiteId),
            workload=_optional(fields, "workload", where, _enum(Workload)) or Workload.UNKNOWN,
        )
    except InputError as e:
        raise located(e, where) from e


def _entity(value: object, where: str) -> EntityId:
    try:
        return EntityId(value)
    except InputError as e:
        raise located(e, where) from e


_TOP = frozenset({"format", "version", "entities", "holdings", "runs", "windows"})


def parse_usage_document(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> UsageDocument:
    """Parse a usage document (see the module docstring), strictly.

    Raises:
        InputError: ``json.*`` for bytes that are not strict JSON; ``usage.*`` naming the path
            of the first bad field; the reasons of the value types (``time.*``,
            ``identifier.*``, ``flop.*``, ``lineage.*``, ``ownership.*``) prefixed with it.
    """
    document = _check_fields(
        parse_json_object(data, limits=limits, what="usage document"), "usage", _TOP
    )
    if document.get("format") != USAGE_FORMAT:
        raise InputError("usage.format_invalid", f"usage.format: expected {USAGE_FORMAT!r}")
    if type(document.get("version")) is not int or document.get("version") != 1:
        raise InputError("usage.version_unsupported", "usage.version: only version 1 is understood")
    entities = [_entity(e, f"entities[{i}]") for i, e in enumerate(_list(document, "entities"))]
    if len(set(entities)) != len(entities):
        raise InputError("usage.duplicate_entity", "entities: an entity is listed twice")
    parsed = UsageDocument(
        entities=tuple(entities),
        holdings=tuple(
            _holding(r, f"holdings[{i}]") for i, r in enumerate(_list(document, "holdings"))
        ),
        runs=tuple(_run(r, f"runs[{i}]") for i, r in enumerate(_list(document, "runs"))),
        windows=tuple(
            _window(r, f"windows[{i}]") for i, r in enumerate(_list(document, "windows"))
        ),
    )
    _check_owners(parsed)
    return parsed


def _check_owners(document: UsageDocument) -> None:
    known = set(document.entities)
    owners = [(f"runs[{i}].owner", r.owner) for i, r in enumerate(document.runs)]
    owners += [(f"windows[{i}].owner", w.owner) for i, w in enumerate(document.windows)]
    for where, owner in owners:
        if owner not in known:
            raise InputError("usage.entity_unknown", f"{where}: {owner!r} is not in entities")


def build_ledger(
    document: UsageDocument,
    *,
    catalogue: Catalogue,
    rule: BoundRule,
    control: ControlRule,
    exempt_workloads: frozenset[Workload] = frozenset(),
) -> Ledger:
    """The ledger of ``document`` under a policy's bound and control rules."""
    return Ledger(
        document.windows,
        runs=LineageGraph(document.runs),
        ownership=OwnershipGraph(document.entities, document.holdings, control),
        catalogue=catalogue,
        rule=rule,
        exempt_workloads=exempt_workloads,
    )
