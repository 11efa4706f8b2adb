"""The one command-line application: wires the layers below and is the only place that prints.

Exit codes: 0 success, 2 bad input (also usage errors), 3 a trust failure (something did not
verify), 4 storage or transport failure, 5 a policy evaluation found a binding violation,
1 anything unexpected (a bug).

Start-up time matters (the gate and the governance ceremony run the CLI many times), so
:func:`main` imports only the module of the command it was asked for; ``app``, the whole
application with every command, is built on first use (tests, ``--help``).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer

__all__ = ["app", "build_app", "main"]

#: Command or group name -> (module under brakepedal.cli, attribute, kind).
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "keys": ("keys", "app", "group"),
    "log": ("log", "app", "group"),
    "policy": ("policy", "app", "group"),
    "gov": ("gov", "app", "group"),
    "witness": ("witness", "app", "group"),
    "registry": ("registry", "app", "group"),
    "agent": ("agent", "app", "group"),
    "audit": ("audit", "app", "group"),
    "estimate": ("estimate", "estimate", "command"),
    "gate": ("gate", "gate", "command"),
    "demo": ("demo", "demo", "command"),
    "sim": ("sim", "app", "group"),
}


def build_app(only: str | None = None) -> typer.Typer:
    """The application with every command, or with just ``only`` when that names one."""
    application = typer.Typer(
        name="brakepedal",
        help="Verifiable, time-limited pause on frontier AI training.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    names = [only] if only in _COMMANDS else list(_COMMANDS)
    if len(names) == 1:
        # A lone command would become the application itself; a callback keeps it a
        # subcommand, so ``brakepedal gate ...`` parses the same either way.
        application.callback()(_no_options)
    for name in names:
        module_name, attribute, kind = _COMMANDS[name]
        target = getattr(importlib.import_module(f"brakepedal.cli.{module_name}"), attribute)
        if kind == "group":
            application.add_typer(target, name=name)
        else:
            application.command(name=name)(target)
    return application


def _no_options() -> None:
    """Verifiable, time-limited pause on frontier AI training."""


_app: typer.Typer | None = None


def __getattr__(name: str) -> Any:
    global _app  # noqa: PLW0603 - built once, on first use
    if name == "app":
        if _app is None:
            _app = build_app()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Console-script entry point: load only the command asked for."""
    build_app(sys.argv[1] if len(sys.argv) > 1 else None)()
