"""``brakepedal gov propose``: unsigned proposals for orders, lifts, permits and policies."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from brakepedal.cli.files import read_input
from brakepedal.cli.gov_files import read_repository, save_proposal
from brakepedal.cli.output import reports_errors
from brakepedal.governance import documents as docs
from brakepedal.governance.repository import propose_document, trusted_agreement
from brakepedal.governance.rules import check_sunset
from brakepedal.governance.view import policy_file_path
from brakepedal.model.types import (
    DeviceId,
    EntityId,
    Flop,
    LineageId,
    OrderId,
    PermitId,
    PolicyId,
    RunId,
    parse_utc_timestamp,
)

__all__ = ["propose_app"]

propose_app = typer.Typer(help="Propose a document (unsigned).", no_args_is_help=True)

RepoOption = Annotated[Path, typer.Option("--repo", help="The governance repository directory.")]
NameOption = Annotated[str, typer.Option("--name", help="The proposal's name.")]
_MAX_FILE = 8_000_000


def _propose(repo: Path, name: str, document: Any, expires: str | None, description: str) -> None:
    files = read_repository(repo)
    until = parse_utc_timestamp(expires) if expires else trusted_agreement(files).expires
    proposal = propose_document(
        files,
        name,
        document.target_path,
        document.to_bytes(),
        expires=until,
        description=description,
    )
    save_proposal(repo, proposal, new=True)


@propose_app.command("order")
@reports_errors
def propose_order(
    repo: RepoOption,
    name: NameOption,
    order_id: Annotated[str, typer.Option("--id", help="Order id.")],
    threshold: Annotated[str, typer.Option(help="Scope: lineages above this many FLOP.")],
    jurisdiction: Annotated[list[str], typer.Option(help="Jurisdictions (repeatable).")],
    effective_from: Annotated[str, typer.Option("--from", help="In force from (UTC).")],
    sunset: Annotated[str, typer.Option(help="Mandatory sunset (UTC).")],
    reason: Annotated[str, typer.Option(help="Why.")],
    grace_seconds: Annotated[int, typer.Option(help="Grace for running jobs.")] = 0,
    renews: Annotated[str | None, typer.Option(help="The order this renews.")] = None,
    expires: Annotated[str | None, typer.Option(help="Metadata expiry.")] = None,
) -> None:
    """Propose a pause order (needs the order quorum)."""
    order = docs.PauseOrder(
        order_id=OrderId(order_id),
        threshold_flop=Flop.parse_human(threshold),
        jurisdictions=frozenset(jurisdiction),
        effective_from=parse_utc_timestamp(effective_from),
        sunset=parse_utc_timestamp(sunset),
        grace_seconds=grace_seconds,
        reason=reason,
        renews=None if renews is None else OrderId(renews),
    )
    check_sunset(order, max_sunset=trusted_agreement(read_repository(repo)).max_sunset)
    _propose(repo, name, order, expires, f"pause order {order_id}")


@propose_app.command("lift")
@reports_errors
def propose_lift(
    repo: RepoOption,
    name: NameOption,
    lift_id: Annotated[str, typer.Option("--id", help="Lift order id.")],
    lifts: Annotated[str, typer.Option(help="The pause order it lifts.")],
    effective_from: Annotated[str, typer.Option("--from", help="Effective from (UTC).")],
    reason: Annotated[str, typer.Option(help="Why.")],
    expires: Annotated[str | None, typer.Option(help="Metadata expiry.")] = None,
) -> None:
    """Propose lifting a pause order (needs the order quorum)."""
    lift = docs.LiftOrder(
        lift_id=OrderId(lift_id),
        lifts=OrderId(lifts),
        effective_from=parse_utc_timestamp(effective_from),
        reason=reason,
    )
    _propose(repo, name, lift, expires, f"lift of {lifts}")


@propose_app.command("permit")
@reports_errors
def propose_permit(
    repo: RepoOption,
    name: NameOption,
    permit_id: Annotated[str, typer.Option("--id", help="Permit id.")],
    serial: Annotated[int, typer.Option(help="Monotonic permit serial.")],
    owner_group: Annotated[str, typer.Option(help="The ownership group permitted.")],
    budget: Annotated[str, typer.Option(help="FLOP budget.")],
    valid_from: Annotated[str, typer.Option("--from", help="Valid from (UTC).")],
    valid_until: Annotated[str, typer.Option("--until", help="Valid until (UTC).")],
    lineage: Annotated[str | None, typer.Option(help="Lineage permitted.")] = None,
    run: Annotated[str | None, typer.Option(help="Run permitted.")] = None,
    device_count: Annotated[int | None, typer.Option(help="Most devices.")] = None,
    device: Annotated[list[str] | None, typer.Option(help="Permitted device (repeatable).")] = None,
    condition: Annotated[list[str] | None, typer.Option(help="A condition (repeatable).")] = None,
    under_order: Annotated[
        str | None, typer.Option(help="Pause order whose quorum it needs.")
    ] = None,
    expires: Annotated[str | None, typer.Option(help="Metadata expiry.")] = None,
) -> None:
    """Propose a training permit (the permit authority, or the order quorum under a pause)."""
    permit = docs.TrainingPermit(
        permit_id=PermitId(permit_id),
        serial=serial,
        owner_group=EntityId(owner_group),
        flop_budget=Flop.parse_human(budget),
        valid_from=parse_utc_timestamp(valid_from),
        valid_until=parse_utc_timestamp(valid_until),
        lineage=None if lineage is None else LineageId(lineage),
        run=None if run is None else RunId(run),
        device_count=device_count,
        devices=None if not device else frozenset(DeviceId(d) for d in device),
        conditions=tuple(condition or ()),
        under_order=None if under_order is None else OrderId(under_order),
    )
    _propose(repo, name, permit, expires, f"permit {permit_id}")


@propose_app.command("policy")
@reports_errors
def propose_policy(
    repo: RepoOption,
    name: NameOption,
    policy_file: Annotated[Path, typer.Option("--file", help="The policy file (.toml or .yaml).")],
    expires: Annotated[str | None, typer.Option(help="Metadata expiry.")] = None,
) -> None:
    """Propose a policy version (needs the policy quorum): the file and a record naming it."""
    from brakepedal.policy.load import parse_policy  # noqa: PLC0415 (pydantic: start-up time)

    data = read_input(policy_file, what="policy", max_bytes=_MAX_FILE)
    policy = parse_policy(data, name=policy_file.name)
    media: Literal["application/toml", "application/yaml"] = (
        "application/toml" if policy_file.suffix == ".toml" else "application/yaml"
    )
    record = docs.PolicyVersion(
        policy_id=PolicyId(policy.id),
        version=policy.version,
        media_type=media,
        content_sha256=hashlib.sha256(data).hexdigest(),
        title=policy.title,
    )
    files = read_repository(repo)
    until = parse_utc_timestamp(expires) if expires else trusted_agreement(files).expires
    proposal = propose_document(
        files,
        name,
        record.target_path,
        record.to_bytes(),
        expires=until,
        description=f"policy {policy.id} version {policy.version}",
        attachments={policy_file_path(record): data},
    )
    save_proposal(repo, proposal, new=True)
