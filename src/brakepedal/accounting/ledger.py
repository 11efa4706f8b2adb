"""The ledger: attested compute summed by run, lineage, ownership group and site.

:class:`Ledger` takes usage windows, the declared runs and the ownership graph, bounds every
window once (:func:`~brakepedal.accounting.flop.attested_bound` under the policy's
:class:`~brakepedal.accounting.flop.BoundRule`) and answers the questions policies ask: how much
has this lineage used, when did it cross a threshold, what is the most this group used in any
90 days, how big is the cluster at this site.

Attribution is conservative. A window whose job no run declares is not dropped: it is summed
with every other undeclared window of the same ownership group into the pseudo-lineage
``unattributed:<group>``, so declaring runs can only make a lab's largest total smaller, never
hiding compute makes it so. Windows of exempt workloads (by policy, e.g. inference of deployed
models) count toward site capacity but not toward training totals.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from itertools import chain

from brakepedal.accounting.catalogue import Accelerator, Catalogue
from brakepedal.accounting.flop import BoundRule, attested_bound
from brakepedal.accounting.groups import OwnershipGraph
from brakepedal.accounting.lineage import UNATTRIBUTED_PREFIX, LineageGraph, RunDeclaration
from brakepedal.accounting.usage import UsageWindow, Workload
from brakepedal.errors import InputError
from brakepedal.model.types import DeviceId, EntityId, Flop, LineageId, RunId, SiteId

__all__ = [
    "UNSITED",
    "AttributedWindow",
    "Ledger",
    "Modification",
    "RollingPeak",
    "SiteCapacity",
    "Subject",
]

#: The site of windows whose report names none: never a monitored site.
UNSITED = SiteId("unsited")


class Subject(StrEnum):
    """What compute is summed over."""

    RUN = "run"
    LINEAGE = "lineage"
    GROUP = "group"
    ENTITY = "entity"
    SITE = "site"


@dataclass(frozen=True, slots=True)
class AttributedWindow:
    """A usage window with its bound and everything it counts toward."""

    window: UsageWindow
    accelerator: Accelerator
    bound: Flop
    run: RunId | None
    lineage: LineageId
    group: EntityId
    counted: bool

    def key(self, kind: Subject) -> str | None:
        """The id of the ``kind`` subject this window counts toward (None: no such subject)."""
        match kind:
            case Subject.RUN:
                return self.run
            case Subject.LINEAGE:
                return self.lineage
            case Subject.GROUP:
                return self.group
            case Subject.ENTITY:
                return self.window.owner
            case Subject.SITE:
                return self.window.site or UNSITED


@dataclass(frozen=True, slots=True)
class RollingPeak:
    """The most compute in any interval of ``width`` and the end of one such interval."""

    flop: Flop
    end: datetime | None


@dataclass(frozen=True, slots=True)
class SiteCapacity:
    """The devices seen at a site and what they could do together."""

    site: SiteId
    devices: frozenset[DeviceId]
    peak_ops_per_s: int
    h100_equivalents: Fraction


@dataclass(frozen=True, slots=True)
class Modification:
    """A group's continuation of a model another group trained (the EU "downstream modifier").

    ``modification`` is the compute of ``root`` and every run of ``modifier`` continuing it;
    ``original`` the compute of every run ``root`` continues.
    """

    modifier: EntityId
    root: RunId
    lineage: LineageId
    modification: Flop
    original: Flop


def _unattributed(owner: EntityId) -> LineageId:
    name = f"{UNATTRIBUTED_PREFIX}{owner}"
    if len(name) > 128:
        name = UNATTRIBUTED_PREFIX + hashlib.sha256(owner.encode()).hexdigest()
    return LineageId(name)


def _seconds(delta: timedelta) -> Fraction:
    return Fraction(delta.days * 86_400 + delta.seconds) + Fraction(delta.microseconds, 10**6)


class Ledger:
    """Attested compute by subject; pure and immutable once built."""

    def __init__(
        self,
        windows: Iterable[UsageWindow],
        *,
        runs: LineageGraph,
        ownership: OwnershipGraph,
        catalogue: Catalogue,
        rule: BoundRule,
        exempt_workloads: frozenset[Workload] = frozenset(),
    ) -> None:
        if Workload.UNKNOWN in exempt_workloads or Workload.TRAINING in exempt_workloads:
            raise InputError("ledger.exemption_invalid", "only declared inference can be exempt")
        self.runs = runs
        self.ownership = ownership
        self.catalogue = catalogue
        self.rule = rule
        self.exempt_workloads = exempt_workloads
        self._windows = tuple(sorted((self._attribute(w) for w in windows), key=_order))
        _refuse_overlaps(self._windows)
        self._index: dict[tuple[Subject, str], list[AttributedWindow]] = defaultdict(list)
        for item in self._windows:
            for kind in Subject:
                key = item.key(kind)
                if key is not None:
                    self._index[kind, key].append(item)
        self._series_cache: dict[tuple[Subject, str], _Series] = {}

    def _attribute(self, window: UsageWindow) -> AttributedWindow:
        accelerator = self.catalogue.get(window.accelerator)
        run = self.runs.run_of_job(window.job) if window.job is not None else None
        group = self.ownership.group_of(window.owner)
        # Undeclared work pools per ownership group: pooled per owner, a run left undeclared
        # and split across subsidiaries would stay under every threshold.
        lineage = self.runs.lineage_of(run) if run is not None else _unattributed(group)
        return AttributedWindow(
            window=window,
            accelerator=accelerator,
            bound=self._bound(window, accelerator, window.start, window.end),
            run=run,
            lineage=lineage,
            group=group,
            counted=window.workload not in self.exempt_workloads,
        )

    def _bound(
        self, window: UsageWindow, accelerator: Accelerator, start: datetime, end: datetime
    ) -> Flop:
        overlap = _seconds(min(end, window.end) - max(start, window.start))
        if overlap <= 0:
            return Flop(0)
        busy, tensor = window.busy_seconds, window.tensor_active_seconds
        return attested_bound(
            accelerator,
            self.rule,
            wall_seconds=overlap,
            busy_seconds=None if busy is None else min(busy, overlap),
            tensor_active_seconds=None if tensor is None else min(tensor, overlap),
        )

    # ------------------------------------------------------------------ subjects and totals

    def windows(
        self, kind: Subject | None = None, subject: str | None = None
    ) -> tuple[AttributedWindow, ...]:
        """Every attributed window, or those counting toward one subject, by end time."""
        if kind is None:
            return self._windows
        return tuple(self._index.get((kind, _require(subject)), ()))

    def subjects(self, kind: Subject) -> tuple[str, ...]:
        """Every subject of ``kind`` with at least one window, sorted."""
        return tuple(sorted(key for k, key in self._index if k is kind))

    def total(self, kind: Subject, subject: str, *, until: datetime | None = None) -> Flop:
        """Training compute counted toward ``subject`` (up to ``until`` if given)."""
        if until is None:
            return Flop.total(w.bound for w in self.windows(kind, subject) if w.counted)
        return self.within(kind, subject, datetime.min.replace(tzinfo=until.tzinfo), until)

    def within(self, kind: Subject, subject: str, start: datetime, end: datetime) -> Flop:
        """The bound on training compute of ``subject`` inside ``[start, end)``.

        A window straddling an edge contributes at most its busy time inside the interval at
        peak: sound, since the device could have been busy exactly then. Windows wholly
        inside come from prefix sums, so this costs a bisection plus the edge windows.
        """
        series = self._series(kind, subject)
        if end <= start or series is None:
            return Flop(0)
        # Windows ending in (start + longest, end] lie wholly inside the interval.
        inner_from = bisect_right(series.ends, start + series.longest)
        inner_to = bisect_right(series.ends, end)
        total = series.prefix[max(inner_to, inner_from)] - series.prefix[inner_from]
        edges = chain(
            range(bisect_right(series.ends, start), min(inner_from, inner_to)),
            range(inner_to, bisect_right(series.ends, end + series.longest)),
        )
        for index in edges:
            item = series.items[index]
            if item.counted:
                total += self._bound(item.window, item.accelerator, start, end).value
        return Flop(total)

    def _series(self, kind: Subject, subject: str) -> _Series | None:
        key = (kind, subject)
        cached = self._series_cache.get(key)
        if cached is None and key in self._index:
            cached = self._series_cache[key] = _Series(self._index[key])
        return cached

    def crossed_at(
        self, kind: Subject, subject: str, threshold: Flop, *, inclusive: bool = False
    ) -> datetime | None:
        """When the attested total first went above ``threshold`` (or reached it, if
        ``inclusive``): the end of the first report window, in end-time order, that proves it.
        None if it never did."""
        running = 0
        for item in self.windows(kind, subject):
            if not item.counted:
                continue
            running += item.bound.value
            if running > threshold.value or (inclusive and running == threshold.value):
                return item.window.end
        return None

    def max_rolling(self, kind: Subject, subject: str, width: timedelta) -> RollingPeak:
        """The largest :meth:`within` over any interval of ``width``, and where it ends.

        Each window's contribution is piecewise linear in the interval's end with kinks at
        known points; between kinks the sum is linear, so its maximum is at a kink. Every kink
        is evaluated: exact, quadratic in the number of windows of the subject.
        """
        if width <= timedelta(0):
            raise InputError("ledger.width_invalid", "a rolling window must be positive")
        items = [w for w in self.windows(kind, subject) if w.counted]
        candidates: set[datetime] = set()
        for item in items:
            w = item.window
            busy = (
                timedelta(microseconds=math.ceil(w.busy_seconds * 10**6))
                if w.busy_seconds is not None
                else w.end - w.start
            )
            candidates.update({w.start + busy, w.end, w.start + width, w.end + width - busy})
        best = RollingPeak(Flop(0), None)
        for end in sorted(candidates):
            value = self.within(kind, subject, end - width, end)
            if value > best.flop:
                best = RollingPeak(value, end)
        return best

    def rolling(
        self,
        kind: Subject,
        subject: str,
        width: timedelta,
        *,
        start: datetime,
        end: datetime,
        step: timedelta,
    ) -> tuple[tuple[datetime, Flop], ...]:
        """:meth:`within` over ``[t - width, t)`` for each ``t`` from ``start`` to ``end``."""
        if step <= timedelta(0) or width <= timedelta(0):
            raise InputError("ledger.width_invalid", "rolling width and step must be positive")
        points: list[tuple[datetime, Flop]] = []
        moment = start
        while moment <= end:
            points.append((moment, self.within(kind, subject, moment - width, moment)))
            moment += step
        return tuple(points)

    # ------------------------------------------------------------------ structure

    def run(self, run: RunId) -> RunDeclaration:
        """The declaration of ``run``."""
        return self.runs.run(run)

    def lineage_of(self, run: RunId) -> LineageId:
        """The lineage ``run`` belongs to."""
        return self.runs.lineage_of(run)

    def group_of(self, entity: EntityId) -> EntityId:
        """The ownership group ``entity`` belongs to."""
        return self.ownership.group_of(entity)

    def model_cumulative(self, run: RunId) -> Flop:
        """The compute of the model ``run`` produced: ``run`` plus every run it continues."""
        chain = (run, *self.runs.ancestors(run))
        return Flop.total(self.total(Subject.RUN, r) for r in chain)

    def modifications(self) -> tuple[Modification, ...]:
        """Every continuation of a model by a group other than the one that trained it."""
        found: list[Modification] = []
        for declaration in self.runs.runs():
            run = declaration.run
            group = self.group_of(declaration.owner)
            parents = list(self.runs.graph.predecessors(run))
            if not parents or all(
                self.group_of(self.run(RunId(p)).owner) == group for p in parents
            ):
                continue
            own = [
                run,
                *(
                    d
                    for d in self.runs.descendants(run)
                    if self.group_of(self.run(d).owner) == group
                ),
            ]
            found.append(
                Modification(
                    modifier=group,
                    root=run,
                    lineage=self.lineage_of(run),
                    modification=Flop.total(self.total(Subject.RUN, r) for r in own),
                    original=Flop.total(
                        self.total(Subject.RUN, r) for r in self.runs.ancestors(run)
                    ),
                )
            )
        return tuple(found)

    def site_capacity(self, site: SiteId) -> SiteCapacity:
        """The distinct devices seen at ``site`` (any workload) and their combined peak at
        the rule's precisions, also in H100-equivalents."""
        devices: dict[DeviceId, Accelerator] = {}
        for item in self.windows(Subject.SITE, site):
            devices[item.window.device] = item.accelerator
        reference = self.catalogue.reference
        return SiteCapacity(
            site=site,
            devices=frozenset(devices),
            peak_ops_per_s=sum(a.max_peak(self.rule.precisions) for a in devices.values()),
            h100_equivalents=sum(
                (a.h100_equivalents(reference) for a in devices.values()), Fraction(0)
            ),
        )

    def devices(
        self, kind: Subject, subject: str, start: datetime, end: datetime
    ) -> frozenset[DeviceId]:
        """Devices that did counted work for ``subject`` inside ``[start, end)``."""
        return frozenset(
            w.window.device
            for w in self.windows(kind, subject)
            if w.counted and w.window.start < end and w.window.end > start
        )


