"""The gate's decision: may this job train now, under the verified governance state?

Pure: the job's declaration, the orders in force and the permits valid at ``at`` in; a
:class:`GateDecision` out. ``brakepedal gate`` (cli/gate.py) builds the inputs from a
:class:`~brakepedal.governance.view.GovernanceView`, starts or refuses the job, and stops it
when an order comes into force while it runs.

The rules, in order:

1. Declared inference is never in a pause's scope: serving deployed models continues.
2. Without a verified governance state, training fails closed (``gate.governance_unavailable``):
   a gate that cannot prove no pause is in force treats one as in force.
3. An order in force whose jurisdictions meet the job's is in scope when the job's lineage,
   counting what it already used and what this job expects to use, would exceed the order's
   threshold. A job that declares no expected compute is in scope (it could be anything).
4. A job in scope of an order runs only under a permit valid now, issued under that order
   (``under_order`` names it: its quorum signed the permit), for its owner group and its
   lineage (or run), whose budget covers the expected compute. A permit under one order says
   nothing about another: a job in scope of several orders needs a permit under each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from brakepedal.accounting.usage import Workload
from brakepedal.crypto.canonical import parse_json_object
from brakepedal.errors import InputError
from brakepedal.model.types import (
    EntityId,
    Flop,
    Identifier,
    JobId,
    LineageId,
    OrderId,
    PermitId,
    RunId,
    utc_datetime,
)
from brakepedal.policy.terms import PauseOrderTerms, PermitTerms

__all__ = ["DECLARATION_FORMAT", "GateDecision", "JobDeclaration", "decide", "parse_declaration"]

DECLARATION_FORMAT = "brakepedal.job-declaration"
_FIELDS = frozenset(
    {
        "format",
        "version",
        "job",
        "run",
        "lineage",
        "owner_group",
        "workload",
        "expected_flop",
        "lineage_flop",
        "jurisdictions",
    }
)
_MAX_BYTES = 65_536
_ZERO = Flop(0)
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class JobDeclaration:
    """What a job says about itself before it starts."""

    job: JobId
    owner_group: EntityId
    workload: Workload
    jurisdictions: frozenset[str]
    lineage: LineageId | None = None
    run: RunId | None = None
    expected_flop: Flop | None = None
    lineage_flop: Flop = _ZERO


@dataclass(frozen=True, slots=True)
class GateDecision:
    """Allowed or not, why, and the order and permit involved."""

    allowed: bool
    reason: str
    message: str
    order: OrderId | None = None
    permit: PermitId | None = None
    #: When a running job must have stopped: the order's start plus its grace period.
    enforced_from: datetime | None = None


def parse_declaration(data: bytes) -> JobDeclaration:
    """A job declaration from its JSON file: strict JSON (crypto.canonical), unknown fields
    refused by name, every field's error prefixed with its name."""
    if len(data) > _MAX_BYTES:
        raise InputError("declaration.too_large", f"declaration of {len(data)} bytes")
    document = parse_json_object(data, what="declaration")
    if document.get("format") != DECLARATION_FORMAT:
        raise InputError(
            "declaration.format_invalid", f"declaration.format: not {DECLARATION_FORMAT}"
        )
    unknown = sorted(set(document) - _FIELDS)
    if unknown:
        raise InputError("declaration.unknown_field", f"declaration.{unknown[0]}: unknown field")
    version = document.get("version")
    if type(version) is not int or version != 1:
        raise InputError("declaration.version_unsupported", "declaration.version: must be 1")
    return JobDeclaration(
        job=_field(document, "job", JobId),
        owner_group=_field(document, "owner_group", EntityId),
        workload=_field(document, "workload", _workload, default="unknown"),
        jurisdictions=_field(document, "jurisdictions", _jurisdictions),
        lineage=_optional(document, "lineage", LineageId),
        run=_optional(document, "run", RunId),
        expected_flop=_optional(document, "expected_flop", Flop.parse_human),
        lineage_flop=_field(document, "lineage_flop", Flop.parse_human, default="0"),
    )


