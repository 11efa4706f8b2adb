"""Detectors: each a small function from the evidence read back from the log to findings.

Every detector sees the same :class:`Evidence` (the devices enrolled in the log, every report
read back from it in log order, the entries that failed verification, the moment of the audit)
and returns :class:`Draft` findings citing log indices; the auditor attaches the inclusion
proofs. Detectors never stop at the first defect: each reports every instance it sees.

Detectors (``detector``: what it means):

* ``entry.unverifiable``: a logged report does not verify (signature, enrolment, form): the
  registry logged what it should have refused.
* ``chain.fork``: two signed reports for one device and sequence: a cloned key, equivocation.
* ``chain.replay``: the same report logged twice.
* ``chain.gap``: sequence numbers skip, or ``previous`` does not link: reports missing from
  the log, or a rewritten chain.
* ``chain.overlap``: a device's windows overlap: two devices behind one identity (a clone), or
  a backdated clock.
* ``device.silent``: an enrolled device silent for longer than the allowed gap: gone dark.
* ``counters.energy``: energy over TDP x time x a margin: a counter no real device produces.
* ``usage.unattributed``: most of a device-day busy with no job named.
* ``governance.not_public``: a report names a governance state the log did not yet hold.
* ``clock.future``: a report's window ends after the audit's moment plus the clock-skew bound:
  a device clock running ahead (or a registry that ignored its bound).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from brakepedal.accounting.catalogue import Catalogue
from brakepedal.audit.findings import Severity
from brakepedal.audit.state import BadEntry, DeviceRow, ReportRow
from brakepedal.errors import InputError

__all__ = [
    "DEFAULT_ALLOWED_GAP",
    "DETECTORS",
    "Draft",
    "Evidence",
    "Thresholds",
    "day_of",
    "detect",
]

_US = 1_000_000
GENESIS = "0" * 64


#: The allowed gap when neither the thresholds nor a policy in force set one.
DEFAULT_ALLOWED_GAP = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The knobs of the detectors (the allowed gap, what counts as heavy use)."""

    #: Longest silence of an enrolled device before ``device.silent``. None: the auditor uses
    #: the policy in force's ``max_report_gap_minutes``, and :data:`DEFAULT_ALLOWED_GAP`
    #: without a policy.
    allowed_gap: timedelta | None = None
    #: Share of a device-day busy with no job attributed that ``usage.unattributed`` flags.
    unattributed_busy_share: float = 0.5
    #: Energy above this multiple of TDP x time is impossible (boost clocks stay under 1.2x).
    energy_tdp_factor: float = 1.5
    #: How far a window may end after the audit's moment (the registry's skew bound).
    clock_skew: timedelta = timedelta(minutes=5)

    @property
    def gap(self) -> timedelta:
        """The allowed gap in force (:data:`DEFAULT_ALLOWED_GAP` when none is set)."""
        return DEFAULT_ALLOWED_GAP if self.allowed_gap is None else self.allowed_gap


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the log says, as the auditor read and verified it."""

    devices: Mapping[str, DeviceRow]
    reports: Sequence[ReportRow]
    bad: Sequence[BadEntry]
    #: The moment of the audit (silence is measured up to it).
    at: datetime
    catalogue: Catalogue
    thresholds: Thresholds = Thresholds()


@dataclass(frozen=True, slots=True)
class Draft:
    """A finding before the auditor attaches inclusion proofs to the indices it cites."""

    detector: str
    rule: str
    severity: Severity
    subject: str
    summary: str
    key: Mapping[str, object]
    figures: Mapping[str, object] = field(default_factory=dict)
    #: (log index, what the entry is to the finding)
    cites: tuple[tuple[int, str], ...] = ()


def day_of(micros: int) -> date:
    return datetime.fromtimestamp(micros / _US, UTC).date()


def _when(micros: int) -> str:
    return datetime.fromtimestamp(micros / _US, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _by_device(reports: Sequence[ReportRow]) -> dict[str, list[ReportRow]]:
    grouped: dict[str, list[ReportRow]] = defaultdict(list)
    for report in reports:
        grouped[report.device].append(report)
    return grouped


def unverifiable(evidence: Evidence) -> list[Draft]:
    """Entries the registry logged as reports that do not verify (signature, device, form)."""
    return [
        Draft(
            "entry.unverifiable",
            "a logged report carries a valid signature of its enrolled device (invariant 1)",
            Severity.HIGH,
            f"log:{bad.log_index}",
            f"log entry {bad.log_index} does not verify: {bad.reason}",
            {"log_index": bad.log_index},
            {"reason": bad.reason, "detail": bad.detail[:300], "device": bad.device},
            ((bad.log_index, "the entry"),),
        )
        for bad in evidence.bad
    ]


def chains(evidence: Evidence) -> list[Draft]:
    """Forks, replays, gaps and overlaps in each device's chain, as logged."""
    drafts: list[Draft] = []
    for device, rows in _by_device(evidence.reports).items():
        by_sequence: dict[int, list[ReportRow]] = defaultdict(list)
        for row in rows:
            by_sequence[row.sequence].append(row)
        for sequence, same in sorted(by_sequence.items()):
            digests = sorted({row.digest for row in same})
            if len(digests) > 1:
                drafts.append(_fork(device, sequence, same, digests))
            for first, again in _repeats(same):
                drafts.append(
                    Draft(
                        "chain.replay",
                        "each report is logged once (idempotent ingest)",
                        Severity.MEDIUM,
                        f"device:{device}",
                        f"{device} report {sequence} is logged twice "
                        f"(log {first.log_index} and {again.log_index})",
                        {"device": device, "sequence": sequence, "log_index": again.log_index},
                        {"digest": again.digest},
                        ((first.log_index, "first copy"), (again.log_index, "replayed copy")),
                    )
                )
        drafts += _links(device, by_sequence)
    return drafts


