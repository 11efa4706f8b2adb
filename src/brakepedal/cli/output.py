"""How the CLI talks to people: results on stdout, diagnostics on stderr, stable exit codes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from brakepedal.errors import BrakepedalError, InfrastructureError, InputError, TrustError

__all__ = [
    "EXIT_INFRASTRUCTURE",
    "EXIT_INPUT",
    "EXIT_TRUST",
    "EXIT_VIOLATION",
    "err_console",
    "exit_code",
    "fail",
    "reports_errors",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")

EXIT_INPUT = 2
EXIT_TRUST = 3
EXIT_INFRASTRUCTURE = 4
#: A policy evaluation found a binding violation (not an error: the answer is "no").
EXIT_VIOLATION = 5

err_console = Console(stderr=True, highlight=False)


def exit_code(error: BrakepedalError) -> int:
    """The exit status for an error of our taxonomy."""
    if isinstance(error, TrustError):
        return EXIT_TRUST
    if isinstance(error, InfrastructureError):
        return EXIT_INFRASTRUCTURE
    if isinstance(error, InputError):
        return EXIT_INPUT
    return 1


def fail(error: BrakepedalError) -> int:
    """Print the error's diagnostics to stderr and return its exit status."""
    label = {EXIT_TRUST: "verification failed", EXIT_INFRASTRUCTURE: "storage/transport error"}
    code = exit_code(error)
    err_console.print(f"[bold red]error[/] ({label.get(code, 'bad input')}): ", end="")
    err_console.print(error.diagnostics(), markup=False)
    return code


def reports_errors(command: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorate a command so our errors become diagnostics and an exit code, not a traceback."""

    @functools.wraps(command)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return command(*args, **kwargs)
        except BrakepedalError as error:
            raise typer.Exit(fail(error)) from error

    return run
