"""A run against a registry that lags, refuses, glitches, or proves less than asked.

Every test here is an honest world (real devices, real signed reports, a real registry over
HTTP) in which something ordinary happens: witnesses lag, a page comes back as an error, an
exported bundle is older than the state. None of it may read as a lying log or a lying device,
and the run must still commit. Next to each, the dishonest variant that must still be caught.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from brakepedal.audit.auditor import Auditor, AuditResult
from brakepedal.audit.findings import open_findings
from brakepedal.audit.source import BundleSource, RegistrySource, export_bundle
from brakepedal.audit.state import AuditState
from brakepedal.errors import InputError, TransportError
from brakepedal.registry.schema import challenges, cosigned_checkpoints
from tests.unit.audit.conftest import AUDITOR_KEY, World, detectors, quiet
from tests.unit.audit.test_auditor import _answer, _challenge_all, _truncate


def _run(world: World, source: RegistrySource, state_dir: Path | None = None) -> AuditResult:
    state = AuditState(state_dir or world.state_dir)
    try:
        return Auditor(world.config(), state).run(source, at=quiet(world))
    finally:
        source.close()
        state.close()


def _comparable(result: AuditResult) -> list[dict[str, Any]]:
    return sorted((f.to_json() for f in result.findings), key=lambda f: str(f["id"]))


# ---------------------------------------------------------------------- rollback


def test_a_witnessed_checkpoint_that_lags_the_newest_is_not_a_rollback(
    world: World, tmp_path: Path
) -> None:
    world.enrol("gpu-a1", "lab-a")
    world.report_all(rounds=2)
    world.witness()
    world.report_all(rounds=2)  # the witness has not cosigned these yet: normal
    first = world.audit(at=quiet(world))
    assert first.findings == ()
    assert first.witnessed_size is not None
    assert first.witnessed_size < first.tree_size
    world.report_all(rounds=1)  # honest growth, the witness still where it was
    second = world.audit(at=quiet(world))
    assert second.findings == (), [f.summary for f in second.findings]
    assert second.witnessed_size == first.witnessed_size
    # An incremental audit and a fresh one of the same log say the same.
    fresh = _run(world, RegistrySource(world.server.url, world.token), tmp_path / "fresh")
    assert _comparable(fresh) == _comparable(second) == []


def test_a_witnessed_checkpoint_behind_one_witnessed_before_is_a_rollback(world: World) -> None:
    world.enrol("gpu-a1", "lab-a")
    world.report_all(rounds=1)
    world.witness()
    earlier = world.registry.store.size()
    world.report_all(rounds=1)
    world.witness()
    first = world.audit(at=quiet(world))
    assert first.findings == ()
    assert first.witnessed_size == first.tree_size > earlier
    # The registry forgets its newest witnessed checkpoint, behind its API.
    with world.registry.engine.begin() as conn:
        conn.execute(
            delete(cosigned_checkpoints).where(cosigned_checkpoints.c.size == first.tree_size)
        )
    result = world.audit(at=quiet(world))
    assert detectors(result) == ["log.rollback"]
    (finding,) = result.findings
    assert finding.severity.value == "medium"
    assert finding.key == {"size": earlier, "seen": first.tree_size, "witnessed": True}
    assert result.witnessed_size == earlier
    assert result.new_entries == 0  # the newest checkpoint itself did not go back


# ---------------------------------------------------------------------- standing proofs


def test_a_standing_split_view_is_one_finding_in_the_signed_set(world: World) -> None:
    world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=2)
    first = world.audit(at=quiet(world))
    _truncate(world, first.tree_size - 1)
    world.registry.store.append([b'{"another": "history"}'])  # same size, another root
    proven = world.audit(at=quiet(world))
    assert detectors(proven) == ["log.split_view"]
    # It stands, and the registry still shows the other history: found again, named once.
    again = world.audit(at=quiet(world))
    assert detectors(again) == ["log.split_view"]
    assert again.findings[0].id == proven.findings[0].id
    assert again.signed is not None
    document = open_findings(again.signed, AUDITOR_KEY.public_key)
    assert Counter(f["id"] for f in document["findings"]) == {proven.findings[0].id: 1}
    state = AuditState(world.state_dir)
    try:
        assert len(state.standing()) == 1
    finally:
        state.close()


# ---------------------------------------------------------------------- refusals


class _Refusing(RegistrySource):
    """The registry's answers, except that ``what`` fails with ``error``."""

    def __init__(self, world: World, what: str, error: Exception) -> None:
        super().__init__(world.server.url, world.token)
        self.what, self.error = what, error

    def entries(self, start: int, end: int) -> list[bytes]:
        if self.what == "entries":
            raise self.error
        return super().entries(start, end)

    def witnessed_checkpoint(self, cosignatures: int = 1) -> bytes | None:
        if self.what == "witnessed":
            raise self.error
        return super().witnessed_checkpoint(cosignatures)


