"""The auditor against a real registry (SQLite and PostgreSQL) over real HTTP."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from brakepedal.audit.auditor import Auditor
from brakepedal.audit.findings import FindingSet, open_findings
from brakepedal.audit.source import BundleSource, RegistrySource, export_bundle
from brakepedal.audit.state import AuditState
from brakepedal.crypto.keys import generate_ed25519
from brakepedal.errors import TransportError, TrustError
from brakepedal.policy.load import load_preset
from brakepedal.registry.schema import challenges, cosigned_checkpoints, reports
from brakepedal.tlog.cosignature import Cosigner
from brakepedal.tlog.note import NoteSigner
from brakepedal.tlog.proof import InclusionProof
from brakepedal.tlog.sqlstore import log_checkpoints, log_entries, log_meta, log_nodes
from tests.unit.audit.conftest import AUDITOR_KEY, World, detectors, quiet
from tests.unit.registry.conftest import ORIGIN, WITNESS


def test_an_honest_world_gives_no_finding_and_the_same_accounting(world: World) -> None:
    for name, operator in (("gpu-a1", "lab-a"), ("gpu-a2", "lab-a"), ("gpu-b1", "lab-b")):
        world.enrol(name, operator)
    world.report_all(rounds=4)
    world.witness()
    result = world.audit(at=quiet(world))
    assert result.findings == (), [f.summary for f in result.findings]
    assert result.reports == 12
    assert result.devices == 3
    assert result.days_compared >= 1  # the registry's own figures were fetched and agreed
    assert result.witnessed_size is not None
    state = AuditState(world.state_dir)
    try:  # the witnessed checkpoint is remembered with its witnesses
        assert [c.witnesses for c in state.checkpoints() if c.size == result.tree_size] == [
            ("witness.test/w1",)
        ]
    finally:
        state.close()
    # The signed finding set verifies under the auditor's key and names the audited tree.
    assert result.signed is not None
    document = open_findings(result.signed, AUDITOR_KEY.public_key)
    assert document["log"]["tree_size"] == result.tree_size
    assert document["findings"] == []
    # A second run reads nothing new and still finds nothing.
    again = world.audit(at=quiet(world))
    assert again.new_entries == 0
    assert again.findings == ()


def test_stored_totals_altered_in_the_registry_database_raise_a_finding(world: World) -> None:
    world.enrol("gpu-a1", "lab-a")
    world.enrol("gpu-b1", "lab-b")
    world.report_all(rounds=3)
    assert world.audit(at=quiet(world)).findings == ()
    # The registry's operator inflates nothing in the log, only its stored busy time of lab-b.
    with world.registry.engine.begin() as conn:
        conn.execute(update(reports).where(reports.c.operator == "lab-b").values(busy_ms=1000))
    result = world.audit(at=quiet(world))
    assert detectors(result) == ["accounting.mismatch"]
    (finding,) = result.findings
    assert finding.subject == "operator:lab-b"
    assert finding.severity.value == "critical"
    recomputed, published = finding.figures["recomputed"], finding.figures["published"]
    assert isinstance(recomputed, dict)
    assert isinstance(published, dict)
    assert recomputed["busy_hours"] != published["busy_hours"]
    # Its evidence carries inclusion proofs of logged reports that check against the root.
    assert finding.entries
    for entry in finding.entries:
        InclusionProof(entry.log_index, entry.tree_size, entry.leaf_hash, entry.proof).verify(
            result.root_hash
        )


def _truncate(world: World, size: int) -> None:
    """The registry's operator cuts the log back to ``size`` entries, behind its API."""
    with world.registry.store.engine.begin() as conn:
        nodes = conn.execute(select(log_nodes.c.level, log_nodes.c.idx)).all()
        for level, index in nodes:
            if (index + 1) << level > size:  # the node covers an entry at or beyond size
                conn.execute(
                    delete(log_nodes).where(log_nodes.c.level == level, log_nodes.c.idx == index)
                )
        conn.execute(delete(log_entries).where(log_entries.c.idx >= size))
        conn.execute(update(log_meta).values(tree_size=size))
        conn.execute(delete(log_checkpoints).where(log_checkpoints.c.size > size))
        conn.execute(delete(cosigned_checkpoints).where(cosigned_checkpoints.c.size > size))


