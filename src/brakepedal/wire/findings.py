"""The wire format of an auditor's signed finding set, as far as the registry needs it.

An auditor publishes its findings (``brakepedal.audit.findings``) as a DSSE envelope of
payload type :data:`FINDINGS_PAYLOAD_TYPE` over canonical JSON with ``format`` =
:data:`FINDINGS_FORMAT` and ``spec_version`` 1. The registry appends such an envelope to its
log without judging it (it does not know which auditors to trust: readers do): it checks only
that the bytes are that envelope, canonical, with a finding-set payload. Readers verify the
auditor's signature with the key they trust (``brakepedal.audit.findings.open_findings``).
"""

from __future__ import annotations

from brakepedal.crypto.canonical import require_canonical
from brakepedal.crypto.dsse import brakepedal_payload_type, parse_envelope
from brakepedal.errors import InputError
from brakepedal.model.limits import DEFAULT_LIMITS, Limits

__all__ = ["FINDINGS_FORMAT", "FINDINGS_PAYLOAD_TYPE", "check_findings_envelope"]

FINDINGS_FORMAT = "brakepedal.audit-findings"
FINDINGS_PAYLOAD_TYPE = brakepedal_payload_type("audit-findings", 1)


def check_findings_envelope(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> dict[str, object]:
    """The finding set's document, if ``data`` is the canonical envelope of one.

    Raises:
        InputError: ``findings.payload_type_unexpected``, ``findings.format_unknown``, or the
            parsers' reasons (``envelope.*``, ``json.*``, ``canonical.not_canonical``: the log
            keeps one byte form of each finding set).
    """
    envelope = parse_envelope(data, limits=limits)
    require_canonical(data, limits=limits, what="envelope")
    if envelope.payload_type != FINDINGS_PAYLOAD_TYPE:
        raise InputError(
            "findings.payload_type_unexpected",
            f"payloadType {envelope.payload_type!r:.80} is not a finding set",
        )
    document = require_canonical(envelope.payload, limits=limits, what="findings")
    if document.get("format") != FINDINGS_FORMAT or document.get("spec_version") != 1:
        raise InputError("findings.format_unknown", "not a brakepedal finding set, version 1")
    return document
