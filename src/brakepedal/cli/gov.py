"""``brakepedal gov``: propose, sign, check and publish governance documents; see the view.

A governance repository is a directory: ``metadata/`` (TUF metadata, every version kept),
``targets/`` (the documents), ``proposals/`` (unpublished proposals) and ``log-entries.json``
(where each published file sits in the transparency log named by ``--db``/``BRAKEPEDAL_DB``).
``docs/governance.md`` walks through a whole ceremony with these commands.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from securesystemslib.signer import Signer

from brakepedal.cli.agreement_file import load_agreement
from brakepedal.cli.files import read_input, write_new_file
from brakepedal.cli.gov_files import (
    load_proposal,
    moment_of,
    proposal_path,
    read_repository,
    save_proposal,
    write_files,
)
from brakepedal.cli.gov_propose import propose_app
from brakepedal.cli.keys import load_signer
from brakepedal.cli.output import reports_errors
from brakepedal.crypto.keys import public_key_from_json
from brakepedal.errors import InputError
from brakepedal.governance.agreement import DELEGATED_ROLES, build_root, build_targets
from brakepedal.governance.repository import (
    Proposal,
    proposal_status,
    propose_metadata,
    propose_role,
    publish,
    refresh_timestamp,
    sign_proposal,
)
from brakepedal.governance.view import GovernanceView, LogEvidence
from brakepedal.model.types import (
    format_utc,
)
from brakepedal.tlog import merkle
from brakepedal.tlog.checkpoint import Checkpoint
from brakepedal.tlog.log import TransparencyLog
from brakepedal.tlog.note import Note
from brakepedal.tlog.proof import InclusionProof

__all__ = ["app"]

app = typer.Typer(help="Quorum-signed governance documents on TUF.", no_args_is_help=True)
app.add_typer(propose_app, name="propose")
console = Console(highlight=False, soft_wrap=True)

RepoOption = Annotated[Path, typer.Option("--repo", help="The governance repository directory.")]
NameOption = Annotated[str, typer.Option("--name", help="The proposal's name.")]
DbOption = Annotated[
    str, typer.Option("--db", envvar="BRAKEPEDAL_DB", help="The transparency log's database.")
]
AtOption = Annotated[str | None, typer.Option("--at", help="UTC time (default now).")]

_MAX_FILE = 8_000_000
_LOG_ENTRIES = "log-entries.json"


@app.command()
@reports_errors
def init(
    repo: RepoOption,
    agreement: Annotated[Path, typer.Option(help="The agreement file (TOML).")],
) -> None:
    """Propose root v1, targets v1 and the empty roles of a new agreement.

    Publish them in that order: root-1 and targets-1 (policy quorum), then policies-1 (policy
    quorum), orders-1 (order quorum) and permits-1 (permit authority).
    """
    loaded = load_agreement(agreement)
    if (repo / "metadata").exists():
        raise InputError("cli.repository_exists", f"{repo} already holds a repository")
    save_proposal(
        repo, propose_metadata("root-1", build_root(loaded), description="agreement root"), new=True
    )
    save_proposal(
        repo,
        propose_metadata("targets-1", build_targets(loaded), description="delegations"),
        new=True,
    )
    for role in DELEGATED_ROLES:
        proposal = propose_role(f"{role}-1", role, expires=loaded.expires)
        save_proposal(repo, replace(proposal, description=f"the empty {role} role"), new=True)


def _signer(
    key: Path | None, signer_uri: str | None, public_key: Path | None, password_env: str | None
) -> Signer:
    if (key is None) == (signer_uri is None):
        raise InputError("cli.signer_ambiguous", "give --key, or --signer-uri with --public-key")
    if key is not None:
        return load_signer(key, password_env)
    if public_key is None:
        raise InputError("cli.signer_ambiguous", "--signer-uri needs --public-key")
    public = public_key_from_json(read_input(public_key, what="public key", max_bytes=65536))
    try:
        return Signer.from_priv_key_uri(str(signer_uri), public)
    except (ValueError, OSError) as e:
        raise InputError("cli.signer_unavailable", f"--signer-uri {signer_uri}: {e}") from e


@app.command()
@reports_errors
def sign(
    repo: RepoOption,
    name: Annotated[str, typer.Option("--proposal", help="The proposal to sign.")],
    key: Annotated[Path | None, typer.Option(help="The party's private key file.")] = None,
    signer_uri: Annotated[
        str | None,
        typer.Option(help="A securesystemslib signer URI instead (hsm:, gcpkms:, awskms:...)."),
    ] = None,
    public_key: Annotated[Path | None, typer.Option(help="Public key for --signer-uri.")] = None,
    password_env: Annotated[
        str | None, typer.Option(help="Env variable with the passphrase.")
    ] = None,
) -> None:
    """Add a party's signature to a proposal (a key file, or any HSM/KMS signer by URI)."""
    proposal = sign_proposal(
        load_proposal(repo, name), _signer(key, signer_uri, public_key, password_env)
    )
    save_proposal(repo, proposal, new=False)
    _print_status(read_repository(repo), proposal)


