"""RFC 9162 (RFC 6962) Merkle tree maths: hashing, proof shapes, proof verification.

Everything here is a pure function of its arguments. The module has three parts:

* hashing (RFC 9162 section 2.1.1): :func:`leaf_hash`, :func:`node_hash`, :data:`EMPTY_ROOT`
  and the reference :func:`root_from_leaf_hashes`;
* proof *shapes*: which leaf ranges a proof is made of (:func:`inclusion_proof_ranges`,
  section 2.1.3.1; :func:`consistency_proof_ranges`, section 2.1.4.1) and which perfect
  subtrees (:class:`NodeId`) make up a range (:func:`perfect_subtrees`), so a store can build
  any proof from O(log n) stored node hashes and :func:`fold_range`;
* verification: :func:`verify_inclusion` (section 2.1.3.2) and :func:`verify_consistency`
  (section 2.1.4.2). They return ``None`` or raise: :class:`InputError` when the arguments cannot
  describe a proof (bad sizes, hashes not 32 bytes, wrong proof length, more hashes than
  :attr:`Limits.max_proof_hashes`), :class:`TrustError` when a well-formed proof does not lead
  to the root.

Sizes and indices are RFC 9162 ``uint64`` values; anything outside ``[0, 2**64)`` is rejected.
Node reads: a store building a proof from perfect nodes reads at most 2*floor(log2 n) of them
for an inclusion proof and one more for a consistency proof (tests/unit/tlog prove and check it).
Subtree proofs (Merkle Tree Certificates) live in :mod:`brakepedal.tlog.subtree`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from brakepedal.errors import InputError, TrustError
from brakepedal.model.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "NodeId",
    "consistency_proof_from_leaf_hashes",
    "consistency_proof_ranges",
    "fold_range",
    "inclusion_proof_from_leaf_hashes",
    "inclusion_proof_ranges",
    "leaf_hash",
    "node_hash",
    "perfect_subtrees",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

#: Bytes in one SHA-256 hash, the only hash RFC 9162 logs of ours use.
HASH_SIZE: int = 32
#: MTH({}) = SHA-256() (RFC 9162 section 2.1.1): the root of the empty tree.
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()
#: Tree sizes are uint64 in RFC 9162 (section 4.1 TreeHeadDataV2); nothing larger can exist.
MAX_TREE_SIZE: int = 2**64 - 1

# Domain separation prefixes, RFC 9162 section 2.1.1: a leaf can never pose as a node.
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(entry: bytes) -> bytes:
    """MTH({d(0)}) = SHA-256(0x00 || d(0)) (RFC 9162 section 2.1.1)."""
    return hashlib.sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right), an interior node (RFC 9162 section 2.1.1)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


@dataclass(frozen=True, slots=True, order=True)
class NodeId:
    """A perfect subtree: the ``2**level`` leaves ``[index * 2**level, (index + 1) * 2**level)``.

    Level 0 nodes are leaves. Ordering is by level, then index.
    """

    level: int
    index: int

    def __post_init__(self) -> None:
        for name in ("level", "index"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InputError(
                    "merkle.node_invalid", f"NodeId.{name} must be an integer >= 0, got {value!r}"
                )

    @property
    def start(self) -> int:
        """First leaf index covered by this node."""
        return self.index << self.level

    @property
    def end(self) -> int:
        """One past the last leaf index covered by this node."""
        return (self.index + 1) << self.level


def perfect_subtrees(start: int, end: int) -> list[NodeId]:
    """The aligned perfect subtrees that tile the leaf range ``[start, end)``, left to right.

    Greedy: at each position take the largest aligned perfect subtree that fits. For a range
    that is a node of an RFC 9162 tree (``start`` a multiple of the smallest power of two
    >= ``end - start``) this is one subtree per set bit of ``end - start``, largest first, and
    :func:`fold_range` of their hashes is the range's MTH (RFC 9162 section 2.1.1).
    """
    _require_size("start", start)
    _require_size("end", end)
    if start > end:
        raise InputError("merkle.range_invalid", f"range start {start} is after its end {end}")
    nodes: list[NodeId] = []
    position = start
    while position < end:
        level = (end - position).bit_length() - 1
        if position:
            # An aligned node at ``position`` cannot be taller than position's lowest set bit.
            level = min(level, (position & -position).bit_length() - 1)
        nodes.append(NodeId(level, position >> level))
        position += 1 << level
    return nodes


def fold_range(hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from the hashes of its :func:`perfect_subtrees`, in that order.

    MTH(D[n]) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n])) with k the largest power of two below n
    (RFC 9162 section 2.1.1), so the largest-first perfect subtrees fold right to left.
    No hashes is the empty range, whose MTH is :data:`EMPTY_ROOT`.
    """
    if not hashes:
        return EMPTY_ROOT
    for position, node in enumerate(hashes):
        _require_hash(f"hashes[{position}]", node)
    accumulator = hashes[-1]
    for node in reversed(hashes[:-1]):
        accumulator = node_hash(node, accumulator)
    return accumulator


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf hashes (RFC 9162 section 2.1.1); O(n), level by level.

    Pairing each level left to right and carrying an odd last node up unchanged gives the
    same root as the RFC's split at the largest power of two below n (the left part is always
    a perfect subtree, so its pairs never straddle the split); ``tests/unit/tlog`` checks it
    against the recursive definition (:func:`_subtree_hash`) and the RFC's test vectors.
    """
    for position, node in enumerate(leaf_hashes):
        _require_hash(f"leaf_hashes[{position}]", node)
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    sha256, prefix = hashlib.sha256, _NODE_PREFIX
    while len(level) > 1:
        paired = [
            sha256(prefix + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def _subtree_hash(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    # Recursion depth is log2(end - start): the split is always at a power of two.
    if end - start == 1:
        return leaf_hashes[start]
    split = start + _largest_power_of_two_below(end - start)
    return node_hash(
        _subtree_hash(leaf_hashes, start, split), _subtree_hash(leaf_hashes, split, end)
    )


def inclusion_proof_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose MTH, in order, form PATH(index, D[0:size]) (RFC 9162 section 2.1.3.1).

    PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) when m < k, else PATH(m - k, D[k:n]) :
    MTH(D[0:k]). Walking down from the root yields the ranges root-first; the proof lists them
    leaf-first, hence the reversal.
    """
    _require_index(index, size)
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        split = start + _largest_power_of_two_below(end - start)
        if index < split:
            ranges.append((split, end))
            end = split
        else:
            ranges.append((start, split))
            start = split
    ranges.reverse()
    return ranges


