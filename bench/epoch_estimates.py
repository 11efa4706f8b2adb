"""The two routes and their figures for bench/epoch_validation.py (pure functions).

Each Epoch row is estimated on the 6·N·D route and the hardware route (or skipped, with a
reason); the estimates are summarised as the median and interquartile range of
``log10(ours / Epoch)`` by group, and the named models are checked against the 2x band.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from epoch_parsing import (
    EpochRow,
    active_parameters,
    chip_hours,
    is_stated_format,
    mentions_sparsity,
    precision_for,
    tokens_seen,
)

from brakepedal.accounting.catalogue import Catalogue
from brakepedal.accounting.flop import hardware_flop, training_flop_6nd
from brakepedal.errors import InputError

__all__ = [
    "REQUIRED_NAMED",
    "ROUTE_6ND",
    "ROUTE_HARDWARE",
    "WITHIN",
    "Estimate",
    "NamedResult",
    "Skipped",
    "Summary",
    "estimate_6nd",
    "estimate_hardware",
    "is_named_candidate",
    "named_gate",
    "named_results",
    "summarise",
]

#: The models the acceptance check names; more are added by :func:`is_named_candidate`.
REQUIRED_NAMED = ("Llama 3.1-405B", "DeepSeek-V3")
WITHIN = math.log10(2)
ROUTE_6ND, ROUTE_HARDWARE = "6ND", "hardware"

# --- The two routes -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Estimate:
    """One model's figure on one route, against Epoch's."""

    route: str
    model: str
    confidence: str
    method: str
    frontier: bool
    epoch_flop: float
    our_flop: float
    log10_ratio: float
    detail: str
    domain: str
    utilisation: str = ""  # hardware route: "reported" or "default"
    numerical_format: str = ""  # hardware route: "stated" or "assumed"
    time_source: str = ""  # hardware route: "training time" or "chip-hours in notes"


@dataclass(frozen=True, slots=True)
class Skipped:
    """A row a route could not estimate, and why."""

    route: str
    model: str
    reason: str
    detail: str = ""  # the hardware name, for the hardware reasons


def _estimate(row: EpochRow, route: str, ours: int, detail: str, **extra: str) -> Estimate:
    epoch = row.compute or Fraction(1)  # callers have checked it is there
    return Estimate(
        route=route,
        model=row.model,
        confidence=row.confidence,
        method=row.method,
        frontier=row.frontier,
        epoch_flop=float(epoch),
        our_flop=float(ours),
        log10_ratio=math.log10(ours) - math.log10(epoch),
        detail=detail,
        domain=row.domain_group,
        **extra,
    )


def estimate_6nd(row: EpochRow) -> Estimate | Skipped:
    """The 6·N·D route for a language model (N active parameters, D tokens seen)."""
    if row.compute is None or row.parameters is None:
        return Skipped(ROUTE_6ND, row.model, "no Epoch compute or parameters")
    if row.base_model:
        return Skipped(ROUTE_6ND, row.model, "fine-tune: Epoch's figure includes its base")
    tokens = tokens_seen(row)
    if tokens is None:
        return Skipped(ROUTE_6ND, row.model, "no readable dataset size")
    texts = (row.parameter_notes, row.model, row.compute_notes)
    active = active_parameters(texts)
    if active is None and mentions_sparsity(texts):
        return Skipped(
            ROUTE_6ND, row.model, "mixture of experts, no active count stated", row.model
        )
    parameters = active if active is not None else round(row.parameters)
    ours = training_flop_6nd(parameters, round(tokens)).value
    kind = "active" if active is not None else "dense"
    detail = f"N={parameters:.3g} ({kind}), D={float(tokens):.3g}"
    return _estimate(row, ROUTE_6ND, ours, detail)


def _chip_time(row: EpochRow) -> tuple[int, Fraction, str] | None:
    """(devices, seconds each, where from): the time column, else chip-hours in the notes
    (the compute notes first: Epoch's own arithmetic is there)."""
    if row.hours is not None and row.quantity is not None:
        return round(row.quantity), row.hours * 3600, "training time"
    if row.hours is None:
        for notes in (row.compute_notes, row.time_notes):
            hours = chip_hours(notes)
            if hours is not None:
                return 1, hours * 3600, "chip-hours in notes"
    return None


def _hardware_skip(row: EpochRow, catalogue: Catalogue) -> str | None:
    if row.compute is None:
        return "no Epoch compute"
    if not row.hardware:
        return "no training hardware"
    if row.base_model:
        return "fine-tune: Epoch's figure includes its base"
    if "," in row.hardware:
        return "several kinds of chip"
    if row.hardware not in catalogue:
        return "hardware not in the catalogue"
    return None


_NAMES_HARDWARE = frozenset({"several kinds of chip", "hardware not in the catalogue"})


def estimate_hardware(
    row: EpochRow, catalogue: Catalogue, default_utilisation: Fraction
) -> Estimate | Skipped:
    """The hardware route: devices x seconds x peak(precision) x utilisation."""
    reason = _hardware_skip(row, catalogue)
    time = None if reason else _chip_time(row)
    if reason or time is None:
        why = reason or "no chip count x time, nor chip-hours in notes"
        return Skipped(
            ROUTE_HARDWARE, row.model, why, row.hardware if why in _NAMES_HARDWARE else ""
        )
    devices, seconds, time_source = time
    accelerator = catalogue.get(row.hardware)
    precision = precision_for(row.numerical_format, accelerator)
    utilisation = row.utilisation or default_utilisation
    try:
        flop = hardware_flop(
            accelerator,
            devices=devices,
            seconds=seconds,
            precision=precision,
            utilisation=utilisation,
        )
    except InputError as e:
        return Skipped(ROUTE_HARDWARE, row.model, e.reason, row.hardware)
    detail = (
        f"{devices} x {accelerator.id} x {float(seconds) / 3600:.4g} h at {precision}, "
        f"MFU {float(utilisation):.3g}"
    )
    stated = is_stated_format(row.numerical_format)
    return _estimate(
        row,
        ROUTE_HARDWARE,
        flop.value,
        detail,
        time_source=time_source,
        utilisation="default" if row.utilisation is None else "reported",
        numerical_format="stated" if stated else "assumed",
    )


# --- Figures --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    route: str
    split: str
    group: str
    n: int
    median: float
    q25: float
    q75: float
    within_2x: float


_SPLITS: dict[str, tuple[Callable[[Estimate], str], tuple[str, ...]]] = {
    "all": (lambda e: "all", ("all",)),
    "method": (
        lambda e: e.method,
        (
            "Hardware",
            "Operation counting",
            "Hardware + Operation counting",
            "other",
            "unknown method",
        ),
    ),
    "confidence": (lambda e: e.confidence, ("Confident", "Likely", "Speculative", "Unknown")),
    "domain": (lambda e: e.domain, ("language only", "language + other", "not language")),
    "utilisation": (lambda e: e.utilisation, ("reported", "default")),
    "format": (lambda e: e.numerical_format, ("stated", "assumed")),
}
_ROUTE_SPLITS = {
    ROUTE_6ND: ("all", "method", "confidence", "domain"),
    ROUTE_HARDWARE: ("all", "method", "confidence", "utilisation", "format", "domain"),
}


def summarise(route: str, estimates: Sequence[Estimate]) -> list[Summary]:
    """n, median, IQR and share within 2x of log10(ours / Epoch), overall and by group."""
    summaries = []
    for split in _ROUTE_SPLITS[route]:
        key, groups = _SPLITS[split]
        for group in groups:
            ratios = np.array([e.log10_ratio for e in estimates if key(e) == group])
            if ratios.size == 0:
                continue
            q25, median, q75 = (float(q) for q in np.percentile(ratios, [25, 50, 75]))
            within = float(np.mean(np.abs(ratios) <= WITHIN))
            summaries.append(
                Summary(route, split, group, int(ratios.size), median, q25, q75, within)
            )
    return summaries


_DERIVED = frozenset({"Hardware", "Operation counting", "Hardware + Operation counting"})
_GEOMETRIC_MEAN = re.compile(r"geometric mean", re.I)


def named_gate(row: EpochRow) -> tuple[bool, str]:
    """Whether ``--check`` holds ``row`` to 2x on both routes, and why (or why not).

    Beyond the models the acceptance check names: Epoch's figure must be its own hardware or
    operation-counting derivation (nothing reported or third-party), and one derivation: a
    geometric mean of two estimates k times apart is sqrt(k) from each of them.
    """
    if row.model in REQUIRED_NAMED:
        return True, "named by the acceptance check"
    if row.method not in _DERIVED:
        return False, f"Epoch's method: {row.methods_listed or 'unknown'}"
    if _GEOMETRIC_MEAN.search(row.compute_notes):
        return False, "Epoch's figure is a geometric mean of estimates"
    return True, f"Epoch derived it by {row.method}"


def is_named_candidate(row: EpochRow) -> bool:
    """A Confident frontier language model trained from scratch (not a fine-tune)."""
    return row.confidence == "Confident" and row.frontier and row.is_language and not row.base_model


@dataclass(frozen=True, slots=True)
class NamedResult:
    model: str
    gated: bool
    why: str
    log10_6nd: float | None
    log10_hardware: float | None

    @property
    def passed(self) -> bool:
        ratios = (self.log10_6nd, self.log10_hardware)
        return all(r is not None and abs(r) <= WITHIN for r in ratios)


def named_results(
    rows: Sequence[EpochRow], by_route: Mapping[str, Sequence[Estimate]]
) -> list[NamedResult]:
    """The required models, then every candidate that both routes could compute."""
    ours_6nd, ours_hw = (
        {e.model: e.log10_ratio for e in by_route[r]} for r in (ROUTE_6ND, ROUTE_HARDWARE)
    )
    by_name = {r.model: r for r in rows}
    extra = [
        r.model
        for r in rows
        if is_named_candidate(r)
        and r.model in ours_6nd
        and r.model in ours_hw
        and r.model not in REQUIRED_NAMED
    ]
    results = []
    for name in (*REQUIRED_NAMED, *extra):
        gated, why = named_gate(by_name[name]) if name in by_name else (True, "not in the data")
        results.append(NamedResult(name, gated, why, ours_6nd.get(name), ours_hw.get(name)))
    return results
