"""Devices shipped but never enrolled: the one trace smuggled hardware leaves.

A device that never runs the agent never reports, so nothing in the log shows it. What can
show it is the manufacturers' record of shipments (how many accelerators went to each
entity): an entity with fewer devices enrolled under its name than were shipped to it is
running hardware the registry cannot see, or passed it on (to a subsidiary that enrolled it
under its own name, which the shipment record would then have to say). The shipment counts
are an input the auditor trusts (``AuditConfig.shipments``), as it would trust a
manufacturer's signed export record; the finding cites the enrolments it counted.
"""

from __future__ import annotations

from collections.abc import Mapping

from brakepedal.audit.detectors import Draft
from brakepedal.audit.findings import Severity
from brakepedal.audit.state import DeviceRow

__all__ = ["shipment_findings"]


def shipment_findings(
    shipments: Mapping[str, int], devices: Mapping[str, DeviceRow]
) -> list[Draft]:
    """A draft per entity with fewer enrolled devices than the manufacturers shipped it."""
    enrolled: dict[str, list[DeviceRow]] = {}
    for row in devices.values():
        enrolled.setdefault(row.operator, []).append(row)
    drafts = []
    for entity, shipped in sorted(shipments.items()):
        rows = sorted(enrolled.get(entity, []), key=lambda r: r.log_index)
        missing = shipped - len(rows)
        if missing <= 0:
            continue
        drafts.append(
            Draft(
                "devices.unenrolled",
                "every accelerator shipped to a party is enrolled (manufacturer shipment records)",
                Severity.HIGH,
                f"entity:{entity}",
                f"{missing} of the {shipped} accelerators shipped to {entity} are not enrolled",
                {"entity": entity},
                {"shipped": shipped, "enrolled": len(rows), "missing": missing},
                tuple((row.log_index, "an enrolment counted") for row in rows[:3]),
            )
        )
    return drafts