def _fork(device: str, sequence: int, same: list[ReportRow], digests: list[str]) -> Draft:
    windows = sorted({(r.window_start_us, r.window_end_us) for r in same})
    return Draft(
        "chain.fork",
        "one signed report per device and sequence: two are a cloned key or equivocation",
        Severity.CRITICAL,
        f"device:{device}",
        f"{device} signed {len(digests)} different reports for sequence {sequence}",
        {"device": device, "sequence": sequence},
        {
            "digests": digests,
            "windows": [[_when(a), _when(b)] for a, b in windows],
        },
        tuple((r.log_index, f"report {device}/{sequence} ({r.digest[:12]})") for r in same),
    )


def _repeats(rows: list[ReportRow]) -> list[tuple[ReportRow, ReportRow]]:
    first: dict[str, ReportRow] = {}
    pairs = []
    for row in rows:
        if row.digest in first:
            pairs.append((first[row.digest], row))
        else:
            first[row.digest] = row
    return pairs


def _links(device: str, by_sequence: Mapping[int, list[ReportRow]]) -> list[Draft]:
    """Gaps and broken links between consecutive sequence numbers; overlapping windows."""
    drafts: list[Draft] = []
    sequences = sorted(by_sequence)
    expected_first = 0
    previous: ReportRow | None = None
    for sequence in sequences:
        row = by_sequence[sequence][0]
        missing = sequence - (expected_first if previous is None else previous.sequence + 1)
        link = GENESIS if previous is None else previous.digest
        # After a fork the chain may go on from either copy (chain.fork reports the fork).
        links = (
            {GENESIS} if previous is None else {r.digest for r in by_sequence[previous.sequence]}
        )
        forked = len({r.digest for r in by_sequence[sequence]}) > 1  # chain.fork says it
        linked = any(r.previous in links for r in by_sequence[sequence])
        if missing > 0 or (missing == 0 and not linked and not forked):
            after = "the start" if previous is None else f"sequence {previous.sequence}"
            drafts.append(
                Draft(
                    "chain.gap",
                    "sequence numbers count up by one and each report names its predecessor",
                    Severity.HIGH,
                    f"device:{device}",
                    f"{device}: {missing} report(s) missing after {after}"
                    if missing
                    else f"{device}: report {sequence} does not link to {after}",
                    {"device": device, "sequence": sequence},
                    {"missing": missing, "previous_named": row.previous, "previous_logged": link},
                    tuple(
                        (r.log_index, label)
                        for r, label in ((previous, "last before the gap"), (row, "first after"))
                        if r is not None
                    ),
                )
            )
        if previous is not None and row.window_start_us < previous.window_end_us:
            drafts.append(
                Draft(
                    "chain.overlap",
                    "a device's windows follow one another (overlap: a clone, a backdated clock)",
                    Severity.HIGH,
                    f"device:{device}",
                    f"{device}: report {sequence}'s window starts {_when(row.window_start_us)}, "
                    f"before report {previous.sequence}'s ended ({_when(previous.window_end_us)})",
                    {"device": device, "sequence": sequence, "kind": "overlap"},
                    {"overlap_seconds": (previous.window_end_us - row.window_start_us) / _US},
                    ((previous.log_index, "earlier window"), (row.log_index, "overlapping window")),
                )
            )
        previous = row
    return drafts


