"""c2sp.org/tlog-tiles paths, tile shapes and entry bundles; x/mod sumdb tile paths."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brakepedal.errors import BrakepedalError, InputError
from brakepedal.model.limits import Limits
from brakepedal.tlog.tiles import (
    ENTRIES_LEVEL,
    EntryBundle,
    Tile,
    tile_node_range,
    tiles_for_size,
)

VECTORS = json.loads(
    (Path(__file__).parents[2] / "vectors/checkpoint/tile_vectors.json").read_text("utf-8")
)
SUMDB_CASES = VECTORS["sumdb_tile_paths"]["cases"]


# --- paths ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", [c for c in SUMDB_CASES if c["tile"]], ids=lambda c: str(c["path"])
)
def test_sumdb_path_vector_round_trips(case: dict[str, Any]) -> None:
    want = case["tile"]
    tile = Tile.from_sumdb_path(case["path"])
    assert tile == Tile(level=want["L"], index=want["N"], width=want["W"], height=want["H"])
    assert tile.sumdb_path() == case["path"]


@pytest.mark.parametrize(
    "case", [c for c in SUMDB_CASES if not c["tile"]], ids=lambda c: str(c["path"])
)
def test_sumdb_path_vector_is_rejected(case: dict[str, Any]) -> None:
    with pytest.raises(InputError) as caught:
        Tile.from_sumdb_path(case["path"])
    assert caught.value.reason == "tile.bad_path"


def test_c2sp_index_encoding() -> None:
    case = VECTORS["c2sp_tlog_tiles"]["index_encoding"][0]
    tile = Tile(0, case["n"], 256)
    assert tile.path() == "tile/0/" + case["path_elements"]
    assert Tile.from_path(tile.path()) == tile


@pytest.mark.parametrize(
    ("path", "tile"),
    [
        pytest.param("tile/0/000", Tile(0, 0, 256), id="first"),
        pytest.param("tile/0/999", Tile(0, 999, 256), id="last-one-group"),
        pytest.param("tile/1/x001/000", Tile(1, 1000, 256), id="two-groups"),
        pytest.param("tile/2/000.p/1", Tile(2, 0, 1), id="partial-1"),
        pytest.param("tile/0/x001/x234/067.p/255", Tile(0, 1234067, 255), id="partial-255"),
        pytest.param("tile/63/000", Tile(63, 0, 256), id="level-63"),
        pytest.param("tile/entries/000", Tile(ENTRIES_LEVEL, 0, 256), id="entries"),
        pytest.param("tile/entries/x001/005.p/112", Tile(ENTRIES_LEVEL, 1005, 112), id="entries-p"),
        pytest.param(
            "tile/0/x009/x223/x372/x036/x854/x775/807",
            Tile(0, 2**63 - 1, 256),
            id="largest-index",
        ),
    ],
)
def test_c2sp_path_round_trips(path: str, tile: Tile) -> None:
    assert Tile.from_path(path) == tile
    assert tile.path() == path


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("", id="empty"),
        pytest.param("tile/0", id="no-index"),
        pytest.param("tile/0/1", id="short-group"),
        pytest.param("tile/0/0001", id="long-group"),
        pytest.param("tile/00/001", id="level-leading-zero"),
        pytest.param("tile/64/001", id="level-64"),
        pytest.param("tile/-1/001", id="negative-level"),
        pytest.param("tile/data/001", id="sumdb-data-name"),
        pytest.param("tile/8/0/001", id="sumdb-form"),
        pytest.param("tile/0/x001", id="x-on-last"),
        pytest.param("tile/0/001/002", id="missing-x"),
        pytest.param("tile/0/x000/001", id="leading-zero-group"),
        pytest.param("tile/0/001.p/0", id="width-0"),
        pytest.param("tile/0/001.p/256", id="width-256"),
        pytest.param("tile/0/001.p/01", id="width-leading-zero"),
        pytest.param("tile/0/001.p/", id="width-missing"),
        pytest.param("tile/0/001/", id="trailing-slash"),
        pytest.param("/tile/0/001", id="leading-slash"),
        pytest.param("tile/0/\uff10\uff10\uff11", id="fullwidth-digits"),
        pytest.param("tile/0/" + "x001/" * 40 + "001", id="too-long"),
        pytest.param("tile/0/x009/x223/x372/x036/x854/x775/808", id="index-2^63"),
        pytest.param("tile/0/001\n", id="newline"),
    ],
)
def test_bad_c2sp_path_is_rejected(path: str) -> None:
    with pytest.raises(InputError) as caught:
        Tile.from_path(path)
    assert caught.value.reason == "tile.bad_path"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("tile/0/0/001", id="height-0"),
        pytest.param("tile/31/0/001", id="height-31"),
        pytest.param("tile/4/0/001.p/16", id="full-width-as-partial"),
        pytest.param("tile/4/entries/001", id="c2sp-entries-name"),
        pytest.param("tile/04/0/001", id="height-leading-zero"),
    ],
)
def test_bad_sumdb_path_is_rejected(path: str) -> None:
    with pytest.raises(InputError) as caught:
        Tile.from_sumdb_path(path)
    assert caught.value.reason == "tile.bad_path"


def test_c2sp_path_needs_height_8() -> None:
    with pytest.raises(InputError) as caught:
        Tile(0, 1, 16, height=4).path()
    assert caught.value.reason == "tile.not_c2sp"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param({"level": -2}, "tile.invalid", id="level-below-entries"),
        pytest.param({"level": 64}, "tile.invalid", id="level-64"),
        pytest.param({"index": -1}, "tile.invalid", id="negative-index"),
        pytest.param({"index": 2**63}, "tile.invalid", id="index-2^63"),
        pytest.param({"width": 0}, "tile.invalid", id="width-0"),
        pytest.param({"width": 257}, "tile.invalid", id="width-257"),
        pytest.param({"height": 0}, "tile.invalid", id="height-0"),
        pytest.param({"height": 31}, "tile.invalid", id="height-31"),
        pytest.param({"width": True}, "tile.invalid", id="bool-width"),
    ],
)
def test_tile_constructor_enforces_invariants(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InputError) as caught:
        replace(Tile(0, 0, 256), **changes)
    assert caught.value.reason == reason


# --- tree shapes ---------------------------------------------------------------------------------


def test_tiles_for_70000_match_the_c2sp_example() -> None:
    """273 full level-0, a partial of 112, one full level-1, partial 17, partial level-2 of 1."""
    tiles = tiles_for_size(70000)
    level0 = [t for t in tiles if t.level == 0]
    assert [t for t in level0 if not t.is_partial] == [Tile(0, n, 256) for n in range(273)]
    assert [t for t in level0 if t.is_partial] == [Tile(0, 273, 112)]
    assert [t for t in tiles if t.level == 1] == [Tile(1, 0, 256), Tile(1, 1, 17)]
    assert [t for t in tiles if t.level == 2] == [Tile(2, 0, 1)]
    assert len(tiles) == 277


def test_tiles_for_256_match_the_c2sp_example() -> None:
    assert tiles_for_size(256) == [Tile(0, 0, 256), Tile(1, 0, 1)]


@pytest.mark.parametrize(
    ("size", "tiles"),
    [
        pytest.param(0, [], id="empty"),
        pytest.param(1, [Tile(0, 0, 1)], id="one"),
        pytest.param(255, [Tile(0, 0, 255)], id="255"),
        pytest.param(257, [Tile(0, 0, 256), Tile(0, 1, 1), Tile(1, 0, 1)], id="257"),
    ],
)
def test_small_tree_shapes(size: int, tiles: list[Tile]) -> None:
    assert tiles_for_size(size) == tiles


def test_sumdb_height_tree_shape() -> None:
    assert tiles_for_size(5, height=1) == [
        Tile(0, 0, 2, 1),
        Tile(0, 1, 2, 1),
        Tile(0, 2, 1, 1),
        Tile(1, 0, 2, 1),
        Tile(2, 0, 1, 1),
    ]


@pytest.mark.parametrize(
    ("size", "kwargs", "reason"),
    [
        pytest.param(-1, {}, "tile.invalid_size", id="negative"),
        pytest.param(2**63, {}, "tile.invalid_size", id="2^63"),
        pytest.param(70000, {"limits": Limits(max_tiles=276)}, "tile.too_many", id="over-limit"),
        pytest.param(2**62, {}, "tile.too_many", id="huge-tree"),
        pytest.param(10, {"height": 0}, "tile.invalid", id="height-0"),
    ],
)
def test_tiles_for_size_refuses(size: int, kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(InputError) as caught:
        tiles_for_size(size, **kwargs)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("tile", "node_range"),
    [
        pytest.param(Tile(0, 0, 256), (0, 0, 256), id="first-leaves"),
        pytest.param(Tile(0, 273, 112), (0, 273 * 256, 112), id="partial-leaves"),
        pytest.param(Tile(1, 1, 17), (8, 256, 17), id="level-1"),
        pytest.param(Tile(2, 3, 256), (16, 768, 256), id="level-2"),
        pytest.param(Tile(ENTRIES_LEVEL, 2, 5), (0, 512, 5), id="entries"),
        pytest.param(Tile(3, 1, 2, height=4), (12, 16, 2), id="height-4"),
    ],
)
def test_tile_node_range(tile: Tile, node_range: tuple[int, int, int]) -> None:
    assert tile_node_range(tile) == node_range


@given(st.integers(0, 3), st.integers(0, 10**6), st.integers(0, 255))
def test_node_range_matches_the_spec_formula(level: int, index: int, entry: int) -> None:
    """Entry i of tile (l, n) is MTH(D[(n*256+i)*256**l : (n*256+i+1)*256**l])."""
    merkle_level, first, _ = tile_node_range(Tile(level, index, 256))
    node = first + entry
    assert (node << merkle_level, (node + 1) << merkle_level) == (
        (index * 256 + entry) * 256**level,
        (index * 256 + entry + 1) * 256**level,
    )


@given(st.integers(0, 2**20))
def test_tiles_cover_every_hash_of_every_level(size: int) -> None:
    """Tile widths at level l add up to the floor(size / 256**l) hashes stored there."""
    tiles = tiles_for_size(size)
    for level in range(6):
        assert sum(t.width for t in tiles if t.level == level) == size >> (8 * level)
    assert all(Tile.from_path(t.path()) == t for t in tiles if t.is_partial)


# --- entry bundles -------------------------------------------------------------------------------


def test_entry_bundle_encoding() -> None:
    bundle = EntryBundle((b"", b"a", b"hello"))
    assert bundle.to_bytes() == b"\x00\x00\x00\x01a\x00\x05hello"
    assert EntryBundle.from_bytes(bundle.to_bytes(), width=3) == bundle


def test_largest_entry_round_trips() -> None:
    bundle = EntryBundle((b"x" * 0xFFFF,))
    assert EntryBundle.from_bytes(bundle.to_bytes()) == bundle


@pytest.mark.parametrize(
    ("data", "kwargs", "reason"),
    [
        pytest.param(b"", {}, "tile.bundle_size", id="empty"),
        pytest.param(b"\x00", {}, "tile.bundle_truncated", id="half-length"),
        pytest.param(b"\x00\x05abc", {}, "tile.bundle_truncated", id="short-entry"),
        pytest.param(b"\x00\x00" * 257, {}, "tile.bundle_size", id="257-entries"),
        pytest.param(b"\x00\x00" * 3, {"width": 2}, "tile.bundle_width", id="width-mismatch"),
        pytest.param(
            b"\x00\x10" + bytes(16),
            {"limits": Limits(max_entry_bytes=15)},
            "tile.entry_too_large",
            id="entry-over-limit",
        ),
        pytest.param(
            b"\x00\x00" * (256 * 65537 // 2 + 1), {}, "tile.bundle_too_large", id="too-large"
        ),
    ],
)
def test_bad_entry_bundle_is_rejected(data: bytes, kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(InputError) as caught:
        EntryBundle.from_bytes(data, **kwargs)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        pytest.param((), "tile.bundle_size", id="no-entries"),
        pytest.param((b"",) * 257, "tile.bundle_size", id="257-entries"),
        pytest.param((b"x" * 0x10000,), "tile.entry_too_large", id="65536-bytes"),
    ],
)
def test_entry_bundle_constructor_enforces_invariants(
    entries: tuple[bytes, ...], reason: str
) -> None:
    with pytest.raises(InputError) as caught:
        EntryBundle(entries)
    assert caught.value.reason == reason


# --- properties ----------------------------------------------------------------------------------

c2sp_tiles = st.builds(Tile, st.integers(-1, 63), st.integers(0, 2**63 - 1), st.integers(1, 256))
sumdb_tiles = st.integers(1, 30).flatmap(
    lambda height: st.builds(
        Tile,
        st.integers(-1, 63),
        st.integers(0, 2**63 - 1),
        st.integers(1, 1 << height),
        st.just(height),
    )
)


@given(c2sp_tiles)
def test_c2sp_path_round_trip_property(tile: Tile) -> None:
    assert Tile.from_path(tile.path()) == tile


@given(sumdb_tiles)
def test_sumdb_path_round_trip_property(tile: Tile) -> None:
    assert Tile.from_sumdb_path(tile.sumdb_path()) == tile


@given(st.text(st.sampled_from("tile/0123456789x.pdaentrs-"), max_size=40))
def test_arbitrary_paths_raise_only_typed_errors(path: str) -> None:
    with contextlib.suppress(BrakepedalError):
        Tile.from_path(path)
    with contextlib.suppress(BrakepedalError):
        Tile.from_sumdb_path(path)


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=256))
def test_entry_bundle_round_trip_property(entries: list[bytes]) -> None:
    bundle = EntryBundle(tuple(entries))
    assert EntryBundle.from_bytes(bundle.to_bytes(), width=len(entries)) == bundle


@given(st.binary(max_size=600))
def test_arbitrary_bundles_raise_only_typed_errors(data: bytes) -> None:
    with contextlib.suppress(BrakepedalError):
        EntryBundle.from_bytes(data)
