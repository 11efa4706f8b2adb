"""Governance documents: policy versions, pause orders, lift orders and training permits.

Documents are the content that the signed TUF metadata point at (as target files, by hash).
This module is pure: values, their canonical bytes and the strict parser. A document is one
RFC 8785 canonical JSON object with a type tag and a spec version::

    {"effective_from":"2027-01-01T00:00:00Z","grace_seconds":86400,"jurisdictions":["eu","us"],
     "order_id":"pause-2027-01","reason":"...","renews":null,"spec_version":1,
     "sunset":"2027-07-01T00:00:00Z","threshold_flop":"100000000000000000000000000",
     "type":"brakepedal.pause_order"}

A document has exactly one byte form, so the bytes signed are the bytes kept (STYLE.md rule 3):
canonical key order and no whitespace, every field present (``null`` where absent), sets as
lists sorted without duplicates, FLOP as decimal strings, times in the one form
:func:`~brakepedal.model.types.format_utc` writes. :func:`parse_document` refuses any other
spelling. JSON keys are the dataclass field names.

A constructor enforces what a document must satisfy alone. What needs the agreement root (the
longest sunset it allows, the last permit serial, the orders in force) lives in
:mod:`brakepedal.governance.rules`, which also turns verified documents into the terms policy
evaluation consumes.

Reasons: ``governance.unknown_field``; ``document.*`` for every other defect of a document;
the value types' own (``flop.*``, ``time.*``, ``order_id.*``...) for a malformed value; the
``json.*`` and ``canonical.not_canonical`` of the strict parser. Every message after the JSON
stage starts with the field's path, such as ``pause_order.sunset``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any, ClassVar, Literal, NoReturn

from brakepedal.crypto.canonical import MAX_SAFE_INTEGER, canonical_json, require_canonical
from brakepedal.errors import InputError, located
from brakepedal.model.limits import DEFAULT_LIMITS, Limits
from brakepedal.model.types import (
    DeviceId,
    EntityId,
    Flop,
    Identifier,
    LineageId,
    OrderId,
    PermitId,
    PolicyId,
    RunId,
    format_utc,
    parse_utc_timestamp,
    utc_datetime,
)
from brakepedal.policy.terms import MAX_GRACE_SECONDS, MAX_ORDER_DAYS

__all__ = [
    "MEDIA_TYPES",
    "SPEC_VERSION",
    "GovernanceDocument",
    "LiftOrder",
    "PauseOrder",
    "PolicyVersion",
    "TrainingPermit",
    "parse_document",
]

#: The one spec version this module reads and writes.
SPEC_VERSION = 1
#: The formats a policy file may have (``brakepedal.policy.load`` reads both).
MEDIA_TYPES = frozenset({"application/toml", "application/yaml"})

_REASON_MAX = 4096
_TITLE_MAX = 256
_CONDITION_MAX = 1024
_CONDITIONS_MAX = 64
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_HEADER = frozenset({"type", "spec_version"})
_NONE = type(None)

# ------------------------------------------------------------------ reading JSON values


def _same(value: object) -> object:
    """Values the constructor checks itself (text, integers)."""
    return value


def _nullable(parse: Callable[[object], object]) -> Callable[[object], object]:
    return lambda value: None if value is None else parse(value)


def _time(value: object) -> datetime:
    moment = parse_utc_timestamp(value)
    if format_utc(moment) != value:
        raise InputError(
            "document.time_not_canonical",
            f"{value!r} is not in the one form YYYY-MM-DDTHH:MM:SS[.ffffff]Z",
        )
    return moment


def _sorted_set(parse: Callable[[object], object]) -> Callable[[object], object]:
    def parse_set(value: object) -> object:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise InputError("document.field_invalid", "expected a list of strings")
        if any(left >= right for left, right in pairwise(value)):
            raise InputError("document.set_not_canonical", "must be sorted, without duplicates")
        return frozenset(parse(item) for item in value)

    return parse_set


def _strings(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def _encode(value: object) -> object:
    if isinstance(value, Flop):
        return value.to_json()
    if isinstance(value, datetime):
        return format_utc(value)
    if isinstance(value, str):
        return str(value)  # an Identifier as a plain str
    if isinstance(value, frozenset):
        return sorted(str(item) for item in value)
    if isinstance(value, tuple):
        return list(value)
    return value


# ------------------------------------------------------------------------ the documents

#: Per field: the types its value may have, and how its JSON value becomes one of them.
_Schema = Mapping[str, tuple[tuple[type, ...], Callable[[object], object]]]


class _Document:
    """What the four document kinds share: type checks, errors, canonical bytes."""

    __slots__ = ()
    type_tag: ClassVar[str]
    kind: ClassVar[str]
    schema: ClassVar[_Schema]

    def to_bytes(self) -> bytes:
        """The canonical bytes: what is hashed, signed and published."""
        body = {name: _encode(getattr(self, name)) for name in self.schema}
        return canonical_json({"type": self.type_tag, "spec_version": SPEC_VERSION, **body})

    def _fail(self, reason: str, name: str, message: str) -> NoReturn:
        raise InputError(reason, f"{self.kind}.{name}: {message}")

    def _check_types(self) -> None:
        for name, (expected, _) in self.schema.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, expected):
                wanted = " or ".join(kind.__name__ for kind in expected)
                self._fail("document.field_invalid", name, f"expected {wanted}, got {value!r}")
            if isinstance(value, datetime):
                try:
                    object.__setattr__(self, name, utc_datetime(value))
                except InputError as e:
                    raise located(e, f"{self.kind}.{name}") from e

    def _check_text(self, name: str, limit: int) -> None:
        text: str = getattr(self, name)
        if not text.strip() or len(text) > limit:
            self._fail("document.text_invalid", name, f"needs 1 to {limit} characters")

    def _check_count(self, name: str, reason: str) -> None:
        value: int | None = getattr(self, name)
        if value is not None and not 1 <= value <= MAX_SAFE_INTEGER:
            self._fail(reason, name, f"{value} is not in [1, 2^53 - 1]")


@dataclass(frozen=True, slots=True)
class PauseOrder(_Document):
    """A pause order: training of lineages above ``threshold_flop`` in ``jurisdictions`` stops.

    In force from ``effective_from`` until the mandatory ``sunset`` (exclusive), which is at
    most ``MAX_ORDER_DAYS`` later here and at most the agreement's limit in
    :func:`check_sunset`. A renewal is a new order; ``renews`` names the order it continues.
    """

    order_id: OrderId
    threshold_flop: Flop
    jurisdictions: frozenset[str]
    effective_from: datetime
    sunset: datetime
    grace_seconds: int
    reason: str
    renews: OrderId | None = None

    type_tag: ClassVar[str] = "brakepedal.pause_order"
    kind: ClassVar[str] = "pause_order"
    schema: ClassVar[_Schema] = {
        "order_id": ((OrderId,), OrderId),
        "threshold_flop": ((Flop,), Flop.from_json),
        "jurisdictions": ((frozenset,), _sorted_set(_same)),
        "effective_from": ((datetime,), _time),
        "sunset": ((datetime,), _time),
        "grace_seconds": ((int,), _same),
        "reason": ((str,), _same),
        "renews": ((OrderId, _NONE), _nullable(OrderId)),
    }

    def __post_init__(self) -> None:
        self._check_types()
        if not self.jurisdictions:
            self._fail("document.jurisdictions_invalid", "jurisdictions", "must not be empty")
        for value in self.jurisdictions:
            try:
                Identifier(value)
            except InputError as e:
                raise located(e, f"{self.kind}.jurisdictions") from e
        if self.sunset <= self.effective_from:
            self._fail("document.sunset_invalid", "sunset", "is not after effective_from")
        if self.sunset - self.effective_from > timedelta(days=MAX_ORDER_DAYS):
            self._fail("document.sunset_invalid", "sunset", f"over {MAX_ORDER_DAYS} days on")
        if not 0 <= self.grace_seconds <= MAX_GRACE_SECONDS:
            self._fail(
                "document.grace_invalid", "grace_seconds", f"not in [0, {MAX_GRACE_SECONDS}]"
            )
        self._check_text("reason", _REASON_MAX)
        if self.renews == self.order_id:
            self._fail("document.renews_invalid", "renews", "an order cannot renew itself")

    @property
    def target_path(self) -> str:
        """The TUF target path: ``orders/<order_id>.json``."""
        return f"orders/{self.order_id}.json"


@dataclass(frozen=True, slots=True)
class LiftOrder(_Document):
    """Ends pause order ``lifts`` at ``effective_from``, before its sunset."""

    lift_id: OrderId
    lifts: OrderId
    effective_from: datetime
    reason: str

    type_tag: ClassVar[str] = "brakepedal.lift_order"
    kind: ClassVar[str] = "lift_order"
    schema: ClassVar[_Schema] = {
        "lift_id": ((OrderId,), OrderId),
        "lifts": ((OrderId,), OrderId),
        "effective_from": ((datetime,), _time),
        "reason": ((str,), _same),
    }

    def __post_init__(self) -> None:
        self._check_types()
        if self.lifts == self.lift_id:
            self._fail("document.lift_invalid", "lifts", "a lift order cannot lift itself")
        self._check_text("reason", _REASON_MAX)

    @property
    def target_path(self) -> str:
        """The TUF target path: ``lifts/<lift_id>.json``."""
        return f"lifts/{self.lift_id}.json"


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingPermit(_Document):
    """``owner_group`` may train ``lineage`` (or ``run``) within ``flop_budget``.

    ``serial`` increases with every permit (:func:`check_permit_serial`). ``devices`` and
    ``device_count``, when given, bound which and how many devices train. ``under_order`` names
    the pause order whose quorum signed the permit (None: an ordinary permit, signed by the
    permit authority), see :func:`needs_order_quorum`.
    """

    permit_id: PermitId
    serial: int
    owner_group: EntityId
    flop_budget: Flop
    valid_from: datetime
    valid_until: datetime
    lineage: LineageId | None = None
    run: RunId | None = None
    device_count: int | None = None
    devices: frozenset[DeviceId] | None = None
    conditions: tuple[str, ...] = ()
    under_order: OrderId | None = None

    type_tag: ClassVar[str] = "brakepedal.training_permit"
    kind: ClassVar[str] = "training_permit"
    schema: ClassVar[_Schema] = {
        "permit_id": ((PermitId,), PermitId),
        "serial": ((int,), _same),
        "owner_group": ((EntityId,), EntityId),
        "flop_budget": ((Flop,), Flop.from_json),
        "valid_from": ((datetime,), _time),
        "valid_until": ((datetime,), _time),
        "lineage": ((LineageId, _NONE), _nullable(LineageId)),
        "run": ((RunId, _NONE), _nullable(RunId)),
        "device_count": ((int, _NONE), _same),
        "devices": ((frozenset, _NONE), _nullable(_sorted_set(DeviceId))),
        "conditions": ((tuple,), _strings),
        "under_order": ((OrderId, _NONE), _nullable(OrderId)),
    }

    def __post_init__(self) -> None:
        self._check_types()
        self._check_count("serial", "document.serial_invalid")
        if not self.flop_budget.value:
            self._fail("document.budget_invalid", "flop_budget", "a permit needs a budget above 0")
        if self.valid_until <= self.valid_from:
            self._fail("document.validity_invalid", "valid_until", "is not after valid_from")
        if self.lineage is None and self.run is None:
            self._fail("document.scope_missing", "lineage", "a permit names a lineage or a run")
        self._check_devices()
        self._check_conditions()

    def _check_devices(self) -> None:
        self._check_count("device_count", "document.devices_invalid")
        if self.devices is None:
            return
        if not self.devices or not all(isinstance(item, DeviceId) for item in self.devices):
            self._fail("document.devices_invalid", "devices", "needs one or more DeviceId")
        if self.device_count is not None and len(self.devices) > self.device_count:
            self._fail("document.devices_invalid", "devices", "more devices than device_count")

    def _check_conditions(self) -> None:
        items = self.conditions
        if len(items) > _CONDITIONS_MAX or len(set(items)) != len(items):
            self._fail(
                "document.conditions_invalid", "conditions", f"up to {_CONDITIONS_MAX}, distinct"
            )
        for item in items:
            if not isinstance(item, str) or not item.strip() or len(item) > _CONDITION_MAX:
                self._fail("document.text_invalid", "conditions", f"1 to {_CONDITION_MAX} chars")

    @property
    def target_path(self) -> str:
        """The TUF target path: ``permits/<serial, 8 digits>-<permit_id>.json``, or under
        ``quorum-permits/`` for a permit issued under a pause order, which only the order
        quorum may sign (the ``orders`` role)."""
        folder = "permits" if self.under_order is None else "quorum-permits"
        return f"{folder}/{self.serial:08d}-{self.permit_id}.json"


@dataclass(frozen=True, slots=True)
class PolicyVersion(_Document):
    """Version ``version`` of policy ``policy_id``: the policy file is the target whose
    SHA-256 is ``content_sha256`` (a separate target; this record names it by hash)."""

    policy_id: PolicyId
    version: int
    media_type: Literal["application/toml", "application/yaml"]
    content_sha256: str
    title: str

    type_tag: ClassVar[str] = "brakepedal.policy_version"
    kind: ClassVar[str] = "policy_version"
    schema: ClassVar[_Schema] = {
        "policy_id": ((PolicyId,), PolicyId),
        "version": ((int,), _same),
        "media_type": ((str,), _same),
        "content_sha256": ((str,), _same),
        "title": ((str,), _same),
    }

    def __post_init__(self) -> None:
        self._check_types()
        self._check_count("version", "document.version_invalid")
        if self.media_type not in MEDIA_TYPES:
            self._fail("document.media_type_invalid", "media_type", f"not in {sorted(MEDIA_TYPES)}")
        if _SHA256_HEX.fullmatch(self.content_sha256) is None:
            self._fail("document.digest_invalid", "content_sha256", "needs 64 lowercase hex digits")
        self._check_text("title", _TITLE_MAX)

    @property
    def target_path(self) -> str:
        """The TUF target path: ``policies/<policy_id>/<version>.json``."""
        return f"policies/{self.policy_id}/{self.version}.json"


GovernanceDocument = PauseOrder | LiftOrder | TrainingPermit | PolicyVersion

_KINDS: dict[str, type[GovernanceDocument]] = {
    kind.type_tag: kind for kind in (PauseOrder, LiftOrder, TrainingPermit, PolicyVersion)
}

# ------------------------------------------------------------------------------ parsing


def parse_document(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> GovernanceDocument:
    """Parse a governance document, strictly: its bytes must be its one canonical form.

    Steps: 1. strict canonical JSON; 2. the type tag; 3. the spec version (before the fields,
    so a future version with new fields reads as unsupported); 4. unknown fields; 5. each field;
    6. the constructor's invariants.

    Raises:
        InputError: see the module docstring for the reasons.
    """
    if not isinstance(data, bytes):
        raise InputError("document.not_bytes", f"document: expected bytes, got {type(data)}")
    document = require_canonical(data, limits=limits, what="governance document")
    tag = document.get("type")
    if not isinstance(tag, str) or tag not in _KINDS:
        reason = "document.field_missing" if tag is None else "document.type_unknown"
        raise InputError(reason, f"document.type: {str(tag)[:64]!r} is not a document type")
    cls = _KINDS[tag]
    version = document.get("spec_version")
    if isinstance(version, bool) or version != SPEC_VERSION:
        raise InputError(
            "document.version_unsupported",
            f"{cls.kind}.spec_version: {str(version)[:64]!r}, only {SPEC_VERSION} is understood",
        )
    unknown = sorted(set(document) - set(cls.schema) - _HEADER)
    if unknown:
        raise InputError("governance.unknown_field", f"{cls.kind}.{unknown[0]}: unknown field")
    values = {
        name: _field(document, cls.kind, name, parse) for name, (_, parse) in cls.schema.items()
    }
    parsed = cls(**values)
    # Every field above accepts only its canonical spelling; this backstop keeps "one document,
    # one byte form" true should a later field forget to.
    if parsed.to_bytes() != data:  # pragma: no cover
        raise InputError("document.not_canonical", f"{cls.kind}: not the canonical form")
    return parsed


def _field(
    document: Mapping[str, Any], kind: str, name: str, parse: Callable[[object], object]
) -> Any:
    if name not in document:
        raise InputError("document.field_missing", f"{kind}.{name}: missing")
    try:
        return parse(document[name])
    except InputError as e:
        raise located(e, f"{kind}.{name}") from e
