"""The enrolment request: a device key, its endorsement chain, and the operator's claims.

A wire format the agent writes, the registry verifies and logs, and the auditor reads back
from the log. An enrolment request is a DSSE envelope (payload type
:data:`ENROLMENT_PAYLOAD_TYPE`) signed by the **device key it enrols** (proof of possession),
over the canonical JSON::

    {"format": "brakepedal.enrolment", "version": 1, "device": DeviceId,
     "public_key": {keytype, scheme, keyval}, "accelerator": catalogue id,
     "operator": EntityId, "site": SiteId | null, "chain": [PEM, ...], "at": UTC time}

:func:`parse_enrolment` checks the form and the proof of possession; what the chain is worth
(which manufacturer roots it leads to) is the registry's judgement
(:mod:`brakepedal.wire.endorsement`). Reasons: ``enrolment.request_invalid``,
``enrolment.payload_type_unexpected``, ``enrolment.not_self_signed`` and the parsers'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from brakepedal.crypto.canonical import canonical_json, parse_json_object
from brakepedal.crypto.dsse import (
    brakepedal_payload_type,
    check_threshold,
    parse_envelope,
    require_threshold,
    sign_envelope,
)
from brakepedal.crypto.keys import Key, Signer, public_key_from_json, public_key_to_json
from brakepedal.errors import InputError, TrustError
from brakepedal.model.types import DeviceId, EntityId, SiteId, format_utc, parse_utc_timestamp

__all__ = [
    "ENROLMENT_FORMAT",
    "ENROLMENT_PAYLOAD_TYPE",
    "MAX_CERTIFICATE_BYTES",
    "MAX_CHAIN_CERTIFICATES",
    "EnrolmentRequest",
    "build_enrolment",
    "parse_enrolment",
]

#: Certificates in one chain, a copy of the root included (NVIDIA's H100 chain has 5).
MAX_CHAIN_CERTIFICATES = 5
#: One PEM certificate, in bytes (NVIDIA's are under 1.3 KB).
MAX_CERTIFICATE_BYTES = 16_384
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
