"""c2sp.org/tlog-checkpoint: body format, real sum.golang.org checkpoints, signing and opening."""

from __future__ import annotations

import base64
import contextlib
import hashlib
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
from brakepedal.model.limits import Limits
from brakepedal.tlog.checkpoint import (
    MAX_TREE_SIZE,
    Checkpoint,
    SignedCheckpoint,
    open_checkpoint,
    sign_checkpoint,
)
from brakepedal.tlog.note import Note, NoteSignature, NoteSigner, NoteVerifier

_DIR = Path(__file__).parents[2] / "vectors/checkpoint"
VECTORS = json.loads((_DIR / "checkpoint_vectors.json").read_text("utf-8"))
SUMDB = json.loads((_DIR / "sumdb_real_checkpoints.json").read_text("utf-8"))
SIGSUM = json.loads((_DIR / "cosignature_vectors.json").read_text("utf-8"))
UNMARSHAL = {case["desc"]: case for case in VECTORS["unmarshal"]}
SUMDB_LOG = NoteVerifier.from_vkey(SUMDB["vkey"])
SUMDB_ORIGIN = "go.sum database tree"
VALID_SUMDB_BODY = UNMARSHAL["extension lines after a sumdb tree"]["valid"]
HASH = hashlib.sha256(b"\x00hello world").digest()

_SIGSUM_SEED = bytes.fromhex(SIGSUM["deterministic_key"]["seed_hex"])
SIGSUM_KEY = CryptoSigner(Ed25519PrivateKey.from_private_bytes(_SIGSUM_SEED))
TEST_LOG = NoteSigner("log.example", CryptoSigner.generate_ed25519())


# --- body format ---------------------------------------------------------------------------------


def test_sumdb_record_hash_marshals_exactly() -> None:
    case = VECTORS["marshal"][2]
    assert base64.b64encode(HASH).decode() == case["hash_b64"]
    body = Checkpoint(case["origin"], case["size"], HASH).to_body()
    assert body == case["want"].encode()


@pytest.mark.parametrize("case", VECTORS["marshal"][:2], ids=["formats-log", "formats-banana"])
def test_formats_marshal_cases_need_a_32_byte_root(case: dict[str, Any]) -> None:
    """transparency-dev/formats allows any root length; C2SP roots are SHA-256 (32 bytes)."""
    with pytest.raises(InputError) as caught:
        Checkpoint(case["origin"], case["size"], case["hash_ascii"].encode())
    assert caught.value.reason == "checkpoint.root_hash_length"
    body = Checkpoint(case["origin"], case["size"], HASH).to_body().decode()
    root = base64.b64encode(case["hash_ascii"].encode()).decode()
    assert body.replace(base64.b64encode(HASH).decode(), root) == case["want"]


# Reasons per transparency-dev/formats and x/mod unmarshal case. The formats "valid" cases carry
# 7- and 37-byte roots, which C2SP's RFC 6962 (SHA-256) roots rule out.
UNMARSHAL_REASONS = {
    "valid one": "checkpoint.root_hash_length",
    "valid with different origin": "checkpoint.root_hash_length",
    "valid with trailing data (one extension line)": "checkpoint.root_hash_length",
    "valid with multiple trailing data lines": "checkpoint.root_hash_length",
    "trailing empty lines": "checkpoint.empty_extension",
    "invalid - insufficient lines": "checkpoint.too_few_lines",
    "invalid - empty header": "checkpoint.empty_origin",
    "invalid - missing newline on roothash": "checkpoint.missing_final_newline",
    "invalid size - not a number": "checkpoint.size_not_decimal",
    "invalid size - negative": "checkpoint.size_not_decimal",
    "invalid size - too large for uint64": "checkpoint.size_too_large",
    "invalid roothash - not base64": "checkpoint.root_hash_not_base64",
    "hex size": "checkpoint.size_not_decimal",
    # 35 bytes, and its last base64 digit has stray low bits: non-canonical before too long.
    "hash is not a 32-byte base64 value": "checkpoint.root_hash_not_base64",
}


@pytest.mark.parametrize("desc", sorted(UNMARSHAL_REASONS))
def test_unmarshal_vector_is_rejected(desc: str) -> None:
    with pytest.raises(InputError) as caught:
        Checkpoint.from_body(UNMARSHAL[desc]["body"].encode())
    assert caught.value.reason == UNMARSHAL_REASONS[desc]


