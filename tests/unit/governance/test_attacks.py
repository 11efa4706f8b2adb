"""Named attacks on governance, each refused with its own reason."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from tuf.api.metadata import Metadata, TargetFile, Targets

from brakepedal.errors import BrakepedalError, InputError, TrustError
from brakepedal.governance import repository
from brakepedal.governance.agreement import build_root, build_targets
from brakepedal.governance.documents import PauseOrder, PolicyVersion, TrainingPermit
from brakepedal.governance.repository import (
    Proposal,
    latest_version,
    proposal_status,
    propose_metadata,
)
from brakepedal.model.types import EntityId, Flop, LineageId, OrderId, PermitId, PolicyId

from .world import T0, World

DAY = timedelta(days=1)
QUORUM = ("party-1", "party-2", "party-3", "party-4")


def order(order_id: str = "pause-1", *, start: int = 1, days: int = 90) -> PauseOrder:
    return PauseOrder(
        order_id=OrderId(order_id),
        threshold_flop=Flop(10**25),
        jurisdictions=frozenset({"treaty-parties"}),
        effective_from=T0 + start * DAY,
        sunset=T0 + (start + days) * DAY,
        grace_seconds=0,
        reason="test",
    )


@pytest.fixture
def world() -> World:
    made = World()
    made.bootstrap()
    return made


def published(
    world: World, document: PauseOrder | None = None, signers: tuple[str, ...] = QUORUM
) -> World:
    world.publish(world.sign(world.propose("p", document or order()), *signers))
    return world


def refused(call: object) -> BrakepedalError:
    with pytest.raises(BrakepedalError) as caught:
        call()  # type: ignore[operator]
    return caught.value


def test_one_signature_short_of_quorum(world: World) -> None:
    proposal = world.sign(world.propose("p", order()), *QUORUM[:3])
    assert refused(lambda: world.publish(proposal)).reason == "governance.quorum_not_met"
    # Written to the repository behind the publisher's back, the view refuses it too.
    forged = dict(world.files)
    forged["metadata/2.orders.json"] = proposal.metadata.to_bytes()
    forged["targets/orders/pause-1.json"] = order().to_bytes()
    world.files = forged
    world.record(world_snapshot(world))
    error = refused(lambda: world.view(T0 + DAY))
    assert error.reason == "governance.quorum_not_met"


def world_snapshot(world: World) -> dict[str, bytes]:
    """A snapshot and timestamp over whatever the repository holds (an operator gone rogue)."""
    from brakepedal.governance.repository import _new_snapshot  # noqa: PLC0415

    return _new_snapshot(world.files, world.operator, T0, timedelta(days=1), timedelta(days=30))


def test_two_signatures_by_one_key_count_once(world: World) -> None:
    proposal = world.sign(world.propose("p", order()), "party-1", "party-1", "party-1", "party-1")
    status = proposal_status(world.files, proposal)
    assert status.signed == ("party-1",)
    assert refused(lambda: world.publish(proposal)).reason == "governance.quorum_not_met"


def test_one_key_under_two_party_names_is_refused() -> None:
    world = World()
    parties = world.agreement.parties
    respelled = replace(parties[1], key=parties[0].key)
    with pytest.raises(InputError) as caught:
        replace(world.agreement, parties=(parties[0], respelled, *parties[2:]))
    assert caught.value.reason == "agreement.duplicate_key"


def test_signature_by_a_removed_party(world: World) -> None:
    old = world.agreement
    kept = old.parties[:6]
    new_agreement = replace(old, parties=kept, order_threshold=4, policy_threshold=5)
    both = ("party-1", "party-2", "party-3", "party-4", "party-5", "party-6")
    world.publish(
        world.sign(propose_metadata("root-2", build_root(new_agreement, version=2)), *both)
    )
    world.publish(
        world.sign(propose_metadata("targets-2", build_targets(new_agreement, version=2)), *both)
    )
    proposal = world.sign(world.propose("p", order()), "party-1", "party-2", "party-3", "party-7")
    status = proposal_status(world.files, proposal)
    assert "party-7" not in status.signed
    assert refused(lambda: world.publish(proposal)).reason == "governance.quorum_not_met"


def test_root_rotation_needs_the_old_quorum_too(world: World) -> None:
    new_agreement = replace(
        world.agreement, parties=world.agreement.parties[:6], policy_threshold=5
    )
    proposal = world.sign(
        propose_metadata("root-2", build_root(new_agreement, version=2)), *QUORUM, "party-5"
    )
    status = proposal_status(world.files, proposal)
    assert not status.verified  # 5 signatures meet the new 5-of-6 but not the old 6-of-7
    assert refused(lambda: world.publish(proposal)).reason == "governance.quorum_not_met"


def test_expired_order_is_not_in_force(world: World) -> None:
    published(world, order(start=1, days=10))
    view = world.view(T0 + 12 * DAY)
    assert view.orders_in_force(T0 + 12 * DAY) == ()
    assert [o.order_id for o in view.orders_in_force(T0 + 5 * DAY)] == ["pause-1"]


def test_rollback_to_an_older_version(world: World) -> None:
    published(world)
    newer = world.view(T0 + DAY).timestamp
    stale = dict(world.files)
    stale["metadata/timestamp.json"] = world.files["metadata/1.timestamp.json"]
    error = refused(
        lambda: world.view(T0 + DAY, heartbeat=False, repository=stale, previous_timestamp=newer)
    )
    assert error.reason == "governance.rollback"


def test_freeze_stale_metadata_past_expiry(world: World) -> None:
    published(world)
    error = refused(lambda: world.view(T0 + 3 * DAY, heartbeat=False))
    assert error.reason == "governance.expired"


def test_mix_and_match_of_versions(world: World) -> None:
    published(world, order("pause-1"))
    published(world, order("pause-2", start=5))
    world.heartbeat(T0 + DAY)
    mixed = dict(world.files)
    mixed["metadata/3.orders.json"] = world.files["metadata/2.orders.json"]
    error = refused(lambda: world.view(T0 + DAY, heartbeat=False, repository=mixed))
    assert error.reason == "governance.mix_and_match"


def test_order_with_quorum_not_in_the_log(world: World) -> None:
    published(world)
    world.heartbeat(T0 + DAY)
    evidence = world.evidence(skip=("metadata/2.orders.json",))
    error = refused(lambda: world.view(T0 + DAY, heartbeat=False, evidence=evidence))
    assert error.reason == "governance.not_in_log"
    assert "2.orders.json" in error.message


def test_order_under_a_checkpoint_with_too_few_cosignatures(world: World) -> None:
    published(world)
    world.heartbeat(T0 + DAY)
    evidence = world.evidence(world.checkpoint(witnesses=1))
    error = refused(lambda: world.view(T0 + DAY, heartbeat=False, evidence=evidence))
    assert error.reason == "governance.witness_quorum"


def test_document_swapped_after_signing(world: World) -> None:
    published(world)
    world.heartbeat(T0 + DAY)
    swapped = dict(world.files)
    swapped["targets/orders/pause-1.json"] = order(days=170).to_bytes()
    error = refused(lambda: world.view(T0 + DAY, heartbeat=False, repository=swapped))
    assert error.reason == "governance.document_mismatch"


def test_stale_proposal_cannot_overwrite_a_newer_version(world: World) -> None:
    first = world.sign(world.propose("a", order("pause-1")), *QUORUM)
    second = world.sign(world.propose("b", order("pause-2")), *QUORUM)
    world.publish(first)
    error = refused(lambda: world.publish(second))
    assert error.reason == "governance.proposal_stale"


def test_an_unsigned_root_is_not_publishable() -> None:
    world = World()
    error = refused(lambda: world.publish(propose_metadata("r", build_root(world.agreement))))
    assert isinstance(error, TrustError)
    assert error.reason == "governance.quorum_not_met"
    assert "0 of 6" in error.message


def _operator_snapshot(world: World, meta_changes: dict[str, int | None], at: datetime) -> None:
    """The operator alone signs a snapshot listing other role versions (or leaving one out)."""
    from tuf.api.metadata import MetaFile, Snapshot, Timestamp  # noqa: PLC0415

    from brakepedal.governance.repository import latest_version  # noqa: PLC0415

    current = (
        Metadata[Snapshot]
        .from_bytes(
            world.files[f"metadata/{latest_version(world.files, 'snapshot')}.snapshot.json"]
        )
        .signed
    )
    meta = dict(current.meta)
    for name, version in meta_changes.items():
        if version is None:
            meta.pop(name)
        else:
            meta[name] = MetaFile(version)
    version = current.version + 1
    snapshot = Metadata(Snapshot(version=version, expires=at + 30 * DAY, meta=meta))
    snapshot.sign(world.operator)
    stamp_version = latest_version(world.files, "timestamp") + 1
    stamp = Metadata(
        Timestamp(version=stamp_version, expires=at + DAY, snapshot_meta=MetaFile(version))
    )
    stamp.sign(world.operator)
    world.record(
        {
            f"metadata/{version}.snapshot.json": snapshot.to_bytes(),
            f"metadata/{stamp_version}.timestamp.json": stamp.to_bytes(),
            "metadata/timestamp.json": stamp.to_bytes(),
        }
    )


def test_operator_cannot_hide_a_role_by_leaving_it_out_of_the_snapshot(world: World) -> None:
    published(world)
    _operator_snapshot(world, {"orders.json": None}, T0 + DAY)
    error = refused(lambda: world.view(T0 + DAY, heartbeat=False))
    assert error.reason == "governance.role_missing"


def test_operator_cannot_roll_a_role_back_for_a_client_that_saw_more(world: World) -> None:
    published(world, order("pause-1"))
    published(world, order("pause-2", start=5))
    seen = world.view(T0 + DAY)
    assert len(seen.orders()) == 2
    _operator_snapshot(world, {"orders.json": 2}, T0 + DAY)
    error = refused(lambda: world.view(T0 + DAY, heartbeat=False, previous_versions=seen.versions))
    assert error.reason == "governance.rollback"
    assert "orders" in error.message


def test_unsigned_documents_in_a_proposal_are_refused(world: World) -> None:
    proposal = world.sign(world.propose("p", order()), *QUORUM)
    for extra in ("../../escaped.txt", "../metadata/1.root.json", "orders/other.json"):
        tampered = replace(proposal, documents={**proposal.documents, extra: b"attacker"})
        assert refused(lambda t=tampered: world.publish(t)).reason == "proposal.documents_unsigned"
    swapped = replace(proposal, documents={"orders/pause-1.json": order(days=100).to_bytes()})
    assert refused(lambda: world.publish(swapped)).reason == "governance.document_mismatch"


def test_targets_must_delegate_as_the_root_says(world: World) -> None:
    from brakepedal.governance.agreement import ROLE_ORDERS  # noqa: PLC0415

    targets = build_targets(world.agreement, version=2)
    assert targets.signed.delegations is not None
    assert targets.signed.delegations.roles is not None
    targets.signed.delegations.roles[ROLE_ORDERS].threshold = 1
    quorum = ("party-1", "party-2", "party-3", "party-4", "party-5", "party-6")
    world.publish(world.sign(propose_metadata("targets-2", targets), *quorum))
    error = refused(lambda: world.view(T0 + DAY))
    assert error.reason == "governance.delegations_mismatch"


# ------------------------------------------------- what only grants cannot break the view

AUTHORITY = ("authority-1", "authority-2")


def permit(serial: int = 1, *, under: str | None = None) -> TrainingPermit:
    return TrainingPermit(
        permit_id=PermitId(f"permit-{serial}"),
        serial=serial,
        owner_group=EntityId("lab"),
        flop_budget=Flop(10**24),
        valid_from=T0,
        valid_until=T0 + 30 * DAY,
        lineage=LineageId("atlas"),
        under_order=None if under is None else OrderId(under),
    )


def raw_proposal(world: World, role: str, files: dict[str, bytes]) -> Proposal:
    """The next version of ``role`` signing ``files`` at any path (no checks at all)."""
    current = Metadata[Targets].from_bytes(
        world.files[f"metadata/{latest_version(world.files, role)}.{role}.json"]
    )
    signed = current.signed
    signed.version += 1
    for path, data in files.items():
        signed.targets[path] = TargetFile.from_data(path, data, ["sha256"])
    new = {p: d for p, d in files.items() if f"targets/{p}" not in world.files}
    return Proposal(f"raw-{role}-{signed.version}", role, Metadata(signed), new)


def publish_unchecked(
    world: World, monkeypatch: pytest.MonkeyPatch, proposal: Proposal, *signers: str
) -> None:
    """Publish as a publisher that does not check documents would (an older one, or an
    operator's own tooling): the view must cope with what it writes."""
    with monkeypatch.context() as unchecked:
        unchecked.setattr(repository, "_check_documents", lambda *_: None)
        world.publish(world.sign(proposal, *signers))


PUBLISH_CASES: list[tuple[str, str, dict[str, bytes], tuple[str, ...], str]] = [
    (
        "junk at permits",
        "permits",
        {"permits/evil.json": b"{}"},
        AUTHORITY,
        "document.field_missing",
    ),
    (
        "not canonical",
        "permits",
        {"permits/evil.json": b'{"not": "a permit"}'},
        AUTHORITY,
        "canonical.not_canonical",
    ),
    (
        "a permit at another permit's path",
        "permits",
        {"permits/00000002-permit-2.json": permit(1).to_bytes()},
        AUTHORITY,
        "governance.path_mismatch",
    ),
    (
        "a quorum permit under permits",
        "permits",
        {"permits/00000001-permit-1.json": permit(1, under="pause-1").to_bytes()},
        AUTHORITY,
        "governance.path_mismatch",
    ),
    (
        "the permit authority signs an order path",
        "permits",
        {"orders/pause-9.json": order("pause-9").to_bytes()},
        AUTHORITY,
        "proposal.role_invalid",
    ),
    (
        "an order over the agreement's longest sunset",
        "orders",
        {"orders/pause-9.json": order("pause-9", days=181).to_bytes()},
        QUORUM,
        "document.sunset_too_long",
    ),
    (
        "a policy version without its policy file",
        "policies",
        {
            "policies/pause/1.json": PolicyVersion(
                policy_id=PolicyId("pause"),
                version=1,
                media_type="application/toml",
                content_sha256=hashlib.sha256(b"x").hexdigest(),
                title="pause",
            ).to_bytes()
        },
        tuple(f"party-{i}" for i in range(1, 7)),
        "governance.file_missing",
    ),
]


@pytest.mark.parametrize(
    ("role", "files", "signers", "reason"),
    [c[1:] for c in PUBLISH_CASES],
    ids=[c[0] for c in PUBLISH_CASES],
)
def test_publishing_checks_every_document_it_signs(
    world: World, role: str, files: dict[str, bytes], signers: tuple[str, ...], reason: str
) -> None:
    before = dict(world.files)
    proposal = world.sign(raw_proposal(world, role, files), *signers)
    error = refused(lambda: world.publish(proposal))
    assert error.reason == reason, error
    assert world.files == before


def test_publishing_refuses_to_resign_a_published_document_with_another_hash(
    world: World,
) -> None:
    world.publish(world.sign(world.propose("permit", permit(1)), *AUTHORITY))
    proposal = raw_proposal(world, "permits", {"permits/00000001-permit-1.json": b"other"})
    error = refused(lambda: world.publish(world.sign(proposal, *AUTHORITY)))
    assert error.reason == "governance.document_mismatch"


def test_the_view_drops_defective_grants_and_keeps_every_order(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Junk only the permit authority signed (or a grant that is not public) is left out with
    a recorded reason; the orders the order quorum published stay in force."""
    good = permit(1)
    publish_unchecked(
        world,
        monkeypatch,
        raw_proposal(
            world,
            "permits",
            {
                "permits/evil.json": b"{}",
                "orders/pause-9.json": order("pause-9").to_bytes(),  # not the authority's path
                good.target_path: good.to_bytes(),
            },
        ),
        *AUTHORITY,
    )
    quorum_permit = permit(2, under="pause-1")
    published(world)  # pause-1, by the order quorum
    world.publish(world.sign(world.propose("quorum-permit", quorum_permit), *QUORUM))
    at = T0 + 2 * DAY
    world.heartbeat(at)
    unlogged = f"targets/{quorum_permit.target_path}"
    view = world.view(at, heartbeat=False, evidence=world.evidence(skip=(unlogged,)))
    assert [o.order_id for o in view.orders_in_force(at)] == ["pause-1"]
    assert [p.permit_id for p in view.permits()] == ["permit-1"]
    assert {(d.path, d.role, d.reason) for d in view.dropped} == {
        ("orders/pause-9.json", "permits", "governance.path_not_delegated"),
        ("permits/evil.json", "permits", "document.field_missing"),
        (quorum_permit.target_path, "orders", "governance.not_in_log"),
    }
    assert all(str(d).startswith(f"{d.path} (signed by {d.role}) dropped") for d in view.dropped)
    # Before, any one of these made every view fail, and a gate let running jobs go on.


@pytest.mark.parametrize(
    ("path", "data", "reason"),
    [
        ("orders/junk.json", b"{}", "document.field_missing"),
        ("lifts/lift-1.json", order("lift-1").to_bytes(), "governance.path_mismatch"),
    ],
)
def test_a_defective_order_or_lift_still_refuses_the_view(
    world: World, monkeypatch: pytest.MonkeyPatch, path: str, data: bytes, reason: str
) -> None:
    """Leaving out an order or a lift could let training through: only grants are dropped."""
    publish_unchecked(world, monkeypatch, raw_proposal(world, "orders", {path: data}), *QUORUM)
    assert refused(lambda: world.view(T0 + DAY)).reason == reason


# ------------------------------------------------------------ document text in the log


def test_an_order_whose_text_is_not_in_the_log_does_nothing(world: World) -> None:
    """Only the metadata (which names the order by hash) is logged: not public, no effect."""
    proposal = world.sign(world.propose("p", order()), *QUORUM)
    new = repository.publish(world.files, proposal, operator=world.operator, at=T0)
    world.record({name: data for name, data in new.items() if not name.startswith("targets/")})
    world.files.update(new)
    world.heartbeat(T0 + DAY)
    error = refused(lambda: world.view(T0 + 2 * DAY))
    assert error.reason == "governance.not_in_log"
    assert "targets/orders/pause-1.json" in error.message


def test_a_proof_for_other_text_does_not_log_a_document(world: World) -> None:
    published(world)
    world.heartbeat(T0 + DAY)
    evidence = world.evidence()
    other = dict(evidence.proofs)
    other["targets/orders/pause-1.json"] = other["metadata/2.orders.json"]
    forged = replace(evidence, proofs=other)
    error = refused(lambda: world.view(T0 + DAY, heartbeat=False, evidence=forged))
    assert error.reason == "governance.not_in_log"
    assert "another entry" in error.message


def test_the_heartbeat_keeps_a_quiet_repository_fresh(world: World) -> None:
    """Weeks without a proposal: the operator's daily heartbeat re-signs the snapshot before
    it expires (the parties' own metadata lasts a year), so the view stays valid."""
    published(world)
    for day in range(1, 61):
        world.heartbeat(T0 + day * DAY)
    view = world.view(T0 + 60 * DAY, heartbeat=False)
    assert [o.order_id for o in view.orders_in_force(T0 + 60 * DAY)] == ["pause-1"]
