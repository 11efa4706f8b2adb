"""Accelerator telemetry behind one interface: NVML on real hosts, traces in simulation.

A :class:`TelemetryBackend` lists its devices and takes one :class:`~brakepedal.wire.minute.Sample`
of one device at a time the caller names (1 Hz in the agent). Time is an argument: the backend
stamps the sample with ``at`` and never reads a clock itself.

* :class:`NvmlBackend` reads NVML through the ``pynvml`` module of ``nvidia-ml-py`` (the
  ``nvml`` extra), passed in so tests drive it with a fake at the module boundary. A field the
  device does not support (``NVMLError_NotSupported``) is left out, never fatal; any other NVML
  failure is an :class:`InfrastructureError` ``telemetry.nvml_error`` naming the call. NVML does
  not measure tensor-core activity (that is DCGM's profiling metric
  ``DCGM_FI_PROF_PIPE_TENSOR_ACTIVE``), so its samples carry ``tensor_active=None``.
* :class:`SimulatedBackend` replays one :class:`~brakepedal.agent.traces.Trace` per device
  (a recorded nvidia-smi log or a synthetic profile), looping at the end, with an energy counter
  integrated exactly in mJ from the trace's power rounded to whole mW.

Units are those of ``Sample``: W, mJ, percent, bytes, MHz. ``docs/telemetry.md`` has the detail.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np

from brakepedal.accounting.catalogue import Accelerator, Catalogue, default_catalogue
from brakepedal.agent.traces import Trace, synthetic_trace
from brakepedal.errors import InfrastructureError, InputError
from brakepedal.model.types import utc_datetime
from brakepedal.wire.minute import Sample

__all__ = [
    "DeviceInfo",
    "NvmlBackend",
    "SimulatedBackend",
    "TelemetryBackend",
]

_US_PER_S = 1_000_000
_KIB = 1024


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One accelerator as the backend sees it; ``name`` is NVML's (``nvmlDeviceGetName``)."""

    index: int
    uuid: str
    name: str

    def accelerator(self, catalogue: Catalogue | None = None) -> Accelerator:
        """The catalogue entry for ``name`` (``catalogue.accelerator_unknown`` if none)."""
        return (catalogue or default_catalogue()).get(self.name)


class TelemetryBackend(Protocol):
    """What the agent samples: devices by index, one reading at a time."""

    def devices(self) -> list[DeviceInfo]:
        """The devices, in index order."""
        ...

    def sample(self, index: int, at: datetime) -> Sample:
        """One reading of device ``index``, stamped ``at`` (UTC)."""
        ...

    def close(self) -> None:
        """Release the source; idempotent."""
        ...


