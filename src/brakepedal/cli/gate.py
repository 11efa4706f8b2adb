"""``brakepedal gate -- COMMAND ...``: run a job only while governance permits it.

The gate reads the job's declaration and the verified governance view
(:class:`~brakepedal.governance.view.GovernanceView`), refuses to start unpermitted training in
a pause's scope with a message naming the order, and, while the job runs, re-verifies every
``--poll-seconds``: if an order comes into force that covers the job, it sends SIGTERM once
the order's grace period has passed and SIGKILL ``--kill-after`` seconds later. Every step is
recorded as one JSON line in ``--events`` (the agent's report stream takes these records once
the agent ships; until then the file is the record).

Exit status: the job's own, or 5 when the gate refused or stopped it, or 2 for bad input.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from brakepedal.agent.gate import GateDecision, JobDeclaration, decide, parse_declaration
from brakepedal.cli.files import read_input
from brakepedal.cli.gov_files import read_repository
from brakepedal.cli.output import EXIT_VIOLATION, reports_errors
from brakepedal.errors import BrakepedalError, InputError
from brakepedal.governance.view import GovernanceView, LogEvidence
from brakepedal.model.types import format_utc
from brakepedal.policy.terms import PauseOrderTerms, PermitTerms

__all__ = ["gate"]

console = Console(stderr=True, highlight=False, soft_wrap=True)
_MAX_FILE = 8_000_000


#: A verified view is reused while its inputs are unchanged, for at most this long: expiry
#: (freeze) is checked again at least this often.
_REVERIFY_EVERY = timedelta(seconds=60)


@dataclass
class _Governance:
    repo: Path
    trusted_root: Path
    evidence: Path
    _view: GovernanceView | None = None
    _fingerprint: tuple[int, ...] = ()
    _verified_at: datetime | None = None

    def _inputs_fingerprint(self) -> tuple[int, ...]:
        paths = [self.trusted_root, self.evidence, *sorted(self.repo.rglob("*"))]
        stats = [path.stat() for path in paths if path.is_file()]
        return tuple(value for st in stats for value in (st.st_mtime_ns, st.st_size))

    def _load(self, at: datetime) -> GovernanceView:
        fingerprint = self._inputs_fingerprint()
        fresh = self._verified_at is not None and at - self._verified_at < _REVERIFY_EVERY
        if self._view is not None and fresh and fingerprint == self._fingerprint:
            return self._view
        self._view = None
        self._view = GovernanceView.load(
            trusted_root=read_input(self.trusted_root, what="trusted root", max_bytes=_MAX_FILE),
            repository=read_repository(self.repo),
            evidence=LogEvidence.from_bytes(
                read_input(self.evidence, what="evidence", max_bytes=_MAX_FILE)
            ),
            at=at,
        )
        self._fingerprint, self._verified_at = fingerprint, at
        return self._view

    def state(
        self, at: datetime
    ) -> tuple[Sequence[PauseOrderTerms] | None, Sequence[PermitTerms], str]:
        """Orders in force and permits valid at ``at``; None orders if nothing verifies.

        The view is verified again when any input file changes, and at least every minute.
        """
        try:
            view = self._load(at)
        except (BrakepedalError, OSError) as error:
            return None, (), getattr(error, "reason", "gate.inputs_unreadable")
        return view.orders_in_force(at), view.permits_valid(at), "verified"


class _Events:
    def __init__(self, path: Path | None, job: JobDeclaration) -> None:
        self.path = path
        self.job = job

    def record(self, event: str, **details: Any) -> None:
        line = {"at": format_utc(datetime.now(UTC)), "event": event, "job": self.job.job, **details}
        console.print(f"gate: {event} {json.dumps(details, sort_keys=True)}", markup=False)
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(line, sort_keys=True) + "\n")


def _watch(
    process: subprocess.Popen[bytes],
    job: JobDeclaration,
    governance: _Governance,
    events: _Events,
    poll: float,
    kill_after: float,
) -> bool:
    """Run until the job exits; returns True if the gate stopped it."""
    stop_at: datetime | None = None
    terminated_at: datetime | None = None
    unavailable_noted = False
    while process.poll() is None:
        time.sleep(poll)
        now = datetime.now(UTC)
        if stop_at is None:
            orders, permits, status = governance.state(now)
            if orders is None:
                if not unavailable_noted:  # not proof of an order: a running job continues
                    events.record("governance_unavailable", reason=status)
                    unavailable_noted = True
                continue
            decision = decide(job, at=now, orders=orders, permits=permits)
            if not decision.allowed:
                stop_at = max(now, decision.enforced_from or now)
                events.record("order_in_force", order=decision.order, stop_at=format_utc(stop_at))
        if stop_at is not None and terminated_at is None and now >= stop_at:
            process.send_signal(signal.SIGTERM)
            terminated_at = now
            events.record("sigterm", pid=process.pid)
        if terminated_at is not None and now >= terminated_at + timedelta(seconds=kill_after):
            process.kill()
            events.record("sigkill", pid=process.pid)
            process.wait()
    return terminated_at is not None


def _refuse(decision: GateDecision, events: _Events) -> None:
    events.record("refused", reason=decision.reason, order=decision.order)
    console.print(f"[bold red]refused[/]: {decision.message} [{decision.reason}]")
    raise typer.Exit(EXIT_VIOLATION)


@reports_errors
def gate(
    command: Annotated[list[str], typer.Argument(help="The job to run, after --.")],
    declaration: Annotated[Path, typer.Option(help="The job's declaration (JSON).")],
    repo: Annotated[Path, typer.Option(help="The governance repository directory.")],
    trusted_root: Annotated[Path, typer.Option(help="The root this gate trusts.")],
    evidence: Annotated[Path, typer.Option(help="Log evidence for the repository.")],
    events: Annotated[
        Path | None, typer.Option(help="Append one JSON line per event here.")
    ] = None,
    poll_seconds: Annotated[float, typer.Option(min=0.05, help="Re-verify this often.")] = 5.0,
    kill_after: Annotated[
        float, typer.Option(min=0.0, help="SIGKILL this long after SIGTERM.")
    ] = 30.0,
) -> None:
    """Run COMMAND only if no pause order in force covers it; stop it if one comes into force."""
    if not command:
        raise InputError("gate.command_missing", "give the job's command after --")
    job = parse_declaration(read_input(declaration, what="declaration", max_bytes=65_536))
    governance = _Governance(repo, trusted_root, evidence)
    log = _Events(events, job)
    now = datetime.now(UTC)
    orders, permits, status = governance.state(now)
    decision = decide(job, at=now, orders=orders, permits=permits)
    if not decision.allowed:
        if orders is None:
            decision = GateDecision(False, decision.reason, f"{decision.message} ({status})")
        _refuse(decision, log)
    log.record("started", reason=decision.reason, permit=decision.permit, command=command)
    try:
        process = subprocess.Popen(command)  # noqa: S603 (the operator's own job, run as given)
    except OSError as error:
        raise InputError("gate.command_failed", f"cannot start {command[0]!r}: {error}") from error
    stopped = _watch(process, job, governance, log, poll_seconds, kill_after)
    code = process.returncode
    log.record("exited", returncode=code, stopped_by_gate=stopped)
    if stopped:
        console.print("[bold red]stopped[/]: a pause order came into force while the job ran")
        raise typer.Exit(EXIT_VIOLATION)
    raise typer.Exit(code if code >= 0 else 128 - code)
