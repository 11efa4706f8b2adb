"""One audit run: check the log, re-verify what is new, recompute, detect, sign the findings.

:meth:`Auditor.run` trusts only the keys it was configured with (the log's key, the
witnesses' keys and their threshold) and its own state (:mod:`brakepedal.audit.state`):

1. **Checkpoints.** The newest checkpoint must be signed by the log key; the newest witnessed
   one must also carry the threshold of witness cosignatures. Each must be consistent with
   every checkpoint this auditor accepted before (a consistency proof against its nearest
   neighbours in size; the same size with another root is a split view). A registry that
   rewrites history (truncates and re-appends) fails here: ``log.inconsistent``.
2. **Entries.** The entries beyond what was verified are fetched and their leaf hashes, with
   the ones remembered, must give the checkpoint's root (``log.entries_mismatch`` otherwise).
3. **Every entry** is read back: enrolments (proof of possession), reports (the enrolled
   device's signature, the strict parse); what does not verify is kept as a bad entry.
4. **Detectors** run over everything read so far (:mod:`brakepedal.audit.detectors`), and the
   registry's published aggregates are recomputed (:mod:`brakepedal.audit.accounting`).
5. Findings get inclusion proofs of the entries they cite against the audited checkpoint,
   are signed by the auditor's key, and the state is committed in one transaction.

Nothing stops at the first defect: every check adds findings and the run goes on where it can
(entries are not read from a log that failed a consistency check: they could be anything). A
question the registry does not answer (a page of entries, the witnessed checkpoint, a proof, a
challenged entry) is ``registry.answer_invalid`` and the run still commits; only a newest
checkpoint that does not verify stops it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from brakepedal.accounting.catalogue import Catalogue, default_catalogue
from brakepedal.accounting.document import UsageDocument
from brakepedal.accounting.usage import Workload
from brakepedal.audit import accounting
from brakepedal.audit.declarations import declaration_findings
from brakepedal.audit.detectors import Draft, Evidence, Thresholds, day_of, detect
from brakepedal.audit.endorsements import endorsement_findings
from brakepedal.audit.findings import EntryEvidence, Finding, FindingSet, Severity, finding_id
from brakepedal.audit.policy_check import policy_findings
from brakepedal.audit.sampling import SamplePlan, plan
from brakepedal.audit.shipments import shipment_findings
from brakepedal.audit.source import ChallengeSource, EvidenceSource
from brakepedal.audit.state import (
    AuditState,
    BadEntry,
    Challenge,
    DeviceRow,
    ReportRow,
    SeenCheckpoint,
    SnapshotRow,
)
from brakepedal.audit.workload import training_minutes
from brakepedal.crypto.canonical import canonical_json
from brakepedal.crypto.dsse import ParsedEnvelope, parse_envelope
from brakepedal.crypto.keys import Signer, public_key_from_json, public_key_to_json
from brakepedal.errors import BrakepedalError, InputError, TrustError
from brakepedal.governance.documents import PolicyVersion
from brakepedal.governance.view import GovernanceView, LogEvidence, policy_file_path
from brakepedal.model.types import epoch_micros, format_utc
from brakepedal.policy.load import parse_policy
from brakepedal.policy.model import Policy
from brakepedal.policy.terms import PauseOrderTerms, PermitTerms
from brakepedal.tlog.checkpoint import SignedCheckpoint, open_checkpoint
from brakepedal.tlog.cosignature import CosignatureVerifier, verify_cosignatures
from brakepedal.tlog.merkle import (
    inclusion_proof_from_leaf_hashes,
    leaf_hash,
    root_from_leaf_hashes,
)
from brakepedal.tlog.note import NoteVerifier
from brakepedal.tlog.proof import ConsistencyProof, parse_proof
from brakepedal.wire.endorsement import check_roots
from brakepedal.wire.enrolment import ENROLMENT_PAYLOAD_TYPE, parse_enrolment
from brakepedal.wire.findings import FINDINGS_PAYLOAD_TYPE
from brakepedal.wire.minute import parse_minute
from brakepedal.wire.report import (
    REPORT_PAYLOAD_TYPE,
    device_key,
    partition_signed,
    peek_report,
    verify_minutes,
)
from brakepedal.wire.report_format import UsageReport, parse_report

__all__ = ["AuditConfig", "AuditResult", "Auditor", "open_challenges"]

_US = 1_000_000

#: Progress callback: (what, done, total).
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """What the auditor trusts, and how strict its detectors are."""

    origin: str
    log_key: NoteVerifier
    witnesses: tuple[CosignatureVerifier, ...] = ()
    witness_threshold: int = 0
    catalogue: Catalogue = field(default_factory=default_catalogue)
    thresholds: Thresholds = field(default_factory=Thresholds)
    #: The auditor's name in its signed finding sets.
    name: str = "auditor"
    signer: Signer | None = None
    #: The governance agreement's root metadata: with it, orders and permits are verified
    #: (quorum, expiry, inclusion in a witnessed checkpoint) and the policy is evaluated.
    trusted_root: bytes | None = None
    #: The policy to hold the log to; None: the newest one published in governance.
    policy: Policy | None = None
    #: Public run declarations and ownership holdings (a usage document without windows).
    declarations: UsageDocument | None = None
    #: How long a device has to answer a challenge before ``challenge.unanswered``.
    challenge_deadline: timedelta = timedelta(hours=1)
    #: Accelerators the manufacturers shipped, by entity (``devices.unenrolled``); None: not
    #: known.
    shipments: Mapping[str, int] | None = None
    #: Manufacturer root certificates (PEM) the auditor trusts: with them every logged
    #: endorsement chain is verified again (``device.endorsement_invalid``,
    #: ``device.unendorsed``); without, chains are not checked.
    manufacturer_roots: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class AuditResult:
    """What one run found."""

    origin: str
    tree_size: int
    root_hash: bytes
    witnessed_size: int | None
    new_entries: int
    devices: int
    reports: int
    findings: tuple[Finding, ...]
    #: Ids of findings this state had not seen before this run.
    new_findings: tuple[str, ...]
    days_compared: int
    signed: bytes | None

    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=None)


@dataclass
class _Run:
    """One run's working set."""

    drafts: list[Draft] = field(default_factory=list)
    accepted: list[SeenCheckpoint] = field(default_factory=list)
    trusted_entries: bool = True
    #: What the readable report shows besides findings: orders, permits, thresholds, groups.
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Governance:
    """The policies in force and the orders and permits a run holds the log to."""

    policies: tuple[Policy, ...]
    orders: tuple[PauseOrderTerms, ...] = ()
    permits: tuple[PermitTerms, ...] = ()


