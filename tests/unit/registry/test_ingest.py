"""Ingestion over real HTTP: accepted, idempotent, and a table of named bad inputs.

Every test runs against SQLite and PostgreSQL (the ``registry_url`` fixture).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from brakepedal.accounting.usage import Workload
from brakepedal.crypto.canonical import canonical_json
from brakepedal.crypto.dsse import parse_envelope
from brakepedal.crypto.keys import generate_ed25519
from brakepedal.model.types import EntityId, JobId, PermitId, epoch_micros
from brakepedal.registry import ingest as registry_ingest
from brakepedal.registry.app import _ingest_answer
from brakepedal.registry.schema import rejections, reports
from brakepedal.registry.service import Registry
from brakepedal.tlog.checkpoint import open_checkpoint
from brakepedal.tlog.merkle import leaf_hash
from brakepedal.tlog.proof import InclusionProof, parse_proof
from brakepedal.wire.report_format import parse_report
from tests.unit.registry.conftest import LOG_SIGNER, ORIGIN, Device, Server, batch


def _enrolled(server: Server, *names: str) -> list[Device]:
    devices = [Device(name) for name in names]
    for device in devices:
        response = server.client.post("/v1/devices", content=device.enrolment())
        assert response.status_code == 200, response.text
    return devices


def _stored(registry: Registry) -> tuple[int, int, int]:
    with registry.engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(reports)).scalar_one()
        evidence = conn.execute(select(func.count()).select_from(rejections)).scalar_one()
    return int(count), int(evidence), registry.store.size()


def test_batch_is_verified_logged_and_provable(registry: Registry, server: Server) -> None:
    (gpu,) = _enrolled(server, "gpu-0")
    envelopes = [gpu.report() for _ in range(4)]
    response = server.client.post("/v1/reports", content=batch(*envelopes))
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted"] * 4
    assert [r["log_index"] for r in results] == [1, 2, 3, 4]

    note = server.client.get("/v1/log/checkpoint").content
    checkpoint = open_checkpoint(note, LOG_SIGNER.verifier(), origin=ORIGIN).checkpoint
    assert checkpoint.size == 5
    for envelope, result in zip(envelopes, results, strict=True):
        proof = parse_proof(
            server.client.get(
                "/v1/log/proof/inclusion", params={"index": result["log_index"], "size": 5}
            ).content
        )
        assert isinstance(proof, InclusionProof)
        assert proof.leaf_hash == leaf_hash(envelope)
        proof.verify(checkpoint.root_hash)


def test_resending_a_batch_changes_nothing(registry: Registry, server: Server) -> None:
    (gpu,) = _enrolled(server, "gpu-0")
    body = batch(gpu.report(), gpu.report())
    first = server.client.post("/v1/reports", content=body).json()["results"]
    before = _stored(registry)
    again = server.client.post("/v1/reports", content=body).json()["results"]
    assert [r["status"] for r in again] == ["duplicate", "duplicate"]
    assert [r["log_index"] for r in again] == [r["log_index"] for r in first]
    after = _stored(registry)
    assert after[0] == before[0]
    assert after[2] == before[2]
    assert after[1] == before[1] + 2  # the replays are kept as evidence


def test_a_batch_may_interleave_devices_out_of_order(registry: Registry, server: Server) -> None:
    a, b = _enrolled(server, "gpu-a", "gpu-b")
    a0, b0, a1, b1 = a.report(), b.report(), a.report(), b.report()
    results = server.client.post("/v1/reports", content=batch(a1, b1, a0, b0)).json()["results"]
    assert {r["status"] for r in results} == {"accepted"}


def test_chain_heads_read_in_several_queries_move_alike(
    registry: Registry, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Heads are read a few devices per query (here 2) and moved in one statement: each
    batch's reports chain onto the last batch's, for every device."""
    monkeypatch.setattr(registry_ingest, "_HEADS_PER_QUERY", 2)
    gpus = _enrolled(server, "gpu-a", "gpu-b", "gpu-c", "gpu-d", "gpu-e")
    for _ in range(3):
        sent = batch(*[gpu.report() for gpu in gpus])
        results = server.client.post("/v1/reports", content=sent).json()["results"]
        assert [r["status"] for r in results] == ["accepted"] * len(gpus)
    stale = batch(gpus[0].report(sequence=1, advance=False))
    (result,) = server.client.post("/v1/reports", content=stale).json()["results"]
    assert result["reason"] == "ingest.equivocation"


