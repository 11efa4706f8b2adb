"""Permit coverage arithmetic: the gaps between validity intervals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from brakepedal.policy.permits import gaps

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MOMENTS = st.integers(0, 100).map(lambda h: T0 + timedelta(hours=h))
INTERVALS = st.tuples(MOMENTS, MOMENTS).filter(lambda i: i[0] < i[1])


def test_gaps_examples() -> None:
    hour = timedelta(hours=1)
    span = (T0, T0 + 10 * hour)
    assert gaps(span, []) == [span]
    assert gaps(span, [span]) == []
    assert gaps(span, [(T0 + hour, T0 + 2 * hour), (T0 + 2 * hour, T0 + 3 * hour)]) == [
        (T0, T0 + hour),
        (T0 + 3 * hour, T0 + 10 * hour),
    ]
    assert gaps(span, [(T0 - hour, T0 + 20 * hour)]) == []


@given(INTERVALS, st.lists(INTERVALS, max_size=6))
def test_gaps_and_covered_intervals_partition_the_span(
    span: tuple[datetime, datetime], covered: list[tuple[datetime, datetime]]
) -> None:
    found = gaps(span, covered)
    hours = range(int((span[1] - span[0]) / timedelta(hours=1)))
    for offset in hours:
        moment = span[0] + timedelta(hours=offset)
        in_gap = any(low <= moment < high for low, high in found)
        in_cover = any(low <= moment < high for low, high in covered)
        assert in_gap != in_cover
    assert found == sorted(found)
    assert all(low < high for low, high in found)
    assert all(a[1] < b[0] for a, b in pairwise(found))