def consistency_proof_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose MTH form PROOF(old_size, D[0:new_size]) (RFC 9162 section 2.1.4.1).

    SUBPROOF(m, D[m], b) is {} when b is true, else {MTH(D[m])}; for m < n with k the largest
    power of two below n it is SUBPROOF(m, D[0:k], b) : MTH(D[k:n]) when m <= k, else
    SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k]). Requires 0 < old_size <= new_size.
    """
    _require_sizes_in_order(old_size, new_size)
    ranges: list[tuple[int, int]] = []
    start, end, remaining, is_whole_old_tree = 0, new_size, old_size, True
    while end - start != remaining:
        split = start + _largest_power_of_two_below(end - start)
        if remaining <= split - start:
            ranges.append((split, end))
            end = split
        else:
            ranges.append((start, split))
            remaining -= split - start
            start, is_whole_old_tree = split, False
    if not is_whole_old_tree:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def inclusion_proof_from_leaf_hashes(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Reference PATH(index, D[n]) from all leaf hashes (RFC 9162 section 2.1.3.1); O(n)."""
    ranges = inclusion_proof_ranges(index, len(leaf_hashes))
    return [root_from_leaf_hashes(leaf_hashes[start:end]) for start, end in ranges]


def consistency_proof_from_leaf_hashes(old_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Reference PROOF(old_size, D[n]) from all leaf hashes (RFC 9162 section 2.1.4.1); O(n)."""
    ranges = consistency_proof_ranges(old_size, len(leaf_hashes))
    return [root_from_leaf_hashes(leaf_hashes[start:end]) for start, end in ranges]


def root_from_inclusion_proof(
    *,
    leaf_hash: bytes,
    index: int,
    size: int,
    proof: Sequence[bytes],
    limits: Limits = DEFAULT_LIMITS,
) -> bytes:
    """The root that ``proof`` leads to from ``leaf_hash`` at ``index`` (RFC 9162 2.1.3.2).

    The path splits where the paths to ``index`` and ``size - 1`` diverge: below that point a
    proof hash sits left or right as the index bit says ("inner"); above it the path runs along
    the right border of the tree and every proof hash is a left sibling ("border").
    """
    _require_proof_bound(proof, limits)
    _require_index(index, size)
    _require_hash("leaf_hash", leaf_hash)
    _require_proof_hashes(proof)
    inner, border = _inclusion_shape(index, size)
    _require_proof_length(len(proof), inner + border)
    accumulator = _chain_inner(leaf_hash, proof[:inner], index)
    return _chain_border_right(accumulator, proof[inner:])


def verify_inclusion(
    *,
    leaf_hash: bytes,
    index: int,
    size: int,
    proof: Sequence[bytes],
    root: bytes,
    limits: Limits = DEFAULT_LIMITS,
) -> None:
    """Raise unless ``proof`` shows ``leaf_hash`` at ``index`` in the tree of ``size`` and
    ``root`` (RFC 9162 section 2.1.3.2)."""
    _require_hash("root", root)
    computed = root_from_inclusion_proof(
        leaf_hash=leaf_hash, index=index, size=size, proof=proof, limits=limits
    )
    _require_match("proof.root_mismatch", f"root of the tree of size {size}", computed, root)


def verify_consistency(
    *,
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
    limits: Limits = DEFAULT_LIMITS,
) -> None:
    """Raise unless ``proof`` shows the tree of ``old_size`` is a prefix of the tree of
    ``new_size`` (RFC 9162 section 2.1.4.2).

    Steps, after the RFC with its edge cases made explicit:

    1. Reject sizes out of order and ``old_size == 0`` (nothing to be consistent with).
    2. Equal sizes: the proof must be empty and the roots equal.
    3. The proof is the tail of PATH(old_size - 1, D[new_size]) from the level of the largest
       perfect subtree the old tree ends with, prefixed by that subtree's hash unless it is the
       whole old tree (then ``old_root`` is that hash).
    4. Chaining only left siblings rebuilds ``old_root``; chaining all rebuilds ``new_root``.
    """
    _require_proof_bound(proof, limits)
    _require_sizes_in_order(old_size, new_size)
    if old_size == new_size:
        # As transparency-dev/merkle: byte equality is the whole statement, so hash lengths are
        # not checked here; typed wire objects (tlog.proof) check them before this layer.
        _require_proof_length(len(proof), 0)
        _require_match(
            "proof.root_mismatch", f"roots of two trees of size {new_size}", old_root, new_root
        )
        return
    _require_hash("old_root", old_root)
    _require_hash("new_root", new_root)
    _require_proof_hashes(proof)
    computed_new = _new_root_from_consistency_path(old_size, new_size, old_root, proof)
    _require_match(
        "proof.root_mismatch", f"root of the tree of size {new_size}", computed_new, new_root
    )


def _new_root_from_consistency_path(
    old_size: int, new_size: int, old_root: bytes, proof: Sequence[bytes]
) -> bytes:
    # Steps 3 and 4 of verify_consistency; raises unless the proof rebuilds old_root.
    inner, border = _inclusion_shape(old_size - 1, new_size)
    shift = _trailing_zeros(old_size)
    inner -= shift  # Levels below the old tree's last perfect subtree are not in the proof.
    old_tree_is_perfect = old_size == 1 << shift
    first = 0 if old_tree_is_perfect else 1
    _require_proof_length(len(proof), first + inner + border)
    seed = old_root if old_tree_is_perfect else proof[0]
    path, mask = proof[first:], (old_size - 1) >> shift
    computed_old = _chain_border_right(
        _chain_inner_left_only(seed, path[:inner], mask), path[inner:]
    )
    _require_match(
        "proof.old_root_mismatch", f"root of the tree of size {old_size}", computed_old, old_root
    )
    return _chain_border_right(_chain_inner(seed, path[:inner], mask), path[inner:])


def _inclusion_shape(index: int, size: int) -> tuple[int, int]:
    # inner: levels below the point where the paths to ``index`` and ``size - 1`` diverge;
    # border: left siblings above it, one per set bit of the index at those levels.
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for level, sibling in enumerate(proof):
        # A set index bit means the path node is a right child: its sibling goes left.
        is_right_child = (index >> level) & 1
        seed = node_hash(sibling, seed) if is_right_child else node_hash(seed, sibling)
    return seed


def _chain_inner_left_only(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    # Right siblings were appended after the old tree ended, so the old root ignores them.
    for level, sibling in enumerate(proof):
        if (index >> level) & 1:
            seed = node_hash(sibling, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for sibling in proof:
        seed = node_hash(sibling, seed)
    return seed


def _largest_power_of_two_below(count: int) -> int:
    # k in RFC 9162 section 2.1.1: the largest power of two smaller than count (count > 1).
    return 1 << ((count - 1).bit_length() - 1)


def _trailing_zeros(value: int) -> int:
    return (value & -value).bit_length() - 1


def _require_size(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError("proof.size_not_integer", f"{name} must be an integer, got {value!r:.40}")
    if not 0 <= value <= MAX_TREE_SIZE:
        raise InputError("proof.size_out_of_range", f"{name} must be in [0, 2^64), got {value}")


def _require_index(index: int, size: int) -> None:
    _require_size("index", index)
    _require_size("size", size)
    if index >= size:
        raise InputError(
            "proof.index_out_of_range", f"leaf index {index} is not below tree size {size}"
        )


def _require_sizes_in_order(old_size: int, new_size: int) -> None:
    _require_size("old_size", old_size)
    _require_size("new_size", new_size)
    if old_size > new_size:
        raise InputError(
            "proof.sizes_out_of_order", f"old_size {old_size} is larger than new_size {new_size}"
        )
    if old_size == 0:
        # The empty tree is a prefix of every tree: a proof from it would prove nothing.
        raise InputError(
            "proof.empty_old_tree",
            "a consistency proof from the empty tree (old_size 0) is meaningless",
        )


def _require_hash(name: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        length = len(value) if isinstance(value, bytes) else type(value).__name__
        raise InputError(
            "proof.hash_wrong_length", f"{name} must be {HASH_SIZE} bytes, got {length}"
        )


def _require_proof_bound(proof: Sequence[bytes], limits: Limits) -> None:
    # Checked first, before any work proportional to the proof.
    if len(proof) > limits.max_proof_hashes:
        raise InputError(
            "proof.too_many_hashes",
            f"proof has {len(proof)} hashes; at most {limits.max_proof_hashes} are accepted",
        )


def _require_proof_hashes(proof: Sequence[bytes]) -> None:
    for position, node in enumerate(proof):
        _require_hash(f"proof[{position}]", node)


def _require_proof_length(actual: int, expected: int) -> None:
    if actual != expected:
        raise InputError(
            "proof.wrong_length", f"proof has {actual} hashes; these sizes need exactly {expected}"
        )


def _require_match(reason: str, what: str, computed: bytes, expected: bytes) -> None:
    # Constant time is not needed for public hashes, but compare_digest states the intent.
    if not hmac.compare_digest(computed, expected):
        raise TrustError(
            reason,
            f"proof does not lead to the expected {what}: computed {computed.hex()}, "
            f"expected {expected.hex()}",
        )
