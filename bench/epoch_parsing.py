"""Reading Epoch AI's notable-models columns for bench/epoch_validation.py (pure functions).

Parses the free-text notes (active parameters, accelerator-hours), folds Epoch's estimation
methods into groups, chooses the precision whose peak the hardware route uses, and turns one
CSV record (with the method joined from the older export) into an :class:`EpochRow`.
``docs/benchmarks.md`` explains the parsing choices.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from brakepedal.accounting.catalogue import Accelerator, Precision
from brakepedal.accounting.flop import parse_quantity
from brakepedal.errors import InputError

__all__ = [
    "EpochRow",
    "active_parameters",
    "chip_hours",
    "is_stated_format",
    "mentions_sparsity",
    "method_group",
    "precision_for",
    "row_from_record",
    "tokens_seen",
]

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


def is_stated_format(numerical_format: str) -> bool:
    """Whether Epoch's "Numerical format" names a precision (rather than blank or "Unknown")."""
    return numerical_format.upper() in _FORMAT_PRECISION


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


def tokens_seen(row: EpochRow) -> Fraction | None:
    """Training tokens: "Training dataset size (total)" times "Epochs" when given.

    The total is the dataset's size, not the tokens seen: rows trained for many epochs on
    WikiText-103 list 1.03e8 and need the epoch count to reach Epoch's own figure.
    """
    if row.dataset_size is None:
        return None
    return row.dataset_size * (row.epochs or 1)
