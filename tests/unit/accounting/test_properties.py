"""Hypothesis properties the accounting must keep whatever the input.

* The attested bound is monotone in time and never below what the hardware could have done at
  any precision the policy covers.
* A lineage's total does not depend on how it is split into runs.
* A group's total does not depend on how its compute is split across subsidiaries.
"""

from __future__ import annotations

from datetime import timedelta
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from brakepedal.accounting.catalogue import (
    TENSOR_PRECISIONS,
    Accelerator,
    Precision,
    default_catalogue,
)
from brakepedal.accounting.flop import BoundBasis, BoundRule, attested_bound
from brakepedal.accounting.groups import Holding
from brakepedal.accounting.ledger import Subject
from brakepedal.accounting.lineage import RunDeclaration
from brakepedal.accounting.usage import UsageWindow
from brakepedal.model.types import EntityId

from .builders import T0, ledger, run, window

ACCELERATORS = list(default_catalogue())
SECONDS = st.fractions(min_value=0, max_value=3600, max_denominator=1000)


@st.composite
def device_and_rule(draw: st.DrawFn) -> tuple[Accelerator, BoundRule]:
    accelerator = draw(st.sampled_from(ACCELERATORS))
    known = sorted(accelerator.peak)
    covered = draw(st.sets(st.sampled_from(known), min_size=1))
    extra = draw(st.sets(st.sampled_from(list(Precision))))
    basis = draw(st.sampled_from(list(BoundBasis)))
    return accelerator, BoundRule(frozenset(covered | extra), basis)


@st.composite
def counters(draw: st.DrawFn) -> tuple[Fraction, Fraction, Fraction]:
    """(wall, busy, tensor) with tensor <= busy <= wall."""
    values = sorted(draw(st.lists(SECONDS, min_size=3, max_size=3)))
    return values[2], values[1], values[0]


@settings(max_examples=300)
@given(device_and_rule(), counters())
def test_bound_is_never_below_any_covered_precision(
    device: tuple[Accelerator, BoundRule], times: tuple[Fraction, Fraction, Fraction]
) -> None:
    accelerator, rule = device
    wall, busy, tensor = times
    bound = attested_bound(
        accelerator, rule, wall_seconds=wall, busy_seconds=busy, tensor_active_seconds=tensor
    )
    for precision in rule.precisions & frozenset(accelerator.peak):
        rate = accelerator.peak[precision]
        # Under the tensor-active basis, tensor precisions could only run while tensor-active.
        seconds = (
            tensor
            if rule.basis is BoundBasis.TENSOR_ACTIVE and precision in TENSOR_PRECISIONS
            else busy
        )
        if rule.basis is BoundBasis.WALL:
            seconds = wall
        assert bound.value >= seconds * rate


@settings(max_examples=300)
@given(device_and_rule(), counters(), counters())
def test_bound_is_monotone_in_attested_time(
    device: tuple[Accelerator, BoundRule],
    first: tuple[Fraction, Fraction, Fraction],
    more: tuple[Fraction, Fraction, Fraction],
) -> None:
    accelerator, rule = device
    small = attested_bound(
        accelerator,
        rule,
        wall_seconds=first[0],
        busy_seconds=first[1],
        tensor_active_seconds=first[2],
    )
    large = attested_bound(
        accelerator,
        rule,
        wall_seconds=first[0] + more[0],
        busy_seconds=first[1] + more[1],
        tensor_active_seconds=first[2] + more[2],
    )
    assert small <= large


WINDOWS = st.lists(
    st.tuples(
        st.integers(0, 2000), st.integers(1, 30), st.integers(0, 100)
    ),  # minute, minutes, busy %
    min_size=1,
    max_size=25,
)


def _windows(specs: list[tuple[int, int, int]], job: str = "job-1") -> list[UsageWindow]:
    return [
        window(
            f"gpu-{i}",
            minute=minute,
            minutes=minutes,
            busy=Fraction(minutes * 60 * percent, 100),
            job=job,
        )
        for i, (minute, minutes, percent) in enumerate(specs)
    ]


@settings(max_examples=150)
@given(WINDOWS, st.integers(0, 2000), st.integers(0, 2000), st.integers(1, 600))
def test_total_until_and_within_are_monotone_in_time(
    specs: list[tuple[int, int, int]], a: int, b: int, width: int
) -> None:
    book = ledger(_windows(specs))
    early, late = T0 + timedelta(minutes=min(a, b)), T0 + timedelta(minutes=max(a, b))
    assert book.total(Subject.GROUP, "acme", until=early) <= book.total(
        Subject.GROUP, "acme", until=late
    )
    assert book.total(Subject.GROUP, "acme", until=late) <= book.total(Subject.GROUP, "acme")
    assert book.within(Subject.GROUP, "acme", late, late + timedelta(minutes=width)) <= book.within(
        Subject.GROUP, "acme", early, late + timedelta(minutes=width)
    )
    peak = book.max_rolling(Subject.GROUP, "acme", timedelta(minutes=width))
    assert book.within(Subject.GROUP, "acme", early, early + timedelta(minutes=width)) <= peak.flop
    assert peak.flop <= book.total(Subject.GROUP, "acme")


@settings(max_examples=150)
@given(WINDOWS, st.data())
def test_lineage_total_does_not_depend_on_the_split_into_runs(
    specs: list[tuple[int, int, int]], data: st.DataObject
) -> None:
    whole = ledger(_windows(specs, job="r0"), runs=[run("r0")])
    pieces = data.draw(st.integers(1, len(specs)))
    assignment = [data.draw(st.integers(0, pieces - 1)) for _ in specs]
    # Each piece continues an earlier piece's snapshot (a chain or a tree, as drawn).
    runs: list[RunDeclaration] = [run("r0")]
    for index in range(1, pieces):
        parent = data.draw(st.integers(0, index - 1))
        runs.append(run(f"r{index}", parent=f"r{parent}"))
    split_windows = [
        window(w.device, minute=spec[0], minutes=spec[1], busy=w.busy_seconds, job=f"r{piece}")
        for w, spec, piece in zip(_windows(specs), specs, assignment, strict=True)
    ]
    split = ledger(split_windows, runs=runs)
    assert split.subjects(Subject.LINEAGE) == ("r0",)
    assert split.total(Subject.LINEAGE, "r0") == whole.total(Subject.LINEAGE, "r0")


@settings(max_examples=150)
@given(WINDOWS, st.integers(1, 6), st.data())
def test_group_total_does_not_depend_on_the_split_across_subsidiaries(
    specs: list[tuple[int, int, int]], subsidiaries: int, data: st.DataObject
) -> None:
    names = ["acme"] + [f"sub-{i}" for i in range(subsidiaries)]
    holdings = []
    for index in range(1, len(names)):
        # Each subsidiary is controlled by the parent or by an earlier subsidiary.
        holder = names[data.draw(st.integers(0, index - 1))]
        share = data.draw(
            st.fractions(min_value=Fraction(51, 100), max_value=1, max_denominator=100)
        )
        holdings.append(Holding(EntityId(holder), EntityId(names[index]), share))
    owners = [data.draw(st.sampled_from(names)) for _ in specs]
    spread = [
        window(w.device, owner=owner, minute=spec[0], minutes=spec[1], busy=w.busy_seconds)
        for w, spec, owner in zip(_windows(specs), specs, owners, strict=True)
    ]
    alone = ledger(_windows(specs))
    grouped = ledger(spread, entities=names, holdings=holdings)
    assert grouped.subjects(Subject.GROUP) == ("acme",)
    assert grouped.total(Subject.GROUP, "acme") == alone.total(Subject.GROUP, "acme")
