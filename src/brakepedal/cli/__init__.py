"""The one command-line application: wires the layers below and is the only place that prints.

Exit codes: 0 success, 2 bad input (also usage errors), 3 a trust failure (something did not
verify), 4 storage or transport failure, 5 a policy evaluation found a binding violation,
1 anything unexpected (a bug).
"""

from __future__ import annotations

import typer

from brakepedal.cli import estimate, gate, gov, keys, log, policy, witness

__all__ = ["app", "main"]

app = typer.Typer(
    name="brakepedal",
    help="Verifiable, time-limited pause on frontier AI training.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(keys.app, name="keys")
app.add_typer(log.app, name="log")
app.add_typer(policy.app, name="policy")
app.add_typer(gov.app, name="gov")
app.add_typer(witness.app, name="witness")
app.command(name="estimate")(estimate.estimate)
app.command(name="gate")(gate.gate)


def main() -> None:
    """Console-script entry point."""
    app()
