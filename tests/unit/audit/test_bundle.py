"""The bundle reader: named bad inputs, and a round trip of arbitrary entries."""

from __future__ import annotations

import base64
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brakepedal.audit.source import BundleSource, export_bundle
from brakepedal.errors import InputError
from brakepedal.tlog.merkle import leaf_hash, root_from_leaf_hashes
from brakepedal.tlog.proof import ConsistencyProof, parse_proof


class _Memory:
    """An evidence source over a list of entries (what export_bundle reads)."""

    name = "memory"

    def __init__(self, entries: list[bytes]) -> None:
        self._entries = entries

    def checkpoint(self) -> bytes:
        return b"checkpoint"

    def witnessed_checkpoint(self, cosignatures: int = 1) -> bytes | None:
        return None

    def consistency_proof(self, old: int, new: int) -> bytes:  # pragma: no cover - unused
        raise NotImplementedError

    def entries(self, start: int, end: int) -> list[bytes]:
        return self._entries[start:end]

    def aggregates(self, day: date, *, tree_size: int) -> list[dict[str, Any]] | None:
        return [{"operator": "x", "day": day.isoformat(), "tree_size": tree_size}]

    def governance(self) -> None:
        return None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=40), st.data())
def test_a_bundle_gives_back_its_entries_and_proves_consistency(
    entries: list[bytes], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "b"
        export_bundle(
            _Memory(entries), out, size=len(entries), checkpoint=b"c", days=[date(2026, 1, 1)]
        )
        bundle = BundleSource(out)
        assert bundle.entries(0, len(entries)) == entries
        exported = [{"operator": "x", "day": "2026-01-01", "tree_size": len(entries)}]
        assert bundle.aggregates(date(2026, 1, 1), tree_size=1) == exported
        assert bundle.aggregates(date(2026, 1, 2), tree_size=1) is None
        old = data.draw(st.integers(1, len(entries)))
        proof = parse_proof(bundle.consistency_proof(old, len(entries)))
        assert isinstance(proof, ConsistencyProof)
        leaves = [leaf_hash(e) for e in entries]
        proof.verify(root_from_leaf_hashes(leaves[:old]), root_from_leaf_hashes(leaves))


def _bundle(tmp_path: Path, **files: bytes) -> Path:
    out = tmp_path / "bundle"
    out.mkdir()
    for name, content in files.items():
        path = out / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return out


BAD = [
    ("no checkpoint", {"entries": b""}, "construct"),
    ("no entries", {"checkpoint": b"c"}, "construct"),
    ("entry not base64", {"checkpoint": b"c", "entries": b"!!!\n"}, "entries"),
    ("range beyond", {"checkpoint": b"c", "entries": base64.b64encode(b"x") + b"\n"}, "range"),
    ("proof beyond", {"checkpoint": b"c", "entries": base64.b64encode(b"x") + b"\n"}, "proof"),
    (
        "aggregates not a list",
        {"checkpoint": b"c", "entries": b"", "aggregates__2026-01-01.json": b'{"a": 1}'},
        "aggregates",
    ),
]


def _read(path: Path, step: str) -> None:
    bundle = BundleSource(path)
    if step == "entries":
        bundle.entries(0, 1)
    elif step == "range":
        bundle.entries(0, 2)
    elif step == "proof":
        bundle.consistency_proof(1, 2)
    elif step == "aggregates":
        bundle.aggregates(date(2026, 1, 1), tree_size=0)


@pytest.mark.parametrize(("files", "step"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_bundles_are_refused_by_name(
    tmp_path: Path, files: dict[str, bytes], step: str
) -> None:
    path = _bundle(tmp_path, **files)
    with pytest.raises(InputError) as raised:
        _read(path, step)
    assert raised.value.reason == "audit.bundle_invalid"