# ------------------------------------------------------------------ the table of bad inputs

BadInput = Callable[[Device, Device], bytes]


def _forged(gpu: Device, _other: Device) -> bytes:
    return batch(gpu.report(signer=generate_ed25519(), advance=False))


def _unknown_device(_gpu: Device, _other: Device) -> bytes:
    return batch(Device("gpu-never-enrolled").report())


def _wrong_sequence(gpu: Device, _other: Device) -> bytes:
    return batch(gpu.report(sequence=gpu.sequence + 1, advance=False))


def _wrong_predecessor(gpu: Device, _other: Device) -> bytes:
    return batch(gpu.report(previous="ab" * 32, advance=False))


def _equivocation(gpu: Device, _other: Device) -> bytes:
    # Sequence 0 is stored; another report for the same slot is a fork.
    return batch(gpu.report(sequence=0, previous="0" * 64, power=100.0, advance=False))


def _clock_far_ahead(gpu: Device, _other: Device) -> bytes:
    ahead = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=3)
    return batch(gpu.report(window_start=ahead, advance=False))


def _window_overlap(gpu: Device, _other: Device) -> bytes:
    return batch(gpu.report(window_start=gpu.start - timedelta(minutes=1), advance=False))


def _other_devices_key(gpu: Device, other: Device) -> bytes:
    return batch(gpu.report(signer=other.signer, advance=False))


def _wrong_accelerator(gpu: Device, _other: Device) -> bytes:
    return batch(gpu.report(accelerator="nvidia-a100", advance=False))


def _energy_implausible(gpu: Device, _other: Device) -> bytes:
    return batch(gpu.report(energy_mj=10**13, advance=False))  # 33 MW for five minutes


def _not_a_report(gpu: Device, _other: Device) -> bytes:
    envelope = json.loads(gpu.enrolment())
    return json.dumps({"reports": [envelope]}).encode()


def _tampered_payload(gpu: Device, _other: Device) -> bytes:
    envelope = json.loads(gpu.report(advance=False))
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["energy_mj"] -= 1  # under-report energy after signing
    envelope["payload"] = base64.b64encode(canonical_json(payload)).decode()
    return json.dumps({"reports": [envelope]}).encode()


def _garbage_item(_gpu: Device, _other: Device) -> bytes:
    return json.dumps({"reports": [{"payload": 1}]}).encode()


ITEM_CASES: list[tuple[str, BadInput, str]] = [
    ("forged signature", _forged, "ingest.signature_invalid"),
    ("another device's key", _other_devices_key, "ingest.signature_invalid"),
    ("unknown device", _unknown_device, "ingest.device_unknown"),
    ("wrong sequence", _wrong_sequence, "ingest.sequence_gap"),
    ("wrong predecessor hash", _wrong_predecessor, "ingest.chain_broken"),
    ("replay with other content", _equivocation, "ingest.equivocation"),
    ("clock far ahead", _clock_far_ahead, "ingest.clock_ahead"),
    ("window overlaps the last", _window_overlap, "ingest.window_overlap"),
    ("wrong accelerator", _wrong_accelerator, "ingest.accelerator_mismatch"),
    ("energy beyond any accelerator", _energy_implausible, "ingest.energy_implausible"),
    ("not a usage report", _not_a_report, "ingest.payload_type_unexpected"),
    ("tampered payload", _tampered_payload, "ingest.signature_invalid"),
    ("malformed item", _garbage_item, "envelope.field_missing"),
]


