"""The agent's collection loop: telemetry samples -> minute records -> signed reports in the spool.

The caller ticks a :class:`Collector` once a second with the time (``tick(at)``; time is an
argument, the collector never reads a clock). Each tick samples every device once; when ``at``
crosses a window boundary the collector builds, signs and spools each device's report for the
window that closed. A report counts as produced only once :meth:`Spool.append` has returned:
the report and its minute records are committed in one transaction.

Windows and minutes:

1. The window length is a whole number of minutes from 1 to 60 (``collector.window_invalid``),
   and windows are aligned on multiples of it since the Unix epoch, so every device of a node,
   and every node, closes its windows at the same instants.
2. The first window after a (re)start begins at the start of the current minute, or at the end
   of the device's last spooled window if that is later: a new window never starts before the
   last one ended, so nothing is reported twice, even after ``kill -9`` or a clock stepped back
   (samples before that end are dropped and counted). It ends at the next aligned boundary, so it
   may be shorter than the others. The time between the last window and the restart is a gap in
   the chain, which :func:`~brakepedal.wire.report.verify_chain` allows and policy judges.
3. While running, each window starts where the last ended. Seconds without a sample (a late
   tick, a failed reading, the part of the first minute before the first tick) count as busy
   (:mod:`brakepedal.wire.minute`), so the bound stays conservative. If ticks stop for longer
   than a whole window (a suspended host), the window that was open closes at its boundary and
   the next begins at the current minute, as after a restart, rather than filling the hole with
   minutes the agent never saw.
4. Each minute's record is computed from that minute's samples with ``previous=`` the last
   sample of an earlier minute, so energy and byte counters tile exactly across minutes and
   windows (not across a restart or a gap: the interval before the first sample after one is
   not counted, since it belongs to no window).
5. The chain continues from :meth:`Spool.head` across restarts: sequence + 1, ``previous`` the
   last digest. The last report must open under the device's key (``collector.key_changed``
   otherwise: the key file was replaced while the spool was kept, and a registry would refuse
   the next report anyway).

The cross-device correlation of ``docs/agent.md`` is not a field of the minute record: it is a
feature over several devices' records that the classifier computes from revealed records, so
the collector does not compute it.

:meth:`Collector.flush` closes every open window early, at the end of the current minute (the
rest of that minute counts as busy), so a clean shutdown leaves no unreported minute while
windows stay whole minutes and the chain stays valid.

Attribution comes from an :class:`~brakepedal.agent.attribution.Attributor`, called at window
close with every pid the device ran in the window, and whenever a device's process set changes
(so it can read a short-lived process while it exists). Governance comes from a callable. When a
:class:`HandInSource` is given, its snapshots and events for the window are passed to
``build_report(..., snapshots=..., events=...)``; without one those arguments are not passed.
If the source fails or the report cannot hold what it gave (a snapshot outside the window or
of another job: ``build_report`` refuses it), the report is built without hand-ins and the
failure is counted (``stats.handins_refused``, ``stats.last_handin_error``), so a faulty
hand-in never stops a device's reports.

Failures: a reading that fails with :class:`InfrastructureError` (an NVML hiccup) is skipped
and counted, never fatal. A tick whose second is not after the last tick's is skipped and
counted. A spool write that fails raises :class:`StorageError`; the window stays open with its
minutes, and the next tick tries again with the same report.

Reasons: ``collector.window_invalid``, ``collector.no_devices``,
``collector.identity_mismatch``, ``collector.key_changed`` (:class:`TrustError`),
``collector.head_unreadable`` (:class:`StorageError`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from brakepedal.agent.attribution import Attributor
from brakepedal.agent.identity import DeviceIdentity
from brakepedal.agent.spool import ChainHead, Spool, SpooledReport
from brakepedal.agent.telemetry import TelemetryBackend
from brakepedal.errors import (
    BrakepedalError,
    InfrastructureError,
    InputError,
    StorageError,
    TrustError,
)
from brakepedal.model.types import DeviceId, JobId, utc_datetime
from brakepedal.wire.minute import MinuteRecord, Sample, summarise_minute
from brakepedal.wire.report import (
    GENESIS_PREVIOUS,
    Attribution,
    GateEvent,
    GovernanceSeen,
    SnapshotCommitment,
    UsageReport,
    build_report,
    open_report,
    sign_report,
)

__all__ = ["Collector", "CollectorStats", "HandInSource"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE = timedelta(minutes=1)
_SECOND = timedelta(seconds=1)
_MAX_WINDOW = timedelta(minutes=60)


class HandInSource(Protocol):
    """What a training framework handed in for a device's window: snapshots and events."""

    def between(
        self, device: DeviceId, job: JobId | None, start: datetime, end: datetime
    ) -> tuple[tuple[SnapshotCommitment, ...], tuple[GateEvent, ...]]:
        """(snapshots, events) for ``device`` running ``job`` in ``[start, end)``."""
        ...


