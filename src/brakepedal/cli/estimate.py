"""``brakepedal estimate``: training compute from model-card numbers or from hardware time.

Two routes, as Epoch AI uses them: operation counting (``6 · N · D`` with N the active
parameters, or ``2 · N`` per inference token) and hardware (devices × time × peak ×
utilisation). With both, the command shows the utilisation the figures imply, which is how a
reader spots a declaration that does not add up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from brakepedal.accounting.catalogue import Accelerator, Precision, default_catalogue
from brakepedal.accounting.flop import (
    discrepancy,
    hardware_flop,
    inference_flop,
    parse_quantity,
    training_flop_6nd,
)
from brakepedal.cli.output import reports_errors
from brakepedal.errors import InputError
from brakepedal.model.types import Flop

__all__ = ["estimate"]

console = Console(highlight=False, soft_wrap=True)


@dataclass(frozen=True)
class _Route:
    route: str
    flop: Flop
    note: str


def _human(flop: Flop) -> str:
    return f"{float(flop.value):.3e}" if flop.value else "0"


def _count(text: str | None, what: str) -> int | None:
    return None if text is None else int(parse_quantity(text, what=what))


def _operation_routes(
    params: str | None, active: str | None, tokens: str | None, inference_tokens: str | None
) -> list[_Route]:
    n = _count(active, "--active-params") if active is not None else _count(params, "--params")
    routes: list[_Route] = []
    if (tokens or inference_tokens) and n is None:
        raise InputError("estimate.params_missing", "--tokens needs --params or --active-params")
    if n is not None and tokens is not None:
        d = _count(tokens, "--tokens") or 0
        routes.append(
            _Route("6·N·D", training_flop_6nd(n, d), f"N={n:.3g} active, D={d:.3g} tokens")
        )
    if n is not None and inference_tokens is not None:
        t = _count(inference_tokens, "--inference-tokens") or 0
        routes.append(_Route("2·N per token", inference_flop(n, t), f"N={n:.3g}, {t:.3g} tokens"))
    return routes


def _hardware_seconds(
    count: int | None, hours: str | None, device_hours: str | None
) -> tuple[int, Fraction]:
    if device_hours is not None:
        if hours is not None:
            raise InputError("estimate.time_ambiguous", "give --hours or --device-hours, not both")
        return 1, parse_quantity(device_hours, what="--device-hours", allow_fraction=True) * 3600
    if count is None or hours is None:
        raise InputError(
            "estimate.hardware_incomplete",
            "--hardware needs --count and --hours (or --device-hours)",
        )
    return count, parse_quantity(hours, what="--hours", allow_fraction=True) * 3600


def _hardware_routes(
    accelerator: Accelerator,
    devices: int,
    seconds: Fraction,
    precision: Precision,
    utilisation: Fraction,
) -> list[_Route]:
    where = f"{devices} × {accelerator.name}, {float(seconds / 3600):.6g} h at {precision}"
    capacity = hardware_flop(accelerator, devices=devices, seconds=seconds, precision=precision)
    routes = [_Route("hardware capacity", capacity, where + ", utilisation 1 (upper bound)")]
    if utilisation != 1:
        estimate = hardware_flop(
            accelerator,
            devices=devices,
            seconds=seconds,
            precision=precision,
            utilisation=utilisation,
        )
        routes.append(
            _Route("hardware estimate", estimate, where + f", utilisation {float(utilisation):g}")
        )
    return routes


def _list_accelerators() -> None:
    catalogue = default_catalogue()
    table = Table(title=f"Accelerator catalogue v{catalogue.version} ({len(catalogue)} devices)")
    for column in ("id", "name", "bf16 TFLOP/s", "fp8 TFLOP/s", "NVML names"):
        table.add_column(column)
    for accelerator in catalogue:
        rates = [accelerator.peak.get(p) for p in (Precision.BF16, Precision.FP8)]
        table.add_row(
            accelerator.id,
            accelerator.name,
            *("" if r is None else f"{r / 1e12:g}" for r in rates),
            ", ".join(accelerator.nvml_names),
        )
    console.print(table)
    console.print(catalogue.citation)


def _print(routes: list[_Route], implied: Fraction | None, as_json: bool) -> None:
    if as_json:
        document = {
            "routes": [
                {"route": r.route, "flop": r.flop.to_json(), "note": r.note} for r in routes
            ],
            "implied_utilisation": None if implied is None else f"{float(implied):.6f}",
        }
        console.print(json.dumps(document, indent=2, ensure_ascii=False), markup=False)
        return
    table = Table(title="Training compute")
    for column in ("route", "FLOP", "how"):
        table.add_column(column)
    for route in routes:
        table.add_row(route.route, _human(route.flop), route.note)
    console.print(table)
    if implied is not None:
        console.print(f"operation count / hardware capacity = utilisation {float(implied):.3f}")
        if implied > 1:
            console.print(
                "[bold red]more compute than this hardware could do: unattested hardware?[/]"
            )


@reports_errors
def estimate(
    params: Annotated[str | None, typer.Option(help="Parameters, e.g. 405e9 or 405B.")] = None,
    active_params: Annotated[
        str | None, typer.Option(help="Active parameters per token (mixture of experts).")
    ] = None,
    tokens: Annotated[str | None, typer.Option(help="Training tokens, e.g. 15.6T.")] = None,
    inference_tokens: Annotated[str | None, typer.Option(help="Tokens served (2·N each).")] = None,
    hardware: Annotated[
        str | None, typer.Option(help="Accelerator: catalogue id, Epoch or NVML name.")
    ] = None,
    count: Annotated[int | None, typer.Option(min=1, help="Number of devices.")] = None,
    hours: Annotated[str | None, typer.Option(help="Wall-clock hours of training.")] = None,
    device_hours: Annotated[
        str | None, typer.Option(help="Device-hours (instead of count × hours).")
    ] = None,
    precision: Annotated[
        Precision, typer.Option(help="Number format the peak is taken at.")
    ] = Precision.BF16,
    utilisation: Annotated[str, typer.Option(help="Model FLOP utilisation (MFU), e.g. 0.4.")] = "1",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    list_accelerators: Annotated[bool, typer.Option(help="List the catalogue and exit.")] = False,
) -> None:
    """Estimate training compute by operation counting and from hardware time."""
    if list_accelerators:
        _list_accelerators()
        return
    routes = _operation_routes(params, active_params, tokens, inference_tokens)
    capacity: Flop | None = None
    if hardware is not None:
        accelerator = default_catalogue().get(hardware)
        devices, seconds = _hardware_seconds(count, hours, device_hours)
        mfu = parse_quantity(utilisation, what="--utilisation", allow_fraction=True)
        hardware_routes = _hardware_routes(accelerator, devices, seconds, precision, mfu)
        capacity = hardware_routes[0].flop
        routes += hardware_routes
    if not routes:
        raise InputError(
            "estimate.nothing_to_do",
            "give --params and --tokens, or --hardware with --count and --hours",
        )
    implied = None
    if capacity is not None and routes[0].route == "6·N·D":
        implied = discrepancy(routes[0].flop, capacity).implied_utilisation
    _print(routes, implied, as_json)