def test_a_registry_that_rewrites_history_is_caught_by_the_consistency_check(
    world: World,
) -> None:
    gpu = world.enrol("gpu-a1", "lab-a")
    world.report_all(rounds=4)
    first = world.audit(at=quiet(world))
    assert first.findings == ()
    size = first.tree_size
    # Truncate the last two reports and append two others in their place (and one more).
    _truncate(world, size - 2)
    world.registry.store.append([b'{"rewritten": 1}', b'{"rewritten": 2}', b'{"rewritten": 3}'])
    result = world.audit(at=quiet(world))
    assert "log.inconsistent" in detectors(result)
    inconsistent = next(f for f in result.findings if f.detector == "log.inconsistent")
    assert inconsistent.severity.value == "critical"
    assert inconsistent.key["old_size"] == size
    # Nothing after the rewrite was read: the new entries are not believed.
    assert result.new_entries == 0
    assert gpu.sequence == 4
    # The proof stands: a later run, whatever it is served, repeats it and reads nothing.
    again = world.audit(at=quiet(world))
    assert "log.inconsistent" in detectors(again)
    assert again.new_entries == 0
    standing = next(f for f in again.findings if f.detector == "log.inconsistent")
    notes = standing.figures["notes"]
    assert isinstance(notes, list)
    assert all(str(note).startswith(ORIGIN) for note in notes)  # both signed notes kept


def test_an_exported_bundle_audits_offline_to_the_same_result(world: World, tmp_path: Path) -> None:
    world.enrol("gpu-a1", "lab-a")
    world.report_all(rounds=2)
    online = world.audit(at=quiet(world))
    from brakepedal.audit.source import RegistrySource  # noqa: PLC0415

    source = RegistrySource(world.server.url, world.token)
    try:
        bundle = export_bundle(
            source,
            tmp_path / "bundle",
            size=online.tree_size,
            checkpoint=source.checkpoint(),
            days=[(quiet(world) - timedelta(minutes=5)).date()],
        )
    finally:
        source.close()
    state = AuditState(tmp_path / "offline-state")
    try:
        offline = Auditor(world.config(), state).run(BundleSource(bundle), at=quiet(world))
    finally:
        state.close()
    assert offline.tree_size == online.tree_size
    assert offline.root_hash == online.root_hash
    assert offline.findings == online.findings == ()
    assert offline.days_compared == 1


def test_finding_sets_are_canonical_and_ordered(world: World) -> None:
    world.enrol("gpu-a1", "lab-a")
    world.report_all(rounds=1)
    result = world.audit(at=quiet(world) + timedelta(hours=2))  # gone silent since
    assert detectors(result) == ["device.silent"]
    again = FindingSet("auditor", quiet(world), "o", 1, b"\0" * 32, result.findings[::-1])
    assert (
        again.to_bytes()
        == FindingSet("auditor", quiet(world), "o", 1, b"\0" * 32, result.findings).to_bytes()
    )


def _answer(world: World, number: int, minutes: list[Any]) -> None:
    body = b'{"minutes":[' + b",".join(m.to_bytes() for m in minutes) + b"]}"
    answer = world.server.client.post(f"/v1/challenges/{number}/answer", content=body)
    assert answer.status_code == 200, answer.text


def _challenge_all(world: World) -> list[int]:
    state = AuditState(world.state_dir)
    source = RegistrySource(world.server.url, world.token)
    try:
        sample = Auditor(world.config(), state).challenge(
            source, budget=10, fraction=0.1, at=quiet(world)
        )
        assert sample.probability == pytest.approx(1 - 0.9**sample.budget)
        return [c.id for c in state.challenges()]
    finally:
        source.close()
        state.close()


def test_challenges_answered_honestly_verify(world: World) -> None:
    gpu = world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=1)
    world.witness()
    assert world.audit(at=quiet(world)).findings == ()
    (number,) = _challenge_all(world)
    _answer(world, number, gpu.last_minutes)
    assert world.audit(at=quiet(world)).findings == ()
    assert world.challenge_statuses() == ["verified"]


