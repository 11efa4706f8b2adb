"""``brakepedal audit``: the independent auditor.

``audit run`` audits a registry (``--registry URL --token T``) or an exported bundle
(``--bundle DIR``) into a state directory it keeps between runs, trusting only the keys it is
given: the log's (``--log-key``), the witnesses' (``--witness``, ``--witness-threshold``) and,
to verify governance and evaluate the policy, the agreement's root metadata
(``--governance-root``). It prints the findings, writes them signed (``--key``) and as JSON
(``--out``), and exits 0 when no finding is high or critical, 5 otherwise (as ``policy check``
does for a binding violation; 2 to 4 are errors).

``audit challenge`` asks devices to reveal the minute records of a sample of reports, drawn
from the public seed of the newest checkpoint; the next ``audit run`` checks the answers.
``audit report`` writes the last run's readable report (HTML with plots, and JSON).
``audit export`` writes a registry's evidence into a bundle directory for offline audits.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from brakepedal.audit.findings import Severity
from brakepedal.cli.files import read_input, read_roots, vkey_text
from brakepedal.cli.keys import load_signer
from brakepedal.cli.output import EXIT_VIOLATION, reports_errors
from brakepedal.errors import InputError

if TYPE_CHECKING:
    from brakepedal.accounting.document import UsageDocument
    from brakepedal.audit.auditor import AuditResult
    from brakepedal.audit.source import EvidenceSource
    from brakepedal.crypto.keys import Signer
    from brakepedal.policy.model import Policy

__all__ = ["app"]

app = typer.Typer(
    help="Audit a registry independently: re-verify, recompute, detect, report.",
    no_args_is_help=True,
)

_MAX_FILE = 16 * 1024 * 1024
_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}

Registry = Annotated[str | None, typer.Option("--registry", help="registry base URL")]
Token = Annotated[
    str | None,
    typer.Option("--token", envvar="BRAKEPEDAL_AUDIT_TOKEN", help="auditor credential"),
]
Bundle = Annotated[Path | None, typer.Option("--bundle", help="an exported bundle directory")]


@app.command("run")
@reports_errors
def run_command(
    state: Annotated[Path, typer.Option("--state", help="the auditor's state directory")],
    origin: Annotated[str, typer.Option("--origin", help="the log's origin line")],
    log_key: Annotated[str, typer.Option("--log-key", help="the log's vkey (or a file)")],
    registry: Registry = None,
    token: Token = None,
    bundle: Bundle = None,
    witness: Annotated[
        list[str] | None, typer.Option("--witness", help="a witness vkey (repeatable)")
    ] = None,
    witness_threshold: Annotated[int, typer.Option("--witness-threshold", min=0)] = 1,
    governance_root: Annotated[
        Path | None, typer.Option("--governance-root", help="the agreement's root.json")
    ] = None,
    policy: Annotated[
        str | None, typer.Option("--policy", help="a policy file or preset (default: published)")
    ] = None,
    declarations: Annotated[
        Path | None,
        typer.Option("--declarations", help="runs and holdings (a usage document)"),
    ] = None,
    manufacturer_root: Annotated[
        list[Path] | None,
        typer.Option(
            "--manufacturer-root",
            help="a manufacturer root CA (PEM) the auditor trusts: every logged endorsement "
            "chain is verified again (repeatable; none: chains are not checked)",
        ),
    ] = None,
    key: Annotated[Path | None, typer.Option("--key", help="the auditor's signing key")] = None,
    name: Annotated[str, typer.Option("--name", help="the auditor's name")] = "auditor",
    out: Annotated[
        Path | None, typer.Option("--out", help="write findings.json and findings.dsse.json here")
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="audit as of this UTC time (default: now)")
    ] = None,
    publish: Annotated[
        bool, typer.Option("--publish", help="append the signed findings to the registry's log")
    ] = False,
) -> None:
    """Audit the log once more: checkpoints, new entries, detectors, accounting, policy."""
    from brakepedal.audit.auditor import AuditConfig, Auditor  # noqa: PLC0415
    from brakepedal.audit.source import RegistrySource  # noqa: PLC0415
    from brakepedal.audit.state import AuditState  # noqa: PLC0415
    from brakepedal.model.types import parse_utc_timestamp  # noqa: PLC0415
    from brakepedal.tlog.cosignature import CosignatureVerifier  # noqa: PLC0415
    from brakepedal.tlog.note import NoteVerifier  # noqa: PLC0415

    witnesses = tuple(CosignatureVerifier.from_vkey(vkey_text(w)) for w in witness or [])
    config = AuditConfig(
        origin=origin,
        log_key=NoteVerifier.from_vkey(vkey_text(log_key)),
        witnesses=witnesses,
        witness_threshold=_threshold(witness_threshold, len(witnesses)),
        name=name,
        signer=None if key is None else load_signer(key),
        trusted_root=None
        if governance_root is None
        else read_input(governance_root, what="root metadata", max_bytes=_MAX_FILE),
        policy=None if policy is None else _policy(policy),
        declarations=None if declarations is None else _declarations(declarations),
        manufacturer_roots=read_roots(manufacturer_root or []),
    )
    if publish and (key is None or registry is None):
        raise InputError("audit.publish_invalid", "--publish needs --key and --registry")
    source = _source(registry, token, bundle)
    console = Console(stderr=True)
    moment = datetime.now(UTC) if at is None else parse_utc_timestamp(at)
    audit_state = AuditState(state)
    closing = getattr(source, "close", lambda: None)
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            console=console,
            transient=True,
        ) as progress:
            tasks: dict[str, TaskID] = {}

            def advance(what: str, done: int, total: int) -> None:
                if what not in tasks:
                    tasks[what] = progress.add_task(what, total=total)
                progress.update(tasks[what], completed=done, total=total)

            result = Auditor(config, audit_state).run(source, at=moment, progress=advance)
    except BaseException:
        closing()
        raise
    finally:
        audit_state.close()
    try:
        _print(result, Console())
        _write(result, out)
        if publish and config.signer is not None and result.new_findings:
            assert isinstance(source, RegistrySource)
            published = source.publish_findings(_new_set(result, config.name, config.signer))
            console.print(
                f"{len(result.new_findings)} new findings published at log index {published}"
            )
    finally:
        closing()
    worst = result.worst()
    if worst is not None and worst.rank >= Severity.HIGH.rank:
        raise typer.Exit(EXIT_VIOLATION)


@app.command("challenge")
@reports_errors
def challenge_command(
    state: Annotated[Path, typer.Option("--state", help="the auditor's state directory")],
    registry: Annotated[str, typer.Option("--registry", help="registry base URL")],
    budget: Annotated[int, typer.Option("--budget", min=1, help="reports to challenge")],
    token: Token = None,
    fraction: Annotated[
        float, typer.Option("--fraction", min=0.0, max=1.0, help="assumed share of false reports")
    ] = 0.01,
    at: Annotated[str | None, typer.Option("--at", help="UTC time of the request")] = None,
) -> None:
    """Ask devices to reveal the minute records of a sample of reports (checked by `run`)."""
    from brakepedal.audit.auditor import open_challenges  # noqa: PLC0415
    from brakepedal.audit.sampling import samples_needed  # noqa: PLC0415
    from brakepedal.audit.source import RegistrySource  # noqa: PLC0415
    from brakepedal.audit.state import AuditState  # noqa: PLC0415
    from brakepedal.model.types import parse_utc_timestamp  # noqa: PLC0415

    if not (state / "audit.sqlite3").is_file():
        raise InputError("audit.state_missing", f"{state}: no audit state; run `audit run` first")
    if token is None:
        raise InputError("audit.token_missing", "give --token (or BRAKEPEDAL_AUDIT_TOKEN)")
    moment = datetime.now(UTC) if at is None else parse_utc_timestamp(at)
    audit_state = AuditState(state)
    source = RegistrySource(registry, token)
    try:
        sample = open_challenges(audit_state, source, budget=budget, fraction=fraction, at=moment)
        opened = audit_state.challenges()[-sample.budget :] if sample.budget else []
    finally:
        source.close()
        audit_state.close()
    console = Console()
    console.print(sample.describe())
    if fraction > 0:
        console.print(
            f"for P(caught) >= 0.95 at that rate: {samples_needed(fraction, 0.95)} reports"
        )
    for challenge in opened:
        console.print(f"  challenge {challenge.id}: {challenge.device} report {challenge.sequence}")


@app.command("report")
@reports_errors
def report_command(
    state: Annotated[Path, typer.Option("--state", help="the auditor's state directory")],
    out: Annotated[Path, typer.Option("--out", help="where report.html and report.json go")],
) -> None:
    """Write the readable report (HTML with plots, and JSON) of the last audit run."""
    from brakepedal.audit.report import render_report  # noqa: PLC0415
    from brakepedal.audit.state import AuditState  # noqa: PLC0415

    if not (state / "audit.sqlite3").is_file():
        raise InputError("audit.state_missing", f"{state}: no audit state; run `audit run` first")
    audit_state = AuditState(state)
    try:
        path = render_report(audit_state, out)
    finally:
        audit_state.close()
    Console().print(f"report: {path}")


@app.command("export")
@reports_errors
def export_command(
    registry: Annotated[str, typer.Option("--registry", help="registry base URL")],
    out: Annotated[Path, typer.Option("--out", help="the bundle directory to write")],
    token: Token = None,
    days: Annotated[
        list[str] | None, typer.Option("--day", help="a UTC day whose aggregates to include")
    ] = None,
) -> None:
    """Write the registry's log, checkpoints, governance and aggregates into a bundle."""
    from datetime import date  # noqa: PLC0415

    from brakepedal.audit.source import RegistrySource, export_bundle  # noqa: PLC0415
    from brakepedal.tlog.checkpoint import Checkpoint  # noqa: PLC0415
    from brakepedal.tlog.note import Note  # noqa: PLC0415

    if token is None:
        raise InputError("audit.token_missing", "give --token (or BRAKEPEDAL_AUDIT_TOKEN)")
    source = RegistrySource(registry, token)
    try:
        note = source.checkpoint()
        size = Checkpoint.from_body(Note.from_bytes(note).text).size
        export_bundle(
            source,
            out,
            size=size,
            checkpoint=note,
            days=[date.fromisoformat(d) for d in days or []],
        )
    finally:
        source.close()
    Console().print(f"exported {size} entries to {out}")


