"""``brakepedal gate -- COMMAND ...``: run a job only while governance permits it.

The gate reads the job's declaration and the verified governance view
(:class:`~brakepedal.governance.view.GovernanceView`), refuses to start unpermitted training in
a pause's scope with a message naming the order, and, while the job runs, re-verifies every
``--poll-seconds``: if an order comes into force that covers the job, it sends SIGTERM once
the order's grace period has passed and SIGKILL ``--kill-after`` seconds later. A refresh that
fails does not let the job run free: the gate keeps enforcing the orders (and permits) of the
last view it verified, at the current time, until a refresh verifies again. Every step is
recorded as one JSON line in ``--events``; with ``--handins`` (or ``BRAKEPEDAL_HANDINS``) the
steps the report stream carries (refused, started, signalled, exited) also go into the node's
hand-in store (:mod:`brakepedal.agent.handin`), from which the agent puts them into every
device's usage report for the window. Recording never stops the brake: the gate refuses or
signals first, and a write that fails is reported on stderr. The job runs with
``BRAKEPEDAL_JOB`` (and ``BRAKEPEDAL_PERMIT`` when a permit covers it) in its environment, so the
agent can attribute its processes.

Exit status: the job's own, or 5 when the gate refused or stopped it, or 2 for bad input.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from brakepedal.agent.gate import GateDecision, JobDeclaration, decide, parse_declaration
from brakepedal.agent.handin import HandIns
from brakepedal.cli.files import read_input
from brakepedal.cli.gov_files import read_repository
from brakepedal.cli.output import EXIT_VIOLATION, reports_errors
from brakepedal.errors import BrakepedalError, InputError
from brakepedal.governance.view import DroppedDocument, GovernanceView, LogEvidence
from brakepedal.model.types import OrderId, format_utc
from brakepedal.policy.terms import PauseOrderTerms, PermitTerms
from brakepedal.wire.report import GateEvent, GateEventKind, short_detail

__all__ = ["gate"]

console = Console(stderr=True, highlight=False, soft_wrap=True)
_MAX_FILE = 8_000_000


#: A verified view is reused while its inputs are unchanged, for at most this long: expiry
#: (freeze) is checked again at least this often.
_REVERIFY_EVERY = timedelta(seconds=60)


#: ``_Governance.state``'s status when the view verified at the time asked.
VERIFIED = "verified"


@dataclass
class _Governance:
    repo: Path
    trusted_root: Path
    evidence: Path
    #: The last view this gate verified: kept when a later refresh fails.
    _view: GovernanceView | None = None
    _fingerprint: tuple[int, ...] = ()
    _verified_at: datetime | None = None
    _reported: set[DroppedDocument] = field(default_factory=set)

    def _inputs_fingerprint(self) -> tuple[int, ...]:
        paths = [self.trusted_root, self.evidence, *sorted(self.repo.rglob("*"))]
        stats = [path.stat() for path in paths if path.is_file()]
        return tuple(value for st in stats for value in (st.st_mtime_ns, st.st_size))

    def _load(self, at: datetime) -> GovernanceView:
        fingerprint = self._inputs_fingerprint()
        fresh = self._verified_at is not None and at - self._verified_at < _REVERIFY_EVERY
        if self._view is not None and fresh and fingerprint == self._fingerprint:
            return self._view
        view = GovernanceView.load(
            trusted_root=read_input(self.trusted_root, what="trusted root", max_bytes=_MAX_FILE),
            repository=read_repository(self.repo),
            evidence=LogEvidence.from_bytes(
                read_input(self.evidence, what="evidence", max_bytes=_MAX_FILE)
            ),
            at=at,
            # Against what this gate verified before: a replayed older state is a rollback.
            previous_timestamp=None if self._view is None else self._view.timestamp,
            previous_versions=None if self._view is None else self._view.versions,
        )
        self._view, self._fingerprint, self._verified_at = view, fingerprint, at
        return view

    def state(
        self, at: datetime
    ) -> tuple[Sequence[PauseOrderTerms] | None, Sequence[PermitTerms], str]:
        """Orders in force and permits valid at ``at``, and :data:`VERIFIED` or why the view
        did not verify now.

        The view is verified again when any input file changes, and at least every minute.
        When that fails, the orders and permits are those of the last view this gate verified
        (still at ``at``: its orders come into force and end on their own dates); None orders
        only if it never verified one, which fails training closed.
        """
        try:
            view = self._load(at)
        except (BrakepedalError, OSError) as error:
            status = getattr(error, "reason", "gate.inputs_unreadable")
            if self._view is None:
                return None, (), status
            return self._view.orders_in_force(at), self._view.permits_valid(at), status
        return view.orders_in_force(at), view.permits_valid(at), VERIFIED

    def dropped(self) -> list[DroppedDocument]:
        """Documents the last verified view dropped that were not reported yet."""
        new = (
            [] if self._view is None else [d for d in self._view.dropped if d not in self._reported]
        )
        self._reported.update(new)
        return new


#: The gate's events that go into the report stream, by their name in ``--events``.
_REPORTED = {
    "refused": GateEventKind.REFUSED,
    "started": GateEventKind.STARTED,
    "sigterm": GateEventKind.SIGNALLED_TERM,
    "sigkill": GateEventKind.SIGNALLED_KILL,
    "exited": GateEventKind.EXITED,
}
#: Recording waits this long at most for another writer: it must not hold up the brake.
_HANDIN_WAIT_SECONDS = 2.0


class _Events:
    """Records each step on stderr, in ``--events`` and (reported kinds) in ``--handins``.

    Recording never stops the brake: the caller signals or refuses first, and a write that
    fails is reported on stderr and otherwise ignored.
    """

    def __init__(self, path: Path | None, handins: Path | None, job: JobDeclaration) -> None:
        self.path = path
        self.handins = handins
        self.job = job

    def record(self, event: str, *, order: OrderId | None = None, **details: Any) -> None:
        at = datetime.now(UTC)
        if order is not None:
            details["order"] = order
        line = {"at": format_utc(at), "event": event, "job": self.job.job, **details}
        console.print(f"gate: {event} {json.dumps(details, sort_keys=True)}", markup=False)
        if self.path is not None:
            try:
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(line, sort_keys=True) + "\n")
            except OSError as error:
                console.print(
                    f"gate: could not append {event} to {self.path}: {error}", markup=False
                )
        kind = _REPORTED.get(event)
        if self.handins is not None and kind is not None:
            self._hand_in(self.handins, at, kind, order, details)

    def _hand_in(
        self,
        handins: Path,
        at: datetime,
        kind: GateEventKind,
        order: OrderId | None,
        details: dict[str, Any],
    ) -> None:
        try:
            event = GateEvent(
                at=at, job=self.job.job, kind=kind, order=order, detail=_detail(details)
            )
            with HandIns(handins, busy_timeout=_HANDIN_WAIT_SECONDS) as store:
                store.add_event(event)
        except (BrakepedalError, OSError) as error:
            console.print(
                f"gate: could not record {kind.value} in hand-ins {handins}: {error}",
                markup=False,
            )


def _detail(details: dict[str, Any]) -> str:
    """The report's ``detail``: the step's facts as ``key=value``; never the command line,
    which may hold a customer's secrets."""
    facts = (
        f"{key}={str(value).lower() if isinstance(value, bool) else value}"
        for key, value in sorted(details.items())
        if key not in {"command", "order"} and value is not None
    )
    return short_detail(" ".join(facts))


