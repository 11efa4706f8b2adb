"""bench/audit.py: one quick run, so that the benchmark keeps working and its figures add up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from audit import main


@pytest.mark.slow
def test_quick_run_reverifies_every_report_and_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "audit.json"

    assert main(["--quick", "--json", str(out)]) == 0

    report = json.loads(out.read_text())
    assert report["reports"] == 400
    raw = report["raw_one_core_per_second"]
    assert raw["openssl"] > 0
    assert raw["nacl"] > 0
    assert report["ratio_reverify_to_openssl"] == pytest.approx(
        report["reverify_per_second"] / raw["openssl"], rel=1e-2
    )
    assert report["audit_run_findings"] == ["usage.unattributed"]  # the corpus names no jobs
    assert report["target_met"] == (report["ratio_reverify_to_openssl"] >= 0.8)
