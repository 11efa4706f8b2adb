"""Properties of the Merkle maths over random trees of up to 4,096 leaves, and bad inputs.

Proofs are built the way a store builds them (proof ranges, split into perfect subtrees, read
from a node cache, folded) and checked against the O(n) reference generators. Tampering with any
one bit of a proof, root or leaf hash must be rejected. Tampering with a size or index must be
rejected *unless* the hashes genuinely commit to the changed claim: RFC 9162 proofs bind sizes
only through the shape of the hash computation (a proof for leaf 0 of 5 leaves is also one for
leaf 0 of 6), so the tests compute that shape symbolically, from the RFC's MTH definition and
the proof ranges, and demand acceptance exactly when the two shapes coincide.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brakepedal.errors import BrakepedalError, InputError, TrustError
from brakepedal.model.limits import Limits
from brakepedal.tlog import merkle, subtree
from brakepedal.tlog.merkle import NodeId

MAX_LEAVES = 4096
LEAVES = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(MAX_LEAVES)]
PROPERTY = settings(max_examples=150, deadline=None)

sizes = st.integers(min_value=1, max_value=MAX_LEAVES)
bits = st.integers(min_value=0, max_value=merkle.HASH_SIZE * 8 - 1)
size_bits = st.integers(min_value=0, max_value=64)


@functools.cache
def _node(node: NodeId) -> bytes:
    # The perfect-node hashes a store keeps, computed once per test session.
    if node.level == 0:
        return LEAVES[node.index]
    return merkle.node_hash(
        _node(NodeId(node.level - 1, 2 * node.index)),
        _node(NodeId(node.level - 1, 2 * node.index + 1)),
    )


def _range_hash(start: int, end: int) -> bytes:
    return merkle.fold_range([_node(node) for node in merkle.perfect_subtrees(start, end)])


def _reads(ranges: Sequence[tuple[int, int]]) -> int:
    return sum(len(merkle.perfect_subtrees(start, end)) for start, end in ranges)


def _flip(value: bytes, bit: int) -> bytes:
    flipped = bytearray(value)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


# --- symbolic shape of a verification ---------------------------------------------------

Expr = str | int | tuple["Expr", "Expr"]


def _expr(start: int, end: int, symbols: dict[tuple[int, int], Expr]) -> Expr:
    """MTH(D[start:end]) (RFC 9162 section 2.1.1) with the given ranges left as symbols."""
    if (start, end) in symbols:
        return symbols[start, end]
    assert end - start > 1, f"leaf [{start}, {end}) is neither a symbol nor splittable"
    split = start + (1 << ((end - start - 1).bit_length() - 1))
    return (_expr(start, split, symbols), _expr(split, end, symbols))


def _substitute(expr: Expr, name: str, value: Expr) -> Expr:
    if expr == name:
        return value
    if isinstance(expr, tuple):
        return (_substitute(expr[0], name, value), _substitute(expr[1], name, value))
    return expr


def _inclusion_shape(index: int, size: int) -> Expr:
    symbols: dict[tuple[int, int], Expr] = {(index, index + 1): "leaf"}
    symbols.update({r: i for i, r in enumerate(merkle.inclusion_proof_ranges(index, size))})
    return _expr(0, size, symbols)


def _consistency_shape(old_size: int, new_size: int) -> tuple[Expr, Expr]:
    ranges = merkle.consistency_proof_ranges(old_size, new_size)
    symbols: dict[tuple[int, int], Expr] = {r: i for i, r in enumerate(ranges)}
    if old_size == new_size:
        return "old", "old"
    if old_size & (old_size - 1) == 0:
        symbols[0, old_size] = "old"  # A perfect old tree is its own seed (RFC 9162 2.1.4.2).
    return _expr(0, old_size, symbols), _expr(0, new_size, symbols)


def _inclusion_should_accept(index: int, size: int, proof_length: int, shape: Expr) -> bool:
    if not 0 <= index < size <= merkle.MAX_TREE_SIZE:
        return False
    if len(merkle.inclusion_proof_ranges(index, size)) != proof_length:
        return False
    return _inclusion_shape(index, size) == shape


def _consistency_should_accept(
    old: int, new: int, proof_length: int, shape: tuple[Expr, Expr]
) -> bool:
    if not 0 < old <= new <= merkle.MAX_TREE_SIZE:
        return False
    if len(merkle.consistency_proof_ranges(old, new)) != proof_length:
        return False
    old_shape, new_shape = _consistency_shape(old, new)
    # "old" stands for the old root handed in, which the original proof pins to shape[0].
    return _substitute(old_shape, "old", shape[0]) == shape[0] and _substitute(
        new_shape, "old", shape[0]
    ) == _substitute(shape[1], "old", shape[0])


def _accepted(check: Callable[[], None]) -> bool:
    try:
        check()
    except BrakepedalError:
        return False
    return True


# --- perfect subtrees and folding -------------------------------------------------------


@PROPERTY
@given(st.integers(0, 2**40), st.integers(0, 2**20))
def test_perfect_subtrees_tile_any_range_with_aligned_nodes(start: int, width: int) -> None:
    nodes = merkle.perfect_subtrees(start, start + width)
    position = start
    for node in nodes:
        assert node.start == position
        assert node.start % (1 << node.level) == 0
        position = node.end
    assert position == start + width
    assert len(nodes) <= 2 * max(width.bit_length(), 1)


@PROPERTY
@given(st.integers(0, 2**30), st.integers(1, 2**20))
def test_node_ranges_split_largest_first_one_node_per_bit(slot: int, width: int) -> None:
    start = slot * (1 << (width - 1).bit_length())  # aligned as an RFC 9162 node must be
    nodes = merkle.perfect_subtrees(start, start + width)
    assert [node.end - node.start for node in nodes] == sorted(
        (1 << bit for bit in range(width.bit_length()) if width >> bit & 1), reverse=True
    )


@PROPERTY
@given(sizes, st.data())
def test_folding_perfect_subtrees_is_the_reference_mth(size: int, data: st.DataObject) -> None:
    assert _range_hash(0, size) == merkle.root_from_leaf_hashes(LEAVES[:size])
    width = data.draw(st.integers(1, size))
    alignment = 1 << (width - 1).bit_length()
    start = data.draw(st.integers(0, (MAX_LEAVES - width) // alignment)) * alignment
    assert _range_hash(start, start + width) == merkle.root_from_leaf_hashes(
        LEAVES[start : start + width]
    )


# --- inclusion --------------------------------------------------------------------------


def _inclusion_case(size: int, index: int) -> tuple[list[bytes], bytes]:
    proof = [_range_hash(a, b) for a, b in merkle.inclusion_proof_ranges(index, size)]
    return proof, _range_hash(0, size)


@settings(max_examples=40, deadline=None)
@given(sizes, st.data())
def test_store_built_inclusion_proof_is_the_reference(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, size - 1))
    proof, _ = _inclusion_case(size, index)
    assert proof == merkle.inclusion_proof_from_leaf_hashes(index, LEAVES[:size])


@PROPERTY
@given(sizes, st.data())
def test_inclusion_proof_verifies_in_few_reads(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, size - 1))
    proof, root = _inclusion_case(size, index)
    merkle.verify_inclusion(leaf_hash=LEAVES[index], index=index, size=size, proof=proof, root=root)
    # Bound: every proof range but at most one (the sibling taken on the right border, of
    # width below the 2**h perfect subtree the path then enters) is one perfect node; that one
    # splits into at most h pieces, and the h levels below add one read each, so the total is
    # at most floor(log2 size) + h <= 2 * floor(log2 size).
    assert _reads(merkle.inclusion_proof_ranges(index, size)) <= 2 * math.floor(math.log2(size))


@PROPERTY
@given(sizes, st.data())
def test_inclusion_rejects_any_flipped_hash_bit(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, size - 1))
    proof, root = _inclusion_case(size, index)
    target = data.draw(st.sampled_from(["leaf", "root", *range(len(proof))]))
    bit = data.draw(bits)
    leaf, tampered = LEAVES[index], list(proof)
    if target == "leaf":
        leaf = _flip(leaf, bit)
    elif target == "root":
        root = _flip(root, bit)
    else:
        tampered[int(target)] = _flip(proof[int(target)], bit)
    with pytest.raises(TrustError) as caught:
        merkle.verify_inclusion(leaf_hash=leaf, index=index, size=size, proof=tampered, root=root)
    assert caught.value.reason == "proof.root_mismatch"


@PROPERTY
@given(sizes, st.data())
def test_inclusion_flipped_size_or_index_accepted_only_with_same_shape(
    size: int, data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, size - 1))
    proof, root = _inclusion_case(size, index)
    shape = _inclusion_shape(index, size)
    new_index, new_size = index, size
    if data.draw(st.booleans()):
        new_index ^= 1 << data.draw(size_bits)
        # A different leaf position can never share the shape: the hashes bind the index.
        assert not _inclusion_should_accept(new_index, size, len(proof), shape)
    else:
        new_size ^= 1 << data.draw(size_bits)
    accepted = _accepted(
        lambda: merkle.verify_inclusion(
            leaf_hash=LEAVES[index], index=new_index, size=new_size, proof=proof, root=root
        )
    )
    assert accepted == _inclusion_should_accept(new_index, new_size, len(proof), shape)


# --- consistency ------------------------------------------------------------------------


def _consistency_case(size: int, data: st.DataObject) -> tuple[int, list[bytes], bytes, bytes]:
    old = data.draw(st.integers(1, size))
    proof = [_range_hash(a, b) for a, b in merkle.consistency_proof_ranges(old, size)]
    return old, proof, _range_hash(0, old), _range_hash(0, size)


@settings(max_examples=40, deadline=None)
@given(sizes, st.data())
def test_store_built_consistency_proof_is_the_reference(size: int, data: st.DataObject) -> None:
    old, proof, _, _ = _consistency_case(size, data)
    assert proof == merkle.consistency_proof_from_leaf_hashes(old, LEAVES[:size])
    assert proof == subtree.subtree_consistency_proof_from_leaf_hashes(0, old, LEAVES[:size])


@PROPERTY
@given(sizes, st.data())
def test_consistency_proof_verifies_in_few_reads(size: int, data: st.DataObject) -> None:
    old, proof, old_root, new_root = _consistency_case(size, data)
    merkle.verify_consistency(
        old_size=old, new_size=size, old_root=old_root, new_root=new_root, proof=proof
    )
    subtree.verify_subtree_consistency(
        start=0, end=old, size=size, subtree_root=old_root, root=new_root, proof=proof
    )
    # The proof is the seed node plus siblings on the path of leaf old - 1: one more than the
    # inclusion bound.
    bound = 2 * math.floor(math.log2(size)) + 1
    assert _reads(merkle.consistency_proof_ranges(old, size)) <= bound


@PROPERTY
@given(sizes, st.data())
def test_consistency_rejects_any_flipped_hash_bit(size: int, data: st.DataObject) -> None:
    old, proof, old_root, new_root = _consistency_case(size, data)
    target = data.draw(st.sampled_from(["old_root", "new_root", *range(len(proof))]))
    bit = data.draw(bits)
    tampered = list(proof)
    if target == "old_root":
        old_root = _flip(old_root, bit)
    elif target == "new_root":
        new_root = _flip(new_root, bit)
    else:
        tampered[int(target)] = _flip(proof[int(target)], bit)
    with pytest.raises(TrustError) as caught:
        merkle.verify_consistency(
            old_size=old, new_size=size, old_root=old_root, new_root=new_root, proof=tampered
        )
    want = (
        {"proof.root_mismatch"}
        if target == "new_root"
        else {"proof.root_mismatch", "proof.old_root_mismatch"}
    )
    assert caught.value.reason in want


@PROPERTY
@given(sizes, st.data(), st.booleans(), size_bits)
def test_consistency_flipped_size_accepted_only_with_same_shape(
    size: int, data: st.DataObject, flip_old: bool, bit: int
) -> None:
    old, proof, old_root, new_root = _consistency_case(size, data)
    shape = _consistency_shape(old, size)
    new_old, new_new = (old ^ (1 << bit), size) if flip_old else (old, size ^ (1 << bit))
    accepted = _accepted(
        lambda: merkle.verify_consistency(
            old_size=new_old, new_size=new_new, old_root=old_root, new_root=new_root, proof=proof
        )
    )
    assert accepted == _consistency_should_accept(new_old, new_new, len(proof), shape)


# --- subtrees ---------------------------------------------------------------------------


@PROPERTY
@given(sizes, st.data())
def test_subtree_proofs_verify_and_reject_flips(size: int, data: st.DataObject) -> None:
    width = data.draw(st.integers(1, size))
    alignment = 1 << (width - 1).bit_length()
    start = data.draw(st.integers(0, (size - width) // alignment)) * alignment
    end = start + width
    index = data.draw(st.integers(start, end - 1))
    node, root = _range_hash(start, end), _range_hash(0, size)
    inclusion = [
        _range_hash(start + a, start + b)
        for a, b in merkle.inclusion_proof_ranges(index - start, width)
    ]
    subtree.verify_subtree_inclusion(
        leaf_hash=LEAVES[index], index=index, start=start, end=end, proof=inclusion, root=node
    )
    consistency = [
        _range_hash(a, b) for a, b in subtree.subtree_consistency_proof_ranges(start, end, size)
    ]
    subtree.verify_subtree_consistency(
        start=start, end=end, size=size, subtree_root=node, root=root, proof=consistency
    )
    if consistency:
        position = data.draw(st.integers(0, len(consistency) - 1))
        consistency[position] = _flip(consistency[position], data.draw(bits))
    else:
        root = _flip(root, data.draw(bits))
    with pytest.raises(TrustError):
        subtree.verify_subtree_consistency(
            start=start, end=end, size=size, subtree_root=node, root=root, proof=consistency
        )


# --- named bad inputs -------------------------------------------------------------------

H = LEAVES[0]
ROOT_2 = merkle.root_from_leaf_hashes(LEAVES[:2])


def _incl(**changes: object) -> Callable[[], None]:
    arguments: dict[str, object] = {
        "leaf_hash": H,
        "index": 0,
        "size": 2,
        "proof": [LEAVES[1]],
        "root": ROOT_2,
    }
    arguments.update(changes)
    return lambda: merkle.verify_inclusion(**arguments)  # type: ignore[arg-type]


def _cons(**changes: object) -> Callable[[], None]:
    arguments: dict[str, object] = {
        "old_size": 1,
        "new_size": 2,
        "old_root": H,
        "new_root": ROOT_2,
        "proof": [LEAVES[1]],
    }
    arguments.update(changes)
    return lambda: merkle.verify_consistency(**arguments)  # type: ignore[arg-type]


BAD_INPUTS = [
    pytest.param(_incl(), None, "", id="control-inclusion-passes"),
    pytest.param(_cons(), None, "", id="control-consistency-passes"),
    pytest.param(
        _incl(leaf_hash=H[:31]), InputError, "proof.hash_wrong_length", id="short-leaf-hash"
    ),
    pytest.param(_incl(root=H + b"\0"), InputError, "proof.hash_wrong_length", id="long-root"),
    pytest.param(_incl(proof=[b""]), InputError, "proof.hash_wrong_length", id="empty-proof-hash"),
    pytest.param(
        _incl(proof=[H] * 129), InputError, "proof.too_many_hashes", id="proof-over-default-limit"
    ),
    pytest.param(
        lambda: merkle.verify_inclusion(
            leaf_hash=H,
            index=0,
            size=4,
            proof=merkle.inclusion_proof_from_leaf_hashes(0, LEAVES[:4]),
            root=merkle.root_from_leaf_hashes(LEAVES[:4]),
            limits=Limits(max_proof_hashes=1),
        ),
        InputError,
        "proof.too_many_hashes",
        id="proof-over-configured-limit",
    ),
    pytest.param(_incl(proof=[]), InputError, "proof.wrong_length", id="proof-too-short"),
    pytest.param(_incl(proof=[H, H]), InputError, "proof.wrong_length", id="proof-too-long"),
    pytest.param(_incl(index=2), InputError, "proof.index_out_of_range", id="index-equals-size"),
    pytest.param(
        _incl(index=0, size=0), InputError, "proof.index_out_of_range", id="empty-tree-inclusion"
    ),
    pytest.param(_incl(index=-1), InputError, "proof.size_out_of_range", id="negative-index"),
    pytest.param(_incl(size=-2), InputError, "proof.size_out_of_range", id="negative-size"),
    pytest.param(_incl(size=2**64), InputError, "proof.size_out_of_range", id="size-beyond-uint64"),
    pytest.param(_incl(index=True), InputError, "proof.size_not_integer", id="bool-index"),
    pytest.param(_incl(root=LEAVES[1]), TrustError, "proof.root_mismatch", id="wrong-root"),
    pytest.param(
        _cons(old_size=3), InputError, "proof.sizes_out_of_order", id="old-size-above-new"
    ),
    pytest.param(
        _cons(old_size=0, proof=[]), InputError, "proof.empty_old_tree", id="from-empty-tree"
    ),
    pytest.param(
        _cons(
            old_size=0, new_size=0, old_root=merkle.EMPTY_ROOT, new_root=merkle.EMPTY_ROOT, proof=[]
        ),
        InputError,
        "proof.empty_old_tree",
        id="empty-to-empty",
    ),
    pytest.param(_cons(old_size=-1), InputError, "proof.size_out_of_range", id="negative-old-size"),
    pytest.param(_cons(new_size=-1), InputError, "proof.size_out_of_range", id="negative-new-size"),
    pytest.param(_cons(proof=[]), InputError, "proof.wrong_length", id="empty-consistency-proof"),
    pytest.param(
        _cons(new_size=1, new_root=H),
        InputError,
        "proof.wrong_length",
        id="equal-sizes-nonempty-proof",
    ),
    pytest.param(
        _cons(new_size=1, new_root=ROOT_2, proof=[]),
        TrustError,
        "proof.root_mismatch",
        id="equal-sizes-different-roots",
    ),
    pytest.param(
        lambda: merkle.verify_consistency(
            old_size=3,
            new_size=4,
            old_root=LEAVES[2],
            new_root=merkle.root_from_leaf_hashes(LEAVES[:4]),
            proof=merkle.consistency_proof_from_leaf_hashes(3, LEAVES[:4]),
        ),
        TrustError,
        "proof.old_root_mismatch",
        id="wrong-old-root",
    ),
    pytest.param(
        _cons(old_root=LEAVES[1]), TrustError, "proof.root_mismatch", id="wrong-perfect-old-root"
    ),
    pytest.param(_cons(new_root=H), TrustError, "proof.root_mismatch", id="wrong-new-root"),
    pytest.param(_cons(old_root=H[:1]), InputError, "proof.hash_wrong_length", id="short-old-root"),
    pytest.param(
        lambda: merkle.perfect_subtrees(3, 2),
        InputError,
        "merkle.range_invalid",
        id="reversed-range",
    ),
    pytest.param(
        lambda: merkle.perfect_subtrees(-1, 2),
        InputError,
        "proof.size_out_of_range",
        id="negative-range",
    ),
    pytest.param(
        lambda: NodeId(-1, 0), InputError, "merkle.node_invalid", id="negative-node-level"
    ),
    pytest.param(
        lambda: merkle.fold_range([H, b"x"]),
        InputError,
        "proof.hash_wrong_length",
        id="fold-short-hash",
    ),
    pytest.param(
        lambda: merkle.inclusion_proof_ranges(5, 5),
        InputError,
        "proof.index_out_of_range",
        id="ranges-index-at-size",
    ),
    pytest.param(
        lambda: merkle.consistency_proof_ranges(0, 5),
        InputError,
        "proof.empty_old_tree",
        id="ranges-from-empty",
    ),
    pytest.param(
        lambda: merkle.consistency_proof_ranges(6, 5),
        InputError,
        "proof.sizes_out_of_order",
        id="ranges-out-of-order",
    ),
    pytest.param(
        lambda: subtree.verify_subtree_inclusion(
            leaf_hash=H, index=2, start=2, end=5, proof=[], root=H
        ),
        InputError,
        "proof.subtree_invalid",
        id="subtree-unaligned",
    ),
    pytest.param(
        lambda: subtree.verify_subtree_inclusion(
            leaf_hash=H, index=1, start=2, end=4, proof=[H], root=H
        ),
        InputError,
        "proof.index_out_of_range",
        id="subtree-index-left-of-start",
    ),
    pytest.param(
        lambda: subtree.verify_subtree_consistency(
            start=0, end=4, size=3, subtree_root=H, root=H, proof=[]
        ),
        InputError,
        "proof.size_out_of_range",
        id="subtree-beyond-tree",
    ),
    pytest.param(
        lambda: subtree.verify_subtree_consistency(
            start=2, end=2, size=4, subtree_root=H, root=H, proof=[]
        ),
        TrustError,
        "proof.root_mismatch",
        id="subtree-empty-with-a-non-empty-hash",
    ),
    pytest.param(
        lambda: subtree.verify_subtree_consistency(
            start=2, end=2, size=4, subtree_root=merkle.EMPTY_ROOT, root=H, proof=[H]
        ),
        InputError,
        "proof.wrong_length",
        id="subtree-empty-with-a-proof",
    ),
    pytest.param(
        lambda: subtree.verify_subtree_inclusion(
            leaf_hash=H, index=2, start=2, end=2, proof=[], root=H
        ),
        InputError,
        "proof.subtree_invalid",
        id="subtree-inclusion-in-empty-range",
    ),
]


@pytest.mark.parametrize(("call", "error", "reason"), BAD_INPUTS)
def test_bad_input(
    call: Callable[[], object], error: type[BrakepedalError] | None, reason: str
) -> None:
    if error is None:
        call()
        return
    with pytest.raises(error) as caught:
        call()
    assert caught.value.reason == reason


def test_node_id_leaf_range() -> None:
    assert (NodeId(3, 5).start, NodeId(3, 5).end) == (40, 48)
    assert NodeId(0, 7) < NodeId(1, 0)


@given(st.integers(min_value=1, max_value=300))
def test_the_level_by_level_root_is_the_rfc_recursive_definition(size: int) -> None:
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    assert merkle.root_from_leaf_hashes(leaves) == merkle._subtree_hash(leaves, 0, size)
