"""The one storage interface of the transparency log, and an in-memory implementation.

A log store keeps, for one log:

* the entries (opaque bytes) and their RFC 9162 leaf hashes;
* the hash of every *perfect* subtree completed so far, addressed by :class:`NodeId`
  (level 0 are the leaf hashes), so that any root or proof is folded from O(log n) stored
  hashes instead of being recomputed from the leaves;
* the tree size, which only grows, and the log's origin;
* the signed checkpoints, in the order they were stored.

Every method returns only what was committed: :meth:`LogStore.append` writes entries, leaf
hashes, the perfect nodes they complete and the new size as one unit, and
:meth:`LogStore.add_checkpoint` refuses a size that is not stored yet. Hashing of new nodes is
shared by all stores (:func:`new_perfect_nodes`) so that they cannot disagree on the tree.
The SQL implementation lives in :mod:`brakepedal.tlog.sqlstore`.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from brakepedal.errors import InputError, StorageError
from brakepedal.tlog.merkle import NodeId, perfect_subtrees

__all__ = [
    "LevelNodes",
    "LogStore",
    "MemoryLogStore",
    "check_checkpoint_size",
    "check_entries",
    "check_range",
    "leaf_hashes_of",
    "new_perfect_nodes",
]

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class LogStore(Protocol):
    """Durable state of one transparency log; every implementation passes one test suite."""

    @property
    def origin(self) -> str:
        """The log's origin line, fixed when the store was created."""
        ...

    def size(self) -> int:
        """Number of entries committed."""
        ...

    def append(self, entries: Sequence[bytes]) -> int:
        """Store ``entries`` and every node they complete atomically; return the first index."""
        ...

    def read_nodes(self, ids: Sequence[NodeId]) -> list[bytes]:
        """Hashes of the given perfect subtrees, in the order asked, in one read."""
        ...

    def read_level(self, level: int, start: int, end: int) -> list[bytes]:
        """Hashes of the perfect nodes ``start`` .. ``end - 1`` of one level, in one read."""
        ...

    def read_entries(self, start: int, end: int) -> list[bytes]:
        """Entries ``start`` .. ``end - 1``."""
        ...

    def add_checkpoint(self, size: int, note: bytes) -> None:
        """Store a signed checkpoint note for a stored ``size``, after every earlier one."""
        ...

    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        """The (size, note) stored last, or None when there is none."""
        ...

    def checkpoints(self) -> list[tuple[int, bytes]]:
        """Every (size, note) in the order stored."""
        ...

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...


@dataclass(frozen=True, slots=True)
class LevelNodes:
    """Consecutive new perfect nodes of one level: indices ``first`` .. ``first + len - 1``."""

    level: int
    first: int
    hashes: list[bytes]


