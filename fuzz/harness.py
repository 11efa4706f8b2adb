"""Shared runner for the fuzz targets in this folder.

Each ``fuzz/fuzz_<parser>.py`` defines ``test_one_input(data: bytes) -> None``, which feeds the
bytes to one parser and lets only :class:`~brakepedal.errors.BrakepedalError` escape into
``expected``: any other exception is a bug (an untyped error reached the caller).

Run one target under atheris (coverage-guided, bounded):

    python -m fuzz.fuzz_note -runs=20000

CI also drives every target through Hypothesis in ``tests/fuzz/test_fuzz_targets.py``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

CORPUS = Path(__file__).parent / "corpus"


def seeds(name: str) -> list[bytes]:
    """The seed inputs committed for target ``name`` (``fuzz/corpus/<name>/*``)."""
    folder = CORPUS / name
    if not folder.is_dir():
        return []
    return [path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()]


def main(name: str, target: Callable[[bytes], None]) -> None:
    """Run ``target`` under atheris, starting from the committed seed corpus."""
    import atheris  # noqa: PLC0415  (optional dependency, only for real fuzzing)

    # libFuzzer writes new inputs into its first corpus folder: give it a copy, so a run never
    # changes the committed seeds.
    work = Path(tempfile.mkdtemp(prefix=f"brakepedal-fuzz-{name}-"))
    seed_folder = CORPUS / name
    if seed_folder.is_dir():
        shutil.copytree(seed_folder, work, dirs_exist_ok=True)
    atheris.instrument_all()
    atheris.Setup([*sys.argv, str(work)], target)
    atheris.Fuzz()
