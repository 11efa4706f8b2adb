"""Report ingestion: verify each report of a batch, then store and log the batch at once.

Every item of a batch ends in exactly one of three states, and the caller gets each item's:

* ``accepted``: a valid signature by an enrolled device, the device's next sequence number,
  the digest of its predecessor in ``previous``, a window that starts no earlier than the
  predecessor's ended and ends no later than now plus the clock-skew bound. It is appended to
  the transparency log and its row written **in one database transaction**, so a registry
  killed mid-batch has stored either the whole batch or none of it, and an agent that got no
  answer sends the batch again.
* ``duplicate``: the very report (same device, sequence and digest) is already stored; its
  log index is returned and nothing changes. This is what makes delivery idempotent. The
  replay is still kept as evidence (``ingest.duplicate``): it is cheap and a burst of them is
  worth seeing.
* ``rejected``: anything else, with a named reason; the item's bytes are kept in
  ``rejections`` as evidence. Nothing accepted earlier changes.

Verification (envelope parsing, the report's strict parse, the Ed25519 check) happens before
the write lock is taken; the chain checks happen under it, against the stored chain head, in
sequence order within the batch.

Reasons (``ingest.*`` unless the underlying parser names its own, which is then kept):
``body_malformed``, ``batch_too_large``, ``batch_empty``, ``item_too_large``,
``payload_type_unexpected``, ``device_unknown``, ``accelerator_mismatch``,
``signature_invalid``, ``sequence_gap``, ``sequence_old``, ``chain_broken``,
``equivocation`` (another report already holds this sequence), ``window_overlap``,
``clock_ahead``, ``energy_implausible``, ``duplicate``; and the parsers' ``envelope.*``,
``report.*``, ``json.*``, ``canonical.*``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, bindparam, insert, select, update

from brakepedal.crypto.canonical import NotPlainJSONError, canonical_json, loads_plain
from brakepedal.crypto.dsse import (
    ParsedEnvelope,
    canonical_envelope,
    envelope_from_json,
    parse_envelope,
)
from brakepedal.crypto.keys import public_key_from_json
from brakepedal.errors import BrakepedalError, InputError, TrustError
from brakepedal.model.limits import DEFAULT_LIMITS, Limits
from brakepedal.model.types import DeviceId, epoch_micros
from brakepedal.registry.schema import devices, rejections, reports
from brakepedal.tlog.sqlstore import SqlLogStore, bulk_insert
from brakepedal.tlog.store import leaf_hashes_of
from brakepedal.wire.report import (
    GENESIS_PREVIOUS,
    REPORT_PAYLOAD_TYPE,
    UsageReport,
    device_key,
    partition_signed,
    peek_report,
)
from brakepedal.wire.report_format import parse_report

__all__ = [
    "ACCEPTED",
    "DUPLICATE",
    "REJECTED",
    "IngestLimits",
    "Ingestor",
    "ItemResult",
    "parse_batch",
]

ACCEPTED, DUPLICATE, REJECTED = "accepted", "duplicate", "rejected"
#: No accelerator draws 10 kW; more energy than that in a window is not a measurement.
_MAX_POWER_MJ_PER_S = 10_000_000
#: Evidence keeps at most this much of a rejected item's bytes (its hash and size always).
EVIDENCE_BYTES = 65_536


@dataclass(frozen=True, slots=True)
class IngestLimits:
    """Bounds on one batch; a larger one is refused whole and kept as evidence."""

    max_reports: int = 1_000
    max_body_bytes: int = 16_000_000
    clock_skew: timedelta = timedelta(minutes=5)


class ItemResult(msgspec.Struct, frozen=True):
    """What became of one item of a batch.

    A msgspec struct: its JSON form, every field in this order with absent ones null, is the
    item of the ingest answer (``IngestResponse`` in the registry's OpenAPI document), encoded
    straight from it.
    """

    index: int
    status: str
    device: str | None = None
    sequence: int | None = None
    log_index: int | None = None
    reason: str | None = None
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)


class _Verified(msgspec.Struct, frozen=True):
    """A signed, plausible report, not yet checked against its chain (a struct: built per
    report, it costs a third of a frozen dataclass)."""

    index: int
    report: UsageReport
    envelope: bytes
    #: SHA-256 of the payload: the report's canonical bytes (parse_report checked that).
    digest: str


@dataclass(slots=True)
class _Head:
    sequence: int | None
    digest: str | None
    window_end_us: int | None
    operator: str


@dataclass(frozen=True, slots=True)
class _Rejection:
    index: int
    reason: str
    detail: str
    body: bytes
    device: str | None = None
    sequence: int | None = None


class _Placed(NamedTuple):
    """An item read as a report of an enrolled device, its signature not yet checked."""

    position: int
    data: bytes
    envelope: ParsedEnvelope
    report: UsageReport
    key: Ed25519PublicKey


def _rejection(index: int, error: BrakepedalError, data: bytes) -> _Rejection:
    device, sequence = peek_report(data)
    # Peeked from what did not parse: the text as the evidence keeps it (no NUL, valid UTF-8).
    text = None if device is None else _text(device)
    return _Rejection(index, error.reason, error.message, data, text, sequence)


#: Devices whose chain heads one query reads (well under every driver's parameter limit).
_HEADS_PER_QUERY = 500

#: A batch item: its canonical bytes and, where known already, its envelope (the item was
#: canonical as sent) or the parsed object whose fast ASCII encoding the bytes are; neither
#: need be parsed again.
_Item = tuple[bytes, ParsedEnvelope | dict[str, Any] | None]


class Ingestor:
    """Verifies and stores batches of usage reports for one registry database."""

    def __init__(
        self,
        store: SqlLogStore,
        *,
        limits: IngestLimits = IngestLimits(),
        parse_limits: Limits = DEFAULT_LIMITS,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self.limits = limits
        self._parse_limits = parse_limits
        self._now = now
        # Enrolled keys never change, so they are cached once read.
        self._keys: dict[str, tuple[Ed25519PublicKey, str]] = {}

    # ------------------------------------------------------------------ entry points

    def ingest_body(self, body: bytes) -> list[ItemResult]:
        """Ingest a request body ``{"reports": [envelope, ...]}``.

        Raises:
            InputError: ``ingest.body_malformed``, ``ingest.batch_too_large`` or
                ``ingest.batch_empty``, after the body was kept as evidence.
        """
        try:
            items = self._items_of(body)
        except InputError as e:
            self.keep_evidence(body, e.reason, e.message)
            raise
        return self._ingest(items)

    def _items_of(self, body: bytes) -> list[_Item]:
        return _parse_items(body, self.limits, self._parse_limits)

    def ingest(self, items: Sequence[bytes]) -> list[ItemResult]:
        """Ingest envelopes (bytes); each item's result, in order."""
        return self._ingest([(data, None) for data in items])

    def _ingest(self, items: Sequence[_Item]) -> list[ItemResult]:
        received = self._now()
        results: dict[int, ItemResult] = {}
        rejected: list[_Rejection] = []
        verified = self._verified(items, received, rejected)
        # Chain order: per device by sequence, devices in first-seen order.
        verified.sort(key=lambda v: (v.report.device, v.report.sequence))
        with self._store.write_transaction("ingest reports") as conn:
            accepted, duplicates, twins, heads = self._check_chains(conn, verified, rejected)
            if accepted:
                first = self._store.append_locked(
                    conn,
                    [v.envelope for v in accepted],
                    leaf_hashes_of([v.envelope for v in accepted]),
                )
                operators = {device: head.operator for device, head in heads.items()}
                self._insert_reports(conn, accepted, first, received, operators)
                for offset, v in enumerate(accepted):
                    results[v.index] = ItemResult(
                        v.index,
                        ACCEPTED,
                        v.report.device,
                        v.report.sequence,
                        log_index=first + offset,
                    )
            if twins:
                position = {id(v): first + offset for offset, v in enumerate(accepted)}
                duplicates += [(v, position[id(twin)]) for v, twin in twins]
            for v, log_index in duplicates:
                results[v.index] = ItemResult(
                    v.index,
                    DUPLICATE,
                    v.report.device,
                    v.report.sequence,
                    log_index=log_index,
                    reason="ingest.duplicate",
                    detail="already stored; nothing changed",
                )
            self._insert_rejections(conn, rejected, received)
        for r in rejected:
            if r.reason != "ingest.duplicate":
                results[r.index] = ItemResult(
                    r.index, REJECTED, r.device, r.sequence, reason=r.reason, detail=r.detail
                )
        return [results[index] for index in range(len(items))]

    def _verified(
        self, items: Sequence[_Item], received: datetime, rejected: list[_Rejection]
    ) -> list[_Verified]:
        """The items that verify, in order; the others go to ``rejected``, which ends sorted
        by item. Every item is parsed and placed first, then the signatures are checked one
        after another (:func:`partition_signed`); an item's verdict is the one of checking it
        alone, its checks in the same order."""
        placed: list[_Placed] = []
        for index, (data, document) in enumerate(items):
            try:
                placed.append(self._place(index, data, document))
            except BrakepedalError as e:
                rejected.append(_rejection(index, e, data))
        signed, unsigned = partition_signed(placed)
        for item in unsigned:
            error = TrustError(
                "ingest.signature_invalid",
                f"reports[{item.position}]: not signed by the key enrolled for "
                f"{item.report.device}",
            )
            rejected.append(_rejection(item.position, error, item.data))
        verified: list[_Verified] = []
        for item in signed:
            try:
                verified.append(self._plausible(item, received))
            except BrakepedalError as e:
                rejected.append(_rejection(item.position, e, item.data))
        rejected.sort(key=lambda rejection: rejection.index)
        return verified

    def keep_evidence(self, body: bytes, reason: str, detail: str) -> None:
        """Store a whole body that could not be read as a batch."""
        with self._store.write_transaction("keep rejected evidence") as conn:
            self._insert_rejections(conn, [_Rejection(-1, reason, detail, body)], self._now())

    # ------------------------------------------------------------------ verification

    def _place(
        self, index: int, data: bytes, document: ParsedEnvelope | dict[str, Any] | None
    ) -> _Placed:
        """An item read as a report of an enrolled device of its accelerator, before its
        signature is checked."""
        limits = self._parse_limits
        if len(data) > limits.max_envelope_bytes:
            raise InputError(
                "ingest.item_too_large",
                f"reports[{index}]: {len(data)} bytes > {limits.max_envelope_bytes}",
            )
        if isinstance(document, ParsedEnvelope):
            envelope = document  # canonical as sent, read within these limits
        elif (
            document is not None
            and len(data) <= limits.max_json_bytes
            and data.count(b"{") + data.count(b"[") <= limits.max_json_depth
        ):
            # ``data`` is the ASCII canonical encoding of ``document``, within the JSON limits:
            # exactly what the strict parser would have returned from ``data``.
            envelope = envelope_from_json(document, limits=limits)
        else:
            envelope = parse_envelope(data, limits=limits)
        if envelope.payload_type != REPORT_PAYLOAD_TYPE:
            raise InputError(
                "ingest.payload_type_unexpected",
                f"reports[{index}]: payloadType {envelope.payload_type!r:.80} is not a report",
            )
        report = parse_report(envelope.payload, limits=self._parse_limits)
        key, accelerator = self._key(report.device)
        if report.accelerator != accelerator:
            raise InputError(
                "ingest.accelerator_mismatch",
                f"reports[{index}]: a {report.accelerator} report from {report.device}, "
                f"enrolled as a {accelerator}",
            )
        return _Placed(index, data, envelope, report, key)

    def _plausible(self, item: _Placed, received: datetime) -> _Verified:
        """A signed report whose energy and clock the registry believes."""
        index, report = item.position, item.report
        seconds = (report.window_end - report.window_start).total_seconds()
        if report.energy_mj > seconds * _MAX_POWER_MJ_PER_S:
            raise InputError(
                "ingest.energy_implausible",
                f"reports[{index}]: {report.energy_mj} mJ in {seconds:.0f} s is over "
                f"{_MAX_POWER_MJ_PER_S // 1_000_000} kW",
            )
        if report.window_end > received + self.limits.clock_skew:
            raise InputError(
                "ingest.clock_ahead",
                f"reports[{index}]: window ends {report.window_end.isoformat()}, more than "
                f"{self.limits.clock_skew} after the registry's clock",
            )
        return _Verified(
            index, report, item.data, hashlib.sha256(item.envelope.payload).hexdigest()
        )

    def _key(self, device: DeviceId) -> tuple[Ed25519PublicKey, str]:
        known = self._keys.get(device)
        if known is not None:
            return known
        with self._store.engine.connect() as conn:
            row = conn.execute(
                select(devices.c.public_key, devices.c.accelerator).where(
                    devices.c.device == str(device)
                )
            ).one_or_none()
        if row is None:
            raise InputError("ingest.device_unknown", f"device {device} is not enrolled")
        # Kept as a ready cryptography key: loading it per report costs more than verifying.
        enrolled = public_key_from_json(str(row[0]).encode())
        known = (device_key(enrolled), str(row[1]))
        self._keys[device] = known
        return known

    # ------------------------------------------------------------------ under the lock

    def _check_chains(
        self, conn: Connection, verified: list[_Verified], rejected: list[_Rejection]
    ) -> tuple[
        list[_Verified],
        list[tuple[_Verified, int]],
        list[tuple[_Verified, _Verified]],
        dict[str, _Head],
    ]:
        # Every device's chain head in one query (not one per device).
        heads = self._heads(conn, sorted({str(v.report.device) for v in verified}))
        accepted: list[_Verified] = []
        duplicates: list[tuple[_Verified, int]] = []
        in_batch: dict[tuple[str, int], _Verified] = {}
        twins: list[tuple[_Verified, _Verified]] = []
        for v in verified:
            report = v.report
            head = heads[report.device]
            reason = self._chain_defect(conn, v, head, duplicates, in_batch=in_batch, twins=twins)
            if reason is None:
                accepted.append(v)
                in_batch[(report.device, report.sequence)] = v
                head.sequence = report.sequence
                head.digest = v.digest
                head.window_end_us = epoch_micros(report.window_end)
            elif reason[0] != "":
                rejected.append(
                    _Rejection(
                        v.index, reason[0], reason[1], v.envelope, report.device, report.sequence
                    )
                )
        self._move_heads(conn, heads, accepted)
        return accepted, duplicates, twins, heads

    def _heads(self, conn: Connection, names: list[str]) -> dict[str, _Head]:
        heads: dict[str, _Head] = {}
        for start in range(0, len(names), _HEADS_PER_QUERY):
            rows = conn.execute(
                select(
                    devices.c.device,
                    devices.c.last_sequence,
                    devices.c.last_digest,
                    devices.c.last_window_end_us,
                    devices.c.operator,
                ).where(devices.c.device.in_(names[start : start + _HEADS_PER_QUERY]))
            )
            heads |= {row[0]: _Head(row[1], row[2], row[3], row[4]) for row in rows}
        # Every verified report's device is enrolled (its key was read): a missing row is a bug.
        missing = set(names) - heads.keys()
        if missing:
            raise RuntimeError(f"no device row for {sorted(missing)[:3]}")
        return heads

    def _chain_defect(  # noqa: PLR0911 - one return per named defect
        self,
        conn: Connection,
        v: _Verified,
        head: _Head,
        duplicates: list[tuple[_Verified, int]],
        *,
        in_batch: dict[tuple[str, int], _Verified],
        twins: list[tuple[_Verified, _Verified]],
    ) -> tuple[str, str] | None:
        """Why ``v`` cannot extend its chain (None: it can). A duplicate of an item accepted
        earlier in this batch goes to ``twins`` with the empty reason (no rejection)."""
        report, where = v.report, f"reports[{v.index}]"
        # Items accepted earlier in this batch first: the database does not hold them yet, so
        # the checks below would call a copy "sequence_old" and a rival report likewise.
        twin = in_batch.get((report.device, report.sequence))
        if twin is not None and twin.digest == v.digest:
            # The same report (payload; the envelope may differ) again: as later, a duplicate.
            twins.append((v, twin))
            return ("", "")
        if twin is not None:
            return (
                "ingest.equivocation",
                f"{where}: {report.device} sequence {report.sequence} is accepted in this batch "
                f"with another digest ({twin.digest[:16]}...); two reports for one slot",
            )
        expected = 0 if head.sequence is None else head.sequence + 1
        if report.sequence < expected:
            stored = conn.execute(
                select(reports.c.digest, reports.c.log_index).where(
                    reports.c.device == report.device, reports.c.sequence == report.sequence
                )
            ).one_or_none()
            if stored is not None and stored[0] == v.digest:
                duplicates.append((v, int(stored[1])))
                return ("ingest.duplicate", f"{where}: already stored at log index {stored[1]}")
            if stored is not None:
                return (
                    "ingest.equivocation",
                    f"{where}: {report.device} sequence {report.sequence} is already stored "
                    f"with another digest ({stored[0][:16]}...); two reports for one slot",
                )
            return ("ingest.sequence_old", f"{where}: sequence {report.sequence} < {expected}")
        if report.sequence > expected:
            return (
                "ingest.sequence_gap",
                f"{where}: sequence {report.sequence}, expected {expected}; send the gap first",
            )
        previous = GENESIS_PREVIOUS if head.digest is None else head.digest
        if report.previous != previous:
            return (
                "ingest.chain_broken",
                f"{where}: previous {report.previous[:16]}... is not the digest of "
                f"sequence {expected - 1} ({previous[:16]}...)",
            )
        if (
            head.window_end_us is not None
            and epoch_micros(report.window_start) < head.window_end_us
        ):
            return (
                "ingest.window_overlap",
                f"{where}: window starts {report.window_start.isoformat()}, before the "
                "previous report's window ended",
            )
        return None

    def _move_heads(
        self, conn: Connection, heads: dict[str, _Head], accepted: list[_Verified]
    ) -> None:
        moved = sorted({v.report.device for v in accepted})
        if not moved:
            return
        conn.execute(
            update(devices)
            .where(devices.c.device == bindparam("head_device"))
            .values(
                last_sequence=bindparam("head_sequence"),
                last_digest=bindparam("head_digest"),
                last_window_end_us=bindparam("head_window_end_us"),
            ),
            [
                {
                    "head_device": device,
                    "head_sequence": heads[device].sequence,
                    "head_digest": heads[device].digest,
                    "head_window_end_us": heads[device].window_end_us,
                }
                for device in moved
            ],
        )

    def _insert_reports(
        self,
        conn: Connection,
        accepted: list[_Verified],
        first: int,
        received: datetime,
        operators: dict[str, str],
    ) -> None:
        at = epoch_micros(received)
        rows = [
            (
                str(r.device),
                r.sequence,
                v.digest,
                first + offset,
                at,
                epoch_micros(r.window_start),
                epoch_micros(r.window_end),
                r.busy_ms,
                r.tensor_active_ms,
                r.energy_mj,
                operators[r.device],
                r.job,
                r.tenant,
                r.permit,
                r.workload.value,
                r.minute_root,
                r.minute_count,
            )
            for offset, v in enumerate(accepted)
            for r in (v.report,)
        ]
        bulk_insert(conn, reports, rows)  # the table's columns, in its order

    def _insert_rejections(
        self, conn: Connection, rejected: list[_Rejection], received: datetime
    ) -> None:
        if not rejected:
            return
        at = epoch_micros(received)
        conn.execute(
            insert(rejections),
            [
                {
                    "received_us": at,
                    "reason": _text(r.reason),
                    "detail": _text(r.detail[:2000]),
                    "device": None if r.device is None else _text(r.device),
                    "sequence": r.sequence,
                    "body_sha256": hashlib.sha256(r.body).hexdigest(),
                    "body_size": len(r.body),
                    "body": r.body[:EVIDENCE_BYTES],
                }
                for r in rejected
            ],
        )


def _text(value: str) -> str:
    """Evidence text a database keeps whatever the input held (PostgreSQL refuses NUL)."""
    return value.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode()


def parse_batch(body: bytes, limits: IngestLimits) -> list[bytes]:
    """The items of a batch body ``{"reports": [envelope, ...]}``, each as canonical bytes.

    Raises:
        InputError: ``ingest.batch_too_large``, ``ingest.body_malformed`` (not JSON, not an
            object with exactly ``reports``, ``reports`` not a list), ``ingest.batch_empty``.
    """
    return [data for data, _document in _parse_items(body, limits, DEFAULT_LIMITS)]


class _WireBatch(msgspec.Struct, forbid_unknown_fields=True):
    reports: list[msgspec.Raw]


_BATCH_DECODER = msgspec.json.Decoder(_WireBatch)


def _parse_items(body: bytes, limits: IngestLimits, parse_limits: Limits) -> list[_Item]:
    if len(body) > limits.max_body_bytes:
        raise InputError(
            "ingest.batch_too_large", f"body: {len(body)} bytes > {limits.max_body_bytes}"
        )
    fast = _canonical_items(body, limits, parse_limits)
    if fast is not None:
        return fast
    try:
        # Without floats, constants and integers beyond 2^53 - 1 (envelopes have no numbers
        # at all), an item whose sorted compact encoding is ASCII is in RFC 8785 form (see
        # brakepedal.crypto.canonical._encoded_like_rfc8785): the fast encoding below.
        document = loads_plain(body)
        plain = True
    except NotPlainJSONError:
        plain = False
        document = None
    except (ValueError, RecursionError) as e:
        raise InputError("ingest.body_malformed", f"body: not JSON ({e})") from e
    if not plain:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as e:
            raise InputError("ingest.body_malformed", f"body: not JSON ({e})") from e
    if not isinstance(document, dict) or set(document) != {"reports"}:
        raise InputError("ingest.body_malformed", 'body: want exactly {"reports": [...]}')
    raw = document["reports"]
    if not isinstance(raw, list):
        raise InputError("ingest.body_malformed", "body.reports: not a list")
    _check_count(len(raw), limits)
    return [_item_bytes(item, plain) for item in raw]


def _check_count(count: int, limits: IngestLimits) -> None:
    if not count:
        raise InputError("ingest.batch_empty", "body.reports: empty")
    if count > limits.max_reports:
        raise InputError(
            "ingest.batch_too_large", f"body.reports: {count} reports > {limits.max_reports}"
        )


def _canonical_items(body: bytes, limits: IngestLimits, parse_limits: Limits) -> list[_Item] | None:
    """The items of a batch whose every item is a canonical envelope as sent (what agents
    send); otherwise ``None``, and the general reader below decides.

    Each item is the exact span of the body that the JSON decoder (msgspec, C) found for it,
    read by :func:`~brakepedal.crypto.dsse.canonical_envelope`; being canonical, the span is
    the canonical bytes the general reader would have made of it, with the same envelope.
    Duplicate ``reports`` keys keep the last, as the standard library's reader does.
    """
    try:
        spans = _BATCH_DECODER.decode(body).reports
    except (msgspec.DecodeError, RecursionError):
        return None
    if not 0 < len(spans) <= limits.max_reports:
        return None  # the general reader names it (or what else is wrong with the body)
    items: list[_Item] = []
    for span in spans:
        data = bytes(span)
        envelope = canonical_envelope(data, limits=parse_limits)
        if envelope is None:
            return None
        items.append((data, envelope))
    return items


def _item_bytes(item: object, plain: bool) -> _Item:
    """One item's canonical bytes, or (not canonically encodable) the bytes as sent."""
    if plain and isinstance(item, dict):
        try:
            encoded = json.dumps(item, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        except RecursionError:
            return b"[]", None  # nested beyond any envelope; the parser refuses it
        if encoded.isascii():
            return encoded.encode("ascii"), item
    return _slow_item_bytes(item), None


def _slow_item_bytes(item: object) -> bytes:
    try:
        return canonical_json(item)
    except BrakepedalError:
        # Not canonically encodable (floats, lone surrogates...): kept as sent, and the
        # envelope parser names what is wrong with it.
        return json.dumps(item, ensure_ascii=True).encode()
    except RecursionError:
        return b"[]"  # nested beyond any envelope; the parser refuses it