def test_a_lying_answer_is_a_mismatch_and_silence_is_late(world: World) -> None:
    gpu = world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=1)
    assert world.audit(at=quiet(world)).findings == ()
    (number,) = _challenge_all(world)
    assert detectors(world.audit(at=quiet(world))) == []  # asked, not yet due
    late = world.audit(at=quiet(world) + timedelta(hours=2))
    assert "challenge.unanswered" in detectors(late)
    lie = [replace(m, energy_mj=m.energy_mj // 2) for m in gpu.last_minutes]
    # The registry refuses records that do not rebuild the report...
    body = b'{"minutes":[' + b",".join(m.to_bytes() for m in lie) + b"]}"
    refused = world.server.client.post(f"/v1/challenges/{number}/answer", content=body)
    assert refused.json()["reason"] == "report.minutes_mismatch"
    # ...so only a registry that stores them behind its API (or forges an answer) serves them.
    response = b'{"minutes":[' + b",".join(m.to_bytes() for m in lie) + b"]}"
    with world.registry.engine.begin() as conn:
        conn.execute(
            update(challenges)
            .where(challenges.c.id == number)
            .values(answered_us=1, response=response)
        )
    result = world.audit(at=quiet(world))
    (finding,) = [f for f in result.findings if f.detector == "challenge.mismatch"]
    assert finding.severity.value == "critical"
    assert finding.key == {"device": "gpu-0", "sequence": 0, "challenge": number}


def test_a_split_view_two_roots_for_one_size(world: World) -> None:
    world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=2)
    first = world.audit(at=quiet(world))
    size = first.tree_size
    _truncate(world, size - 1)
    world.registry.store.append([b'{"another": "history"}'])  # same size, another root
    result = world.audit(at=quiet(world))
    assert "log.split_view" in detectors(result)
    assert result.new_entries == 0


def test_a_registry_serving_a_smaller_tree_rolled_back(world: World) -> None:
    world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=2)
    size = world.audit(at=quiet(world)).tree_size
    _truncate(world, size - 1)
    result = world.audit(at=quiet(world))
    # It cannot prove its smaller tree a prefix of the larger one it signed: a refusal, not
    # proof of a second history (a timeout would read the same).
    assert {"log.rollback", "registry.answer_invalid"} <= set(detectors(result))
    assert result.new_entries == 0


def test_entries_that_do_not_give_the_checkpoint_root(world: World) -> None:
    world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=1)
    world.audit(at=quiet(world))
    world.report_all(rounds=1)
    size = world.registry.store.size()
    # The registry serves other bytes than it hashed for its newest entry.
    with world.registry.store.engine.begin() as conn:
        conn.execute(update(log_entries).where(log_entries.c.idx == size - 1).values(entry=b"{}"))
    result = world.audit(at=quiet(world))
    # Nothing beyond the verified prefix is read; the registry's figures are compared as of it.
    assert detectors(result) == ["log.entries_mismatch"]
    assert result.new_entries == 0


class _Underwitnessed(RegistrySource):
    """Offers its once-cosigned checkpoint as witnessed, whatever threshold is asked."""

    def witnessed_checkpoint(self, cosignatures: int = 1) -> bytes | None:
        return super().witnessed_checkpoint(1)


def test_a_checkpoint_offered_as_witnessed_without_its_cosignatures(world: World) -> None:
    world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=1)
    world.witness()
    other = Cosigner("witness.test/w2", generate_ed25519())
    config = world.config(witnesses=(WITNESS.verifier(), other.verifier()), witness_threshold=2)
    # An honest registry says it has no checkpoint with two cosignatures yet...
    assert world.audit(at=quiet(world), **_of(config)).findings == ()
    # ...one that passes off a checkpoint with one is caught.
    state = AuditState(world.state_dir)
    source = _Underwitnessed(world.server.url, world.token)
    try:
        result = Auditor(config, state).run(source, at=quiet(world))
    finally:
        source.close()
        state.close()
    assert detectors(result) == ["log.witnesses_missing"]


def _of(config: Any) -> dict[str, Any]:
    return {"witnesses": config.witnesses, "witness_threshold": config.witness_threshold}


def test_a_checkpoint_not_signed_by_the_log_key_stops_the_audit(world: World) -> None:
    world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=1)
    impostor = NoteSigner(ORIGIN, generate_ed25519())
    with pytest.raises(TrustError) as raised:
        world.audit(at=quiet(world), log_key=impostor.verifier())
    assert raised.value.reason == "audit.checkpoint_unverified"