@pytest.mark.parametrize(
    "desc",
    [
        "valid one",
        "valid with different origin",
        "valid with trailing data (one extension line)",
        "valid with multiple trailing data lines",
    ],
)
def test_formats_valid_cases_parse_with_a_32_byte_root(desc: str) -> None:
    case = UNMARSHAL[desc]
    lines = case["body"].split("\n")
    lines[2] = base64.b64encode(HASH).decode()
    checkpoint = Checkpoint.from_body("\n".join(lines).encode())
    assert (checkpoint.origin, checkpoint.size, checkpoint.root_hash) == (
        case["want"]["origin"],
        case["want"]["size"],
        HASH,
    )
    assert "".join(line + "\n" for line in checkpoint.extensions) == case["want"]["rest"]


@pytest.mark.parametrize(
    ("suffix", "reason", "extensions"),
    [
        pytest.param("JOE", "checkpoint.missing_final_newline", None, id="no-newline"),
        pytest.param("JOE\n", None, ("JOE",), id="one-line"),
        pytest.param("JOE\n" * 1000, "checkpoint.too_many_extensions", None, id="1000-lines"),
        pytest.param("JOE\n" * 16, None, ("JOE",) * 16, id="16-lines"),
    ],
)
def test_extension_lines_after_a_sumdb_tree(
    suffix: str, reason: str | None, extensions: tuple[str, ...] | None
) -> None:
    """x/mod ParseTree ignores trailing data; C2SP lines must end in newline; we bound them."""
    body = (VALID_SUMDB_BODY + suffix).encode()
    if reason is None:
        checkpoint = Checkpoint.from_body(body)
        assert checkpoint.extensions == extensions
        assert checkpoint.to_body() == body
        return
    with pytest.raises(InputError) as caught:
        Checkpoint.from_body(body)
    assert caught.value.reason == reason


_ROOT = base64.b64encode(HASH).decode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"", "checkpoint.missing_final_newline", id="empty"),
        pytest.param(
            b"o\n01\n" + _ROOT.encode() + b"\n", "checkpoint.size_not_decimal", id="0-lead"
        ),
        pytest.param(b"o\n+1\n" + _ROOT.encode() + b"\n", "checkpoint.size_not_decimal", id="plus"),
        pytest.param(b"o\n 1\n" + _ROOT.encode() + b"\n", "checkpoint.size_not_decimal", id="sp"),
        pytest.param(b"o\n1_0\n" + _ROOT.encode() + b"\n", "checkpoint.size_not_decimal", id="_"),
        pytest.param(
            "o\n\uff11\n".encode() + _ROOT.encode() + b"\n",
            "checkpoint.size_not_decimal",
            id="fullwidth-digit",
        ),
        pytest.param(b"o\n\n" + _ROOT.encode() + b"\n", "checkpoint.size_not_decimal", id="nosize"),
        pytest.param(
            b"o\n9223372036854775808\n" + _ROOT.encode() + b"\n",
            "checkpoint.size_too_large",
            id="2^63",
        ),
        pytest.param(
            b"o\n1" + b"0" * 5000 + b"\n" + _ROOT.encode() + b"\n",
            "checkpoint.size_too_large",
            id="5000-digits",
        ),
        pytest.param(
            b"o\n1\n" + _ROOT.encode()[:-1] + b"\n", "checkpoint.root_hash_not_base64", id="cut"
        ),
        pytest.param(
            b"o\n1\n" + _ROOT.encode()[:-2] + b"1=\n", "checkpoint.root_hash_not_base64", id="bits"
        ),
        pytest.param(b"o\n1\n\n", "checkpoint.root_hash_length", id="empty-root"),
        pytest.param(b"o\n1\nAAAA\n", "checkpoint.root_hash_length", id="3-byte-root"),
        pytest.param(
            b"o\x01\n1\n" + _ROOT.encode() + b"\n", "checkpoint.control_character", id="ctl"
        ),
        pytest.param(b"o\xff\n1\n" + _ROOT.encode() + b"\n", "checkpoint.invalid_utf8", id="0xff"),
        pytest.param(
            b"o\n1\n" + _ROOT.encode() + b"\n\next\n", "checkpoint.empty_extension", id="gap"
        ),
    ],
)
def test_malformed_body_is_rejected(body: bytes, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        Checkpoint.from_body(body)
    assert caught.value.reason == reason


def test_size_bounds() -> None:
    for size in (0, 1, MAX_TREE_SIZE):
        body = Checkpoint("o", size, HASH).to_body()
        assert Checkpoint.from_body(body).size == size


def test_oversized_body_is_rejected() -> None:
    body = VALID_SUMDB_BODY.encode()
    with pytest.raises(InputError) as caught:
        Checkpoint.from_body(body, limits=Limits(max_note_bytes=len(body) - 1))
    assert caught.value.reason == "checkpoint.too_large"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param({"origin": ""}, "checkpoint.empty_origin", id="empty-origin"),
        pytest.param({"origin": "a\nb"}, "checkpoint.control_character", id="newline-origin"),
        pytest.param({"origin": "\ud800"}, "checkpoint.invalid_utf8", id="surrogate-origin"),
        pytest.param({"size": -1}, "checkpoint.size_too_large", id="negative-size"),
        pytest.param({"size": 2**63}, "checkpoint.size_too_large", id="2^63"),
        pytest.param({"size": True}, "checkpoint.size_too_large", id="bool-size"),
        pytest.param({"root_hash": bytes(31)}, "checkpoint.root_hash_length", id="short-root"),
        pytest.param({"extensions": ("",)}, "checkpoint.empty_extension", id="empty-ext"),
        pytest.param({"extensions": ("a\n",)}, "checkpoint.control_character", id="newline-ext"),
    ],
)
def test_constructor_enforces_invariants(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InputError) as caught:
        replace(Checkpoint("o", 1, HASH), **changes)
    assert caught.value.reason == reason


