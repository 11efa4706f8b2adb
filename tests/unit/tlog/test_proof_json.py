"""The JSON wire form of proofs: round trips, and a table of named bad inputs."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brakepedal.errors import InputError, TrustError
from brakepedal.model.limits import Limits
from brakepedal.tlog import merkle
from brakepedal.tlog.proof import ConsistencyProof, InclusionProof, parse_proof

HASH = st.binary(min_size=32, max_size=32)
PATH = st.lists(HASH, max_size=64).map(tuple)


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


@st.composite
def inclusion_proofs(draw: st.DrawFn) -> InclusionProof:
    size = draw(st.integers(1, 2**53 - 1))
    return InclusionProof(draw(st.integers(0, size - 1)), size, draw(HASH), draw(PATH))


@st.composite
def consistency_proofs(draw: st.DrawFn) -> ConsistencyProof:
    new = draw(st.integers(0, 2**53 - 1))
    return ConsistencyProof(draw(st.integers(0, new)), new, draw(PATH))


@given(st.one_of(inclusion_proofs(), consistency_proofs()))
def test_round_trip(proof: InclusionProof | ConsistencyProof) -> None:
    assert parse_proof(proof.to_json()) == proof


def _inclusion(**changes: object) -> bytes:
    document: dict[str, object] = {
        "type": "inclusion",
        "log_index": 1,
        "tree_size": 2,
        "leaf_hash": _b64(bytes(32)),
        "hashes": [_b64(bytes(32))],
    }
    document.update(changes)
    return json.dumps({k: v for k, v in document.items() if v is not None}).encode()


BAD = [
    pytest.param(b"", "json", id="empty"),
    pytest.param(b"[1]", "json", id="not-an-object"),
    pytest.param(b'{"type": "inclusion"', "json", id="truncated"),
    pytest.param(_inclusion(type="proof"), "proof.unknown_type", id="unknown-type"),
    pytest.param(_inclusion(type=None), "proof.unknown_type", id="missing-type"),
    pytest.param(_inclusion(hashes=None), "proof.missing_field", id="missing-hashes"),
    pytest.param(_inclusion(extra=1), "proof.unknown_field", id="unknown-field"),
    pytest.param(_inclusion(log_index=True), "proof.field_not_integer", id="bool-index"),
    pytest.param(_inclusion(log_index="1"), "proof.field_not_integer", id="string-index"),
    pytest.param(_inclusion(log_index=-1), "proof.size_out_of_range", id="negative-index"),
    pytest.param(_inclusion(tree_size=1.5), "json", id="float-size"),
    pytest.param(_inclusion(tree_size=2**53), "json.integer_out_of_range", id="size-too-big"),
    pytest.param(_inclusion(log_index=2), "proof.index_out_of_range", id="index-not-below-size"),
    pytest.param(_inclusion(hashes="abc"), "proof.field_not_list", id="hashes-not-list"),
    pytest.param(_inclusion(hashes=[1]), "proof.hash_not_string", id="hash-not-string"),
    pytest.param(_inclusion(hashes=["!!"]), "proof.hash_not_base64", id="hash-not-base64"),
    pytest.param(_inclusion(hashes=["é"]), "proof.hash_not_base64", id="hash-not-ascii"),
    pytest.param(
        _inclusion(hashes=["A" * 42 + "B="]), "proof.hash_not_base64", id="hash-padding-bits-set"
    ),
    pytest.param(
        _inclusion(leaf_hash=_b64(bytes(31))), "proof.hash_wrong_length", id="short-leaf-hash"
    ),
    pytest.param(
        _inclusion(hashes=[_b64(bytes(32))] * 129), "proof.too_many_hashes", id="too-many-hashes"
    ),
    pytest.param(
        b'{"type": "consistency", "old_size": 5, "new_size": 4, "hashes": []}',
        "proof.sizes_out_of_order",
        id="old-after-new",
    ),
]


@pytest.mark.parametrize(("data", "reason"), BAD)
def test_bad_input_is_rejected_with_its_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_proof(data)
    assert caught.value.reason.startswith(reason)


def test_limits_bound_the_path() -> None:
    with pytest.raises(InputError, match="at most 1 "):
        parse_proof(_inclusion(hashes=[_b64(bytes(32))] * 2), limits=Limits(max_proof_hashes=1))


def test_verify_accepts_a_real_proof_and_rejects_a_wrong_root() -> None:
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(5)]
    root = merkle.root_from_leaf_hashes(leaves)
    path = tuple(merkle.inclusion_proof_from_leaf_hashes(3, leaves))
    proof = parse_proof(InclusionProof(3, 5, leaves[3], path).to_json())
    assert isinstance(proof, InclusionProof)
    proof.verify(root)
    with pytest.raises(TrustError):
        proof.verify(bytes(32))


def test_verify_consistency_of_a_real_pair() -> None:
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(9)]
    old_root = merkle.root_from_leaf_hashes(leaves[:4])
    new_root = merkle.root_from_leaf_hashes(leaves)
    path = tuple(merkle.consistency_proof_from_leaf_hashes(4, leaves))
    proof = ConsistencyProof(4, 9, path)
    proof.verify(old_root, new_root)
    with pytest.raises(TrustError):
        proof.verify(new_root, old_root)
