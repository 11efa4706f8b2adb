"""The durable spool: exactly-once storage, delivery state, backoff with jitter."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brakepedal.agent.spool import RetryPolicy, Spool
from brakepedal.errors import InputError, StorageError, TrustError
from brakepedal.model.types import DeviceId

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GPU = DeviceId("gpu-0")


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    opened = Spool(tmp_path / "spool.db")
    yield opened
    opened.close()


def test_append_is_idempotent_and_refuses_a_second_report_per_sequence(spool: Spool) -> None:
    spool.append(GPU, 0, "a" * 64, b"first", at=T0)
    spool.append(GPU, 0, "a" * 64, b"first", at=T0 + timedelta(seconds=5))
    assert spool.counts() == (1, 0)
    with pytest.raises(TrustError) as caught:
        spool.append(GPU, 0, "b" * 64, b"other", at=T0)
    assert caught.value.reason == "spool.conflict"
    assert spool.last(GPU) == (0, "a" * 64)
    assert spool.last(DeviceId("gpu-9")) is None


def test_due_delivered_and_failed(spool: Spool) -> None:
    for sequence in range(3):
        spool.append(
            GPU, sequence, f"{sequence:064x}", b"r", at=T0 + timedelta(microseconds=sequence)
        )
    assert [r.sequence for r in spool.due(at=T0 + timedelta(seconds=1))] == [0, 1, 2]
    spool.delivered(GPU, 0, at=T0)
    next_at = spool.failed(GPU, 1, at=T0, policy=RetryPolicy(), rng=random.Random(1))
    assert T0 <= next_at <= T0 + timedelta(seconds=1)
    assert next_at > T0 + timedelta(microseconds=2)
    assert [r.sequence for r in spool.due(at=T0 + timedelta(microseconds=2))] == [2]
    assert [r.sequence for r in spool.due(at=next_at)] == [1, 2]
    assert spool.counts() == (3, 1)
    assert spool.reports(GPU)[1].attempts == 1


def test_bad_calls_are_named(spool: Spool, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"spool\.sequence_invalid"):
        spool.append(GPU, -1, "a" * 64, b"r", at=T0)
    with pytest.raises(InputError, match=r"spool\.unknown_report"):
        spool.failed(GPU, 7, at=T0, policy=RetryPolicy(), rng=random.Random(0))
    with pytest.raises(StorageError, match=r"spool\.unavailable"):
        Spool(tmp_path / "missing" / "spool.db")
    with pytest.raises(InputError, match=r"spool\.retry_invalid"):
        RetryPolicy(base=timedelta(0))


@settings(max_examples=200)
@given(st.integers(1, 60), st.integers(0, 2**32 - 1))
def test_backoff_is_capped_exponential_with_full_jitter(attempts: int, seed: int) -> None:
    policy = RetryPolicy(base=timedelta(seconds=1), cap=timedelta(minutes=5))
    delay = policy.delay(attempts, random.Random(seed))
    assert timedelta(0) <= delay <= min(policy.cap, timedelta(seconds=2 ** min(attempts - 1, 30)))
