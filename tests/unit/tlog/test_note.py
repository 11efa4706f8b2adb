"""c2sp.org/signed-note: vkeys, parsing, verification and signing against published vectors."""

from __future__ import annotations

import base64
import contextlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from securesystemslib.signer import (
    CryptoSigner,
    Key,
    Signature,
    Signer,
    SSlibKey,
)

from brakepedal.errors import BrakepedalError, InputError, TrustError
from brakepedal.model.limits import Limits
from brakepedal.tlog.note import (
    Note,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    VerifiedNote,
    open_note,
    sign_note,
)

VECTORS = json.loads(
    (Path(__file__).parents[2] / "vectors/checkpoint/signed_note_vectors.json").read_text("utf-8")
)
KEYS = {key["vkey"].split("+")[0]: key for key in VECTORS["keys"]}
NOTES = {note["name"]: note for note in VECTORS["notes"]}
PETER_VKEY = KEYS["PeterNeumann"]["vkey"]
GOLDEN = NOTES["Sign output (golden)"]


def signer_from_skey(skey: str) -> NoteSigner:
    """A NoteSigner from a Go ``PRIVATE+KEY+name+id+base64(0x01 || seed)`` test key."""
    _, _, name, _, material = skey.split("+", 4)
    seed = base64.b64decode(material)[1:]
    return NoteSigner(name, CryptoSigner(Ed25519PrivateKey.from_private_bytes(seed)))


def verifiers(vkeys: list[str]) -> list[NoteVerifier]:
    return [NoteVerifier.from_vkey(vkey) for vkey in vkeys]


PETER = signer_from_skey(KEYS["PeterNeumann"]["skey"])
PETER_SIG = Note.from_bytes(GOLDEN["note"].encode()).signatures[0]


# --- verifier keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("vkey", [key["vkey"] for key in VECTORS["keys"]])
def test_vkey_round_trips(vkey: str) -> None:
    verifier = NoteVerifier.from_vkey(vkey)
    assert verifier.to_vkey() == vkey
    assert len(verifier.public_key) == 32
    assert verifier.key_id.hex() == vkey.split("+")[1]


@pytest.mark.parametrize("skey", [key["skey"] for key in VECTORS["keys"] if "skey" in key])
def test_skey_signer_matches_its_vkey(skey: str) -> None:
    signer = signer_from_skey(skey)
    assert signer.verifier().to_vkey() == KEYS[signer.name]["vkey"]


@pytest.mark.parametrize(
    ("vkey", "reason"),
    [
        pytest.param(VECTORS["bad_vkeys"][0]["vkey"], "vkey.invalid_base64", id="xmod-key-length"),
        pytest.param(VECTORS["bad_vkeys"][1]["vkey"], "vkey.unknown_type", id="xmod-type-byte"),
        pytest.param("", "vkey.malformed", id="empty"),
        pytest.param("PeterNeumann", "vkey.malformed", id="name-only"),
        pytest.param("PeterNeumann+c74f20a3", "vkey.malformed", id="no-key"),
        pytest.param(PETER_VKEY.replace("c74f20a3", "C74F20A3"), "vkey.invalid_key_id", id="upper"),
        pytest.param(PETER_VKEY.replace("c74f20a3", "c74f20"), "vkey.invalid_key_id", id="short"),
        pytest.param(
            PETER_VKEY.replace("c74f20a3", "c74f20ag"), "vkey.invalid_key_id", id="nonhex"
        ),
        pytest.param("+c74f20a3+" + PETER_VKEY.split("+", 2)[2], "vkey.invalid_name", id="no-name"),
        pytest.param("Peter Neumann+c74f20a3+AA==", "vkey.invalid_name", id="space-in-name"),
        pytest.param("Peter\u00a0N+c74f20a3+AA==", "vkey.invalid_name", id="nbsp-in-name"),
        pytest.param(PETER_VKEY[:-1] + "X", "vkey.key_id_mismatch", id="key-changed"),
        pytest.param(PETER_VKEY + "=", "vkey.invalid_base64", id="bad-padding"),
        pytest.param("PeterNeumann+c74f20a3+", "vkey.unknown_type", id="empty-key"),
        pytest.param(
            "PeterNeumann+c74f20a3+BBpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "vkey.unknown_type",
            id="cosignature-type-0x04",
        ),
        pytest.param(
            "sum.golang.org+033de0af+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8",
            "vkey.key_id_mismatch",
            id="sumdb-key-id-changed",
        ),
    ],
)
def test_bad_vkey_is_rejected(vkey: str, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        NoteVerifier.from_vkey(vkey)
    assert caught.value.reason == reason


def _vkey_variants(vkey: str) -> list[str]:
    substrings = {vkey[i:j] for i in range(len(vkey)) for j in range(i, len(vkey) + 1)}
    substrings.discard(vkey)
    incremented = {vkey[:i] + chr(ord(vkey[i]) + 1) + vkey[i + 1 :] for i in range(len(vkey))}
    return sorted(substrings | incremented)


def test_every_proper_substring_and_incremented_copy_is_rejected() -> None:
    """x/mod's rule: no proper substring or one-byte-incremented copy of a vkey parses."""
    variants = _vkey_variants(PETER_VKEY)
    assert len(variants) > 2000
    for variant in variants:
        with pytest.raises(InputError) as caught:
            NoteVerifier.from_vkey(variant)
        assert caught.value.reason.startswith("vkey."), variant


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param({"key_id": b"\0\0\0\0"}, "vkey.key_id_mismatch", id="key-id"),
        pytest.param({"public_key": bytes(31)}, "vkey.invalid_key_length", id="short-key"),
        pytest.param({"name": "a+b"}, "vkey.invalid_name", id="plus-in-name"),
        pytest.param({"name": "\ud800"}, "vkey.invalid_name", id="lone-surrogate"),
    ],
)
def test_verifier_constructor_enforces_invariants(changes: dict[str, Any], reason: str) -> None:
    peter = NoteVerifier.from_vkey(PETER_VKEY)
    with pytest.raises(InputError) as caught:
        replace(peter, **changes)
    assert caught.value.reason == reason


