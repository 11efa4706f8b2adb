"""Benchmark: our two training-compute estimates against Epoch AI's figures.

Reads Epoch AI's "Notable AI Models" export (CC BY 4.0; see ``shared/data/epoch_ai_models/
SOURCE.md``) and recomputes each model's training compute two ways with brakepedal's own
accounting code:

* the **6·N·D route** (language models): ``training_flop_6nd(active parameters, tokens)``;
* the **hardware route**: ``hardware_flop(chip, devices, seconds, precision, utilisation)`` with
  the chip's peak from ``default_catalogue()``.

It reports the median and interquartile range of ``log10(ours / Epoch)`` for each route, split
by Epoch's estimation method, its confidence and (hardware route) whether the utilisation was
reported or assumed, and checks that both routes land within 2x of Epoch for the Confident
frontier language models whose derivation Epoch gives. ``docs/benchmarks.md`` explains the
parsing choices and reads the figures.

    .venv/bin/python bench/epoch_validation.py --check --plot docs/img/epoch_validation.png
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from brakepedal.accounting.catalogue import Accelerator, Catalogue, Precision, default_catalogue
from brakepedal.accounting.flop import hardware_flop, parse_quantity, training_flop_6nd
from brakepedal.errors import InputError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "epoch_ai_models"
NOTABLE = "notable_ai_models_2026-02.csv"
#: The newer export lacks the estimation-method column; this older one has it (joined by name).
METHODS = "notable_ai_models_2025-02-24.csv"
#: The utilisation Epoch's own notes assume most often when none is reported (0.3 or 30 %).
DEFAULT_UTILISATION = Fraction(3, 10)
#: The models the acceptance check names; more are added by :func:`is_named_candidate`.
REQUIRED_NAMED = ("Llama 3.1-405B", "DeepSeek-V3")
WITHIN = math.log10(2)
ROUTE_6ND, ROUTE_HARDWARE = "6ND", "hardware"

# --- Parsing of Epoch's free-text notes (pure functions) -----------------------------------

_SCALE_WORDS = {"thousand": "k", "million": "M", "billion": "B", "trillion": "T"}
#: A count in notes: bounded, so that no run of digits can reach parse_quantity's limits.
_COUNT = (
    r"(?<![\d.,])(?P<number>\d{1,6}(?:\.\d{1,6})?)\s*"
    r"(?P<scale>[kKMBT](?![a-zA-Z])|thousand|million|billion|trillion)"
)
#: "37B activated", "36B parameters active", but not "1T Activated Parameters 32B" (a label).
_ACTIVE_AFTER = re.compile(
    _COUNT + r"\s*(?:parameters?|params)?\s*\(?\s*(?:active|activated|activation)\b"
    r"(?!\s*(?:parameters?|params)\s*[:\-–]?\s*\d)",
    re.I,
)
_ACTIVE_BEFORE = re.compile(
    r"\b(?:active|activated|activates|activation)\s+(?:(?:parameters?|params)\s*[:\-–]?\s*)?"
    + _COUNT,
    re.I,
)
#: Qwen-style names: "235B-A22B" is 235B total, 22B active.
_ACTIVE_IN_NAME = re.compile(
    r"\d+(?:\.\d+)?B-A(?P<number>\d{1,6}(?:\.\d{1,6})?)(?P<scale>B)\b", re.I
)
_SPARSE = re.compile(r"mixture[\s-]of[\s-]experts|\bMoE\b|\bexperts?\b|\bsparse(?:ly)?\b", re.I)
_CHIP_HOURS = re.compile(
    r"(?<![\d.,])(?P<number>\d{1,3}(?:,\d{3}){1,3}|\d{1,12}(?:\.\d{1,6})?)\s*"
    r"(?P<scale>[kKM](?![a-zA-Z])|thousand|million)?\s+"
    r"(?:(?:NVIDIA|[A-Z]+\d+\w*)\s+){0,2}"
    r"(?:GPU|TPU|chip|accelerator|[A-Z]+\d+\w*)s?[\s-]?hours?\b"
)


#: "25%*314B params active" states a share of the total, not the active count.
_SHARE_BEFORE = re.compile(r"%\s*[*×x]\s*$")


def _count(match: re.Match[str]) -> Fraction:
    scale = match["scale"] or ""
    suffix = _SCALE_WORDS.get(scale.casefold(), scale)
    number = match["number"].replace(",", "")
    return parse_quantity(number + suffix, what="count in notes", allow_fraction=True)


def active_parameters(texts: Iterable[str]) -> int | None:
    """The active-parameter count stated in ``texts`` (searched in order), or None.

    Reads "37B activated", "32 billion active parameters", "Active parameters: 10B",
    "6 * 37B (active params)", "activates 96.6 billion parameters" and names like
    "Qwen3-235B-A22B". In each text the earliest statement wins.
    """
    for text in texts:
        matches = [
            m
            for pattern in (_ACTIVE_AFTER, _ACTIVE_BEFORE, _ACTIVE_IN_NAME)
            for m in pattern.finditer(text)
            if not _SHARE_BEFORE.search(text, 0, m.start())
        ]
        if matches:
            return round(_count(min(matches, key=lambda m: m.start())))
    return None


def mentions_sparsity(texts: Iterable[str]) -> bool:
    """Whether ``texts`` say the model is a mixture of experts (or otherwise sparse)."""
    return any(_SPARSE.search(text) for text in texts)


def chip_hours(text: str) -> Fraction | None:
    """The accelerator-hours stated in ``text`` ("2.664M H800 GPU hours", "5.0M H100-hours",
    "51968 GPU hours"), or None. Distinct figures are added: notes give a run in stages
    ("2.664M ... pre-training", "0.1M ... after"), and repeat a figure in other words."""
    found = {_count(m) for m in _CHIP_HOURS.finditer(text)}
    return sum(found, Fraction(0)) if found else None


def method_group(methods: str | None) -> str:
    """Epoch's "Training compute estimation method" list folded into five groups."""
    listed = {m.strip() for m in (methods or "").split(",") if m.strip()}
    if not listed:
        return "unknown method"
    if listed == {"Hardware"}:
        return "Hardware"
    if listed == {"Operation counting"}:
        return "Operation counting"
    if {"Hardware", "Operation counting"} <= listed:
        return "Hardware + Operation counting"
    return "other"


