"""The ledger: totals by run, lineage, group and site; crossings; rolling windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest

from brakepedal.accounting.groups import Holding
from brakepedal.accounting.ledger import UNSITED, Subject
from brakepedal.accounting.usage import UsageWindow, Workload
from brakepedal.errors import InputError
from brakepedal.model.types import DeviceId, EntityId, Flop, RunId, SiteId

from .builders import H100_FP8, T0, ledger, run, window

FIVE_MINUTES = 300 * H100_FP8


def test_windows_sum_into_runs_lineages_and_groups() -> None:
    windows = [
        window(minute=0, job="base"),
        window("gpu-1", minute=0, job="sft", owner="acme-cloud"),
    ]
    book = ledger(
        windows,
        runs=[run("base"), run("sft", parent="base", owner="acme-cloud")],
        entities=["acme", "acme-cloud"],
        holdings=[Holding(EntityId("acme"), EntityId("acme-cloud"), Fraction(3, 5))],
    )
    assert book.total(Subject.RUN, "base") == Flop(FIVE_MINUTES)
    assert book.total(Subject.LINEAGE, "base") == Flop(2 * FIVE_MINUTES)
    assert book.total(Subject.GROUP, "acme") == Flop(2 * FIVE_MINUTES)
    assert book.total(Subject.ENTITY, "acme-cloud") == Flop(FIVE_MINUTES)
    assert book.subjects(Subject.GROUP) == ("acme",)
    assert book.model_cumulative(RunId("sft")) == Flop(2 * FIVE_MINUTES)
    assert book.model_cumulative(RunId("base")) == Flop(FIVE_MINUTES)


def test_undeclared_jobs_sum_per_owner_rather_than_vanish() -> None:
    book = ledger(
        [window(job="hidden-1"), window(minute=5, job="hidden-2"), window(minute=10, job=None)]
    )
    assert book.subjects(Subject.LINEAGE) == ("unattributed:acme",)
    assert book.total(Subject.LINEAGE, "unattributed:acme") == Flop(3 * FIVE_MINUTES)
    assert book.subjects(Subject.RUN) == ()


def test_exempt_inference_counts_for_capacity_not_training() -> None:
    windows = [window(workload=Workload.INFERENCE), window("gpu-1", job="other")]
    book = ledger(windows, exempt=frozenset({Workload.INFERENCE}))
    assert book.total(Subject.GROUP, "acme") == Flop(FIVE_MINUTES)
    assert book.site_capacity(SiteId("dc-1")).devices == {"gpu-0", "gpu-1"}
    assert ledger(windows).total(Subject.GROUP, "acme") == Flop(2 * FIVE_MINUTES)


def test_only_inference_can_be_exempt() -> None:
    with pytest.raises(InputError, match=r"ledger\.exemption_invalid"):
        ledger([], exempt=frozenset({Workload.UNKNOWN}))


def test_crossing_is_the_end_of_the_window_that_proves_it() -> None:
    book = ledger([window(minute=m) for m in range(0, 30, 5)])
    threshold = Flop(2 * FIVE_MINUTES)
    assert book.crossed_at(Subject.GROUP, "acme", threshold) == T0 + timedelta(minutes=15)
    assert book.crossed_at(Subject.GROUP, "acme", threshold, inclusive=True) == T0 + timedelta(
        minutes=10
    )
    assert book.crossed_at(Subject.GROUP, "acme", Flop(10**30)) is None


def test_within_clips_straddling_windows_soundly() -> None:
    book = ledger([window(minute=0, busy=60)])
    # Busy 60 s somewhere in the 5 minutes: any interval of >= 60 s may hold all of it.
    assert book.within(
        Subject.GROUP, "acme", T0 + timedelta(minutes=4), T0 + timedelta(minutes=9)
    ) == Flop(60 * H100_FP8)
    assert book.within(
        Subject.GROUP, "acme", T0 + timedelta(seconds=270), T0 + timedelta(minutes=9)
    ) == Flop(30 * H100_FP8)
    assert book.within(
        Subject.GROUP, "acme", T0 + timedelta(minutes=5), T0 + timedelta(minutes=9)
    ) == Flop(0)
    assert book.within(Subject.GROUP, "acme", T0, T0) == Flop(0)
    assert book.within(Subject.GROUP, "nobody", T0, T0 + timedelta(days=1)) == Flop(0)


def test_total_until_counts_part_of_the_straddling_window() -> None:
    book = ledger([window(minute=0), window(minute=5)])
    assert book.total(Subject.GROUP, "acme", until=T0 + timedelta(minutes=7)) == Flop(
        420 * H100_FP8
    )


def test_max_rolling_finds_the_busiest_interval() -> None:
    busy_day = [window(f"gpu-{d}", minute=0) for d in range(8)]
    quiet = [window(minute=60 * 24 * 3)]
    book = ledger(busy_day + quiet)
    peak = book.max_rolling(Subject.GROUP, "acme", timedelta(hours=1))
    assert peak.flop == Flop(8 * FIVE_MINUTES)
    assert peak.end is not None
    assert T0 + timedelta(minutes=5) <= peak.end <= T0 + timedelta(hours=1)
    assert book.within(Subject.GROUP, "acme", peak.end - timedelta(hours=1), peak.end) == peak.flop
    assert book.max_rolling(Subject.GROUP, "nobody", timedelta(hours=1)).flop == Flop(0)
    with pytest.raises(InputError, match=r"ledger\.width_invalid"):
        book.max_rolling(Subject.GROUP, "acme", timedelta(0))


def test_rolling_series() -> None:
    book = ledger([window(minute=m) for m in range(0, 60, 5)])
    series = book.rolling(
        Subject.GROUP,
        "acme",
        timedelta(minutes=10),
        start=T0,
        end=T0 + timedelta(minutes=60),
        step=timedelta(minutes=30),
    )
    assert [flop for _, flop in series] == [Flop(0), Flop(2 * FIVE_MINUTES), Flop(2 * FIVE_MINUTES)]
    with pytest.raises(InputError, match=r"ledger\.width_invalid"):
        book.rolling(
            Subject.GROUP, "acme", timedelta(minutes=1), start=T0, end=T0, step=timedelta(0)
        )


def test_downstream_modification_by_another_group() -> None:
    windows = [window(minute=m, job="base") for m in range(0, 30, 5)]
    windows += [window("gpu-9", owner="rival", minute=m, job="tune") for m in range(0, 15, 5)]
    windows += [window("gpu-9", owner="rival", minute=20, job="tune-2")]
    book = ledger(
        windows,
        runs=[
            run("base"),
            run("tune", owner="rival", parent="base"),
            run("tune-2", owner="rival", parent="tune"),
        ],
        entities=["acme", "rival"],
    )
    (modification,) = book.modifications()
    assert modification.modifier == "rival"
    assert modification.root == "tune"
    assert modification.original == Flop(6 * FIVE_MINUTES)
    assert modification.modification == Flop(4 * FIVE_MINUTES)


def test_site_capacity_in_h100_equivalents() -> None:
    windows = [window(f"gpu-{i}", site=None) for i in range(3)]
    windows.append(window("a100", accelerator="NVIDIA A100-SXM4-80GB", site=None))
    capacity = ledger(windows).site_capacity(UNSITED)
    assert len(capacity.devices) == 4
    assert capacity.h100_equivalents == 3 + Fraction(312_000, 989_400)
    assert capacity.peak_ops_per_s == 3 * H100_FP8 + 312 * 10**12


def test_devices_in_an_interval() -> None:
    book = ledger([window("a", minute=0), window("b", minute=10)])
    assert book.devices(Subject.GROUP, "acme", T0, T0 + timedelta(minutes=6)) == {DeviceId("a")}


def test_unknown_owner_and_accelerator_are_named() -> None:
    with pytest.raises(InputError) as caught:
        ledger([window(owner="stranger")])
    assert caught.value.reason == "ownership.entity_unknown"
    assert "stranger" in caught.value.message
    with pytest.raises(InputError) as caught:
        ledger([window(accelerator="H100 SXM6")])
    assert caught.value.reason == "catalogue.accelerator_unknown"


def test_windows_of_a_subject_need_an_id() -> None:
    with pytest.raises(InputError, match=r"ledger\.subject_missing"):
        ledger([]).windows(Subject.RUN)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"busy_seconds": Fraction(301)}, "usage.busy_invalid"),
        ({"tensor_active_seconds": Fraction(400)}, "usage.tensor_active_invalid"),
        ({"end": T0}, "usage.window_empty"),
        ({"end": T0 + timedelta(days=2)}, "usage.window_too_long"),
        ({"start": T0.replace(tzinfo=None)}, "time.naive"),
    ],
)
def test_bad_windows(changes: dict[str, object], reason: str) -> None:
    fields: dict[str, object] = {
        "device": DeviceId("gpu"),
        "accelerator": "H100",
        "owner": EntityId("acme"),
        "start": T0,
        "end": T0 + timedelta(minutes=5),
        "busy_seconds": Fraction(300),
    }
    fields.update(changes)
    with pytest.raises(InputError) as caught:
        UsageWindow(**fields)  # type: ignore[arg-type]
    assert caught.value.reason == reason


def test_overlapping_windows_of_one_device_are_refused_not_summed() -> None:
    with pytest.raises(InputError) as caught:
        ledger([window(minute=0), window(minute=1)])
    assert caught.value.reason == "ledger.window_overlap"
    assert "gpu-0" in caught.value.message
    with pytest.raises(InputError, match=r"ledger\.window_overlap"):
        ledger([window(minute=0), window(minute=0)])  # an exact duplicate too
    # Back to back, or at once on two devices, is fine.
    assert ledger([window(minute=0), window(minute=5), window("gpu-1", minute=0)]).total(
        Subject.GROUP, "acme"
    ) == Flop(3 * FIVE_MINUTES)


@pytest.mark.parametrize(
    "start", [datetime(1969, 12, 31, 23, 0, tzinfo=UTC), datetime(8999, 12, 31, 23, 58, tzinfo=UTC)]
)
def test_windows_outside_1970_to_9000_are_refused(start: datetime) -> None:
    with pytest.raises(InputError, match=r"usage\.time_out_of_range"):
        UsageWindow(
            device=DeviceId("gpu"),
            accelerator="H100",
            owner=EntityId("acme"),
            start=start,
            end=start + timedelta(minutes=5),
            busy_seconds=Fraction(1),
        )


def test_a_run_may_not_take_the_name_of_a_pool_of_undeclared_work() -> None:
    from brakepedal.accounting.lineage import RunDeclaration  # noqa: PLC0415
    from brakepedal.errors import InputError  # noqa: PLC0415
    from brakepedal.model.types import EntityId, JobId, RunId  # noqa: PLC0415

    with pytest.raises(InputError) as raised:
        RunDeclaration(RunId("unattributed:lab-b"), EntityId("lab-a"), frozenset({JobId("j")}))
    assert raised.value.reason == "lineage.reserved_name"
