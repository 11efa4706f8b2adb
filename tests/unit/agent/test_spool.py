"""The durable spool: exactly-once storage, delivery state, backoff with jitter."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brakepedal.agent.spool import ChainHead, RetryPolicy, Spool
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


# ------------------------------------------------------------- minute records, window ends

#: The schema of spool files written before minute records and window ends were kept.
_OLD_SCHEMA = """
CREATE TABLE reports (
    device TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    digest TEXT NOT NULL,
    envelope BLOB NOT NULL,
    produced_us INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_us INTEGER NOT NULL,
    delivered_us INTEGER,
    PRIMARY KEY (device, sequence)
) WITHOUT ROWID;
CREATE INDEX reports_due ON reports (delivered_us, next_attempt_us);
"""


def test_minutes_and_window_end_are_stored_with_the_report(spool: Spool) -> None:
    records = [b"minute 0", b"minute 1", b"minute 2"]
    end = T0 + timedelta(minutes=3)
    spool.append(GPU, 0, "a" * 64, b"report", at=T0, minutes=records, window_end=end)
    spool.append(GPU, 0, "a" * 64, b"report", at=T0, minutes=records, window_end=end)
    assert spool.minutes(GPU, 0) == records  # once, in window order
    head = spool.head(GPU)
    assert head is not None
    assert (head.sequence, head.digest, head.envelope, head.window_end) == (
        0,
        "a" * 64,
        b"report",
        end,
    )
    assert spool.minutes(GPU, 1) == []
    assert spool.head(DeviceId("gpu-9")) is None


def test_a_refused_report_leaves_no_minutes_behind(spool: Spool) -> None:
    spool.append(GPU, 0, "a" * 64, b"report", at=T0, minutes=[b"kept"])
    with pytest.raises(TrustError, match=r"spool\.conflict"):
        spool.append(GPU, 0, "b" * 64, b"other", at=T0, minutes=[b"refused", b"refused"])
    assert spool.minutes(GPU, 0) == [b"kept"]


def test_a_report_without_minutes_or_end_is_still_spooled(spool: Spool) -> None:
    spool.append(GPU, 0, "a" * 64, b"report", at=T0)
    head = spool.head(GPU)
    assert head is not None
    assert head.window_end is None
    assert spool.minutes(GPU, 0) == []


def test_a_spool_file_from_before_minutes_opens_and_upgrades(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(_OLD_SCHEMA)
    old.execute(
        "INSERT INTO reports (device, sequence, digest, envelope, produced_us, next_attempt_us)"
        " VALUES ('gpu-0', 0, ?, x'6f6c64', 0, 0)",
        ("a" * 64,),
    )
    old.commit()
    old.close()
    spool = Spool(path)
    try:
        assert spool.last(GPU) == (0, "a" * 64)
        head = spool.head(GPU)
        assert head is not None
        assert head.window_end is None
        assert head.envelope == b"old"
        assert spool.minutes(GPU, 0) == []
        end = T0 + timedelta(minutes=1)
        spool.append(GPU, 1, "b" * 64, b"new", at=T0, minutes=[b"m"], window_end=end)
    finally:
        spool.close()
    reopened = Spool(path)  # the upgrade is idempotent
    try:
        assert reopened.minutes(GPU, 1) == [b"m"]
        assert reopened.head(GPU) == ChainHead(1, "b" * 64, b"new", end)
        assert reopened.counts() == (2, 0)
    finally:
        reopened.close()
