"""The agent's governance refresh against a real registry over HTTP, on SQLite and PostgreSQL.

A governance world is bootstrapped into the registry through its HTTP endpoints, the witnesses
cosign the registry's checkpoint through ``/v1/log/cosignatures``, and a
:class:`GovernanceWatcher` verifies what the registry serves, names it for the reports, and
mirrors it where the gate's own loader reads it. A registry that serves a tampered file, a
rolled-back timestamp or an older checkpoint, or none at all, changes nothing but the counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from brakepedal.agent.delivery import RegistryClient
from brakepedal.agent.governance_sync import GovernanceWatcher
from brakepedal.cli.gate import _Governance
from brakepedal.governance.repository import latest_version
from brakepedal.governance.view import LogEvidence
from brakepedal.registry.schema import governance_files
from brakepedal.registry.service import Registry
from brakepedal.tlog.checkpoint import Checkpoint
from brakepedal.tlog.note import Note
from brakepedal.wire.report import GovernanceSeen
from tests.unit.governance.world import World
from tests.unit.registry.conftest import Server
from tests.unit.registry.governance_world import T0, RegistryWorld, pause_order

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
ORDER_QUORUM = ("party-1", "party-2", "party-3", "party-4")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def registry_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


class Replaying(httpx.BaseTransport):
    """The way to the registry, which can answer ``/v1/governance/evidence`` with old bytes."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.evidence: bytes | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.evidence is not None and request.url.path == "/v1/governance/evidence":
            return httpx.Response(200, content=self.evidence)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@dataclass
class Node:
    """A registry with a governance world in it, and one node's watcher of it."""

    world: RegistryWorld
    registry: Registry
    server: Server
    transport: Replaying
    client: RegistryClient
    watcher: GovernanceWatcher
    mirror: Path

    def witnessed(self, at: datetime) -> None:
        """The operator's heartbeat at ``at``, and the witnesses cosign the grown log."""
        self.world.heartbeat(at)
        self.world.witness(at)

    def publish_order(self, order_id: str, at: datetime) -> None:
        order = pause_order(order_id, T0 + DAY, T0 + 30 * DAY)
        proposal = self.world.sign(self.world.propose(order_id, order), *ORDER_QUORUM)
        self.world.publish(proposal, at)

    def size(self) -> int:
        note = self.server.client.get("/v1/log/checkpoint").content
        return Checkpoint.from_body(Note.from_bytes(note).text).size

    def set_file(self, path: str, data: bytes) -> None:
        """What the registry serves at ``path`` from now on (its database, changed)."""
        with self.registry.engine.begin() as conn:
            conn.execute(
                update(governance_files).where(governance_files.c.path == path).values(data=data)
            )

    def stored_file(self, path: str) -> bytes:
        with self.registry.engine.connect() as conn:
            data = conn.execute(
                select(governance_files.c.data).where(governance_files.c.path == path)
            ).scalar_one()
        return bytes(data)

    def gate_state(self, at: datetime) -> tuple[tuple[str, ...] | None, str]:
        """What the gate reads from the mirror at ``at``: the orders in force, and its status."""
        gate = _Governance(
            self.watcher.repo_path, self.watcher.root_path, self.watcher.evidence_path
        )
        orders, _, status = gate.state(at)
        return (None if orders is None else tuple(o.order_id for o in orders)), status


@pytest.fixture
def node(registry_url: str, tmp_path: Path) -> Iterator[Node]:
    world = RegistryWorld()
    registry = world.open_registry(registry_url)
    server = Server(registry)
    world.attach(registry, server)
    world.bootstrap()
    transport = Replaying()
    client = RegistryClient(server.url, transport=transport)
    mirror = tmp_path / "mirror"
    watcher = GovernanceWatcher(client, world.files["metadata/1.root.json"], mirror)
    yield Node(world, registry, server, transport, client, watcher, mirror)
    client.close()
    server.stop()
    registry.close()