_ERRORS = {
    "refused": TransportError("audit.registry_refused", "HTTP 503"),
    "not-json": InputError("audit.answer_invalid", "/v1/log/entries: not JSON"),
}


@pytest.mark.parametrize("error", sorted(_ERRORS))
def test_entries_refused_or_malformed_are_a_finding_and_the_run_commits(
    world: World, error: str
) -> None:
    world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=2)
    world.witness()
    first = world.audit(at=quiet(world))
    assert first.findings == ()
    world.report_all(rounds=2)
    # Hours later (the devices reported meanwhile, in entries that cannot be read): no
    # device reads as silent from entries the auditor did not get to read.
    state = AuditState(world.state_dir)
    source = _Refusing(world, "entries", _ERRORS[error])
    try:
        result = Auditor(world.config(), state).run(source, at=quiet(world) + timedelta(hours=3))
    finally:
        source.close()
        state.close()
    assert detectors(result) == ["registry.answer_invalid"]
    (finding,) = result.findings
    assert finding.severity.value == "high"
    assert finding.key == {
        "what": "entries",
        "which": f"{first.tree_size}-{world.registry.store.size()}",
    }
    assert result.new_entries == 0
    assert result.tree_size == first.tree_size
    assert result.signed is not None
    state = AuditState(world.state_dir)
    try:  # committed, as of what was verified before
        assert state.verified_size() == first.tree_size
        assert [d["detector"] for d, _, _ in state.current_findings()] == [
            "registry.answer_invalid"
        ]
    finally:
        state.close()
    # The registry answers again: the entries are read, nothing is wrong.
    healthy = world.audit(at=quiet(world))
    assert healthy.findings == ()
    assert healthy.new_entries == world.registry.store.size() - first.tree_size


@pytest.mark.parametrize("error", sorted(_ERRORS))
def test_a_refused_witnessed_checkpoint_is_a_finding_and_the_run_goes_on(
    world: World, error: str
) -> None:
    world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=2)
    world.witness()
    result = _run(world, _Refusing(world, "witnessed", _ERRORS[error]))
    assert detectors(result) == ["registry.answer_invalid"]
    assert result.findings[0].key == {"what": "witnessed checkpoint", "which": "cosignatures=1"}
    assert result.witnessed_size is None
    # The newest checkpoint verified: its entries are read and committed.
    assert result.new_entries == world.registry.store.size()
    state = AuditState(world.state_dir)
    try:
        assert state.verified_size() == world.registry.store.size()
    finally:
        state.close()


# ---------------------------------------------------------------------- challenges


class _GlitchOnce(RegistrySource):
    """An honest registry whose one-entry page comes back as a proxy's error page, once."""

    glitched = False

    def entries(self, start: int, end: int) -> list[bytes]:
        if end - start == 1 and not self.glitched:
            self.glitched = True
            raise InputError("audit.answer_invalid", "/v1/log/entries: not JSON")
        return super().entries(start, end)


def test_a_challenged_entry_that_cannot_be_fetched_blames_nobody_and_is_asked_again(
    world: World,
) -> None:
    gpu = world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=1)
    world.witness()
    assert world.audit(at=quiet(world)).findings == ()
    (number,) = _challenge_all(world)
    _answer(world, number, gpu.last_minutes)  # the device answers honestly
    glitch = _run(world, _GlitchOnce(world.server.url, world.token))
    assert detectors(glitch) == ["registry.answer_invalid"]
    assert glitch.findings[0].subject == "registry"
    assert world.challenge_statuses() == ["open"]
    healthy = world.audit(at=quiet(world))
    assert healthy.findings == ()
    assert world.challenge_statuses() == ["verified"]


def test_an_answer_that_is_not_minute_records_is_the_registrys_not_the_devices(
    world: World,
) -> None:
    world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=1)
    assert world.audit(at=quiet(world)).findings == ()
    (number,) = _challenge_all(world)
    # The registry keeps, behind its API, an "answer" it would never have accepted.
    with world.registry.engine.begin() as conn:
        conn.execute(
            update(challenges)
            .where(challenges.c.id == number)
            .values(answered_us=1, response=b'{"minutes":[{"not":"a minute"}]}')
        )
    late = world.audit(at=quiet(world) + timedelta(hours=2))  # past the deadline, too
    assert _challenge_findings(late) == []  # neither a mismatch nor silence
    (finding,) = [f for f in late.findings if f.detector == "registry.answer_invalid"]
    assert finding.key == {"what": "challenge", "which": str(number)}
    assert world.challenge_statuses() == ["open"]


