"""The node's hand-in store: round trips, window selection, idempotence, bounds, bad inputs."""

from __future__ import annotations

import hashlib
import multiprocessing
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brakepedal.accounting.usage import Workload
from brakepedal.agent import handin
from brakepedal.agent.handin import HandIns, commit_snapshot, snapshot_digest
from brakepedal.errors import InputError, StorageError
from brakepedal.model.types import DeviceId, EntityId, JobId, OrderId, PermitId, SiteId
from brakepedal.wire.minute import summarise_minute
from brakepedal.wire.report import (
    GENESIS_PREVIOUS,
    Attribution,
    GateEvent,
    GateEventKind,
    SnapshotCommitment,
    build_report,
    parse_report,
)

T0 = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)
MICRO = timedelta(microseconds=1)
JOB = JobId("slurm:4242")
OTHER = JobId("slurm:9")
GPU0, GPU1 = DeviceId("gpu-0"), DeviceId("gpu-1")


def snapshot(
    at: datetime, *, step: int = 100, job: JobId = JOB, **changes: object
) -> SnapshotCommitment:
    fields: dict[str, object] = {"digest": f"{step:064x}", "parent": None}
    fields.update(changes)
    return SnapshotCommitment(job=job, step=step, at=at, **fields)  # type: ignore[arg-type]


def event(
    at: datetime, kind: GateEventKind = GateEventKind.STARTED, **changes: object
) -> GateEvent:
    fields: dict[str, object] = {"job": JOB, "order": None, "detail": "reason=gate.no_order"}
    fields.update(changes)
    return GateEvent(at=at, kind=kind, **fields)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> HandIns:
    return HandIns(tmp_path / "handins.db")


def window(start: datetime = T0, minutes: int = 5) -> tuple[datetime, datetime]:
    return start, start + minutes * MINUTE


# ---------------------------------------------------------------------------- round trips


def test_hand_ins_come_back_as_handed_in_in_report_order(store: HandIns) -> None:
    first = snapshot(T0 + MINUTE, step=100, parent="ab" * 32)
    second = snapshot(T0 + 2 * MINUTE + 5 * MICRO, step=200)
    term = event(T0 + 3 * MINUTE, GateEventKind.SIGNALLED_TERM, order=OrderId("pause-1"))
    refused = event(T0 + 30 * timedelta(seconds=1), GateEventKind.REFUSED, job=None, detail="")
    for commitment in (second, first):
        store.add_snapshot(commitment)
    for step in (term, refused):
        store.add_event(step)
    assert store.between(GPU0, JOB, *window()) == ((first, second), (refused, term))


def test_a_report_built_from_the_store_round_trips(store: HandIns) -> None:
    store.add_snapshot(snapshot(T0 + MINUTE))
    store.add_event(event(T0 + MINUTE, GateEventKind.REFUSED, order=OrderId("pause-1")))
    snapshots, events = store.between(GPU0, JOB, *window())
    report = build_report(
        device=GPU0,
        accelerator="nvidia-h100-sxm5-80gb",
        sequence=0,
        previous=GENESIS_PREVIOUS,
        window_start=T0,
        window_end=T0 + 5 * MINUTE,
        minutes=[summarise_minute(GPU0, T0 + index * MINUTE, []) for index in range(5)],
        attribution=Attribution(
            JOB, EntityId("lab"), PermitId("p"), SiteId("dc"), Workload.TRAINING
        ),
        governance=None,
        snapshots=snapshots,
        events=events,
    )
    assert parse_report(report.to_bytes()) == report
    assert (len(report.snapshots), len(report.events)) == (1, 1)


# ------------------------------------------------------------------------ window selection


def test_the_window_is_half_open(store: HandIns) -> None:
    start, end = window()
    at_start, before_end = snapshot(start, step=1), snapshot(end - MICRO, step=2)
    for commitment in (
        snapshot(start - MICRO, step=0),
        at_start,
        before_end,
        snapshot(end, step=3),
    ):
        store.add_snapshot(commitment)
    for step in (event(start - MICRO), event(start), event(end - MICRO), event(end)):
        store.add_event(step)
    snapshots, events = store.between(GPU0, JOB, start, end)
    assert snapshots == (at_start, before_end)
    assert [e.at for e in events] == [start, end - MICRO]


def test_snapshots_are_the_jobs_and_events_are_every_devices(store: HandIns) -> None:
    mine, theirs = snapshot(T0 + MINUTE), snapshot(T0 + MINUTE, job=OTHER)
    store.add_snapshot(mine)
    store.add_snapshot(theirs)
    store.add_event(event(T0 + MINUTE, job=OTHER))
    assert store.between(GPU0, JOB, *window())[0] == (mine,)
    assert store.between(GPU0, OTHER, *window())[0] == (theirs,)
    assert store.between(GPU0, None, *window())[0] == ()
    events = {
        store.between(device, job, *window())[1] for device in (GPU0, GPU1) for job in (JOB, None)
    }
    assert len(events) == 1
    assert len(events.pop()) == 1