def test_the_watcher_verifies_names_and_mirrors_the_registry_state(node: Node) -> None:
    at = T0 + HOUR
    node.world.heartbeat(at)
    # Published and logged, but no witness has cosigned the checkpoint yet: not in force.
    assert node.watcher.refresh(at) is None
    assert node.watcher.seen() is None
    assert node.watcher.stats.failures == {"governance.witness_quorum": 1}
    assert not node.watcher.repo_path.exists()
    assert node.gate_state(at) == (None, "file.not_found")  # the gate fails closed

    node.world.witness(at)
    # The registry also serves files no verified role signs: they are not mirrored.
    with node.registry.engine.begin() as conn:
        for path in ("targets/orders/unsigned.json", "metadata/notes.txt"):
            conn.execute(governance_files.insert().values(path=path, data=b"{}", log_index=0))
    view = node.watcher.refresh(at)
    assert view is not None
    timestamp = latest_version(node.world.files, "timestamp")
    assert view.versions["timestamp"] == timestamp
    assert node.watcher.seen() == GovernanceSeen(
        timestamp_version=timestamp, checkpoint_size=node.size()
    )
    assert node.watcher.seen() == GovernanceSeen(
        timestamp_version=timestamp, checkpoint_size=node.registry.store.size()
    )
    assert node.watcher.view is view
    assert node.watcher.stats.verified == 1
    assert node.watcher.stats.last_failure is None
    assert node.watcher.stats.last_verified_at == at

    # The mirror is what the gate loads: it verifies there, with nothing in force.
    assert node.gate_state(at) == ((), "verified")
    assert node.watcher.root_path.read_bytes() == node.world.files["metadata/1.root.json"]
    mirrored = LogEvidence.from_bytes(node.watcher.evidence_path.read_bytes())
    on_disk = {
        p.relative_to(node.watcher.repo_path).as_posix()
        for p in node.watcher.repo_path.rglob("*")
        if p.is_file()
    }
    assert set(view.used_files) <= on_disk
    assert not {"targets/orders/unsigned.json", "metadata/notes.txt"} & on_disk
    assert on_disk <= set(mirrored.proofs) | {"metadata/timestamp.json"}
    for name in on_disk:
        assert (node.watcher.repo_path / name).read_bytes() == node.world.files[name]
    assert not list((node.mirror / ".incoming").iterdir())

    # Nothing new: the same state again, and the mirror is left as it was.
    before = {p: p.stat().st_mtime_ns for p in node.mirror.rglob("*") if p.is_file()}
    assert node.watcher.refresh(at + HOUR) is not None
    assert node.watcher.seen() == GovernanceSeen(
        timestamp_version=timestamp, checkpoint_size=node.registry.store.size()
    )
    assert {p: p.stat().st_mtime_ns for p in node.mirror.rglob("*") if p.is_file()} == before


def test_a_pause_order_published_later_is_seen_after_the_next_refresh(node: Node) -> None:
    node.witnessed(T0 + HOUR)
    assert node.watcher.refresh(T0 + HOUR) is not None
    first = node.watcher.seen()
    assert first is not None
    first_files = {
        p.relative_to(node.watcher.repo_path).as_posix()
        for p in node.watcher.repo_path.rglob("*")
        if p.is_file()
    }

    node.publish_order("pause-1", T0 + 2 * HOUR)
    # In the registry and its log, but not under a witnessed checkpoint: the agent keeps
    # naming the last state it verified, and the gate's mirror stays as it was.
    assert node.watcher.refresh(T0 + 3 * HOUR) is None
    assert node.watcher.seen() == first
    assert node.watcher.stats.failures == {"governance.witness_quorum": 1}
    assert node.gate_state(T0 + 3 * HOUR) == ((), "verified")
    # Withheld for a day, the last verified timestamp expires: the gate fails closed, the
    # agent keeps naming the last state it verified.
    assert node.gate_state(T0 + DAY + 2 * HOUR) == (None, "governance.expired")
    assert node.watcher.seen() == first

    node.world.witness(T0 + 3 * HOUR)
    at = T0 + DAY + HOUR
    view = node.watcher.refresh(at)
    assert view is not None
    assert [o.order_id for o in view.orders_in_force(at)] == ["pause-1"]
    seen = node.watcher.seen()
    assert seen == GovernanceSeen(
        timestamp_version=latest_version(node.world.files, "timestamp"),
        checkpoint_size=node.registry.store.size(),
    )
    assert seen.timestamp_version > first.timestamp_version
    assert seen.checkpoint_size > first.checkpoint_size
    assert node.gate_state(at) == (("pause-1",), "verified")

    # Another state: the files of the first one that the newest does not use are gone,
    # those of the one before stay (a reader of the old timestamp finds all it names).
    node.witnessed(T0 + DAY + 2 * HOUR)
    assert node.watcher.refresh(T0 + DAY + 2 * HOUR) is not None
    on_disk = {
        p.relative_to(node.watcher.repo_path).as_posix()
        for p in node.watcher.repo_path.rglob("*")
        if p.is_file()
    }
    assert f"metadata/{first.timestamp_version}.timestamp.json" in first_files
    assert f"metadata/{first.timestamp_version}.timestamp.json" not in on_disk
    assert f"metadata/{seen.timestamp_version}.timestamp.json" in on_disk
    assert "metadata/1.orders.json" not in on_disk
    assert "targets/orders/pause-1.json" in on_disk
    proofs = LogEvidence.from_bytes(node.watcher.evidence_path.read_bytes()).proofs
    assert on_disk <= set(proofs) | {"metadata/timestamp.json"}
    assert node.gate_state(T0 + DAY + 2 * HOUR) == (("pause-1",), "verified")


