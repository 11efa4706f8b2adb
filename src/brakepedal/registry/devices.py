"""Device enrolment: a device key, its endorsement chain, and the operator's claims.

An enrolment request is a DSSE envelope (payload type :data:`ENROLMENT_PAYLOAD_TYPE`) signed
by the **device key it enrols** (proof of possession), over the canonical JSON::

    {"format": "brakepedal.enrolment", "version": 1, "device": DeviceId,
     "public_key": {keytype, scheme, keyval}, "accelerator": catalogue id,
     "operator": EntityId, "site": SiteId | null, "chain": [PEM, ...], "at": UTC time}

The chain (leaf first) must lead to one of the registry's trusted manufacturer roots
(:func:`brakepedal.registry.enrolment.verify_endorsement`), its leaf must certify this very
key, and the accelerator it names must be the one claimed. An empty chain enrols a
**software** key, the weakest trust level, and only where the registry allows it. The accepted
request is appended to the transparency log and the device row written in one transaction,
so every enrolment is public, and a device can only be enrolled once (``enrolment.exists``;
the same request again is idempotent and returns the first log index).

Reasons: ``enrolment.*`` (``request_invalid``, ``payload_type_unexpected``, ``not_self_signed``,
``accelerator_mismatch``, ``software_not_allowed``, ``exists``, ``key_in_use``), the chain's
own (see :mod:`brakepedal.registry.enrolment`) and the parsers' (``envelope.*``, ``json.*``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select

from brakepedal.accounting.catalogue import Catalogue
from brakepedal.crypto.canonical import canonical_json, parse_json_object
from brakepedal.crypto.dsse import (
    brakepedal_payload_type,
    check_threshold,
    parse_envelope,
    require_threshold,
    sign_envelope,
)
from brakepedal.crypto.keys import (
    Key,
    Signer,
    key_fingerprint,
    public_key_from_json,
    public_key_to_json,
)
from brakepedal.errors import InputError, TrustError
from brakepedal.model.types import DeviceId, EntityId, SiteId, format_utc, parse_utc_timestamp
from brakepedal.registry.enrolment import (
    MAX_CERTIFICATE_BYTES,
    MAX_CHAIN_CERTIFICATES,
    verify_endorsement,
)
from brakepedal.registry.ingest import micros
from brakepedal.registry.schema import devices
from brakepedal.tlog.sqlstore import SqlLogStore

__all__ = [
    "ENROLMENT_FORMAT",
    "ENROLMENT_PAYLOAD_TYPE",
    "Enrolled",
    "EnrolmentRequest",
    "build_enrolment",
    "enrol",
    "parse_enrolment",
]

ENROLMENT_FORMAT = "brakepedal.enrolment"
ENROLMENT_PAYLOAD_TYPE = brakepedal_payload_type("enrolment", 1)
_FIELDS = frozenset(
    {"format", "version", "device", "public_key", "accelerator", "operator", "site", "chain", "at"}
)
_MAX_PEM = 2 * MAX_CERTIFICATE_BYTES  # PEM is base64 of the DER, with its armour


@dataclass(frozen=True, slots=True)
class EnrolmentRequest:
    """What a device asks to be enrolled as; verified by :func:`parse_enrolment`."""

    device: DeviceId
    key: Key
    accelerator: str
    operator: EntityId
    site: SiteId | None
    chain: tuple[bytes, ...]
    at: datetime


@dataclass(frozen=True, slots=True)
class _Identity:
    manufacturer: str
    serial: str
    accelerator: str
    trust_level: str


@dataclass(frozen=True, slots=True)
class Enrolled:
    """An enrolment as stored: the device, its trust level and its log index."""

    device: str
    trust_level: str
    manufacturer: str
    serial: str
    log_index: int
    created: bool


def build_enrolment(
    signer: Signer,
    *,
    device: DeviceId,
    accelerator: str,
    operator: EntityId,
    site: SiteId | None,
    chain: Sequence[bytes],
    at: datetime,
) -> bytes:
    """The enrolment envelope, signed by the device key ``signer`` holds."""
    payload = {
        "format": ENROLMENT_FORMAT,
        "version": 1,
        "device": str(device),
        "public_key": parse_json_object(public_key_to_json(signer.public_key), what="key"),
        "accelerator": accelerator,
        "operator": str(operator),
        "site": None if site is None else str(site),
        "chain": [pem.decode("ascii") for pem in chain],
        "at": format_utc(at),
    }
    return sign_envelope(canonical_json(payload), ENROLMENT_PAYLOAD_TYPE, [signer])


def _field(document: dict[str, Any], name: str, kind: type) -> Any:
    value = document[name]
    if not isinstance(value, kind):
        raise InputError("enrolment.request_invalid", f"enrolment.{name}: not a {kind.__name__}")
    return value


def parse_enrolment(data: bytes) -> EnrolmentRequest:
    """Parse an enrolment envelope and check it is signed by the key it enrols."""
    envelope = parse_envelope(data)
    if envelope.payload_type != ENROLMENT_PAYLOAD_TYPE:
        raise InputError(
            "enrolment.payload_type_unexpected",
            f"payloadType {envelope.payload_type!r:.80} is not an enrolment",
        )
    document = parse_json_object(envelope.payload, what="enrolment")
    if set(document) != _FIELDS:
        raise InputError(
            "enrolment.request_invalid",
            f"enrolment: fields {sorted(set(document) ^ _FIELDS)} missing or unknown",
        )
    if document["format"] != ENROLMENT_FORMAT or document["version"] != 1:
        raise InputError("enrolment.request_invalid", "enrolment: format or version unknown")
    key = public_key_from_json(canonical_json(_field(document, "public_key", dict)))
    chain = _field(document, "chain", list)
    if len(chain) > MAX_CHAIN_CERTIFICATES or not all(
        isinstance(pem, str) and len(pem) <= _MAX_PEM for pem in chain
    ):
        raise InputError(
            "enrolment.request_invalid",
            f"enrolment.chain: at most {MAX_CHAIN_CERTIFICATES} PEM strings of "
            f"<= {_MAX_PEM} characters",
        )
    site = document["site"]
    request = EnrolmentRequest(
        device=DeviceId(_field(document, "device", str)),
        key=key,
        accelerator=_field(document, "accelerator", str),
        operator=EntityId(_field(document, "operator", str)),
        site=None if site is None else SiteId(site),
        chain=tuple(pem.encode("ascii", "replace") for pem in chain),
        at=parse_utc_timestamp(document["at"]),
    )
    try:
        require_threshold(check_threshold(envelope, keys=[key], threshold=1))
    except TrustError as e:
        raise TrustError(
            "enrolment.not_self_signed",
            "the enrolment is not signed by the key it enrols (proof of possession)",
        ) from e
    return request


def _endorse(
    request: EnrolmentRequest, roots: Sequence[bytes], *, allow_software: bool, at: datetime
) -> _Identity:
    if not request.chain:
        if not allow_software:
            raise TrustError(
                "enrolment.software_not_allowed",
                f"{request.device}: no endorsement chain, and this registry enrols no "
                "software keys",
            )
        return _Identity("-", key_fingerprint(request.key)[:32], request.accelerator, "software")
    endorsement = verify_endorsement(request.chain, request.key, roots, at=at)
    if endorsement.accelerator != request.accelerator:
        raise TrustError(
            "enrolment.accelerator_mismatch",
            f"{request.device}: the chain certifies a {endorsement.accelerator}, "
            f"the request claims a {request.accelerator}",
        )
    return _Identity(
        endorsement.manufacturer,
        endorsement.serial,
        endorsement.accelerator,
        endorsement.trust_level,
    )


def enrol(
    store: SqlLogStore,
    data: bytes,
    *,
    roots: Sequence[bytes],
    allow_software: bool,
    at: datetime,
    catalogue: Catalogue,
) -> Enrolled:
    """Verify an enrolment envelope; log it and store the device in one transaction."""
    request = parse_enrolment(data)
    if request.accelerator not in catalogue:
        raise InputError(
            "enrolment.accelerator_unknown",
            f"enrolment.accelerator: {request.accelerator!r:.80} is not in the catalogue",
        )
    accelerator = catalogue.get(request.accelerator)
    if accelerator.id != request.accelerator:
        raise InputError(
            "enrolment.accelerator_unknown",
            f"enrolment.accelerator: say {accelerator.id!r}, the catalogue id",
        )
    endorsement = _endorse(request, roots, allow_software=allow_software, at=at)
    fingerprint = key_fingerprint(request.key)
    with store.write_transaction("enrol a device") as conn:
        row = conn.execute(
            select(devices.c.key_fingerprint, devices.c.trust_level, devices.c.log_index).where(
                devices.c.device == str(request.device)
            )
        ).one_or_none()
        if row is not None:
            if row[0] == fingerprint:
                return Enrolled(
                    str(request.device),
                    str(row[1]),
                    endorsement.manufacturer,
                    endorsement.serial,
                    int(row[2]),
                    created=False,
                )
            raise TrustError(
                "enrolment.exists", f"{request.device} is already enrolled with another key"
            )
        taken = conn.execute(
            select(devices.c.device).where(devices.c.key_fingerprint == fingerprint)
        ).scalar_one_or_none()
        if taken is not None:
            raise TrustError("enrolment.key_in_use", f"this key is enrolled as {taken}")
        log_index = store.append_locked(conn, [data])
        conn.execute(
            insert(devices).values(
                device=str(request.device),
                key_fingerprint=fingerprint,
                public_key=public_key_to_json(request.key).decode(),
                accelerator=request.accelerator,
                operator=str(request.operator),
                site=None if request.site is None else str(request.site),
                manufacturer=endorsement.manufacturer,
                serial=endorsement.serial,
                trust_level=endorsement.trust_level,
                enrolled_us=micros(at),
                log_index=log_index,
            )
        )
    return Enrolled(
        str(request.device),
        endorsement.trust_level,
        endorsement.manufacturer,
        endorsement.serial,
        log_index,
        created=True,
    )
