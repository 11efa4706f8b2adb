"""The registry's other endpoints over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine

from brakepedal.cli.files import read_roots
from brakepedal.crypto.canonical import canonical_json
from brakepedal.crypto.keys import generate_ed25519
from brakepedal.errors import InputError
from brakepedal.registry.devices import ENROLMENT_PAYLOAD_TYPE
from brakepedal.registry.schema import metadata
from brakepedal.registry.service import Registry, migrate
from brakepedal.tlog.checkpoint import open_checkpoint
from brakepedal.tlog.cosignature import Cosigner
from brakepedal.tlog.log import TransparencyLog
from brakepedal.tlog.note import Note, NoteSignature
from brakepedal.tlog.proof import ConsistencyProof, parse_proof
from brakepedal.tlog.sqlstore import SqlLogStore
from brakepedal.tlog.sqlstore import _metadata as log_metadata
from brakepedal.wire.endorsement import Manufacturer
from brakepedal.wire.minute import parse_minute
from tests.unit.registry.conftest import (
    ACCELERATOR,
    LOG_SIGNER,
    ORIGIN,
    WITNESS,
    Device,
    Server,
    batch,
    make_registry,
)


def test_manufacturer_chain_enrols_and_is_logged(registry_url: str) -> None:
    ca = Manufacturer.generate("Simulated Co", now=datetime.now(UTC) - timedelta(days=1))
    registry = make_registry(
        registry_url, allow_software_keys=False, manufacturer_roots=[ca.root_pem]
    )
    server = Server(registry)
    try:
        gpu = Device("gpu-chain")
        chain = ca.endorse(
            gpu.signer.public_key,
            serial="SN-1",
            accelerator=ACCELERATOR,
            now=datetime.now(UTC) - timedelta(hours=1),
        )
        answer = server.client.post("/v1/devices", content=gpu.enrolment(chain=chain))
        assert answer.status_code == 200, answer.text
        assert answer.json()["trust_level"] == "manufacturer"
        logged = json.loads(registry.log.entry(answer.json()["log_index"]))
        assert logged["payloadType"] == ENROLMENT_PAYLOAD_TYPE
        # Without a chain this registry refuses.
        bare = server.client.post("/v1/devices", content=Device("gpu-bare").enrolment())
        assert bare.status_code == 422
        assert bare.json()["reason"] == "enrolment.software_not_allowed"
        # A chain for another key.
        other = Device("gpu-other")
        stolen = server.client.post("/v1/devices", content=other.enrolment(chain=chain))
        assert stolen.json()["reason"] == "enrolment.key_mismatch"
        public = server.client.get("/v1/devices/gpu-chain").json()
        assert public["serial"] == "SN-1"
        assert "last_sequence" not in public
    finally:
        server.stop()
        registry.close()


def test_roots_that_are_not_certificates_are_refused_at_start(
    registry_url: str, tmp_path: Path
) -> None:
    """A bad root would refuse every endorsed enrolment, each device blamed: the registry
    refuses the configuration instead; the CLI reads a bundle file as its roots."""
    ca = Manufacturer.generate("Simulated Co", now=datetime.now(UTC) - timedelta(days=1))
    with pytest.raises(InputError) as raised:
        make_registry(registry_url, manufacturer_roots=[ca.root_pem + ca.root_pem])
    assert raised.value.reason == "enrolment.certificate_invalid"
    other = Manufacturer.generate("Other Co", now=datetime.now(UTC) - timedelta(days=1))
    bundle = tmp_path / "roots.pem"
    bundle.write_bytes(ca.root_pem + b"\n" + other.root_pem)
    assert [r.strip() for r in read_roots([bundle])] == [
        ca.root_pem.strip(),
        other.root_pem.strip(),
    ]
    bundle.write_bytes(ca.root_pem + b"\njunk\n")
    with pytest.raises(InputError) as raised:
        read_roots([bundle])
    assert raised.value.reason == "roots.invalid"
    assert "roots.pem" in raised.value.message


def test_enrolment_is_idempotent_and_keys_are_unique(
    registry: Registry, server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    # At INFO every route logs its structured fields, none of which may clash with a
    # LogRecord attribute ("created" once did, and enrolment answered 500).
    caplog.set_level(logging.INFO, logger="brakepedal.registry")
    gpu = Device("gpu-0")
    first = server.client.post("/v1/devices", content=gpu.enrolment()).json()
    again = server.client.post("/v1/devices", content=gpu.enrolment()).json()
    assert again["log_index"] == first["log_index"]
    assert again["created"] is False
    twin = Device("gpu-0")
    clash = server.client.post("/v1/devices", content=twin.enrolment())
    assert clash.json()["reason"] == "enrolment.exists"
    alias = Device("gpu-alias", signer=gpu.signer)
    assert server.client.post("/v1/devices", content=alias.enrolment()).json()["reason"] == (
        "enrolment.key_in_use"
    )
    unknown = Device("gpu-x", accelerator="warp-drive-9000")
    assert server.client.post("/v1/devices", content=unknown.enrolment()).json()["reason"] == (
        "enrolment.accelerator_unknown"
    )


def test_roles_guard_raw_data(registry: Registry, server: Server) -> None:
    gpu = Device("gpu-0")
    server.client.post("/v1/devices", content=gpu.enrolment())
    server.client.post("/v1/reports", content=batch(gpu.report()))
    auditor = registry.add_credential("auditor-1", "auditor")
    for path in ("/v1/reports/gpu-0/0", "/v1/rejections", "/v1/log/entries?start=0&end=1"):
        assert server.client.get(path).status_code == 401
        wrong = server.client.get(path, headers={"Authorization": "Bearer bp_nope"})
        assert wrong.json()["reason"] == "registry.credential_invalid"
        ok = server.client.get(path, headers={"Authorization": f"Bearer {auditor}"})
        assert ok.status_code == 200, ok.text
    admin_only = server.client.post(
        "/v1/governance/timestamp", headers={"Authorization": f"Bearer {auditor}"}
    )
    assert admin_only.json()["reason"] == "registry.role_insufficient"
    with pytest.raises(Exception, match="role"):
        registry.add_credential("x", "emperor")
    # The public aggregate names no device and no job.
    day = gpu.start.date().isoformat()
    public = server.client.get("/v1/accounting/operators", params={"day": day}).json()
    assert public == [
        {
            "operator": "lab-a",
            "day": day,
            "devices": 1,
            "reports": 1,
            "busy_hours": pytest.approx(5 / 60, abs=1e-6),
            "energy_kwh": public[0]["energy_kwh"],
            "flop_bound": public[0]["flop_bound"],
        }
    ]
    assert int(public[0]["flop_bound"]) > 0


def test_challenge_round_trip(registry: Registry, server: Server) -> None:
    gpu = Device("gpu-0")
    server.client.post("/v1/devices", content=gpu.enrolment())
    server.client.post("/v1/reports", content=batch(gpu.report()))
    minutes = gpu.last_minutes
    token = registry.add_credential("auditor-1", "auditor")
    auth = {"Authorization": f"Bearer {token}"}
    opened = server.client.post(
        "/v1/challenges", json={"device": "gpu-0", "sequence": 0}, headers=auth
    ).json()
    pending = server.client.get("/v1/challenges/pending/gpu-0").json()["challenges"]
    assert [c["id"] for c in pending] == [opened["id"]]
    # A forged answer (one minute altered) does not verify against the signed root.
    forged = [json.loads(m.to_bytes()) for m in minutes]
    forged[0]["busy_ms"] = 0
    bad = server.client.post(f"/v1/challenges/{opened['id']}/answer", json={"minutes": forged})
    assert bad.status_code in (400, 422)
    good = server.client.post(
        f"/v1/challenges/{opened['id']}/answer",
        content=b'{"minutes":[' + b",".join(m.to_bytes() for m in minutes) + b"]}",
    )
    assert good.status_code == 200, good.text
    status = server.client.get(f"/v1/challenges/{opened['id']}", headers=auth).json()
    assert [parse_minute(canonical_json(m)) for m in status["minutes"]] == minutes
    assert server.client.get("/v1/challenges/pending/gpu-0").json()["challenges"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"device": "gpu-0", "sequence": 2**70}, "sequence"),  # was a 500 (OverflowError)
        ({"device": "gpu-0", "sequence": 2**63}, "sequence"),
        ({"device": "gpu-0", "sequence": -1}, "sequence"),
        ({"device": "gpu-0\x00", "sequence": 0}, "device"),
        ({"device": "GPU-0", "sequence": 0}, "device"),
        ({"device": "", "sequence": 0}, "device"),
        ({"device": "x" * 129, "sequence": 0}, "device"),
    ],
)
def test_challenge_request_is_bounded(
    registry: Registry, server: Server, body: dict[str, object], field: str
) -> None:
    gpu = Device("gpu-0")
    server.client.post("/v1/devices", content=gpu.enrolment())
    server.client.post("/v1/reports", content=batch(gpu.report()))
    auth = {"Authorization": f"Bearer {registry.add_credential('auditor-1', 'auditor')}"}
    answer = server.client.post("/v1/challenges", json=body, headers=auth)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["body", field]
    # Within the bounds, an unknown report is a 404, not a 500.
    unknown = server.client.post(
        "/v1/challenges", json={"device": "gpu-0", "sequence": 2**62}, headers=auth
    )
    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["reason"] == "registry.not_found"


def test_consistency_tiles_and_cosignatures(registry: Registry, server: Server) -> None:
    gpu = Device("gpu-0")
    server.client.post("/v1/devices", content=gpu.enrolment())
    server.client.post("/v1/reports", content=batch(gpu.report()))
    old = open_checkpoint(
        server.client.get("/v1/log/checkpoint").content, LOG_SIGNER.verifier(), origin=ORIGIN
    ).checkpoint
    server.client.post("/v1/reports", content=batch(*(gpu.report(minutes=1) for _ in range(300))))
    note = server.client.get("/v1/log/checkpoint").content
    new = open_checkpoint(note, LOG_SIGNER.verifier(), origin=ORIGIN).checkpoint
    assert new.size == 302
    proof = parse_proof(
        server.client.get(
            "/v1/log/proof/consistency", params={"old": old.size, "new": new.size}
        ).content
    )
    assert isinstance(proof, ConsistencyProof)
    proof.verify(old.root_hash, new.root_hash)
    tile = server.client.get("/v1/log/tile/0/000")
    assert tile.status_code == 200
    assert len(tile.content) == 256 * 32
    assert server.client.get("/v1/log/tile/0/001.p/46").content == registry.log.tile(0, 1, 46)
    assert server.client.get("/v1/log/tile/entries/000").status_code in (400, 404)
    assert server.client.get("/v1/log/tile/0/009").json()["reason"] == "registry.not_found"
    # A witness's cosignature is merged into the served checkpoint.
    parsed = Note.from_bytes(note)
    now = int(datetime.now(UTC).timestamp())
    line = WITNESS.cosign(parsed.text, now)
    stranger = Cosigner("witness.test/stranger", generate_ed25519()).cosign(parsed.text, now)
    junk = Note(parsed.text, (*parsed.signatures, stranger)).to_bytes()
    refused = server.client.post("/v1/log/cosignatures", content=junk)
    assert refused.json()["reason"] == "registry.cosignature_unknown"
    cosigned = Note(parsed.text, (*parsed.signatures, stranger, line)).to_bytes()
    assert server.client.post("/v1/log/cosignatures", content=cosigned).status_code == 200
    served = Note.from_bytes(server.client.get("/v1/log/checkpoint").content)
    assert [s.name for s in served.signatures] == [ORIGIN, "witness.test/w1"]
    # Junk lines under the log's key ID, and the same witness again later: one line each.
    junk_lines = tuple(
        NoteSignature(f"x{n}", LOG_SIGNER.key_id, bytes(range(256)) * 4) for n in range(90)
    )
    later = WITNESS.cosign(parsed.text, now + 60)
    crowded = Note(parsed.text, (*parsed.signatures, *junk_lines, later)).to_bytes()
    assert server.client.post("/v1/log/cosignatures", content=crowded).status_code == 200
    served = Note.from_bytes(server.client.get("/v1/log/checkpoint").content)
    assert [s.name for s in served.signatures] == [ORIGIN, "witness.test/w1"]
    assert served.signatures[1] == later
    forged = Note(parsed.text, (*parsed.signatures, replace(line, signature=bytes(72)))).to_bytes()
    assert server.client.post("/v1/log/cosignatures", content=forged).status_code == 422
    foreign = server.client.post("/v1/log/cosignatures", content=b"not a note\n")
    assert foreign.status_code == 400


def test_metrics_health_and_openapi(registry: Registry, server: Server) -> None:
    gpu = Device("gpu-0")
    server.client.post("/v1/devices", content=gpu.enrolment())
    server.client.post("/v1/reports", content=batch(gpu.report()))
    metrics = server.client.get("/metrics").text
    assert 'brakepedal_reports_total{reason="",status="accepted"} 1.0' in metrics
    assert "brakepedal_log_tree_size 2.0" in metrics
    assert server.client.get("/healthz").json() == {"status": "ok", "tree_size": 2}
    paths = server.client.get("/openapi.json").json()["paths"]
    assert {"/v1/reports", "/v1/devices", "/v1/log/checkpoint"} <= set(paths)


def test_migrations_match_the_schema_and_adopt_an_old_log(registry_url: str) -> None:
    # A log made by `brakepedal log` before the registry existed is adopted, not recreated.
    store = SqlLogStore(registry_url, origin=ORIGIN)
    TransparencyLog(store).append([b"old entry"])
    store.close()
    migrate(registry_url)
    migrate(registry_url)  # idempotent
    registry = make_registry(registry_url)
    assert registry.log.entry(0) == b"old entry"
    registry.close()
    engine = create_engine(registry_url)
    combined = MetaData()
    for table in (*metadata.tables.values(), *log_metadata.tables.values()):
        table.to_metadata(combined)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), combined)
    engine.dispose()
    assert diff == []