_FORMAT_PRECISION = {
    "FP8": Precision.FP8,
    "BF16": Precision.BF16,
    "FP16": Precision.BF16,  # 16-bit on tensor cores: the catalogue's BF16 column
    "TF32": Precision.TF32,
    "FP32": Precision.FP32,
}
_FALLBACK = {
    Precision.FP8: (Precision.FP8, Precision.BF16, Precision.FP16, Precision.FP32),
    Precision.BF16: (Precision.BF16, Precision.FP16, Precision.FP32),
    Precision.TF32: (Precision.TF32, Precision.FP32, Precision.BF16),
    Precision.FP32: (Precision.FP32, Precision.BF16, Precision.FP16),
}


def precision_for(numerical_format: str, accelerator: Accelerator) -> Precision:
    """The precision whose peak the hardware route uses.

    Epoch's "Numerical format" maps directly (FP16 and BF16 to the 16-bit tensor rate); a blank
    or "Unknown" format means BF16 on a chip with a 16-bit tensor rate, else FP32. When the
    chip has no rate at that precision the next in :data:`_FALLBACK` is used (TPUs quote only
    BF16; Pascal GPUs have no tensor cores).
    """
    wanted = _FORMAT_PRECISION.get(numerical_format.strip().upper())
    if wanted is None:
        wanted = Precision.BF16 if Precision.BF16 in accelerator.peak else Precision.FP32
    for precision in _FALLBACK[wanted]:
        if precision in accelerator.peak:
            return precision
    return wanted  # hardware_flop raises catalogue.precision_unknown, reported as a skip


# --- The rows and the two routes ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EpochRow:
    """The columns of one Epoch model row that the two routes read, parsed."""

    model: str
    domain: str
    confidence: str
    method: str
    methods_listed: str
    frontier: bool
    base_model: str
    compute: Fraction | None
    parameters: Fraction | None
    dataset_size: Fraction | None
    epochs: Fraction | None
    hardware: str
    quantity: Fraction | None
    hours: Fraction | None
    utilisation: Fraction | None
    numerical_format: str
    parameter_notes: str
    compute_notes: str
    time_notes: str

    @property
    def is_language(self) -> bool:
        return "Language" in self.domain

    @property
    def domain_group(self) -> str:
        if self.domain == "Language":
            return "language only"
        return "language + other" if self.is_language else "not language"


def _number(text: str | None) -> Fraction | None:
    """A positive number from a numeric column; None for blank, lists ("a, b") and zero."""
    if not text or not text.strip():
        return None
    try:
        value = parse_quantity(text, what="column", allow_fraction=True)
    except InputError:
        return None
    return value if value > 0 else None


