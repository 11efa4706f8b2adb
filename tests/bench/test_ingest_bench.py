"""bench/ingest.py: one quick run end to end (SQLite only), so that the benchmark keeps working.

The run starts a real registry process, enrols the devices, posts every report over HTTP, times
raw Ed25519 verification, ingests in-process with the phases timed and runs the agent's
collection. bench/ is not a package: ``conftest.py`` puts it on ``sys.path``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from ingest import PHASES, QUICK, main
from rich.console import Console


@pytest.mark.slow
def test_quick_run_accepts_every_report_and_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "ingest.json"

    assert main(["--quick", "--stores", "sqlite", "--json", str(out)]) == 0

    report = json.loads(out.read_text())
    assert set(report) >= {
        "machine",
        "parameters",
        "end_to_end",
        "raw_ed25519",
        "ingest_target",
        "breakdown",
        "agent",
        "all_accepted",
    }
    for fact in ("nproc", "python", "platform", "cryptography", "pynacl", "openssl", "sqlite"):
        assert report["machine"][fact], fact
    reports, devices = QUICK["reports"], QUICK["devices"]

    (sqlite,) = report["end_to_end"]
    assert sqlite["store"] == "sqlite"
    assert sqlite["accepted"] == sqlite["reports"] == reports
    assert sqlite["not_accepted"] == 0
    assert sqlite["not_accepted_reasons"] == {}
    assert sqlite["tree_size"] == devices + reports  # every enrolment and report is logged
    assert sqlite["reports_per_second"] > 0
    assert sqlite["server_cpu_us_per_report"] > 0
    assert report["all_accepted"] is True

    assert {r["library"] for r in report["raw_ed25519"]} == {"nacl", "openssl"}
    for raw in report["raw_ed25519"]:
        assert raw["pairs"] == reports
        assert raw["processes"] == 2
        assert raw["one_core_per_second"] > 0
        assert raw["multicore_per_second"] > 0
    assert set(report["ingest_target"]["met"]) == {"sqlite"}
    assert report["ingest_target"]["verifier"] == "openssl"
    assert len(report["rounds"]) == 1
    assert report["rounds"][0]["sqlite"] == report["ingest_target"]["ratio_to_verifier"]["sqlite"]
    assert sqlite["ratio_to_nacl_multicore"] > 0

    phases = report["breakdown"]
    assert phases["reports"] == reports
    assert phases["not_accepted"] == 0
    for clock in ("wall", "cpu"):  # exclusive times: the phases add up to the total
        assert list(phases[f"phases_{clock}_us"]) == list(PHASES.values())
        total = sum(phases[f"phases_{clock}_us"].values())
        assert math.isclose(total, phases[f"timed_total_{clock}_us"], rel_tol=0.05), clock

    agent = report["agent"]
    windows = QUICK["agent_seconds"] // (60 * QUICK["agent_window_minutes"])
    assert agent["devices"] == QUICK["agent_devices"]
    assert agent["reports"] == windows * QUICK["agent_devices"]
    assert agent["cpu_percent_per_gpu"] > 0
    assert agent["heap_peak_per_gpu_kib"] > 0


def test_reports_refused_in_any_round_count_not_only_the_best_rounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The best round is compared, but a refusal in another round must still fail the run."""
    import argparse  # noqa: PLC0415

    import ingest  # noqa: PLC0415

    def store(rate: float, refused: int) -> ingest.StoreResult:
        return ingest.StoreResult(
            "sqlite", 10, 1, 10, 1, 1.0, rate, 10 - refused, refused, {}, 11, 1.0, 1.0, 1.0, 1.0
        )

    def raw(rate: float) -> list[ingest.RawResult]:
        return [
            ingest.RawResult(lib, 10, 1.0, rate, 2, 2 * rate, 2.0, 2 * rate)
            for lib in ("nacl", "openssl")
        ]

    stores = iter([store(100.0, 5), store(200.0, 0)])
    monkeypatch.setattr(ingest, "run_store", lambda *_: next(stores))
    monkeypatch.setattr(ingest, "raw_rates", lambda *_: raw(100.0))
    args = argparse.Namespace(rounds=2, stores="sqlite", processes=2)
    best, _, rounds, refused = ingest.measure_rounds(args, [], [], Console())
    assert [s.reports_per_second for s in best] == [200.0]
    assert rounds == [{"sqlite": 0.5}, {"sqlite": 1.0}]
    assert refused == 5