def silence(evidence: Evidence) -> list[Draft]:
    """Enrolled devices that stopped reporting, or left gaps longer than allowed."""
    gap_us = int(evidence.thresholds.gap.total_seconds() * _US)
    now_us = int(evidence.at.timestamp() * _US)
    grouped = _by_device(evidence.reports)
    drafts: list[Draft] = []
    for device, enrolled in evidence.devices.items():
        rows = sorted(grouped.get(device, []), key=lambda r: r.window_start_us)
        spans: list[tuple[int, int, ReportRow | None, ReportRow | None]] = []
        # Owed from enrolment, or from the first window if the device reported older ones.
        cursor = min([enrolled.at_us] + [r.window_start_us for r in rows[:1]])
        last = None
        for row in rows:
            if row.window_start_us - cursor > gap_us:
                spans.append((cursor, row.window_start_us, last, row))
            cursor, last = max(cursor, row.window_end_us), row
        if now_us - cursor > gap_us:
            spans.append((cursor, now_us, last, None))
        for begin, end, before, after in spans:
            ongoing = after is None
            drafts.append(
                Draft(
                    "device.silent",
                    f"an enrolled device reports at least every {evidence.thresholds.gap}",
                    Severity.HIGH if ongoing else Severity.MEDIUM,
                    f"device:{device}",
                    f"{device} ({enrolled.operator}) "
                    + (
                        f"silent since {_when(begin)}"
                        if ongoing
                        else f"silent from {_when(begin)} to {_when(end)}"
                    ),
                    {"device": device, "from": _when(begin), "ongoing": ongoing},
                    {"silent_seconds": (end - begin) / _US, "operator": enrolled.operator},
                    tuple(
                        (r.log_index, label)
                        for r, label in ((before, "last report before"), (after, "first after"))
                        if r is not None
                    )
                    or ((enrolled.log_index, "enrolment"),),
                )
            )
    return drafts


def counters(evidence: Evidence) -> list[Draft]:
    """Energy no device of that model can draw in the time (TDP x time x a margin)."""
    factor = evidence.thresholds.energy_tdp_factor
    drafts = []
    for row in evidence.reports:
        try:
            spec = evidence.catalogue.get(row.accelerator)
        except InputError:
            continue
        if spec.tdp_watts is None:
            continue
        seconds = (row.window_end_us - row.window_start_us) / _US
        ceiling_mj = spec.tdp_watts * factor * seconds * 1000
        if row.energy_mj > ceiling_mj:
            drafts.append(
                Draft(
                    "counters.energy",
                    f"energy at most {factor} x TDP x time (impossible counters)",
                    Severity.HIGH,
                    f"device:{row.device}",
                    f"{row.device} report {row.sequence}: {row.energy_mj / 1000:.0f} J in "
                    f"{seconds:.0f} s is {row.energy_mj / 1000 / seconds:.0f} W, over "
                    f"{factor} x its {spec.tdp_watts} W TDP",
                    {"device": row.device, "sequence": row.sequence},
                    {"energy_mj": row.energy_mj, "seconds": seconds, "tdp_watts": spec.tdp_watts},
                    ((row.log_index, "the report"),),
                )
            )
    return drafts


