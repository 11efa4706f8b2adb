"""``brakepedal witness``: an independent witness that cosigns only consistent checkpoints.

The witness's memory is one state file (``witness init`` makes it). ``witness cosign`` reads
it under a lock, checks the checkpoint against it (:mod:`brakepedal.tlog.witness`), replaces
it atomically with the new state and only then writes the cosigned checkpoint: a crash can
lose a cosignature, never the memory of having given one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from brakepedal.cli.files import read_input, vkey_text, write_new_file
from brakepedal.cli.keys import load_signer
from brakepedal.cli.output import reports_errors
from brakepedal.errors import InputError, StorageError
from brakepedal.model.limits import DEFAULT_LIMITS
from brakepedal.tlog.checkpoint import open_checkpoint
from brakepedal.tlog.cosignature import CosignatureVerifier, Cosigner, verify_cosignatures
from brakepedal.tlog.note import Note, NoteVerifier
from brakepedal.tlog.proof import ConsistencyProof, parse_proof
from brakepedal.tlog.witness import Witness, WitnessState, merge_cosigned_notes

__all__ = ["app"]

app = typer.Typer(
    help="Cosign log checkpoints as an independent witness, and merge or check cosignatures.",
    no_args_is_help=True,
)
console = Console(highlight=False, soft_wrap=True)

KeyOption = Annotated[Path, typer.Option(help="The witness's private key file (keys generate).")]
StateOption = Annotated[Path, typer.Option(help="The witness state file (its only memory).")]
PasswordOption = Annotated[
    str | None, typer.Option(help="Environment variable holding the key's passphrase.")
]
LogVkeysOption = Annotated[
    list[str],
    typer.Option(
        "--log-vkey",
        help="A followed log's vkey, inline or a file; its key name is the log's origin.",
    ),
]
_MAX_PROOF_BYTES = 1_000_000


def _followed_logs(values: list[str]) -> dict[str, NoteVerifier]:
    logs: dict[str, NoteVerifier] = {}
    for value in values:
        verifier = NoteVerifier.from_vkey(vkey_text(value))
        if verifier.name in logs:
            raise InputError("witness.duplicate_log", f"two --log-vkey for {verifier.name!r}")
        logs[verifier.name] = verifier
    return logs


def _read_state(path: Path) -> WitnessState:
    data = read_input(path, what="witness state", max_bytes=DEFAULT_LIMITS.max_json_bytes)
    return WitnessState.from_bytes(data)


def _replace_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename over ``path``."""
    try:
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself must survive a crash
        finally:
            os.close(directory)
    except OSError as error:
        raise StorageError(
            "witness.state_unwritable", f"cannot replace {str(path)!r}: {error}"
        ) from error