class Auditor:
    """Audits one log into one state directory."""

    def __init__(self, config: AuditConfig, state: AuditState) -> None:
        self.config = config
        self.state = state

    # ------------------------------------------------------------------ the run

    def run(
        self,
        source: EvidenceSource,
        *,
        at: datetime | None = None,
        progress: Progress | None = None,
    ) -> AuditResult:
        moment = (at or datetime.now(UTC)).astimezone(UTC)
        self.state.check_origin(self.config.origin)
        if self.config.manufacturer_roots:
            check_roots(self.config.manufacturer_roots)  # the configuration, before any work
        run = _Run()
        standing = [_draft_of(d) for d in self.state.standing()]
        run.drafts += standing
        if standing:  # a log proven to have two histories is never read again
            run.trusted_entries = False
        latest, witnessed = self._checkpoints(source, run)
        known = self.state.leaf_hashes()
        verified = len(known)
        new, leaves = self._entries(source, latest, known, progress, run)
        devices = self.state.devices()
        reader = self._read(new, verified, devices, progress)
        fresh_devices, reports, bad, kinds = (
            list(reader.fresh.values()),
            reader.reports,
            reader.bad,
            reader.kinds,
        )
        all_snapshots = self.state.snapshots() + reader.snapshots
        all_devices = {**devices, **{d.device: d for d in fresh_devices}}
        all_reports = self.state.reports() + reports
        all_bad = self.state.bad_entries() + bad
        # The policy in force sets the allowed gap between reports (device.silent).
        governance = self._governance(source, moment, run)
        evidence = Evidence(
            all_devices,
            all_reports,
            all_bad,
            moment,
            self.config.catalogue,
            _thresholds(self.config.thresholds, governance.policies),
        )
        run.drafts += _detect(evidence, trusted=run.trusted_entries)
        if self.config.shipments is not None and run.trusted_entries:
            # Enrolments in entries not read (a lying log) would read as missing devices.
            run.drafts += shipment_findings(self.config.shipments, all_devices)
        run.drafts += self._endorsements(all_devices, run)
        run.drafts += self._challenges(source, moment)
        if self.config.declarations is not None:
            run.drafts += declaration_findings(self.config.declarations, all_reports, all_snapshots)
        run.drafts += self._policy(governance, moment, all_devices, all_reports, run)
        days = sorted({day_of(r.window_start_us) for r in all_reports})
        published = self._aggregates(source, days, tree_size=verified + len(new), run=run)
        run.drafts += accounting.compare(
            accounting.recompute(all_devices, all_reports, self.config.catalogue), published
        )
        tree_size = len(leaves) if run.trusted_entries else verified
        root = root_from_leaf_hashes(leaves[:tree_size]) if tree_size else b""
        # A standing proof of a fork is also found again while the log still shows it: one
        # finding per id (the standing draft, first, keeps the notes it was proven with).
        drafts = _unique(run.drafts)
        stood = {_draft_id(d) for d in standing}
        proven = [d for d in drafts if d.detector in _PROOFS_OF_FORK and _draft_id(d) not in stood]
        findings = tuple(self._finish(draft, leaves[:tree_size], root) for draft in drafts)
        known_ids = self.state.known_findings()
        new_ids = tuple(sorted({f.id for f in findings} - set(known_ids)))
        signed = None
        if self.config.signer is not None and tree_size:
            signed = FindingSet(
                self.config.name, moment, self.config.origin, tree_size, root, findings
            ).sign(self.config.signer)
        self.state.commit_run(
            origin=self.config.origin,
            checkpoints=run.accepted,
            seen_at=format_utc(moment.replace(microsecond=0)),
            leaves=[
                (verified + offset, leaves[verified + offset], kinds[offset])
                for offset in range(len(new))
            ],
            devices=fresh_devices,
            reports=reports,
            bad=bad,
            snapshots=reader.snapshots,
            verified_size=verified + len(new),
            findings=[(f.id, f.severity.value, f.to_json()) for f in findings],
            context=run.context,
            standing=[_draft_json(d) for d in proven],
        )
        return AuditResult(
            origin=self.config.origin,
            tree_size=tree_size,
            root_hash=root,
            witnessed_size=None if witnessed is None else witnessed[0].checkpoint.size,
            new_entries=len(new),
            devices=len(all_devices),
            reports=len(all_reports),
            findings=findings,
            new_findings=new_ids,
            days_compared=sum(answer is not None for answer in published.values()),
            signed=signed,
        )

    # ------------------------------------------------------------------ checkpoints

    def _checkpoints(
        self, source: EvidenceSource, run: _Run
    ) -> tuple[SignedCheckpoint, tuple[SignedCheckpoint, tuple[str, ...]] | None]:
        """The newest and the newest witnessed checkpoint, each checked against memory."""
        latest = self._open(source.checkpoint(), run, "newest")
        if latest is None:
            raise TrustError(
                "audit.checkpoint_unverified",
                f"{source.name}: the newest checkpoint is not signed by the log key "
                f"{self.config.log_key.name}; nothing can be audited",
            )
        witnessed = self._witnessed(source, run)
        for checkpoint, names in sorted(
            [(latest, ())] + ([witnessed] if witnessed is not None else []),
            key=lambda pair: (pair[0].checkpoint.size, -len(pair[1])),  # witnessed first
        ):
            self._check_consistency(source, checkpoint, names, run)
        return latest, witnessed

    def _open(self, note: bytes, run: _Run, which: str) -> SignedCheckpoint | None:
        try:
            return open_checkpoint(note, self.config.log_key, origin=self.config.origin)
        except BrakepedalError as e:
            run.drafts.append(
                _log_draft(
                    "log.checkpoint_unsigned",
                    "checkpoints are signed by the log key",
                    f"the {which} checkpoint does not verify: {e.reason}",
                    {"which": which, "reason": e.reason},
                    {"detail": e.message[:300]},
                )
            )
            return None

    def _witnessed(
        self, source: EvidenceSource, run: _Run
    ) -> tuple[SignedCheckpoint, tuple[str, ...]] | None:
        if not self.config.witnesses:
            return None
        try:
            note = source.witnessed_checkpoint(self.config.witness_threshold)
        except BrakepedalError as e:
            # A refusal proves nothing either way: the newest checkpoint is still checked
            # against memory, as when the registry has no witnessed checkpoint to offer.
            run.drafts.append(
                _answer_draft(
                    "witnessed checkpoint", f"cosignatures={self.config.witness_threshold}", e
                )
            )
            return None
        if note is None:
            return None
        opened = self._open(note, run, "witnessed")
        if opened is None:
            return None
        try:
            names = verify_cosignatures(
                opened.note,
                opened.note.text,
                self.config.witnesses,
                self.config.witness_threshold,
            )
        except BrakepedalError as e:
            run.drafts.append(
                _log_draft(
                    "log.witnesses_missing",
                    f"a witnessed checkpoint carries {self.config.witness_threshold} cosignatures",
                    f"the checkpoint of size {opened.checkpoint.size} offered as witnessed is "
                    f"not: {e.reason}",
                    {"size": opened.checkpoint.size},
                    {"detail": e.message[:300]},
                )
            )
            return None
        return opened, names

    def _check_consistency(
        self, source: EvidenceSource, new: SignedCheckpoint, names: tuple[str, ...], run: _Run
    ) -> None:
        seen = self.state.checkpoints() + run.accepted
        size, root = new.checkpoint.size, new.checkpoint.root_hash
        consistent = True
        same = [c for c in seen if c.size == size]
        for other in same:
            if other.root != root:
                consistent = False
                run.drafts.append(
                    _log_draft(
                        "log.split_view",
                        "one log, one history: a size has one root (invariant 3)",
                        f"two checkpoints of size {size} with different roots",
                        {"size": size, "roots": sorted([other.root.hex(), root.hex()])},
                        {"notes": [_text(other.note), _text(new.raw)]},
                    )
                )
        smaller = max((c for c in seen if c.size < size), key=lambda c: c.size, default=None)
        larger = min((c for c in seen if c.size > size), key=lambda c: c.size, default=None)
        for old, newer in ((smaller, None), (None, larger)):
            pair = (old.size, old.root, size, root) if old else None
            if newer is not None:
                pair = (size, root, newer.size, newer.root)
            if pair is None or pair[0] == 0:
                continue
            notes = (old.note, new.raw) if old else (new.raw, newer.note if newer else b"")
            verdict = self._consistent(source, pair, notes, run, served_is_old=old is None)
            if verdict is None:
                run.trusted_entries = False  # unproven: read nothing new, claim nothing
            elif not verdict:
                consistent = False
        rolled = self._rolled_back(seen, size, names)
        if rolled is not None:
            which = "a witnessed checkpoint" if names else "a checkpoint"
            before = "witnessed one" if names else "one"
            run.drafts.append(
                _log_draft(
                    "log.rollback",
                    "a log only grows",
                    f"{source.name} serves {which} of size {size}, smaller than the "
                    f"{before} of size {rolled.size} this auditor accepted before",
                    {"size": size, "seen": rolled.size} | ({"witnessed": True} if names else {}),
                    severity=Severity.MEDIUM,
                )
            )
        if consistent and (not same or names):
            run.accepted.append(SeenCheckpoint(size, root, new.raw, names))
        if not consistent:
            run.trusted_entries = False

    def _rolled_back(
        self, seen: Sequence[SeenCheckpoint], size: int, names: tuple[str, ...]
    ) -> SeenCheckpoint | None:
        """The largest accepted checkpoint that a checkpoint of ``size`` went back behind.

        The newest checkpoint is held to the newest accepted. A witnessed one lags the newest
        (witnesses cosign what they saw, later), so it is held only to accepted checkpoints
        that would answer the same question: cosigned by at least the threshold of the
        witnesses this auditor trusts (the registry serves the largest of those)."""
        if not names:
            return max((c for c in seen if c.size > size), key=lambda c: c.size, default=None)
        trusted = {w.name for w in self.config.witnesses}
        return max(
            (
                c
                for c in seen
                if c.size > size
                and c.witnesses
                and set(c.witnesses) <= trusted
                and len(set(c.witnesses)) >= max(self.config.witness_threshold, 1)
            ),
            key=lambda c: c.size,
            default=None,
        )

    def _consistent(
        self,
        source: EvidenceSource,
        pair: tuple[int, bytes, int, bytes],
        notes: tuple[bytes, bytes],
        run: _Run,
        *,
        served_is_old: bool,
    ) -> bool | None:
        """Whether the registry proves the pair consistent; None when it did not answer with a
        proof (a refusal, an error, what is not the proof asked for: that proves nothing
        either way). Only a proof that fails to verify shows a rewritten history."""
        old_size, old_root, new_size, new_root = pair
        which = f"{old_size}-{new_size}"
        try:
            proof = parse_proof(source.consistency_proof(old_size, new_size))
            if not isinstance(proof, ConsistencyProof) or (proof.old_size, proof.new_size) != (
                old_size,
                new_size,
            ):
                raise InputError("audit.proof_invalid", "not the consistency proof asked for")
        except BrakepedalError as e:
            run.drafts.append(_answer_draft("consistency proof", which, e))
            return None
        try:
            proof.verify(old_root, new_root)
        except BrakepedalError as e:
            served, accepted = (old_size, new_size) if served_is_old else (new_size, old_size)
            summary = (
                f"the checkpoint of size {served} served now is not an extension of the one "
                f"of size {accepted} this auditor accepted"
                if not served_is_old
                else f"the checkpoint of size {accepted} this auditor accepted is not an "
                f"extension of the one of size {served} served now"
            )
            run.drafts.append(
                _log_draft(
                    "log.inconsistent",
                    "every checkpoint is consistent with every earlier one (invariant 3)",
                    f"{summary}: the log's history was rewritten",
                    {"old_size": old_size, "new_size": new_size, "new_root": new_root.hex()},
                    {
                        "reason": e.reason,
                        "old_root": old_root.hex(),
                        "new_root": new_root.hex(),
                        "served_size": served,
                        "notes": [_text(notes[0]), _text(notes[1])],
                    },
                )
            )
            return False
        return True

    # ------------------------------------------------------------------ entries

    def _entries(
        self,
        source: EvidenceSource,
        latest: SignedCheckpoint,
        known: list[bytes],
        progress: Progress | None,
        run: _Run,
    ) -> tuple[list[bytes], list[bytes]]:
        """The entries beyond the ``known`` leaves, if they give the checkpoint's root, and
        every leaf hash; none new when the log is not trusted or its entries cannot be read."""
        verified, size = len(known), latest.checkpoint.size
        if not run.trusted_entries or size <= verified:
            return [], known
        fetched = self._fetch(source, verified, size, progress, run)
        if fetched is None:
            # Not read: what they hold is unknown, so claim nothing about what is missing.
            run.trusted_entries = False
            return [], known
        served = known + [leaf_hash(entry) for entry in fetched]
        if root_from_leaf_hashes(served) == latest.checkpoint.root_hash:
            return fetched, served
        run.trusted_entries = False
        run.drafts.append(
            _log_draft(
                "log.entries_mismatch",
                "the entries served are the ones the checkpoint commits to",
                f"entries {verified}..{size} served by {source.name} do not give the root of "
                f"the signed checkpoint of size {size}",
                {"size": size},
            )
        )
        return [], known

    def _fetch(
        self,
        source: EvidenceSource,
        start: int,
        end: int,
        progress: Progress | None,
        run: _Run,
    ) -> list[bytes] | None:
        """Entries ``[start, end)``; None (and a finding) when a page is refused or is not
        a page: the run reads nothing new and still commits (the next run asks again)."""
        out: list[bytes] = []
        for first in range(start, end, 1000):
            last = min(end, first + 1000)
            try:
                out += source.entries(first, last)
            except BrakepedalError as e:
                run.drafts.append(_answer_draft("entries", f"{first}-{last}", e))
                return None
            if progress is not None:
                progress("fetching entries", len(out), end - start)
        return out

    def _read(
        self,
        entries: Sequence[bytes],
        first: int,
        devices: dict[str, DeviceRow],
        progress: Progress | None,
    ) -> _Reader:
        reader = _Reader(devices, self.config.catalogue)

        def report(done: int) -> None:
            if progress is not None:
                progress("verifying entries", done, len(entries))

        reader.kinds = reader.read_all(first, entries, report)
        return reader

    def _aggregates(
        self, source: EvidenceSource, days: Sequence[date], *, tree_size: int, run: _Run
    ) -> dict[date, list[dict[str, Any]] | None]:
        """The registry's published figures of each day, as of the audited tree; an answer
        that is refused or malformed is a finding, not the end of the run."""
        published: dict[date, list[dict[str, Any]] | None] = {}
        for day in days:
            try:
                published[day] = accounting.checked(source.aggregates(day, tree_size=tree_size))
            except BrakepedalError as e:
                published[day] = None
                run.drafts.append(_answer_draft("aggregates", day.isoformat(), e))
        return published

    # ------------------------------------------------------------------ challenges

    def challenge(
        self, source: ChallengeSource, *, budget: int, fraction: float, at: datetime
    ) -> SamplePlan:
        """Open challenges of a sample of the reports (:func:`open_challenges`)."""
        return open_challenges(self.state, source, budget=budget, fraction=fraction, at=at)

    def _endorsements(self, devices: Mapping[str, DeviceRow], run: _Run) -> list[Draft]:
        """Every logged chain verified again under the auditor's roots (none: not checked)."""
        if not self.config.manufacturer_roots:
            run.context["endorsements"] = {"checked": False}
            return []
        check = endorsement_findings(devices, self.config.manufacturer_roots)
        run.context["endorsements"] = {
            "checked": True,
            "endorsed": check.endorsed,
            "software": check.software,
            "invalid": check.invalid,
            "unchecked": check.unchecked,
        }
        return check.drafts

    def _challenges(self, source: EvidenceSource, at: datetime) -> list[Draft]:
        """Check every open challenge's answer: a draft per mismatch, per answer missing or
        given after the deadline, and per answer the registry does not back (the challenged
        entry, the answer's form): that is the registry's doing, and the challenge is checked
        again next run."""
        drafts = []
        deadline = self.config.challenge_deadline
        # A bundle cannot carry answers: open challenges wait for an audit of the registry.
        asking = isinstance(source, ChallengeSource)
        for opened in self.state.challenges():
            challenge = opened
            answered = False
            if opened.status == "open" and isinstance(source, ChallengeSource):
                try:
                    status = source.challenge_status(opened.id)
                    minutes = status.get("minutes")
                    timing = None if minutes is None else _answer_timing(status)
                except BrakepedalError as e:
                    drafts.append(_answer_draft("challenge", str(opened.id), e))
                    continue
                if timing is not None:
                    answered = True  # the registry holds an answer: the device is not silent
                    checked = _check_answer(
                        source, opened, minutes, self.state.leaf_hash(opened.log_index)
                    )
                    if isinstance(checked, Draft):
                        drafts.append(checked)
                    else:
                        verdict, detail = _timed(checked, timing, deadline)
                        self.state.resolve_challenge(opened.id, verdict, detail)
                        challenge = replace(opened, status=verdict, detail=detail)
            asked = datetime.fromisoformat(challenge.requested_at.replace("Z", "+00:00"))
            late = at - asked > deadline
            if challenge.status == "mismatch":
                why = "the revealed minute records do not rebuild the report it signed"
                drafts.append(
                    _challenge_draft(challenge, "challenge.mismatch", Severity.CRITICAL, why)
                )
            elif challenge.status == "mislabeled":
                why = f"the revealed minute records show training: {challenge.detail}"
                drafts.append(
                    _challenge_draft(challenge, "challenge.workload_mismatch", Severity.HIGH, why)
                )
            elif challenge.status == "late":
                why = f"not answered within {deadline}: {challenge.detail}"
                drafts.append(
                    _challenge_draft(challenge, "challenge.unanswered", Severity.HIGH, why)
                )
            elif challenge.status == "open" and late and asking and not answered:
                why = f"no answer in {deadline} since {challenge.requested_at}"
                drafts.append(
                    _challenge_draft(challenge, "challenge.unanswered", Severity.HIGH, why)
                )
        return drafts

    # ------------------------------------------------------------------ policy

    def _governance(self, source: EvidenceSource, at: datetime, run: _Run) -> _Governance:
        """The policies in force (the one configured, else the newest version of every policy
        published), and the orders and permits of the governance view verified from the
        agreement's root. A published policy that does not parse is a finding, and the
        others are still evaluated."""
        policies: tuple[Policy, ...] = () if self.config.policy is None else (self.config.policy,)
        orders: tuple[PauseOrderTerms, ...] = ()
        permits: tuple[PermitTerms, ...] = ()
        if self.config.trusted_root is not None:
            view = self._view(source, at, run)
            if view is not None:
                orders, permits = view.orders(), view.permits()
                if self.config.policy is None:
                    policies = _newest_policies(view, run)
                run.context["orders"] = [
                    {
                        "id": str(o.order_id),
                        "threshold_flop": str(o.threshold_flop.value),
                        "from": format_utc(o.effective_from),
                        "sunset": format_utc(o.sunset),
                        "grace_seconds": o.grace_seconds,
                    }
                    for o in orders
                ]
                run.context["permits"] = [
                    {
                        "id": str(p.permit_id),
                        "group": str(p.owner_group),
                        "flop_budget": str(p.flop_budget.value),
                        "from": format_utc(p.valid_from),
                        "until": format_utc(p.valid_until),
                    }
                    for p in permits
                ]
        return _Governance(policies, orders, permits)

    def _policy(
        self,
        governance: _Governance,
        at: datetime,
        devices: dict[str, DeviceRow],
        reports: list[ReportRow],
        run: _Run,
    ) -> list[Draft]:
        if not governance.policies:
            return []
        run.context["policies"] = [
            {
                "id": str(policy.id),
                "version": policy.version,
                "thresholds": [
                    {"rule": r.id, "subject": r.subject, "flop": str(r.threshold_flop.value)}
                    for r in policy.rules
                    if r.threshold_flop is not None
                ],
            }
            for policy in governance.policies
        ]
        if self.config.declarations is not None:
            run.context["holdings"] = [
                {"holder": str(h.holder), "held": str(h.held), "share": str(h.voting_share)}
                for h in self.config.declarations.holdings
            ]
        # Each policy on its own ledger (its own bound and control rules); a violation's
        # finding names its policy, so two policies' findings never merge.
        return [
            draft
            for policy in governance.policies
            for draft in policy_findings(
                policy,
                self.config.declarations,
                devices,
                reports,
                catalogue=self.config.catalogue,
                at=at,
                orders=governance.orders,
                permits=governance.permits,
            )
        ]

    def _view(self, source: EvidenceSource, at: datetime, run: _Run) -> GovernanceView | None:
        assert self.config.trusted_root is not None
        try:
            published = source.governance()
            if published is None:
                raise TrustError("governance.unpublished", "the registry serves no repository")
            files, evidence = published
            return GovernanceView.load(
                trusted_root=self.config.trusted_root,
                repository=files,
                evidence=LogEvidence.from_bytes(evidence),
                at=at,
            )
        except BrakepedalError as e:
            run.drafts.append(
                Draft(
                    "governance.unverifiable",
                    "governance is verifiable from the agreement's root (invariant 4)",
                    Severity.HIGH,
                    "governance",
                    f"the governance view could not be verified: {e.reason}",
                    {"reason": e.reason},
                    {"detail": e.message[:300]},
                )
            )
            return None

    # ------------------------------------------------------------------ findings

    def _finish(self, draft: Draft, leaves: Sequence[bytes], root: bytes) -> Finding:
        entries = tuple(
            EntryEvidence(
                index,
                leaves[index],
                len(leaves),
                root,
                tuple(inclusion_proof_from_leaf_hashes(index, leaves)),
                role,
            )
            for index, role in draft.cites
            if index < len(leaves)
        )
        return Finding(
            draft.detector,
            draft.rule,
            draft.severity,
            draft.subject,
            draft.summary,
            draft.key,
            draft.figures,
            entries,
        )