def test_verifier_rejects_signature_of_wrong_length() -> None:
    with pytest.raises(TrustError) as caught:
        NoteVerifier.from_vkey(PETER_VKEY).verify(b"text\n", bytes(63))
    assert caught.value.reason == "note.signature_invalid"


# --- published notes ---------------------------------------------------------------------------

NOTE_OUTCOMES = {
    "c2sp example": None,
    "Sign output (golden)": None,
    "one known, one unknown signature": None,
    "both known": None,
    "duplicated verifier that is not used": None,
    "duplicate verified and unverified signatures": None,
    # Fail closed: an empty verifier set is refused before any signature is looked at.
    "no known verifier": "note.no_verifiers",
    "c2sp quasimodo (format only: no verifier key is published)": "note.no_verifiers",
    "verifier list with the same key twice, and that key signed": "note.ambiguous_key",
    'known key, corrupted signature ("ABCD" inserted at byte offset 60 of the signature line)': (
        "note.signature_invalid"
    ),
}


def _note_bytes(vector: dict[str, Any]) -> bytes:
    if "note" in vector:
        return str(vector["note"]).encode("utf-8")
    # "text + '\n' + peterSig repeated 101 times"
    text, signature_line = str(GOLDEN["note"]).split("\n\n")
    return (text + "\n\n" + signature_line * 101).encode("utf-8")


def test_every_note_vector_has_an_expected_outcome() -> None:
    expected = set(NOTE_OUTCOMES) | {VECTORS["notes"][8]["name"]}
    assert expected == set(NOTES)


@pytest.mark.parametrize("name", [name for name, reason in NOTE_OUTCOMES.items() if reason is None])
def test_note_vector_verifies(name: str) -> None:
    vector = NOTES[name]
    result = open_note(_note_bytes(vector), verifiers(vector["verifiers"]))
    assert isinstance(result, VerifiedNote)
    if "verified" in vector:
        assert [sig.name for sig in result.verified] == vector["verified"]
    if "unverified" in vector:
        assert [sig.name for sig in result.unverified] == vector["unverified"]
    if "text" in vector:
        assert result.text == vector["text"].encode("utf-8")
    if "verified_count_after_dedup" in vector:
        assert len(result.verified) == vector["verified_count_after_dedup"]
        assert len(result.unverified) == vector["unverified_count_after_dedup"]


@pytest.mark.parametrize(
    "name", [name for name, reason in NOTE_OUTCOMES.items() if reason is not None]
)
def test_note_vector_is_rejected(name: str) -> None:
    vector = NOTES[name]
    with pytest.raises(BrakepedalError) as caught:
        open_note(_note_bytes(vector), verifiers(vector["verifiers"]))
    assert caught.value.reason == NOTE_OUTCOMES[name]


