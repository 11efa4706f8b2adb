"""``brakepedal demo`` as a user runs it, and its report opened in headless Chromium.

The demo is a real process; its report is read back by a real browser (Debian's ``chromium``,
which ``scripts/test`` installs): the split-run finding must be on the rendered page, with its
evidence, and the plots must load. Without Chromium the browser part is skipped locally and
fails where ``BRAKEPEDAL_REQUIRE_CHROMIUM`` is set (CI).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


class _Findings(HTMLParser):
    """The text of each ``tr.finding`` of a page, and the images it shows."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[str] = []
        self.images: list[str] = []
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "tr" and values.get("class") == "finding":
            self.rows.append("")
            self._depth = 1
        elif self._depth and tag == "tr":
            self._depth += 1
        if tag == "img":
            self.images.append(values.get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if self._depth and tag == "tr":
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.rows[-1] += data


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.environ.get("BRAKEPEDAL_REQUIRE_CHROMIUM"):
        pytest.fail("chromium is required here (BRAKEPEDAL_REQUIRE_CHROMIUM) and not installed")
    return found


def test_the_demo_catches_the_split_run_and_the_report_shows_it(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, "-m", "brakepedal", "demo", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ | {"COLUMNS": "200"},
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "the split run was caught" in run.stdout
    assert "the gate refused lab-a's job frontier-2: gate.paused" in run.stdout
    report = workdir / "report" / "report.html"
    assert f"report: {report.resolve()}" in run.stdout.replace("\n", "")
    document = json.loads((workdir / "report" / "report.json").read_text())
    (split,) = [f for f in document["findings"] if f["detector"] == "policy.pause_order"]
    assert split["subject"] == "lineage:unattributed:lab-a"
    assert split["figures"]["owners"] == ["lab-a", "lab-a-sub"]
    assert split["severity"] == "critical"

    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    browser = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    dom = subprocess.run(
        [*browser, "--dump-dom", report.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    page = _Findings()
    page.feed(dom)
    (row,) = [r for r in page.rows if "policy.pause_order" in r]
    assert "lineage:unattributed:lab-a" in row
    assert "pause order pause-2026-1 was in force" in row
    assert "log " in row  # its evidence: log indices with inclusion proofs
    assert len(page.images) == 3
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [*browser, f"--screenshot={screenshot}", "--window-size=1200,2400", report.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert screenshot.stat().st_size > 50_000  # a rendered page with plots, not a blank one
