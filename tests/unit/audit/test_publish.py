"""Publishing a signed finding set to the registry's log, and reading it back."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from brakepedal.audit.findings import FindingSet, open_findings
from brakepedal.crypto.dsse import sign_envelope
from brakepedal.wire.findings import FINDINGS_PAYLOAD_TYPE
from tests.unit.audit.conftest import AUDITOR_KEY, World, quiet
from tests.unit.audit.test_cli_audit import _audit


def _signed_set(world: World) -> bytes:
    return FindingSet("a", world.now, "o", 1, b"\0" * 32, ()).sign(AUDITOR_KEY)


def test_a_finding_set_is_appended_to_the_log_by_an_auditor(world: World) -> None:
    envelope = _signed_set(world)
    before = world.registry.store.size()
    nobody = world.server.client.post("/v1/findings", content=envelope)
    assert nobody.json()["reason"] == "registry.credential_missing"
    answer = world.server.client.post(
        "/v1/findings", content=envelope, headers={"Authorization": f"Bearer {world.token}"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["log_index"] == before
    assert world.registry.store.read_entries(before, before + 1) == [envelope]
    assert open_findings(envelope, AUDITOR_KEY.public_key)["findings"] == []


def _sign(payload: bytes, payload_type: str = FINDINGS_PAYLOAD_TYPE) -> bytes:
    return sign_envelope(payload, payload_type, [AUDITOR_KEY])


_REPORT_TYPE = "application/vnd.brakepedal.usage-report+json; version=1"
BAD = [
    ("not json", b"findings", "json.invalid"),
    ("another payload type", _sign(b'{"a":1}', _REPORT_TYPE), "findings.payload_type_unexpected"),
    ("not canonical", b" " + _sign(b'{"format":"x"}'), "canonical.not_canonical"),
    ("another format", _sign(b'{"format":"x","spec_version":1}'), "findings.format_unknown"),
    (
        "payload not canonical",
        _sign(b'{"spec_version":1, "format":"brakepedal.audit-findings"}'),
        "canonical.not_canonical",
    ),
]


@pytest.mark.parametrize(("body", "reason"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_what_is_not_a_finding_set_is_refused_and_nothing_is_logged(
    world: World, body: bytes, reason: str
) -> None:
    before = world.registry.store.size()
    answer = world.server.client.post(
        "/v1/findings", content=body, headers={"Authorization": f"Bearer {world.token}"}
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["reason"] == reason
    assert world.registry.store.size() == before


def test_audit_run_publish_then_the_next_run_reads_it_back(world: World, tmp_path: Path) -> None:
    world.enrol("gpu-0", "lab-a")
    world.report_all(rounds=1)
    key = tmp_path / "auditor.key"
    from brakepedal.crypto.keys import private_key_to_pem  # noqa: PLC0415

    key.write_bytes(private_key_to_pem(AUDITOR_KEY))
    from brakepedal.model.types import format_utc  # noqa: PLC0415

    later = format_utc((quiet(world) + timedelta(hours=2)).replace(microsecond=0))
    code, output = _audit(
        world,
        tmp_path,
        "--registry",
        world.server.url,
        "--at",
        later,
        "--key",
        str(key),
        "--publish",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 5, output  # the device went silent: a high finding, published all the same
    assert "findings published at log index" in output
    published = world.registry.store.read_entries(
        world.registry.store.size() - 1, world.registry.store.size()
    )[0]
    document = open_findings(published, AUDITOR_KEY.public_key)
    assert [f["detector"] for f in document["findings"]] == ["device.silent"]
    written = json.loads((tmp_path / "out" / "findings.json").read_text())
    assert [f["id"] for f in written["findings"]] == [f["id"] for f in document["findings"]]
    code, output = _audit(world, tmp_path, "--registry", world.server.url, "--at", later)
    assert "entry.unverifiable" not in output  # the published set is read as findings, not junk
