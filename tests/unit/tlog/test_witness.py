"""The witness: cosign only checkpoints consistent with everything cosigned before.

Logs here are real :class:`TransparencyLog` instances over :class:`MemoryLogStore`, signed with
real Ed25519 keys; a *fork* is two logs under one key that share a prefix and then differ.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brakepedal.crypto.canonical import require_canonical
from brakepedal.crypto.keys import generate_ed25519
from brakepedal.errors import BrakepedalError, InputError, TrustError
from brakepedal.model.limits import Limits
from brakepedal.tlog.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from brakepedal.tlog.cosignature import Cosigner, verify_cosignatures
from brakepedal.tlog.log import TransparencyLog
from brakepedal.tlog.note import Note, NoteSignature, NoteSigner
from brakepedal.tlog.proof import ConsistencyProof
from brakepedal.tlog.store import MemoryLogStore
from brakepedal.tlog.witness import (
    STATE_FORMAT,
    CosignResult,
    Witness,
    WitnessedCheckpoint,
    WitnessState,
    merge_cosigned_notes,
)

ORIGIN = "brakepedal.test/log"
LOG_KEY = NoteSigner(ORIGIN, generate_ed25519())
W1 = Cosigner("witness.test/w1", generate_ed25519())
W2 = Cosigner("witness.test/w2", generate_ed25519())
AT = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


class Log:
    """One history of the log ``origin``: append, checkpoint, prove consistency."""

    def __init__(self, origin: str = ORIGIN, key: NoteSigner = LOG_KEY) -> None:
        self.tlog = TransparencyLog(MemoryLogStore(origin))
        self.key = key

    def grow(self, *entries: bytes) -> bytes:
        """Append ``entries`` and return the signed checkpoint of the new size."""
        self.tlog.append(list(entries))
        return self.tlog.checkpoint(self.tlog.origin, self.key)

    def proof(self, old: int, new: int | None = None) -> ConsistencyProof:
        new = self.tlog.size() if new is None else new
        return ConsistencyProof(old, new, tuple(self.tlog.consistency_proof(old, new)))


def entries(prefix: str, count: int, start: int = 0) -> list[bytes]:
    return [f"{prefix} {i}".encode() for i in range(start, start + count)]


def witness(cosigner: Cosigner = W1, *others: NoteSigner) -> Witness:
    """A witness following the test log and the logs of ``others`` (origin = key name)."""
    return Witness(cosigner, {key.name: key.verifier() for key in (LOG_KEY, *others)})


def fresh(cosigner: Cosigner = W1) -> WitnessState:
    return WitnessState.empty(cosigner.verifier())


def cosign(
    state: WitnessState,
    note: bytes,
    proof: ConsistencyProof | None = None,
    *,
    by: Cosigner = W1,
) -> CosignResult:
    return witness(by).cosign(state, note, consistency_proof=proof, at=AT)


def refused(
    error: type[BrakepedalError], reason: str, state: WitnessState, note: bytes, **kw: Any
) -> None:
    before = state.to_bytes()
    with pytest.raises(error) as caught:
        cosign(state, note, **kw)
    assert caught.value.reason == reason
    assert state.to_bytes() == before


@pytest.fixture
def grown() -> tuple[Log, bytes, bytes, WitnessState]:
    """A log checkpointed at sizes 3 and 8, and a witness that cosigned size 3."""
    log = Log()
    cp3 = log.grow(*entries("e", 3))
    cp8 = log.grow(*entries("e", 5, start=3))
    return log, cp3, cp8, cosign(fresh(), cp3).state


# --- accepted --------------------------------------------------------------------------------


def test_first_checkpoint_is_trusted_on_first_use() -> None:
    note = Log().grow(*entries("e", 5))
    result = cosign(fresh(), note)
    head = result.checkpoint
    assert (head.origin, head.size) == (ORIGIN, 5)
    assert result.previous is None
    assert "first use" in result.describe()
    latest = result.state.latest(ORIGIN)
    assert latest is not None
    assert latest.body == Note.from_bytes(note).text


def test_cosigned_note_carries_log_signature_and_a_countable_cosignature() -> None:
    note = Log().grow(*entries("e", 5))
    result = cosign(fresh(), note)
    signed = open_checkpoint(result.note, LOG_KEY.verifier(), origin=ORIGIN)
    assert signed.checkpoint == result.checkpoint
    assert verify_cosignatures(signed.note, signed.note.text, [W1.verifier()], 1) == (W1.name,)
    assert signed.note.signatures[-1] == result.cosignature
    timestamp = W1.verifier().verify(
        signed.note.text, result.cosignature.key_id + result.cosignature.signature
    )
    assert timestamp == int(AT.timestamp())


def test_growth_with_a_valid_consistency_proof_is_cosigned(
    grown: tuple[Log, bytes, bytes, WitnessState],
) -> None:
    log, _, cp8, state = grown
    result = cosign(state, cp8, log.proof(3))
    assert result.previous is not None
    assert result.previous.checkpoint.size == 3
    assert "grew from size 3 to 8" in result.describe()
    latest = result.state.latest(ORIGIN)
    assert latest is not None
    assert latest.checkpoint.size == 8


def test_the_same_checkpoint_is_cosigned_again(
    grown: tuple[Log, bytes, bytes, WitnessState],
) -> None:
    _, cp3, _, state = grown
    result = cosign(state, cp3)
    assert result.state == state
    assert "cosigned again" in result.describe()


def test_other_signatures_are_ignored_and_dropped() -> None:
    note = Log().grow(*entries("e", 2))
    stranger = NoteSigner("stranger.test", generate_ed25519())
    parsed = Note.from_bytes(note)
    bogus = NoteSignature(stranger.name, stranger.key_id, bytes(64))
    result = cosign(fresh(), Note(parsed.text, (*parsed.signatures, bogus)).to_bytes())
    assert bogus not in Note.from_bytes(result.note).signatures


def test_an_earlier_cosignature_of_this_witness_is_replaced() -> None:
    note = Log().grow(*entries("e", 2))
    first = cosign(fresh(), note)
    later = witness().cosign(first.state, first.note, consistency_proof=None, at=AT + timedelta(1))
    lines = Note.from_bytes(later.note).signatures
    assert [line.name for line in lines] == [ORIGIN, W1.name]


def test_empty_log_then_growth_needs_no_proof() -> None:
    log = Log()
    cp0 = log.tlog.checkpoint(ORIGIN, LOG_KEY)
    state = cosign(fresh(), cp0).state
    result = cosign(state, log.grow(*entries("e", 4)))
    assert result.checkpoint.size == 4
    assert "grew from size 0 to 4: the empty tree is a prefix" in result.describe()


def test_logs_are_remembered_separately() -> None:
    other_key = NoteSigner("other.test/log", generate_ed25519())
    other = Log("other.test/log", other_key)
    state = cosign(fresh(), Log().grow(*entries("e", 4))).state
    state = (
        witness(W1, other_key).cosign(state, other.grow(b"x"), consistency_proof=None, at=AT).state
    )
    assert [(log.checkpoint.origin, log.checkpoint.size) for log in state.logs] == [
        (ORIGIN, 4),
        ("other.test/log", 1),
    ]


# --- refused ---------------------------------------------------------------------------------


def test_split_view_at_the_same_size_is_refused() -> None:
    honest, forked = Log(), Log()
    seen = honest.grow(*entries("e", 4))
    shown = forked.grow(*entries("e", 3), b"something else")
    state = cosign(fresh(), seen).state
    refused(TrustError, "witness.split_view", state, shown)
    with pytest.raises(TrustError) as caught:
        cosign(state, shown)
    assert "two different trees of size 4" in caught.value.message
    assert "evidence" in caught.value.diagnostics()


def test_rollback_is_refused(grown: tuple[Log, bytes, bytes, WitnessState]) -> None:
    log, cp3, cp8, state = grown
    state = cosign(state, cp8, log.proof(3)).state
    refused(TrustError, "witness.rollback", state, cp3)


def test_growth_without_a_proof_is_refused(grown: tuple[Log, bytes, bytes, WitnessState]) -> None:
    _, _, cp8, state = grown
    refused(InputError, "witness.proof_missing", state, cp8)


def test_a_proof_between_other_sizes_is_refused(
    grown: tuple[Log, bytes, bytes, WitnessState],
) -> None:
    log, _, cp8, state = grown
    refused(InputError, "witness.proof_sizes_mismatch", state, cp8, proof=log.proof(2))
    refused(InputError, "witness.proof_sizes_mismatch", state, cp8, proof=log.proof(3, 7))


def test_a_proof_must_start_where_the_witness_stopped() -> None:
    log = Log()
    log.grow(*entries("e", 3))
    cp8 = log.grow(*entries("e", 5, start=3))
    refused(InputError, "witness.proof_sizes_mismatch", fresh(), cp8, proof=log.proof(3))
    refused(
        InputError,
        "witness.proof_not_empty",
        fresh(),
        cp8,
        proof=ConsistencyProof(0, 8, (bytes(32),)),
    )
    assert cosign(fresh(), cp8, ConsistencyProof(0, 8, ())).checkpoint.size == 8
    state = cosign(fresh(), cp8).state
    assert cosign(state, cp8, ConsistencyProof(8, 8, ())).state == state


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda p: ConsistencyProof(3, 8, (bytes(32), *p.hashes[1:])), id="hash"),
        pytest.param(lambda p: ConsistencyProof(3, 8, p.hashes[:-1]), id="short"),
        pytest.param(lambda p: ConsistencyProof(3, 8, ()), id="empty"),
    ],
)
def test_a_proof_that_does_not_verify_is_refused(
    grown: tuple[Log, bytes, bytes, WitnessState],
    tamper: Callable[[ConsistencyProof], ConsistencyProof],
) -> None:
    log, _, cp8, state = grown
    refused(TrustError, "witness.inconsistent", state, cp8, proof=tamper(log.proof(3)))


def test_a_fork_before_the_cosigned_size_is_inconsistent() -> None:
    honest, forked = Log(), Log()
    state = cosign(fresh(), honest.grow(*entries("e", 3))).state
    shown = forked.grow(b"e 0", b"forked", b"e 2", *entries("e", 4, start=3))
    refused(TrustError, "witness.inconsistent", state, shown, proof=forked.proof(3))


def test_a_checkpoint_signed_by_an_unknown_key_is_refused() -> None:
    impostor = NoteSigner(ORIGIN, generate_ed25519())  # same name, another key
    note = Log(key=impostor).grow(*entries("e", 3))
    refused(TrustError, "witness.log_signature_invalid", fresh(), note)


def test_a_checkpoint_with_a_broken_log_signature_is_refused() -> None:
    parsed = Note.from_bytes(Log().grow(*entries("e", 3)))
    line = parsed.signatures[0]
    broken = NoteSignature(line.name, line.key_id, bytes(64))
    refused(
        TrustError,
        "witness.log_signature_invalid",
        fresh(),
        Note(parsed.text, (broken,)).to_bytes(),
    )


def test_a_log_the_witness_does_not_follow_is_refused() -> None:
    key = NoteSigner("other.test/log", generate_ed25519())
    refused(TrustError, "witness.unknown_log", fresh(), Log("other.test/log", key).grow(b"x"))


def test_an_empty_tree_with_another_root_is_refused() -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 0, bytes(32)), LOG_KEY)
    refused(TrustError, "witness.empty_root_mismatch", fresh(), note)


def test_the_state_of_another_witness_is_refused() -> None:
    note = Log().grow(b"x")
    refused(InputError, "witness.state_mismatch", fresh(W2), note)


@pytest.mark.parametrize(
    ("at", "reason"),
    [
        (datetime(2025, 1, 1), "time.naive"),
        (datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=1))), "time.not_utc"),
        (datetime(1969, 12, 31, tzinfo=UTC), "cosignature.timestamp_out_of_range"),
    ],
)
def test_the_time_must_be_utc_after_the_epoch(at: datetime, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        witness().cosign(fresh(), Log().grow(b"x"), consistency_proof=None, at=at)
    assert caught.value.reason == reason


def test_malformed_notes_are_input_errors() -> None:
    with pytest.raises(InputError):
        cosign(fresh(), b"not a note")
    body = f"{ORIGIN}\nnot a size\nAAAA\n".encode()
    note = Note(body, (NoteSignature(ORIGIN, LOG_KEY.key_id, LOG_KEY.sign(body)),)).to_bytes()
    with pytest.raises(InputError) as caught:
        cosign(fresh(), note)
    assert caught.value.reason == "checkpoint.size_not_decimal"


def test_a_witness_must_follow_a_log() -> None:
    with pytest.raises(InputError) as caught:
        Witness(W1, {})
    assert caught.value.reason == "witness.no_logs"
    assert witness().name == W1.name
    assert witness().verifier() == W1.verifier()


# --- merging cosignatures --------------------------------------------------------------------


def test_cosignatures_of_two_witnesses_merge_and_count() -> None:
    note = Log().grow(*entries("e", 6))
    one, two = cosign(fresh(W1), note, by=W1), cosign(fresh(W2), note, by=W2)
    merged = Note.from_bytes(merge_cosigned_notes([one.note, two.note, one.note]))
    assert [s.name for s in merged.signatures] == [ORIGIN, W1.name, W2.name]
    names = verify_cosignatures(merged, merged.text, [W1.verifier(), W2.verifier()], 2)
    assert names == (W1.name, W2.name)


def test_merge_refuses_different_checkpoints_and_bounds_lines() -> None:
    log = Log()
    cp1, cp2 = log.grow(b"a"), log.grow(b"b")
    one, two = cosign(fresh(W1), cp2, by=W1), cosign(fresh(W2), cp2, by=W2)
    for notes, reason, limits in [
        ([cp1, cp2], "witness.bodies_differ", Limits()),
        ([], "witness.nothing_to_merge", Limits()),
        ([one.note, two.note], "witness.too_many_signatures", Limits(max_note_signatures=2)),
    ]:
        with pytest.raises(InputError) as caught:
            merge_cosigned_notes(notes, limits=limits)
        assert caught.value.reason == reason


# --- the state file --------------------------------------------------------------------------


def two_log_state() -> WitnessState:
    other_key = NoteSigner("other.test/log", generate_ed25519())
    state = cosign(fresh(), Log().grow(*entries("e", 4))).state
    return (
        witness(W1, other_key)
        .cosign(state, Log("other.test/log", other_key).grow(b"x"), consistency_proof=None, at=AT)
        .state
    )


STATE = two_log_state()


def test_state_round_trips_in_canonical_form() -> None:
    data = STATE.to_bytes()
    assert require_canonical(data) == json.loads(data)
    assert WitnessState.from_bytes(data) == STATE
    assert json.loads(data)["format"] == STATE_FORMAT
    empty = fresh()
    assert WitnessState.from_bytes(empty.to_bytes()) == empty
    pretty = json.dumps(json.loads(data), indent=2).encode()
    assert WitnessState.from_bytes(pretty) == STATE


def _state(change: Callable[[dict[str, Any]], object]) -> bytes:
    document = json.loads(STATE.to_bytes())
    change(document)
    return json.dumps(document).encode()


def _log(document: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = document["logs"][ORIGIN]
    return entry


BAD_STATES: dict[str, tuple[bytes, str]] = {
    "not json": (b"{", "json.invalid"),
    "duplicate key": (b'{"format": "a", "format": "b"}', "json.duplicate_key"),
    "no format": (_state(lambda d: d.pop("format")), "witness_state.unknown_format"),
    "future format": (
        _state(lambda d: d.update(format="brakepedal/witness-state/v2")),
        "witness_state.unknown_format",
    ),
    "extra field": (_state(lambda d: d.update(note="hi")), "witness_state.unknown_field"),
    "no logs": (_state(lambda d: d.pop("logs")), "witness_state.missing_field"),
    "witness not a string": (_state(lambda d: d.update(witness=1)), "witness_state.field_type"),
    "witness not a vkey": (
        _state(lambda d: d.update(witness="nonsense")),
        "witness_state.invalid_witness",
    ),
    "witness vkey of a log key": (
        _state(lambda d: d.update(witness=LOG_KEY.verifier().to_vkey())),
        "witness_state.invalid_witness",
    ),
    "logs not an object": (_state(lambda d: d.update(logs=[])), "witness_state.field_type"),
    "log not an object": (
        _state(lambda d: d["logs"].update({ORIGIN: 4})),
        "witness_state.field_type",
    ),
    "log lacks size": (_state(lambda d: _log(d).pop("size")), "witness_state.missing_field"),
    "log extra field": (
        _state(lambda d: _log(d).update(time=0)),
        "witness_state.unknown_field",
    ),
    "size is a bool": (_state(lambda d: _log(d).update(size=True)), "witness_state.field_type"),
    "size is a float": (_state(lambda d: _log(d).update(size=4.0)), "json.float_not_allowed"),
    "size differs": (
        _state(lambda d: _log(d).update(size=5)),
        "witness_state.checkpoint_mismatch",
    ),
    "root not base64": (
        _state(lambda d: _log(d).update(root_hash="%%%")),
        "witness_state.root_hash_not_base64",
    ),
    "root not a string": (
        _state(lambda d: _log(d).update(root_hash=None)),
        "witness_state.field_type",
    ),
    "root differs": (
        _state(lambda d: _log(d).update(root_hash=base64.b64encode(bytes(32)).decode())),
        "witness_state.checkpoint_mismatch",
    ),
    "origin differs from body": (
        _state(lambda d: d["logs"].update({"elsewhere": d["logs"].pop(ORIGIN)})),
        "witness_state.checkpoint_mismatch",
    ),
    "checkpoint malformed": (
        _state(lambda d: _log(d).update(checkpoint=f"{ORIGIN}\n4\n")),
        "witness_state.invalid_checkpoint",
    ),
    "checkpoint not a string": (
        _state(lambda d: _log(d).update(checkpoint=["x"])),
        "witness_state.field_type",
    ),
    "not an object": (b"[]", "json.not_object"),
}


@pytest.mark.parametrize(("data", "reason"), BAD_STATES.values(), ids=BAD_STATES.keys())
def test_bad_state_is_refused_with_its_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        WitnessState.from_bytes(data)
    assert caught.value.reason == reason


def test_state_invariants_hold_on_construction() -> None:
    a, b = STATE.logs
    with pytest.raises(InputError) as caught:
        WitnessState(STATE.witness, (b, a))
    assert caught.value.reason == "witness_state.logs_not_sorted"
    with pytest.raises(InputError) as caught:
        WitnessState(STATE.witness, (a, a))
    assert caught.value.reason == "witness_state.logs_not_sorted"
    with pytest.raises(InputError) as caught:
        WitnessedCheckpoint(a.body, b.checkpoint)
    assert caught.value.reason == "witness_state.checkpoint_mismatch"


# --- properties ------------------------------------------------------------------------------

BATCHES = st.lists(st.integers(1, 6), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(batches=BATCHES, skip=st.lists(st.booleans(), min_size=6, max_size=6))
def test_every_honest_sequence_is_cosigned(batches: list[int], skip: list[bool]) -> None:
    log, state, cosigned = Log(), fresh(), 0
    for batch, skipped in zip(batches, skip, strict=False):
        note = log.grow(*entries("e", batch, start=log.tlog.size()))
        if skipped and log.tlog.size() < sum(batches):
            continue  # the witness may not see every checkpoint
        proof = log.proof(cosigned) if cosigned else None
        state = cosign(state, note, proof).state
        state = cosign(state, note).state  # repeating is harmless
        cosigned = log.tlog.size()
    latest = state.latest(ORIGIN)
    assert latest is not None
    assert latest.checkpoint.size == sum(batches)


@settings(max_examples=40, deadline=None)
@given(common=st.integers(0, 6), seen=st.integers(1, 6), shown=st.integers(1, 6))
def test_every_fork_is_refused(common: int, seen: int, shown: int) -> None:
    """The witness cosigned history A past the fork; any checkpoint of history B is refused."""
    a, b = Log(), Log()
    if common:
        a.grow(*entries("common", common))
        b.grow(*entries("common", common))
    state = cosign(fresh(), a.grow(*entries("a", seen))).state
    note = b.grow(*entries("b", shown))
    size_a, size_b = common + seen, common + shown
    if size_b < size_a:
        refused(TrustError, "witness.rollback", state, note)
    elif size_b == size_a:
        refused(TrustError, "witness.split_view", state, note)
    else:
        refused(TrustError, "witness.inconsistent", state, note, proof=b.proof(size_a))