def _text(value: object) -> str:
    """NVML strings are ``bytes`` in nvidia-ml-py before 11.5, ``str`` after."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class NvmlBackend:
    """Telemetry from NVML. Build with :meth:`open` on a host, or pass a ``pynvml`` stand-in.

    ``nvml`` is untyped (``Any``): it is the ``pynvml`` module or a fake of it.
    """

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml
        self._closed = False
        self._call("nvmlInit")
        try:
            count = int(self._call("nvmlDeviceGetCount"))
            self._handles = [self._call("nvmlDeviceGetHandleByIndex", i) for i in range(count)]
            self._devices = [
                DeviceInfo(
                    index,
                    _text(self._call("nvmlDeviceGetUUID", handle)),
                    _text(self._call("nvmlDeviceGetName", handle)),
                )
                for index, handle in enumerate(self._handles)
            ]
        except InfrastructureError:
            self.close()
            raise
        # Per device: last time, energy integrated from power (mJ), PCIe bytes, last power (W).
        self._integrals: dict[int, tuple[datetime, float, int, float]] = {}

    @classmethod
    def open(cls) -> NvmlBackend:
        """Load ``pynvml`` (the ``nvml`` extra) and initialise NVML."""
        try:
            module = importlib.import_module("pynvml")
        except ImportError as error:
            raise InfrastructureError(
                "telemetry.nvml_missing",
                "the pynvml module (nvidia-ml-py) is not installed",
                remediation="Install the NVML extra: pip install 'brakepedal[nvml]'.",
            ) from error
        return cls(module)

    def devices(self) -> list[DeviceInfo]:
        return list(self._devices)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._call("nvmlShutdown")

    def sample(self, index: int, at: datetime) -> Sample:
        """Read every field of device ``index``; unsupported optional fields are left out.

        Power and utilisation are required. The energy counter is NVML's where the device has
        one (Volta and later), else integrated from power over this backend's samples; the PCIe
        counter integrates ``nvmlDeviceGetPcieThroughput`` (KB/s, a 20 ms window) the same way.
        """
        at = utc_datetime(at)
        handle = self._handle(index)
        power_w = int(self._call("nvmlDeviceGetPowerUsage", handle)) / 1000
        utilisation = int(self._call("nvmlDeviceGetUtilizationRates", handle).gpu)
        memory = self._call("nvmlDeviceGetMemoryInfo", handle, optional=True)
        clock = self._call(
            "nvmlDeviceGetClockInfo", handle, self._nvml.NVML_CLOCK_SM, optional=True
        )
        energy = self._call("nvmlDeviceGetTotalEnergyConsumption", handle, optional=True)
        processes = self._call("nvmlDeviceGetComputeRunningProcesses", handle, optional=True)
        pcie_rate = self._pcie_bytes_per_s(handle)
        energy_mj, pcie_bytes = self._integrate(index, at, power_w, pcie_rate)
        return Sample(
            time=at,
            power_w=power_w,
            energy_mj=int(energy) if energy is not None else energy_mj,
            utilisation=utilisation,
            memory_used_bytes=int(memory.used) if memory is not None else 0,
            sm_clock_mhz=int(clock) if clock is not None else 0,
            tensor_active=None,  # NVML has no tensor-pipe counter; that is DCGM profiling
            pcie_bytes=pcie_bytes,
            nvlink_bytes=self._nvlink_bytes(handle),
            processes=tuple(sorted({int(p.pid) for p in processes or ()})),
        )

    def _handle(self, index: int) -> Any:
        if self._closed:
            raise InfrastructureError("telemetry.closed", "the NVML backend is closed")
        if isinstance(index, bool) or not 0 <= index < len(self._handles):
            raise InputError("telemetry.device_unknown", f"no device {index!r}")
        return self._handles[index]

    def _call(self, function: str, *args: object, optional: bool = False) -> Any:
        """``pynvml.<function>(*args)``; None for NotSupported when ``optional``."""
        try:
            return getattr(self._nvml, function)(*args)
        except self._nvml.NVMLError_NotSupported as error:
            if optional:
                return None
            raise self._failure(function, error) from error
        except self._nvml.NVMLError as error:
            raise self._failure(function, error) from error

    @staticmethod
    def _failure(function: str, error: BaseException) -> InfrastructureError:
        return InfrastructureError(
            "telemetry.nvml_error",
            f"{function} failed: {error}",
            remediation="Check the NVIDIA driver (nvidia-smi) and the device; then retry.",
        )

    def _pcie_bytes_per_s(self, handle: Any) -> int | None:
        counters = (self._nvml.NVML_PCIE_UTIL_TX_BYTES, self._nvml.NVML_PCIE_UTIL_RX_BYTES)
        rates = [
            self._call("nvmlDeviceGetPcieThroughput", handle, counter, optional=True)
            for counter in counters
        ]
        if None in rates:
            return None
        return sum(int(rate) for rate in rates) * _KIB

    def _nvlink_bytes(self, handle: Any) -> int | None:
        """Cumulative NVLink data bytes (TX + RX) from NVML's GPU-wide KiB field counters."""
        nvml = self._nvml
        fields = [
            getattr(nvml, "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX", None),
            getattr(nvml, "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX", None),
        ]
        if None in fields:
            return None  # an nvidia-ml-py too old to name the fields
        values = self._call("nvmlDeviceGetFieldValues", handle, fields, optional=True)
        if values is None:
            return None
        total = 0
        for value in values:
            if value.nvmlReturn == nvml.NVML_ERROR_NOT_SUPPORTED:
                return None
            if value.nvmlReturn != nvml.NVML_SUCCESS:
                error = nvml.NVMLError(value.nvmlReturn)
                raise self._failure("nvmlDeviceGetFieldValues", error)
            total += int(value.value.ullVal)
        return total * _KIB

    def _integrate(
        self, index: int, at: datetime, power_w: float, pcie_rate: int | None
    ) -> tuple[int, int | None]:
        """Energy (mJ) and PCIe bytes accumulated since this backend first sampled ``index``.

        A sample that is not after the previous one adds nothing.
        """
        then, energy_mj, pcie, last_power = self._integrals.get(index, (at, 0.0, 0, power_w))
        elapsed = max(0.0, (at - then).total_seconds())
        energy_mj += (last_power + power_w) / 2 * elapsed * 1000
        pcie_total = pcie + int((pcie_rate or 0) * elapsed)
        self._integrals[index] = (max(at, then), energy_mj, pcie_total, power_w)
        return int(energy_mj), None if pcie_rate is None else pcie_total


