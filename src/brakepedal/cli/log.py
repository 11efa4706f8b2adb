"""``brakepedal log``: run and check a transparency log kept in SQLite or PostgreSQL.

``--db`` takes a file path (an embedded SQLite database) or a database URL
(``sqlite:///path``, ``postgresql://user@host/db``); ``BRAKEPEDAL_DB`` sets the default.
Proofs and checkpoints go to standard output (or ``--out``) so they can be handed to anyone
who verifies them offline with ``log verify``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from brakepedal.cli.files import read_input, vkey_text, write_new_file
from brakepedal.cli.keys import load_signer
from brakepedal.cli.output import reports_errors
from brakepedal.errors import InputError, TrustError
from brakepedal.model.limits import DEFAULT_LIMITS
from brakepedal.tlog import merkle
from brakepedal.tlog.checkpoint import SignedCheckpoint, open_checkpoint
from brakepedal.tlog.log import TransparencyLog
from brakepedal.tlog.note import NoteSigner, NoteVerifier
from brakepedal.tlog.proof import ConsistencyProof, InclusionProof, parse_proof

__all__ = ["app"]

app = typer.Typer(
    help="Append to, checkpoint, prove and verify a transparency log.", no_args_is_help=True
)
console = Console(highlight=False, soft_wrap=True)

DbOption = Annotated[
    str,
    typer.Option("--db", envvar="BRAKEPEDAL_DB", help="SQLite file path or database URL."),
]
OutOption = Annotated[
    Path | None, typer.Option("--out", help="Write the result to this file, not stdout.")
]
#: One ``append --lines`` batch; larger inputs are split by the caller into several batches.
_MAX_LINES_BYTES = 256 * 1024 * 1024


@contextlib.contextmanager
def _opened(db: str, *, create_origin: str | None = None) -> Iterator[TransparencyLog]:
    from brakepedal.tlog.sqlstore import SqlLogStore, database_url  # noqa: PLC0415 - slow import

    store = SqlLogStore.open(database_url(db), create_origin=create_origin)
    try:
        yield TransparencyLog(store)
    finally:
        store.close()


def _emit(data: bytes, out: Path | None) -> None:
    if out is None:
        typer.echo(data.decode("utf-8"), nl=False)
    else:
        write_new_file(out, data, force=True)
        console.print(f"wrote {out}", style="dim")


def _read_vkey(value: str) -> NoteVerifier:
    return NoteVerifier.from_vkey(vkey_text(value))


@app.command()
@reports_errors
def init(
    db: DbOption,
    origin: Annotated[str, typer.Option(help="The log's origin line, e.g. 'example.org/log'.")],
) -> None:
    """Create an empty log (refuses a database that already holds a log of another origin)."""
    with _opened(db, create_origin=origin) as log:
        console.print(f"log {log.origin!r} ready at {db} with {log.size()} entries")


@app.command()
@reports_errors
def append(
    db: DbOption,
    files: Annotated[
        list[Path] | None, typer.Argument(help="Files to append, one entry each.")
    ] = None,
    lines: Annotated[
        Path | None,
        typer.Option(
            help="Append each non-empty line ('\\n'-separated) of this file ('-' = stdin)."
        ),
    ] = None,
) -> None:
    """Append entries atomically: all of them or none; prints each entry's index."""
    entries = [
        read_input(path, what="entry", max_bytes=DEFAULT_LIMITS.max_entry_bytes)
        for path in files or []
    ]
    if lines is not None:
        text = read_input(lines, what="lines", max_bytes=_MAX_LINES_BYTES)
        # Split on "\n" only: every other byte, "\r" included, belongs to the entry.
        entries.extend(line for line in text.split(b"\n") if line)
    if not entries:
        raise InputError("log.nothing_to_append", "give entry files or --lines FILE")
    with _opened(db) as log:
        indices = log.append(entries)
    for index in indices:
        typer.echo(index)


@app.command()
@reports_errors
def checkpoint(
    db: DbOption,
    key: Annotated[Path, typer.Option(help="The log's private key file (from keys generate).")],
    name: Annotated[
        str | None, typer.Option(help="Key name in the signature line; default: the origin.")
    ] = None,
    password_env: Annotated[str | None, typer.Option()] = None,
    out: OutOption = None,
) -> None:
    """Sign a checkpoint of everything durably stored and keep it in the log."""
    signer = load_signer(key, password_env)
    with _opened(db) as log:
        note = log.checkpoint(log.origin, NoteSigner(name or log.origin, signer))
    _emit(note, out)


@app.command("prove-inclusion")
@reports_errors
def prove_inclusion(
    db: DbOption,
    index: Annotated[int, typer.Option(help="Index of the entry.")],
    size: Annotated[
        int | None, typer.Option(help="Tree size; default: the latest checkpoint's.")
    ] = None,
    out: OutOption = None,
) -> None:
    """Print an inclusion proof for one entry against a tree size."""
    with _opened(db) as log:
        tree_size = _default_size(log, size)
        proof = InclusionProof(
            log_index=index,
            tree_size=tree_size,
            leaf_hash=merkle.leaf_hash(log.entry(index)),
            hashes=tuple(log.inclusion_proof(index, tree_size)),
        )
    _emit(proof.to_json(), out)


