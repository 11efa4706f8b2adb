"""The registry's governance endpoints over real HTTP, on SQLite and PostgreSQL.

Proposals signed by the parties are POSTed to ``/v1/governance/proposals``; the registry
publishes them as the operator and logs every file it writes in the same transaction; the
witnesses cosign through ``/v1/log/cosignatures``; ``/v1/governance/evidence`` proves every
file under the newest checkpoint. Refusals leave nothing behind, neither a file nor a log entry.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from tuf.api.metadata import Metadata, Root, Timestamp

from brakepedal.crypto.keys import generate_ed25519
from brakepedal.governance import repository
from brakepedal.governance.agreement import build_root, build_targets
from brakepedal.governance.documents import TrainingPermit
from brakepedal.governance.repository import latest_version, propose_metadata
from brakepedal.governance.view import LogEvidence
from brakepedal.model.types import EntityId, Flop, LineageId, PermitId
from brakepedal.registry import service
from brakepedal.registry.service import Registry
from brakepedal.tlog.checkpoint import open_checkpoint
from brakepedal.tlog.cosignature import Cosigner
from brakepedal.tlog.merkle import leaf_hash
from brakepedal.tlog.note import Note, NoteSignature
from tests.unit.registry.conftest import LOG_SIGNER, ORIGIN, Server, make_registry
from tests.unit.registry.governance_world import T0, RegistryWorld, pause_order

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
ORDER_QUORUM = ("party-1", "party-2", "party-3", "party-4")
ROOT_QUORUM = ("party-1", "party-2", "party-3", "party-4", "party-5", "party-6")


@dataclass
class Site:
    world: RegistryWorld
    registry: Registry
    server: Server

    @property
    def http(self) -> httpx.Client:
        return self.server.client

    def files(self) -> dict[str, bytes]:
        return self.registry.governance_files()

    def evidence(self) -> LogEvidence:
        answer = self.http.get("/v1/governance/evidence")
        assert answer.status_code == 200, answer.text
        return LogEvidence.from_bytes(answer.content)

    def admin(self, name: str = "ops") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.registry.add_credential(name, 'admin')}"}


@pytest.fixture
def site(registry_url: str) -> Iterator[Site]:
    world = RegistryWorld()
    registry = world.open_registry(registry_url)
    server = Server(registry)
    world.attach(registry, server)
    yield Site(world, registry, server)
    server.stop()
    registry.close()


def order_proposal(world: RegistryWorld, order_id: str, *signers: str) -> bytes:
    order = pause_order(order_id, T0 + DAY, T0 + 30 * DAY)
    return world.sign(world.propose(order_id, order), *signers).to_bytes()


def test_publishing_with_quorum_logs_every_file(site: Site) -> None:
    world = site.world
    world.bootstrap()
    order = world.sign(
        world.propose("pause-1", pause_order("pause-1", T0 + DAY, T0 + 30 * DAY)), *ORDER_QUORUM
    )
    answer = world.post(order, T0 + HOUR)
    assert answer.status_code == 200, answer.text
    published = answer.json()["published"]
    assert sorted(published) == [
        "metadata/2.orders.json",
        "metadata/5.snapshot.json",
        "metadata/5.timestamp.json",
        "targets/orders/pause-1.json",
    ]
    world.sync()
    world.witness(T0 + HOUR)

    files = site.files()
    index = site.http.get("/v1/governance/files").json()["files"]
    assert index == sorted(files)
    for name in index:
        served = site.http.get(f"/v1/governance/files/{name}")
        assert served.status_code == 200
        assert served.content == files[name]
    missing = site.http.get("/v1/governance/files/metadata/9.root.json")
    assert (missing.status_code, missing.json()["reason"]) == (404, "registry.not_found")

    # Every file is a log entry (the timestamp alias is its versioned file's entry), and its
    # inclusion proof leads to the root of the signed, witnessed checkpoint.
    evidence = site.evidence()
    signed = open_checkpoint(evidence.checkpoint, LOG_SIGNER.verifier(), origin=ORIGIN)
    assert signed.checkpoint.size == site.registry.store.size() == len(files) - 1
    assert set(evidence.proofs) == set(files)
    for name, data in files.items():
        proof = evidence.proofs[name]
        assert site.registry.log.entry(proof.log_index) == data
        assert proof.leaf_hash == leaf_hash(data)
        assert proof.tree_size == signed.checkpoint.size
        proof.verify(signed.checkpoint.root_hash)
    assert (
        evidence.proofs["metadata/timestamp.json"] == evidence.proofs["metadata/5.timestamp.json"]
    )
    for name, log_index in published.items():
        assert evidence.proofs[name].log_index == log_index

    view = world.view(T0 + 2 * HOUR)
    assert view.agreement.log_origin == ORIGIN
    assert [o.order_id for o in view.orders_in_force(T0 + 2 * DAY)] == ["pause-1"]


def test_a_proposal_without_quorum_is_refused_and_leaves_nothing(site: Site) -> None:
    world = site.world
    world.bootstrap()
    files, size = site.files(), site.registry.store.size()

    short = order_proposal(world, "pause-1", "party-1", "party-2", "party-3")
    answer = site.http.post("/v1/governance/proposals", content=short)
    assert (answer.status_code, answer.json()["reason"]) == (422, "governance.quorum_not_met")
    assert "3 of 4" in answer.json()["detail"]
    # The permit authority cannot sign orders, nor count towards their quorum.
    others = order_proposal(world, "pause-1", "authority-1", "authority-2", "party-1", "party-2")
    answer = site.http.post("/v1/governance/proposals", content=others)
    assert answer.json()["reason"] == "governance.quorum_not_met"
    # A new root needs 6 of 7 (of the old root and of the new).
    root = world.sign(propose_metadata("root-2", _next_root(world)), *ROOT_QUORUM[:5])
    answer = site.http.post("/v1/governance/proposals", content=root.to_bytes())
    assert (answer.status_code, answer.json()["reason"]) == (422, "governance.quorum_not_met")
    # Not a proposal at all.
    for body in (b"{}", b"not json", b'{"format": "brakepedal.governance-proposal"}'):
        answer = site.http.post("/v1/governance/proposals", content=body)
        assert answer.status_code == 400, answer.text

    assert site.files() == files
    assert site.registry.store.size() == size

    full = order_proposal(world, "pause-1", *ORDER_QUORUM)
    assert site.http.post("/v1/governance/proposals", content=full).status_code == 200
    assert site.registry.store.size() == size + 4


def _next_root(world: RegistryWorld) -> Metadata[Root]:
    root = build_root(world.agreement)
    root.signed.version = 2
    return root


def test_a_stale_proposal_is_refused(site: Site) -> None:
    world = site.world
    world.bootstrap()
    # Two orders proposed on the same orders version 1: the second is stale once the first is
    # published, and must be proposed again on top of it.
    first = order_proposal(world, "pause-1", *ORDER_QUORUM)
    second = order_proposal(world, "pause-2", *ORDER_QUORUM)
    assert site.http.post("/v1/governance/proposals", content=first).status_code == 200
    files, size = site.files(), site.registry.store.size()
    answer = site.http.post("/v1/governance/proposals", content=second)
    assert (answer.status_code, answer.json()["reason"]) == (400, "governance.proposal_stale")
    # So is a replayed proposal of a version already published.
    targets = world.sign(
        propose_metadata("targets-1", build_targets(world.agreement)), *ROOT_QUORUM
    )
    answer = site.http.post("/v1/governance/proposals", content=targets.to_bytes())
    assert (answer.status_code, answer.json()["reason"]) == (400, "governance.proposal_stale")
    assert site.files() == files
    assert site.registry.store.size() == size

    world.sync()
    again = order_proposal(world, "pause-2", *ORDER_QUORUM)
    assert site.http.post("/v1/governance/proposals", content=again).status_code == 200
    world.sync()
    view = world.view(T0 + HOUR)
    assert sorted(o.order_id for o in view.orders()) == ["pause-1", "pause-2"]


def test_timestamp_refresh_needs_an_admin(site: Site) -> None:
    world = site.world
    admin = site.admin()
    empty = site.http.post("/v1/governance/timestamp", headers=admin)
    assert (empty.status_code, empty.json()["reason"]) == (400, "governance.repository_empty")
    world.bootstrap()
    files, size = site.files(), site.registry.store.size()
    auditor = {"Authorization": f"Bearer {site.registry.add_credential('auditor', 'auditor')}"}
    for headers, status, reason in (
        ({}, 401, "registry.credential_missing"),
        ({"Authorization": "Bearer bp_nobody"}, 401, "registry.credential_invalid"),
        (auditor, 403, "registry.role_insufficient"),
    ):
        answer = site.http.post("/v1/governance/timestamp", headers=headers)
        assert (answer.status_code, answer.json()["reason"]) == (status, reason)
    assert site.files() == files
    assert site.registry.store.size() == size

    version = latest_version(files, "timestamp")
    world.clock.moment = T0 + 20 * HOUR
    answer = site.http.post("/v1/governance/timestamp", headers=admin)
    assert answer.status_code == 200, answer.text
    name = f"metadata/{version + 1}.timestamp.json"
    assert answer.json() == {"published": {name: size}}
    now = site.files()
    assert set(now) - set(files) == {name}
    assert now["metadata/timestamp.json"] == now[name] == site.registry.log.entry(size)
    timestamp: Metadata[Timestamp] = Metadata.from_bytes(now[name])
    assert timestamp.signed.expires == T0 + 20 * HOUR + DAY
    assert timestamp.signed.snapshot_meta.version == latest_version(now, "snapshot")
    # The heartbeat keeps the repository verifiable past the first timestamp's expiry.
    world.sync()
    world.witness(T0 + 20 * HOUR)
    assert world.view(T0 + DAY + HOUR, heartbeat=False).versions["timestamp"] == version + 1


def test_a_registry_without_a_governance_operator_refuses(registry_url: str) -> None:
    world = RegistryWorld()
    registry = make_registry(registry_url)
    server = Server(registry)
    try:
        root = world.sign(propose_metadata("root-1", build_root(world.agreement)), *ROOT_QUORUM)
        answer = server.client.post("/v1/governance/proposals", content=root.to_bytes())
        assert (answer.status_code, answer.json()["reason"]) == (
            400,
            "registry.governance_disabled",
        )
        admin = {"Authorization": f"Bearer {registry.add_credential('ops', 'admin')}"}
        answer = server.client.post("/v1/governance/timestamp", headers=admin)
        assert (answer.status_code, answer.json()["reason"]) == (
            400,
            "registry.governance_disabled",
        )
        assert server.client.get("/v1/governance/files").json() == {"files": []}
        assert registry.store.size() == 0
    finally:
        server.stop()
        registry.close()


# ---------------------------------------------------------------------- known defects


def _permit_proposal(world: RegistryWorld) -> bytes:
    permit = TrainingPermit(
        permit_id=PermitId("eval-permit"),
        serial=1,
        owner_group=EntityId("frontier-lab"),
        flop_budget=Flop(10**23),
        valid_from=T0,
        valid_until=T0 + 10 * DAY,
        lineage=LineageId("atlas"),
    )
    proposal = world.propose("permit-1", permit)
    return world.sign(proposal, "authority-1", "authority-2").to_bytes()


def test_concurrent_publishes_both_take_effect(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    world = site.world
    world.bootstrap()
    order = order_proposal(world, "pause-1", *ORDER_QUORUM)
    permit = _permit_proposal(world)
    # Both requests compute their files before either stores them (if the registry lets
    # them: a registry that serialises publishing makes the first wait out the barrier).
    barrier = threading.Barrier(2, timeout=1.0)
    real = repository.publish

    def together(*args: object, **kwargs: object) -> dict[str, bytes]:
        files = real(*args, **kwargs)  # type: ignore[arg-type]
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        return files

    monkeypatch.setattr(service, "publish", together)

    def post(body: bytes) -> int:
        with httpx.Client(base_url=site.server.url, timeout=30) as client:
            return client.post("/v1/governance/proposals", content=body).status_code

    with ThreadPoolExecutor(2) as pool:
        statuses = list(pool.map(post, [order, permit]))
    assert statuses == [200, 200]
    world.sync()
    view = world.view(T0 + HOUR)
    assert [o.order_id for o in view.orders()] == ["pause-1"]
    assert [p.permit_id for p in view.permits()] == ["eval-permit"]


def test_a_forged_cosignature_is_refused_and_does_not_poison_the_evidence(site: Site) -> None:
    world = site.world
    world.bootstrap()
    world.heartbeat(T0 + HOUR)
    world.witness(T0 + HOUR)
    note = Note.from_bytes(site.http.get("/v1/log/checkpoint").content)
    (log_line,) = [s for s in note.signatures if s.name == ORIGIN]
    genuine = next(s for s in note.signatures if s.name == world.witnesses[0].name)
    forged = NoteSignature(genuine.name, genuine.key_id, bytes(len(genuine.signature)))
    answer = site.http.post(
        "/v1/log/cosignatures", content=Note(note.text, (log_line, forged)).to_bytes()
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["reason"] == "registry.cosignature_unknown"
    # A witness the registry does not know is not stored either.
    stranger = Cosigner("witness.elsewhere/w9", generate_ed25519())
    line = stranger.cosign(note.text, int((T0 + HOUR).timestamp()))
    answer = site.http.post(
        "/v1/log/cosignatures", content=Note(note.text, (log_line, line)).to_bytes()
    )
    assert (answer.status_code, answer.json()["reason"]) == (422, "registry.cosignature_unknown")
    assert site.http.get("/v1/log/checkpoint").content == note.to_bytes()
    assert world.view(T0 + HOUR, heartbeat=False).versions["timestamp"] == 5


def test_evidence_stays_witnessed_while_the_log_grows(site: Site) -> None:
    world = site.world
    world.bootstrap()
    world.heartbeat(T0 + HOUR)
    world.witness(T0 + HOUR)
    witnessed = site.registry.store.size()
    site.registry.store.append([b"a usage report", b"an enrolment"])
    evidence = site.evidence()
    signed = open_checkpoint(evidence.checkpoint, LOG_SIGNER.verifier(), origin=ORIGIN)
    assert signed.checkpoint.size == witnessed
    assert world.view(T0 + HOUR, heartbeat=False).versions["timestamp"] >= 1


def test_the_heartbeat_re_signs_the_snapshot_of_a_quiet_repository(site: Site) -> None:
    """Weeks without a proposal: the registry's heartbeat re-signs the snapshot before it
    expires, logs it like every governance file, and views stay valid."""
    world = site.world
    world.bootstrap()
    order = pause_order("pause-1", T0, T0 + 90 * DAY)
    world.publish(world.sign(world.propose("pause-1", order), *ORDER_QUORUM))

    def snapshots() -> list[str]:
        return sorted(n for n in site.files() if n.endswith(".snapshot.json"))

    before = snapshots()
    for day in range(1, 41):
        world.heartbeat(T0 + day * DAY)
    after = snapshots()
    # Re-signed once less than half of its 30 days was left: on days 16 and 32.
    assert len(after) == len(before) + 2
    view = world.view(T0 + 40 * DAY)
    assert [o.order_id for o in view.orders_in_force(T0 + 40 * DAY)] == ["pause-1"]
    evidence = site.evidence()
    assert set(after) <= set(evidence.proofs)