def _print_status(files: dict[str, bytes], proposal: Proposal) -> dict[str, Any]:
    status = proposal_status(files, proposal)
    state = "meets its quorum" if status.verified else f"needs {status.missing} more"
    console.print(
        f"{proposal.name} ({proposal.role} v{status.version}): {len(status.signed)} of "
        f"{status.threshold} signed, {state}"
    )
    console.print(f"  signed: {', '.join(status.signed) or 'nobody'}")
    console.print(f"  not signed: {', '.join(status.unsigned) or 'nobody'}")
    console.print(f"  would: {proposal.description or 'publish ' + proposal.role}")
    return {
        "proposal": proposal.name,
        "role": status.role,
        "version": status.version,
        "threshold": status.threshold,
        "signed": list(status.signed),
        "unsigned": list(status.unsigned),
        "missing": status.missing,
        "verified": status.verified,
    }


@app.command()
@reports_errors
def status(
    repo: RepoOption,
    name: Annotated[str, typer.Option("--proposal", help="The proposal.")],
) -> None:
    """Who signed a proposal, how many are missing, and what it would do."""
    _print_status(read_repository(repo), load_proposal(repo, name))


def _append_to_log(repo: Path, db: str, files: dict[str, bytes]) -> None:
    entries_path = repo / _LOG_ENTRIES
    entries = json.loads(entries_path.read_bytes()) if entries_path.exists() else {}
    names = [n for n in sorted(files) if n != "metadata/timestamp.json"]
    from brakepedal.tlog.sqlstore import SqlLogStore, database_url  # noqa: PLC0415 - slow import

    store = SqlLogStore.open(database_url(db))
    try:
        indexes = TransparencyLog(store).append([files[n] for n in names])
    finally:
        store.close()
    entries |= dict(zip(names, indexes, strict=True))
    write_files(
        repo, {_LOG_ENTRIES: json.dumps(entries, indent=1, sort_keys=True).encode() + b"\n"}
    )
    console.print(f"appended {len(names)} files to the log (indexes {indexes[0]}..{indexes[-1]})")


@app.command(name="publish")
@reports_errors
def publish_command(
    repo: RepoOption,
    name: Annotated[str, typer.Option("--proposal", help="The proposal to publish.")],
    operator_key: Annotated[Path, typer.Option(help="The repository operator's key.")],
    db: DbOption,
    at: AtOption = None,
) -> None:
    """Publish a proposal that meets its quorum, and append every new file to the log."""
    files = read_repository(repo)
    proposal = load_proposal(repo, name)
    new = publish(files, proposal, operator=load_signer(operator_key), at=moment_of(at))
    write_files(repo, new)
    _append_to_log(repo, db, new)
    proposal_path(repo, name).unlink()
    console.print(f"published {proposal.name}: {', '.join(sorted(new))}")


@app.command()
@reports_errors
def timestamp(
    repo: RepoOption,
    operator_key: Annotated[Path, typer.Option(help="The repository operator's key.")],
    db: DbOption,
    at: AtOption = None,
) -> None:
    """Sign a fresh timestamp (the operator's heartbeat against freeze)."""
    new = refresh_timestamp(
        read_repository(repo), operator=load_signer(operator_key), at=moment_of(at)
    )
    write_files(repo, new)
    _append_to_log(repo, db, new)