def _log_draft(
    detector: str,
    rule: str,
    summary: str,
    key: dict[str, Any],
    figures: dict[str, Any] | None = None,
    *,
    severity: Severity = Severity.CRITICAL,
) -> Draft:
    return Draft(detector, rule, severity, "log", summary, key, figures or {})


def open_challenges(
    state: AuditState, source: ChallengeSource, *, budget: int, fraction: float, at: datetime
) -> SamplePlan:
    """Open challenges of ``budget`` reports not challenged before, drawn from the public
    seed of the newest checkpoint this state accepted (:mod:`brakepedal.audit.sampling`).

    Raises:
        InputError: ``audit.no_checkpoint`` before a first ``run``.
    """
    accepted = state.checkpoints()
    if not accepted:
        raise InputError("audit.no_checkpoint", "run the audit once before challenging")
    newest = max(accepted, key=lambda c: c.size)
    asked = {(c.device, c.sequence) for c in state.challenges()}
    population = [
        r
        for r in state.reports()
        if r.log_index < newest.size and (r.device, r.sequence) not in asked
    ]
    sample = plan(newest.root, population, budget, fraction)
    opened = []
    for index in sample.chosen:
        report = population[index]
        try:
            number = source.challenge(report.device, report.sequence)
        except BrakepedalError:
            # The registry will not relay it (a report it logged but does not index, or an
            # outage); the next run draws again.
            continue
        opened.append(
            Challenge(
                number,
                report.device,
                report.sequence,
                report.log_index,
                format_utc(at.replace(microsecond=0)),
                newest.root.hex(),
                "open",
                None,
            )
        )
    state.add_challenges(opened)
    return sample