@dataclass
class _Stop:
    """The order that stops the job, when it must have stopped, and when SIGTERM went out."""

    order: OrderId | None
    at: datetime
    terminated_at: datetime | None = None


def _record_dropped(governance: _Governance, events: _Events) -> None:
    for dropped in governance.dropped():
        events.record(
            "document_dropped", path=dropped.path, role=dropped.role, reason=dropped.reason
        )


def _check(
    job: JobDeclaration, governance: _Governance, events: _Events, now: datetime, noted: bool
) -> tuple[_Stop | None, bool]:
    """Verify again; an order in force that covers the job gives the stop. A refresh that
    fails is noted (once until one verifies again) and the orders of the last verified view
    still apply: the job continues unless one of those covers it. Only a verified order stops
    the job, and a failing refresh hides none that was verified."""
    orders, permits, status = governance.state(now)
    if status == VERIFIED:
        noted = False
        _record_dropped(governance, events)
    elif not noted:
        events.record(
            "governance_unavailable",
            reason=status,
            last_verified_view=orders is not None,
        )
        noted = True
    if orders is None:
        return None, noted
    decision = decide(job, at=now, orders=orders, permits=permits)
    if decision.allowed:
        return None, noted
    stop = _Stop(decision.order, max(now, decision.enforced_from or now))
    events.record("order_in_force", order=stop.order, stop_at=format_utc(stop.at))
    return stop, noted