@app.command("prove-consistency")
@reports_errors
def prove_consistency(
    db: DbOption,
    old: Annotated[int, typer.Option(help="The older tree size.")],
    new: Annotated[
        int | None, typer.Option(help="The newer tree size; default: the latest checkpoint's.")
    ] = None,
    out: OutOption = None,
) -> None:
    """Print a consistency proof between two tree sizes."""
    with _opened(db) as log:
        new_size = _default_size(log, new)
        proof = ConsistencyProof(old, new_size, tuple(log.consistency_proof(old, new_size)))
    _emit(proof.to_json(), out)


@app.command()
@reports_errors
def verify(
    vkey: Annotated[str, typer.Option(help="The log's vkey, inline or a file holding it.")],
    checkpoint_file: Annotated[
        Path | None, typer.Option("--checkpoint", help="A signed checkpoint to verify.")
    ] = None,
    proof_file: Annotated[
        Path | None, typer.Option("--proof", help="A proof to check against the checkpoint.")
    ] = None,
    entry_file: Annotated[
        Path | None, typer.Option("--entry", help="The entry an inclusion proof is about.")
    ] = None,
    old_checkpoint_file: Annotated[
        Path | None, typer.Option("--old-checkpoint", help="Older checkpoint (consistency).")
    ] = None,
    db: Annotated[
        str | None, typer.Option("--db", help="Instead: verify a whole stored log.")
    ] = None,
    origin: Annotated[
        str | None,
        typer.Option(help="The log's origin the checkpoints must carry; default: the key name."),
    ] = None,
) -> None:
    """Verify a checkpoint and a proof offline, or (--db) every node and checkpoint stored."""
    verifier = _read_vkey(vkey)
    if db is not None:
        with _opened(db) as log:
            checked = log.verify_integrity(verifier)
        console.print(f"[green]ok[/]: {checked}")
        return
    if checkpoint_file is None:
        raise InputError("verify.nothing_to_verify", "give --checkpoint (and --proof) or --db")
    expected_origin = origin or verifier.name
    signed = _open_checkpoint_file(checkpoint_file, verifier, expected_origin)
    head = signed.checkpoint
    if proof_file is None:
        console.print(f"[green]ok[/]: checkpoint of {head.origin!r} at size {head.size}")
        return
    proof = parse_proof(read_input(proof_file, what="proof", max_bytes=1_000_000))
    if isinstance(proof, InclusionProof):
        _verify_inclusion(proof, signed, entry_file)
    else:
        _verify_consistency(proof, signed, old_checkpoint_file, verifier, expected_origin)


def _open_checkpoint_file(path: Path, verifier: NoteVerifier, origin: str) -> SignedCheckpoint:
    data = read_input(path, what="checkpoint", max_bytes=DEFAULT_LIMITS.max_note_bytes)
    # The origin is checked too: one key may sign for several logs, and a checkpoint of
    # another log must not pass as this one's.
    return open_checkpoint(data, verifier, origin=origin)


def _verify_inclusion(
    proof: InclusionProof, signed: SignedCheckpoint, entry_file: Path | None
) -> None:
    head = signed.checkpoint
    if proof.tree_size != head.size:
        raise InputError(
            "verify.size_mismatch",
            f"proof is for tree size {proof.tree_size}, checkpoint is at size {head.size}",
        )
    if entry_file is not None:
        entry = read_input(entry_file, what="entry", max_bytes=DEFAULT_LIMITS.max_entry_bytes)
        if merkle.leaf_hash(entry) != proof.leaf_hash:
            raise TrustError("verify.entry_mismatch", "the entry's leaf hash is not the proof's")
    proof.verify(head.root_hash)
    console.print(f"[green]ok[/]: entry {proof.log_index} is in the log at size {head.size}")


def _verify_consistency(
    proof: ConsistencyProof,
    signed: SignedCheckpoint,
    old_checkpoint_file: Path | None,
    verifier: NoteVerifier,
    origin: str,
) -> None:
    if old_checkpoint_file is None:
        raise InputError(
            "verify.old_checkpoint_missing", "a consistency proof needs --old-checkpoint"
        )
    old = _open_checkpoint_file(old_checkpoint_file, verifier, origin).checkpoint
    new = signed.checkpoint
    if (proof.old_size, proof.new_size) != (old.size, new.size):
        raise InputError(
            "verify.size_mismatch",
            f"proof is {proof.old_size}->{proof.new_size}, checkpoints are {old.size}->{new.size}",
        )
    proof.verify(old.root_hash, new.root_hash)
    console.print(f"[green]ok[/]: size {old.size} is a prefix of size {new.size}")


@app.command()
@reports_errors
def show(db: DbOption) -> None:
    """Print the log's origin, size, root and latest checkpoint."""
    with _opened(db) as log:
        table = Table(show_header=False, box=None)
        table.add_row("origin", log.origin)
        table.add_row("size", str(log.size()))
        table.add_row("root", log.root().hex())
        latest = log.latest_checkpoint()
        table.add_row("checkpoint", "" if latest else "(none)")
    console.print(table)
    if latest:
        typer.echo(latest.decode("utf-8"), nl=False)


def _default_size(log: TransparencyLog, size: int | None) -> int:
    if size is not None:
        return size
    latest = log.latest_checkpoint_size()
    return latest if latest is not None else log.size()