def _detect(evidence: Evidence, *, trusted: bool) -> list[Draft]:
    """Every detector's drafts. Entries are not read from a log proven to lie: reports
    missing from what was read are then the registry's doing (``log.*``), not silence."""
    drafts = detect(evidence)
    if not trusted:
        drafts = [d for d in drafts if d.detector not in _ABSENCE_DETECTORS]
    return drafts


def _thresholds(configured: Thresholds, policies: Sequence[Policy]) -> Thresholds:
    """The detectors' thresholds; an allowed gap not configured is the strictest
    ``max_report_gap_minutes`` of the policies in force (else the detectors' default)."""
    if configured.allowed_gap is not None or not policies:
        return configured
    minutes = min(policy.accounting.max_report_gap_minutes for policy in policies)
    return replace(configured, allowed_gap=timedelta(minutes=minutes))


def _draft_id(draft: Draft) -> str:
    return finding_id(draft.detector, draft.subject, draft.key)


def _unique(drafts: Sequence[Draft]) -> list[Draft]:
    """The drafts, the first of each finding id only (a signed set names a finding once)."""
    seen: set[str] = set()
    out = []
    for draft in drafts:
        identity = _draft_id(draft)
        if identity not in seen:
            seen.add(identity)
            out.append(draft)
    return out


