"""Golden vectors for the Merkle maths: transparency-dev/merkle probes and reference data.

See tests/vectors/merkle/SOURCE.md for where every file comes from and what its fields mean.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from brakepedal.errors import BrakepedalError
from brakepedal.tlog import merkle, subtree

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "merkle"
KINDS = ("inclusion", "consistency", "subtreeinclusion", "subtreeconsistency")
PROBES = sorted(path for kind in KINDS for path in (VECTORS / kind).rglob("*.json"))


def _probe_id(path: Path) -> str:
    return path.relative_to(VECTORS).with_suffix("").as_posix()


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _proof(probe: dict[str, Any]) -> list[bytes]:
    return [_b64(node) for node in probe["proof"] or []]


def _run_probe(kind: str, probe: dict[str, Any]) -> None:
    if kind == "inclusion":
        merkle.verify_inclusion(
            leaf_hash=_b64(probe["leafHash"]),
            index=probe["leafIdx"],
            size=probe["treeSize"],
            proof=_proof(probe),
            root=_b64(probe["root"]),
        )
    elif kind == "consistency":
        merkle.verify_consistency(
            old_size=probe["size1"],
            new_size=probe["size2"],
            old_root=_b64(probe["root1"]),
            new_root=_b64(probe["root2"]),
            proof=_proof(probe),
        )
    elif kind == "subtreeinclusion":
        subtree.verify_subtree_inclusion(
            leaf_hash=_b64(probe["leafHash"]),
            index=probe["leafIdx"],
            start=probe["start"],
            end=probe["end"],
            proof=_proof(probe),
            root=_b64(probe["root"]),
        )
    else:
        subtree.verify_subtree_consistency(
            start=probe["start"],
            end=probe["end"],
            size=probe["size"],
            subtree_root=_b64(probe["root1"]),
            root=_b64(probe["root2"]),
            proof=_proof(probe),
        )


def test_probe_count_is_the_upstream_count() -> None:
    assert len(PROBES) == 518


@pytest.mark.parametrize("path", PROBES, ids=_probe_id)
def test_probe(path: Path) -> None:
    probe = json.loads(path.read_text(encoding="utf-8"))
    kind = path.relative_to(VECTORS).parts[0]
    if probe["wantErr"]:
        with pytest.raises(BrakepedalError):
            _run_probe(kind, probe)
    else:
        _run_probe(kind, probe)


# --- reference_tree.json -----------------------------------------------------------------

REFERENCE = json.loads((VECTORS / "reference_tree.json").read_text(encoding="utf-8"))
LEAF_INPUTS = [bytes.fromhex(value) for value in REFERENCE["leaf_inputs_hex"]]
LEAF_HASHES = [merkle.leaf_hash(entry) for entry in LEAF_INPUTS]


def test_hasher_vectors() -> None:
    by_desc = {
        vector["desc"]: bytes.fromhex(vector["want_hex"]) for vector in REFERENCE["hasher_vectors"]
    }
    assert by_desc["RFC6962 Empty (empty tree root)"] == merkle.EMPTY_ROOT
    assert merkle.leaf_hash(b"") == by_desc["RFC6962 Empty Leaf: HashLeaf(b'')"]
    assert merkle.leaf_hash(b"L123456") == by_desc["RFC6962 Leaf: HashLeaf(b'L123456')"]
    assert (
        merkle.node_hash(b"N123", b"N456")
        == by_desc["RFC6962 Node: HashChildren(b'N123', b'N456')"]
    )


def test_roots_by_tree_size() -> None:
    roots = [bytes.fromhex(value) for value in REFERENCE["root_hashes_hex_by_tree_size"]]
    assert len(roots) == len(LEAF_HASHES) + 1
    for size, root in enumerate(roots):
        assert merkle.root_from_leaf_hashes(LEAF_HASHES[:size]) == root


def test_perfect_node_hashes_fold_to_every_root() -> None:
    levels = [[bytes.fromhex(h) for h in level] for level in REFERENCE["node_hashes_hex_by_level"]]
    assert levels[0] == LEAF_HASHES
    for size in range(len(LEAF_HASHES) + 1):
        nodes = merkle.perfect_subtrees(0, size)
        folded = merkle.fold_range([levels[node.level][node.index] for node in nodes])
        assert folded == merkle.root_from_leaf_hashes(LEAF_HASHES[:size])


@pytest.mark.parametrize(
    "entry",
    REFERENCE["inclusion_proofs"],
    ids=lambda e: f"index-{e['leaf_index']}-size-{e['tree_size']}",
)
def test_reference_inclusion_proofs(entry: dict[str, Any]) -> None:
    leaves = LEAF_HASHES[: entry["tree_size"]]
    want = [bytes.fromhex(node) for node in entry["proof_hex"]]
    assert merkle.inclusion_proof_from_leaf_hashes(entry["leaf_index"], leaves) == want
    merkle.verify_inclusion(
        leaf_hash=leaves[entry["leaf_index"]],
        index=entry["leaf_index"],
        size=entry["tree_size"],
        proof=want,
        root=merkle.root_from_leaf_hashes(leaves),
    )


@pytest.mark.parametrize(
    "entry", REFERENCE["consistency_proofs"], ids=lambda e: f"{e['size1']}-to-{e['size2']}"
)
def test_reference_consistency_proofs(entry: dict[str, Any]) -> None:
    leaves = LEAF_HASHES[: entry["size2"]]
    want = [bytes.fromhex(node) for node in entry["proof_hex"]]
    assert merkle.consistency_proof_from_leaf_hashes(entry["size1"], leaves) == want
    merkle.verify_consistency(
        old_size=entry["size1"],
        new_size=entry["size2"],
        old_root=merkle.root_from_leaf_hashes(leaves[: entry["size1"]]),
        new_root=merkle.root_from_leaf_hashes(leaves),
        proof=want,
    )


# --- subtree_accumulated_vectors.json (draft-ietf-plants-merkle-tree-certs appendix) ------

ACCUMULATED = json.loads((VECTORS / "subtree_accumulated_vectors.json").read_text("utf-8"))
WANT_DIGEST = {vector["name"]: vector["want_sha256"] for vector in ACCUMULATED["vectors"]}
DRAFT_LEAVES = [merkle.leaf_hash(bytes([i])) for i in range(130)]


def _upstream_valid(start: int, end: int) -> bool:
    # Upstream's rule, which also admits empty ranges; see STRICTER_THAN_UPSTREAM.
    return start in (0, end) or start % (1 << (end - start - 1).bit_length()) == 0


def _line(head: str, proof: list[bytes]) -> bytes:
    return (head + "".join(" " + node.hex() for node in proof) + "\n").encode()


def test_accumulated_subtree_hashes() -> None:
    digest = hashlib.sha256()
    for end in range(131):
        for start in (s for s in range(end + 1) if _upstream_valid(s, end)):
            digest.update(f"[{start}, {end}) {_range_hash(start, end).hex()}\n".encode())
    assert digest.hexdigest() == WANT_DIGEST["subtree_hash"]


def test_accumulated_subtree_inclusion_proofs() -> None:
    digest = hashlib.sha256()
    for end in range(131):
        for start in (s for s in range(end + 1) if _upstream_valid(s, end)):
            for index in range(start, end):
                ranges = merkle.inclusion_proof_ranges(index - start, end - start)
                proof = [_range_hash(start + a, start + b) for a, b in ranges]
                digest.update(_line(f"{index} [{start}, {end})", proof))
    assert digest.hexdigest() == WANT_DIGEST["subtree_inclusion_proof"]


@pytest.mark.slow
def test_accumulated_subtree_consistency_proofs() -> None:
    digest = hashlib.sha256()
    for size in range(131):
        for end in range(size + 1):
            for start in (s for s in range(end + 1) if _upstream_valid(s, end)):
                # Upstream gives an empty proof for an empty range; we refuse to make one.
                proof = (
                    []
                    if start == end
                    else [
                        _range_hash(a, b)
                        for a, b in subtree.subtree_consistency_proof_ranges(start, end, size)
                    ]
                )
                digest.update(_line(f"[{start}, {end}) {size}", proof))
    assert digest.hexdigest() == WANT_DIGEST["subtree_consistency_proof"]


_NODE_CACHE: dict[merkle.NodeId, bytes] = {}


@functools.cache
def _range_hash(start: int, end: int) -> bytes:
    return merkle.fold_range([_node(node) for node in merkle.perfect_subtrees(start, end)])


def _node(node: merkle.NodeId) -> bytes:
    # Perfect node hashes over DRAFT_LEAVES, memoised the way a store keeps them.
    if node not in _NODE_CACHE:
        if node.level == 0:
            _NODE_CACHE[node] = DRAFT_LEAVES[node.index]
        else:
            left = merkle.NodeId(node.level - 1, 2 * node.index)
            right = merkle.NodeId(node.level - 1, 2 * node.index + 1)
            _NODE_CACHE[node] = merkle.node_hash(_node(left), _node(right))
    return _NODE_CACHE[node]