def test_quasimodo_parses_and_splits_at_last_blank_line() -> None:
    vector = NOTES["c2sp quasimodo (format only: no verifier key is published)"]
    note = Note.from_bytes(_note_bytes(vector))
    assert note.text == vector["text"].encode("utf-8")
    assert [sig.name for sig in note.signatures] == ["quasimodo.example/salvatore"]
    assert note.to_bytes() == _note_bytes(vector)


def test_note_signed_only_by_unknown_keys_is_rejected() -> None:
    vector = NOTES["no known verifier"]
    with pytest.raises(TrustError) as caught:
        open_note(_note_bytes(vector), verifiers([KEYS["Log"]["vkey"]]))
    assert caught.value.reason == "note.unknown_key"
    assert "EnochRoot" in caught.value.message


def test_101_signatures_exceed_the_default_limit_but_not_a_raised_one() -> None:
    vector = VECTORS["notes"][8]
    assert "101" in vector["name"]
    data = _note_bytes(vector)
    with pytest.raises(InputError) as caught:
        open_note(data, verifiers(vector["verifiers"]))
    assert caught.value.reason == "note.too_many_signatures"
    result = open_note(data, verifiers(vector["verifiers"]), limits=Limits(max_note_signatures=101))
    assert len(result.verified) == 1


MALFORMED_REASONS = {
    "text only, no blank line, no signatures": "note.missing_separator",
    "text + blank line, no signature lines": "note.no_signatures",
    "signature line missing final newline": "note.missing_final_newline",
    "leading control character U+0001": "note.control_character",
    "leading byte 0xff (invalid UTF-8)": "note.invalid_utf8",
    "key name containing a space, no final newline": "note.missing_final_newline",
    "non-signature line after signatures": "note.malformed_signature_line",
}


@pytest.mark.parametrize(
    "vector", [pytest.param(v, id=v["why"]) for v in VECTORS["malformed_notes_hex"]]
)
def test_malformed_note_vector_is_rejected(vector: dict[str, Any]) -> None:
    with pytest.raises(InputError) as caught:
        open_note(bytes.fromhex(vector["note_hex"]), verifiers(vector["verifiers"]))
    assert caught.value.reason == MALFORMED_REASONS[vector["why"]]


# --- synthetic malformed notes -------------------------------------------------------------------