#: Detectors that read an absence of reports or enrolments, which a lying log can cause.
_ABSENCE_DETECTORS = frozenset({"device.silent"})

#: Workload labels a policy may exempt from the ledger (``accounting.ledger`` refuses to
#: exempt training or unknown).
_EXEMPTABLE = frozenset({Workload.INFERENCE})

#: Findings that prove the log showed two histories: kept, re-raised on every later run.
_PROOFS_OF_FORK = frozenset({"log.split_view", "log.inconsistent"})


def _text(note: bytes) -> str:
    return note.decode("utf-8", "backslashreplace")


def _draft_json(draft: Draft) -> dict[str, Any]:
    return {
        "detector": draft.detector,
        "rule": draft.rule,
        "severity": draft.severity.value,
        "subject": draft.subject,
        "summary": draft.summary,
        "key": dict(draft.key),
        "figures": dict(draft.figures),
        "cites": [list(c) for c in draft.cites],
    }


def _draft_of(document: dict[str, Any]) -> Draft:
    return Draft(
        document["detector"],
        document["rule"],
        Severity(document["severity"]),
        document["subject"],
        document["summary"],
        document["key"],
        document["figures"],
        tuple((int(i), str(role)) for i, role in document["cites"]),
    )


def _answer_draft(what: str, which: str, error: BrakepedalError) -> Draft:
    """The registry refused, or answered what is not an answer: high, and the run goes on."""
    return Draft(
        "registry.answer_invalid",
        "the registry answers an auditor's questions (its published figures, challenges)",
        Severity.HIGH,
        "registry",
        f"the registry's answer for {what} {which} is unusable: {error.reason}",
        {"what": what, "which": which},
        {"detail": error.message[:300]},
    )