def row_from_record(record: Mapping[str, str], methods: Mapping[str, str]) -> EpochRow:
    """One CSV record of the 2026 export, with the method joined from the older export."""

    def text(column: str) -> str:
        return (record.get(column) or "").strip()

    return EpochRow(
        model=text("Model"),
        domain=text("Domain"),
        confidence=text("Confidence") or "Unknown",
        method=method_group(methods.get(text("Model"))),
        methods_listed=methods.get(text("Model")) or "",
        frontier=text("Frontier model") == "checked",
        base_model=text("Base model"),
        compute=_number(record.get("Training compute (FLOP)")),
        parameters=_number(record.get("Parameters")),
        dataset_size=_number(record.get("Training dataset size (total)")),
        epochs=_number(record.get("Epochs")),
        hardware=text("Training hardware"),
        quantity=_number(record.get("Hardware quantity")),
        hours=_number(record.get("Training time (hours)")),
        utilisation=_number(record.get("Hardware utilization (MFU)")),
        numerical_format=text("Numerical format"),
        parameter_notes=text("Parameters notes"),
        compute_notes=text("Training compute notes"),
        time_notes=text("Training time notes"),
    )


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


def tokens_seen(row: EpochRow) -> Fraction | None:
    """Training tokens: "Training dataset size (total)" times "Epochs" when given.

    The total is the dataset's size, not the tokens seen: rows trained for many epochs on
    WikiText-103 list 1.03e8 and need the epoch count to reach Epoch's own figure.
    """
    if row.dataset_size is None:
        return None
    return row.dataset_size * (row.epochs or 1)


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
    stated = row.numerical_format.upper() in _FORMAT_PRECISION
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


# --- I/O at the edges -----------------------------------------------------------------------


def read_rows(data: Path) -> list[EpochRow]:
    """The 2026 notable-models rows, each with the 2025 export's estimation method."""
    with (data / METHODS).open(encoding="utf-8-sig", newline="") as f:
        methods = {
            r["Model"]: r.get("Training compute estimation method") or "" for r in csv.DictReader(f)
        }
    with (data / NOTABLE).open(encoding="utf-8-sig", newline="") as f:
        return [row_from_record(record, methods) for record in csv.DictReader(f)]


