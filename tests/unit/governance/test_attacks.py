"""Named attacks on governance, each refused with its own reason."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from tuf.api.metadata import Metadata

from brakepedal.errors import BrakepedalError, InputError, TrustError
from brakepedal.governance.agreement import build_root, build_targets
from brakepedal.governance.documents import PauseOrder
from brakepedal.governance.repository import proposal_status, propose_metadata
from brakepedal.model.types import Flop, OrderId

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