def test_a_tampered_file_or_a_rolled_back_timestamp_is_refused(node: Node) -> None:
    node.publish_order("pause-1", T0 + HOUR)
    node.witnessed(T0 + 2 * HOUR)
    at = T0 + DAY + HOUR
    assert node.watcher.refresh(at) is not None
    good = node.watcher.seen()
    assert good is not None
    assert node.gate_state(at) == (("pause-1",), "verified")

    # The registry serves an order document its quorum did not sign.
    order = node.stored_file("targets/orders/pause-1.json")
    node.set_file("targets/orders/pause-1.json", order.replace(b"pause", b"Pause", 1))
    assert node.watcher.refresh(at) is None
    assert node.watcher.stats.failures == {"governance.document_mismatch": 1}
    assert node.watcher.seen() == good
    assert node.gate_state(at) == (("pause-1",), "verified")  # the mirror still verifies
    node.set_file("targets/orders/pause-1.json", order)

    # A newer timestamp, verified; then the registry serves the older one again (still
    # unexpired, in the log, witnessed): rollback, refused; the newer state is kept.
    old_timestamp = node.stored_file("metadata/timestamp.json")
    node.witnessed(T0 + DAY)
    assert node.watcher.refresh(at) is not None
    newer = node.watcher.seen()
    assert newer is not None
    assert newer.timestamp_version == good.timestamp_version + 1
    node.set_file("metadata/timestamp.json", old_timestamp)
    assert node.watcher.refresh(at) is None
    assert node.watcher.stats.failures["governance.rollback"] == 1
    assert node.watcher.seen() == newer
    assert node.gate_state(at) == (("pause-1",), "verified")

    # Without the memory of the newer timestamp, the old one would have verified; an agent
    # restarted on the same mirror remembers it.
    forgetful = GovernanceWatcher(
        node.client, node.world.files["metadata/1.root.json"], node.mirror.parent / "fresh"
    )
    assert forgetful.refresh(at) is not None
    assert forgetful.seen() == GovernanceSeen(
        timestamp_version=good.timestamp_version, checkpoint_size=newer.checkpoint_size
    )
    restarted = GovernanceWatcher(
        node.client, node.world.files["metadata/1.root.json"], node.mirror
    )
    assert restarted.refresh(at) is None
    assert restarted.stats.failures == {"governance.rollback": 1}
    assert restarted.seen() is None


def test_an_older_checkpoint_or_no_registry_changes_nothing(node: Node) -> None:
    node.witnessed(T0 + HOUR)
    assert node.watcher.refresh(T0 + HOUR) is not None
    old_evidence = node.server.client.get("/v1/governance/evidence").content
    node.registry.store.append([b"another entry: a report, an enrolment"])
    node.world.witness(T0 + HOUR)
    assert node.watcher.refresh(T0 + HOUR) is not None
    grown = node.watcher.seen()
    assert grown is not None
    assert grown.checkpoint_size == node.registry.store.size()

    # The same files under the older (witnessed, valid) checkpoint: the log went backwards.
    node.transport.evidence = old_evidence
    assert node.watcher.refresh(T0 + 2 * HOUR) is None
    assert node.watcher.stats.failures == {"governance_sync.checkpoint_rollback": 1}
    # Something that is not evidence at all.
    node.transport.evidence = b"<html>maintenance</html>"
    assert node.watcher.refresh(T0 + 2 * HOUR) is None
    assert node.watcher.stats.failures["json.invalid"] == 1
    node.transport.evidence = None

    # The registry gone: counted, the last state kept, and refresh does not raise.
    node.server.stop()
    assert node.watcher.refresh(T0 + 2 * HOUR) is None
    assert node.watcher.stats.failures["delivery.unreachable"] == 1
    assert node.watcher.seen() == grown
    assert node.watcher.stats.refreshes == 5
    assert node.watcher.stats.verified == 2
    assert node.watcher.stats.last_failure is not None
    assert node.watcher.stats.last_failure.startswith("delivery.unreachable: ")
    assert node.gate_state(T0 + 2 * HOUR) == ((), "verified")


# ---------------------------------------------------------------------- without a registry


