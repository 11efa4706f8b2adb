"""``brakepedal keys``: make and inspect Ed25519 signing keys kept in files.

A key made here is a software key, the weakest trust level; parties that need HSM or KMS keys
use securesystemslib signers directly and only publish their public keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from brakepedal.cli.files import read_input, write_new_file
from brakepedal.cli.output import reports_errors
from brakepedal.crypto import keys as key_codec
from brakepedal.crypto.keys import CryptoSigner
from brakepedal.errors import InputError
from brakepedal.tlog.note import NoteSigner

__all__ = ["app", "load_signer"]

app = typer.Typer(help="Generate and inspect signing keys.", no_args_is_help=True)
console = Console(highlight=False, soft_wrap=True)

_MAX_KEY_FILE_BYTES = 64 * 1024


def _password_from_env(variable: str | None) -> bytes | None:
    if variable is None:
        return None
    value = os.environ.get(variable)
    if not value:
        raise InputError("key.password_missing", f"environment variable {variable} is not set")
    return value.encode("utf-8")


def load_signer(path: Path, password_env: str | None = None) -> CryptoSigner:
    """Load a private key file written by ``keys generate``."""
    pem = read_input(path, what="private key", max_bytes=_MAX_KEY_FILE_BYTES)
    return key_codec.signer_from_pem(pem, password=_password_from_env(password_env))


@app.command()
@reports_errors
def generate(
    name: Annotated[str, typer.Option(help="Key name, e.g. the log origin 'example.org/log'.")],
    out: Annotated[
        Path, typer.Option(help="Path prefix: writes OUT.key, OUT.pub.json and OUT.vkey.")
    ],
    password_env: Annotated[
        str | None,
        typer.Option(help="Encrypt the private key with the passphrase in this env variable."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite existing files.")] = False,
) -> None:
    """Generate an Ed25519 key: private key (mode 0600), public key and signed-note vkey."""
    signer = key_codec.generate_ed25519()
    verifier = NoteSigner(name, signer).verifier()
    password = _password_from_env(password_env)
    private_path = out.with_name(out.name + ".key")
    write_new_file(
        private_path,
        key_codec.private_key_to_pem(signer, password=password),
        secret=True,
        force=force,
    )
    write_new_file(
        out.with_name(out.name + ".pub.json"),
        key_codec.public_key_to_json(signer.public_key),
        force=force,
    )
    write_new_file(
        out.with_name(out.name + ".vkey"), (verifier.to_vkey() + "\n").encode(), force=force
    )
    console.print(f"private key  {private_path}")
    console.print(f"fingerprint  {key_codec.key_fingerprint(signer.public_key)}")
    console.print(f"note vkey    {verifier.to_vkey()}")


@app.command()
@reports_errors
def show(
    key: Annotated[Path, typer.Argument(help="A private key file (OUT.key).")],
    name: Annotated[str, typer.Option(help="Key name to derive the signed-note vkey for.")],
    password_env: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Print a private key's fingerprint and signed-note vkey."""
    signer = load_signer(key, password_env)
    console.print(f"fingerprint  {key_codec.key_fingerprint(signer.public_key)}")
    console.print(f"note vkey    {NoteSigner(name, signer).verifier().to_vkey()}")