def unattributed(evidence: Evidence) -> list[Draft]:
    """Device-days mostly busy with no job named: compute that answers to no declaration."""
    share = evidence.thresholds.unattributed_busy_share
    totals: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0, 0, 0])
    cites: dict[tuple[str, date], list[int]] = defaultdict(list)
    for row in evidence.reports:
        key = (row.device, day_of(row.window_start_us))
        total = totals[key]
        total[0] += (row.window_end_us - row.window_start_us) // 1000
        if row.job is None:
            total[1] += row.busy_ms
            cites[key].append(row.log_index)
        total[2] += row.busy_ms
    drafts = []
    for (device, day), (wall_ms, loose_ms, _busy) in sorted(totals.items()):
        if wall_ms and loose_ms > share * wall_ms:
            drafts.append(
                Draft(
                    "usage.unattributed",
                    "heavy use is attributed to a job (runs are summed by what they declare)",
                    Severity.LOW,
                    f"device:{device}",
                    f"{device} on {day}: {loose_ms / 3.6e6:.1f} busy hours of "
                    f"{wall_ms / 3.6e6:.1f} reported named no job",
                    {"device": device, "day": day.isoformat()},
                    {"unattributed_busy_hours": loose_ms / 3.6e6, "wall_hours": wall_ms / 3.6e6},
                    tuple((index, "unattributed report") for index in cites[(device, day)][:3]),
                )
            )
    return drafts


def governance_not_public(evidence: Evidence) -> list[Draft]:
    """Reports naming a log size the log had not reached when they were logged."""
    drafts = []
    for row in evidence.reports:
        if row.governance_size is not None and row.governance_size > row.log_index:
            drafts.append(
                Draft(
                    "governance.not_public",
                    "agents act only on governance state that is public in the log",
                    Severity.HIGH,
                    f"device:{row.device}",
                    f"{row.device} report {row.sequence} names a governance state under a "
                    f"checkpoint of {row.governance_size} entries, logged at index "
                    f"{row.log_index}: the state was not public yet",
                    {"device": row.device, "sequence": row.sequence},
                    {
                        "governance_checkpoint_size": row.governance_size,
                        "timestamp_version": row.governance_version,
                        "log_index": row.log_index,
                    },
                    ((row.log_index, "the report"),),
                )
            )
    return drafts


def clock_future(evidence: Evidence) -> list[Draft]:
    """Windows that end after the audit's moment plus the skew bound."""
    bound = int((evidence.at + evidence.thresholds.clock_skew).timestamp() * _US)
    return [
        Draft(
            "clock.future",
            f"a window ends no later than now plus the {evidence.thresholds.clock_skew} skew bound",
            Severity.HIGH,
            f"device:{row.device}",
            f"{row.device} report {row.sequence}'s window ends {_when(row.window_end_us)}, "
            f"after {_when(bound)}: its clock runs ahead",
            {"device": row.device, "sequence": row.sequence},
            {"ahead_seconds": (row.window_end_us - bound) / _US},
            ((row.log_index, "the report"),),
        )
        for row in evidence.reports
        if row.window_end_us > bound
    ]


DETECTORS: dict[str, Callable[[Evidence], list[Draft]]] = {
    "entry": unverifiable,
    "chain": chains,
    "silence": silence,
    "counters": counters,
    "unattributed": unattributed,
    "governance": governance_not_public,
    "clock": clock_future,
}


def detect(evidence: Evidence) -> list[Draft]:
    """Every detector's drafts, in the order of :data:`DETECTORS`."""
    return [draft for run in DETECTORS.values() for draft in run(evidence)]