# --- real sum.golang.org checkpoints -------------------------------------------------------------


def test_all_twelve_real_checkpoints_are_present() -> None:
    assert len(SUMDB["checkpoints"]) == 12
    assert SUMDB_LOG.public_key.hex() == SUMDB["public_key_hex"]


@pytest.mark.parametrize(
    "vector", SUMDB["checkpoints"], ids=[str(c["tree_size"]) for c in SUMDB["checkpoints"]]
)
def test_real_sumdb_checkpoint_verifies(vector: dict[str, Any]) -> None:
    data = vector["note"].encode()
    signed = open_checkpoint(data, SUMDB_LOG, origin=SUMDB_ORIGIN)
    assert isinstance(signed, SignedCheckpoint)
    assert signed.checkpoint.size == vector["tree_size"]
    assert signed.checkpoint.root_hash == base64.b64decode(vector["root_hash_b64"])
    assert signed.checkpoint.origin == SUMDB_ORIGIN
    assert signed.raw == data
    assert signed.note.to_bytes() == data
    assert signed.checkpoint.to_body() == signed.note.text


NEGATIVE_REASONS = {
    "C2SP tlog-checkpoint.md example exactly as printed (origin and key name changed from the "
    "signed ones)": "note.unknown_key",
    "real checkpoint with origin changed but key name kept": "note.signature_invalid",
    "real checkpoint with tree size incremented": "note.signature_invalid",
    "vkey with key ID changed 033de0ae -> 033de0af": "vkey.key_id_mismatch",
}


def _open_negative(vector: dict[str, Any]) -> None:
    if "note" not in vector:
        NoteVerifier.from_vkey(vector["vkey"])
        return
    log = NoteVerifier.from_vkey(vector["verifiers"][0])
    open_checkpoint(vector["note"].encode(), log)


@pytest.mark.parametrize(
    "vector",
    SUMDB["negative"],
    ids=["c2sp-example-as-printed", "origin-changed", "size-incremented", "key-id-changed"],
)
def test_negative_sumdb_vector_is_rejected(vector: dict[str, Any]) -> None:
    with pytest.raises(BrakepedalError) as caught:
        _open_negative(vector)
    assert caught.value.reason == NEGATIVE_REASONS[vector["name"]]


def test_sumdb_key_name_differs_from_origin_only_when_allowed() -> None:
    data = SUMDB["checkpoints"][0]["note"].encode()
    with pytest.raises(TrustError) as caught:
        open_checkpoint(data, SUMDB_LOG, require_key_name_is_origin=True)
    assert caught.value.reason == "checkpoint.key_name_mismatch"


def test_wrong_origin_is_rejected() -> None:
    """x/mod: 'not-go.sum database tree' must fail where 'go.sum database tree' is expected."""
    body = UNMARSHAL["wrong origin for a sumdb tree"]["body"].encode()
    data = sign_checkpoint(Checkpoint.from_body(body), TEST_LOG)
    with pytest.raises(TrustError) as caught:
        open_checkpoint(data, TEST_LOG.verifier(), origin=SUMDB_ORIGIN)
    assert caught.value.reason == "checkpoint.origin_mismatch"


def test_a_witness_signature_does_not_stand_in_for_the_log() -> None:
    data = SUMDB["checkpoints"][0]["note"].encode()
    with pytest.raises(TrustError) as caught:
        open_checkpoint(data, TEST_LOG.verifier())
    assert caught.value.reason == "note.unknown_key"


def test_body_is_parsed_only_after_the_signature_verifies() -> None:
    data = sign_checkpoint_text(b"o\nnot a size\n" + _ROOT.encode() + b"\n")
    with pytest.raises(TrustError) as caught:
        open_checkpoint(data, SUMDB_LOG)
    assert caught.value.reason == "note.unknown_key"
    with pytest.raises(InputError) as parse_error:
        open_checkpoint(data, TEST_LOG.verifier())
    assert parse_error.value.reason == "checkpoint.size_not_decimal"


