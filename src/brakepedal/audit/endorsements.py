"""Endorsement chains verified again: the auditor's own check of every logged enrolment.

The registry verifies a device's endorsement chain at enrolment, against the manufacturer roots
it is configured with, and logs the enrolment with its chain. An auditor takes none of that on
trust: given roots of its own (``AuditConfig.manufacturer_roots``), it verifies every logged
chain again with the registry's code (:func:`brakepedal.wire.endorsement.verify_endorsement`),
at the time the enrolment states, and finds:

* ``device.endorsement_invalid`` (high), one per device: a logged chain that does not verify
  under the auditor's roots (a CA it does not trust, a forged or expired certificate, a leaf
  that certifies another key), or that certifies another accelerator than the enrolment claims.
  The registry took the key as bound to hardware; the auditor cannot bind it.
* ``device.unendorsed`` (medium), one per operator: devices enrolled with a software key alone,
  which the design allows as the weakest trust level. Nothing binds their reports to hardware,
  so one machine could report as many.
* ``audit.endorsement_check_failed`` (low), once: the verifier failed in a way it does not name
  (a fault of the auditor's code or libraries, not evidence against a device); those chains
  count as unchecked, and the run goes on.

Without roots the chains are not checked, and the report says so. A device read by an auditor
before state version 3 has no chain kept (:class:`~brakepedal.audit.state.DeviceRow`): it is
counted as unchecked, unless it enrolled without a chain (a software key needs none). Roots
that are not one PEM certificate each are the auditor's configuration error, raised before any
device is judged. The chain is verified at the enrolment's stated time (see ``docs/audit.md``
for what that leaves open).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from brakepedal.audit.detectors import Draft
from brakepedal.audit.findings import Severity
from brakepedal.audit.state import DeviceRow
from brakepedal.crypto.keys import public_key_from_json
from brakepedal.errors import BrakepedalError
from brakepedal.model.types import from_epoch_micros
from brakepedal.wire.endorsement import check_roots, verify_endorsement

__all__ = ["EndorsementCheck", "endorsement_findings"]

_INVALID_RULE = (
    "every device key the log holds as endorsed is bound to its accelerator by a chain to a "
    "manufacturer root the auditor trusts"
)
_UNENDORSED_RULE = (
    "a device key is bound to hardware identity (a manufacturer chain); a software key is the "
    "weakest trust level"
)
#: Enrolments each finding cites (the figures count them all).
_CITED = 3


@dataclass(frozen=True, slots=True)
class EndorsementCheck:
    """What checking the logged chains found, beside the drafts: the report's figures."""

    drafts: list[Draft]
    endorsed: int
    software: int
    invalid: int
    #: Devices whose chain an earlier state version did not keep, or the verifier failed on.
    unchecked: int


def endorsement_findings(
    devices: Mapping[str, DeviceRow], roots: Sequence[bytes]
) -> EndorsementCheck:
    """Verify every device's logged chain under ``roots``: the drafts and the counts.

    Raises:
        InputError: a root that is not one PEM certificate (:func:`check_roots`): the
            auditor's configuration, not any device, is at fault.
    """
    check_roots(roots)
    drafts: list[Draft] = []
    software: dict[str, list[DeviceRow]] = {}
    failed: list[tuple[DeviceRow, str]] = []
    endorsed = unchecked = invalid = 0
    for row in sorted(devices.values(), key=lambda r: r.log_index):
        if row.chain is None and row.trust != "software":
            unchecked += 1  # read before chains were kept (a software key needs none)
            continue
        chain = [pem.encode("ascii", "replace") for pem in json.loads(row.chain or "[]")]
        if not chain:
            software.setdefault(row.operator, []).append(row)
            continue
        try:
            problem = _problem(row, chain, roots)
        except Exception as e:  # one logged chain must not stop every later run
            # The verifier names every defect it knows as a BrakepedalError; anything else is
            # a fault of the auditor's own code or libraries (a parser change in a release),
            # not evidence against the device: unchecked, and said so once.
            failed.append((row, type(e).__name__))
            continue
        if problem is None:
            endorsed += 1
            continue
        invalid += 1
        reason, detail = problem
        drafts.append(
            Draft(
                "device.endorsement_invalid",
                _INVALID_RULE,
                Severity.HIGH,
                f"device:{row.device}",
                f"{row.device} ({row.operator}) was enrolled with a chain the auditor cannot "
                f"verify: {detail}",
                {"device": row.device},
                {"reason": reason, "accelerator": row.accelerator, "operator": row.operator},
                ((row.log_index, "the enrolment and its chain"),),
            )
        )
    for operator, rows in sorted(software.items()):
        drafts.append(
            Draft(
                "device.unendorsed",
                _UNENDORSED_RULE,
                Severity.MEDIUM,
                f"entity:{operator}",
                f"{len(rows)} device(s) of {operator} are enrolled with a software key alone",
                {"entity": operator},
                {"devices": len(rows), "first": [r.device for r in rows[:_CITED]]},
                tuple((r.log_index, "an enrolment without a chain") for r in rows[:_CITED]),
            )
        )
    if failed:
        drafts.append(
            Draft(
                "audit.endorsement_check_failed",
                "the auditor verifies every logged endorsement chain",
                Severity.LOW,
                "auditor",
                f"the auditor's chain verifier failed on {len(failed)} enrolment(s) "
                f"({', '.join(sorted({error for _, error in failed}))}): their endorsements "
                "are unchecked",
                {"check": "endorsements"},
                {"enrolments": len(failed), "first": [r.device for r, _ in failed[:_CITED]]},
                tuple((r.log_index, "an enrolment not checked") for r, _ in failed[:_CITED]),
            )
        )
    return EndorsementCheck(
        drafts,
        endorsed=endorsed,
        software=sum(len(rows) for rows in software.values()),
        invalid=invalid,
        unchecked=unchecked + len(failed),
    )


def _problem(row: DeviceRow, chain: list[bytes], roots: Sequence[bytes]) -> tuple[str, str] | None:
    """Why ``row``'s chain does not bind its key to its accelerator (None: it does)."""
    try:
        endorsement = verify_endorsement(
            chain,
            public_key_from_json(row.public_key.encode()),
            roots,
            at=from_epoch_micros(row.at_us),
        )
    except BrakepedalError as e:
        return e.reason, e.message
    if endorsement.accelerator != row.accelerator:
        return (
            "enrolment.accelerator_mismatch",
            f"the chain certifies a {endorsement.accelerator}, the enrolment claims a "
            f"{row.accelerator}",
        )
    return None
