# The fake mirrors pynvml's names (camelCase functions, NVMLError_NotSupported).
# ruff: noqa: N802, N818
"""Telemetry backends and trace readers.

The NVML backend runs against :class:`FakeNvml`, a stand-in for the ``pynvml`` module that
implements exactly the calls the backend makes. The trace readers run on small inline files in
each documented layout, a table of named malformed inputs, and (when the project's shared data
is present) the real recorded traces.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace
from typing import TypeVar

import numpy as np
import pytest

from brakepedal.accounting.catalogue import default_catalogue
from brakepedal.agent.telemetry import DeviceInfo, NvmlBackend, SimulatedBackend
from brakepedal.agent.traces import (
    PROFILES,
    Trace,
    read_nvidia_smi_csv,
    synthetic_trace,
)
from brakepedal.errors import InfrastructureError, InputError

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
H100 = default_catalogue().get("NVIDIA H100 80GB HBM3")
T = TypeVar("T")
SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"

# ------------------------------------------------------------------------------ fake pynvml


class FakeNvmlError(Exception):
    """pynvml.NVMLError: carries the NVML return code."""

    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


class FakeNotSupported(FakeNvmlError):
    """pynvml.NVMLError_NotSupported (NVML_ERROR_NOT_SUPPORTED = 3)."""

    def __init__(self, value: int = 3) -> None:
        super().__init__(value)


@dataclass
class FakeDevice:
    """One device; a field set to None raises NotSupported when read."""

    name: str | bytes
    uuid: str | bytes
    power_mw: int | None = 312_456
    energy_mj: int | None = 123_456_789
    utilisation: int = 87
    memory_used: int | None = 41 * 2**30
    sm_clock_mhz: int | None = 1980
    pids: tuple[int, ...] | None = (4242, 17, 4242)
    pcie_kb_per_s: tuple[int, int] | None = (1000, 3000)
    nvlink_kib: tuple[int, int] | None = (5_000_000, 7_000_000)


def _supported(value: T | None) -> T:
    if value is None:
        raise FakeNotSupported
    return value


@dataclass
class FakeNvml:
    """The subset of the ``pynvml`` module that :class:`NvmlBackend` uses."""

    devices: list[FakeDevice]
    failures: dict[str, FakeNvmlError] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    NVMLError = FakeNvmlError
    NVMLError_NotSupported = FakeNotSupported
    NVML_SUCCESS = 0
    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_CLOCK_SM = 1
    NVML_PCIE_UTIL_TX_BYTES = 0
    NVML_PCIE_UTIL_RX_BYTES = 1
    NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX = 138
    NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX = 139

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        if name in self.failures:
            raise self.failures[name]

    def nvmlInit(self) -> None:
        self._enter("nvmlInit")

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeDevice:
        self._enter("nvmlDeviceGetHandleByIndex")
        return self.devices[index]

    def nvmlDeviceGetName(self, handle: FakeDevice) -> str | bytes:
        self._enter("nvmlDeviceGetName")
        return handle.name

    def nvmlDeviceGetUUID(self, handle: FakeDevice) -> str | bytes:
        self._enter("nvmlDeviceGetUUID")
        return handle.uuid

    def nvmlDeviceGetPowerUsage(self, handle: FakeDevice) -> int:
        self._enter("nvmlDeviceGetPowerUsage")
        return _supported(handle.power_mw)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeDevice) -> int:
        self._enter("nvmlDeviceGetTotalEnergyConsumption")
        return _supported(handle.energy_mj)

    def nvmlDeviceGetUtilizationRates(self, handle: FakeDevice) -> SimpleNamespace:
        self._enter("nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=handle.utilisation, memory=10)

    def nvmlDeviceGetMemoryInfo(self, handle: FakeDevice) -> SimpleNamespace:
        self._enter("nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(total=80 * 2**30, used=_supported(handle.memory_used), free=0)

    def nvmlDeviceGetClockInfo(self, handle: FakeDevice, clock: int) -> int:
        self._enter("nvmlDeviceGetClockInfo")
        assert clock == self.NVML_CLOCK_SM
        return _supported(handle.sm_clock_mhz)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeDevice) -> list[SimpleNamespace]:
        self._enter("nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(pid=pid, usedGpuMemory=1) for pid in _supported(handle.pids)]

    def nvmlDeviceGetPcieThroughput(self, handle: FakeDevice, counter: int) -> int:
        self._enter("nvmlDeviceGetPcieThroughput")
        return _supported(handle.pcie_kb_per_s)[counter]

    def nvmlDeviceGetFieldValues(
        self, handle: FakeDevice, fields: list[int]
    ) -> list[SimpleNamespace]:
        self._enter("nvmlDeviceGetFieldValues")
        assert fields == [138, 139]
        if handle.nvlink_kib is None:  # NVML answers per field: this device has no NVLink
            return [SimpleNamespace(nvmlReturn=3, value=SimpleNamespace(ullVal=0))] * 2
        return [
            SimpleNamespace(nvmlReturn=0, value=SimpleNamespace(ullVal=v))
            for v in handle.nvlink_kib
        ]


def _fake() -> FakeNvml:
    h100 = FakeDevice("NVIDIA H100 80GB HBM3", "GPU-aaaa")
    pcie_card = FakeDevice(
        b"NVIDIA A100-PCIE-40GB",
        b"GPU-bbbb",
        power_mw=100_000,
        energy_mj=None,
        sm_clock_mhz=None,
        pids=None,
        pcie_kb_per_s=None,
        nvlink_kib=None,
    )
    return FakeNvml([h100, pcie_card])


# ------------------------------------------------------------------------------ NVML backend


def test_nvml_devices_map_to_the_catalogue() -> None:
    backend = NvmlBackend(_fake())
    devices = backend.devices()
    assert devices == [
        DeviceInfo(0, "GPU-aaaa", "NVIDIA H100 80GB HBM3"),
        DeviceInfo(1, "GPU-bbbb", "NVIDIA A100-PCIE-40GB"),
    ]
    assert devices[0].accelerator().id == "nvidia-h100-sxm5-80gb"
    assert devices[1].accelerator(default_catalogue()).id == "nvidia-a100-pcie"


def test_nvml_sample_maps_every_field_and_unit() -> None:
    backend = NvmlBackend(_fake())
    first = backend.sample(0, T0)
    second = backend.sample(0, T0 + timedelta(seconds=2))
    assert first.time == T0
    assert first.power_w == pytest.approx(312.456)  # mW -> W
    assert first.energy_mj == 123_456_789  # NVML's counter, mJ, as is
    assert first.utilisation == 87  # percent
    assert first.memory_used_bytes == 41 * 2**30
    assert first.sm_clock_mhz == 1980
    assert first.processes == (17, 4242)  # sorted, distinct
    assert first.tensor_active is None  # NVML cannot measure it (DCGM profiling can)
    assert first.nvlink_bytes == 12_000_000 * 1024  # TX + RX KiB counters -> bytes
    assert first.pcie_bytes == 0  # integrated from the rate: nothing before the first sample
    assert second.pcie_bytes == (1000 + 3000) * 1024 * 2  # KB/s x 2 s


def test_nvml_not_supported_fields_are_left_out() -> None:
    backend = NvmlBackend(_fake())
    first = backend.sample(1, T0)
    later = backend.sample(1, T0 + timedelta(seconds=2))
    assert first.pcie_bytes is None
    assert first.nvlink_bytes is None
    assert first.sm_clock_mhz == 0
    assert first.processes == ()
    # No NVML energy counter: integrated from power over the backend's samples (100 W x 2 s).
    assert (first.energy_mj, later.energy_mj) == (0, 200_000)


def test_nvml_memory_not_supported_reads_zero() -> None:
    fake = _fake()
    fake.devices[0].memory_used = None
    assert NvmlBackend(fake).sample(0, T0).memory_used_bytes == 0


def test_nvml_field_values_not_supported_as_a_whole() -> None:
    fake = _fake()
    fake.failures["nvmlDeviceGetFieldValues"] = FakeNotSupported()
    assert NvmlBackend(fake).sample(0, T0).nvlink_bytes is None


def test_nvml_module_without_nvlink_fields() -> None:
    class OldNvml(FakeNvml):
        NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX = None  # type: ignore[assignment]

    fake = OldNvml(_fake().devices)
    assert NvmlBackend(fake).sample(0, T0).nvlink_bytes is None
    assert "nvmlDeviceGetFieldValues" not in fake.calls


@pytest.mark.parametrize(
    "call",
    [
        "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetUtilizationRates",
        "nvmlDeviceGetMemoryInfo",
        "nvmlDeviceGetClockInfo",
        "nvmlDeviceGetTotalEnergyConsumption",
        "nvmlDeviceGetComputeRunningProcesses",
        "nvmlDeviceGetPcieThroughput",
        "nvmlDeviceGetFieldValues",
    ],
)
def test_nvml_failure_is_an_infrastructure_error_naming_the_call(call: str) -> None:
    fake = _fake()
    backend = NvmlBackend(fake)
    fake.failures[call] = FakeNvmlError(15)  # NVML_ERROR_GPU_IS_LOST
    with pytest.raises(InfrastructureError) as caught:
        backend.sample(0, T0)
    assert caught.value.reason == "telemetry.nvml_error"
    assert call in caught.value.message
    assert isinstance(caught.value.__cause__, FakeNvmlError)


def test_nvml_required_field_not_supported_is_an_error() -> None:
    fake = _fake()
    fake.devices[0].power_mw = None
    with pytest.raises(InfrastructureError, match="nvmlDeviceGetPowerUsage") as caught:
        NvmlBackend(fake).sample(0, T0)
    assert caught.value.reason == "telemetry.nvml_error"


def test_nvml_per_field_error_other_than_not_supported() -> None:
    fake = _fake()
    backend = NvmlBackend(fake)
    bad = SimpleNamespace(nvmlReturn=999, value=SimpleNamespace(ullVal=0))
    fake.nvmlDeviceGetFieldValues = lambda handle, fields: [bad, bad]  # type: ignore[method-assign]
    with pytest.raises(InfrastructureError, match="nvmlDeviceGetFieldValues"):
        backend.sample(0, T0)


@pytest.mark.parametrize("call", ["nvmlInit", "nvmlDeviceGetCount", "nvmlDeviceGetName"])
def test_nvml_start_up_failure(call: str) -> None:
    fake = _fake()
    fake.failures[call] = FakeNvmlError(9)  # NVML_ERROR_DRIVER_NOT_LOADED
    with pytest.raises(InfrastructureError, match=call) as caught:
        NvmlBackend(fake)
    assert caught.value.reason == "telemetry.nvml_error"
    assert (fake.calls[-1] == "nvmlShutdown") is (call != "nvmlInit")


def test_nvml_close_is_idempotent_and_final() -> None:
    fake = _fake()
    backend = NvmlBackend(fake)
    backend.close()
    backend.close()
    assert fake.calls.count("nvmlShutdown") == 1
    with pytest.raises(InfrastructureError) as caught:
        backend.sample(0, T0)
    assert caught.value.reason == "telemetry.closed"


@pytest.mark.parametrize(
    ("index", "at", "reason"),
    [
        (2, T0, "telemetry.device_unknown"),
        (-1, T0, "telemetry.device_unknown"),
        (True, T0, "telemetry.device_unknown"),
        (0, T0.replace(tzinfo=None), "time.naive"),
    ],
)
def test_nvml_bad_arguments(index: int, at: datetime, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        NvmlBackend(_fake()).sample(index, at)
    assert caught.value.reason == reason


def test_nvml_open_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes the import fail
    with pytest.raises(InfrastructureError) as caught:
        NvmlBackend.open()
    assert caught.value.reason == "telemetry.nvml_missing"
    assert "brakepedal[nvml]" in caught.value.remediation


def test_nvml_open_imports_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake())
    assert len(NvmlBackend.open().devices()) == 2


# ------------------------------------------------------------------------------ simulated


def _samples(backend: SimulatedBackend, index: int, seconds: int) -> list[int]:
    return [backend.sample(index, T0 + timedelta(seconds=s)).utilisation for s in range(seconds)]


def test_simulated_devices_are_catalogue_devices_with_stable_uuids() -> None:
    first = SimulatedBackend.synthetic(H100, "training", devices=4, start=T0, seed=7)
    again = SimulatedBackend.synthetic(H100, "training", devices=4, start=T0, seed=7)
    devices = first.devices()
    assert [d.index for d in devices] == [0, 1, 2, 3]
    assert all(d.accelerator().id == H100.id for d in devices)
    assert len({d.uuid for d in devices}) == 4
    assert devices == again.devices()
    first.close()


def test_simulated_is_deterministic_per_seed() -> None:
    def run(seed: int) -> list[object]:
        backend = SimulatedBackend.synthetic(H100, "inference", devices=2, start=T0, seed=seed)
        times = [T0 + timedelta(seconds=s, milliseconds=250) for s in range(120)]
        return [backend.sample(i, t) for i in (0, 1) for t in times]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_simulated_energy_is_exact() -> None:
    trace = Trace("hand", np.array([100.0, 200.0, 50.5]), np.array([1.0, 0.0, 0.5]))
    backend = SimulatedBackend(H100, [trace], start=T0)

    def energy(seconds: float) -> int:
        return backend.sample(0, T0 + timedelta(seconds=seconds)).energy_mj

    assert energy(0) == 0
    assert energy(0.5) == 50_000
    assert energy(1) == 100_000
    assert energy(2.25) == 300_000 + 12_625
    assert energy(3) == 350_500
    assert energy(4) == 450_500  # the trace loops
    assert energy(6.000001) == 701_000 + 0  # 100 W for 1 us is 0.1 mJ, rounded down


def test_simulated_energy_matches_power_and_never_decreases() -> None:
    backend = SimulatedBackend.synthetic(H100, "training", devices=1, start=T0, seconds=300)
    rng = np.random.default_rng(3)
    offsets = np.sort(rng.uniform(0, 900, 400))  # three passes of the trace
    energies = [backend.sample(0, T0 + timedelta(seconds=float(s))).energy_mj for s in offsets]
    assert all(b >= a for a, b in pairwise(energies))
    whole = [backend.sample(0, T0 + timedelta(seconds=s)) for s in range(301)]
    power_mw = [round(sample.power_w * 1000) for sample in whole]
    assert whole[300].energy_mj == sum(power_mw[:300])


def test_simulated_training_profile_shape() -> None:
    backend = SimulatedBackend.synthetic(H100, "training", devices=1, start=T0, seconds=600)
    samples = [backend.sample(0, T0 + timedelta(seconds=s)) for s in range(600)]
    duty = np.mean([s.utilisation for s in samples]) / 100
    tensor = np.mean([s.tensor_active or 0.0 for s in samples])
    power = np.array([s.power_w for s in samples])
    assert duty > 0.9
    assert 0.7 < tensor < 0.85
    assert 0.8 * 700 < np.median(power) < 700
    dips = np.nonzero(power < 0.6 * 700)[0]
    assert list(dips) == list(range(29, 600, 30))  # one dip every 30 s
    assert all(s.processes for s in samples)
    assert samples[0].memory_used_bytes == round(80e9 * 0.92)


def test_simulated_inference_and_idle_profiles() -> None:
    def duty(profile: str) -> float:
        backend = SimulatedBackend.synthetic(H100, profile, devices=1, start=T0, seconds=900)
        return float(np.mean(_samples(backend, 0, 900))) / 100

    assert 0.05 < duty("inference") < 0.5
    assert duty("idle") == 0
    idle = SimulatedBackend.synthetic(H100, "idle", devices=1, start=T0).sample(0, T0)
    assert idle.processes == ()
    assert idle.power_w == pytest.approx(70, abs=5)
    burst = SimulatedBackend.synthetic(H100, "inference", devices=1, start=T0, seconds=900)
    samples = [burst.sample(0, T0 + timedelta(seconds=s)) for s in range(900)]
    assert {bool(s.processes) for s in samples} == {True, False}
    assert all(bool(s.processes) == (s.utilisation > 0) for s in samples)


def test_simulated_replays_a_recorded_trace(tmp_path: Path) -> None:
    path = _write(tmp_path / "pt.csv", POWERTRACE)
    backend = SimulatedBackend(H100, read_nvidia_smi_csv(path), start=T0)
    assert backend.devices()[0].uuid == "GPU-0000aaaa"
    sample = backend.sample(0, T0 + timedelta(seconds=1))
    assert sample.sm_clock_mhz == 1800
    assert sample.memory_used_bytes == 70100 * 2**20
    assert sample.tensor_active is None
    assert sample.power_w == pytest.approx(350.25)


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: SimulatedBackend(H100, [], start=T0), "telemetry.no_devices"),
        (
            lambda: SimulatedBackend.synthetic(H100, "mining", devices=1, start=T0),
            "trace.profile_unknown",
        ),
        (
            lambda: SimulatedBackend.synthetic(
                H100, "idle", devices=1, start=T0.replace(tzinfo=None)
            ),
            "time.naive",
        ),
        (
            lambda: SimulatedBackend.synthetic(H100, "idle", devices=1, start=T0).sample(
                0, T0 - timedelta(seconds=1)
            ),
            "telemetry.before_start",
        ),
        (
            lambda: SimulatedBackend.synthetic(H100, "idle", devices=1, start=T0).sample(1, T0),
            "telemetry.device_unknown",
        ),
        (
            lambda: SimulatedBackend.synthetic(
                default_catalogue().get("nvidia-gh200"), "idle", devices=1, start=T0
            ),
            "telemetry.accelerator_incomplete",
        ),
        (
            lambda: synthetic_trace("idle", seconds=0, tdp_w=700, memory_bytes=1, seed=0),
            "trace.profile_invalid",
        ),
        (lambda: Trace("t", np.array([]), np.array([])), "trace.empty"),
        (lambda: Trace("t", np.array([1.0]), np.array([1.5])), "trace.value_invalid"),
        (lambda: Trace("t", np.array([-1.0]), np.array([0.5])), "trace.value_invalid"),
        (lambda: Trace("t", np.array([np.nan]), np.array([0.5])), "trace.value_invalid"),
        (lambda: Trace("t", np.array([1.0, 2.0]), np.array([0.5])), "trace.length_mismatch"),
    ],
)
def test_simulated_and_trace_refusals(build: Callable[[], object], reason: str) -> None:
    with pytest.raises(InputError) as caught:
        build()
    assert caught.value.reason == reason


def test_every_profile_is_a_valid_trace() -> None:
    for profile in PROFILES:
        trace = synthetic_trace(profile, seconds=60, tdp_w=400, memory_bytes=2**30, seed=(1, 2))
        assert len(trace) == 60
        assert not trace.power_w.flags.writeable


# ------------------------------------------------------------------------------ trace readers

TRAINING = """\
timestamp, power.draw [W], utilization.gpu [%], memory.used [MiB]
2030/01/02 00:10:27.858, 70.25 W, 0 %, 128 MiB
2030/01/02 00:10:27.862, 72.00 W, 10 %, 17 MiB
2030/01/02 00:10:27.983, 75.25 W, 20 %, 132 MiB
2030/01/02 00:10:27.983, 74.00 W, 30 %, 17 MiB
2030/01/02 00:10:28.900, 600.5 W, 100 %, 40000 MiB
2030/01/02 00:10:28.901, 610.0 W, 90 %, 40000 MiB
2030/01/02 00:10:31.100, 500 W, 80 %, 40000 MiB
2030/01/02 00:10:31.101, 400 W, 70 %, 40000 MiB
"""

INFERENCE_TRUNCATED = """\
timestamp, power.draw [W], utilization.gpu [%], utilization.memory [%]
2030/01/02 10:00:00.100, 50.00 W, 0 %, 0 %
2030/01/02 10:00:00.200, 51.00 W, 0 %, 0 %
2030/01/02 10:00:01.300, 400.00 W, 100 %, 40 %
2030/01/02 10:00:01."""

POWERTRACE = """\
timestamp,index,uuid,power.draw [W],clocks.sm [MHz],clocks.mem [MHz],utilization.gpu [%],\
utilization.memory [%],memory.used [MiB],temperature.gpu
2030/01/02 03:04:05.100,0,GPU-0000aaaa,120.50,1800,2600,0,0,70000,40
2030/01/02 03:04:05.350,0,GPU-0000aaaa,121.10,1800,2600,0,0,70000,40
2030/01/02 03:04:06.100,0,GPU-0000aaaa,350.25,1800,2600,92,70,70100,45
"""


def _write(path: Path, text: str) -> Path:
    data = text.encode()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def test_reads_lines_cycling_over_gpus(tmp_path: Path) -> None:
    traces = read_nvidia_smi_csv(_write(tmp_path / "ckpt.csv.gz", TRAINING))
    assert [t.name for t in traces] == ["ckpt.csv.gz#gpu0", "ckpt.csv.gz#gpu1"]
    gpu0, gpu1 = traces
    # Second 0 averages the first two rounds, second 1 is the third, second 2 holds it.
    assert list(gpu0.power_w) == [pytest.approx((70.25 + 75.25) / 2), 600.5, 600.5, 500]
    assert list(gpu1.utilisation) == [pytest.approx(0.2), 0.9, 0.9, 0.7]
    assert gpu1.memory_used_bytes is not None
    assert gpu1.memory_used_bytes[0] == 17 * 2**20
    assert gpu0.tensor_active is None
    assert gpu0.sm_clock_mhz is None
    assert gpu0.uuid is None


def test_device_count_given_and_incomplete_round_dropped(tmp_path: Path) -> None:
    traces = read_nvidia_smi_csv(_write(tmp_path / "t.csv", TRAINING), devices=3)
    assert len(traces) == 3
    # 8 rows: two rounds of 3, two left over; every GPU spans the rounds kept (to 28.901).
    assert [len(t) for t in traces] == [2, 2, 2]
    assert list(traces[0].power_w) == [pytest.approx((70.25 + 74.00) / 2)] * 2


def test_drops_a_final_line_cut_short(tmp_path: Path) -> None:
    (trace,) = read_nvidia_smi_csv(_write(tmp_path / "llama.csv.gz", INFERENCE_TRUNCATED))
    assert list(trace.power_w) == [pytest.approx(50.5), 400.0]
    assert trace.memory_used_bytes is None


def test_reads_an_index_column_and_bare_numbers(tmp_path: Path) -> None:
    (trace,) = read_nvidia_smi_csv(_write(tmp_path / "power.csv", POWERTRACE))
    assert trace.uuid == "GPU-0000aaaa"
    assert trace.sm_clock_mhz is not None
    assert list(trace.sm_clock_mhz) == [1800, 1800]
    assert list(trace.power_w) == [pytest.approx(120.80), 350.25]
    assert list(trace.utilisation) == [0, pytest.approx(0.92)]


def test_groups_rows_by_index(tmp_path: Path) -> None:
    rows = POWERTRACE.splitlines()
    two = [*rows, rows[1].replace(",0,GPU-0000aaaa,", ",1,GPU-2,")]
    two[-1] = two[-1].replace("05.100", "06.500")
    traces = read_nvidia_smi_csv(_write(tmp_path / "p.csv", "\n".join(two) + "\n"))
    assert [t.uuid for t in traces] == ["GPU-0000aaaa", "GPU-2"]
    assert [len(t) for t in traces] == [2, 2]  # GPU 1 starts late: its first value fills in
    assert list(traces[1].power_w) == [120.50, 120.50]


HEADER = "timestamp, power.draw [W], utilization.gpu [%], memory.used [MiB]\n"
ROW = "2030/01/02 00:10:27.858, 70.25 W, 0 %, 128 MiB\n"
LATER = "2030/01/02 00:10:28.858, 70.25 W, 0 %, 128 MiB\n"

MALFORMED = {
    "empty_file": ("", "trace.header_invalid", 1),
    "header_only": (HEADER, "trace.empty", None),
    "no_power_column": ("timestamp, utilization.gpu [%]\n" + ROW, "trace.column_missing", 1),
    "power_in_kilowatts": (HEADER.replace("[W]", "[kW]"), "trace.header_invalid", 1),
    "header_garbage": ("timestamp, Power Draw!\n", "trace.header_invalid", 1),
    "column_twice": (
        HEADER.replace("memory.used [MiB]", "power.draw [W]"),
        "trace.header_invalid",
        1,
    ),
    "timestamp_iso_dashes": (
        HEADER + ROW.replace("2030/01/02", "2030-01-02"),
        "trace.row_invalid",
        2,
    ),
    "timestamp_no_fraction": (HEADER + ROW.replace(".858", ""), "trace.row_invalid", 2),
    "unit_disagrees": (HEADER + ROW.replace("70.25 W", "70.25 kW"), "trace.row_invalid", 2),
    "negative_power": (HEADER + ROW.replace("70.25 W", "-70.25 W"), "trace.row_invalid", 2),
    "nan_power": (HEADER + ROW.replace("70.25 W", "nan W"), "trace.row_invalid", 2),
    "not_available": (HEADER + ROW.replace("128 MiB", "[N/A]"), "trace.row_invalid", 2),
    "utilisation_over_100": (HEADER + ROW.replace("0 %", "101 %"), "trace.row_invalid", 2),
    "extra_cell": (HEADER + ROW.replace(" MiB", " MiB, 3"), "trace.row_invalid", 2),
    "blank_line_inside": (HEADER + ROW + "\n" + LATER, "trace.row_invalid", 3),
    "time_goes_back": (HEADER + LATER + ROW, "trace.time_backwards", 3),
    "bad_row_then_truncated_end": (HEADER + "garbage\n" + ROW + "2025/07", "trace.row_invalid", 2),
    "bad_last_row_with_newline": (HEADER + ROW + "2025/07\n", "trace.row_invalid", 3),
}
INDEXED = "timestamp,index,uuid,power.draw [W],utilization.gpu [%]\n"
MALFORMED_INDEXED = {
    "negative_index": (
        INDEXED + "2030/01/02 05:06:49.469,-1,GPU-1,99.5,0\n",
        "trace.row_invalid",
    ),
    "index_not_integer": (
        INDEXED + "2030/01/02 05:06:49.469,a,GPU-1,99.5,0\n",
        "trace.row_invalid",
    ),
    "two_uuids_one_index": (
        INDEXED + "2030/01/02 05:06:49.469,0,GPU-1,1,0\n2030/01/02 05:06:49.569,0,GPU-2,1,0\n",
        "trace.row_invalid",
    ),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_input_names_file_and_line(tmp_path: Path, name: str) -> None:
    text, reason, line = MALFORMED[name]
    path = _write(tmp_path / f"{name}.csv", text)
    with pytest.raises(InputError) as caught:
        read_nvidia_smi_csv(path)
    assert caught.value.reason == reason
    where = f"{path}:{line}:" if line is not None else f"{path}:"
    assert where in caught.value.message


@pytest.mark.parametrize("name", sorted(MALFORMED_INDEXED))
def test_malformed_indexed_input(tmp_path: Path, name: str) -> None:
    text, reason = MALFORMED_INDEXED[name]
    path = _write(tmp_path / f"{name}.csv", text)
    with pytest.raises(InputError) as caught:
        read_nvidia_smi_csv(path)
    assert caught.value.reason == reason
    assert str(path) in caught.value.message


def test_reader_refusals(tmp_path: Path) -> None:
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: read_nvidia_smi_csv(tmp_path / "absent.csv"), "trace.unreadable"),
        (
            lambda: read_nvidia_smi_csv(_bytes(tmp_path / "x.csv.gz", b"not gzip")),
            "trace.unreadable",
        ),
        (
            lambda: read_nvidia_smi_csv(_bytes(tmp_path / "x.csv", b"\xff\xfe")),
            "trace.unreadable",
        ),
        (
            lambda: read_nvidia_smi_csv(
                _write(tmp_path / "big.csv", HEADER + ROW + LATER), max_rows=1
            ),
            "trace.too_large",
        ),
        (
            lambda: read_nvidia_smi_csv(_write(tmp_path / "p.csv", POWERTRACE), devices=1),
            "trace.devices_given",
        ),
        (
            lambda: read_nvidia_smi_csv(_write(tmp_path / "z.csv", TRAINING), devices=0),
            "trace.devices_invalid",
        ),
        (
            lambda: read_nvidia_smi_csv(_write(tmp_path / "few.csv", HEADER + ROW), devices=2),
            "trace.empty",
        ),
    ]
    for build, reason in cases:
        with pytest.raises(InputError) as caught:
            build()
        assert caught.value.reason == reason


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------ real traces

#: File -> GPUs used, as each directory's SOURCE.md states.
RECORDED = {
    "telemetry_h100_training_wilkins/ckpt1.csv.gz": 8,
    "telemetry_h100_training_wilkins/ckpt10.csv.gz": 8,
    "telemetry_h100_training_wilkins/ckpt50.csv.gz": 8,
    "telemetry_h100_training_wilkins/ckpt100.csv.gz": 8,
    "telemetry_h100_training_wilkins/ckpt500.csv.gz": 8,
    "telemetry_h100_training_wilkins/ckpt1000.csv.gz": 8,
    "telemetry_h100_training_wilkins/power-trace_2025-07-26-23-32-09.csv.gz": 8,
    "telemetry_a100_inference_wilkins/llama2-70b_nvidia-smi.csv.gz": 4,
    "telemetry_a100_inference_wilkins/falcon-40b_nvidia-smi.csv.gz": 3,
    "telemetry_a100_inference_wilkins/mixtral-8x7b_nvidia-smi.csv.gz": 3,
    "telemetry_a100_inference_wilkins/llama2-13b_nvidia-smi.csv.gz": 1,
    "telemetry_h100_inference_powertrace_sim/h100_qwen3-8b_vllm_tp1_r4p0_power.csv": 1,
}
needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"the shared trace data is not at {SHARED_DATA}"
)


@needs_shared_data
@pytest.mark.parametrize("name", sorted(RECORDED))
def test_reads_the_real_shared_traces(name: str) -> None:
    traces = read_nvidia_smi_csv(SHARED_DATA / name)
    assert len(traces) == RECORDED[name]  # the inferred GPU count agrees with SOURCE.md
    for trace in traces:
        assert len(trace) > 60
        assert float(trace.power_w.min()) > 20
        assert float(trace.power_w.max()) < 800
        assert (trace.memory_used_bytes is None) == ("a100" in name)
        assert (trace.uuid is not None) == ("powertrace" in name)
    assert len({len(trace) for trace in traces}) == 1  # the GPUs of one run share their seconds


@needs_shared_data
def test_real_training_keeps_gpus_busier_than_real_inference() -> None:
    def mean_utilisation(name: str) -> float:
        traces = read_nvidia_smi_csv(SHARED_DATA / name)
        return float(np.mean([t.utilisation.mean() for t in traces]))

    training = mean_utilisation("telemetry_h100_training_wilkins/ckpt1000.csv.gz")
    inference = mean_utilisation("telemetry_a100_inference_wilkins/llama2-70b_nvidia-smi.csv.gz")
    assert training > 2 * inference


@needs_shared_data
def test_replays_a_real_training_node() -> None:
    traces = read_nvidia_smi_csv(SHARED_DATA / "telemetry_h100_training_wilkins/ckpt100.csv.gz")
    backend = SimulatedBackend(H100, traces, start=T0, seed=1)
    assert len(backend.devices()) == 8
    for index, trace in enumerate(traces):
        end = backend.sample(index, T0 + timedelta(seconds=len(trace)))
        expected_mj = int(np.rint(trace.power_w * 1000).sum())
        assert end.energy_mj == expected_mj
        assert end.energy_mj == pytest.approx(trace.power_w.sum() * 1000, rel=1e-6)


def test_a_trace_spanning_centuries_is_refused_before_allocating(tmp_path: Path) -> None:
    path = tmp_path / "span.csv"
    path.write_text(
        "timestamp, power.draw [W], utilization.gpu [%]\n"
        "2024/01/01 00:00:00.000, 100 W, 50 %\n"
        "2999/01/01 00:00:01.000, 100 W, 50 %\n"
    )
    with pytest.raises(InputError) as caught:
        read_nvidia_smi_csv(path, devices=1)
    assert caught.value.reason == "trace.too_large"
    assert "span.csv" in caught.value.message


@pytest.mark.parametrize("devices", [0, True, 2.5])
def test_devices_must_be_a_positive_integer(tmp_path: Path, devices: object) -> None:
    path = tmp_path / "two.csv"
    path.write_text(
        "timestamp, power.draw [W], utilization.gpu [%]\n"
        "2024/01/01 00:00:00.000, 100 W, 50 %\n"
        "2024/01/01 00:00:01.000, 100 W, 50 %\n"
    )
    with pytest.raises(InputError) as caught:
        read_nvidia_smi_csv(path, devices=devices)  # type: ignore[arg-type]
    assert caught.value.reason == "trace.devices_invalid"
