"""Usage reports: one device, one window, signed by the device and hash-chained.

A report states what the device did in a window of whole minutes (default five): busy and
tensor-active time, energy, memory, interconnect bytes, the job it was attributed to, and the
Merkle root (RFC 9162, :mod:`brakepedal.tlog.merkle`) over the canonical bytes of its minute
records (:mod:`brakepedal.wire.minute`), which stay on the node until an auditor challenges
one. It also names the governance state the agent saw, and carries what was handed in on the
node during the window: the job's weight-snapshot commitments and the gate's events
(:mod:`brakepedal.wire.report_items`). Reports form a chain per device:
``sequence`` counts up by one and ``previous`` is the SHA-256 of the previous report's
canonical bytes (64 zeros for sequence 0), so a dropped, reordered or rewritten report breaks
the chain (:func:`verify_chain`). ``docs/agent.md`` describes the format.

The signature is a DSSE envelope over the canonical bytes under :data:`REPORT_PAYLOAD_TYPE`;
:func:`open_report` checks it and parses strictly, so the bytes signed are the bytes kept.

Reasons: ``report.*`` for a defect of a report (``field_unknown``, ``field_missing``,
``field_invalid``, ``format_unknown``, ``version_unsupported``, ``time_not_canonical``,
``accelerator_invalid``, ``sequence_invalid``, ``digest_invalid``, ``previous_invalid``,
``window_invalid``, ``window_not_aligned``, ``minute_count_invalid``, ``busy_above_window``,
``tensor_active_invalid``, ``workload_invalid``, ``governance_invalid``,
``minute_device_mismatch``, ``minutes_mismatch``; for the hand-ins ``digest_invalid``,
``parent_invalid``, ``event_kind_invalid``, ``detail_invalid``, ``too_many_snapshots``,
``too_many_events``, ``snapshots_unsorted``, ``events_unsorted``,
``snapshot_outside_window``, ``event_outside_window``, ``snapshot_job_mismatch``, see
:mod:`brakepedal.wire.report_items`), with the field's path first; the value
types' own (``device_id.*``, ``time.*``); ``json.*``/``canonical.not_canonical``; and as
:class:`TrustError` the chain's ``report.sequence_gap``, ``report.chain_broken``,
``report.device_mismatch``, ``report.window_overlap``, ``report.window_backwards`` and a
challenge's ``report.minute_mismatch``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from fractions import Fraction
from itertools import pairwise
from typing import Protocol, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from brakepedal.accounting.usage import UsageWindow
from brakepedal.crypto.dsse import (
    ParsedEnvelope,
    brakepedal_payload_type,
    open_envelope,
    parse_envelope,
    sign_envelope,
)
from brakepedal.crypto.keys import Key, Signer
from brakepedal.errors import BrakepedalError, InputError, TrustError
from brakepedal.model.limits import DEFAULT_LIMITS, Limits
from brakepedal.model.types import DeviceId, EntityId
from brakepedal.tlog.merkle import (
    inclusion_proof_from_leaf_hashes,
    leaf_hash,
    root_from_leaf_hashes,
    verify_inclusion,
)
from brakepedal.wire._codec import fail
from brakepedal.wire.minute import MinuteRecord, parse_minute
from brakepedal.wire.report_format import (
    GENESIS_PREVIOUS,
    MINUTE,
    REPORT_FORMAT,
    Attribution,
    GovernanceSeen,
    UsageReport,
    parse_report,
    sort_events,
    sort_snapshots,
    window_minutes,
)
from brakepedal.wire.report_items import (
    MAX_DETAIL,
    MAX_EVENTS,
    MAX_SNAPSHOTS,
    GateEvent,
    GateEventKind,
    SnapshotCommitment,
    short_detail,
)

__all__ = [
    "GENESIS_PREVIOUS",
    "MAX_DETAIL",
    "MAX_EVENTS",
    "MAX_SNAPSHOTS",
    "REPORT_FORMAT",
    "REPORT_PAYLOAD_TYPE",
    "Attribution",
    "GateEvent",
    "GateEventKind",
    "GovernanceSeen",
    "Placed",
    "SnapshotCommitment",
    "UsageReport",
    "build_report",
    "device_key",
    "minute_inclusion_proof",
    "open_report",
    "parse_report",
    "partition_signed",
    "peek_report",
    "report_signed_by",
    "short_detail",
    "sign_report",
    "sort_events",
    "sort_snapshots",
    "to_usage_window",
    "verify_chain",
    "verify_minute",
    "verify_minutes",
]

REPORT_PAYLOAD_TYPE = brakepedal_payload_type("usage-report", 1)


# ------------------------------------------------------------------------------ building


def build_report(
    *,
    device: DeviceId,
    accelerator: str,
    sequence: int,
    previous: str,
    window_start: datetime,
    window_end: datetime,
    minutes: Sequence[MinuteRecord],
    attribution: Attribution,
    governance: GovernanceSeen | None,
    snapshots: Iterable[SnapshotCommitment] = (),
    events: Iterable[GateEvent] = (),
) -> UsageReport:
    """The report over ``minutes``: one record per minute of the window, in order.

    Sums come from the records; a record with no samples counts as fully busy (see
    :mod:`brakepedal.wire.minute`), so busy time is never below what was missed nor above
    the window. ``tensor_active_ms`` is null when any minute lacks it; ``interconnect_bytes``
    sums PCIe and NVLink where measured, null when no minute measured either.

    ``snapshots`` (the job's weight-snapshot commitments) and ``events`` (the node's gate
    events) handed in during the window (:meth:`brakepedal.agent.handin.HandIns.between`) may
    come in any order; the report holds them sorted, each once. Every one must lie in the
    window, and every snapshot must be of the attributed job.
    """
    count = window_minutes(window_start, window_end)
    if len(minutes) != count:
        fail("report.minutes_mismatch", "minutes", f"{len(minutes)} records for {count} minutes")
    for index, record in enumerate(minutes):
        if not isinstance(record, MinuteRecord) or record.device != device:
            fail("report.minute_device_mismatch", f"minutes[{index}]", f"not a record of {device}")
        if record.minute_start != window_start + index * MINUTE:
            fail("report.minutes_mismatch", f"minutes[{index}]", "not the window's minute")
    tensor = [record.tensor_active_ms for record in minutes]
    memory = [r.memory_max_bytes for r in minutes if r.memory_max_bytes is not None]
    links = [(r.pcie_bytes, r.nvlink_bytes) for r in minutes]
    measured = [value for pair in links for value in pair if value is not None]
    return UsageReport(
        device=device,
        accelerator=accelerator,
        sequence=sequence,
        previous=previous,
        window_start=window_start,
        window_end=window_end,
        busy_ms=sum(record.busy_ms for record in minutes),
        tensor_active_ms=None if None in tensor else sum(t or 0 for t in tensor),
        energy_mj=sum(record.energy_mj for record in minutes),
        memory_max_bytes=max(memory, default=None),
        interconnect_bytes=sum(measured) if measured else None,
        job=attribution.job,
        tenant=attribution.tenant,
        permit=attribution.permit,
        site=attribution.site,
        workload=attribution.workload,
        minute_count=count,
        minute_root=_minute_root(minutes).hex(),
        governance=governance,
        snapshots=sort_snapshots(snapshots),
        events=sort_events(events),
    )


def _minute_root(minutes: Sequence[MinuteRecord]) -> bytes:
    return root_from_leaf_hashes([leaf_hash(record.leaf) for record in minutes])


# --------------------------------------------------------------------- signing


def sign_report(report: UsageReport, signer: Signer) -> bytes:
    """The DSSE envelope of ``report``'s canonical bytes, signed by the device key."""
    return sign_envelope(report.to_bytes(), REPORT_PAYLOAD_TYPE, [signer])