_TEXT = "hello\n\n"
_SIG = GOLDEN["note"].split("\n\n")[1]
_PAYLOAD = _SIG.split(" ")[2]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param("", "note.missing_final_newline", id="empty"),
        pytest.param("\n", "note.missing_separator", id="newline-only"),
        pytest.param(
            _TEXT + "- PeterNeumann " + _PAYLOAD, "note.malformed_signature_line", id="dash"
        ),
        pytest.param(
            _TEXT + "\u2014PeterNeumann " + _PAYLOAD, "note.malformed_signature_line", id="no-space"
        ),
        pytest.param(_TEXT + "\u2014 PeterNeumann\n", "note.malformed_signature_line", id="no-sig"),
        pytest.param(_TEXT + "\u2014  " + _PAYLOAD, "note.invalid_key_name", id="empty-name"),
        pytest.param(_TEXT + "\u2014 a+b " + _PAYLOAD, "note.invalid_key_name", id="plus-name"),
        pytest.param(_TEXT + "\u2014 a\u3000b " + _PAYLOAD, "note.invalid_key_name", id="ideo-sp"),
        pytest.param(_TEXT + "\u2014 a !!!!\n", "note.signature_not_base64", id="not-b64"),
        pytest.param(_TEXT + "\u2014 a AAAAAB==\n", "note.signature_not_base64", id="noncanonical"),
        pytest.param(
            _TEXT + "\u2014 a " + _PAYLOAD.strip() + " x\n", "note.signature_not_base64", id="2sp"
        ),
        pytest.param(_TEXT + "\u2014 a AAAAAA==\n", "note.signature_too_short", id="id-only"),
        pytest.param("a\tb\n\n" + _SIG, "note.control_character", id="tab"),
        pytest.param("a\rb\n\n" + _SIG, "note.control_character", id="carriage-return"),
        pytest.param("a\n\n" + _SIG[:-1] + "\x00\n", "note.control_character", id="nul-in-sig"),
    ],
)
def test_malformed_note_is_rejected(data: str, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        Note.from_bytes(data.encode("utf-8", "surrogatepass"))
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"\xed\xa0\x80\n\n", "note.invalid_utf8", id="surrogate"),
        pytest.param(b"\xc0\xaf\n\n", "note.invalid_utf8", id="overlong"),
        pytest.param(b"a\n\n\xe2\x80", "note.invalid_utf8", id="truncated-em-dash"),
    ],
)
def test_invalid_utf8_is_rejected(data: bytes, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        Note.from_bytes(data)
    assert caught.value.reason == reason


def test_oversized_note_is_rejected_before_parsing() -> None:
    data = _note_bytes(GOLDEN)
    with pytest.raises(InputError) as caught:
        Note.from_bytes(data, limits=Limits(max_note_bytes=len(data) - 1))
    assert caught.value.reason == "note.too_large"
    assert Note.from_bytes(data, limits=Limits(max_note_bytes=len(data))).to_bytes() == data


def test_error_messages_name_the_line() -> None:
    with pytest.raises(InputError) as caught:
        Note.from_bytes(b"one\ntwo\n\n" + _SIG.encode() + b"junk\n")
    assert "line 5" in caught.value.message


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        pytest.param(
            lambda: Note(b"no newline", (PETER_SIG,)),
            "note.missing_final_newline",
            id="text-without-newline",
        ),
        pytest.param(lambda: Note(b"text\n", ()), "note.no_signatures", id="no-signatures"),
        pytest.param(
            lambda: NoteSignature("a", b"123", b"s"), "note.signature_too_short", id="3-byte-key-id"
        ),
        pytest.param(
            lambda: NoteSignature("a", b"1234", b""),
            "note.signature_too_short",
            id="empty-signature",
        ),
        pytest.param(
            lambda: NoteSignature("", b"1234", b"s"), "note.invalid_key_name", id="empty-name"
        ),
    ],
)
def test_constructors_enforce_invariants(build: Any, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        build()
    assert caught.value.reason == reason


# --- signing -------------------------------------------------------------------------------------


def test_signing_reproduces_the_golden_note() -> None:
    """Ed25519 is deterministic, so the x/mod golden note must come back byte for byte."""
    assert sign_note(GOLDEN["text"].encode(), [PETER]) == GOLDEN["note"].encode()


def test_signing_keeps_existing_signatures_and_replaces_own() -> None:
    enoch_note = Note.from_bytes(NOTES["no known verifier"]["note"].encode())
    text = GOLDEN["text"].encode()
    stale = NoteSignature(PETER.name, PETER.key_id, bytes(64))
    data = sign_note(text, [PETER], existing=[*enoch_note.signatures, stale])
    result = open_note(data, verifiers([PETER_VKEY, KEYS["EnochRoot"]["vkey"]]))
    assert [sig.name for sig in result.verified] == ["EnochRoot", "PeterNeumann"]


def test_sign_then_open_with_a_generated_key() -> None:
    signer = NoteSigner("example.org/log", CryptoSigner.generate_ed25519())
    data = sign_note(b"hello\n", [signer])
    assert open_note(data, [signer.verifier()]).text == b"hello\n"
    assert NoteVerifier.from_vkey(signer.verifier().to_vkey()) == signer.verifier()


class _FakeSigner(Signer):
    """A remote signer that advertises ``public_key`` and answers with ``signature_hex``."""

    def __init__(self, public_key: Key, signature_hex: str | None = None) -> None:
        self._inner = CryptoSigner.generate_ed25519()
        self._advertised = public_key
        self._signature_hex = signature_hex

    @property
    def public_key(self) -> Key:
        return self._advertised

    def sign(self, payload: bytes) -> Signature:
        signature = self._inner.sign(payload)
        if self._signature_hex is not None:
            signature = Signature(signature.keyid, self._signature_hex)
        return signature

    @classmethod
    def from_priv_key_uri(cls, *args: object, **kwargs: object) -> Signer:
        raise NotImplementedError


def _ed25519_key(public_hex: str) -> Key:
    return SSlibKey("id", "ed25519", "ed25519", {"public": public_hex})


def test_signer_holding_another_key_is_caught() -> None:
    other = CryptoSigner.generate_ed25519().public_key
    with pytest.raises(TrustError) as caught:
        sign_note(b"text\n", [NoteSigner("a", _FakeSigner(other))])
    assert caught.value.reason == "note.signature_invalid"


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        pytest.param(_ed25519_key("zz"), "note.signer_not_ed25519", id="non-hex-key"),
        pytest.param(_ed25519_key("00" * 31), "note.signer_not_ed25519", id="31-byte-key"),
    ],
)
def test_signer_with_unusable_public_key_is_refused(key: Key, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        NoteSigner("a", _FakeSigner(key))
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "signature_hex",
    [pytest.param("not hex", id="non-hex"), pytest.param("00" * 63, id="63-bytes")],
)
def test_signer_with_malformed_output_is_refused(signature_hex: str) -> None:
    signer = NoteSigner(
        "a", _FakeSigner(_ed25519_key(PETER.verifier().public_key.hex()), signature_hex)
    )
    with pytest.raises(InputError) as caught:
        signer.sign(b"text\n")
    assert caught.value.reason == "note.signer_output"


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        pytest.param(lambda: sign_note(b"text\n", []), "note.no_signers", id="no-signers"),
        pytest.param(
            lambda: sign_note(b"text\n", [PETER, PETER]),
            "note.duplicate_signer",
            id="same-signer-twice",
        ),
        pytest.param(
            lambda: sign_note(b"text", [PETER]),
            "note.missing_final_newline",
            id="text-without-newline",
        ),
        pytest.param(
            lambda: sign_note(b"a\x07\n", [PETER]), "note.control_character", id="bell-in-text"
        ),
        pytest.param(
            lambda: NoteSigner("a", CryptoSigner.generate_ecdsa()),
            "note.signer_not_ed25519",
            id="ecdsa-signer",
        ),
        pytest.param(
            lambda: NoteSigner("a b", CryptoSigner.generate_ed25519()),
            "note.invalid_key_name",
            id="space-in-name",
        ),
        pytest.param(
            lambda: open_note(GOLDEN["note"].encode(), []), "note.no_verifiers", id="no-verifiers"
        ),
    ],
)
def test_signing_misuse_is_rejected(call: Any, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        call()
    assert caught.value.reason == reason


# --- properties ----------------------------------------------------------------------------------

_NAME_CHARS = st.characters(
    exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), exclude_characters="+\x85"
)
key_names = st.text(_NAME_CHARS, min_size=1, max_size=20).filter(
    lambda name: not any(char.isspace() for char in name)
)
note_texts = st.lists(
    st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=30), min_size=1
).map(lambda lines: "".join(line + "\n" for line in lines).encode("utf-8"))
note_signatures = st.builds(
    NoteSignature, key_names, st.binary(min_size=4, max_size=4), st.binary(min_size=1, max_size=80)
)


