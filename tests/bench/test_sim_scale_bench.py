"""bench/sim_scale.py: one quick run, so that the benchmark keeps working and its figures add
up (the large worlds themselves are in docs/benchmarks.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sim_scale import main


@pytest.mark.slow
def test_quick_run_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "sim.json"

    assert main(["--quick", "--json", str(out)]) == 0

    (result,) = json.loads(out.read_text())["results"]
    assert result["devices"] == 50
    assert result["reports"] == 100  # 50 devices x 2 daily windows
    assert result["minute_records"] == 100 * 1440
    assert result["peak_rss_mib"] > 0
    assert result["wall_seconds"] > 0
    assert result["false_high"] == []