def _watch(
    process: subprocess.Popen[bytes],
    job: JobDeclaration,
    governance: _Governance,
    events: _Events,
    poll: float,
    kill_after: float,
) -> _Stop | None:
    """Run until the job exits; returns the stop if the gate stopped it."""
    stop: _Stop | None = None
    noted = False
    while process.poll() is None:
        time.sleep(poll)
        now = datetime.now(UTC)
        if stop is None:
            stop, noted = _check(job, governance, events, now, noted)
        if stop is None:
            continue
        if stop.terminated_at is None and now >= stop.at:
            process.send_signal(signal.SIGTERM)  # the signal first, then the record
            stop.terminated_at = now
            events.record("sigterm", order=stop.order, pid=process.pid)
        if stop.terminated_at is not None and now >= stop.terminated_at + timedelta(
            seconds=kill_after
        ):
            process.kill()
            events.record("sigkill", order=stop.order, pid=process.pid)
            process.wait()
    return stop if stop is not None and stop.terminated_at is not None else None


def _refuse(decision: GateDecision, events: _Events) -> None:
    console.print(f"[bold red]refused[/]: {decision.message} [{decision.reason}]")
    events.record("refused", order=decision.order, reason=decision.reason)
    raise typer.Exit(EXIT_VIOLATION)


def _child_environment(job: JobDeclaration, decision: GateDecision) -> dict[str, str]:
    """The job's environment: the caller's, plus the job and permit the agent attributes the
    job's processes to (a permit inherited from the caller is not the gate's to vouch for)."""
    environment = {**os.environ, "BRAKEPEDAL_JOB": str(job.job)}
    environment.pop("BRAKEPEDAL_PERMIT", None)
    if decision.permit is not None:
        environment["BRAKEPEDAL_PERMIT"] = str(decision.permit)
    return environment


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
    handins: Annotated[
        Path | None,
        typer.Option(
            envvar="BRAKEPEDAL_HANDINS",
            help="The node's hand-in store: record refused, started, signalled and exited "
            "there for the agent's usage reports.",
        ),
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
    log = _Events(events, handins, job)
    now = datetime.now(UTC)
    orders, permits, status = governance.state(now)
    _record_dropped(governance, log)
    decision = decide(job, at=now, orders=orders, permits=permits)
    if not decision.allowed:
        if orders is None:
            decision = GateDecision(False, decision.reason, f"{decision.message} ({status})")
        _refuse(decision, log)
    environment = _child_environment(job, decision)
    try:
        process = subprocess.Popen(command, env=environment)  # noqa: S603 (the operator's own job)
    except OSError as error:
        raise InputError("gate.command_failed", f"cannot start {command[0]!r}: {error}") from error
    log.record(
        "started",
        order=decision.order,
        reason=decision.reason,
        permit=decision.permit,
        pid=process.pid,
        command=command,
    )
    stop = _watch(process, job, governance, log, poll_seconds, kill_after)
    code = process.returncode
    log.record(
        "exited",
        order=None if stop is None else stop.order,
        returncode=code,
        stopped_by_gate=stop is not None,
    )
    if stop is not None:
        console.print("[bold red]stopped[/]: a pause order came into force while the job ran")
        raise typer.Exit(EXIT_VIOLATION)
    raise typer.Exit(code if code >= 0 else 128 - code)
