"""Shared runner for the fuzz targets in this folder.

Each ``fuzz/fuzz_<parser>.py`` defines ``test_one_input(data: bytes) -> None``, which feeds the
bytes to one parser and lets only :class:`~brakepedal.errors.BrakepedalError` escape into
``expected``: any other exception is a bug (an untyped error reached the caller).

Run one target under atheris (coverage-guided, bounded):

    python -m fuzz.fuzz_note -runs=20000

CI also drives every target through Hypothesis in ``tests/fuzz/test_fuzz_targets.py``.
"""

from __future__ import annotations

import inspect
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).parent / "corpus"


def seeds(name: str) -> list[bytes]:
    """The seed inputs committed for target ``name`` (``fuzz/corpus/<name>/*``)."""
    folder = CORPUS / name
    if not folder.is_dir():
        return []
    return [path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()]


def _instrument_brakepedal(instrument: Callable[[Any], Any]) -> None:
    """Instrument brakepedal's own functions and methods for coverage guidance.

    ``atheris.instrument_all()`` would also instrument every dependency already imported
    (networkx, pydantic, cryptography...), which costs over a minute per target and guides the
    fuzzer into code we do not own.
    """
    seen: set[int] = set()
    for module_name, module in list(sys.modules.items()):
        if module_name != "brakepedal" and not module_name.startswith("brakepedal."):
            continue
        for value in list(vars(module).values()):
            for function in _functions_of(value, module_name):
                if id(function) not in seen:
                    seen.add(id(function))
                    instrument(function)


def _functions_of(value: object, module_name: str) -> list[Any]:
    if getattr(value, "__module__", None) != module_name:
        return []
    if inspect.isfunction(value):
        return [value]
    if inspect.isclass(value):
        found = []
        for member in vars(value).values():
            target = getattr(member, "__func__", member)
            if isinstance(member, property):
                target = member.fget
            if inspect.isfunction(target):
                found.append(target)
        return found
    return []


def main(name: str, target: Callable[[bytes], None]) -> None:
    """Run ``target`` under atheris, starting from the committed seed corpus."""
    import atheris  # noqa: PLC0415  (optional dependency, only for real fuzzing)

    # libFuzzer writes new inputs into its first corpus folder: give it a copy, so a run never
    # changes the committed seeds.
    work = Path(tempfile.mkdtemp(prefix=f"brakepedal-fuzz-{name}-"))
    seed_folder = CORPUS / name
    if seed_folder.is_dir():
        shutil.copytree(seed_folder, work, dirs_exist_ok=True)
    _instrument_brakepedal(atheris.instrument_func)
    atheris.Setup([*sys.argv, str(work)], target)
    atheris.Fuzz()