@app.command()
@reports_errors
def evidence(
    repo: RepoOption,
    checkpoint: Annotated[Path, typer.Option(help="A witnessed checkpoint of the log.")],
    out: Annotated[Path, typer.Option(help="Where to write the evidence.")],
    db: DbOption,
) -> None:
    """Inclusion proofs for every published file under a (witnessed) checkpoint."""
    note_bytes = read_input(checkpoint, what="checkpoint", max_bytes=1_000_000)
    size = Checkpoint.from_body(Note.from_bytes(note_bytes).text).size
    entries = json.loads((repo / _LOG_ENTRIES).read_bytes())
    from brakepedal.tlog.sqlstore import SqlLogStore, database_url  # noqa: PLC0415 - slow import

    store = SqlLogStore.open(database_url(db))
    proofs = {}
    try:
        log = TransparencyLog(store)
        for name, index in sorted(entries.items()):
            if index < size:
                hashes = log.inclusion_proof(index, size)
                proofs[name] = InclusionProof(
                    index, size, merkle.leaf_hash(log.entry(index)), tuple(hashes)
                )
    finally:
        store.close()
    write_new_file(out, LogEvidence(note_bytes, proofs).to_bytes(), force=True)
    console.print(f"wrote {out}: {len(proofs)} inclusion proofs at size {size}")


def _read_client_state(path: Path | None) -> dict[str, Any]:
    if path is None or not path.exists():
        return {}
    try:
        record = json.loads(read_input(path, what="client state", max_bytes=_MAX_FILE))
        versions = {str(k): int(v) for k, v in record["versions"].items()}
        return {"timestamp": str(record["timestamp"]).encode(), "versions": versions}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError("cli.client_state_invalid", f"client state {path}: {e!r}") from e


@app.command()
@reports_errors
def view(
    repo: RepoOption,
    trusted_root: Annotated[Path, typer.Option(help="The root this client trusts.")],
    evidence_file: Annotated[Path, typer.Option("--evidence", help="Log evidence file.")],
    at: AtOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    state: Annotated[
        Path | None,
        typer.Option(help="This client's memory: refuses rollback below what it saw before."),
    ] = None,
) -> None:
    """Verify the repository and print the orders in force and the permits valid."""
    moment = moment_of(at)
    previous = _read_client_state(state)
    verified = GovernanceView.load(
        trusted_root=read_input(trusted_root, what="trusted root", max_bytes=_MAX_FILE),
        repository=read_repository(repo),
        evidence=LogEvidence.from_bytes(
            read_input(evidence_file, what="evidence", max_bytes=_MAX_FILE)
        ),
        at=moment,
        previous_timestamp=previous.get("timestamp"),
        previous_versions=previous.get("versions"),
    )
    if state is not None:
        record = {"timestamp": verified.timestamp.decode(), "versions": dict(verified.versions)}
        write_files(state.parent, {state.name: json.dumps(record, sort_keys=True).encode()})
    orders = verified.orders_in_force(moment)
    permits = verified.permits_valid(moment)
    if as_json:
        document = {
            "at": format_utc(moment),
            "orders_in_force": [
                {
                    "order": o.order_id,
                    "threshold_flop": o.threshold_flop.to_json(),
                    "sunset": format_utc(o.sunset),
                }
                for o in orders
            ],
            "permits_valid": [
                {
                    "permit": p.permit_id,
                    "owner_group": p.owner_group,
                    "under_order_quorum": p.under_order_quorum,
                    "under_order": p.under_order,
                }
                for p in permits
            ],
        }
        console.print(json.dumps(document, indent=2), markup=False)
        return
    console.print(
        f"verified at {format_utc(moment)}: {len(verified.used_files)} metadata files in the log"
    )
    for order in orders:
        until = format_utc(order.sunset)
        console.print(
            f"  in force: order {order.order_id} above {order.threshold_flop} until {until}"
        )
    for permit in permits:
        console.print(f"  valid: permit {permit.permit_id} for {permit.owner_group}")
    if not orders:
        console.print("  no order in force")