def _write(result: AuditResult, out: Path | None) -> None:
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / "findings.json").write_text(
        json.dumps(
            {
                "origin": result.origin,
                "tree_size": result.tree_size,
                "root_hash": result.root_hash.hex(),
                "new_findings": list(result.new_findings),
                "findings": [f.to_json() for f in result.findings],
            },
            indent=1,
            sort_keys=True,
        )
    )
    if result.signed is not None:
        (out / "findings.dsse.json").write_bytes(result.signed)


def _new_set(result: AuditResult, name: str, signer: Signer) -> bytes:
    """The findings new since the last run, signed: what ``--publish`` appends (the log keeps
    every set, so the whole history is there without repeating it each run)."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from brakepedal.audit.findings import FindingSet  # noqa: PLC0415

    new = tuple(f for f in result.findings if f.id in set(result.new_findings))
    return FindingSet(
        name, datetime.now(UTC), result.origin, result.tree_size, result.root_hash, new
    ).sign(signer)


def _source(registry: str | None, token: str | None, bundle: Path | None) -> EvidenceSource:
    from brakepedal.audit.source import BundleSource, RegistrySource  # noqa: PLC0415

    if (registry is None) == (bundle is None):
        raise InputError("audit.source_invalid", "give exactly one of --registry and --bundle")
    if bundle is not None:
        return BundleSource(bundle)
    if token is None:
        raise InputError("audit.token_missing", "give --token (or BRAKEPEDAL_AUDIT_TOKEN)")
    assert registry is not None
    return RegistrySource(registry, token)


def _policy(source: str) -> Policy:
    from brakepedal.cli.policy import load_policy  # noqa: PLC0415

    return load_policy(source)


def _declarations(path: Path) -> UsageDocument:
    from brakepedal.accounting.document import parse_usage_document  # noqa: PLC0415
    from brakepedal.model.limits import Limits  # noqa: PLC0415

    data = read_input(path, what="declarations", max_bytes=_MAX_FILE)
    return parse_usage_document(data, limits=Limits(max_json_bytes=_MAX_FILE))


def _threshold(asked: int, witnesses: int) -> int:
    if not witnesses:
        return 0
    if not 1 <= asked <= witnesses:
        raise InputError(
            "audit.witness_threshold_invalid",
            f"--witness-threshold {asked} with {witnesses} --witness keys: need 1 to {witnesses}",
        )
    return asked


def _print(result: AuditResult, console: Console) -> None:
    from brakepedal.audit.findings import severities  # noqa: PLC0415

    console.print(
        f"[bold]{escape(result.origin)}[/]: tree size {result.tree_size}"
        f" (witnessed {result.witnessed_size if result.witnessed_size is not None else 'none'}),"
        f" {result.new_entries} new entries, {result.devices} devices, {result.reports} reports,"
        f" {result.days_compared} days of published figures compared"
    )
    if not result.findings:
        console.print("[green]no findings[/]")
        return
    table = Table("severity", "finding", "subject", "summary", "evidence", title="Findings")
    for finding in sorted(result.findings, key=lambda f: (-f.severity.rank, f.id)):
        new = " [bold]new[/]" if finding.id in result.new_findings else ""
        table.add_row(
            f"[{_STYLE[finding.severity.value]}]{finding.severity.value}[/]",
            escape(finding.id) + new,
            escape(finding.subject),  # names come from the registry: never markup
            escape(finding.summary),
            ", ".join(str(e.log_index) for e in finding.entries) or "-",
        )
    console.print(table)
    counts = severities(result.findings)
    console.print(", ".join(f"{n} {s}" for s, n in counts.items() if n))