@pytest.mark.parametrize(
    ("make", "reason"), [c[1:] for c in ITEM_CASES], ids=[c[0] for c in ITEM_CASES]
)
def test_bad_item_is_rejected_named_and_kept(
    registry: Registry, server: Server, make: BadInput, reason: str
) -> None:
    gpu, other = _enrolled(server, "gpu-0", "gpu-1")
    accepted = server.client.post("/v1/reports", content=batch(gpu.report(), gpu.report()))
    assert {r["status"] for r in accepted.json()["results"]} == {"accepted"}
    root_before = registry.log.root()
    count, evidence, size = _stored(registry)

    response = server.client.post("/v1/reports", content=make(gpu, other))
    assert response.status_code == 200
    (result,) = response.json()["results"]
    assert result["status"] == "rejected"
    assert result["reason"] == reason, result
    assert _stored(registry) == (count, evidence + 1, size)
    assert registry.log.root(size) == root_before
    kept = registry.rejections(after=0, limit=100)[-1]
    assert kept["reason"] == result["reason"]
    # The honest stream goes on afterwards.
    later = server.client.post("/v1/reports", content=batch(gpu.report())).json()["results"]
    assert later[0]["status"] == "accepted"


#: The bad items a batch's verification pass refuses (the chain's are refused later, under
#: the lock): parsing, enrolment, signature, energy and clock.
_VERIFY_CASES = [
    case
    for case in ITEM_CASES
    if case[2].split(".")[-1]
    not in {"sequence_gap", "chain_broken", "equivocation", "window_overlap"}
]


def test_bad_items_mixed_with_good_ones_get_the_verdicts_they_get_alone(
    registry: Registry, server: Server
) -> None:
    """Verification parses every item of a batch, then checks the signatures one after
    another: each item still gets the verdict it gets alone, and the evidence is kept in
    item order."""
    gpu, other = _enrolled(server, "gpu-0", "gpu-1")
    server.client.post("/v1/reports", content=batch(gpu.report(), gpu.report()))
    items: list[object] = []
    expected: list[str] = []
    for _, make, reason in _VERIFY_CASES:
        (bad,) = json.loads(make(gpu, other))["reports"]
        items += [json.loads(other.report()), bad]
        expected += ["accepted", reason]
    _, evidence, _ = _stored(registry)
    response = server.client.post("/v1/reports", content=json.dumps({"reports": items}))
    results = response.json()["results"]
    assert [r["reason"] if r["status"] == "rejected" else r["status"] for r in results] == (
        expected
    )
    kept = registry.rejections(after=0, limit=100)[evidence:]
    assert [row["reason"] for row in kept] == [r for r in expected if r != "accepted"]


BODY_CASES: list[tuple[str, bytes, int, str]] = [
    ("not JSON", b"{reports:", 400, "ingest.body_malformed"),
    ("not an object", b"[1, 2]", 400, "ingest.body_malformed"),
    ("extra field", b'{"reports": [], "x": 1}', 400, "ingest.body_malformed"),
    ("reports not a list", b'{"reports": {}}', 400, "ingest.body_malformed"),
    ("empty batch", b'{"reports": []}', 400, "ingest.batch_empty"),
    (
        "oversized batch",
        json.dumps({"reports": [{}] * 1001}).encode(),
        413,
        "ingest.batch_too_large",
    ),
    (
        "deeply nested",
        b'{"reports": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        400,
        "ingest.body_malformed",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "reason"), [c[1:] for c in BODY_CASES], ids=[c[0] for c in BODY_CASES]
)
def test_bad_body_is_refused_named_and_kept(
    registry: Registry, server: Server, body: bytes, status: int, reason: str
) -> None:
    (gpu,) = _enrolled(server, "gpu-0")
    server.client.post("/v1/reports", content=batch(gpu.report()))
    count, evidence, size = _stored(registry)
    response = server.client.post("/v1/reports", content=body)
    assert response.status_code == status
    assert response.json()["reason"] == reason
    assert _stored(registry) == (count, evidence + 1, size)