def test_governance_that_does_not_verify_from_the_root(world: World) -> None:
    world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=1)
    result = world.audit(at=quiet(world), trusted_root=b"{}", policy=load_preset("pause"))
    (finding,) = [f for f in result.findings if f.detector == "governance.unverifiable"]
    assert finding.key == {"reason": "governance.unpublished"}


class _Hostile(RegistrySource):
    """The registry's answers, except the aggregates, which are ``answer`` (or an error)."""

    def __init__(self, world: World, answer: object) -> None:
        super().__init__(world.server.url, world.token)
        self.answer = answer

    def aggregates(self, day: Any, *, tree_size: int) -> object:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize(
    ("answer", "found"),
    [
        (TransportError("audit.registry_refused", "HTTP 500"), "registry.answer_invalid"),
        ([1], "registry.answer_invalid"),
        ([{"operator": "\ud800"}], "registry.answer_invalid"),
        ([{"operator": "lab-a"}, {"operator": "lab-a"}], "registry.answer_invalid"),
        ([{"operator": "lab-a", "devices": 2**60}], "accounting.mismatch"),
    ],
    ids=["refused", "not-objects", "surrogate-operator", "operator-twice", "huge-figure"],
)
def test_hostile_answers_are_findings_and_the_run_still_commits(
    world: World, answer: object, found: str
) -> None:
    gpu = world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=1)
    twin = gpu.report(
        sequence=0,
        previous="0" * 64,
        window_start=gpu.start - timedelta(minutes=5),
        power=300.0,
        advance=False,
    )
    world.registry.store.append([twin])  # a fork the run must not lose
    state = AuditState(world.state_dir)
    source = _Hostile(world, answer)
    try:
        result = Auditor(world.config(), state).run(source, at=quiet(world))
        assert signed_ok(result)
    finally:
        source.close()
        state.close()
    assert {"chain.fork", found} <= set(detectors(result))
    state = AuditState(world.state_dir)
    try:  # committed: the next run starts from it
        assert state.verified_size() == world.registry.store.size()
        assert {d["detector"] for d, _, _ in state.current_findings()} >= {"chain.fork", found}
    finally:
        state.close()


def signed_ok(result: Any) -> bool:
    return (
        result.signed is not None
        and open_findings(result.signed, AUDITOR_KEY.public_key)["findings"] is not None
    )


def test_a_challenge_answered_against_an_entry_the_registry_swapped(world: World) -> None:
    """The registry serves another report at the challenged index, with that report's own
    minute records: the auditor holds the registry to the leaf it verified, and the finding is
    the log's, not the device's (whose report the log committed to is unchanged)."""
    from tests.unit.registry.conftest import Device  # noqa: PLC0415

    gpu = world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=1)
    assert world.audit(at=quiet(world)).findings == ()
    (number,) = _challenge_all(world)
    index = world.registry.report("gpu-0", 0)[0]
    other = Device("gpu-0", start=gpu.start - timedelta(minutes=5))  # another key, same name
    forged = other.report(power=100.0)
    response = b'{"minutes":[' + b",".join(m.to_bytes() for m in other.last_minutes) + b"]}"
    with world.registry.engine.begin() as conn:
        conn.execute(update(log_entries).where(log_entries.c.idx == index).values(entry=forged))
        conn.execute(
            update(challenges)
            .where(challenges.c.id == number)
            .values(answered_us=1, response=response)
        )
    result = world.audit(at=quiet(world))
    assert "challenge.mismatch" not in detectors(result)
    (finding,) = [f for f in result.findings if f.detector == "log.entries_mismatch"]
    assert finding.subject == "log"
    assert finding.key == {"log_index": index}
    assert finding.figures["challenge"] == number
    # Its evidence is the entry as verified, proven against the audited root.
    (entry,) = finding.entries
    assert entry.log_index == index
    assert entry.leaf_hash.hex() == finding.figures["verified_leaf_hash"]
    InclusionProof(entry.log_index, entry.tree_size, entry.leaf_hash, entry.proof).verify(
        result.root_hash
    )
    assert world.challenge_statuses() == ["open"]  # not settled: asked again next run


def test_entries_that_are_not_text_are_read_back_exactly(world: World) -> None:
    world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=1)
    world.registry.store.append([b"\xff\xfe\x00 a binary governance target"])
    result = world.audit(at=quiet(world))
    assert result.findings == ()
    assert result.tree_size == world.registry.store.size()
