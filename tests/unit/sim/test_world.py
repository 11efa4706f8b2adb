"""The simulated world: workloads scheduled to the minute, and ownership groups formed by the
accounting's control rule (as the auditor forms them)."""

from __future__ import annotations

from datetime import timedelta

from brakepedal.accounting.catalogue import default_catalogue
from brakepedal.sim.scenario import parse_scenario
from brakepedal.sim.world import World

ONE_DAY = """format: brakepedal.scenario
name: t
days: 1
window_minutes: 60
entities: [{id: lab-a}]
clusters: [{id: c1, entity: lab-a, devices: 2}]
workloads:
 - {id: short, kind: pretraining, cluster: c1, devices: 1, lineage: s, start_hour: 10.25,
    hours: 0.5}
 - {id: late, kind: pretraining, cluster: c1, devices: 1, first: 1, lineage: l, start_hour: 2.5,
    hours: 1}
"""


def _busy(world: World, device: int) -> dict[float, int]:
    """Busy minutes of ``device`` per window (by its start hour), where any."""
    out = {}
    for start in world.windows():
        work = world.planned(world.devices[device], start)
        busy = sum(shape.kind != "idle" for shape in work.shapes)
        if busy:
            out[(start - world.scenario.start) / timedelta(hours=1)] = busy
    return out


def test_workloads_run_to_the_minute_inside_their_windows() -> None:
    """A job from hour 10.25 for half an hour runs 30 minutes (it ran none when scheduled by
    the windows' first minutes); one from 2.5 for an hour runs the second half of one window
    and the first half of the next."""
    world = World(parse_scenario(ONE_DAY), default_catalogue())
    assert _busy(world, 0) == {10.0: 30}
    assert _busy(world, 1) == {2.0: 30, 3.0: 30}
    start = world.scenario.at(10)
    work = world.planned(world.devices[0], start)
    assert work.job == "short"
    assert work.training
    kinds = [shape.kind for shape in work.shapes]
    assert kinds[:15] == ["idle"] * 15
    assert kinds[45:] == ["idle"] * 15
    assert "idle" not in kinds[15:45]


def test_whole_windows_are_scheduled_as_before() -> None:
    text = ONE_DAY.replace("start_hour: 10.25,\n    hours: 0.5", "start_hour: 10, hours: 2")
    world = World(parse_scenario(text), default_catalogue())
    assert _busy(world, 0) == {10.0: 60, 11.0: 60}


def _world(share: float, *, middle: float = 1.0) -> World:
    scenario = parse_scenario(
        f"""format: brakepedal.scenario
name: t
days: 1
entities:
  - {{id: lab-a}}
  - {{id: mino, owner: lab-a, share: {share}}}
  - {{id: deep, owner: mino, share: {middle}}}
clusters: [{{id: c1, entity: mino, devices: 1}}]
"""
    )
    return World(scenario, default_catalogue())


def test_a_minority_holding_is_no_control() -> None:
    """30% of mino's votes do not make it part of lab-a's group (the accounting's rule, more
    than one half, which the auditor applies): mino and what it controls form their own."""
    world = _world(0.3)
    assert world.root("mino") == "mino"
    assert world.group("lab-a") == {"lab-a"}
    assert world.group("deep") == {"mino", "deep"}
    assert world.root("deep") == "mino"


def test_a_majority_or_whole_holding_is_control_through_the_chain() -> None:
    for share in (1.0, 0.51):
        world = _world(share)
        assert world.root("deep") == "lab-a"
        assert world.group("mino") == {"lab-a", "mino", "deep"}
    # Exactly one half is not more than one half.
    assert _world(1.0, middle=0.5).group("deep") == {"deep"}


def test_the_auditor_reads_the_holdings_the_world_groups_by() -> None:
    world = _world(0.3)
    assert {(str(h.holder), str(h.held)) for h in world.holdings} == {
        ("lab-a", "mino"),
        ("mino", "deep"),
    }