def estimate_all(
    rows: Sequence[EpochRow], default_utilisation: Fraction
) -> tuple[dict[str, list[Estimate]], list[Skipped]]:
    catalogue = default_catalogue()
    by_route: dict[str, list[Estimate]] = {ROUTE_6ND: [], ROUTE_HARDWARE: []}
    skipped: list[Skipped] = []
    with Progress("estimating", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        for row in bar.track(rows):
            results = [estimate_hardware(row, catalogue, default_utilisation)]
            if row.is_language:
                results.append(estimate_6nd(row))
            for result in results:
                if isinstance(result, Skipped):
                    skipped.append(result)
                else:
                    by_route[result.route].append(result)
    return by_route, skipped


def _ratio(value: float | None) -> str:
    if value is None:
        return "[red]not computed[/]"
    colour = "green" if abs(value) <= WITHIN else "red"
    return f"[{colour}]{value:+.3f} (x{10**value:.2f})[/]"


def render_skipped(skipped: Sequence[Skipped], console: Console) -> None:
    counts = Counter((s.route, s.reason) for s in skipped)
    table = Table(title="Rows not estimated, by reason")
    for column in ("route", "reason", "rows", "which"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for (route, reason), count in sorted(counts.items()):
        which = Counter(s.detail for s in skipped if (s.route, s.reason) == (route, reason))
        named = "; ".join(f"{d} ({n})" if n > 1 else d for d, n in sorted(which.items()) if d)
        table.add_row(route, reason, str(count), named)
    console.print(table)


def render(
    summaries: Sequence[Summary],
    skipped: Sequence[Skipped],
    named: Sequence[NamedResult],
    console: Console,
) -> None:
    for route in (ROUTE_6ND, ROUTE_HARDWARE):
        table = Table(title=f"{route} route: log10(ours / Epoch)")
        for column in ("split", "group", "n", "median", "IQR (25th..75th)", "within 2x"):
            table.add_column(column, justify="left" if column in {"split", "group"} else "right")
        for s in (s for s in summaries if s.route == route):
            table.add_row(
                s.split,
                s.group,
                str(s.n),
                f"{s.median:+.3f}",
                f"{s.q25:+.3f} .. {s.q75:+.3f}",
                f"{s.within_2x:.0%}",
            )
        console.print(table)
    render_skipped(skipped, console)
    table = Table(title="Named check: both routes within 2x of Epoch")
    for column in ("model", "6ND", "hardware", "result", "held to 2x by --check?"):
        table.add_column(column)
    for n in named:
        verdict = "[green]pass[/]" if n.passed else "[red]MISS[/]"
        gate = f"yes: {n.why}" if n.gated else f"no: {n.why}"
        table.add_row(n.model, _ratio(n.log10_6nd), _ratio(n.log10_hardware), verdict, gate)
    console.print(table)


_COLOURS = {
    "Confident": "tab:green",
    "Likely": "tab:blue",
    "Speculative": "tab:orange",
    "Unknown": "tab:gray",
}


def plot(by_route: Mapping[str, Sequence[Estimate]], named: Sequence[str], path: Path) -> None:
    """Log-log scatter of ours against Epoch for both routes, with y = x and the 2x band;
    the models ``--check`` holds to 2x are ringed and labelled."""
    import matplotlib  # noqa: PLC0415 (only when a plot is asked for)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(1, 2, figsize=(12, 5.8), sharey=True)
    line = np.logspace(10, 28, 50)
    for axis, route in zip(axes, (ROUTE_6ND, ROUTE_HARDWARE), strict=True):
        estimates = by_route[route]
        axis.fill_between(line, line / 2, line * 2, color="0.85", label="within 2x")
        axis.plot(line, line, color="black", linewidth=0.8, label="y = x")
        for confidence, colour in _COLOURS.items():
            chosen = [e for e in estimates if e.confidence == confidence]
            if chosen:
                axis.scatter(
                    [e.epoch_flop for e in chosen],
                    [e.our_flop for e in chosen],
                    s=10,
                    color=colour,
                    alpha=0.7,
                    label=f"{confidence} ({len(chosen)})",
                )
        _label_named(axis, [e for e in estimates if e.model in named])
        axis.set(
            xscale="log",
            yscale="log",
            xlim=(1e10, 1e28),
            ylim=(1e10, 1e28),
            title=f"{route} route (n = {len(estimates)})",
            xlabel="Epoch AI training compute (FLOP)",
        )
        axis.legend(fontsize=8, loc="upper left")
    axes[0].set_ylabel("brakepedal estimate (FLOP)")
    figure.suptitle("Training compute: brakepedal's two routes against Epoch AI (notable models)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=130)
    plt.close(figure)


def _label_named(axis: Axes, estimates: Sequence[Estimate]) -> None:
    """Ring the named models and label them in a column at the lower right."""
    axis.scatter(
        [e.epoch_flop for e in estimates],
        [e.our_flop for e in estimates],
        s=40,
        facecolors="none",
        edgecolors="black",
        linewidths=0.8,
    )
    ordered = sorted(estimates, key=lambda e: -e.epoch_flop)
    for index, e in enumerate(ordered):
        axis.annotate(
            e.model,
            (e.epoch_flop, e.our_flop),
            xytext=(0.62, 0.36 - 0.06 * index),
            textcoords="axes fraction",
            fontsize=8,
            arrowprops={"arrowstyle": "-", "color": "0.4", "linewidth": 0.6},
        )


def write_json(path: Path, args: argparse.Namespace, report: Mapping[str, object]) -> None:
    files = {
        name: hashlib.sha256((args.data / name).read_bytes()).hexdigest()
        for name in (NOTABLE, METHODS)
    }
    document = {
        "benchmark": "epoch_validation",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": {"directory": str(args.data), "sha256": files},
        "parameters": {"default_utilisation": str(args.default_utilisation)},
        **report,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Epoch CSV directory")
    parser.add_argument(
        "--default-utilisation",
        type=Fraction,
        default=DEFAULT_UTILISATION,
        help="MFU for rows that report none (default 0.3)",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a named model misses")
    parser.add_argument("--json", type=Path, help="write all figures and rows as JSON here")
    parser.add_argument("--plot", type=Path, help="write the scatter plot (PNG) here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=120)  # wide enough for every column when piped to a file
    if not all((args.data / name).is_file() for name in (NOTABLE, METHODS)):
        console.print(f"[yellow]Epoch AI data not found in {args.data}, skipping.[/]")
        return 0
    rows = read_rows(args.data)
    by_route, skipped = estimate_all(rows, args.default_utilisation)
    summaries = [s for route, found in by_route.items() for s in summarise(route, found)]
    named = named_results(rows, by_route)
    render(summaries, skipped, named, console)
    if args.plot:
        plot(by_route, [n.model for n in named if n.gated], args.plot)
    if args.json:
        report = {
            "rows_read": len(rows),
            "summaries": [asdict(s) for s in summaries],
            "skipped": [asdict(s) for s in skipped],
            "named": [{**asdict(n), "passed": n.passed} for n in named],
            "estimates": [asdict(e) for found in by_route.values() for e in found],
        }
        write_json(args.json, args, report)
    missed = [n.model for n in named if n.gated and not n.passed]
    if missed:
        console.print(f"[red]Held to 2x but outside it on a route:[/] {', '.join(missed)}")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