def _check_answer(
    source: EvidenceSource, challenge: Challenge, minutes: object, leaf: bytes | None
) -> tuple[str, str | None] | Draft:
    """The device's verdict: ``verified`` when the revealed records rebuild the report this
    auditor verified at that log index, ``mismatch`` when they do not, ``mislabeled`` when they
    show training under a label a policy may exempt. A draft instead when the registry does
    not back the answer (the entry cannot be fetched, is not the one verified, the answer is
    not minute records): that blames the registry, not the device, and the challenge stays
    open.

    The report is fetched again but believed only if its leaf hash is the one verified before:
    a registry cannot answer a challenge with a report of its choosing.
    """
    report = _challenged_report(source, challenge, leaf)
    if isinstance(report, Draft):
        return report
    try:
        if not isinstance(minutes, list):
            raise InputError("audit.answer_invalid", "minutes is not a list")
        records = [parse_minute(canonical_json(m)) for m in minutes]
    except BrakepedalError as e:
        # The registry checks an answer before it keeps it: what is not minute records is
        # the registry's answer, not the device's.
        return _answer_draft("challenge", str(challenge.id), e)
    except (TypeError, ValueError) as e:
        return _answer_draft(
            "challenge", str(challenge.id), InputError("audit.answer_invalid", str(e)[:300])
        )
    try:
        verify_minutes(report, records)
    except BrakepedalError as e:
        return "mismatch", f"{e.reason}: {e.message[:300]}"
    if report.workload in _EXEMPTABLE:
        # A label a policy may exempt (inference) on minutes that show a training step loop:
        # the label would hide training from the ledger (brakepedal.audit.workload). Unknown
        # counts as training already, so it hides nothing.
        training, busy = training_minutes(records)
        if busy and training * 2 >= busy:
            return (
                "mislabeled",
                f"{training} of {busy} busy minutes look like training; "
                f"the report says {report.workload.value}",
            )
    return "verified", None