@dataclass(slots=True)
class CollectorStats:
    """Counters for monitoring; none of them changes what is reported.

    ``ticks_skipped``: ticks not after the last tick's second. ``sample_failures``: readings
    that failed (:class:`InfrastructureError`) or came back stamped with another time.
    ``samples_before_resume``: readings dropped because they fell before the end of the
    device's last spooled window. ``handins_refused``: windows reported without their hand-ins,
    ``last_handin_error`` the reason of the latest.
    """

    ticks: int = 0
    ticks_skipped: int = 0
    samples: int = 0
    sample_failures: int = 0
    samples_before_resume: int = 0
    reports: int = 0
    handins_refused: int = 0
    last_handin_error: str | None = None


@dataclass(slots=True)
class _DeviceState:
    """One device's chain head and open window."""

    identity: DeviceIdentity
    sequence: int
    previous: str
    not_before: datetime | None
    contiguous: bool = False
    window_start: datetime | None = None
    window_end: datetime | None = None
    minute: datetime | None = None
    samples: list[Sample] = field(default_factory=list)
    records: list[MinuteRecord] = field(default_factory=list)
    last_sample: Sample | None = None
    pids: set[int] = field(default_factory=set)
    current_pids: tuple[int, ...] = ()


def _minute_floor(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _second_floor(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def _check_window(window: object) -> timedelta:
    if (
        not isinstance(window, timedelta)
        or not _MINUTE <= window <= _MAX_WINDOW
        or window % _MINUTE
    ):
        raise InputError(
            "collector.window_invalid", f"window {window!r} is not a whole 1 to 60 minutes"
        )
    return window


class Collector:
    """Samples a node's devices and turns each closed window into a spooled, signed report."""

    def __init__(
        self,
        backend: TelemetryBackend,
        spool: Spool,
        identities: Sequence[DeviceIdentity],
        *,
        window: timedelta = timedelta(minutes=5),
        attributor: Attributor | None = None,
        governance: Callable[[], GovernanceSeen | None] = lambda: None,
        handins: HandInSource | None = None,
    ) -> None:
        self._window = _check_window(window)
        if not identities:
            raise InputError("collector.no_devices", "a collector needs at least one device")
        self._backend = backend
        self._spool = spool
        self._attributor = attributor
        self._governance = governance
        self._handins = handins
        self._check_identities(identities)
        self._devices = [self._resume(identity) for identity in identities]
        self._last_second: datetime | None = None
        self.stats = CollectorStats()

    @property
    def window(self) -> timedelta:
        """The window length."""
        return self._window

    def tick(self, at: datetime) -> list[SpooledReport]:
        """Sample every device once at ``at`` (1 Hz is the caller's job), and when ``at``
        crosses a window boundary build, sign and spool each device's report for the window
        that closed; return the reports spooled by this call."""
        at = utc_datetime(at)
        second = _second_floor(at)
        if self._last_second is not None and second <= self._last_second:
            self.stats.ticks_skipped += 1
            return []
        spooled = self._close_due(at)
        self._last_second = second
        self.stats.ticks += 1
        for state in self._devices:
            self._sample(state, at)
        return spooled

    def flush(self, at: datetime) -> list[SpooledReport]:
        """Close every open window at the end of ``at``'s minute (for a clean shutdown).

        Windows that ``at`` already closed are spooled as :meth:`tick` would; then each open
        window that has begun is reported up to the end of the current minute, whose unsampled
        rest counts as busy. A later tick (or a restarted agent) starts after that minute.
        """
        at = utc_datetime(at)
        spooled = self._close_due(at)
        end = _minute_floor(at) + _MINUTE
        governance: list[GovernanceSeen | None] = []
        for state in self._devices:
            if state.window_start is not None and state.window_start < end:
                spooled.append(self._close(state, end, at, governance))
                state.contiguous = False
        return spooled

    # ------------------------------------------------------------------------- start-up

    def _check_identities(self, identities: Sequence[DeviceIdentity]) -> None:
        listed = {info.index: info.uuid for info in self._backend.devices()}
        seen: set[DeviceId] = set()
        for identity in identities:
            if listed.get(identity.index) != identity.uuid or identity.device in seen:
                raise InputError(
                    "collector.identity_mismatch",
                    f"{identity.device}: not device {identity.index} of the backend, or repeated",
                )
            seen.add(identity.device)

    def _resume(self, identity: DeviceIdentity) -> _DeviceState:
        head = self._spool.head(identity.device)
        if head is None:
            return _DeviceState(identity, 0, GENESIS_PREVIOUS, None)
        return _DeviceState(
            identity, head.sequence + 1, head.digest, self._last_window_end(identity, head)
        )

    @staticmethod
    def _last_window_end(identity: DeviceIdentity, head: ChainHead) -> datetime:
        try:
            report = open_report(head.envelope, identity.key, device=identity.device)
        except TrustError as e:
            raise TrustError(
                "collector.key_changed",
                f"{identity.device}: report {head.sequence} in the spool does not open under "
                f"the device's key ({e.reason})",
                remediation="Restore the device's key file, or retire the device's chain and "
                "enrol the new key before starting the agent.",
            ) from e
        except InputError as e:
            raise StorageError(
                "collector.head_unreadable",
                f"{identity.device}: report {head.sequence} in the spool is unreadable: {e}",
            ) from e
        if head.window_end not in {None, report.window_end}:
            raise StorageError(
                "collector.head_unreadable",
                f"{identity.device}: report {head.sequence} ends at {report.window_end}, "
                f"its spool row says {head.window_end}",
            )
        return report.window_end

    # ------------------------------------------------------------------------- windows

    def _boundary_after(self, moment: datetime) -> datetime:
        return _EPOCH + ((moment - _EPOCH) // self._window + 1) * self._window

    def _open(self, state: _DeviceState, at: datetime) -> None:
        """Start the device's next window (rules 2 and 3 of the module docstring)."""
        start = _minute_floor(at)
        last_end = state.not_before
        if last_end is not None and (
            start < last_end or (state.contiguous and start < self._boundary_after(last_end))
        ):
            start = last_end
        if start != last_end:
            state.last_sample = None  # after a gap: the gap's energy belongs to no window
        state.window_start, state.window_end = start, self._boundary_after(start)
        state.minute, state.samples, state.records = start, [], []
        state.pids, state.current_pids = set(), ()

    def _close_due(self, at: datetime) -> list[SpooledReport]:
        governance: list[GovernanceSeen | None] = []
        spooled = []
        for state in self._devices:
            if state.window_end is not None and at >= state.window_end:
                spooled.append(self._close(state, state.window_end, at, governance))
                state.contiguous = True
        return spooled

    def _close(
        self,
        state: _DeviceState,
        end: datetime,
        at: datetime,
        governance: list[GovernanceSeen | None],
    ) -> SpooledReport:
        """Report ``state``'s window up to ``end``; spool it; leave the device between windows.

        ``governance`` caches the callable's answer for one tick (empty: not asked yet).
        """
        assert state.window_start is not None  # callers check an open window
        self._advance_to(state, end)
        if not governance:
            governance.append(self._governance())
        spooled = self._spool_report(state, state.window_start, end, at, governance[0])
        state.sequence, state.previous, state.not_before = spooled.sequence + 1, spooled.digest, end
        state.window_start = state.window_end = state.minute = None
        self.stats.reports += 1
        return spooled

    def _spool_report(
        self,
        state: _DeviceState,
        start: datetime,
        end: datetime,
        at: datetime,
        governance: GovernanceSeen | None,
    ) -> SpooledReport:
        identity = state.identity
        attribution = (
            Attribution()
            if self._attributor is None
            else self._attributor.attribute(identity, tuple(sorted(state.pids)))
        )
        fields: dict[str, Any] = {
            "device": identity.device,
            "accelerator": identity.accelerator,
            "sequence": state.sequence,
            "previous": state.previous,
            "window_start": start,
            "window_end": end,
            "minutes": state.records,
            "attribution": attribution,
            "governance": governance,
        }
        report = self._build(fields, attribution.job)
        envelope = sign_report(report, identity.signer)
        digest = report.digest()
        records = [record.to_bytes() for record in state.records]
        self._spool.append(
            identity.device,
            state.sequence,
            digest,
            envelope,
            at=at,
            minutes=records,
            window_end=end,
        )
        return SpooledReport(identity.device, state.sequence, digest, envelope, 0)

    def _build(self, fields: dict[str, Any], job: JobId | None) -> UsageReport:
        """The report, with the window's hand-ins when there is a source and they fit."""
        if self._handins is None:
            return build_report(**fields)
        try:
            snapshots, events = self._handins.between(
                fields["device"], job, fields["window_start"], fields["window_end"]
            )
            return build_report(**fields, snapshots=snapshots, events=events)
        except BrakepedalError as error:
            # Hand-ins the report cannot hold (outside the window, another job's snapshot) or
            # cannot read must not stop the device's reports: the usage is what a pause counts.
            self.stats.handins_refused += 1
            self.stats.last_handin_error = error.reason
            return build_report(**fields)

    # ------------------------------------------------------------------------- minutes

    def _advance_to(self, state: _DeviceState, minute: datetime) -> None:
        """Turn every minute of the window before ``minute`` into its record."""
        assert state.minute is not None  # only called with an open window
        while state.minute < minute:
            state.records.append(
                summarise_minute(
                    state.identity.device,
                    state.minute,
                    state.samples,
                    previous=state.last_sample,
                )
            )
            if state.samples:
                state.last_sample = state.samples[-1]
            state.samples = []
            state.minute += _MINUTE

    def _sample(self, state: _DeviceState, at: datetime) -> None:
        if state.window_start is None:
            self._open(state, at)
        assert state.window_start is not None  # just opened
        if at < state.window_start:
            self.stats.samples_before_resume += 1
            return
        self._advance_to(state, _minute_floor(at))
        try:
            sample = self._backend.sample(state.identity.index, at)
        except InfrastructureError:
            self.stats.sample_failures += 1
            return
        last = state.samples[-1] if state.samples else state.last_sample
        if _minute_floor(sample.time) != state.minute or (
            last is not None and _second_floor(sample.time) <= _second_floor(last.time)
        ):
            self.stats.sample_failures += 1  # a backend stamping another time than ``at``
            return
        state.samples.append(sample)
        self.stats.samples += 1
        state.pids.update(sample.processes)
        if self._attributor is not None and sample.processes != state.current_pids:
            self._attributor.attribute(state.identity, sample.processes)
            state.current_pids = sample.processes