def open_report(
    data: bytes,
    device_key: Key,
    *,
    device: DeviceId | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> UsageReport:
    """Verify a report envelope under ``device_key`` and parse its payload strictly.

    1. The envelope must carry :data:`REPORT_PAYLOAD_TYPE` and a valid signature by
       ``device_key`` (``envelope.*``).
    2. The payload must be a canonical report (:func:`parse_report`).
    3. When ``device`` is given, the report must be about it (``report.device_mismatch``).
    """
    verified = open_envelope(
        data,
        expected_payload_type=REPORT_PAYLOAD_TYPE,
        keys=[device_key],
        threshold=1,
        limits=limits,
    )
    report = parse_report(verified.payload, limits=limits)
    if device is not None and report.device != device:
        raise TrustError(
            "report.device_mismatch", f"usage_report.device: {report.device}, expected {device}"
        )
    return report


# ---------------------------------------------------------------- chains and challenges


def verify_chain(reports: Sequence[UsageReport]) -> None:
    """Raise unless ``reports`` are consecutive links of one device's chain, in order.

    For each report after the first: 1. same device (``report.device_mismatch``); 2. sequence
    one more (``report.sequence_gap``); 3. ``previous`` is the digest of the report before
    (``report.chain_broken``); 4. its window starts no earlier than the one before
    (``report.window_backwards``) and 5. not before that one ends (``report.window_overlap``).
    Gaps in time between windows are allowed here; policy decides which gaps matter.
    """
    if not reports:
        raise InputError("report.chain_empty", "no reports to verify")
    for index, (before, after) in enumerate(pairwise(reports), start=1):
        where = f"reports[{index}]"
        if after.device != before.device:
            raise TrustError(
                "report.device_mismatch", f"{where}: {after.device}, not {before.device}"
            )
        if after.sequence != before.sequence + 1:
            raise TrustError(
                "report.sequence_gap", f"{where}: sequence {after.sequence} after {before.sequence}"
            )
        if after.previous != before.digest():
            raise TrustError("report.chain_broken", f"{where}: previous is not the last digest")
        if after.window_start < before.window_start:
            raise TrustError("report.window_backwards", f"{where}: window starts earlier")
        if after.window_start < before.window_end:
            raise TrustError("report.window_overlap", f"{where}: window overlaps the last one")


def to_usage_window(report: UsageReport, owner: EntityId) -> UsageWindow:
    """The accounting's view of a verified report, attributed to ``owner``."""
    tensor = report.tensor_active_ms
    return UsageWindow(
        device=report.device,
        accelerator=report.accelerator,
        owner=owner,
        start=report.window_start,
        end=report.window_end,
        busy_seconds=Fraction(report.busy_ms, 1000),
        tensor_active_seconds=None if tensor is None else Fraction(tensor, 1000),
        job=report.job,
        site=report.site,
        workload=report.workload,
    )


def minute_inclusion_proof(minutes: Sequence[MinuteRecord], index: int) -> list[bytes]:
    """The node's answer to a challenge for minute ``index``: its RFC 9162 inclusion proof."""
    return inclusion_proof_from_leaf_hashes(index, [leaf_hash(r.leaf) for r in minutes])


def verify_minute(
    report: UsageReport,
    minute_bytes: bytes,
    index: int,
    proof: Sequence[bytes],
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> MinuteRecord:
    """Check a revealed minute record against a verified report; return it parsed.

    1. The bytes are leaf ``index`` of the tree of ``minute_count`` leaves whose root is
       ``minute_root`` (``proof.*``, TrustError ``proof.root_mismatch``).
    2. They are a canonical minute record (InputError ``minute.*``).
    3. It is the report's device and the window's minute ``index`` (``report.minute_mismatch``).
    """
    verify_inclusion(
        leaf_hash=leaf_hash(minute_bytes),
        index=index,
        size=report.minute_count,
        proof=proof,
        root=bytes.fromhex(report.minute_root),
        limits=limits,
    )
    record = parse_minute(minute_bytes, limits=limits)
    expected_start = report.window_start + index * MINUTE
    if record.device != report.device or record.minute_start != expected_start:
        raise TrustError(
            "report.minute_mismatch", f"minute {index}: committed record is for another minute"
        )
    return record


def verify_minutes(report: UsageReport, minutes: Sequence[MinuteRecord]) -> None:
    """Raise unless ``minutes`` are exactly the records ``report`` was built from.

    The full challenge: rebuilding the report from the revealed records must give the same
    report, so the root and every sum agree (TrustError ``report.minutes_mismatch``).
    """
    try:
        rebuilt = build_report(
            device=report.device,
            accelerator=report.accelerator,
            sequence=report.sequence,
            previous=report.previous,
            window_start=report.window_start,
            window_end=report.window_end,
            minutes=minutes,
            attribution=report.attribution,
            governance=report.governance,
            snapshots=report.snapshots,
            events=report.events,
        )
    except InputError as e:
        raise TrustError("report.minutes_mismatch", f"revealed minutes: {e.message}") from e
    if rebuilt != report:
        raise TrustError("report.minutes_mismatch", "revealed minutes do not rebuild the report")


def peek_report(data: bytes) -> tuple[str | None, int | None]:
    """Best-effort device and sequence of an envelope that failed verification, for indexing
    evidence about it: nothing here is verified, and any defect gives ``None``."""
    try:
        document = json.loads(parse_envelope(data).payload)
    except (BrakepedalError, ValueError, RecursionError):
        return None, None
    if not isinstance(document, dict):
        return None, None
    device, sequence = document.get("device"), document.get("sequence")
    return (
        device[:128] if isinstance(device, str) else None,
        sequence if isinstance(sequence, int) and 0 <= sequence < 2**63 else None,
    )


def device_key(key: Key) -> Ed25519PublicKey:
    """An enrolled device's key, ready for :func:`report_signed_by` (keep it: loading a key
    costs more than a verification)."""
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(key.keyval["public"]))


class Placed(Protocol):
    """A report read and matched with its device's key, its signature not yet checked."""

    @property
    def envelope(self) -> ParsedEnvelope: ...

    @property
    def key(self) -> Ed25519PublicKey: ...


_P = TypeVar("_P", bound=Placed)


def partition_signed(placed: Iterable[_P]) -> tuple[list[_P], list[_P]]:
    """The items whose envelope verifies under their key (:func:`report_signed_by`), and
    the others, each in order.

    The signatures are checked one after another, after the reports were read: OpenSSL's
    tables stay in the cache, which parsing in between evicts (about a sixth of a signature's
    cost, ``docs/benchmarks.md``). The registry (at ingest) and the auditor (reading the log
    back) both read a batch this way; each item's verdict is the one of checking it alone.
    """
    signed: list[_P] = []
    unsigned: list[_P] = []
    for item in placed:
        (signed if report_signed_by(item.envelope, item.key) else unsigned).append(item)
    return signed, unsigned


def report_signed_by(envelope: ParsedEnvelope, key: Ed25519PublicKey) -> bool:
    """Whether a signature of ``envelope`` verifies under the device's ``key``.

    The one check the registry (at ingest) and the auditor (reading the log back) both make,
    with the same code, so they reach the same verdict on the same bytes: Ed25519 (RFC 8032,
    OpenSSL through pyca/cryptography) over the DSSE pre-authentication encoding; key ids are
    hints and are not compared.
    """
    pae = envelope.pae()
    for carried in envelope.signatures:
        try:
            key.verify(carried.sig, pae)
        except (InvalidSignature, ValueError):
            continue
        return True
    return False