class _Series:
    """One subject's windows by end time, with prefix sums of counted bounds."""

    def __init__(self, items: list[AttributedWindow]) -> None:
        self.items = items
        self.ends = [item.window.end for item in items]
        self.longest = max(item.window.end - item.window.start for item in items)
        self.prefix = [0]
        for item in items:
            self.prefix.append(self.prefix[-1] + (item.bound.value if item.counted else 0))


def _refuse_overlaps(items: tuple[AttributedWindow, ...]) -> None:
    """One device cannot be busy in two windows at once: overlapping windows would count its
    time twice, so they are refused rather than summed."""
    last_end: dict[DeviceId, datetime] = {}
    for item in sorted(items, key=lambda i: (i.window.device, i.window.start)):
        window = item.window
        previous = last_end.get(window.device)
        if previous is not None and window.start < previous:
            raise InputError(
                "ledger.window_overlap",
                f"device {window.device}: window at {window.start.isoformat()} overlaps the "
                f"window before it (ending {previous.isoformat()})",
            )
        last_end[window.device] = window.end


def _order(item: AttributedWindow) -> tuple[datetime, datetime, str]:
    return (item.window.end, item.window.start, item.window.device)


def _require(subject: str | None) -> str:
    if subject is None:
        raise InputError("ledger.subject_missing", "a subject kind needs a subject id")
    return subject
