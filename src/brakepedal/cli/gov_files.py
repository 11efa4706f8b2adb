"""The governance repository as a directory, for the ``gov`` commands."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from brakepedal.cli.files import read_input, write_new_file
from brakepedal.errors import InputError
from brakepedal.governance.repository import Proposal
from brakepedal.model.types import parse_utc_timestamp

__all__ = [
    "load_proposal",
    "moment_of",
    "proposal_path",
    "read_repository",
    "save_proposal",
    "write_files",
]

console = Console(highlight=False, soft_wrap=True)
_MAX_FILE = 8_000_000


def moment_of(text: str | None) -> datetime:
    return datetime.now(UTC) if text is None else parse_utc_timestamp(text)


def read_repository(repo: Path) -> dict[str, bytes]:
    """Every metadata and target file of the repository at ``repo``, by relative name."""
    if not repo.is_dir():
        raise InputError("file.not_found", f"governance repository {str(repo)!r} does not exist")
    files: dict[str, bytes] = {}
    for folder in ("metadata", "targets"):
        base = repo / folder
        if base.is_dir():
            for path in sorted(base.rglob("*")):
                if path.is_file():
                    name = path.relative_to(repo).as_posix()
                    files[name] = read_input(path, what=name, max_bytes=_MAX_FILE)
    return files


def write_files(repo: Path, files: dict[str, bytes]) -> None:
    base = repo.resolve()
    for name, data in sorted(files.items()):
        path = repo / name
        if not path.resolve().is_relative_to(base):
            raise InputError("cli.path_outside_repository", f"{name!r} is outside {repo}")
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)


def proposal_path(repo: Path, name: str) -> Path:
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise InputError("cli.proposal_name_invalid", f"proposal name {name!r}: use a-z 0-9 - _ .")
    return repo / "proposals" / f"{name}.json"


def load_proposal(repo: Path, name: str) -> Proposal:
    return Proposal.from_bytes(
        read_input(proposal_path(repo, name), what="proposal", max_bytes=_MAX_FILE)
    )


def save_proposal(repo: Path, proposal: Proposal, *, new: bool) -> None:
    path = proposal_path(repo, proposal.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_new_file(path, proposal.to_bytes(), force=not new)
    console.print(f"proposal {proposal.name}: {proposal.role} v{proposal.metadata.signed.version}")
