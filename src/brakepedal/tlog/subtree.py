"""Subtree inclusion and consistency proofs (draft-ietf-plants-merkle-tree-certs, "Subtrees").

A *subtree* ``[start, end)`` of an RFC 9162 tree is a leaf range with ``start < end`` and
``start`` a multiple of the smallest power of two >= ``end - start``: exactly the ranges that are
(or will become, as the log grows) interior nodes of the tree, so MTH(D[start:end]) is well
defined and every later tree commits to it.

* A subtree inclusion proof is RFC 9162 PATH(index - start, D[start:end]): an ordinary
  inclusion proof inside the subtree (RFC 9162 section 2.1.3).
* A subtree consistency proof shows that the tree of ``size`` leaves contains the subtree with
  the given hash; with ``start == 0`` it is exactly the RFC 9162 consistency proof from
  ``end`` to ``size`` (section 2.1.4).

The checks follow transparency-dev/merkle ``proof/verify.go`` and give its verdict on every
published probe. One case is worth knowing: in a subtree *consistency* check the empty range
(``start == end``) is accepted with an empty proof when its hash is SHA-256 of nothing, whatever
the tree root, because the empty range lies in every tree. Nothing else is an empty subtree.
"""

from __future__ import annotations

from collections.abc import Sequence

from brakepedal.errors import InputError, TrustError
from brakepedal.model.limits import DEFAULT_LIMITS, Limits
from brakepedal.tlog.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MAX_TREE_SIZE,
    node_hash,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
)

__all__ = [
    "require_subtree",
    "root_from_subtree_consistency_proof",
    "subtree_consistency_proof_from_leaf_hashes",
    "subtree_consistency_proof_ranges",
    "verify_subtree_consistency",
    "verify_subtree_inclusion",
]


def require_subtree(start: int, end: int, *, allow_empty: bool = False) -> None:
    """Raise :class:`InputError` unless ``[start, end)`` is a subtree (see the module doc)."""
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_TREE_SIZE:
            raise InputError(
                "proof.size_out_of_range", f"subtree {name} must be in [0, 2^64), got {value!r:.40}"
            )
    if start > end or (start == end and not allow_empty):
        raise InputError("proof.subtree_invalid", f"subtree [{start}, {end}) is empty or reversed")
    if start == end:
        return
    width = end - start
    # Smallest power of two >= width: a subtree must sit where a node of that width can sit.
    alignment = 1 << (width - 1).bit_length()
    if start % alignment:
        raise InputError(
            "proof.subtree_invalid",
            f"subtree [{start}, {end}): start is not a multiple of {alignment}",
        )


