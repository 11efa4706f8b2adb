"""Whose work a device's window was: scheduler job, tenant, permit, declared workload.

The collector asks an :class:`Attributor` once per closed window, with the pids the device ran
in that window (NVML's compute processes), for the report's
:class:`~brakepedal.wire.report.Attribution`. Two implementations:

* :class:`StaticAttributor`: one fixed attribution (a node dedicated to one job, or tests).
* :class:`EnvironmentAttributor`: reads each process's environment from
  ``<proc_root>/<pid>/environ`` and maps scheduler variables to ids:

  ============  =============================================  ===========================
  field         read from (first readable, valid one wins)     type
  ============  =============================================  ===========================
  ``job``       ``BRAKEPEDAL_JOB``, then ``SLURM_JOB_ID``      :class:`JobId`
  ``tenant``    ``BRAKEPEDAL_TENANT``, then ``SLURM_JOB_ACCOUNT``  :class:`EntityId`
  ``permit``    ``BRAKEPEDAL_PERMIT``                          :class:`PermitId`
  ``workload``  ``BRAKEPEDAL_WORKLOAD``                        ``training``/``inference``/...
  ``site``      the agent's configuration, never a process     :class:`SiteId`
  ============  =============================================  ===========================

  A value that fails its type's validation (``SLURM_JOB_ACCOUNT=ProjectX``: identifiers are
  lowercase) is ignored, as if unset, and counted in :attr:`EnvironmentAttributor.stats`: it is
  never rewritten (lowercasing could merge two accounts) and never stops the agent. A process
  that cannot be read (it exited, or permission is denied) is skipped and counted.

  **When processes disagree** (two jobs share a device), the rule is: processes that declare
  nothing at all are set aside while any process declares something; among the rest, the
  attribution declared by the most processes wins, and a tie goes to the one declared by the
  lowest pid. The winner is taken whole, never merged field by field, so a report never pairs
  one job's id with another job's permit. Disagreements are counted.

  A process that exits before its window closes would be unreadable by then, so each
  environment read is remembered by pid (a bounded cache) and used when the pid can no longer
  be read; the collector calls :meth:`~Attributor.attribute` whenever a device's process set
  changes, which is when new pids are read. A pid that is still readable is always read afresh.

Reasons: none raised. ``attribution.unreadable``, ``attribution.value_invalid`` and
``attribution.conflict`` are the keys of :attr:`EnvironmentAttributor.stats`.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol, TypeVar

from brakepedal.accounting.usage import Workload
from brakepedal.agent.identity import DeviceIdentity
from brakepedal.errors import InputError
from brakepedal.model.types import EntityId, JobId, PermitId, SiteId
from brakepedal.wire.report import Attribution

__all__ = ["Attributor", "EnvironmentAttributor", "StaticAttributor"]

#: Environments are at most a few hundred KiB (ARG_MAX bounds them); read no more than this.
_MAX_ENVIRON_BYTES = 1 << 20
_CACHE_ENTRIES = 4096
_WANTED = (
    b"BRAKEPEDAL_JOB",
    b"BRAKEPEDAL_TENANT",
    b"BRAKEPEDAL_PERMIT",
    b"BRAKEPEDAL_WORKLOAD",
    b"SLURM_JOB_ID",
    b"SLURM_JOB_ACCOUNT",
)

UNREADABLE = "attribution.unreadable"
VALUE_INVALID = "attribution.value_invalid"
CONFLICT = "attribution.conflict"

#: What one process declares: (job, tenant, permit, workload).
_Declared = tuple[JobId | None, EntityId | None, PermitId | None, Workload | None]
_NOTHING: _Declared = (None, None, None, None)
_T = TypeVar("_T")


class Attributor(Protocol):
    """Gives the attribution of one device's window from the processes it ran."""

    def attribute(self, device: DeviceIdentity, processes: tuple[int, ...]) -> Attribution:
        """The attribution of ``device`` running ``processes`` (sorted pids, maybe empty)."""
        ...