def sign_checkpoint_text(body: bytes) -> bytes:
    signature = NoteSignature(TEST_LOG.name, TEST_LOG.key_id, TEST_LOG.sign(body))
    return Note(body, (signature,)).to_bytes()


# --- sigsum checkpoint (deterministic key) -------------------------------------------------------

LOG_VECTOR = SIGSUM["log_checkpoint"]
SIGSUM_LOG = NoteVerifier.from_vkey(LOG_VECTOR["vkey_derived"])


def test_sigsum_checkpoint_verifies_and_signing_reproduces_it() -> None:
    data = LOG_VECTOR["note"].encode()
    signed = open_checkpoint(data, SIGSUM_LOG, require_key_name_is_origin=True)
    assert signed.checkpoint.origin == LOG_VECTOR["origin"]
    assert signed.checkpoint.size == 10
    signer = NoteSigner(LOG_VECTOR["origin"], SIGSUM_KEY)
    assert signer.verifier() == SIGSUM_LOG
    assert sign_checkpoint(signed.checkpoint, signer) == data


def _tamper(case: str) -> bytes:
    note = Note.from_bytes(LOG_VECTOR["note"].encode())
    checkpoint = Checkpoint.from_body(note.text)
    sig = note.signatures[0]
    if case == "origin + 'x'":
        return Note(
            replace(checkpoint, origin=checkpoint.origin + "x").to_body(), (sig,)
        ).to_bytes()
    if case == "size + 1":
        return Note(replace(checkpoint, size=checkpoint.size + 1).to_body(), (sig,)).to_bytes()
    if case == "root hash byte 3 XOR 1":
        root = bytearray(checkpoint.root_hash)
        root[3] ^= 1
        return Note(replace(checkpoint, root_hash=bytes(root)).to_body(), (sig,)).to_bytes()
    if case == "key ID byte 2 XOR 1":
        key_id = bytearray(sig.key_id)
        key_id[2] ^= 1
        return Note(note.text, (replace(sig, key_id=bytes(key_id)),)).to_bytes()
    signature = bytearray(sig.signature)
    signature[4] ^= 1
    return Note(note.text, (replace(sig, signature=bytes(signature)),)).to_bytes()


TAMPER_REASONS = {
    "origin + 'x'": "note.signature_invalid",
    "key ID byte 2 XOR 1": "note.unknown_key",
    "size + 1": "note.signature_invalid",
    "root hash byte 3 XOR 1": "note.signature_invalid",
    "signature byte 4 XOR 1": "note.signature_invalid",
}


@pytest.mark.parametrize("case", LOG_VECTOR["tamper_cases_expect_error"])
def test_tampered_sigsum_checkpoint_is_rejected(case: str) -> None:
    with pytest.raises(TrustError) as caught:
        open_checkpoint(_tamper(case), SIGSUM_LOG)
    assert caught.value.reason == TAMPER_REASONS[case]


# --- properties ----------------------------------------------------------------------------------

origins = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=40)
checkpoints = st.builds(
    Checkpoint,
    origins,
    st.integers(0, MAX_TREE_SIZE),
    st.binary(min_size=32, max_size=32),
    st.lists(origins, max_size=4).map(tuple),
)


@given(checkpoints)
def test_body_round_trips(checkpoint: Checkpoint) -> None:
    assert Checkpoint.from_body(checkpoint.to_body()) == checkpoint


@given(checkpoints)
@settings(max_examples=25)
def test_signed_checkpoint_opens(checkpoint: Checkpoint) -> None:
    data = sign_checkpoint(checkpoint, TEST_LOG)
    signed = open_checkpoint(data, TEST_LOG.verifier(), origin=checkpoint.origin)
    assert signed.checkpoint == checkpoint
    assert signed.raw == data


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_typed_errors(data: bytes) -> None:
    with contextlib.suppress(BrakepedalError):
        Checkpoint.from_body(data)
    with contextlib.suppress(BrakepedalError):
        open_checkpoint(data, SUMDB_LOG)


@given(st.integers(0, 200), st.integers(1, 255))
def test_any_byte_change_to_a_real_checkpoint_is_caught(position: int, delta: int) -> None:
    data = bytearray(SUMDB["checkpoints"][0]["note"].encode())
    position %= len(data)
    data[position] = (data[position] + delta) % 256
    with pytest.raises(BrakepedalError):
        open_checkpoint(bytes(data), SUMDB_LOG, origin=SUMDB_ORIGIN)
