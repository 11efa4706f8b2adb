"""The simulator at scale: wall time, CPU and peak memory of large worlds through the real
pipeline (signed reports, the registry on SQLite, governance, the auditor).

    .venv/bin/python bench/sim_scale.py bench/scenarios/honest-1000x30d.yaml --json /tmp/a.json
    .venv/bin/python bench/sim_scale.py bench/scenarios/world-100k-1d.yaml --json /tmp/b.json

Each scenario runs in this process (peak RSS is the process's, ``ru_maxrss``) in a fresh
working directory; the registry's SQLite file size is reported too. ``--quick`` runs the
small shape check (bench/scenarios/honest-50x2d.yaml), as CI's smoke test does.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from brakepedal.sim.engine import Engine
from brakepedal.sim.scenario import load_scenario

HERE = Path(__file__).parent


def run_one(path: Path, console: Console) -> dict[str, object]:
    scenario = load_scenario(path)
    with tempfile.TemporaryDirectory(prefix="brakepedal-sim-scale-") as directory:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task(f"{scenario.name}: simulated windows", total=None)

            def advance(stage: str, done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            started, cpu = time.perf_counter(), time.process_time()
            engine = Engine(scenario, Path(directory), progress=advance)
            outcome = engine.run()
            wall, cpu_s = time.perf_counter() - started, time.process_time() - cpu
        database = Path(directory) / "registry.sqlite3"
        size = database.stat().st_size if database.exists() else 0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    severities: dict[str, int] = {}
    for finding in outcome.findings:
        severities[str(finding["severity"])] = severities.get(str(finding["severity"]), 0) + 1
    return {
        "scenario": scenario.name,
        "devices": outcome.devices,
        "days": scenario.days,
        "window_minutes": scenario.window_minutes,
        "minute_records": outcome.reports * scenario.window_minutes,
        "reports": outcome.reports,
        "audits": outcome.audits,
        "challenges": outcome.challenges,
        "gate_refusals_device_windows": outcome.gate_refusals,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu_s, 1),
        "reports_per_second": round(outcome.reports / wall, 1),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "registry_database_mib": round(size / 2**20, 1),
        "findings_by_severity": severities,
        "false_high": list(outcome.false_high),
        "false_low": len(outcome.false_low),
        "false_high_per_entity_audit": outcome.false_rate,
        "findings": list(outcome.findings)[:20],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", type=Path)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    paths = [HERE / "scenarios" / "honest-50x2d.yaml"] if args.quick else args.scenarios
    if not paths:
        parser.error("name a scenario file (or --quick)")
    console = Console()
    results = [run_one(path, console) for path in paths]
    table = Table(title="Simulator at scale")
    for column in (
        "scenario",
        "devices",
        "reports",
        "minute records",
        "wall s",
        "peak RSS MiB",
        "false high",
    ):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            str(r["scenario"]),
            f"{r['devices']:,}",
            f"{r['reports']:,}",
            f"{r['minute_records']:,}",
            str(r["wall_seconds"]),
            str(r["peak_rss_mib"]),
            str(len(r["false_high"])),  # type: ignore[arg-type]
        )
    console.print(table)
    figures = {
        "benchmark": "sim_scale",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "results": results,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1))
    return 1 if any(r["false_high"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
