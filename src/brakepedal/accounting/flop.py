"""FLOP bounds from attested hardware time, and the estimates labs declare.

Two kinds of number, never to be confused:

* The **attested bound** (:func:`attested_bound`) is an upper bound: the most operations the
  device could have performed in the time its own signed counters say it was busy, at the
  fastest precision the policy covers. It needs no trust in the lab's declarations, only in
  the counters and the catalogue, and it never under-counts: this is what thresholds compare.
* **Estimates** (:func:`training_flop_6nd`, :func:`inference_flop`, :func:`hardware_flop`) are
  what a model card or a lab's declaration says. :func:`discrepancy` compares a declaration
  with the bound: a declaration above the bound means compute from hardware nobody attested.

All arithmetic is exact (``int`` and ``Fraction``); results round up to whole FLOP.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext
from enum import StrEnum
from fractions import Fraction

from brakepedal.accounting.catalogue import TENSOR_PRECISIONS, Accelerator, Precision
from brakepedal.errors import InputError
from brakepedal.model.types import MAX_FLOP, Flop

__all__ = [
    "BoundBasis",
    "BoundRule",
    "Discrepancy",
    "attested_bound",
    "discrepancy",
    "hardware_flop",
    "inference_flop",
    "parse_quantity",
    "training_flop_6nd",
]


class BoundBasis(StrEnum):
    """Which attested counter the bound multiplies by peak throughput."""

    #: The whole window, as if the device never idled: needs no counter at all.
    WALL = "wall"
    #: Seconds the device reported any kernel running (NVML utilisation > 0).
    BUSY = "busy"
    #: Tensor-core-active seconds at the tensor peak, plus busy seconds at the vector peak.
    TENSOR_ACTIVE = "tensor_active"


@dataclass(frozen=True, slots=True)
class BoundRule:
    """How a policy turns attested time into a FLOP bound."""

    precisions: frozenset[Precision]
    basis: BoundBasis = BoundBasis.BUSY

    def __post_init__(self) -> None:
        if not self.precisions:
            raise InputError("bound.precisions_empty", "a bound rule must cover a precision")


def _ceil(value: Fraction) -> int:
    return math.ceil(value)


def _as_fraction(value: Fraction | int, what: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, int | Fraction):
        raise InputError("bound.not_exact", f"{what} must be an int or Fraction, got {value!r}")
    if value < 0:
        raise InputError("bound.negative", f"{what} is negative ({value})")
    return Fraction(value)


def attested_bound(
    accelerator: Accelerator,
    rule: BoundRule,
    *,
    wall_seconds: Fraction | int,
    busy_seconds: Fraction | int | None,
    tensor_active_seconds: Fraction | int | None = None,
) -> Flop:
    """The most FLOP ``accelerator`` could have done in one attested window.

    * ``wall``: ``wall_seconds × max peak``;
    * ``busy``: ``busy_seconds × max peak`` (``wall`` when the device gave no busy counter);
    * ``tensor_active``: ``tensor_active × max tensor peak + busy × max vector peak``, over the
      covered precisions of each kind (``busy`` when there is no tensor counter). Vector
      units run alongside tensor cores, so busy time is counted again at the vector rate.

    Counters are clamped to the window, never trusted beyond it: busy seconds above the window
    are refused (``bound.counter_exceeds_window``) rather than believed.
    """
    wall = _as_fraction(wall_seconds, "wall seconds")
    busy = wall if busy_seconds is None else _as_fraction(busy_seconds, "busy seconds")
    if busy > wall:
        raise InputError("bound.counter_exceeds_window", f"busy {busy}s exceeds the {wall}s window")
    if rule.basis is BoundBasis.WALL:
        return Flop(_ceil(wall * accelerator.max_peak(rule.precisions)))
    if rule.basis is BoundBasis.BUSY or tensor_active_seconds is None:
        return Flop(_ceil(busy * accelerator.max_peak(rule.precisions)))
    tensor = _as_fraction(tensor_active_seconds, "tensor-active seconds")
    if tensor > busy:
        raise InputError(
            "bound.counter_exceeds_window", f"tensor-active {tensor}s exceeds busy {busy}s"
        )
    return Flop(_ceil(_tensor_split(accelerator, rule, busy=busy, tensor=tensor)))


def _tensor_split(
    accelerator: Accelerator, rule: BoundRule, *, busy: Fraction, tensor: Fraction
) -> Fraction:
    tensor_kinds = rule.precisions & TENSOR_PRECISIONS
    vector_kinds = rule.precisions - TENSOR_PRECISIONS
    known = frozenset(accelerator.peak)
    total = Fraction(0)
    if tensor_kinds & known:
        total += tensor * accelerator.max_peak(tensor_kinds)
    if vector_kinds & known:
        total += busy * accelerator.max_peak(vector_kinds)
    if not (rule.precisions & known):
        accelerator.max_peak(rule.precisions)  # raises catalogue.precision_unknown
    return total


def training_flop_6nd(active_parameters: int, tokens: int) -> Flop:
    """The standard dense-transformer training estimate ``6 · N · D``.

    ``N`` is the parameters active per token (for a mixture of experts, the active experts,
    not the total); ``D`` the training tokens.
    """
    return Flop(6 * _count(active_parameters, "active parameters") * _count(tokens, "tokens"))


def inference_flop(active_parameters: int, tokens: int) -> Flop:
    """Forward passes only: ``2 · N`` per token processed."""
    return Flop(2 * _count(active_parameters, "active parameters") * _count(tokens, "tokens"))


def hardware_flop(
    accelerator: Accelerator,
    *,
    devices: int,
    seconds: Fraction | int,
    precision: Precision,
    utilisation: Fraction = Fraction(1),
) -> Flop:
    """``devices × seconds × peak(precision) × utilisation`` (model FLOP utilisation, MFU).

    With ``utilisation`` 1 this is the hardware's capacity; a declared MFU turns it into the
    estimate Epoch AI calls the "hardware" method.
    """
    if not 0 < utilisation <= 1:
        raise InputError("estimate.utilisation_invalid", f"utilisation {utilisation} not in (0, 1]")
    time = _as_fraction(seconds, "seconds")
    count = _count(devices, "devices")
    return Flop(_ceil(count * time * accelerator.peak_at(precision) * utilisation))


def _count(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError("estimate.not_integer", f"{what} must be an integer, got {value!r}")
    if value < 0:
        raise InputError("estimate.negative", f"{what} is negative ({value})")
    if value > MAX_FLOP:
        raise InputError("estimate.too_large", f"{what} is too large")
    return value


@dataclass(frozen=True, slots=True)
class Discrepancy:
    """A declared figure against the attested bound for the same work."""

    declared: Flop
    attested_bound: Flop

    @property
    def implied_utilisation(self) -> Fraction | None:
        """``declared / bound``: the utilisation the declaration implies (None for no bound)."""
        if self.attested_bound.value == 0:
            return None
        return Fraction(self.declared.value, self.attested_bound.value)

    @property
    def log10_ratio(self) -> float:
        """``log10(declared / bound)``; ``inf`` when there is no bound but a declaration."""
        if self.declared.value == 0 and self.attested_bound.value == 0:
            return 0.0
        if self.attested_bound.value == 0:
            return math.inf
        if self.declared.value == 0:
            return -math.inf
        return math.log10(self.declared.value) - math.log10(self.attested_bound.value)

    @property
    def exceeds_bound(self) -> bool:
        """The declaration claims more than attested hardware could do: unattested compute."""
        return self.declared > self.attested_bound

    def understated(self, plausible_utilisation: Fraction) -> bool:
        """The bound exceeds the declaration by more than ``plausible_utilisation`` explains:
        the hardware did far more than the lab says it used."""
        utilisation = self.implied_utilisation
        return utilisation is not None and utilisation < plausible_utilisation


def discrepancy(declared: Flop, attested_bound: Flop) -> Discrepancy:
    """Compare a declaration with the attested bound (see :class:`Discrepancy`)."""
    return Discrepancy(declared, attested_bound)


_QUANTITY = re.compile(
    r"(?P<number>[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,3})?)\s*(?P<suffix>[kKMBGT]?)"
)
_SUFFIX = {"": 0, "k": 3, "K": 3, "M": 6, "B": 9, "G": 9, "T": 12}
_QUANTITY_MAX = 64


def parse_quantity(text: str, *, what: str, allow_fraction: bool = False) -> Fraction:
    """Read a count as people write it on model cards: ``405e9``, ``405B``, ``15.6T``, ``37B``.

    Exact. Unless ``allow_fraction``, a value that is not a whole number is refused.
    """
    stripped = text.strip()
    match = _QUANTITY.fullmatch(stripped) if len(stripped) <= _QUANTITY_MAX else None
    if match is None:
        raise InputError("quantity.format_invalid", f"{what}: cannot read {text!r} as a number")
    with localcontext() as context:
        context.prec = 200
        try:
            number = Decimal(match["number"]).scaleb(_SUFFIX[match["suffix"]])
        except InvalidOperation as e:  # pragma: no cover (the pattern admits only numbers)
            raise InputError("quantity.format_invalid", f"{what}: cannot read {text!r}") from e
        if number > MAX_FLOP:
            raise InputError("quantity.too_large", f"{what}: {text!r} is too large")
        value = Fraction(number)
    if not allow_fraction and value.denominator != 1:
        raise InputError("quantity.not_integer", f"{what}: {text!r} is not a whole number")
    return value