def test_a_bad_item_does_not_spoil_its_batch(registry: Registry, server: Server) -> None:
    (gpu,) = _enrolled(server, "gpu-0")
    good = gpu.report()
    bad = Device("gpu-stranger").report()
    results = server.client.post("/v1/reports", content=batch(bad, good)).json()["results"]
    assert [r["status"] for r in results] == ["rejected", "accepted"]


def test_a_gap_is_accepted_once_filled(registry: Registry, server: Server) -> None:
    (gpu,) = _enrolled(server, "gpu-0")
    r0, r1, r2 = gpu.report(), gpu.report(), gpu.report()
    first = server.client.post("/v1/reports", content=batch(r0, r2)).json()["results"]
    assert [r["status"] for r in first] == ["accepted", "rejected"]
    assert first[1]["reason"] == "ingest.sequence_gap"
    second = server.client.post("/v1/reports", content=batch(r1, r2)).json()["results"]
    assert [r["status"] for r in second] == ["accepted", "accepted"]


def test_the_same_report_twice_in_one_batch_is_a_duplicate(
    registry: Registry, server: Server
) -> None:
    (gpu,) = _enrolled(server, "gpu-0")
    report = gpu.report()
    results = server.client.post("/v1/reports", content=batch(report, report)).json()["results"]
    assert [r["status"] for r in results] == ["accepted", "duplicate"]
    assert results[0]["log_index"] == results[1]["log_index"]
    assert _stored(registry)[2] == 2


def _resigned(envelope: bytes) -> bytes:
    """The same signed report in another envelope: one more (junk) signature."""
    document = json.loads(envelope)
    document["signatures"].append({"keyid": "", "sig": base64.b64encode(b"x" * 64).decode()})
    return json.dumps(document).encode()


def _items(*envelopes: bytes) -> bytes:
    return json.dumps({"reports": [json.loads(e) for e in envelopes]}).encode()


def test_two_reports_for_one_slot_in_one_batch_are_equivocation(
    registry: Registry, server: Server
) -> None:
    """As in separate batches (registry.md's table): not ``ingest.sequence_old``."""
    (gpu,) = _enrolled(server, "gpu-0")
    rival = gpu.report(power=100.0, advance=False)
    honest = gpu.report()
    results = server.client.post("/v1/reports", content=batch(honest, rival)).json()["results"]
    assert [(r["status"], r["reason"]) for r in results] == [
        ("accepted", None),
        ("rejected", "ingest.equivocation"),
    ]
    assert _stored(registry) == (1, 1, 2)
    assert registry.rejections(after=0, limit=10)[-1]["reason"] == "ingest.equivocation"
    later = server.client.post("/v1/reports", content=batch(rival)).json()["results"]
    assert [(r["status"], r["reason"]) for r in later] == [("rejected", "ingest.equivocation")]
    # The honest chain goes on.
    more = server.client.post("/v1/reports", content=batch(gpu.report())).json()["results"]
    assert more[0]["status"] == "accepted"


def test_the_same_report_in_another_envelope_in_one_batch_is_a_duplicate(
    registry: Registry, server: Server
) -> None:
    """Same payload, other envelope: a duplicate in the batch, as it is in a later one."""
    (gpu,) = _enrolled(server, "gpu-0")
    report = gpu.report()
    again = _resigned(report)
    results = server.client.post("/v1/reports", content=_items(report, again)).json()["results"]
    assert [(r["status"], r["reason"]) for r in results] == [
        ("accepted", None),
        ("duplicate", "ingest.duplicate"),
    ]
    assert results[0]["log_index"] == results[1]["log_index"] == 1
    assert _stored(registry) == (1, 0, 2)
    later = server.client.post("/v1/reports", content=_items(again)).json()["results"]
    assert [(r["status"], r["log_index"]) for r in later] == [("duplicate", 1)]
    assert _stored(registry)[0::2] == (1, 2)


