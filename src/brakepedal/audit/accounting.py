"""The registry's published figures, recomputed from the reports in the log.

The registry publishes, per operator and UTC day, the devices that reported, the reports, busy
hours, energy and the FLOP bound of the attested busy time (``GET /v1/accounting/operators``,
``docs/registry.md``). The auditor recomputes each figure from the signed reports it read back
from the log, by the same published method (a report counts on the day its window starts; the
bound is each accelerator's catalogue peak, any precision, times busy seconds, summed per
operator and accelerator), and compares. Any difference is an ``accounting.mismatch``: the
registry's stored totals are not what its own log supports.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Any

from brakepedal.accounting.catalogue import Catalogue, Precision
from brakepedal.accounting.flop import BoundBasis, BoundRule, attested_bound
from brakepedal.audit.detectors import Draft, day_of
from brakepedal.audit.findings import Severity
from brakepedal.audit.state import DeviceRow, ReportRow
from brakepedal.errors import InputError
from brakepedal.model.types import EntityId

__all__ = ["DayFigures", "checked", "compare", "recompute"]

#: The figures compared, as the registry names them.
FIELDS = ("devices", "reports", "busy_hours", "energy_kwh", "flop_bound")


@dataclass(frozen=True, slots=True)
class DayFigures:
    """One operator's figures on one day, recomputed."""

    operator: str
    day: date
    figures: Mapping[str, object]
    #: Log indices of the reports summed (the first few are cited in a mismatch).
    indices: tuple[int, ...]


def checked(answer: object) -> list[dict[str, Any]] | None:
    """The registry's answer, if it is what it must be: a list of objects, each naming an
    operator (a valid entity id) once.

    Raises:
        InputError: ``audit.aggregates_invalid``, naming what is wrong.
    """
    if answer is None:
        return None
    if not isinstance(answer, list) or not all(isinstance(item, dict) for item in answer):
        raise InputError("audit.aggregates_invalid", "not a list of objects")
    operators = []
    for position, item in enumerate(answer):
        try:
            operators.append(str(EntityId(item.get("operator"))))
        except (InputError, TypeError) as e:
            raise InputError(
                "audit.aggregates_invalid", f"[{position}].operator: not an entity id"
            ) from e
    if len(set(operators)) != len(operators):
        raise InputError("audit.aggregates_invalid", "an operator appears twice")
    return answer


def recompute(
    devices: Mapping[str, DeviceRow], reports: Sequence[ReportRow], catalogue: Catalogue
) -> dict[tuple[str, date], DayFigures]:
    """Per (operator, day): the registry's published figures, from the logged reports.

    The operator is the one the device was enrolled under (in the log); a report logged twice
    (``chain.replay``) counts once, as the registry stores it once.
    """
    rule = BoundRule(frozenset(Precision), BoundBasis.BUSY)
    seen: set[tuple[str, int, str]] = set()
    groups: dict[tuple[str, date, str], list[ReportRow]] = defaultdict(list)
    for row in reports:
        if (row.device, row.sequence, row.digest) in seen or row.device not in devices:
            continue
        seen.add((row.device, row.sequence, row.digest))
        operator = devices[row.device].operator
        groups[(operator, day_of(row.window_start_us), row.accelerator)].append(row)
    totals: dict[tuple[str, date], dict[str, Any]] = defaultdict(
        lambda: {"devices": 0, "reports": 0, "busy_ms": 0, "energy_mj": 0, "flop": 0, "rows": []}
    )
    for (operator, day, accelerator), rows in sorted(groups.items()):
        entry = totals[(operator, day)]
        busy = sum(r.busy_ms for r in rows)
        wall_us = sum(r.window_end_us - r.window_start_us for r in rows)
        entry["devices"] += len({r.device for r in rows})
        entry["reports"] += len(rows)
        entry["busy_ms"] += busy
        entry["energy_mj"] += sum(r.energy_mj for r in rows)
        entry["rows"] += [r.log_index for r in rows]
        try:
            spec = catalogue.get(accelerator)
        except InputError:
            continue
        entry["flop"] += attested_bound(
            spec,
            rule,
            wall_seconds=Fraction(wall_us, 1_000_000),
            busy_seconds=Fraction(busy, 1000),
        ).value
    return {
        key: DayFigures(
            key[0],
            key[1],
            {
                "devices": entry["devices"],
                "reports": entry["reports"],
                "busy_hours": round(entry["busy_ms"] / 3_600_000, 6),
                "energy_kwh": round(entry["energy_mj"] / 3.6e9, 6),
                "flop_bound": str(entry["flop"]),
            },
            tuple(sorted(entry["rows"])),
        )
        for key, entry in totals.items()
    }


def compare(
    mine: Mapping[tuple[str, date], DayFigures],
    published: Mapping[date, Sequence[Mapping[str, Any]] | None],
) -> list[Draft]:
    """An ``accounting.mismatch`` for every operator-day whose published figures differ."""
    drafts = []
    for day, answer in sorted(published.items()):
        if answer is None:
            continue
        theirs = {str(item.get("operator")): item for item in answer}
        operators = sorted({op for op, d in mine if d == day} | set(theirs))
        for operator in operators:
            own = mine.get((operator, day))
            claimed = theirs.get(operator)
            expected = dict(own.figures) if own is not None else None
            stated = {name: claimed.get(name) for name in FIELDS} if claimed is not None else None
            if expected == stated:
                continue
            differing = [
                name for name in FIELDS if (expected or {}).get(name) != (stated or {}).get(name)
            ]
            drafts.append(
                Draft(
                    "accounting.mismatch",
                    "the registry's published figures are those its log supports (invariant 5)",
                    Severity.CRITICAL,
                    f"operator:{operator}",
                    f"{operator} on {day}: the registry publishes {', '.join(differing)} "
                    "other than the logged reports give",
                    {"operator": operator, "day": day.isoformat()},
                    {"recomputed": expected, "published": stated},
                    tuple((index, "a report summed") for index in (own.indices[:3] if own else ())),
                )
            )
    return drafts
