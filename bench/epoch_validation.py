"""Benchmark: our two training-compute estimates against Epoch AI's figures.

Reads Epoch AI's "Notable AI Models" export (CC BY 4.0; see ``shared/data/epoch_ai_models/
SOURCE.md``) and recomputes each model's training compute two ways with brakepedal's own
accounting code:

* the **6·N·D route** (language models): ``training_flop_6nd(active parameters, tokens)``;
* the **hardware route**: ``hardware_flop(chip, devices, seconds, precision, utilisation)`` with
  the chip's peak from ``default_catalogue()``.

It reports the median and interquartile range of ``log10(ours / Epoch)`` for each route, split
by Epoch's estimation method, its confidence and (hardware route) whether the utilisation was
reported or assumed, and checks that both routes land within 2x of Epoch for the Confident
frontier language models whose derivation Epoch gives. ``docs/benchmarks.md`` explains the
parsing choices and reads the figures.

    .venv/bin/python bench/epoch_validation.py --check --plot docs/img/epoch_validation.png
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

# bench/ is not a package: run as a script, Python puts this folder first on sys.path, so the
# helper modules beside it import by their bare names.
from epoch_estimates import (
    ROUTE_6ND,
    ROUTE_HARDWARE,
    WITHIN,
    Estimate,
    NamedResult,
    Skipped,
    Summary,
    estimate_6nd,
    estimate_hardware,
    named_results,
    summarise,
)
from epoch_parsing import EpochRow, row_from_record
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from brakepedal.accounting.catalogue import default_catalogue

if TYPE_CHECKING:
    from matplotlib.axes import Axes

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "epoch_ai_models"
NOTABLE = "notable_ai_models_2026-02.csv"
#: The newer export lacks the estimation-method column; this older one has it (joined by name).
METHODS = "notable_ai_models_2025-02-24.csv"
#: The utilisation Epoch's own notes assume most often when none is reported (0.3 or 30 %).
DEFAULT_UTILISATION = Fraction(3, 10)

# --- I/O at the edges -----------------------------------------------------------------------


def read_rows(data: Path) -> list[EpochRow]:
    """The 2026 notable-models rows, each with the 2025 export's estimation method."""
    with (data / METHODS).open(encoding="utf-8-sig", newline="") as f:
        methods = {
            r["Model"]: r.get("Training compute estimation method") or "" for r in csv.DictReader(f)
        }
    with (data / NOTABLE).open(encoding="utf-8-sig", newline="") as f:
        return [row_from_record(record, methods) for record in csv.DictReader(f)]


