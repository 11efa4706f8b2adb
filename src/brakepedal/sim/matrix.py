"""The detection matrix (strategy x caught, how fast, false findings) and the sampling sweep.

:func:`matrix` runs scenarios over seeds and folds the :class:`~brakepedal.sim.engine.Outcome`
of each into one row per strategy: how often the defection was caught, by what, and the median
time from the threshold crossing (policy strategies) or the first act to the first finding.
:func:`sweep` measures the catch probability of the sampling challenges against their budget
and sets it beside the planner's promise 1 - (1 - f)^s (:mod:`brakepedal.audit.sampling`).
Both write JSON and PNG plots (matplotlib, headless).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from brakepedal.audit.sampling import catch_probability
from brakepedal.errors import InputError
from brakepedal.sim.engine import ActorOutcome, Outcome, check_http, run_scenario
from brakepedal.sim.scenario import Scenario

__all__ = [
    "MatrixRow",
    "SweepPoint",
    "matrix",
    "plot_matrix",
    "plot_sweep",
    "rows_of",
    "seeds_of",
    "sweep",
]

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class MatrixRow:
    """One strategy over every run that had it."""

    strategy: str
    scenario: str
    runs: int
    defected: int
    caught: int
    median_hours: float | None
    first_detectors: tuple[str, ...]
    false_high: int
    false_low: int
    false_refusals: int = 0

    @property
    def rate(self) -> float | None:
        return None if not self.defected else self.caught / self.defected


def seeds_of(scenario: Scenario, count: int) -> list[int]:
    """The seeds of ``count`` runs of ``scenario``: its own ``seed``, then the next ones."""
    if count < 1:
        raise InputError("sim.seeds_invalid", f"seeds must be 1 or more, got {count}")
    return [scenario.seed + k for k in range(count)]


def matrix(
    scenarios: Sequence[Scenario],
    seeds: int = 1,
    *,
    progress: Progress | None = None,
    http: bool = False,
) -> list[Outcome]:
    """Every scenario under ``seeds`` seeds each, from its own: ``seed``, ``seed + 1``, ...
    (each outcome records its seed). With ``http``, through the registry's HTTP API; a
    scenario that cannot run so is refused before any runs (``scenario.http_unsupported``)."""
    if http:
        for scenario in scenarios:
            check_http(scenario)
    plan = [(scenario, seed) for scenario in scenarios for seed in seeds_of(scenario, seeds)]
    outcomes = []
    for done, (scenario, seed) in enumerate(plan, start=1):
        outcomes.append(run_scenario(scenario, seed=seed, http=http))
        if progress is not None:
            progress("scenario runs", done, len(plan))
    return outcomes


def rows_of(outcomes: Sequence[Outcome]) -> list[MatrixRow]:
    """One row per (scenario, defecting strategy); honest scenarios give a row too.

    ``runs`` and the false findings count each run once, however many of its actors follow
    the strategy; ``defected``, ``caught`` and the hours count actors."""
    grouped: dict[tuple[str, str], list[tuple[Outcome, Any]]] = {}
    for outcome in outcomes:
        defecting: list[ActorOutcome | None] = [a for a in outcome.actors if a.strategy != "honest"]
        for actor in defecting or [None]:
            name = actor.strategy if actor is not None else "honest"
            grouped.setdefault((outcome.scenario, name), []).append((outcome, actor))
    rows = []
    for (scenario, strategy), items in grouped.items():
        # Each run once (an Outcome holds dicts, so it is told apart by identity).
        runs = list({id(o): o for o, _ in items}.values())
        actors = [a for _, a in items if a is not None and a.defected]
        caught = [a for a in actors if a.caught is not None]
        hours = [h for a in caught if (h := a.hours_to_finding) is not None]
        firsts = [a.caught.by for a in caught if a.caught is not None]
        rows.append(
            MatrixRow(
                strategy=strategy,
                scenario=scenario,
                runs=len(runs),
                defected=len(actors),
                caught=len(caught),
                median_hours=statistics.median(hours) if hours else None,
                first_detectors=tuple(sorted(set(firsts))),
                false_high=sum(len(o.false_high) for o in runs),
                false_low=sum(len(o.false_low) for o in runs),
                false_refusals=sum(len(o.false_refusals) for o in runs),
            )
        )
    return sorted(rows, key=lambda r: (r.strategy != "honest", r.scenario))


@dataclass(frozen=True, slots=True)
class SweepPoint:
    """Catch probability of one budget over ``trials`` independent draws."""

    budget: int
    fraction: float
    trials: int
    caught: int
    expected: float

    @property
    def measured(self) -> float:
        """The share of runs whose draw caught a falsified report (0 with no runs)."""
        return self.caught / self.trials if self.trials else 0.0

    @property
    def error(self) -> float:
        """Two standard errors of the measured proportion (binomial, with the expected p);
        1 with no runs."""
        if not self.trials:
            return 1.0
        p = self.expected
        return 2 * math.sqrt(max(p * (1 - p), 1e-12) / self.trials)


def sweep(
    scenario: Scenario,
    budgets: Sequence[int],
    seeds: Sequence[int],
    *,
    progress: Progress | None = None,
) -> list[SweepPoint]:
    """For each budget s and seed: run ``scenario`` and take its first challenge round whose
    population held falsified reports (a fraction f of it); caught when the draw took one.
    Beside it, the planner's 1 - (1 - f)^s, averaged over the runs' f."""
    if not budgets or any(b < 1 for b in budgets):
        raise InputError("sim.budget_invalid", f"budgets must be 1 or more, got {list(budgets)}")
    points = []
    total = len(budgets) * len(seeds)
    done = 0
    for budget in budgets:
        caught, fractions = 0, []
        for seed in seeds:
            outcome = run_scenario(scenario, seed=seed, budget=budget)
            first = next((r for r in outcome.rounds if r[1] > 0), None)
            if first is not None:
                population, falsified, drawn_false, _drawn = first
                fractions.append(falsified / population)
                caught += drawn_false > 0
            done += 1
            if progress is not None:
                progress("sweep runs", done, total)
        expected = statistics.fmean(catch_probability(f, budget) for f in fractions or [0.0])
        fraction = statistics.fmean(fractions) if fractions else 0.0
        points.append(SweepPoint(budget, fraction, len(fractions), caught, expected))
    return points


def write_json(path: Path, rows: Sequence[MatrixRow], outcomes: Sequence[Outcome]) -> None:
    path.write_text(
        json.dumps(
            {
                "rows": [asdict(r) | {"rate": r.rate} for r in rows],
                "runs": [
                    {
                        "scenario": o.scenario,
                        "seed": o.seed,
                        "devices": o.devices,
                        "reports": o.reports,
                        "audits": o.audits,
                        "seconds": round(o.seconds, 2),
                        "false_high": list(o.false_high),
                        "false_low": list(o.false_low),
                        "false_refusals": list(o.false_refusals),
                        "actors": [
                            {
                                "entity": a.entity,
                                "strategy": a.strategy,
                                "defected_at": None
                                if a.defected_at is None
                                else a.defected_at.isoformat(),
                                "caught_by": None if a.caught is None else a.caught.by,
                                "hours_to_finding": a.hours_to_finding,
                            }
                            for a in o.actors
                        ],
                    }
                    for o in outcomes
                ],
            },
            indent=1,
        )
    )


def plot_matrix(rows: Sequence[MatrixRow], path: Path) -> Path:
    """Detection rate and median hours to finding per strategy, as a PNG."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    shown = [r for r in rows if r.strategy != "honest"]
    labels = [f"{r.strategy}\n({r.scenario})" for r in shown]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.45 * len(shown) + 1.5), sharey=True)
    y = range(len(shown))
    left.barh(y, [r.rate or 0 for r in shown], color="#4477aa")
    left.set_xlim(0, 1)
    left.set_xlabel("detection rate")
    left.set_yticks(list(y), labels, fontsize=7)
    right.barh(y, [r.median_hours or 0 for r in shown], color="#cc6677")
    right.set_xlabel("median hours to first finding")
    fig.suptitle("brakepedal detection matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sweep(points: Sequence[SweepPoint], path: Path) -> Path:
    """Measured catch probability against budget, with 1 - (1 - f)^s and its error band."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(figsize=(6, 4))
    budgets = [p.budget for p in points]
    axes.errorbar(
        budgets,
        [p.measured for p in points],
        yerr=[p.error for p in points],
        fmt="o",
        label="measured (2 s.e.)",
    )
    axes.plot(budgets, [p.expected for p in points], "-", label="1 - (1 - f)^s")
    axes.set_xlabel("challenges per audit (s)")
    axes.set_ylabel("catch probability in one audit")
    axes.set_ylim(0, 1.05)
    axes.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