def subtree_consistency_proof_ranges(start: int, end: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose MTH form the subtree consistency proof of ``[start, end)`` into the
    tree of ``size`` leaves.

    RFC 9162 SUBPROOF (section 2.1.4.1) generalised to a subtree that need not start at 0:
    descend from the root towards ``[start, end)``, recording each sibling; a subtree that
    starts at 0 and straddles the split is the RFC case, after which the verifier no longer
    knows the node it reaches, so that node's hash is recorded too. With ``start == 0`` this
    is exactly PROOF(end, D[0:size]).
    """
    require_subtree(start, end)
    _require_tree_size(size, end)
    ranges: list[tuple[int, int]] = []
    low, high, node_is_known = 0, size, True
    while (start, end) != (low, high):
        split = low + (1 << ((high - low - 1).bit_length() - 1))
        if end <= split:
            ranges.append((split, high))
            high = split
        elif start >= split:
            ranges.append((low, split))
            low = split
        else:
            # Only a subtree starting at ``low`` can straddle a split (alignment).
            ranges.append((low, split))
            low = start = split
            node_is_known = False
    if not node_is_known:
        ranges.append((low, high))
    ranges.reverse()
    return ranges


def subtree_consistency_proof_from_leaf_hashes(
    start: int, end: int, leaf_hashes: Sequence[bytes]
) -> list[bytes]:
    """Reference subtree consistency proof from all leaf hashes of the tree; O(n)."""
    ranges = subtree_consistency_proof_ranges(start, end, len(leaf_hashes))
    return [root_from_leaf_hashes(leaf_hashes[low:high]) for low, high in ranges]


def verify_subtree_inclusion(
    *,
    leaf_hash: bytes,
    index: int,
    start: int,
    end: int,
    proof: Sequence[bytes],
    root: bytes,
    limits: Limits = DEFAULT_LIMITS,
) -> None:
    """Raise unless ``proof`` shows ``leaf_hash`` at ``index`` in the subtree ``[start, end)``
    whose hash is ``root`` (RFC 9162 section 2.1.3.2 applied inside the subtree)."""
    require_subtree(start, end)
    if not isinstance(index, int) or isinstance(index, bool) or not start <= index < end:
        raise InputError(
            "proof.index_out_of_range", f"leaf index {index!r:.40} is outside [{start}, {end})"
        )
    _require_hash("root", root)
    computed = root_from_inclusion_proof(
        leaf_hash=leaf_hash, index=index - start, size=end - start, proof=proof, limits=limits
    )
    _require_match("proof.root_mismatch", f"hash of subtree [{start}, {end})", computed, root)


def verify_subtree_consistency(
    *,
    start: int,
    end: int,
    size: int,
    subtree_root: bytes,
    root: bytes,
    proof: Sequence[bytes],
    limits: Limits = DEFAULT_LIMITS,
) -> None:
    """Raise unless ``proof`` shows the tree of ``size`` leaves and hash ``root`` contains the
    subtree ``[start, end)`` with hash ``subtree_root``."""
    if start == end or (start == 0 and end == size):
        _verify_trivial_subtree(
            start=start, end=end, size=size, subtree_root=subtree_root, root=root, proof=proof
        )
        return
    computed = root_from_subtree_consistency_proof(
        start=start, end=end, size=size, subtree_root=subtree_root, proof=proof, limits=limits
    )
    _require_hash("root", root)
    _require_match("proof.root_mismatch", f"root of the tree of size {size}", computed, root)


def _verify_trivial_subtree(
    *, start: int, end: int, size: int, subtree_root: bytes, root: bytes, proof: Sequence[bytes]
) -> None:
    """The two statements that need no proof, with upstream's verdicts.

    The empty subtree hashes to :data:`EMPTY_ROOT` and lies in every tree; the whole tree
    ``[0, size)`` lies in itself when the two roots are equal. Both need an empty proof.
    As in transparency-dev/merkle, hash lengths are not checked here: byte equality is the
    whole statement, and nothing about any other tree follows from it. Typed wire objects
    (:mod:`brakepedal.tlog.proof`) check lengths before anything reaches this layer.
    """
    require_subtree(start, end, allow_empty=True)
    _require_tree_size(size, end)
    _require_proof_length(len(proof), 0)
    if start == end:
        _require_match("proof.root_mismatch", "hash of the empty subtree", subtree_root, EMPTY_ROOT)
    else:
        _require_match(
            "proof.root_mismatch", f"root of the tree of size {size}", subtree_root, root
        )


def root_from_subtree_consistency_proof(
    *,
    start: int,
    end: int,
    size: int,
    subtree_root: bytes,
    proof: Sequence[bytes],
    limits: Limits = DEFAULT_LIMITS,
) -> bytes:
    """The root of the tree of ``size`` that ``proof`` leads to from ``subtree_root``.

    Steps:

    1. Check bounds: the proof length against ``limits``, the subtree, ``end <= size``, hashes.
    2. ``[0, size)`` itself: the proof is empty and the root is ``subtree_root``.
    3. A subtree on the right edge (``end == size``) is a node of the tree: the proof is its
       left siblings, one per set bit of its index at its level.
    4. Otherwise the subtree grew: rebuild both its hash at ``end`` (checked against
       ``subtree_root``) and its hash at ``size``, then chain the rest as an inclusion proof.
    """
    if len(proof) > limits.max_proof_hashes:
        raise InputError(
            "proof.too_many_hashes",
            f"proof has {len(proof)} hashes; at most {limits.max_proof_hashes} are accepted",
        )
    require_subtree(start, end)
    _require_tree_size(size, end)
    _require_hash("subtree_root", subtree_root)
    for position, node in enumerate(proof):
        _require_hash(f"proof[{position}]", node)
    if start == 0 and end == size:
        _require_proof_length(len(proof), 0)
        return subtree_root
    if end == size:
        height = ((end - 1) ^ start).bit_length()
        _require_proof_length(len(proof), (start >> height).bit_count())
        return _chain_left_siblings(subtree_root, proof)
    return _root_from_grown_subtree(
        start=start, end=end, size=size, subtree_root=subtree_root, proof=proof, limits=limits
    )


def _root_from_grown_subtree(
    *, start: int, end: int, size: int, subtree_root: bytes, proof: Sequence[bytes], limits: Limits
) -> bytes:
    # Paths to leaves end - 1 and size - 1 part at fork_level; the proof starts at the level of
    # the rightmost perfect subtree inside [start, end), whose hash leads the proof unless that
    # perfect subtree is the whole subtree (the verifier already holds its hash).
    fork_level = ((end - 1) ^ (size - 1)).bit_length()
    shift = _trailing_zeros(end - start)
    subtree_is_perfect = end - start == 1 << shift
    first = 0 if subtree_is_perfect else 1
    expected = first + (fork_level - shift) + ((end - 1) >> fork_level).bit_count()
    _require_proof_length(len(proof), expected)
    seed = subtree_root if subtree_is_perfect else proof[0]
    old_hash, grown_hash, used = _chain_subtree(seed, proof[first:], start, end, fork_level)
    _require_match(
        "proof.old_root_mismatch", f"hash of subtree [{start}, {end})", old_hash, subtree_root
    )
    # The grown subtree is one node at its height; shifting the tree down that many levels
    # makes it a leaf, and the rest of the proof an ordinary inclusion proof for it.
    height = ((end - 1) ^ start).bit_length()
    return root_from_inclusion_proof(
        leaf_hash=grown_hash,
        index=start >> height,
        size=((size - 1) >> height) + 1,
        proof=proof[first + used :],
        limits=limits,
    )


def _chain_subtree(
    seed: bytes, proof: Sequence[bytes], start: int, end: int, fork_level: int
) -> tuple[bytes, bytes, int]:
    # Climb from the rightmost perfect subtree to the subtree's own node, computing its hash
    # in the tree of size ``end`` (left siblings only) and of size ``size`` (right siblings
    # too, which exist only below fork_level). Returns both hashes and the hashes consumed.
    old_hash = grown_hash = seed
    used = 0
    for level in range(_trailing_zeros(end - start), ((end - 1) ^ start).bit_length()):
        if ((end - 1) >> level) & 1:
            old_hash = node_hash(proof[used], old_hash)
            grown_hash = node_hash(proof[used], grown_hash)
            used += 1
        elif level < fork_level:
            grown_hash = node_hash(grown_hash, proof[used])
            used += 1
    return old_hash, grown_hash, used


def _chain_left_siblings(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for sibling in proof:
        seed = node_hash(sibling, seed)
    return seed


def _trailing_zeros(value: int) -> int:
    return (value & -value).bit_length() - 1


def _require_tree_size(size: int, end: int) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or not end <= size <= MAX_TREE_SIZE:
        raise InputError(
            "proof.size_out_of_range",
            f"tree size {size!r:.40} must be in [{end}, 2^64) for subtree end {end}",
        )


def _require_hash(name: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        length = len(value) if isinstance(value, bytes) else type(value).__name__
        raise InputError(
            "proof.hash_wrong_length", f"{name} must be {HASH_SIZE} bytes, got {length}"
        )


def _require_proof_length(actual: int, expected: int) -> None:
    if actual != expected:
        raise InputError(
            "proof.wrong_length", f"proof has {actual} hashes; these sizes need exactly {expected}"
        )


def _require_match(reason: str, what: str, computed: bytes, expected: bytes) -> None:
    if computed != expected:
        raise TrustError(
            reason,
            f"proof does not lead to the expected {what}: computed {computed.hex()}, "
            f"expected {expected.hex()}",
        )
