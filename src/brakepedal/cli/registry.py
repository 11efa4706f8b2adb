"""``brakepedal registry``: serve the registry, migrate its database, issue credentials.

``serve`` runs the FastAPI app under uvicorn with JSON log lines on stderr. The database is a
SQLite file (the embedded default) or a PostgreSQL URL; migrations run on start.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from brakepedal.cli.files import read_roots, vkey_text
from brakepedal.cli.keys import load_signer
from brakepedal.cli.output import reports_errors
from brakepedal.errors import InputError
from brakepedal.tlog.sqlstore import database_url

if TYPE_CHECKING:
    from brakepedal.registry.service import Registry

__all__ = ["app", "open_registry"]

app = typer.Typer(help="The registry: verify, store and log usage reports.", no_args_is_help=True)
console = Console(stderr=True, highlight=False, soft_wrap=True)

DbOption = Annotated[
    str, typer.Option("--db", envvar="BRAKEPEDAL_DB", help="SQLite file path or database URL.")
]
OriginOption = Annotated[
    str, typer.Option("--origin", envvar="BRAKEPEDAL_ORIGIN", help="The log's origin line.")
]
LogKeyOption = Annotated[
    Path,
    typer.Option("--log-key", envvar="BRAKEPEDAL_LOG_KEY", help="The log's private key file."),
]


def open_registry(
    db: str,
    origin: str,
    log_key: Path,
    *,
    roots: list[Path] | None = None,
    witnesses: list[str] | None = None,
    allow_software_keys: bool = False,
    governance_key: Path | None = None,
    clock_skew_seconds: int = 300,
    max_batch: int = 1000,
) -> Registry:
    """A :class:`Registry` from command-line values."""
    from brakepedal.registry.ingest import IngestLimits  # noqa: PLC0415
    from brakepedal.registry.service import Registry, RegistryConfig  # noqa: PLC0415
    from brakepedal.tlog.cosignature import CosignatureVerifier  # noqa: PLC0415
    from brakepedal.tlog.note import NoteSigner  # noqa: PLC0415

    return Registry(
        RegistryConfig(
            url=database_url(db),
            origin=origin,
            log_signer=NoteSigner(origin, load_signer(log_key)),
            manufacturer_roots=list(read_roots(roots or [])),
            witnesses=[CosignatureVerifier.from_vkey(vkey_text(w)) for w in witnesses or []],
            allow_software_keys=allow_software_keys,
            governance_operator=None if governance_key is None else load_signer(governance_key),
            limits=IngestLimits(
                max_reports=max_batch, clock_skew=timedelta(seconds=clock_skew_seconds)
            ),
        )
    )


def _json_logging(level: str) -> None:
    from pythonjsonlogger.json import JsonFormatter  # noqa: PLC0415

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("brakepedal")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


@app.command()
@reports_errors
def serve(
    db: DbOption,
    origin: OriginOption,
    log_key: LogKeyOption,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0 picks a free one).")] = 8080,
    manufacturer_root: Annotated[
        list[Path] | None,
        typer.Option("--manufacturer-root", help="A trusted manufacturer root CA (PEM)."),
    ] = None,
    witness: Annotated[
        list[str] | None,
        typer.Option("--witness", help="A witness's cosignature vkey (or a file holding it)."),
    ] = None,
    allow_software_keys: Annotated[
        bool, typer.Option(help="Enrol devices without a chain (weakest trust level).")
    ] = False,
    governance_key: Annotated[
        Path | None,
        typer.Option(help="The governance operator key (snapshot, timestamp roles)."),
    ] = None,
    clock_skew_seconds: Annotated[int, typer.Option(min=0, max=86_400)] = 300,
    max_batch: Annotated[int, typer.Option(min=1, max=100_000)] = 1000,
    log_level: Annotated[str, typer.Option(help="info, warning, ...")] = "warning",
    port_file: Annotated[
        Path | None, typer.Option(help="Write the bound port here once listening.")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1, max=64, help="Processes serving requests (verification runs in parallel)."
        ),
    ] = 1,
) -> None:
    """Serve the registry over HTTP until interrupted."""
    import uvicorn  # noqa: PLC0415

    from brakepedal.registry.app import create_app  # noqa: PLC0415

    _json_logging(log_level)
    settings = {
        "db": db,
        "origin": origin,
        "log_key": str(log_key),
        "roots": [str(path) for path in manufacturer_root or []],
        "witnesses": list(witness or []),
        "allow_software_keys": allow_software_keys,
        "governance_key": None if governance_key is None else str(governance_key),
        "clock_skew_seconds": clock_skew_seconds,
        "max_batch": max_batch,
        "log_level": log_level,
    }
    # Migrate and create the log once here, so worker processes only open them.
    registry = _registry_from(settings)
    if workers > 1:
        registry.close()
        if port == 0:
            raise InputError("registry.port_required", "--workers needs a fixed --port")
        os.environ[_SETTINGS_ENV] = json.dumps(settings)
        uvicorn.run(
            "brakepedal.cli.registry:worker_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            access_log=False,
        )
        return
    config = uvicorn.Config(
        create_app(registry), host=host, port=port, log_level=log_level, access_log=False
    )
    server = uvicorn.Server(config)
    if port_file is not None:
        _announce_port(server, port_file)
    try:
        server.run()
    finally:
        registry.close()


_SETTINGS_ENV = "BRAKEPEDAL_REGISTRY_SETTINGS"


def _registry_from(settings: dict[str, Any]) -> Registry:
    return open_registry(
        settings["db"],
        settings["origin"],
        Path(settings["log_key"]),
        roots=[Path(path) for path in settings["roots"]],
        witnesses=settings["witnesses"],
        allow_software_keys=settings["allow_software_keys"],
        governance_key=None
        if settings["governance_key"] is None
        else Path(settings["governance_key"]),
        clock_skew_seconds=settings["clock_skew_seconds"],
        max_batch=settings["max_batch"],
    )


def worker_app() -> Any:
    """The app of one ``serve --workers`` process, from the settings its parent passed down."""
    from brakepedal.registry.app import create_app  # noqa: PLC0415

    settings = json.loads(os.environ[_SETTINGS_ENV])
    _json_logging(settings["log_level"])
    return create_app(_registry_from(settings), inline_ingest=True)


def _announce_port(server: object, port_file: Path) -> None:
    """Write the bound port to ``port_file`` once uvicorn has started (for tests, scripts)."""
    import uvicorn  # noqa: PLC0415

    assert isinstance(server, uvicorn.Server)
    startup = server.startup

    async def startup_then_write(sockets: object = None) -> None:
        await startup(sockets=sockets)  # type: ignore[arg-type]
        for listener in server.servers:
            for sock in listener.sockets:
                port = sock.getsockname()[1]
                tmp = port_file.with_suffix(".tmp")
                tmp.write_text(f"{port}\n")
                tmp.replace(port_file)
                return

    server.startup = startup_then_write  # type: ignore[method-assign]


@app.command(name="migrate")
@reports_errors
def migrate_command(db: DbOption) -> None:
    """Bring the database to the newest schema (runs on every start too)."""
    from brakepedal.registry.service import migrate  # noqa: PLC0415

    migrate(database_url(db))
    console.print("database is at the newest schema", style="green")


@app.command()
@reports_errors
def credential(
    db: DbOption,
    origin: OriginOption,
    log_key: LogKeyOption,
    name: Annotated[str, typer.Option(help="Who holds it, e.g. 'auditor-1'.")],
    role: Annotated[str, typer.Option(help="auditor or admin.")] = "auditor",
) -> None:
    """Issue a bearer credential; prints the token once (only its hash is stored)."""
    registry = open_registry(db, origin, log_key)
    try:
        token = registry.add_credential(name, role)
    finally:
        registry.close()
    typer.echo(token)


@app.command()
@reports_errors
def manufacturer(
    out: Annotated[Path, typer.Option(help="Directory for ca.pem (secret) and root.pem.")],
    name: Annotated[str, typer.Option(help="The manufacturer's name.")] = (
        "Simulated Accelerator Manufacturer"
    ),
) -> None:
    """Create a simulated manufacturer CA that endorses simulated devices' keys."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from brakepedal.cli.files import write_new_file  # noqa: PLC0415
    from brakepedal.wire.endorsement import Manufacturer  # noqa: PLC0415

    ca = Manufacturer.generate(name, now=datetime.now(UTC) - timedelta(days=1))
    out.mkdir(parents=True, exist_ok=True)
    write_new_file(out / "ca.pem", ca.to_pem(), secret=True)
    write_new_file(out / "root.pem", ca.root_pem)
    console.print(f"wrote {out / 'ca.pem'} (secret) and {out / 'root.pem'}", style="green")
