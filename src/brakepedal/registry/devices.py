"""Device enrolment: a device key, its endorsement chain, and the operator's claims.

An enrolment request is a DSSE envelope (payload type :data:`ENROLMENT_PAYLOAD_TYPE`) signed
by the **device key it enrols** (proof of possession), over the canonical JSON::

    {"format": "brakepedal.enrolment", "version": 1, "device": DeviceId,
     "public_key": {keytype, scheme, keyval}, "accelerator": catalogue id,
     "operator": EntityId, "site": SiteId | null, "chain": [PEM, ...], "at": UTC time}

The chain (leaf first) must lead to one of the registry's trusted manufacturer roots
(:func:`brakepedal.wire.endorsement.verify_endorsement`), its leaf must certify this very
key, and the accelerator it names must be the one claimed. An empty chain enrols a
**software** key, the weakest trust level, and only where the registry allows it. The accepted
request is appended to the transparency log and the device row written in one transaction,
so every enrolment is public, and a device can only be enrolled once (``enrolment.exists``;
the same request again is idempotent and returns the first log index).

Reasons: ``enrolment.*`` (``request_invalid``, ``payload_type_unexpected``, ``not_self_signed``,
``accelerator_mismatch``, ``software_not_allowed``, ``exists``, ``key_in_use``), the chain's
own (see :mod:`brakepedal.wire.endorsement`) and the parsers' (``envelope.*``, ``json.*``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select

from brakepedal.accounting.catalogue import Catalogue
from brakepedal.crypto.keys import (
    key_fingerprint,
    public_key_to_json,
)
from brakepedal.errors import InputError, TrustError
from brakepedal.model.types import epoch_micros
from brakepedal.registry.schema import devices
from brakepedal.tlog.sqlstore import SqlLogStore
from brakepedal.wire.endorsement import verify_endorsement
from brakepedal.wire.enrolment import (
    ENROLMENT_FORMAT,
    ENROLMENT_PAYLOAD_TYPE,
    EnrolmentRequest,
    build_enrolment,
    parse_enrolment,
)

__all__ = [
    "ENROLMENT_FORMAT",
    "ENROLMENT_PAYLOAD_TYPE",
    "Enrolled",
    "EnrolmentRequest",
    "build_enrolment",
    "enrol",
    "parse_enrolment",
]


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
                enrolled_us=epoch_micros(at),
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