class SimulatedBackend:
    """Devices of one catalogue accelerator, each replaying a :class:`Trace` from ``start``.

    Second ``k`` after ``start`` reads trace entry ``k mod len(trace)``. The energy counter at
    ``at`` is the exact integral of the piecewise-constant power (in whole mW) from ``start``,
    rounded down to whole mJ, so it never decreases. A busy device runs one fake process whose
    pid is drawn from ``seed``; nothing else is random here.
    """

    def __init__(
        self, accelerator: Accelerator, traces: Sequence[Trace], *, start: datetime, seed: int = 0
    ) -> None:
        if not traces:
            raise InputError("telemetry.no_devices", "a simulated backend needs at least one trace")
        self._start = utc_datetime(start)
        self._traces = tuple(traces)
        name = accelerator.nvml_names[0] if accelerator.nvml_names else accelerator.name
        rng = np.random.default_rng(seed)
        self._devices = [
            DeviceInfo(
                index,
                trace.uuid or f"GPU-{uuid.UUID(bytes=rng.bytes(16), version=4)}",
                name,
            )
            for index, trace in enumerate(self._traces)
        ]
        self._pids = [int(pid) for pid in rng.integers(1000, 4_000_000, len(self._traces))]
        self._power_mw = [np.rint(t.power_w * 1000).astype(np.int64) for t in self._traces]
        # Energy at the start of each second of one pass, and of a whole pass, in mJ.
        self._energy_mj = [np.concatenate(([0], np.cumsum(p))) for p in self._power_mw]

    @classmethod
    def synthetic(
        cls,
        accelerator: Accelerator,
        profile: str,
        *,
        devices: int,
        start: datetime,
        seconds: int = 3600,
        seed: int = 0,
    ) -> SimulatedBackend:
        """``devices`` devices running ``profile`` (see :func:`synthetic_trace`)."""
        if accelerator.tdp_watts is None or accelerator.memory_bytes is None:
            raise InputError(
                "telemetry.accelerator_incomplete",
                f"{accelerator.id}: the catalogue lacks its TDP or memory size",
            )
        traces = [
            synthetic_trace(
                profile,
                seconds=seconds,
                tdp_w=accelerator.tdp_watts,
                memory_bytes=accelerator.memory_bytes,
                seed=(seed, index),
            )
            for index in range(devices)
        ]
        return cls(accelerator, traces, start=start, seed=seed)

    def devices(self) -> list[DeviceInfo]:
        return list(self._devices)

    def close(self) -> None:
        """Nothing to release."""

    def sample(self, index: int, at: datetime) -> Sample:
        if isinstance(index, bool) or not 0 <= index < len(self._traces):
            raise InputError("telemetry.device_unknown", f"no device {index!r}")
        at = utc_datetime(at)
        elapsed_us = (at - self._start) // timedelta(microseconds=1)
        if elapsed_us < 0:
            raise InputError("telemetry.before_start", f"{at.isoformat()} is before the start")
        trace, power_mw, energy = self._traces[index], self._power_mw[index], self._energy_mj[index]
        second, fraction_us = divmod(elapsed_us, _US_PER_S)
        passes, k = divmod(second, len(trace))
        now_mw = int(power_mw[k])
        energy_mj = passes * int(energy[-1]) + int(energy[k]) + now_mw * fraction_us // _US_PER_S
        utilisation = round(float(trace.utilisation[k]) * 100)
        tensor = None if trace.tensor_active is None else float(trace.tensor_active[k])
        busy = utilisation > 0 or bool(tensor)
        return Sample(
            time=at,
            power_w=now_mw / 1000,
            energy_mj=energy_mj,
            utilisation=utilisation,
            memory_used_bytes=_at(trace.memory_used_bytes, k),
            sm_clock_mhz=_at(trace.sm_clock_mhz, k),
            tensor_active=tensor,
            processes=(self._pids[index],) if busy else (),
        )


def _at(values: np.ndarray[Any, np.dtype[np.float64]] | None, k: int) -> int:
    """Entry ``k`` as a whole number; 0 where the trace did not measure it."""
    return 0 if values is None else round(float(values[k]))
