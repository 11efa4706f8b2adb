"""Fuzz target: signed usage reports (``brakepedal.wire.report.open_report``).

Only :class:`~brakepedal.errors.BrakepedalError` may escape. The envelope is opened under RFC
8032 TEST 1's public test key (the seeds are signed with it, so the fuzzer reaches the report
parser through a valid signature); the payload of any well-formed envelope is also parsed
unsigned, so mutations of the report itself are explored. A report that parses must have
exactly one byte form and convert to the accounting's usage window; its snapshot commitments
and gate events must be in order, inside the window, each re-read from its own JSON to the same
value, and (snapshots) of the report's job. What the typed fast reader (``canonical_report``)
accepts, the strict reader must accept alike. A seed carries both arrays filled
(``genesis_snapshots_events.json``) so mutations reach the item parsers.
"""

from __future__ import annotations

from brakepedal.crypto.dsse import parse_envelope
from brakepedal.errors import BrakepedalError
from brakepedal.model.limits import Limits
from brakepedal.model.types import EntityId
from brakepedal.wire import report_format
from brakepedal.wire.report import (
    GateEvent,
    SnapshotCommitment,
    UsageReport,
    open_report,
    parse_report,
    to_usage_window,
)
from fuzz.fuzz_envelope import TEST_KEY

# Small bounds keep each run fast while still exercising the size checks.
LIMITS = Limits(max_envelope_bytes=64_000, max_json_bytes=64_000, max_envelope_signatures=8)
OWNER = EntityId("fuzz-owner")


def test_one_input(data: bytes) -> None:
    """Open ``data`` as a signed report, then parse its payload unsigned."""
    try:
        report = open_report(data, TEST_KEY, limits=LIMITS)
        assert report.to_bytes() == parse_envelope(data, limits=LIMITS).payload
    except BrakepedalError:
        pass
    try:
        payload = parse_envelope(data, limits=LIMITS).payload
    except BrakepedalError:
        return
    fast = report_format.canonical_report(payload, limits=LIMITS)
    if fast is not None:
        assert report_format._parse_report_strict(payload, LIMITS) == fast
    try:
        report = parse_report(payload, limits=LIMITS)
    except BrakepedalError:
        assert fast is None
        return
    assert report.to_bytes() == payload
    assert len(report.digest()) == 64
    window = to_usage_window(report, OWNER)
    assert window.busy_seconds is not None
    assert window.busy_seconds * 1000 == report.busy_ms
    _check_hand_ins(report)


def _check_hand_ins(report: UsageReport) -> None:
    snapshot_keys = [snapshot.sort_key for snapshot in report.snapshots]
    event_keys = [event.sort_key for event in report.events]
    assert snapshot_keys == sorted(set(snapshot_keys))
    assert event_keys == sorted(set(event_keys))
    for snapshot in report.snapshots:
        assert snapshot.job == report.job
        assert report.window_start <= snapshot.at < report.window_end
        assert SnapshotCommitment.from_json(snapshot.to_json(), "snapshot") == snapshot
    for event in report.events:
        assert report.window_start <= event.at < report.window_end
        assert GateEvent.from_json(event.to_json(), "event") == event


if __name__ == "__main__":
    from fuzz.harness import main

    main("usage_report", test_one_input)