def _field(
    document: dict[str, Any], name: str, parse: Callable[[Any], _T], *, default: object = None
) -> _T:
    value = document.get(name, default)
    if value is None:
        raise InputError("declaration.field_missing", f"declaration.{name}: missing")
    try:
        return parse(value)
    except InputError as e:
        raise InputError(e.reason, f"declaration.{name}: {e.message}") from e


def _optional(document: dict[str, Any], name: str, parse: Callable[[Any], _T]) -> _T | None:
    return None if document.get(name) is None else _field(document, name, parse)


def _workload(value: object) -> Workload:
    try:
        return Workload(str(value) if isinstance(value, str) else "")
    except ValueError:
        allowed = ", ".join(w.value for w in Workload)
        raise InputError(
            "declaration.field_invalid", f"{value!r} is not one of {allowed}"
        ) from None


def _jurisdictions(value: object) -> frozenset[str]:
    if not isinstance(value, list) or not value:
        raise InputError("declaration.field_invalid", "expected a non-empty list of names")
    return frozenset(Identifier(item) for item in value)


def _in_scope(job: JobDeclaration, order: PauseOrderTerms) -> bool:
    if not order.applies_to(job.jurisdictions):
        return False
    if job.expected_flop is None:
        return True
    return job.lineage_flop.value + job.expected_flop.value > order.threshold_flop.value


def _covering_permit(
    job: JobDeclaration,
    order: PauseOrderTerms,
    permits: Sequence[PermitTerms],
    at: datetime,
) -> PermitTerms | None:
    for permit in permits:
        if not (permit.under_order_quorum and permit.under_order == order.order_id):
            continue
        if not permit.valid_from <= at < permit.valid_until:
            continue
        if permit.owner_group != job.owner_group:
            continue
        if permit.lineage is not None and permit.lineage != job.lineage:
            continue
        if permit.run is not None and permit.run != job.run:
            continue
        if job.expected_flop is None or job.expected_flop > permit.flop_budget:
            continue
        return permit
    return None


def decide(
    job: JobDeclaration,
    *,
    at: datetime,
    orders: Sequence[PauseOrderTerms] | None,
    permits: Sequence[PermitTerms] = (),
) -> GateDecision:
    """The gate's decision for ``job`` at ``at``; ``orders`` None means no verified state.

    Refused when an order in force covers the job and no permit under that order does (of
    several such orders, the one enforced first); the decision names that order.
    """
    moment = utc_datetime(at)
    if job.workload is Workload.INFERENCE:
        return GateDecision(True, "gate.inference", "declared inference is outside every pause")
    if orders is None:
        return GateDecision(
            False,
            "gate.governance_unavailable",
            "no verified governance state: training fails closed until it can be verified",
        )
    in_scope = sorted(
        (o for o in orders if o.in_force_at(moment) and _in_scope(job, o)),
        key=lambda o: o.order_id,
    )
    covered = [(order, _covering_permit(job, order, permits, moment)) for order in in_scope]
    uncovered = [order for order, permit in covered if permit is None]
    if uncovered:
        order = min(uncovered, key=lambda o: (o.enforced_from, o.order_id))
        return GateDecision(
            False,
            "gate.paused",
            f"pause order {order.order_id} is in force until {order.sunset.isoformat()} "
            f"and no permit under it covers job {job.job}",
            order=order.order_id,
            enforced_from=order.enforced_from,
        )
    granted = [(order, permit) for order, permit in covered if permit is not None]
    if not granted:
        return GateDecision(True, "gate.no_order", "no pause order in force covers this job")
    order, permit = granted[0]
    return GateDecision(
        True,
        "gate.permitted",
        f"job {job.job} runs under "
        + ", ".join(f"permit {p.permit_id} (order {o.order_id})" for o, p in granted),
        order=order.order_id,
        permit=permit.permit_id,
    )
