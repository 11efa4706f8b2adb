"""The ceremony of the acceptance line, through the library API.

7 parties at 4 of 7; propose a pause; 3 signatures (not in force); the 4th (in force once
published and witnessed); a permit under the pause needs the order quorum; lift; a second
order ends by itself at its sunset.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from brakepedal.errors import TrustError
from brakepedal.governance.documents import LiftOrder, PauseOrder, TrainingPermit
from brakepedal.governance.repository import proposal_status
from brakepedal.model.types import EntityId, Flop, LineageId, OrderId, PermitId

from .world import T0, World

DAY = timedelta(days=1)


def order(order_id: str, start_day: int, days: int) -> PauseOrder:
    return PauseOrder(
        order_id=OrderId(order_id),
        threshold_flop=Flop(10**25),
        jurisdictions=frozenset({"treaty-parties"}),
        effective_from=T0 + start_day * DAY,
        sunset=T0 + (start_day + days) * DAY,
        grace_seconds=600,
        reason="frontier training pause",
    )


def test_the_ceremony() -> None:
    world = World()
    world.bootstrap()
    pause = world.propose("pause-1", order("pause-1", 1, 90))
    pause = world.sign(pause, "party-1", "party-2", "party-3")
    status = proposal_status(world.files, pause)
    assert (len(status.signed), status.threshold, status.missing) == (3, 4, 1)
    assert not status.verified
    with pytest.raises(TrustError) as caught:
        world.publish(pause)
    assert caught.value.reason == "governance.quorum_not_met"
    assert world.view(T0 + 2 * DAY).orders_in_force(T0 + 2 * DAY) == ()

    pause = world.sign(pause, "party-7")
    assert proposal_status(world.files, pause).verified
    world.publish(pause)
    view = world.view(T0 + 2 * DAY - timedelta(hours=23))
    (in_force,) = view.orders_in_force(T0 + 2 * DAY)
    assert in_force.order_id == "pause-1"

    # A permit under the pause needs the order quorum: the permit authority alone cannot.
    permit = TrainingPermit(
        permit_id=PermitId("safety-eval"),
        serial=1,
        owner_group=EntityId("frontier-lab"),
        flop_budget=Flop(10**23),
        valid_from=T0 + 3 * DAY,
        valid_until=T0 + 10 * DAY,
        lineage=LineageId("atlas"),
        run=None,
        device_count=64,
        devices=None,
        conditions=("evaluation only",),
        under_order=OrderId("pause-1"),
    )
    proposal = world.sign(world.propose("permit-1", permit), "authority-1", "authority-2")
    assert not proposal_status(world.files, proposal).verified
    proposal = world.sign(proposal, "party-1", "party-2", "party-4", "party-5")
    world.publish(proposal, T0 + 3 * DAY)
    (valid,) = world.view(T0 + 4 * DAY).permits_valid(T0 + 4 * DAY)
    assert valid.under_order_quorum

    lift = LiftOrder(
        lift_id=OrderId("lift-1"),
        lifts=OrderId("pause-1"),
        effective_from=T0 + 20 * DAY,
        reason="risk addressed",
    )
    world.publish(
        world.sign(world.propose("lift-1", lift), "party-3", "party-4", "party-5", "party-6"),
        T0 + 19 * DAY,
    )
    second = world.sign(
        world.propose("pause-2", order("pause-2", 30, 10)),
        "party-1",
        "party-2",
        "party-3",
        "party-4",
    )
    world.publish(second, T0 + 19 * DAY)
    view = world.view(T0 + 19 * DAY + timedelta(hours=1))
    assert [o.order_id for o in view.orders_in_force(T0 + 19 * DAY)] == ["pause-1"]
    assert view.orders_in_force(T0 + 21 * DAY) == ()
    assert [o.order_id for o in view.orders_in_force(T0 + 35 * DAY)] == ["pause-2"]
    assert view.orders_in_force(T0 + 40 * DAY) == ()


def test_a_policy_version_needs_the_policy_quorum_and_names_its_file() -> None:
    import hashlib  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from brakepedal.governance.documents import PolicyVersion  # noqa: PLC0415
    from brakepedal.governance.repository import propose_document  # noqa: PLC0415
    from brakepedal.governance.view import policy_file_path  # noqa: PLC0415
    from brakepedal.model.types import PolicyId  # noqa: PLC0415

    world = World()
    world.bootstrap()
    text = (
        Path(__file__).resolve().parents[3] / "src/brakepedal/policy/presets/pause.toml"
    ).read_bytes()
    record = PolicyVersion(
        policy_id=PolicyId("pause"),
        version=1,
        media_type="application/toml",
        content_sha256=hashlib.sha256(text).hexdigest(),
        title="pause",
    )
    proposal = propose_document(
        world.files,
        "policy",
        record.target_path,
        record.to_bytes(),
        expires=T0 + 300 * DAY,
        attachments={policy_file_path(record): text},
    )
    proposal = world.sign(proposal, "party-1", "party-2", "party-3", "party-4", "party-5")
    assert not proposal_status(world.files, proposal).verified  # 5 of 7 is below 6 of 7
    world.publish(world.sign(proposal, "party-6"))
    ((version, content),) = world.view(T0 + DAY).policies()
    assert version.policy_id == "pause"
    assert content == text
