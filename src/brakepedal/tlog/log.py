"""The transparency log: appends, roots, proofs, checkpoints and tiles over a :class:`LogStore`.

Every root and proof is folded from stored perfect-subtree hashes: the ranges come from
:mod:`brakepedal.tlog.merkle`, each range is split into its perfect subtrees, and all of them
are fetched in ONE :meth:`LogStore.read_nodes` call, so a proof costs one round trip and
O(log n) hashes whatever the size of the log. :attr:`TransparencyLog.read_stats` counts them.

A checkpoint is only stored after the new head has been checked against the previous stored
checkpoint (RFC 9162 consistency), and :meth:`TransparencyLog.verify_integrity` recomputes the
whole stored tree and every checkpoint from the entries, for audits and after a crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from brakepedal.errors import InputError, TrustError
from brakepedal.model.limits import DEFAULT_LIMITS, Limits
from brakepedal.tlog.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from brakepedal.tlog.merkle import (
    EMPTY_ROOT,
    NodeId,
    consistency_proof_ranges,
    fold_range,
    inclusion_proof_ranges,
    leaf_hash,
    node_hash,
    perfect_subtrees,
    verify_consistency,
)
from brakepedal.tlog.note import NoteSigner, NoteVerifier
from brakepedal.tlog.store import LogStore

__all__ = ["TILE_HEIGHT", "TILE_WIDTH", "IntegrityReport", "ReadStats", "TransparencyLog"]

#: c2sp.org/tlog-tiles: a tile spans 8 Merkle levels and holds at most 256 hashes.
TILE_HEIGHT = 8
TILE_WIDTH = 256
_MAX_TILE_LEVEL = 8
# Hashes recomputed per store read in verify_integrity: bounds memory, not correctness.
_INTEGRITY_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class IntegrityReport:
    """What :meth:`TransparencyLog.verify_integrity` recomputed; any contradiction raised."""

    entries: int
    nodes: int
    checkpoints: int

    def __str__(self) -> str:
        return (
            f"{self.entries} entries, {self.nodes} interior nodes and {self.checkpoints} "
            "checkpoints verified"
        )


@dataclass(slots=True)
class ReadStats:
    """How many :meth:`LogStore.read_nodes` calls were made and how many hashes they returned."""

    batches: int = 0
    nodes: int = 0


class TransparencyLog:
    """An RFC 9162 log whose state lives in a :class:`LogStore`."""

    def __init__(self, store: LogStore, *, limits: Limits = DEFAULT_LIMITS) -> None:
        self._store = store
        self._limits = limits
        self.read_stats = ReadStats()

    @property
    def store(self) -> LogStore:
        return self._store

    @property
    def origin(self) -> str:
        return self._store.origin

    def append(self, entries: Sequence[bytes]) -> list[int]:
        """Append a batch atomically and return the index of each entry."""
        if len(entries) > self._limits.max_batch_entries:
            raise InputError(
                "log.batch_too_large",
                f"batch of {len(entries)} entries exceeds Limits.max_batch_entries "
                f"({self._limits.max_batch_entries})",
            )
        for position, entry in enumerate(entries):
            if not isinstance(entry, bytes):
                raise InputError(
                    "log.entry_not_bytes",
                    f"entry {position} of the batch is {type(entry).__name__}, not bytes",
                )
            if len(entry) > self._limits.max_entry_bytes:
                raise InputError(
                    "log.entry_too_large",
                    f"entry {position} of the batch is {len(entry)} bytes, over "
                    f"Limits.max_entry_bytes ({self._limits.max_entry_bytes})",
                )
        if not entries:
            return []
        first = self._store.append(entries)
        return list(range(first, first + len(entries)))

    def size(self) -> int:
        return self._store.size()

    def entry(self, index: int) -> bytes:
        return self._store.read_entries(index, index + 1)[0]

    def _read(self, ids: Sequence[NodeId], size: int) -> list[bytes]:
        self.read_stats.batches += 1
        self.read_stats.nodes += len(ids)
        try:
            return self._store.read_nodes(ids)
        except InputError as e:
            # The store checks sizes inside its read, saving a round trip per proof.
            if e.reason != "log.node_out_of_range":
                raise
            raise InputError("log.size_out_of_range", f"tree size {size}: {e.message}") from e

    def root(self, size: int | None = None) -> bytes:
        """The Merkle tree hash of the first ``size`` entries (default: all)."""
        if size is None:
            size = self._store.size()
        elif size < 0:
            raise InputError("log.size_out_of_range", f"tree size {size} is negative")
        if size == 0:
            return EMPTY_ROOT
        return fold_range(self._read(perfect_subtrees(0, size), size))

    def _fold_ranges(self, ranges: Sequence[tuple[int, int]], size: int) -> list[bytes]:
        groups = [perfect_subtrees(start, end) for start, end in ranges]
        ids = [node for group in groups for node in group]
        hashes = self._read(ids, size) if ids else []
        result, offset = [], 0
        for group in groups:
            result.append(fold_range(hashes[offset : offset + len(group)]))
            offset += len(group)
        return result

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 section 2.1.3 audit path for entry ``index`` in the tree of ``size``."""
        if not 0 <= index < size:
            raise InputError(
                "log.index_out_of_range", f"index {index} is not in the tree of size {size}"
            )
        return self._fold_ranges(inclusion_proof_ranges(index, size), size)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 section 2.1.4 proof that ``old_size`` (> 0) is a prefix of ``new_size``."""
        if not 0 < old_size <= new_size:
            raise InputError(
                "log.size_out_of_range", f"old size {old_size} is not in 1..{new_size}"
            )
        return self._fold_ranges(consistency_proof_ranges(old_size, new_size), new_size)

    def tile(self, level: int, index: int, width: int) -> bytes:
        """Hashes of a c2sp.org/tlog-tiles tile: Merkle level 8*level, nodes from index*256."""
        # Level 8 already spans 2^64 leaves; bounding level and index first keeps the size
        # arithmetic below small whatever a client asks for.
        if (
            not 0 <= level <= _MAX_TILE_LEVEL
            or not 0 <= index < 2**64
            or not 1 <= width <= TILE_WIDTH
        ):
            raise InputError(
                "log.tile_invalid",
                f"tile level {level} index {index} width {width}: need level in "
                f"0..{_MAX_TILE_LEVEL}, index in [0, 2^64) and width in 1..{TILE_WIDTH}",
            )
        merkle_level = TILE_HEIGHT * level
        start = index * TILE_WIDTH
        size = self._store.size()
        if (start + width) << merkle_level > size:
            raise InputError(
                "log.tile_incomplete",
                f"tile level {level} index {index} width {width} needs "
                f"{(start + width) << merkle_level} entries; the log has {size}",
            )
        return b"".join(self._store.read_level(merkle_level, start, start + width))

    def latest_checkpoint(self) -> bytes | None:
        latest = self._store.latest_checkpoint()
        return None if latest is None else latest[1]

    def latest_checkpoint_size(self) -> int | None:
        latest = self._store.latest_checkpoint()
        return None if latest is None else latest[0]

    def checkpoint(self, origin: str, signer: NoteSigner) -> bytes:
        """Sign, check and store a checkpoint for everything stored now; return the note.

        The previous stored checkpoint must verify under ``signer``'s key and the new head
        must extend it; otherwise the store holds two histories and nothing is signed.
        """
        if origin != self._store.origin:
            raise InputError(
                "log.origin_mismatch",
                f"checkpoint origin {origin!r} is not the log's origin {self._store.origin!r}",
            )
        size = self._store.size()
        head = Checkpoint(origin, size, self.root(size))
        latest = self._store.latest_checkpoint()
        if latest is not None:
            previous = self._open_stored(latest[0], latest[1], signer.verifier())
            self._check_consistent(previous, head)
        note = sign_checkpoint(head, signer)
        self._store.add_checkpoint(size, note)
        return note

    def _open_stored(self, size: int, note: bytes, verifier: NoteVerifier) -> Checkpoint:
        try:
            checkpoint = open_checkpoint(
                note, verifier, origin=self._store.origin, limits=self._limits
            ).checkpoint
        except InputError as e:
            raise TrustError(
                "log.checkpoint_unreadable", f"stored checkpoint for size {size} is malformed"
            ) from e
        if checkpoint.size != size:
            raise TrustError(
                "log.checkpoint_size_mismatch",
                f"stored checkpoint row says size {size} but its note says {checkpoint.size}",
            )
        return checkpoint

    def _check_consistent(self, old: Checkpoint, new: Checkpoint) -> None:
        if old.size > new.size:
            raise TrustError(
                "log.checkpoint_rollback",
                f"checkpoint for size {new.size} follows one for the larger size {old.size}",
            )
        if old.size == 0:
            # RFC 9162 has no proof from the empty tree: its root is all there is to check.
            if old.root_hash != EMPTY_ROOT:
                raise TrustError(
                    "log.checkpoint_root_mismatch",
                    "stored checkpoint for size 0 does not have the empty tree's root",
                )
            return
        verify_consistency(
            old_size=old.size,
            new_size=new.size,
            old_root=old.root_hash,
            new_root=new.root_hash,
            proof=self.consistency_proof(old.size, new.size),
            limits=self._limits,
        )

    def verify_integrity(self, log_verifier: NoteVerifier) -> IntegrityReport:
        """Recompute the stored tree from the entries and check every stored checkpoint.

        1. Every stored leaf hash is the hash of its stored entry.
        2. Every stored node of level l >= 1 is the hash of its two stored children.
        3. Every stored checkpoint verifies under ``log_verifier``, names the log's origin,
           matches its size column, has the root of the stored tree at its size, and is
           consistent with the checkpoint stored before it.

        Raises :class:`TrustError` on the first contradiction; returns what was checked.
        """
        size = self._store.size()
        self._verify_leaves(size)
        level = nodes = 0
        while size >> (level + 1):
            level += 1
            self._verify_level(level, size >> level)
            nodes += size >> level
        previous: Checkpoint | None = None
        stored = self._store.checkpoints()
        for stored_size, note in stored:
            checkpoint = self._open_stored(stored_size, note, log_verifier)
            if checkpoint.size > size:
                raise TrustError(
                    "log.checkpoint_beyond_size",
                    f"stored checkpoint for size {checkpoint.size} exceeds the tree size {size}",
                )
            if self.root(checkpoint.size) != checkpoint.root_hash:
                raise TrustError(
                    "log.checkpoint_root_mismatch",
                    f"stored checkpoint for size {checkpoint.size} has a root the stored "
                    "tree does not have",
                )
            if previous is not None:
                self._check_consistent(previous, checkpoint)
            previous = checkpoint
        return IntegrityReport(entries=size, nodes=nodes, checkpoints=len(stored))

    def _verify_leaves(self, size: int) -> None:
        for start in range(0, size, _INTEGRITY_CHUNK):
            end = min(size, start + _INTEGRITY_CHUNK)
            entries = self._store.read_entries(start, end)
            stored = self._store.read_level(0, start, end)
            for offset, (entry, digest) in enumerate(zip(entries, stored, strict=True)):
                if leaf_hash(entry) != digest:
                    raise TrustError(
                        "log.leaf_hash_mismatch",
                        f"stored leaf hash {start + offset} is not the hash of entry "
                        f"{start + offset}",
                    )

    def _verify_level(self, level: int, count: int) -> None:
        for start in range(0, count, _INTEGRITY_CHUNK):
            end = min(count, start + _INTEGRITY_CHUNK)
            children = self._store.read_level(level - 1, 2 * start, 2 * end)
            parents = self._store.read_level(level, start, end)
            for offset, digest in enumerate(parents):
                k = 2 * offset
                if node_hash(children[k], children[k + 1]) != digest:
                    raise TrustError(
                        "log.node_hash_mismatch",
                        f"stored node at level {level} index {start + offset} is not the "
                        "hash of its children",
                    )
