"""``brakepedal agent snapshot``: hand in a weight-snapshot commitment from any framework.

For training frameworks not written in Python (Python ones call
:func:`brakepedal.agent.handin.commit_snapshot`): after a snapshot is durably written, run

    brakepedal agent snapshot --handins /var/lib/brakepedal/handins.db \\
        --job "$BRAKEPEDAL_JOB" --step 12000 --file checkpoint-12000/manifest.json

``--file`` hashes the file (SHA-256, streamed); ``--digest`` takes a digest computed already.
``--handins`` and ``--job`` default to ``BRAKEPEDAL_HANDINS`` and ``BRAKEPEDAL_JOB`` (the gate
sets the latter in the job's environment). Prints the stored commitment as one canonical JSON
line. Exit status: 0 stored (or already stored), 2 bad input, 4 the store failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from brakepedal.cli.output import reports_errors
from brakepedal.crypto.canonical import canonical_json
from brakepedal.errors import InputError

__all__ = ["snapshot"]


@reports_errors
def snapshot(
    handins: Annotated[
        Path,
        typer.Option(envvar="BRAKEPEDAL_HANDINS", help="The node's hand-in store (SQLite)."),
    ],
    job: Annotated[
        str, typer.Option(envvar="BRAKEPEDAL_JOB", help="The scheduler job the weights are of.")
    ],
    step: Annotated[int, typer.Option(min=0, help="The training step of the snapshot.")],
    digest: Annotated[
        str | None, typer.Option(help="The snapshot's SHA-256, 64 lowercase hex.")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Hash this file (the snapshot's manifest or single file)."),
    ] = None,
    parent: Annotated[
        str | None,
        typer.Option(help="Digest of the snapshot this run started from (lineage)."),
    ] = None,
) -> None:
    """Hand in a commitment to a weight snapshot for the agent's usage reports."""
    from brakepedal.agent.handin import commit_snapshot  # noqa: PLC0415

    if (digest is None) == (file is None):
        raise InputError("handin.digest_or_file", "give exactly one of --digest and --file")
    commitment = commit_snapshot(
        handins, job, step, file if file is not None else str(digest), parent=parent
    )
    typer.echo(canonical_json(commitment.to_json()).decode())
