"""Named attacks on governance, each refused with its own reason."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

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
    forged["metadata/1.orders.json"] = proposal.metadata.to_bytes()
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
    mixed["metadata/2.orders.json"] = world.files["metadata/1.orders.json"]
    error = refused(lambda: world.view(T0 + DAY, heartbeat=False, repository=mixed))
    assert error.reason == "governance.mix_and_match"


def test_order_with_quorum_not_in_the_log(world: World) -> None:
    published(world)
    world.heartbeat(T0 + DAY)
    evidence = world.evidence(skip=("metadata/1.orders.json",))
    error = refused(lambda: world.view(T0 + DAY, heartbeat=False, evidence=evidence))
    assert error.reason == "governance.not_in_log"
    assert "1.orders.json" in error.message


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


def test_unsigned_metadata_bytes_do_not_parse_as_signed() -> None:
    world = World()
    root = build_root(world.agreement)
    assert isinstance(Metadata.from_bytes(root.to_bytes()), Metadata)
    assert isinstance(refused(lambda: world.publish(propose_metadata("r", root))), TrustError)