def test_evidence_keeps_what_the_database_cannot_store_raw(
    registry: Registry, server: Server
) -> None:
    (gpu,) = _enrolled(server, "gpu-0")
    envelope = json.loads(gpu.report(advance=False))
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["device"] = "gpu-0\u0000evil"
    payload["\u0000"] = 1
    envelope["payload"] = base64.b64encode(canonical_json(payload)).decode()
    count, evidence, size = _stored(registry)
    results = server.client.post("/v1/reports", content=json.dumps({"reports": [envelope]}))
    assert results.status_code == 200, results.text
    assert results.json()["results"][0]["status"] == "rejected"
    assert _stored(registry) == (count, evidence + 1, size)


def test_a_rejected_item_whose_device_text_utf8_cannot_hold_is_answered(
    registry: Registry, server: Server
) -> None:
    """A lone surrogate peeked from a payload that does not parse goes back as the evidence
    keeps it, beside the good report stored in the same batch (the answer once failed after
    the commit)."""
    (gpu,) = _enrolled(server, "gpu-0")
    good = gpu.report()
    envelope = json.loads(gpu.report(advance=False))
    payload = base64.b64decode(envelope["payload"]).replace(b'"gpu-0"', b'"\\ud800x"', 1)
    assert b"\\ud800x" in payload
    envelope["payload"] = base64.b64encode(payload).decode()
    odd = json.dumps(envelope).encode()
    answer = server.client.post("/v1/reports", content=batch(good, odd))
    assert answer.status_code == 200, answer.text
    first, second = answer.json()["results"]
    assert (first["status"], first["log_index"]) == ("accepted", 1)
    assert (second["status"], second["device"]) == ("rejected", "\\ud800x")
    assert set(second) == {"index", "status", "device", "sequence", "log_index", "reason", "detail"}
    assert second["log_index"] is None
    with registry.engine.connect() as conn:
        kept = conn.execute(select(rejections.c.device)).scalars().all()
    assert kept == ["\\ud800x"]


def test_an_answer_with_text_utf8_cannot_hold_is_still_json() -> None:
    """Defence in depth: whatever a rejection's text holds, the answer encodes (the standard
    library escapes what msgspec refuses)."""
    odd = registry_ingest.ItemResult(0, "rejected", "gpu-0", 1, reason="x", detail="\ud800")
    answer = json.loads(_ingest_answer([odd], 7))
    assert answer == {"results": [odd.to_json()], "tree_size": 7}


def test_a_body_declared_too_large_is_refused_before_it_is_read(server: Server) -> None:
    response = server.client.post("/v1/reports", content=b"{}", headers={"Content-Length": "2"})
    assert response.status_code == 400
    big = server.client.post("/v1/reports", content=b" " * 16_000_001)
    assert big.status_code == 413
    assert big.json()["reason"] == "ingest.batch_too_large"


def test_a_stored_report_row_holds_each_field_in_its_column(
    registry: Registry, server: Server
) -> None:
    """The ingest path writes ``reports`` rows as plain tuples in the table's column order
    (COPY on PostgreSQL): every column read back by name holds the report's own value."""
    (gpu,) = _enrolled(server, "gpu-0")
    envelope = gpu.report(
        job=JobId("train-1"),
        tenant=EntityId("lab-b"),
        permit=PermitId("permit-1"),
        workload=Workload.INFERENCE,
        tensor_active_ms=1234,
    )
    (result,) = server.client.post("/v1/reports", content=batch(envelope)).json()["results"]
    payload = parse_envelope(envelope).payload
    report = parse_report(payload)
    with registry.engine.connect() as conn:
        row = conn.execute(select(reports)).mappings().one()
    assert dict(row) | {"received_us": 0} == {
        "device": "gpu-0",
        "sequence": 0,
        "digest": hashlib.sha256(payload).hexdigest(),
        "log_index": result["log_index"],
        "received_us": 0,
        "window_start_us": epoch_micros(report.window_start),
        "window_end_us": epoch_micros(report.window_end),
        "busy_ms": report.busy_ms,
        "tensor_active_ms": 1234,
        "energy_mj": report.energy_mj,
        "operator": "lab-a",
        "job": "train-1",
        "tenant": "lab-b",
        "permit": "permit-1",
        "workload": "inference",
        "minute_root": report.minute_root,
        "minute_count": 5,
    }
    assert row["received_us"] > 0