def test_a_challenge_answered_after_its_deadline_is_not_answered_in_time(world: World) -> None:
    gpu = world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=1)
    assert world.audit(at=quiet(world)).findings == ()
    (number,) = _challenge_all(world)
    unanswered = world.audit(at=quiet(world) + timedelta(hours=2))
    (silent,) = [f for f in unanswered.findings if f.detector == "challenge.unanswered"]
    # The device answers, honestly, two hours after it was asked (the registry's clock).
    _answer(world, number, gpu.last_minutes)
    with world.registry.engine.begin() as conn:
        requested = conn.execute(
            select(challenges.c.requested_us).where(challenges.c.id == number)
        ).scalar_one()
        conn.execute(
            update(challenges)
            .where(challenges.c.id == number)
            .values(answered_us=requested + 2 * 3600 * 1_000_000)
        )
    late = world.audit(at=quiet(world) + timedelta(hours=3))
    (finding,) = _challenge_findings(late)
    assert finding.id == silent.id  # the same finding: it was not answered in time
    assert finding.severity.value == "high"
    assert "2:00:00 after it was asked" in finding.summary
    assert world.challenge_statuses() == ["late"]
    # Settled: it stands in later runs without asking again.
    later = world.audit(at=quiet(world) + timedelta(hours=4))
    assert [f.id for f in _challenge_findings(later)] == [silent.id]


def _challenge_findings(result: AuditResult) -> list[Any]:
    return [f for f in result.findings if f.detector.startswith("challenge.")]


def test_a_challenge_answered_in_time_is_verified(world: World) -> None:
    gpu = world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=1)
    assert world.audit(at=quiet(world)).findings == ()
    (number,) = _challenge_all(world)
    _answer(world, number, gpu.last_minutes)
    # The auditor runs long after; the answer came in time by the registry's clock.
    result = world.audit(at=quiet(world) + timedelta(hours=3))
    assert "challenge.unanswered" not in detectors(result)
    assert world.challenge_statuses() == ["verified"]


# ---------------------------------------------------------------------- consistency


def test_an_older_honest_bundle_cannot_prove_consistency_and_proves_no_rewrite(
    world: World, tmp_path: Path
) -> None:
    world.enrol("gpu-a1", "lab-a")
    world.report_all(rounds=2)
    bundled = world.registry.store.size()
    source = RegistrySource(world.server.url, world.token)
    try:
        bundle = export_bundle(
            source,
            tmp_path / "bundle",
            size=bundled,
            checkpoint=source.checkpoint(),
            days=[],
        )
    finally:
        source.close()
    world.report_all(rounds=2)  # honest growth
    live = world.audit(at=quiet(world))
    assert live.findings == ()
    state = AuditState(world.state_dir)
    try:  # the same state, the older bundle
        result = Auditor(world.config(), state).run(BundleSource(bundle), at=quiet(world))
    finally:
        state.close()
    assert "log.inconsistent" not in detectors(result)
    (refused,) = [f for f in result.findings if f.detector == "registry.answer_invalid"]
    assert refused.key["what"] == "consistency proof"
    assert refused.key["which"] == f"{bundled}-{live.tree_size}"
    assert f"the bundle holds {bundled} entries" in str(refused.figures["detail"])
    assert result.new_entries == 0
    state = AuditState(world.state_dir)
    try:
        assert state.standing() == []
    finally:
        state.close()
    # The log is read again where it was left.
    world.report_all(rounds=1)
    again = world.audit(at=quiet(world))
    assert again.findings == ()
    assert again.new_entries == 1


def test_a_rewrite_behind_an_accepted_checkpoint_is_stated_the_right_way_round(
    world: World,
) -> None:
    world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=5)
    first = world.audit(at=quiet(world))
    assert first.findings == ()
    accepted = first.tree_size
    # The registry rewrites from entry 3, has its new history witnessed at 4, and grows it.
    _truncate(world, 3)
    world.registry.store.append([b'{"rewritten": 1}'])
    world.witness()
    world.registry.store.append([b'{"rewritten": %d}' % i for i in range(2, 6)])
    result = world.audit(at=quiet(world))
    found = {
        (f.key["old_size"], f.key["new_size"]): f
        for f in result.findings
        if f.detector == "log.inconsistent"
    }
    grown = world.registry.store.size()
    assert set(found) == {(4, accepted), (accepted, grown)}
    assert found[4, accepted].summary.startswith(
        f"the checkpoint of size {accepted} this auditor accepted is not an extension of "
        "the one of size 4 served now"
    )
    assert found[4, accepted].figures["served_size"] == 4
    assert found[accepted, grown].summary.startswith(
        f"the checkpoint of size {grown} served now is not an extension of the one of size "
        f"{accepted} this auditor accepted"
    )
    assert result.new_entries == 0
