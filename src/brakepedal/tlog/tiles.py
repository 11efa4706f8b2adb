"""Tiled logs, as specified by c2sp.org/tlog-tiles, plus the Go checksum database's tile paths.

A tile at level ``L`` and index ``N`` holds up to 256 consecutive Merkle Tree Hashes, each the
root of a perfect subtree of ``256**L`` leaves (tlog-tiles, "Merkle Tree"). Paths are
``tile/<L>/<N>[.p/<W>]`` and ``tile/entries/<N>[.p/<W>]`` with ``N`` split into 3-digit groups,
all but the last prefixed with ``x``. golang.org/x/mod/sumdb/tlog writes the tile height into
the path (``tile/<H>/<L>/<N>``, level ``data`` for entries); both forms are parsed here, and
every parser accepts only the canonical spelling of the tile it returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from brakepedal.errors import InputError
from brakepedal.model.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "ENTRIES_LEVEL",
    "MAX_TILE_LEVEL",
    "TILE_HEIGHT",
    "EntryBundle",
    "Tile",
    "tile_node_range",
    "tiles_for_size",
]

#: C2SP tiles are 2**8 = 256 hashes wide.
TILE_HEIGHT = 8
#: The level of entry bundles (``tile/entries``; ``data`` in sumdb paths), as in x/mod.
ENTRIES_LEVEL = -1
#: "<L> ... MUST be a decimal ASCII integer between 0 and 63" (tlog-tiles, "Merkle Tree").
MAX_TILE_LEVEL = 63
_MAX_HEIGHT = 30  # x/mod's bound on H
_MAX_INDEX = 2**63 - 1
_MAX_TREE_SIZE = 2**63 - 1
_MAX_PATH_CHARS = 128  # a 19-digit index needs 7 groups; anything longer is not a tile path
_MAX_ENTRY_BYTES = 0xFFFF  # entries are uint16 length-prefixed

_INDEX = r"((?:x[0-9]{3}/)*[0-9]{3})"
# Widths: up to 255 in C2SP, up to 2**30 - 1 with x/mod's largest height.
_C2SP_PATH = re.compile(
    rf"tile/(entries|0|[1-9][0-9]?)/{_INDEX}(?:\.p/([1-9][0-9]{{0,2}}))?", re.ASCII
)
_SUMDB_PATH = re.compile(
    rf"tile/([1-9][0-9]?)/(data|0|[1-9][0-9]?)/{_INDEX}(?:\.p/([1-9][0-9]{{0,9}}))?", re.ASCII
)


def _encode_index(index: int) -> str:
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index > 0:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(groups))


@dataclass(frozen=True, slots=True)
class Tile:
    """One tile: ``level`` (``ENTRIES_LEVEL`` for entry bundles), ``index``, ``width`` hashes.

    ``width`` is ``2**height`` for a full tile and 1 .. ``2**height - 1`` for a partial one.
    """

    level: int
    index: int
    width: int
    height: int = TILE_HEIGHT

    def __post_init__(self) -> None:
        values = (self.level, self.index, self.width, self.height)
        if any(isinstance(v, bool) or not isinstance(v, int) for v in values):
            raise InputError("tile.invalid", "tile fields must be integers")
        if not 1 <= self.height <= _MAX_HEIGHT:
            raise InputError("tile.invalid", f"tile height {self.height} is not in 1..30")
        if not ENTRIES_LEVEL <= self.level <= MAX_TILE_LEVEL:
            raise InputError("tile.invalid", f"tile level {self.level} is not in -1..63")
        if not 0 <= self.index <= _MAX_INDEX:
            raise InputError("tile.invalid", f"tile index {self.index} is not in 0..2^63-1")
        if not 1 <= self.width <= 1 << self.height:
            raise InputError("tile.invalid", f"tile width {self.width} is not in 1..2^height")

    @property
    def is_partial(self) -> bool:
        """Whether the tile holds fewer than ``2**height`` hashes."""
        return self.width < 1 << self.height

    def _suffix(self) -> str:
        index = _encode_index(self.index)
        return f"{index}.p/{self.width}" if self.is_partial else index

    def path(self) -> str:
        """The C2SP path ``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]``."""
        if self.height != TILE_HEIGHT:
            raise InputError("tile.not_c2sp", f"C2SP tiles have height 8, not {self.height}")
        level = "entries" if self.level == ENTRIES_LEVEL else str(self.level)
        return f"tile/{level}/{self._suffix()}"

    def sumdb_path(self) -> str:
        """The golang.org/x/mod/sumdb/tlog path ``tile/<H>/<L>/<N>[.p/<W>]``."""
        level = "data" if self.level == ENTRIES_LEVEL else str(self.level)
        return f"tile/{self.height}/{level}/{self._suffix()}"

    @classmethod
    def from_path(cls, path: str) -> Tile:
        """Parse a C2SP tile path (relative to the log prefix)."""
        match = _C2SP_PATH.fullmatch(path) if len(path) <= _MAX_PATH_CHARS else None
        if match is None:
            raise InputError("tile.bad_path", f"not a C2SP tile path: {path[:80]!r}")
        level, index, width = match.groups()
        return _canonical(
            path, level=level, index=index, width=width, height=TILE_HEIGHT, sumdb=False
        )

    @classmethod
    def from_sumdb_path(cls, path: str) -> Tile:
        """Parse a golang.org/x/mod/sumdb/tlog tile path, which carries the height."""
        match = _SUMDB_PATH.fullmatch(path) if len(path) <= _MAX_PATH_CHARS else None
        if match is None:
            raise InputError("tile.bad_path", f"not a sumdb tile path: {path[:80]!r}")
        height, level, index, width = match.groups()
        if int(height) > _MAX_HEIGHT:
            raise InputError("tile.bad_path", f"{path!r}: tile height over {_MAX_HEIGHT}")
        return _canonical(
            path, level=level, index=index, width=width, height=int(height), sumdb=True
        )


def _canonical(
    path: str, *, level: str, index: str, width: str | None, height: int, sumdb: bool
) -> Tile:
    """Build the tile and insist that ``path`` is exactly how it is written."""
    try:
        tile = Tile(
            ENTRIES_LEVEL if level in {"entries", "data"} else int(level),
            int(index.replace("x", "").replace("/", "")),
            (1 << height) if width is None else int(width),
            height,
        )
    except InputError as e:
        raise InputError("tile.bad_path", f"{path!r}: {e.message}") from e
    if (tile.sumdb_path() if sumdb else tile.path()) != path:
        raise InputError("tile.bad_path", f"{path!r} is not the canonical path of its tile")
    return tile


def tile_node_range(tile: Tile) -> tuple[int, int, int]:
    """``(merkle_level, first_index, count)`` of the Merkle nodes the tile holds.

    Entry ``i`` of tile level ``L`` index ``N`` is the perfect subtree at Merkle level
    ``height * L`` and index ``N * 2**height + i`` (tlog-tiles, "Merkle Tree"). An entry bundle
    maps to the level-0 nodes: the leaf hashes of its entries.
    """
    level = max(tile.level, 0) * tile.height
    return level, tile.index << tile.height, tile.width


def tiles_for_size(
    size: int, *, height: int = TILE_HEIGHT, limits: Limits = DEFAULT_LIMITS
) -> list[Tile]:
    """Every hash tile of a tree of ``size`` leaves, level by level, full before partial.

    At level ``l`` there are ``size // 2**(h*(l+1))`` full tiles and, when non-zero, one
    partial tile of width ``(size // 2**(h*l)) mod 2**h`` (tlog-tiles, "Partial Tiles").
    Entry bundles mirror the level-0 tiles.
    """
    if isinstance(size, bool) or not 0 <= size <= _MAX_TREE_SIZE:
        raise InputError("tile.invalid_size", f"tree size {size} is not in 0..2^63-1")
    Tile(0, 0, 1, height)  # validates height before it is used in shifts
    counts = []
    level = 0
    while size >> (height * level) > 0:
        hashes = size >> (height * level)
        counts.append((hashes >> height, hashes % (1 << height)))
        level += 1
    total = sum(full + (partial > 0) for full, partial in counts)
    if total > limits.max_tiles:
        raise InputError(
            "tile.too_many", f"{total} tiles for size {size}, limit {limits.max_tiles}"
        )
    tiles: list[Tile] = []
    for level, (full, partial) in enumerate(counts):
        tiles.extend(Tile(level, n, 1 << height, height) for n in range(full))
        if partial:
            tiles.append(Tile(level, full, partial, height))
    return tiles


@dataclass(frozen=True, slots=True)
class EntryBundle:
    """The entries of one ``tile/entries`` resource: 1 to 256 entries of at most 65535 bytes."""

    entries: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.entries) <= 1 << TILE_HEIGHT:
            raise InputError("tile.bundle_size", f"{len(self.entries)} entries, need 1..256")
        for number, entry in enumerate(self.entries):
            if len(entry) > _MAX_ENTRY_BYTES:
                raise InputError(
                    "tile.entry_too_large", f"entry {number}: {len(entry)} bytes, limit 65535"
                )

    def to_bytes(self) -> bytes:
        """Big-endian uint16 length-prefixed entries (tlog-tiles, "Log entries")."""
        return b"".join(len(entry).to_bytes(2, "big") + entry for entry in self.entries)

    @classmethod
    def from_bytes(
        cls, data: bytes, *, width: int | None = None, limits: Limits = DEFAULT_LIMITS
    ) -> EntryBundle:
        """Parse an entry bundle; if ``width`` is given the bundle must hold that many entries."""
        max_bytes = (1 << TILE_HEIGHT) * (2 + min(_MAX_ENTRY_BYTES, limits.max_entry_bytes))
        if len(data) > max_bytes:
            raise InputError("tile.bundle_too_large", f"bundle is {len(data)} bytes")
        entries: list[bytes] = []
        offset = 0
        while offset < len(data):
            if offset + 2 > len(data):
                raise InputError("tile.bundle_truncated", f"byte {offset}: length cut short")
            length = int.from_bytes(data[offset : offset + 2], "big")
            if length > limits.max_entry_bytes:
                raise InputError("tile.entry_too_large", f"entry {len(entries)}: {length} bytes")
            if offset + 2 + length > len(data):
                raise InputError("tile.bundle_truncated", f"entry {len(entries)}: cut short")
            entries.append(data[offset + 2 : offset + 2 + length])
            offset += 2 + length
            if len(entries) > 1 << TILE_HEIGHT:
                raise InputError("tile.bundle_size", "more than 256 entries")
        if width is not None and len(entries) != width:
            raise InputError("tile.bundle_width", f"{len(entries)} entries, expected {width}")
        return cls(tuple(entries))
