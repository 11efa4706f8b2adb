"""File access for the CLI, with errors that name the file (the library itself does no I/O)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import BinaryIO

from brakepedal.errors import BrakepedalError, InputError, StorageError

__all__ = ["read_input", "read_roots", "vkey_text", "write_new_file"]

_CHUNK = 1 << 20


def read_input(path: Path, *, what: str, max_bytes: int) -> bytes:
    """Read ``path`` (``-`` is standard input) as bytes, refusing more than ``max_bytes``."""
    try:
        if str(path) == "-":
            data = _read_bounded(sys.stdin.buffer, max_bytes)
        else:
            with path.open("rb") as handle:
                data = _read_bounded(handle, max_bytes)
    except FileNotFoundError as error:
        raise InputError("file.not_found", f"{what} file {str(path)!r} does not exist") from error
    except IsADirectoryError as error:
        raise InputError("file.is_directory", f"{what} {str(path)!r} is a directory") from error
    except OSError as error:
        raise InputError("file.unreadable", f"cannot read {what} {str(path)!r}: {error}") from error
    if len(data) > max_bytes:
        raise InputError("file.too_large", f"{what} {str(path)!r} is larger than {max_bytes} bytes")
    return data


#: A root file: a PEM bundle of a few certificates.
_MAX_ROOTS_FILE = 64_000


def read_roots(paths: list[Path], *, option: str = "--manufacturer-root") -> tuple[bytes, ...]:
    """Every root certificate in the PEM files ``paths`` (a file may be a bundle), each
    checked as a trusted root before anything is judged against it.

    Raises:
        InputError: ``file.*``, or ``roots.invalid`` naming the option, the file and what is
            wrong with it.
    """
    from brakepedal.wire.endorsement import check_roots, split_pem_certificates  # noqa: PLC0415

    roots: list[bytes] = []
    for path in paths:
        data = read_input(path, what="root certificate", max_bytes=_MAX_ROOTS_FILE)
        try:
            found = split_pem_certificates(data)
            check_roots(found)
        except BrakepedalError as e:
            raise InputError(
                "roots.invalid", f"{option} {str(path)!r}: {e.message} ({e.reason})"
            ) from e
        roots += found
    return tuple(roots)


def _read_bounded(handle: BinaryIO, max_bytes: int) -> bytes:
    # Read in chunks: asking for max_bytes at once would allocate that much up front.
    chunks: list[bytes] = []
    total = 0
    while total <= max_bytes:
        chunk = handle.read(min(_CHUNK, max_bytes + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def write_new_file(path: Path, data: bytes, *, secret: bool = False, force: bool = False) -> None:
    """Write ``data`` to a new file; secrets get mode 0600 from the moment they exist."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    mode = 0o600 if secret else 0o644
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, flags, mode)
    except FileExistsError as error:
        raise InputError(
            "file.exists",
            f"{str(path)!r} already exists; refusing to overwrite it (pass --force to replace it)",
        ) from error
    except OSError as error:
        raise StorageError("file.unwritable", f"cannot write {str(path)!r}: {error}") from error
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


_MAX_VKEY_BYTES = 4096


def vkey_text(value: str) -> str:
    """A vkey given inline (``name+id+key``) or as the path of a file that holds one."""
    path = Path(value)
    if "+" not in value or path.is_file():
        value = read_input(path, what="vkey", max_bytes=_MAX_VKEY_BYTES).decode("utf-8", "replace")
    return value.strip()