def estimate_all(
    rows: Sequence[EpochRow], default_utilisation: Fraction
) -> tuple[dict[str, list[Estimate]], list[Skipped]]:
    catalogue = default_catalogue()
    by_route: dict[str, list[Estimate]] = {ROUTE_6ND: [], ROUTE_HARDWARE: []}
    skipped: list[Skipped] = []
    with Progress("estimating", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        for row in bar.track(rows):
            results = [estimate_hardware(row, catalogue, default_utilisation)]
            if row.is_language:
                results.append(estimate_6nd(row))
            for result in results:
                if isinstance(result, Skipped):
                    skipped.append(result)
                else:
                    by_route[result.route].append(result)
    return by_route, skipped


def _ratio(value: float | None) -> str:
    if value is None:
        return "[red]not computed[/]"
    colour = "green" if abs(value) <= WITHIN else "red"
    return f"[{colour}]{value:+.3f} (x{10**value:.2f})[/]"


def render_skipped(skipped: Sequence[Skipped], console: Console) -> None:
    counts = Counter((s.route, s.reason) for s in skipped)
    table = Table(title="Rows not estimated, by reason")
    for column in ("route", "reason", "rows", "which"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for (route, reason), count in sorted(counts.items()):
        which = Counter(s.detail for s in skipped if (s.route, s.reason) == (route, reason))
        named = "; ".join(f"{d} ({n})" if n > 1 else d for d, n in sorted(which.items()) if d)
        table.add_row(route, reason, str(count), named)
    console.print(table)


def render(
    summaries: Sequence[Summary],
    skipped: Sequence[Skipped],
    named: Sequence[NamedResult],
    console: Console,
) -> None:
    for route in (ROUTE_6ND, ROUTE_HARDWARE):
        table = Table(title=f"{route} route: log10(ours / Epoch)")
        for column in ("split", "group", "n", "median", "IQR (25th..75th)", "within 2x"):
            table.add_column(column, justify="left" if column in {"split", "group"} else "right")
        for s in (s for s in summaries if s.route == route):
            table.add_row(
                s.split,
                s.group,
                str(s.n),
                f"{s.median:+.3f}",
                f"{s.q25:+.3f} .. {s.q75:+.3f}",
                f"{s.within_2x:.0%}",
            )
        console.print(table)
    render_skipped(skipped, console)
    table = Table(title="Named check: both routes within 2x of Epoch")
    for column in ("model", "6ND", "hardware", "result", "held to 2x by --check?"):
        table.add_column(column)
    for n in named:
        verdict = "[green]pass[/]" if n.passed else "[red]MISS[/]"
        gate = f"yes: {n.why}" if n.gated else f"no: {n.why}"
        table.add_row(n.model, _ratio(n.log10_6nd), _ratio(n.log10_hardware), verdict, gate)
    console.print(table)


_COLOURS = {
    "Confident": "tab:green",
    "Likely": "tab:blue",
    "Speculative": "tab:orange",
    "Unknown": "tab:gray",
}


def plot(by_route: Mapping[str, Sequence[Estimate]], named: Sequence[str], path: Path) -> None:
    """Log-log scatter of ours against Epoch for both routes, with y = x and the 2x band;
    the models ``--check`` holds to 2x are ringed and labelled."""
    import matplotlib  # noqa: PLC0415 (only when a plot is asked for)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(1, 2, figsize=(12, 5.8), sharey=True)
    line = np.logspace(10, 28, 50)
    for axis, route in zip(axes, (ROUTE_6ND, ROUTE_HARDWARE), strict=True):
        estimates = by_route[route]
        axis.fill_between(line, line / 2, line * 2, color="0.85", label="within 2x")
        axis.plot(line, line, color="black", linewidth=0.8, label="y = x")
        for confidence, colour in _COLOURS.items():
            chosen = [e for e in estimates if e.confidence == confidence]
            if chosen:
                axis.scatter(
                    [e.epoch_flop for e in chosen],
                    [e.our_flop for e in chosen],
                    s=10,
                    color=colour,
                    alpha=0.7,
                    label=f"{confidence} ({len(chosen)})",
                )
        _label_named(axis, [e for e in estimates if e.model in named])
        axis.set(
            xscale="log",
            yscale="log",
            xlim=(1e10, 1e28),
            ylim=(1e10, 1e28),
            title=f"{route} route (n = {len(estimates)})",
            xlabel="Epoch AI training compute (FLOP)",
        )
        axis.legend(fontsize=8, loc="upper left")
    axes[0].set_ylabel("brakepedal estimate (FLOP)")
    figure.suptitle("Training compute: brakepedal's two routes against Epoch AI (notable models)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=130)
    plt.close(figure)


def _label_named(axis: Axes, estimates: Sequence[Estimate]) -> None:
    """Ring the named models and label them in a column at the lower right."""
    axis.scatter(
        [e.epoch_flop for e in estimates],
        [e.our_flop for e in estimates],
        s=40,
        facecolors="none",
        edgecolors="black",
        linewidths=0.8,
    )
    ordered = sorted(estimates, key=lambda e: -e.epoch_flop)
    for index, e in enumerate(ordered):
        axis.annotate(
            e.model,
            (e.epoch_flop, e.our_flop),
            xytext=(0.62, 0.36 - 0.06 * index),
            textcoords="axes fraction",
            fontsize=8,
            arrowprops={"arrowstyle": "-", "color": "0.4", "linewidth": 0.6},
        )


def write_json(path: Path, args: argparse.Namespace, report: Mapping[str, object]) -> None:
    files = {
        name: hashlib.sha256((args.data / name).read_bytes()).hexdigest()
        for name in (NOTABLE, METHODS)
    }
    document = {
        "benchmark": "epoch_validation",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": {"directory": str(args.data), "sha256": files},
        "parameters": {"default_utilisation": str(args.default_utilisation)},
        **report,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Epoch CSV directory")
    parser.add_argument(
        "--default-utilisation",
        type=Fraction,
        default=DEFAULT_UTILISATION,
        help="MFU for rows that report none (default 0.3)",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a named model misses")
    parser.add_argument("--json", type=Path, help="write all figures and rows as JSON here")
    parser.add_argument("--plot", type=Path, help="write the scatter plot (PNG) here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=120)  # wide enough for every column when piped to a file
    if not all((args.data / name).is_file() for name in (NOTABLE, METHODS)):
        console.print(f"[yellow]Epoch AI data not found in {args.data}, skipping.[/]")
        return 0
    rows = read_rows(args.data)
    by_route, skipped = estimate_all(rows, args.default_utilisation)
    summaries = [s for route, found in by_route.items() for s in summarise(route, found)]
    named = named_results(rows, by_route)
    render(summaries, skipped, named, console)
    if args.plot:
        plot(by_route, [n.model for n in named if n.gated], args.plot)
    if args.json:
        report = {
            "rows_read": len(rows),
            "summaries": [asdict(s) for s in summaries],
            "skipped": [asdict(s) for s in skipped],
            "named": [{**asdict(n), "passed": n.passed} for n in named],
            "estimates": [asdict(e) for found in by_route.values() for e in found],
        }
        write_json(args.json, args, report)
    missed = [n.model for n in named if n.gated and not n.passed]
    if missed:
        console.print(f"[red]Held to 2x but outside it on a route:[/] {', '.join(missed)}")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