def test_reading_consumes_nothing_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "handins.db"
    with HandIns(path) as store:
        store.add_snapshot(snapshot(T0 + MINUTE))
        store.add_event(event(T0 + 2 * MINUTE))
        first = store.between(GPU0, JOB, *window())
        assert store.between(GPU0, JOB, *window()) == first
    with HandIns(path) as reopened:  # a rebuilt report after a crash carries the same items
        assert reopened.between(GPU0, JOB, *window()) == first


def test_a_second_hand_in_of_the_same_item_is_stored_once(store: HandIns) -> None:
    original = snapshot(T0 + MINUTE)
    store.add_snapshot(original)
    store.add_snapshot(snapshot(T0 + 2 * MINUTE))  # the same commitment from another rank, later
    store.add_snapshot(snapshot(T0 + MINUTE, parent="cd" * 32))  # another lineage: its own row
    store.add_event(event(T0))
    store.add_event(event(T0))
    snapshots, events = store.between(GPU0, JOB, *window())
    assert [s.at for s in snapshots] == [T0 + MINUTE, T0 + MINUTE]
    assert original in snapshots
    assert len(events) == 1


# ---------------------------------------------------------------------------------- bounds


def test_a_job_with_a_full_day_of_snapshots_is_refused(
    store: HandIns, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handin, "MAX_SNAPSHOTS", 3)
    for step in range(3):
        store.add_snapshot(snapshot(T0 + step * MINUTE, step=step))
    store.add_snapshot(snapshot(T0, step=0))  # already there: still a no-op, not refused
    with pytest.raises(InputError) as caught:
        store.add_snapshot(snapshot(T0 + 2 * MINUTE - DAY + MICRO, step=9))  # all 3 within a day
    assert caught.value.reason == "handin.too_many_snapshots"
    store.add_snapshot(snapshot(T0 + MINUTE, step=9, job=OTHER))  # another job counts apart
    store.add_snapshot(snapshot(T0 + 2 * MINUTE + DAY, step=9))  # a day after the last: apart


def test_a_node_with_a_full_day_of_events_is_refused(
    store: HandIns, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handin, "MAX_EVENTS", 2)
    store.add_event(event(T0))
    store.add_event(event(T0, job=OTHER))
    with pytest.raises(InputError) as caught:
        store.add_event(event(T0 + DAY - MICRO, GateEventKind.EXITED))
    assert caught.value.reason == "handin.too_many_events"
    store.add_event(event(T0 + DAY, GateEventKind.EXITED))


def _add_unless_full(store: HandIns, item: GateEvent) -> None:
    try:
        store.add_event(item)
    except InputError as e:
        if e.reason != "handin.too_many_events":
            raise


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.integers(0, 3 * 24 * 60), min_size=1, max_size=30), st.integers(1, 24 * 60))
def test_no_window_of_a_day_or_less_ever_holds_more_than_a_report_may(
    minutes: list[int], length: int
) -> None:
    bound = 3
    with pytest.MonkeyPatch.context() as patch, HandIns(Path(":memory:")) as store:
        patch.setattr(handin, "MAX_EVENTS", bound)
        for step, minute in enumerate(minutes):
            _add_unless_full(store, event(T0 + minute * MINUTE, detail=f"n={step}"))
        span = length * MINUTE
        for minute in set(minutes):
            start = T0 + minute * MINUTE
            for begin in (start, start - span + MICRO):  # windows starting or ending at an item
                assert len(store.between(GPU0, None, begin, begin + span)[1]) <= bound


def test_more_rows_than_a_report_holds_are_refused_not_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "handins.db"
    with HandIns(path) as store:
        for step in range(3):
            store.add_snapshot(snapshot(T0 + step * MINUTE, step=step))
    monkeypatch.setattr(handin, "MAX_SNAPSHOTS", 2)  # rows written past the bound
    with HandIns(path) as store, pytest.raises(StorageError) as caught:
        store.between(GPU0, JOB, *window())
    assert caught.value.reason == "handin.overfull"


def _add_many(path: str, worker: int) -> None:
    with HandIns(Path(path)) as store:
        for step in range(20):
            store.add_snapshot(snapshot(T0 + step * MICRO, step=worker * 100 + step))