def leaf_hashes_of(entries: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 leaf hashes, computed in one tight loop (this is the append hot path)."""
    sha256 = hashlib.sha256
    return [sha256(_LEAF_PREFIX + entry).digest() for entry in entries]


def _parents(children: list[bytes], count: int) -> list[bytes]:
    sha256 = hashlib.sha256
    return [
        sha256(_NODE_PREFIX + children[2 * k] + children[2 * k + 1]).digest() for k in range(count)
    ]


def new_perfect_nodes(
    old_size: int, frontier: Sequence[bytes], leaf_hashes: list[bytes]
) -> list[LevelNodes]:
    """Every perfect node completed by appending ``leaf_hashes`` to a tree of ``old_size``.

    ``frontier`` holds the hashes of ``perfect_subtrees(0, old_size)``, left to right. A new
    node at level l+1 has at most one old child: the frontier node of level l, present exactly
    when bit l of ``old_size`` is set. So appending reads O(log n) hashes, never the tree.
    Level 0 (the leaf hashes themselves) is the first element of the result.
    """
    frontier_ids = perfect_subtrees(0, old_size)
    if len(frontier_ids) != len(frontier):
        raise StorageError(
            "store.frontier_incomplete",
            f"tree of size {old_size} needs {len(frontier_ids)} frontier hashes, got "
            f"{len(frontier)}",
        )
    frontier_by_level = {
        node.level: digest for node, digest in zip(frontier_ids, frontier, strict=True)
    }
    new_size = old_size + len(leaf_hashes)
    result = [LevelNodes(0, old_size, leaf_hashes)]
    level, first, current = 0, old_size, leaf_hashes
    while (parent_end := new_size >> (level + 1)) > (parent_first := old_size >> (level + 1)):
        # An odd first index means the left sibling of the first new node is already stored.
        children = [frontier_by_level[level], *current] if first % 2 else current
        current = _parents(children, parent_end - parent_first)
        level, first = level + 1, parent_first
        result.append(LevelNodes(level, first, current))
    return result


def check_range(start: int, end: int, size: int, what: str) -> None:
    """Refuse a half-open range that is empty-reversed or reaches past ``size``."""
    if not 0 <= start <= end <= size:
        raise InputError(
            "log.index_out_of_range",
            f"{what} range [{start}, {end}) is outside the log of size {size}",
        )


def check_entries(entries: Sequence[bytes]) -> None:
    """Refuse anything but bytes before a store touches its transaction."""
    for position, entry in enumerate(entries):
        if not isinstance(entry, bytes):
            raise InputError(
                "log.entry_not_bytes",
                f"entry {position} of the batch is {type(entry).__name__}, not bytes",
            )


def _check_node(node: NodeId, size: int) -> None:
    if node.level < 0 or node.index < 0 or node.end > size:
        raise InputError(
            "log.node_out_of_range",
            f"node at level {node.level} index {node.index} is not complete in the log of "
            f"size {size}",
        )


class MemoryLogStore:
    """A :class:`LogStore` in process memory: the fake for tests and the speed baseline."""

    def __init__(self, origin: str) -> None:
        self._origin = origin
        self._entries: list[bytes] = []
        # _levels[l][i] is the hash of NodeId(l, i); a list per level keeps appends cheap.
        self._levels: list[list[bytes]] = [[]]
        self._checkpoints: list[tuple[int, bytes]] = []
        # Appends read the frontier and then extend it: two threads must not interleave.
        self._lock = threading.Lock()

    @property
    def origin(self) -> str:
        return self._origin

    def size(self) -> int:
        return len(self._entries)

    def append(self, entries: Sequence[bytes]) -> int:
        check_entries(entries)
        with self._lock:
            return self._append(entries)

    def _append(self, entries: Sequence[bytes]) -> int:
        first = self.size()
        if not entries:
            return first
        frontier_ids = perfect_subtrees(0, first)
        frontier = [self._levels[node.level][node.index] for node in frontier_ids]
        # Everything is computed before anything is mutated, so a failure leaves no trace.
        new_levels = new_perfect_nodes(first, frontier, leaf_hashes_of(entries))
        for new in new_levels:
            if new.level == len(self._levels):
                self._levels.append([])
            self._levels[new.level].extend(new.hashes)
        self._entries.extend(entries)
        return first

    def read_nodes(self, ids: Sequence[NodeId]) -> list[bytes]:
        size = self.size()
        for node in ids:
            _check_node(node, size)
        return [self._levels[node.level][node.index] for node in ids]

    def read_level(self, level: int, start: int, end: int) -> list[bytes]:
        check_range(start << level, end << level, self.size(), f"level {level} node")
        if start == end:
            return []
        return self._levels[level][start:end]

    def read_entries(self, start: int, end: int) -> list[bytes]:
        check_range(start, end, self.size(), "entry")
        return self._entries[start:end]

    def add_checkpoint(self, size: int, note: bytes) -> None:
        with self._lock:
            check_checkpoint_size(size, self.size(), self.latest_checkpoint())
            self._checkpoints.append((size, bytes(note)))

    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        return self._checkpoints[-1] if self._checkpoints else None

    def checkpoints(self) -> list[tuple[int, bytes]]:
        return list(self._checkpoints)

    def close(self) -> None:
        """Nothing to release; kept so that every store is used the same way."""


def check_checkpoint_size(size: int, tree_size: int, latest: tuple[int, bytes] | None) -> None:
    """A checkpoint must be for a stored size, and never smaller than the one before it."""
    if not 0 <= size <= tree_size:
        raise InputError(
            "log.checkpoint_beyond_size",
            f"refusing a checkpoint for size {size}: the log stores {tree_size} entries",
        )
    if latest is not None and size < latest[0]:
        raise InputError(
            "log.checkpoint_rollback",
            f"refusing a checkpoint for size {size}: one for size {latest[0]} is already stored",
        )