class StaticAttributor:
    """The same attribution for every device and window."""

    def __init__(self, attribution: Attribution) -> None:
        self._attribution = attribution

    def attribute(self, device: DeviceIdentity, processes: tuple[int, ...]) -> Attribution:
        return self._attribution


class EnvironmentAttributor:
    """Attribution from the processes' environment variables (see the module docstring)."""

    def __init__(self, *, site: SiteId | None = None, proc_root: Path = Path("/proc")) -> None:
        self._site = site
        self._proc_root = proc_root
        self._remembered: OrderedDict[int, _Declared] = OrderedDict()
        #: Counts of skipped processes, ignored values and disagreements, by reason.
        self.stats: Counter[str] = Counter()

    def attribute(self, device: DeviceIdentity, processes: tuple[int, ...]) -> Attribution:
        declared = {pid: self._declared(pid) for pid in sorted(set(processes))}
        readable = {pid: value for pid, value in declared.items() if value is not None}
        job, tenant, permit, workload = self._choose(readable)
        return Attribution(
            job=job,
            tenant=tenant,
            permit=permit,
            site=self._site,
            workload=workload or Workload.UNKNOWN,
        )

    def _choose(self, declared: Mapping[int, _Declared]) -> _Declared:
        """Most processes win, ties to the lowest pid; silent processes only if all are."""
        speaking = {pid: value for pid, value in declared.items() if value != _NOTHING}
        if not speaking:
            return _NOTHING
        votes = Counter(speaking.values())
        if len(votes) > 1:
            self.stats[CONFLICT] += 1
        lowest_pid = {value: min(p for p, v in speaking.items() if v == value) for value in votes}
        return min(votes, key=lambda value: (-votes[value], lowest_pid[value]))

    def _declared(self, pid: int) -> _Declared | None:
        """What ``pid`` declares; its remembered declaration if it cannot be read now."""
        environ = self._read_environ(pid)
        if environ is None:
            remembered = self._remembered.get(pid)
            if remembered is None:
                self.stats[UNREADABLE] += 1
            return remembered
        declared = self._parse(environ)
        self._remembered[pid] = declared
        self._remembered.move_to_end(pid)
        while len(self._remembered) > _CACHE_ENTRIES:
            self._remembered.popitem(last=False)
        return declared

    def _read_environ(self, pid: int) -> dict[bytes, bytes] | None:
        path = self._proc_root / str(pid) / "environ"
        try:
            with path.open("rb") as file:
                data = file.read(_MAX_ENVIRON_BYTES)
        except OSError:  # gone, permission denied, not a process
            return None
        if not data:
            # Right after exec the kernel can show an empty environment for a moment (seen
            # in tests); treat it as not readable yet rather than as "declares nothing".
            return None
        environ: dict[bytes, bytes] = {}
        for entry in data.split(b"\0"):
            name, equals, value = entry.partition(b"=")
            if equals and name in _WANTED:
                environ[name] = value
        return environ

    def _parse(self, environ: Mapping[bytes, bytes]) -> _Declared:
        job = self._first(environ, (b"BRAKEPEDAL_JOB", b"SLURM_JOB_ID"), JobId)
        tenant = self._first(environ, (b"BRAKEPEDAL_TENANT", b"SLURM_JOB_ACCOUNT"), EntityId)
        permit = self._first(environ, (b"BRAKEPEDAL_PERMIT",), PermitId)
        workload = self._first(environ, (b"BRAKEPEDAL_WORKLOAD",), _workload)
        return job, tenant, permit, workload

    def _first(
        self, environ: Mapping[bytes, bytes], names: tuple[bytes, ...], parse: Callable[[str], _T]
    ) -> _T | None:
        for name in names:
            raw = environ.get(name)
            if raw is None:
                continue
            try:
                return parse(raw.decode("utf-8"))
            except (UnicodeDecodeError, InputError):
                self.stats[VALUE_INVALID] += 1
        return None


def _workload(text: str) -> Workload:
    try:
        return Workload(text)
    except ValueError as e:
        raise InputError("attribution.value_invalid", f"{text!r:.40} is not a workload") from e
