"""Fuzz target for the Merkle proof verifiers (RFC 9162 sections 2.1.3.2 and 2.1.4.2).

Input layout: one mode byte, three little-endian uint64 values (sizes, indices), then hashes of
32 bytes each, the last one possibly short so that wrong lengths are exercised. Modes 0-3 feed
the values straight to one of the four verifiers; modes 4-5 build a small tree from the hash
bytes, generate an honest proof with the reference generators and require it to verify, so the
fuzzer also checks that the generators and verifiers agree. Only
:class:`~brakepedal.errors.BrakepedalError` is expected; anything else is a bug.
"""

from __future__ import annotations

import contextlib

from brakepedal.errors import BrakepedalError
from brakepedal.tlog import merkle, subtree

_HEADER = 1 + 3 * 8
_MAX_HONEST_LEAVES = 64


def _decode(data: bytes) -> tuple[int, tuple[int, int, int], list[bytes]]:
    header = data[:_HEADER].ljust(_HEADER, b"\0")
    numbers = tuple(int.from_bytes(header[1 + 8 * i : 9 + 8 * i], "little") for i in range(3))
    body = data[_HEADER:]
    hashes = [body[i : i + merkle.HASH_SIZE] for i in range(0, len(body), merkle.HASH_SIZE)]
    return header[0] % 6, (numbers[0], numbers[1], numbers[2]), hashes


def _verify_raw(mode: int, numbers: tuple[int, int, int], hashes: list[bytes]) -> None:
    first, second, third = numbers
    padded = [*hashes, b"", b""]
    one, two, proof = padded[0], padded[1], hashes[2:]
    if mode == 0:
        merkle.verify_inclusion(leaf_hash=one, index=first, size=second, proof=proof, root=two)
    elif mode == 1:
        merkle.verify_consistency(
            old_size=first, new_size=second, old_root=one, new_root=two, proof=proof
        )
    elif mode == 2:
        subtree.verify_subtree_inclusion(
            leaf_hash=one, index=first, start=second, end=third, proof=proof, root=two
        )
    else:
        subtree.verify_subtree_consistency(
            start=first, end=second, size=third, subtree_root=one, root=two, proof=proof
        )


def _verify_honest(mode: int, numbers: tuple[int, int, int], hashes: list[bytes]) -> None:
    leaves = [merkle.leaf_hash(h) for h in hashes[:_MAX_HONEST_LEAVES]]
    if not leaves:
        return
    size = len(leaves)
    root = merkle.root_from_leaf_hashes(leaves)
    if mode == 4:
        index = numbers[0] % size
        proof = merkle.inclusion_proof_from_leaf_hashes(index, leaves)
        merkle.verify_inclusion(
            leaf_hash=leaves[index], index=index, size=size, proof=proof, root=root
        )
        return
    old_size = numbers[0] % size + 1
    proof = merkle.consistency_proof_from_leaf_hashes(old_size, leaves)
    merkle.verify_consistency(
        old_size=old_size,
        new_size=size,
        old_root=merkle.root_from_leaf_hashes(leaves[:old_size]),
        new_root=root,
        proof=proof,
    )


def test_one_input(data: bytes) -> None:
    """Decode ``data`` into verifier arguments; only our own errors may escape, and caught."""
    mode, numbers, hashes = _decode(data)
    if mode >= 4:
        # An honest proof must verify: a BrakepedalError here is a bug, so it is not caught.
        _verify_honest(mode, numbers, hashes)
        return
    with contextlib.suppress(BrakepedalError):
        _verify_raw(mode, numbers, hashes)


if __name__ == "__main__":
    from fuzz.harness import main

    main("proof", test_one_input)
