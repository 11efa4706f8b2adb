"""``brakepedal policy``: check, explain and list policies; evaluate one over usage.

A policy is named either by preset (``eu-ai-act``) or by a file path ending in ``.toml``,
``.yaml`` or ``.yml``. ``check`` validates it and, given ``--usage``, evaluates it over the
usage document's ledger: obligations and violations, each with the rule and citation it comes
from. Exit status 5 means the evaluation found a binding violation.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from brakepedal.cli.files import read_input
from brakepedal.cli.output import EXIT_VIOLATION, reports_errors
from brakepedal.errors import InputError
from brakepedal.model.limits import Limits
from brakepedal.model.types import SiteId, format_utc, parse_utc_timestamp

if TYPE_CHECKING:
    from brakepedal.accounting.ledger import Ledger
    from brakepedal.policy.findings import Evaluation, Obligation, Violation
    from brakepedal.policy.model import Policy

__all__ = ["app", "load_policy"]

app = typer.Typer(help="Policies as code: check, explain, evaluate.", no_args_is_help=True)
console = Console(highlight=False, soft_wrap=True)

_MAX_POLICY_BYTES = 1_000_000
_MAX_USAGE_BYTES = 256 * 1024 * 1024
_FILE_SUFFIXES = (".toml", ".yaml", ".yml")

PolicyArgument = Annotated[
    str, typer.Argument(help="A preset name (see `policy presets`) or a .toml/.yaml file.")
]


def load_policy(source: str) -> Policy:
    """The policy named by ``source``: a file if it ends in .toml/.yaml/.yml, else a preset."""
    from brakepedal.policy.load import load_preset, parse_policy  # noqa: PLC0415 (start-up time)

    if source.endswith(_FILE_SUFFIXES) or source == "-":
        path = Path(source)
        data = read_input(path, what="policy", max_bytes=_MAX_POLICY_BYTES)
        return parse_policy(data, name=path.name)
    return load_preset(source)


@app.command()
@reports_errors
def presets() -> None:
    """List the shipped presets."""
    from brakepedal.policy.load import load_preset, preset_names  # noqa: PLC0415

    table = Table(title="Policy presets")
    for column in ("name", "title", "status", "jurisdiction", "rules"):
        table.add_column(column)
    for name in preset_names():
        policy = load_preset(name)
        table.add_row(
            name, policy.title, policy.status, policy.jurisdiction, str(len(policy.rules))
        )
    console.print(table)


@app.command(name="explain")
@reports_errors
def explain_command(policy: PolicyArgument) -> None:
    """Explain a policy in plain language, rule by rule, with citations."""
    from brakepedal.policy.explain import explain  # noqa: PLC0415 (keeps the CLI quick to start)

    console.print(explain(load_policy(policy)), markup=False)


def _usage_ledger(policy: Policy, usage: Path) -> Ledger:
    from brakepedal.accounting.catalogue import default_catalogue  # noqa: PLC0415
    from brakepedal.accounting.document import build_ledger, parse_usage_document  # noqa: PLC0415

    data = read_input(usage, what="usage document", max_bytes=_MAX_USAGE_BYTES)
    document = parse_usage_document(data, limits=Limits(max_json_bytes=_MAX_USAGE_BYTES))
    rules = policy.accounting
    return build_ledger(
        document,
        catalogue=default_catalogue(),
        rule=rules.bound_rule(),
        control=rules.control_rule(),
        exempt_workloads=rules.exempt(),
    )


def _notified(pairs: list[str]) -> set[tuple[str, str]]:
    notified = set()
    for pair in pairs:
        rule, separator, subject = pair.partition(":")
        if not separator or not rule or not subject:
            raise InputError("cli.notified_invalid", f"--notified {pair!r}: expected RULE:SUBJECT")
        notified.add((rule, subject))
    return notified


def _print_finding(finding: Obligation | Violation) -> None:
    from brakepedal.policy.findings import Obligation, Violation  # noqa: PLC0415

    if isinstance(finding, Violation):
        mark, what = "[bold red]✗[/]", str(finding.reason)
    else:
        mark, what = "[yellow]![/]", finding.rule_kind
    console.print(
        f"{mark} [bold]{finding.rule_id}[/] ({what}) {finding.subject_kind} "
        f"[bold]{finding.subject_id}[/]: {finding.measured} against {finding.threshold}"
    )
    if isinstance(finding, Obligation) and finding.due is not None:
        done = " (done)" if finding.satisfied else ""
        console.print(f"    due {format_utc(finding.due)}{done}")
    if not finding.binding:
        console.print("    informational: the policy is not in force")
    console.print(f"    {finding.explanation}", markup=False)
    console.print(f"    source: {finding.citation}", markup=False)


def _print_evaluation(evaluation: Evaluation) -> None:
    for title, findings in (
        ("Obligations", evaluation.obligations),
        ("Violations", evaluation.violations),
    ):
        console.print(f"[bold]{title}: {len(findings)}[/]")
        for finding in findings:
            _print_finding(finding)
    name = f"{evaluation.policy_id} v{evaluation.policy_version}"
    verdict = "no binding violation" if evaluation.compliant else "[bold red]VIOLATION[/]"
    console.print(f"{name} at {format_utc(evaluation.at)}: {verdict}")


def _finding_json(finding: Obligation | Violation) -> dict[str, Any]:
    from brakepedal.policy.findings import Violation  # noqa: PLC0415

    record: dict[str, Any] = {
        "rule": finding.rule_id,
        "kind": finding.rule_kind,
        "citation": finding.citation,
        "subject": {"kind": finding.subject_kind, "id": finding.subject_id},
        "measured": str(finding.measured),
        "threshold": str(finding.threshold),
        "binding": finding.binding,
        "explanation": finding.explanation,
    }
    if isinstance(finding, Violation):
        record["reason"] = finding.reason
        record["order"] = finding.order_id
        record["permit"] = finding.permit_id
    else:
        record["due"] = None if finding.due is None else format_utc(finding.due)
        record["satisfied"] = finding.satisfied
    return record


@app.command()
@reports_errors
def check(
    policy: PolicyArgument,
    usage: Annotated[
        Path | None, typer.Option(help="Evaluate over this usage document (JSON).")
    ] = None,
    at: Annotated[
        str | None, typer.Option(help="Evaluate as of this UTC time (default now).")
    ] = None,
    notified: Annotated[
        list[str] | None, typer.Option(help="RULE:SUBJECT already notified (repeatable).")
    ] = None,
    monitored_site: Annotated[
        list[str] | None, typer.Option(help="A monitored site (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Validate a policy; with --usage, evaluate it and exit 5 on a binding violation."""
    loaded = load_policy(policy)
    if usage is None:
        console.print(
            f"{loaded.id} v{loaded.version} ({loaded.status}): {len(loaded.rules)} rules, "
            f"{len(loaded.sources)} sources: valid"
        )
        return
    moment = datetime.now(UTC) if at is None else parse_utc_timestamp(at)
    from brakepedal.policy.evaluate import evaluate  # noqa: PLC0415

    evaluation = evaluate(
        loaded,
        _usage_ledger(loaded, usage),
        at=moment,
        notified=_notified(notified or []),
        monitored_sites=[SiteId(site) for site in monitored_site or []],
    )
    if as_json:
        document = {
            "policy": evaluation.policy_id,
            "version": evaluation.policy_version,
            "at": format_utc(evaluation.at),
            "compliant": evaluation.compliant,
            "obligations": [_finding_json(o) for o in evaluation.obligations],
            "violations": [_finding_json(v) for v in evaluation.violations],
        }
        console.print(json.dumps(document, indent=2, ensure_ascii=False), markup=False)
    else:
        _print_evaluation(evaluation)
    if not evaluation.compliant:
        raise typer.Exit(EXIT_VIOLATION)
