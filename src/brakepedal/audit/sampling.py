"""Sampling challenges: which reports to open, chosen so that nobody can steer the choice.

A report commits to its minute records by their Merkle root; the records stay on the node.
An auditor cannot open them all, so it opens a sample: ``s`` reports, chosen by anyone's
re-computable lottery from a **public seed** (the root hash of a checkpoint the log signed and
the witnesses cosigned, which no device knew when it signed its reports). If a fraction ``f``
of the reports is false (records that do not rebuild the report), the chance that a uniform
sample of ``s`` catches at least one is

    P = 1 - (1 - f)^s

(with replacement; without replacement it is a little higher). :func:`samples_needed` inverts
it: the budget that catches a falsification rate ``f`` with probability ``P``.

The lottery (:func:`choose`): the ``i``-th draw is SHA-256("brakepedal audit sample" || seed ||
i as 8 bytes, big-endian), its first 8 bytes as an integer, rejected when it falls in the
incomplete last block of ``2^64 // N * N`` (no modulo bias), reduced modulo the population
``N``; repeated draws of one index are skipped. Any party re-runs it from the seed and the
ordered population and gets the same sample.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from brakepedal.errors import InputError

__all__ = ["SamplePlan", "catch_probability", "choose", "plan", "samples_needed"]

_DOMAIN = b"brakepedal audit sample"


def catch_probability(fraction: float, samples: int) -> float:
    """P(at least one of ``samples`` uniform draws hits a ``fraction`` of bad reports)."""
    if not 0 <= fraction <= 1 or samples < 0:
        raise InputError("sampling.invalid", f"fraction {fraction} or samples {samples} invalid")
    return 1 - (1 - fraction) ** samples


def samples_needed(fraction: float, probability: float) -> int:
    """The fewest draws that catch a ``fraction`` of bad reports with ``probability``."""
    if not 0 < fraction <= 1 or not 0 <= probability < 1:
        raise InputError("sampling.invalid", "need 0 < fraction <= 1 and 0 <= probability < 1")
    if fraction == 1 or probability == 0:
        return 1 if probability else 0
    return math.ceil(math.log(1 - probability) / math.log(1 - fraction))


def choose(seed: bytes, population: int, count: int) -> list[int]:
    """``count`` distinct indices in ``range(population)``, drawn from ``seed`` (see the
    module docstring); all of them when ``count >= population``."""
    if population < 0 or count < 0:
        raise InputError("sampling.invalid", "population and count are non-negative")
    count = min(count, population)
    limit = (2**64 // population) * population if population else 0
    chosen: list[int] = []
    seen: set[int] = set()
    draw = 0
    while len(chosen) < count:
        digest = hashlib.sha256(_DOMAIN + seed + draw.to_bytes(8, "big")).digest()
        draw += 1
        value = int.from_bytes(digest[:8], "big")
        if value >= limit:
            continue
        index = value % population
        if index not in seen:
            seen.add(index)
            chosen.append(index)
    return chosen


@dataclass(frozen=True, slots=True)
class SamplePlan:
    """A budget against an assumed falsification rate, and what it buys."""

    population: int
    budget: int
    fraction: float
    probability: float
    seed: bytes
    chosen: tuple[int, ...]

    def describe(self) -> str:
        return (
            f"{self.budget} of {self.population} reports, drawn from seed "
            f"{self.seed.hex()[:16]}...: if {self.fraction:.2%} of reports are false, "
            f"P(caught) = 1 - (1 - {self.fraction})^{self.budget} = {self.probability:.4f}"
        )


def plan(seed: bytes, population: Sequence[object], budget: int, fraction: float) -> SamplePlan:
    """The sample of ``budget`` reports of ``population`` (in its given, public order)."""
    chosen = choose(seed, len(population), budget)
    return SamplePlan(
        population=len(population),
        budget=len(chosen),
        fraction=fraction,
        probability=catch_probability(fraction, len(chosen)),
        seed=seed,
        chosen=tuple(chosen),
    )