def test_several_processes_hand_in_at_once(tmp_path: Path) -> None:
    path = tmp_path / "handins.db"
    HandIns(path).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_add_many, args=(str(path), n)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    with HandIns(path) as store:
        assert len(store.between(GPU0, JOB, *window())[0]) == 80


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        pytest.param(lambda s: s.add_snapshot("x"), "handin.not_a_snapshot", id="not a snapshot"),
        pytest.param(lambda s: s.add_event(None), "handin.not_an_event", id="not an event"),
        pytest.param(
            lambda s: s.between("gpu-0", JOB, *window()), "handin.device_invalid", id="device str"
        ),
        pytest.param(
            lambda s: s.between(GPU0, "slurm:4242", *window()), "handin.job_invalid", id="job str"
        ),
        pytest.param(lambda s: s.between(GPU0, JOB, T0, T0), "handin.window_invalid", id="empty"),
        pytest.param(
            lambda s: s.between(GPU0, JOB, T0, T0 - MINUTE), "handin.window_invalid", id="backwards"
        ),
        pytest.param(
            lambda s: s.between(GPU0, JOB, T0, T0 + DAY + MICRO),
            "handin.window_invalid",
            id="over a day",
        ),
        pytest.param(
            lambda s: s.between(GPU0, JOB, datetime(2027, 1, 1), T0), "time.naive", id="naive"
        ),
    ],
)
def test_bad_calls_are_refused_by_name(store: HandIns, call: object, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        call(store)  # type: ignore[operator]
    assert caught.value.reason == reason


def test_a_store_that_cannot_be_opened_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError) as caught:
        HandIns(tmp_path / "no-such-folder" / "handins.db")
    assert caught.value.reason == "handin.unavailable"


def test_a_store_locked_past_the_busy_timeout_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "handins.db"
    HandIns(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        with HandIns(path, busy_timeout=0.1) as store, pytest.raises(StorageError) as caught:
            store.add_event(event(T0))
        assert caught.value.reason == "handin.write_failed"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with HandIns(path) as store:
        assert store.between(GPU0, None, *window()) == ((), ())


@pytest.mark.parametrize(
    "row",
    [
        ("slurm:4242", 1, "not-hex", "", 1_798_804_860_000_000),
        ("slurm:4242", -1, "ab" * 32, "", 1_798_804_860_000_000),
        ("slurm:4242", 1, "ab" * 32, "zz", 1_798_804_860_000_000),
    ],
)
def test_a_row_that_is_no_valid_item_is_a_storage_error(
    tmp_path: Path, row: tuple[object, ...]
) -> None:
    path = tmp_path / "handins.db"
    HandIns(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO snapshots VALUES (?, ?, ?, ?, ?)", row)
    with HandIns(path) as store, pytest.raises(StorageError) as caught:
        store.between(GPU0, JOB, T0, T0 + DAY)
    assert caught.value.reason == "handin.corrupt"


def test_an_event_row_of_an_unknown_kind_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "handins.db"
    HandIns(path).close()
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?)",
            (1_798_804_860_000_000, "paused", "", "", ""),
        )
    with HandIns(path) as store, pytest.raises(StorageError) as caught:
        store.between(GPU0, None, T0, T0 + DAY)
    assert caught.value.reason == "handin.corrupt"


# -------------------------------------------------------------------- the framework's API


def test_commit_snapshot_hashes_a_file_in_a_stream(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.bin"
    manifest.write_bytes(bytes(range(256)) * 12_289)  # ~3 MiB: more than one read
    expected = hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert snapshot_digest(manifest) == expected
    path = tmp_path / "handins.db"
    stored = commit_snapshot(path, "slurm:4242", 12_000, manifest, at=T0 + MINUTE)
    assert (stored.job, stored.step, stored.digest, stored.parent) == (JOB, 12_000, expected, None)
    with HandIns(path) as store:
        assert store.between(GPU0, JOB, *window())[0] == (stored,)


def test_commit_snapshot_takes_a_digest_and_a_parent(tmp_path: Path) -> None:
    path = tmp_path / "handins.db"
    before = datetime.now(UTC)
    stored = commit_snapshot(path, JOB, 7, "ef" * 32, parent="01" * 32)
    assert (stored.digest, stored.parent) == ("ef" * 32, "01" * 32)
    assert before <= stored.at <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("digest_or_path", "reason"),
    [
        pytest.param("EF" * 32, "handin.digest_invalid", id="uppercase"),
        pytest.param("manifest.json", "handin.digest_invalid", id="a str is never a path"),
        pytest.param(b"ef" * 32, "handin.digest_invalid", id="bytes"),
        pytest.param(Path("no-such-manifest.json"), "handin.file_unreadable", id="missing file"),
        pytest.param(Path(), "handin.file_unreadable", id="a directory"),
    ],
)
def test_commit_snapshot_refuses_what_is_no_digest(
    tmp_path: Path, digest_or_path: object, reason: str
) -> None:
    with pytest.raises(InputError) as caught:
        commit_snapshot(tmp_path / "handins.db", JOB, 1, digest_or_path)  # type: ignore[arg-type]
    assert caught.value.reason == reason


def test_commit_snapshot_refuses_bad_values_with_the_items_reasons(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        commit_snapshot(tmp_path / "handins.db", JOB, -1, "ef" * 32)
    assert caught.value.reason == "report.field_invalid"
    with pytest.raises(InputError) as caught:
        commit_snapshot(tmp_path / "handins.db", "Job 1", 1, "ef" * 32)
    assert caught.value.reason == "job_id.invalid_character"
