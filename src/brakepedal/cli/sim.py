"""``brakepedal sim``: run scenarios of honest and defecting actors through the real pipeline.

``sim run SCENARIO...`` prints the detection matrix (strategy x caught, hours to the first
finding, false findings against honest actors) and writes its JSON and plot; a SCENARIO is a
file or the name of a shipped one, and ``catalogue`` runs every shipped scenario but the
sweep's (``sampling-sweep``). ``--seeds N`` runs each scenario N times, with its own ``seed``,
``seed + 1``, ... (recorded in matrix.json). With ``--http``, a scenario that runs in process
only (a split view) is refused before anything runs when named, and left out with a note when
it comes with ``catalogue``. ``sim sweep`` varies the sampling budget over many seeds and plots
the catch probability against 1 - (1 - f)^s. ``sim list`` names the shipped scenarios and the
strategies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from brakepedal.cli.output import reports_errors
from brakepedal.errors import InputError

if TYPE_CHECKING:
    from brakepedal.sim.scenario import Scenario

__all__ = ["app"]

app = typer.Typer(help="Simulate honest and defecting actors; measure what is caught.")


@contextmanager
def _progress(console: Console) -> Iterator[Callable[[str, int, int], None]]:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def advance(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        yield advance


def _scenarios(
    names: list[str], *, http: bool = False, console: Console | None = None
) -> list[Scenario]:
    """The scenarios ``names`` name. With ``http``, every one is checked to run over HTTP
    before any runs: a scenario named on its own that cannot is refused; one that came with
    ``catalogue`` is left out, with a note on ``console``."""
    from brakepedal.sim.engine import check_http, http_supported  # noqa: PLC0415
    from brakepedal.sim.scenario import (  # noqa: PLC0415
        catalogue_names,
        load_catalogue_scenario,
        load_scenario,
    )

    out: list[Scenario] = []
    for name in names:
        if name == "catalogue":
            shipped = [
                load_catalogue_scenario(n) for n in catalogue_names() if n != "sampling-sweep"
            ]
            for scenario in shipped:
                if http and not http_supported(scenario):
                    if console is not None:
                        console.print(
                            f"note: {scenario.name} left out of the catalogue: it runs in "
                            "process only (without --http)"
                        )
                    continue
                out.append(scenario)
            continue
        if Path(name).suffix in {".yaml", ".yml"} or Path(name).exists():
            scenario = load_scenario(Path(name))
        else:
            scenario = load_catalogue_scenario(name)
        if http:
            check_http(scenario)
        out.append(scenario)
    return out


@app.command("list")
@reports_errors
def list_() -> None:
    """The shipped scenarios and the strategy catalogue."""
    from brakepedal.sim.scenario import catalogue_names  # noqa: PLC0415
    from brakepedal.sim.strategies import STRATEGIES  # noqa: PLC0415

    console = Console()
    table = Table(title="Strategies")
    table.add_column("strategy")
    table.add_column("what the actor does")
    for name, strategy in STRATEGIES.items():
        table.add_row(name, strategy.summary)
    console.print(table)
    console.print("Shipped scenarios: " + ", ".join(catalogue_names()))


@app.command("run")
@reports_errors
def run(
    scenarios: Annotated[list[str], typer.Argument(help="files, shipped names, or catalogue")],
    seeds: Annotated[
        int, typer.Option(help="runs per scenario, with its seed, seed + 1, ...", min=1)
    ] = 1,
    out: Annotated[Path, typer.Option(help="where matrix.json and matrix.png go")] = Path(
        "brakepedal-sim"
    ),
    http: Annotated[
        bool, typer.Option(help="serve the registry on loopback; post and audit over HTTP")
    ] = False,
) -> None:
    """Run scenarios and print the detection matrix."""
    from brakepedal.sim.matrix import matrix, plot_matrix, rows_of, write_json  # noqa: PLC0415

    console = Console()
    chosen = _scenarios(scenarios, http=http, console=console)
    if not chosen:
        raise InputError("sim.nothing_to_run", "no scenario left to run over HTTP")
    with _progress(console) as advance:
        outcomes = matrix(chosen, seeds, progress=advance, http=http)
    rows = rows_of(outcomes)
    table = Table(
        title=f"Detection matrix ({len(outcomes)} runs, {seeds} seed(s) each, from the "
        "scenario's seed)"
    )
    for column in (
        "strategy",
        "scenario",
        "caught",
        "first by",
        "median h to finding",
        "false high",
        "false low",
    ):
        table.add_column(
            column, justify="left" if column in {"strategy", "scenario", "first by"} else "right"
        )
    for row in rows:
        caught = "-" if not row.defected else f"{row.caught}/{row.defected}"
        hours = "-" if row.median_hours is None else f"{row.median_hours:.1f}"
        table.add_row(
            row.strategy,
            row.scenario,
            caught,
            ", ".join(row.first_detectors) or "-",
            hours,
            str(row.false_high),
            str(row.false_low),
        )
    console.print(table)
    reports = sum(o.reports for o in outcomes)
    audits = sum(o.audits for o in outcomes)
    honest = sum(o.honest_entities * o.audits for o in outcomes)
    false_high = sum(len(o.false_high) for o in outcomes)
    refused = sum(len(o.false_refusals) for o in outcomes)
    console.print(
        f"{reports:,} reports signed, ingested and audited in {audits} audits; false high "
        f"findings against honest actors: {false_high} in {honest} entity-audits "
        f"({false_high / max(1, honest):.4f} per entity-audit); honest reports refused: {refused}"
    )
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "matrix.json", rows, outcomes)
    plot = plot_matrix(rows, out / "matrix.png")
    console.print(f"matrix: {out / 'matrix.json'}, plot: {plot}")


@app.command("sweep")
@reports_errors
def sweep(
    scenario: Annotated[str, typer.Option(help="file or shipped name")] = "sampling-sweep",
    budgets: Annotated[
        str, typer.Option(help="challenges per audit, comma-separated")
    ] = "1,2,4,8,16",
    seeds: Annotated[
        int, typer.Option(help="runs per budget, with the scenario's seed, seed + 1, ...", min=1)
    ] = 40,
    out: Annotated[Path, typer.Option(help="where sweep.json and sweep.png go")] = Path(
        "brakepedal-sim"
    ),
) -> None:
    """Catch probability of sampling challenges against their budget, beside 1 - (1 - f)^s."""
    import json  # noqa: PLC0415

    from brakepedal.sim.matrix import plot_sweep, seeds_of  # noqa: PLC0415
    from brakepedal.sim.matrix import sweep as run_sweep  # noqa: PLC0415

    console = Console()
    try:
        sizes = [int(b) for b in budgets.split(",")]
    except ValueError as e:
        raise typer.BadParameter(f"budgets: {budgets!r} is not a list of integers") from e
    (chosen,) = _scenarios([scenario])
    with _progress(console) as advance:
        points = run_sweep(chosen, sizes, seeds_of(chosen, seeds), progress=advance)
    table = Table(title="Sampling budget against catch probability (first challenge round)")
    for column in ("budget s", "runs", "mean f", "measured", "1 - (1 - f)^s", "2 s.e.", "within"):
        table.add_column(column, justify="right")
    for p in points:
        within = abs(p.measured - p.expected) <= p.error
        table.add_row(
            str(p.budget),
            str(p.trials),
            f"{p.fraction:.3f}",
            f"{p.measured:.3f}",
            f"{p.expected:.3f}",
            f"{p.error:.3f}",
            "yes" if within else "no",
        )
    console.print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(
        json.dumps(
            [
                {
                    "budget": p.budget,
                    "runs": p.trials,
                    "fraction": p.fraction,
                    "measured": p.measured,
                    "expected": p.expected,
                    "error": p.error,
                }
                for p in points
            ],
            indent=1,
        )
    )
    console.print(f"sweep: {out / 'sweep.json'}, plot: {plot_sweep(points, out / 'sweep.png')}")