class Canned(RegistryClient):
    """A registry client that answers from a governance world in memory, or fails."""

    def __init__(self, world: World, failure: Exception | None = None) -> None:
        super().__init__("http://registry.invalid")
        self.world = world
        self.failure = failure

    def governance_files(self) -> dict[str, bytes]:
        if self.failure is not None:
            raise self.failure
        return dict(self.world.files)

    def governance_evidence(self) -> bytes:
        return self.world.evidence().to_bytes()


def test_failures_of_every_kind_are_counted_never_raised(tmp_path: Path) -> None:
    world = World()
    world.bootstrap()
    world.heartbeat(T0 + HOUR)
    root = world.files["metadata/1.root.json"]
    failures: list[tuple[Exception, str]] = [
        (ValueError("Expecting value"), "governance_sync.answer_invalid"),
        (RuntimeError("a bug"), "governance_sync.unexpected"),
    ]
    for failure, reason in failures:
        watcher = GovernanceWatcher(Canned(world, failure), root, tmp_path / reason)
        assert watcher.refresh(T0 + HOUR) is None
        assert watcher.stats.failures == {reason: 1}
        assert watcher.seen() is None

    # A mirror that cannot be written: the state is not taken as seen.
    blocked = tmp_path / "blocked"
    blocked.write_bytes(b"a file where the mirror's folder should be")
    watcher = GovernanceWatcher(Canned(world), root, blocked)
    assert watcher.refresh(T0 + HOUR) is None
    assert watcher.stats.failures == {"governance_sync.mirror_failed": 1}
    assert watcher.seen() is None

    # The same world, a writable mirror: verified.
    watcher = GovernanceWatcher(Canned(world), root, tmp_path / "mirror")
    assert watcher.refresh(T0 + HOUR) is not None
    seen = watcher.seen()
    assert seen is not None
    assert seen.timestamp_version == latest_version(world.files, "timestamp")


def test_an_unreadable_mirror_state_is_ignored(tmp_path: Path) -> None:
    world = World()
    world.bootstrap()
    world.heartbeat(T0 + HOUR)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for junk in (b"not json", b'{"format": "something else"}'):
        (mirror / "state.json").write_bytes(junk)
        watcher = GovernanceWatcher(Canned(world), world.files["metadata/1.root.json"], mirror)
        assert watcher.refresh(T0 + HOUR) is not None
    # And what it wrote is read back as the anchors of the next start.
    restarted = GovernanceWatcher(Canned(world), world.files["metadata/1.root.json"], mirror)
    assert restarted.refresh(T0 + HOUR) is not None
    assert restarted.seen() == watcher.seen()


def test_the_agent_names_the_verified_state_in_its_reports(node: Node, tmp_path: Path) -> None:
    from brakepedal.accounting.catalogue import default_catalogue  # noqa: PLC0415
    from brakepedal.agent.identity import load_or_create_identities  # noqa: PLC0415
    from brakepedal.agent.runner import Agent, Clock  # noqa: PLC0415
    from brakepedal.agent.spool import Spool  # noqa: PLC0415
    from brakepedal.agent.telemetry import SimulatedBackend  # noqa: PLC0415
    from brakepedal.crypto.dsse import parse_envelope  # noqa: PLC0415
    from brakepedal.wire.report_format import parse_report  # noqa: PLC0415
    from tests.unit.registry.conftest import software_enrolments  # noqa: PLC0415

    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    # Published as the agent's clock starts: a heartbeat of T0 (two days back) has expired.
    node.witnessed(start)
    node.world.clock.moment = start + timedelta(hours=1)  # the registry's clock: now
    spec = default_catalogue().get("nvidia-h100-sxm5-80gb")
    backend = SimulatedBackend.synthetic(spec, "training", devices=2, start=start, seed=3)
    identities = load_or_create_identities(tmp_path / "agent", backend.devices())
    spool_path = tmp_path / "agent" / "spool.sqlite3"
    agent = Agent(
        backend=backend,
        spool=Spool(spool_path),
        deliver_spool=Spool(spool_path),
        identities=identities,
        client=node.client,
        clock=Clock(start, 600.0),
        window=timedelta(minutes=1),
        deliver_every=0.05,
        watcher=node.watcher,
        governance_every=0.05,
    )
    agent.enrol(software_enrolments(identities))
    agent.start()
    agent.wait(1.5)
    agent.stop()
    seen = node.watcher.seen()
    assert seen is not None, node.watcher.stats
    named = [
        parse_report(parse_envelope(r.envelope).payload).governance
        for i in identities
        for r in agent.spool.reports(i.device)
    ]
    assert named
    assert named[-1] == seen
    assert node.registry.counts()["reports"] == len(named), (agent.stats, node.registry.counts())
