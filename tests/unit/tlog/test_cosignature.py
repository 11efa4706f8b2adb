"""c2sp.org/tlog-cosignature v1: witness keys, cosigning and threshold verification."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from securesystemslib.signer import CryptoSigner

from brakepedal.errors import BrakepedalError, InputError, TrustError
from brakepedal.tlog.checkpoint import Checkpoint
from brakepedal.tlog.cosignature import (
    MAX_TIMESTAMP,
    CosignatureVerifier,
    Cosigner,
    cosigned_message,
    verify_cosignatures,
)
from brakepedal.tlog.note import Note, NoteSignature, NoteVerifier

VECTORS = json.loads(
    (Path(__file__).parents[2] / "vectors/checkpoint/cosignature_vectors.json").read_text("utf-8")
)
V1 = VECTORS["cosignature_v1"]
BODY = V1["checkpoint_body"].encode()
_SEED = bytes.fromhex(VECTORS["deterministic_key"]["seed_hex"])
SIGSUM_KEY = CryptoSigner(Ed25519PrivateKey.from_private_bytes(_SEED))
WITNESS = CosignatureVerifier.from_vkey(V1["vkey_derived"])


def cosigned_note(*lines: str) -> Note:
    return Note.from_bytes(BODY + b"\n" + "".join(line + "\n" for line in lines).encode())


def payload(signature: NoteSignature) -> bytes:
    return signature.key_id + signature.signature


def make_witness(name: str) -> Cosigner:
    return Cosigner(name, CryptoSigner.generate_ed25519())


A, B, C = (make_witness(f"witness.example/{n}") for n in "abc")


# --- published vector ----------------------------------------------------------------------------


def test_vkey_and_key_id_match_the_vector() -> None:
    assert WITNESS.key_id.hex() == V1["key_id_hex"]
    assert WITNESS.public_key.hex() == VECTORS["deterministic_key"]["public_key_hex"]
    assert WITNESS.to_vkey() == V1["vkey_derived"]


def test_signed_message_matches_the_vector() -> None:
    assert cosigned_message(BODY, V1["timestamp"]) == V1["signed_message"].encode()


def test_vector_cosignature_verifies() -> None:
    signature = cosigned_note(V1["signature_line"]).signatures[0]
    assert WITNESS.verify(BODY, payload(signature)) == V1["timestamp"]
    assert verify_cosignatures(cosigned_note(V1["signature_line"]), BODY, [WITNESS], 1) == (
        "example.org/witness",
    )


def test_vector_cosignature_with_timestamp_changed_fails() -> None:
    signature = cosigned_note(V1["signature_line"]).signatures[0]
    changed = signature.key_id + (1235).to_bytes(8, "big") + signature.signature[8:]
    with pytest.raises(TrustError) as caught:
        WITNESS.verify(BODY, changed)
    assert caught.value.reason == "cosignature.signature_invalid"


def test_cosigning_reproduces_the_vector_line() -> None:
    cosigner = Cosigner(V1["cosigner_name"], SIGSUM_KEY)
    assert cosigner.verifier() == WITNESS
    line = cosigner.cosign(BODY, V1["timestamp"]).to_line()
    assert line == (V1["signature_line"] + "\n").encode()


PARSING = VECTORS["cosignature_line_parsing"]["lines"]


@pytest.mark.parametrize(
    ("line", "outcome"),
    [
        pytest.param(PARSING[0], "cosignature.threshold_not_met", id="other-key-id"),
        pytest.param(PARSING[1], None, id="matching"),
        pytest.param(PARSING[2], "cosignature.threshold_not_met", id="other-name"),
        pytest.param(PARSING[3], "cosignature.signature_invalid", id="wrong-length"),
    ],
)
def test_sigsum_line_parsing_cases(line: str, outcome: str | None) -> None:
    """Only line 2 is this witness's; line 4 claims to be but has 66 signature bytes."""
    note = cosigned_note(line)
    if outcome is None:
        assert verify_cosignatures(note, BODY, [WITNESS], 1) == ("example.org/witness",)
        return
    with pytest.raises(TrustError) as caught:
        verify_cosignatures(note, BODY, [WITNESS], 1)
    assert caught.value.reason == outcome


def test_all_sigsum_lines_together_fail_on_the_bad_one() -> None:
    with pytest.raises(TrustError) as caught:
        verify_cosignatures(cosigned_note(*PARSING), BODY, [WITNESS], 1)
    assert caught.value.reason == "cosignature.signature_invalid"
    good = verify_cosignatures(cosigned_note(*PARSING[:3]), BODY, [WITNESS], 1)
    assert good == ("example.org/witness",)


