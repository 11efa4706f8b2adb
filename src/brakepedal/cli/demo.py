"""``brakepedal demo``: the whole protocol in a small world, in about a minute.

See :mod:`brakepedal.sim.demo` for the story. The console shows each stage with a progress
bar, then a summary, and the path of the auditor's report (``--workdir``, default
``./brakepedal-demo``). Exits 0 when the auditor caught the split run, 1 if it did not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from brakepedal.cli.output import reports_errors

__all__ = ["demo"]


@reports_errors
def demo(
    workdir: Annotated[
        Path, typer.Option("--workdir", help="where the registry, audit state and report go")
    ] = Path("brakepedal-demo"),
) -> None:
    """Run a small world through the real code: registry, governance, gate, auditor, report."""
    from brakepedal.sim.demo import run_demo  # noqa: PLC0415

    console = Console()
    console.print(
        "[bold]brakepedal demo[/]: 3 labs and a subsidiary, 52 simulated H100s, 6 simulated "
        "hours; a 4-of-7 pause order; one lab splits its run across its subsidiary."
    )
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def advance(stage: str, done: int, total: int) -> None:
            if total == 0:
                progress.console.print(f"  [green]✓[/] {stage}")
                return
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        result = run_demo(workdir, advance)
    refused = result.refused
    console.print(
        f"  [red]✗[/] the gate refused lab-a's job frontier-2: {refused.reason}: {refused.message}"
    )
    split = [
        f
        for f in result.audit.findings
        if f.detector.startswith("policy.") and "lab-a-sub" in str(f.figures.get("owners"))
    ]
    table = Table(title="What the auditor found", show_lines=False)
    for column in ("severity", "finding", "subject", "summary"):
        table.add_column(column)
    for finding in sorted(result.audit.findings, key=lambda f: (-f.severity.rank, f.id)):
        table.add_row(finding.severity.value, finding.detector, finding.subject, finding.summary)
    console.print(table)
    console.print(
        f"{result.devices} devices, {result.reports} reports ingested and re-verified; "
        f"log of {result.audit.tree_size} entries, witnessed to {result.audit.witnessed_size}; "
        f"order {result.order_id} above {result.threshold_flop:.3e} FLOP; "
        f"{result.seconds:.0f} s."
    )
    console.print(
        "[bold green]the split run was caught[/]"
        if split
        else "[bold red]the split run was missed[/]"
    )
    console.print(f"report: {result.report.resolve()}")
    if not split:
        raise typer.Exit(1)