@contextlib.contextmanager
def _state_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``STATE.lock`` so that two cosign runs cannot interleave.

    Two runs checking the same old state could otherwise both succeed and the second rename
    would roll the memory back (c2sp.org/tlog-witness, "add-checkpoint").
    """
    lock_path = path.with_name(path.name + ".lock")
    try:
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except FileNotFoundError as error:
        raise InputError("file.not_found", f"no witness state at {str(path)!r}") from error
    except OSError as error:
        raise StorageError(
            "witness.state_unwritable", f"cannot lock {str(path)!r}: {error}"
        ) from error
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


@app.command()
@reports_errors
def init(
    name: Annotated[str, typer.Option(help="The witness's name, e.g. 'witness.example.org'.")],
    key: KeyOption,
    state: StateOption,
    log_vkey: Annotated[
        list[str] | None,
        typer.Option("--log-vkey", help="Logs to follow (checked and listed; not stored)."),
    ] = None,
    password_env: PasswordOption = None,
    vkey_out: Annotated[
        Path | None, typer.Option(help="Also write the witness's cosignature vkey to this file.")
    ] = None,
) -> None:
    """Create an empty state for a new witness; an existing state file is never replaced."""
    cosigner = Cosigner(name, load_signer(key, password_env))
    logs = _followed_logs(log_vkey) if log_vkey else {}
    write_new_file(state, WitnessState.empty(cosigner.verifier()).to_bytes())
    if vkey_out is not None:
        write_new_file(vkey_out, cosigner.verifier().to_vkey().encode() + b"\n")
    console.print(f"witness state  {state}")
    console.print(f"witness vkey   {cosigner.verifier().to_vkey()}")
    for origin in sorted(logs):
        console.print(f"follows        {origin}")


@app.command()
@reports_errors
def cosign(
    key: KeyOption,
    state: StateOption,
    log_vkey: LogVkeysOption,
    checkpoint: Annotated[Path, typer.Option(help="The signed checkpoint (log checkpoint).")],
    out: Annotated[Path, typer.Option(help="Write the cosigned checkpoint here.")],
    proof: Annotated[
        Path | None,
        typer.Option(help="Consistency proof from the last cosigned size (prove-consistency)."),
    ] = None,
    password_env: PasswordOption = None,
) -> None:
    """Cosign a checkpoint only if it extends every checkpoint this witness cosigned."""
    signer = load_signer(key, password_env)
    logs = _followed_logs(log_vkey)
    note = read_input(checkpoint, what="checkpoint", max_bytes=DEFAULT_LIMITS.max_note_bytes)
    consistency = None if proof is None else _read_consistency_proof(proof)
    with _state_lock(state):
        current = _read_state(state)
        witness = Witness(Cosigner(current.witness.name, signer), logs)
        result = witness.cosign(current, note, consistency_proof=consistency, at=datetime.now(UTC))
        _replace_atomically(state, result.state.to_bytes())
    write_new_file(out, result.note, force=True)
    console.print(f"[green]cosigned[/]: {result.describe()}")
    console.print(f"wrote {out}", style="dim")


def _read_consistency_proof(path: Path) -> ConsistencyProof:
    parsed = parse_proof(read_input(path, what="proof", max_bytes=_MAX_PROOF_BYTES))
    if not isinstance(parsed, ConsistencyProof):
        raise InputError("witness.proof_not_consistency", "--proof must be a consistency proof")
    return parsed


@app.command()
@reports_errors
def show(state: StateOption) -> None:
    """Print the witness's key and the latest checkpoint it cosigned for each log."""
    current = _read_state(state)
    console.print(f"witness  {current.witness.name}")
    console.print(f"vkey     {current.witness.to_vkey()}")
    if not current.logs:
        console.print("no checkpoint cosigned yet")
        return
    table = Table("origin", "size", "root hash (hex)", box=None)
    for log in current.logs:
        head = log.checkpoint
        table.add_row(head.origin, str(head.size), head.root_hash.hex())
    console.print(table)


@app.command()
@reports_errors
def merge(
    checkpoint: Annotated[
        list[Path], typer.Option("--checkpoint", help="A cosigned checkpoint; give several.")
    ],
    out: Annotated[Path, typer.Option(help="Write the merged checkpoint here.")],
) -> None:
    """Merge the signature lines of cosigned copies of one checkpoint (not verified here)."""
    notes = [
        read_input(path, what="checkpoint", max_bytes=DEFAULT_LIMITS.max_note_bytes)
        for path in checkpoint
    ]
    merged = merge_cosigned_notes(notes)
    write_new_file(out, merged, force=True)
    lines = len(Note.from_bytes(merged).signatures)
    console.print(f"merged {len(notes)} notes into {out} with {lines} signature lines")


@app.command()
@reports_errors
def verify(
    checkpoint: Annotated[Path, typer.Option(help="A cosigned checkpoint.")],
    log_vkey: Annotated[str, typer.Option(help="The log's vkey, inline or a file.")],
    witness_vkey: Annotated[
        list[str], typer.Option("--witness-vkey", help="A trusted witness's cosignature vkey.")
    ],
    threshold: Annotated[
        int | None, typer.Option(help="Cosignatures required; default: every witness given.")
    ] = None,
    origin: Annotated[
        str | None, typer.Option(help="The log's origin; default: the log key's name.")
    ] = None,
) -> None:
    """Check the log's signature and that enough distinct witnesses cosigned the checkpoint."""
    log_key = NoteVerifier.from_vkey(vkey_text(log_vkey))
    witnesses = [CosignatureVerifier.from_vkey(vkey_text(value)) for value in witness_vkey]
    data = read_input(checkpoint, what="checkpoint", max_bytes=DEFAULT_LIMITS.max_note_bytes)
    signed = open_checkpoint(data, log_key, origin=origin or log_key.name)
    required = len(witnesses) if threshold is None else threshold
    names = verify_cosignatures(signed.note, signed.note.text, witnesses, required)
    head = signed.checkpoint
    console.print(
        f"[green]ok[/]: {head.origin!r} at size {head.size}, cosigned by "
        f"{len(names)} of {required} required: {', '.join(names)}"
    )