def test_c2sp_example_line_decodes() -> None:
    example = VECTORS["c2sp_cosignature_example"]
    body = b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    signature = Note.from_bytes(body + b"\n" + example["signature_line"].encode() + b"\n")
    decoded = signature.signatures[0]
    assert decoded.key_id.hex() == example["decoded"]["key_id_hex"]
    assert int.from_bytes(decoded.signature[:8], "big") == example["decoded"]["timestamp"]
    assert len(decoded.signature) - 8 == example["decoded"]["signature_len"]


# --- keys ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vkey", "reason"),
    [
        pytest.param(V1["vkey_derived"].replace("+BGbg", "+AWbg"), "vkey.unknown_type", id="0x01"),
        pytest.param(
            V1["vkey_derived"].replace("cacf2e50", "cacf2e51"), "vkey.key_id_mismatch", id="key-id"
        ),
        pytest.param("example.org/witness+cacf2e50", "vkey.malformed", id="no-key"),
    ],
)
def test_bad_witness_vkey_is_rejected(vkey: str, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        CosignatureVerifier.from_vkey(vkey)
    assert caught.value.reason == reason


def test_note_verifier_refuses_a_cosignature_vkey() -> None:
    with pytest.raises(InputError) as caught:
        NoteVerifier.from_vkey(V1["vkey_derived"])
    assert caught.value.reason == "vkey.unknown_type"


def test_key_id_depends_on_the_signature_type() -> None:
    note_key = NoteVerifier.from_public_key(WITNESS.name, WITNESS.public_key)
    assert note_key.key_id != WITNESS.key_id


# --- single cosignatures -------------------------------------------------------------------------

GOOD = payload(A.cosign(BODY, 1000))


@pytest.mark.parametrize(
    ("sig_payload", "reason"),
    [
        pytest.param(GOOD[:-1], "cosignature.signature_invalid", id="short"),
        pytest.param(GOOD + b"\0", "cosignature.signature_invalid", id="long"),
        pytest.param(B.key_id + GOOD[4:], "cosignature.key_id_mismatch", id="other-key-id"),
        pytest.param(
            GOOD[:4] + (2**63).to_bytes(8, "big") + GOOD[12:],
            "cosignature.timestamp_out_of_range",
            id="timestamp-2^63",
        ),
        pytest.param(GOOD[:-1] + bytes([GOOD[-1] ^ 1]), "cosignature.signature_invalid", id="bit"),
    ],
)
def test_bad_cosignature_payload_is_rejected(sig_payload: bytes, reason: str) -> None:
    with pytest.raises(TrustError) as caught:
        A.verifier().verify(BODY, sig_payload)
    assert caught.value.reason == reason


def test_cosignature_on_another_body_fails() -> None:
    other = Checkpoint("example.org/log", 11, bytes(32)).to_body()
    with pytest.raises(TrustError) as caught:
        A.verifier().verify(other, GOOD)
    assert caught.value.reason == "cosignature.signature_invalid"


@pytest.mark.parametrize(
    ("body", "timestamp", "reason"),
    [
        pytest.param(BODY, -1, "cosignature.timestamp_out_of_range", id="negative"),
        pytest.param(BODY, 2**63, "cosignature.timestamp_out_of_range", id="2^63"),
        pytest.param(BODY, True, "cosignature.timestamp_out_of_range", id="bool"),
        pytest.param(b"not a checkpoint\n", 1, "checkpoint.too_few_lines", id="not-checkpoint"),
    ],
)
def test_cosigner_refuses_bad_input(body: bytes, timestamp: int, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        A.cosign(body, timestamp)
    assert caught.value.reason == reason


def test_cosigner_refuses_bad_name() -> None:
    with pytest.raises(InputError) as caught:
        make_witness("has space")
    assert caught.value.reason == "cosignature.invalid_key_name"


# --- thresholds ----------------------------------------------------------------------------------


def note_with(*signatures: NoteSignature) -> Note:
    return Note(BODY, signatures)


WITNESSES = [A.verifier(), B.verifier(), C.verifier()]


def test_two_of_three_meets_threshold_two() -> None:
    note = note_with(A.cosign(BODY, 1), C.cosign(BODY, 2))
    assert verify_cosignatures(note, BODY, WITNESSES, 2) == (A.name, C.name)


def test_duplicate_lines_from_one_witness_count_once() -> None:
    line = A.cosign(BODY, 1)
    note = note_with(line, line, A.cosign(BODY, 2))
    with pytest.raises(TrustError) as caught:
        verify_cosignatures(note, BODY, WITNESSES, 2)
    assert caught.value.reason == "cosignature.threshold_not_met"
    assert "1 of 2" in caught.value.message
    assert B.name in caught.value.message
    assert C.name in caught.value.message


def test_log_and_unknown_signatures_are_ignored() -> None:
    stranger = make_witness("stranger.example")
    log_line = NoteSignature("example.org/log", b"\1\2\3\4", bytes(64))
    note = note_with(log_line, stranger.cosign(BODY, 5), B.cosign(BODY, 5))
    assert verify_cosignatures(note, BODY, WITNESSES, 1) == (B.name,)


def test_a_failing_known_witness_rejects_the_note() -> None:
    forged = replace(A.cosign(BODY, 1), signature=bytes(72))
    note = note_with(forged, B.cosign(BODY, 1), C.cosign(BODY, 1))
    with pytest.raises(TrustError) as caught:
        verify_cosignatures(note, BODY, WITNESSES, 2)
    assert caught.value.reason == "cosignature.signature_invalid"


def test_note_for_another_checkpoint_is_rejected() -> None:
    other = Checkpoint("example.org/log", 11, bytes(32)).to_body()
    with pytest.raises(TrustError) as caught:
        verify_cosignatures(note_with(A.cosign(BODY, 1)), other, WITNESSES, 1)
    assert caught.value.reason == "cosignature.body_mismatch"


SAME_KEY_OTHER_NAME = CosignatureVerifier.from_public_key("alias.example", A.verifier().public_key)


@pytest.mark.parametrize(
    ("witnesses", "threshold", "reason"),
    [
        pytest.param(WITNESSES, 0, "cosignature.invalid_threshold", id="zero"),
        pytest.param(WITNESSES, -1, "cosignature.invalid_threshold", id="negative"),
        pytest.param(WITNESSES, 4, "cosignature.invalid_threshold", id="above-count"),
        pytest.param(WITNESSES, True, "cosignature.invalid_threshold", id="bool"),
        pytest.param([], 1, "cosignature.invalid_threshold", id="no-witnesses"),
        pytest.param([A.verifier(), A.verifier()], 2, "cosignature.duplicate_witness", id="twice"),
        pytest.param(
            [A.verifier(), SAME_KEY_OTHER_NAME], 2, "cosignature.duplicate_witness", id="alias"
        ),
    ],
)
def test_bad_witness_set_is_rejected(
    witnesses: list[CosignatureVerifier], threshold: int, reason: str
) -> None:
    note = note_with(A.cosign(BODY, 1))
    with pytest.raises(InputError) as caught:
        verify_cosignatures(note, BODY, witnesses, threshold)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param({"key_id": bytes(4)}, "vkey.key_id_mismatch", id="key-id"),
        pytest.param({"public_key": bytes(33)}, "vkey.invalid_key_length", id="long-key"),
        pytest.param({"name": ""}, "vkey.invalid_name", id="empty-name"),
    ],
)
def test_verifier_constructor_enforces_invariants(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InputError) as caught:
        replace(WITNESS, **changes)
    assert caught.value.reason == reason


