"""Findings: a detector's conclusion, the rule it cites, and the evidence that proves it.

A :class:`Finding` names what was found (``detector``, ``rule``), how grave it is
(:class:`Severity`), whom it concerns (``subject``: a device, an operator, a group, the log),
one line a person reads (``summary``), and the evidence a sceptic re-checks without trusting the
auditor: the log entries involved with their inclusion proofs against a checkpoint the log
signed (:class:`EntryEvidence`), and the numbers the conclusion rests on (``figures``).

Its ``id`` is stable: the SHA-256 of the detector, the subject and the ``key`` facts that make
it this finding (e.g. the device and the sequence number of a fork), so running the auditor
again, or another auditor on the same evidence, names the same finding the same way, and a
finding that persists across runs is one finding, not many.

A run's findings are published as a :class:`FindingSet`: canonical JSON, signed by the
auditor's key in a DSSE envelope (:data:`FINDINGS_PAYLOAD_TYPE`), which anyone can verify and
which the registry can append to its log like any other document.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from brakepedal.crypto.canonical import MAX_SAFE_INTEGER, canonical_json, require_canonical
from brakepedal.crypto.dsse import open_envelope, sign_envelope
from brakepedal.crypto.keys import Key, Signer
from brakepedal.errors import InputError
from brakepedal.model.types import format_utc
from brakepedal.wire.findings import FINDINGS_FORMAT, FINDINGS_PAYLOAD_TYPE

__all__ = [
    "FINDINGS_FORMAT",
    "FINDINGS_PAYLOAD_TYPE",
    "EntryEvidence",
    "Finding",
    "FindingSet",
    "Severity",
    "finding_id",
    "open_findings",
    "severities",
]


class Severity(StrEnum):
    """How grave a finding is; ``high`` and ``critical`` are breaches or a lying registry."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {severity: rank for rank, severity in enumerate(Severity)}


@dataclass(frozen=True, slots=True)
class EntryEvidence:
    """One log entry a finding rests on: where it is and the proof that it is there."""

    log_index: int
    leaf_hash: bytes
    tree_size: int
    root_hash: bytes
    proof: tuple[bytes, ...]
    #: What the entry is to the finding ("report device/sequence", "enrolment device").
    role: str

    def to_json(self) -> dict[str, Any]:
        return {
            "log_index": self.log_index,
            "leaf_hash": _b64(self.leaf_hash),
            "tree_size": self.tree_size,
            "root_hash": _b64(self.root_hash),
            "inclusion_proof": [_b64(node) for node in self.proof],
            "role": self.role,
        }


def finding_id(detector: str, subject: str, key: Mapping[str, object]) -> str:
    """The stable id of a finding: ``detector/<first 16 hex of SHA-256>``."""
    digest = hashlib.sha256(
        canonical_json(_exact({"detector": detector, "subject": subject, "key": dict(key)}))
    ).hexdigest()
    return f"{detector}/{digest[:16]}"


@dataclass(frozen=True, slots=True)
class Finding:
    """One conclusion with its evidence; see the module docstring."""

    detector: str
    rule: str
    severity: Severity
    subject: str
    summary: str
    key: Mapping[str, object]
    figures: Mapping[str, object] = field(default_factory=dict)
    entries: tuple[EntryEvidence, ...] = ()

    @property
    def id(self) -> str:
        return finding_id(self.detector, self.subject, self.key)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "detector": self.detector,
            "rule": self.rule,
            "severity": self.severity.value,
            "subject": _exact(self.subject),
            "summary": _exact(self.summary),
            "key": _exact(dict(self.key)),
            "figures": _exact(dict(self.figures)),
            "evidence": [entry.to_json() for entry in self.entries],
        }


@dataclass(frozen=True, slots=True)
class FindingSet:
    """Every finding of one audit run, as of a checkpoint, by one auditor."""

    auditor: str
    at: datetime
    origin: str
    tree_size: int
    root_hash: bytes
    findings: tuple[Finding, ...]

    def to_bytes(self) -> bytes:
        """The canonical JSON the auditor signs."""
        ordered = sorted(self.findings, key=lambda f: (-f.severity.rank, f.id))
        return canonical_json(
            {
                "format": FINDINGS_FORMAT,
                "spec_version": 1,
                "auditor": self.auditor,
                "at": format_utc(self.at),
                "log": {
                    "origin": self.origin,
                    "tree_size": self.tree_size,
                    "root_hash": _b64(self.root_hash),
                },
                "findings": [finding.to_json() for finding in ordered],
            }
        )

    def sign(self, signer: Signer) -> bytes:
        """The DSSE envelope of :meth:`to_bytes`, signed by the auditor's key."""
        return sign_envelope(self.to_bytes(), FINDINGS_PAYLOAD_TYPE, [signer])


def open_findings(envelope: bytes, auditor_key: Key) -> dict[str, Any]:
    """Verify a signed finding set with the auditor's key and return its JSON document.

    Raises:
        TrustError: not signed by ``auditor_key``.
        InputError: not a finding set (``audit.findings_invalid``), or the parsers' reasons.
    """
    verified = open_envelope(
        envelope, keys=[auditor_key], threshold=1, expected_payload_type=FINDINGS_PAYLOAD_TYPE
    )
    document = require_canonical(verified.payload, what="findings")
    if document.get("format") != FINDINGS_FORMAT or document.get("spec_version") != 1:
        raise InputError("audit.findings_invalid", "not a brakepedal finding set, version 1")
    return document


def severities(findings: Sequence[Finding]) -> dict[str, int]:
    """How many findings of each severity, gravest first (zero counts included)."""
    return {
        severity.value: sum(f.severity is severity for f in findings)
        for severity in reversed(Severity)
    }


def _exact(value: Any) -> Any:
    """``value`` in the subset signed JSON holds, losing nothing a reader needs: floats and
    integers beyond 2^53 - 1 as their exact decimal text (``brakepedal.crypto.canonical``
    refuses both), and text with lone surrogates (which a hostile registry can put in any
    name it serves) with them escaped, so that no figure can stop a finding being written."""
    if isinstance(value, dict):
        return {_exact(str(k)): _exact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_exact(item) for item in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int) and abs(value) <= MAX_SAFE_INTEGER:
        return value
    text = repr(value) if isinstance(value, float) else str(value)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")