@given(note_texts, st.lists(note_signatures, min_size=1, max_size=5))
def test_note_round_trips(text: bytes, signatures: list[NoteSignature]) -> None:
    note = Note(text, tuple(signatures))
    assert Note.from_bytes(note.to_bytes()) == note


@given(note_texts)
@settings(max_examples=25)
def test_signed_text_verifies(text: bytes) -> None:
    assert open_note(sign_note(text, [PETER]), [PETER.verifier()]).text == text


@given(key_names, st.binary(min_size=32, max_size=32))
def test_vkey_round_trips_for_any_name(name: str, public_key: bytes) -> None:
    verifier = NoteVerifier.from_public_key(name, public_key)
    assert NoteVerifier.from_vkey(verifier.to_vkey()) == verifier


@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_typed_errors(data: bytes) -> None:
    with contextlib.suppress(BrakepedalError):
        open_note(data, [PETER.verifier()])


@given(st.text(max_size=100))
def test_arbitrary_vkeys_raise_only_typed_errors(vkey: str) -> None:
    with contextlib.suppress(BrakepedalError):
        NoteVerifier.from_vkey(vkey)


@given(st.integers(0, len(GOLDEN["note"].encode()) - 1), st.integers(1, 255))
def test_any_byte_change_is_caught(position: int, delta: int) -> None:
    data = bytearray(GOLDEN["note"].encode())
    data[position] = (data[position] + delta) % 256
    with pytest.raises(BrakepedalError):
        open_note(bytes(data), [PETER.verifier()])
