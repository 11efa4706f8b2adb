"""docs/governance.md's ceremony, run exactly as documented, then its claims checked."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "governance.md"


def documented_script() -> str:
    """Every ```sh block of the document, in order."""
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 6
    return "set -euo pipefail\n" + "\n".join(blocks)


@pytest.mark.slow
def test_the_documented_ceremony_runs_and_does_what_it_says(tmp_path: Path) -> None:
    executable = shutil.which("brakepedal", path=str(Path(sys.executable).parent))
    assert executable is not None
    env = {**os.environ, "PATH": f"{Path(executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("BRAKEPEDAL_DB", None)
    result = subprocess.run(
        ["bash", "-c", documented_script()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "3 of 4 signed, needs 1 more" in result.stdout
    assert "governance.quorum_not_met" in result.stderr

    def in_force(at: str) -> list[str]:
        view = json.loads((tmp_path / f"view-{at}.json").read_text())
        return [order["order"] for order in view["orders_in_force"]]

    assert in_force("2026-12-19T01:00:00Z") == ["pause-1"]
    assert in_force("2026-12-21T00:00:00Z") == []
    assert in_force("2027-01-05T00:00:00Z") == ["pause-2"]
    assert in_force("2027-01-12T00:00:00Z") == []
    permits = json.loads((tmp_path / "view-2026-12-19T01:00:00Z.json").read_text())["permits_valid"]
    assert permits == []  # the permit ran from 4 to 11 December
