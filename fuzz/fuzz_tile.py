"""Fuzz target: c2sp tlog-tiles paths (both spellings) and entry bundles."""

from __future__ import annotations

import contextlib

from brakepedal.errors import BrakepedalError
from brakepedal.tlog.tiles import EntryBundle, Tile


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    for parse in (Tile.from_path, Tile.from_sumdb_path):
        with contextlib.suppress(BrakepedalError):
            parse(text)
    with contextlib.suppress(BrakepedalError):
        EntryBundle.from_bytes(data, width=data[0] if data else 1)


if __name__ == "__main__":
    from fuzz.harness import main

    main("tile", test_one_input)