def _challenged_report(
    source: EvidenceSource, challenge: Challenge, leaf: bytes | None
) -> UsageReport | Draft:
    """The challenged report, fetched again and believed only as the entry verified before;
    a draft about the registry when it cannot be fetched or is not that entry."""
    index = challenge.log_index
    try:
        served = source.entries(index, index + 1)
        if len(served) != 1:
            raise InputError("audit.entries_invalid", f"{len(served)} entries for one")
    except BrakepedalError as e:
        return _answer_draft("challenged entry", str(index), e)
    (entry,) = served
    if leaf is None or leaf_hash(entry) != leaf:
        return _entry_changed(source, challenge, leaf, entry, "not the leaf this auditor verified")
    try:
        report = parse_report(parse_envelope(entry).payload)
    except BrakepedalError as e:  # the very bytes this auditor verified as a report
        return _entry_changed(source, challenge, leaf, entry, e.reason)
    if (str(report.device), report.sequence) != (challenge.device, challenge.sequence):
        return _entry_changed(source, challenge, leaf, entry, "another device's report")
    return report


def _entry_changed(
    source: EvidenceSource, challenge: Challenge, leaf: bytes | None, entry: bytes, why: str
) -> Draft:
    """The registry serves a challenged report's log index with other bytes than the entry
    this auditor verified there: the log's doing, whatever the device answered."""
    index = challenge.log_index
    return Draft(
        "log.entries_mismatch",
        "the entries served are the ones the checkpoint commits to",
        Severity.CRITICAL,
        "log",
        f"{source.name} serves log entry {index}, the report {challenge.device}/"
        f"{challenge.sequence} under challenge {challenge.id}, with other bytes than this "
        f"auditor verified there: {why}",
        {"log_index": index},
        {
            "verified_leaf_hash": None if leaf is None else leaf.hex(),
            "served_leaf_hash": leaf_hash(entry).hex(),
            "challenge": challenge.id,
        },
        ((index, "the entry as verified"),),
    )


def _answer_timing(status: Mapping[str, Any]) -> tuple[datetime, datetime]:
    """When the registry says the challenge was asked and answered (its own clock).

    Raises:
        InputError: ``audit.challenge_invalid``, either is missing or not a UTC time.
    """
    asked, answered = (_utc(status.get(name)) for name in ("requested_at", "answered_at"))
    if asked is None or answered is None:
        raise InputError(
            "audit.challenge_invalid",
            "an answered challenge without its requested_at and answered_at UTC times",
        )
    return asked, answered