# --- properties ----------------------------------------------------------------------------------


@given(st.integers(0, MAX_TIMESTAMP))
@settings(max_examples=25)
def test_cosign_then_verify_returns_the_timestamp(timestamp: int) -> None:
    assert A.verifier().verify(BODY, payload(A.cosign(BODY, timestamp))) == timestamp


@given(st.binary(max_size=100))
def test_arbitrary_payload_raises_only_typed_errors(data: bytes) -> None:
    with contextlib.suppress(BrakepedalError):
        WITNESS.verify(BODY, data)


@given(st.lists(st.sampled_from([0, 1, 2]), max_size=6), st.integers(1, 3))
@settings(max_examples=30)
def test_count_is_distinct_witnesses(signers: list[int], threshold: int) -> None:
    cosigners = [A, B, C]
    lines = [cosigners[i].cosign(BODY, 7) for i in signers] or [NoteSignature("x", bytes(4), b"s")]
    distinct = sorted(set(signers))
    note = note_with(*lines)
    if len(distinct) < threshold:
        with pytest.raises(TrustError) as caught:
            verify_cosignatures(note, BODY, WITNESSES, threshold)
        assert caught.value.reason == "cosignature.threshold_not_met"
        return
    names = verify_cosignatures(note, BODY, WITNESSES, threshold)
    assert names == tuple(cosigners[i].name for i in distinct)