def _utc(value: object) -> datetime | None:
    """An ISO 8601 time with its offset; None when ``value`` is not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return None if moment.utcoffset() is None else moment


def _timed(
    checked: tuple[str, str | None], timing: tuple[datetime, datetime], deadline: timedelta
) -> tuple[str, str | None]:
    """The verdict of an answer, counting one given after the deadline as not given in time
    (``late``); a mismatch or a mislabel stands, with the lateness noted."""
    verdict, detail = checked
    asked, answered = timing
    if answered - asked <= deadline:
        return verdict, detail
    when = (
        f"answered {format_utc(answered.replace(microsecond=0))}, "
        f"{answered - asked} after it was asked (the registry's clock)"
    )
    if verdict == "verified":
        return "late", when
    return verdict, f"{detail}; {when}"


def _challenge_draft(challenge: Challenge, detector: str, severity: Severity, why: str) -> Draft:
    return Draft(
        detector,
        "a device reveals the minute records its report committed to, when challenged",
        severity,
        f"device:{challenge.device}",
        f"{challenge.device} report {challenge.sequence} (challenge {challenge.id}): {why}",
        {"device": challenge.device, "sequence": challenge.sequence, "challenge": challenge.id},
        {
            "seed": challenge.seed,
            "requested_at": challenge.requested_at,
            "detail": challenge.detail,
        },
        ((challenge.log_index, "the challenged report"),),
    )


def _newest_policies(view: GovernanceView, run: _Run) -> tuple[Policy, ...]:
    """The newest version of every policy published in governance, by policy id; one that
    does not parse is a ``policy.unevaluable`` finding (its older versions are not used in
    its place: the parties replaced them)."""
    newest: dict[str, tuple[PolicyVersion, bytes]] = {}
    for version, data in view.policies():
        known = newest.get(str(version.policy_id))
        if known is None or version.version > known[0].version:
            newest[str(version.policy_id)] = (version, data)
    policies: list[Policy] = []
    for policy_id, (version, data) in sorted(newest.items()):
        try:
            policy = parse_policy(data, name=policy_file_path(version))
            if (str(policy.id), policy.version) != (policy_id, version.version):
                # Findings and the report name a policy by its text's id: a record that
                # names another would merge two policies' findings.
                raise InputError(
                    "policy.record_mismatch",
                    f"the record names {policy_id} v{version.version}, the file says "
                    f"{policy.id} v{policy.version}",
                )
            policies.append(policy)
        except BrakepedalError as e:
            run.drafts.append(
                Draft(
                    "policy.unevaluable",
                    "the policy can be evaluated over the logged compute",
                    Severity.HIGH,
                    f"policy:{policy_id}",
                    f"policy {policy_id} v{version.version}, published in governance, does "
                    f"not parse: {e.reason}",
                    {"policy": policy_id, "reason": e.reason},
                    {"version": version.version, "detail": e.message[:300]},
                )
            )
    return tuple(policies)


class _Reader:
    """Reads log entries back: enrolments, reports (verified as the registry verifies them),
    and what does not verify, with its reason."""

    def __init__(self, devices: dict[str, DeviceRow], catalogue: Catalogue) -> None:
        self.devices = devices
        self.catalogue = catalogue
        self.fresh: dict[str, DeviceRow] = {}
        self.reports: list[ReportRow] = []
        self.snapshots: list[SnapshotRow] = []
        self.bad: list[BadEntry] = []
        self.kinds: list[str] = []
        self._keys: dict[str, Ed25519PublicKey] = {}

    def read_all(
        self, first: int, entries: Sequence[bytes], progress: Callable[[int], None] | None = None
    ) -> list[str]:
        """Read ``entries`` (entry ``first`` onwards) page by page; their kinds, in order.
        ``progress`` is told how many are read after each page."""
        kinds: list[str] = []
        for start in range(0, len(entries), _PAGE):
            kinds += self._page(first + start, entries[start : start + _PAGE])
            if progress is not None:
                progress(len(kinds))
        return kinds

    def read(self, index: int, entry: bytes) -> str:
        """Read entry ``index``; its kind (``report``, ``enrolment``, ``findings`` (an
        auditor's, published), ``other``)."""
        return self._page(index, [entry])[0]

    def _page(self, first: int, entries: Sequence[bytes]) -> list[str]:
        """Read a page in three passes with the verdicts of one entry at a time: every entry
        parsed and placed (in order: an enrolment counts for the reports after it), then the
        signatures of the reports one after another (:func:`partition_signed`), then their
        rows."""
        kinds: list[str] = []
        placed: list[_Placed] = []
        failed: list[tuple[int, BrakepedalError, bytes]] = []
        for offset, entry in enumerate(entries):
            index = first + offset
            try:
                envelope = parse_envelope(entry)
            except BrakepedalError:
                kinds.append("other")
                continue
            kind = _KINDS.get(envelope.payload_type, "other")
            kinds.append(kind)
            try:
                if kind == "enrolment":
                    self._enrol(entry, index)
                elif kind == "report":
                    placed.append(self._place(envelope, index, entry))
            except BrakepedalError as e:
                failed.append((index, e, entry))
        signed, unsigned = partition_signed(placed)
        for item in unsigned:
            refusal = TrustError(
                "audit.signature_invalid",
                f"log index {item.log_index}: not signed by {item.report.device}'s key",
            )
            failed.append((item.log_index, refusal, item.entry))
        for item in signed:
            self.reports.append(self._row(item))
        failed.sort(key=lambda failure: failure[0])
        for index, error, entry in failed:
            device, sequence = peek_report(entry)
            self.bad.append(BadEntry(index, error.reason, error.message[:500], device, sequence))
        return kinds

    def _enrol(self, entry: bytes, index: int) -> None:
        row = _enrolment_row(entry, index)
        # An accelerator the catalogue does not know has no bound: it would take the whole
        # policy down with it (the registry refuses such enrolments too).
        self.catalogue.get(row.accelerator)
        if row.device in self.devices or row.device in self.fresh:
            raise TrustError("audit.enrolled_twice", f"{row.device} enrolled again")
        self.fresh[row.device] = row

    def _place(self, envelope: ParsedEnvelope, index: int, entry: bytes) -> _Placed:
        """A report parsed and matched with its device's enrolment, before its signature."""
        report = parse_report(envelope.payload)
        device = str(report.device)
        enrolled = self.fresh.get(device) or self.devices.get(device)
        if enrolled is None or enrolled.log_index > index:
            raise TrustError(
                "audit.device_unknown",
                f"report of {device!r} at log index {index}: no enrolment before it",
            )
        key = self._keys.get(device)
        if key is None:
            key = self._keys[device] = device_key(
                public_key_from_json(enrolled.public_key.encode())
            )
        if report.accelerator != enrolled.accelerator:
            raise TrustError(
                "audit.accelerator_mismatch",
                f"a {report.accelerator} report from a device enrolled as {enrolled.accelerator}",
            )
        return _Placed(index, entry, envelope, report, key)

    def _row(self, item: _Placed) -> ReportRow:
        """The row of a report whose signature verified (and its snapshots' rows)."""
        index, report = item.log_index, item.report
        governance = report.governance
        if report.snapshots:
            self.snapshots += [
                SnapshotRow(index, str(c.job), c.step, c.digest, c.parent, format_utc(c.at))
                for c in report.snapshots
            ]
        return ReportRow(
            log_index=index,
            device=str(report.device),
            sequence=report.sequence,
            # The payload is the report's canonical bytes (parse_report insisted on it).
            digest=hashlib.sha256(item.envelope.payload).hexdigest(),
            previous=report.previous,
            window_start_us=epoch_micros(report.window_start),
            window_end_us=epoch_micros(report.window_end),
            busy_ms=report.busy_ms,
            tensor_active_ms=report.tensor_active_ms,
            energy_mj=report.energy_mj,
            job=report.job,
            tenant=report.tenant,
            permit=report.permit,
            site=report.site,
            workload=report.workload.value,
            minute_count=report.minute_count,
            minute_root=report.minute_root,
            governance_version=None if governance is None else governance.timestamp_version,
            governance_size=None if governance is None else governance.checkpoint_size,
            accelerator=report.accelerator,
        )


#: Entries read per page (see :meth:`_Reader._page`).
_PAGE = 256


class _Placed(NamedTuple):
    """A report between the passes of :meth:`_Reader._page`."""

    log_index: int
    entry: bytes
    envelope: ParsedEnvelope
    report: UsageReport
    key: Ed25519PublicKey


_KINDS = {
    REPORT_PAYLOAD_TYPE: "report",
    ENROLMENT_PAYLOAD_TYPE: "enrolment",
    FINDINGS_PAYLOAD_TYPE: "findings",
}


def _enrolment_row(entry: bytes, index: int) -> DeviceRow:
    request = parse_enrolment(entry)
    return DeviceRow(
        device=str(request.device),
        public_key=public_key_to_json(request.key).decode(),
        accelerator=request.accelerator,
        operator=str(request.operator),
        site=None if request.site is None else str(request.site),
        trust="software" if not request.chain else "chain",
        log_index=index,
        at_us=epoch_micros(request.at),
        chain=json.dumps([pem.decode("ascii", "replace") for pem in request.chain]),
    )
