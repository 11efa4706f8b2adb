"""``brakepedal agent``: run the node agent; ``brakepedal registry manufacturer``'s CA endorses
simulated devices.

``agent run`` samples the node's accelerators (NVML, or simulated devices driven by synthetic
or real traces), writes signed, chained reports to its spool, enrols the devices and delivers
the reports to the registry until interrupted or ``--duration`` seconds pass.
"""

from __future__ import annotations

import hashlib
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from brakepedal.cli import agent_handin
from brakepedal.cli.files import read_input
from brakepedal.cli.output import reports_errors
from brakepedal.errors import BrakepedalError, InputError
from brakepedal.model.types import EntityId, SiteId, parse_utc_timestamp

if TYPE_CHECKING:
    from brakepedal.agent.identity import DeviceIdentity
    from brakepedal.agent.runner import Agent
    from brakepedal.agent.telemetry import TelemetryBackend
    from brakepedal.wire.endorsement import Manufacturer

__all__ = ["app"]

app = typer.Typer(help="The node agent: attest accelerator usage.", no_args_is_help=True)
app.command(name="snapshot")(agent_handin.snapshot)
console = Console(stderr=True, highlight=False, soft_wrap=True)
_MAX_CA = 64_000
_MAX_ROOT = 4_000_000


def _backend(
    backend: str,
    *,
    devices: int,
    accelerator: str,
    profile: str,
    traces: list[Path],
    start: datetime,
    seed: int,
) -> TelemetryBackend:
    from brakepedal.accounting.catalogue import default_catalogue  # noqa: PLC0415
    from brakepedal.agent.telemetry import NvmlBackend, SimulatedBackend  # noqa: PLC0415
    from brakepedal.agent.traces import read_nvidia_smi_csv  # noqa: PLC0415

    if backend == "nvml":
        return NvmlBackend.open()
    if backend != "simulated":
        raise InputError("agent.backend_unknown", f"backend {backend!r}: nvml or simulated")
    spec = default_catalogue().get(accelerator)
    if traces:
        replayed = [t for path in traces for t in read_nvidia_smi_csv(path)]
        return SimulatedBackend(spec, replayed[:devices], start=start, seed=seed)
    return SimulatedBackend.synthetic(spec, profile, devices=devices, start=start, seed=seed)


def _enrolments(
    identities: list[DeviceIdentity],
    manufacturer: Manufacturer | None,
    *,
    operator: EntityId,
    site: SiteId | None,
) -> list[bytes]:
    from brakepedal.registry.devices import build_enrolment  # noqa: PLC0415

    now = datetime.now(UTC)
    envelopes = []
    for identity in identities:
        chain: list[bytes] = []
        if manufacturer is not None:
            chain = manufacturer.endorse(
                identity.key,
                serial=identity.uuid,
                accelerator=identity.accelerator,
                now=now - timedelta(days=1),
            )
        envelopes.append(
            build_enrolment(
                identity.signer,
                device=identity.device,
                accelerator=identity.accelerator,
                operator=operator,
                site=site,
                chain=chain,
                at=now,
            )
        )
    return envelopes


@app.command()
@reports_errors
def run(
    registry: Annotated[str, typer.Option(help="The registry's base URL.")],
    state: Annotated[Path, typer.Option(help="The agent's state directory (keys, spool).")],
    operator: Annotated[str, typer.Option(help="The entity operating these devices.")],
    site: Annotated[str | None, typer.Option(help="The site id.")] = None,
    backend: Annotated[str, typer.Option(help="nvml or simulated.")] = "simulated",
    devices: Annotated[int, typer.Option(min=1, max=64, help="Simulated devices.")] = 8,
    accelerator: Annotated[
        str, typer.Option(help="Simulated accelerator (catalogue id).")
    ] = "nvidia-h100-sxm5-80gb",
    profile: Annotated[str, typer.Option(help="Synthetic profile: training, inference...")] = (
        "training"
    ),
    trace: Annotated[
        list[Path] | None,
        typer.Option(help="Replay this nvidia-smi CSV log (its GPUs become the devices)."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Simulation seed (default: from --state).")] = (
        None
    ),
    window_minutes: Annotated[int, typer.Option(min=1, max=60)] = 5,
    start: Annotated[
        str | None, typer.Option(help="Simulated clock start (UTC); default: real time.")
    ] = None,
    speed: Annotated[float, typer.Option(help="Simulated clock speed-up.")] = 1.0,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many real seconds.")
    ] = None,
    manufacturer: Annotated[
        Path | None, typer.Option(help="Simulated manufacturer CA bundle, to endorse devices.")
    ] = None,
    batch: Annotated[int, typer.Option(min=1, max=10_000)] = 500,
    handins: Annotated[
        Path | None,
        typer.Option(
            envvar="BRAKEPEDAL_HANDINS",
            help="The node's hand-in store: snapshot commitments and gate events.",
        ),
    ] = None,
    trusted_root: Annotated[
        Path | None,
        typer.Option(
            help="The governance root this agent trusts (1.root.json); enables refreshes."
        ),
    ] = None,
    governance_every: Annotated[
        float, typer.Option(min=1.0, help="Seconds between governance refreshes.")
    ] = 60.0,
    retry_cap_seconds: Annotated[
        float, typer.Option(min=0.1, max=86_400, help="Longest wait between delivery attempts.")
    ] = 300.0,
) -> None:
    """Run the agent until interrupted (or for --duration seconds)."""
    # Imported here: the rest of the CLI should not pay for the agent's stack at start-up.
    from brakepedal.agent.attribution import EnvironmentAttributor  # noqa: PLC0415
    from brakepedal.agent.delivery import RegistryClient  # noqa: PLC0415
    from brakepedal.agent.governance_sync import GovernanceWatcher  # noqa: PLC0415
    from brakepedal.agent.handin import HandIns  # noqa: PLC0415
    from brakepedal.agent.identity import load_or_create_identities  # noqa: PLC0415
    from brakepedal.agent.runner import Agent, Clock  # noqa: PLC0415
    from brakepedal.agent.spool import RetryPolicy, Spool  # noqa: PLC0415
    from brakepedal.wire.endorsement import Manufacturer  # noqa: PLC0415

    clock_start = None if start is None else parse_utc_timestamp(start)
    begin = clock_start or datetime.now(UTC)
    state.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(str(state.resolve()).encode()).digest()
    seed_value = seed if seed is not None else int.from_bytes(digest[:4], "big")
    telemetry = _backend(
        backend,
        devices=devices,
        accelerator=accelerator,
        profile=profile,
        traces=trace or [],
        start=begin.replace(second=0, microsecond=0),
        seed=seed_value,
    )
    identities = load_or_create_identities(state, telemetry.devices())
    ca = (
        None
        if manufacturer is None
        else Manufacturer.from_pem(read_input(manufacturer, what="CA bundle", max_bytes=_MAX_CA))
    )
    client = RegistryClient(registry)
    watcher = (
        None
        if trusted_root is None
        else GovernanceWatcher(
            client,
            read_input(trusted_root, what="trusted root", max_bytes=_MAX_ROOT),
            state / "governance",
        )
    )
    agent = Agent(
        backend=telemetry,
        spool=Spool(state / "spool.sqlite3"),
        deliver_spool=Spool(state / "spool.sqlite3"),
        identities=identities,
        client=client,
        clock=Clock(clock_start, speed),
        window=timedelta(minutes=window_minutes),
        attributor=EnvironmentAttributor(site=None if site is None else SiteId(site)),
        batch=batch,
        handins=None if handins is None else HandIns(handins),
        watcher=watcher,
        governance_every=governance_every,
        retry=RetryPolicy(
            base=timedelta(seconds=min(1.0, retry_cap_seconds)),
            cap=timedelta(seconds=retry_cap_seconds),
        ),
    )
    envelopes = _enrolments(
        identities, ca, operator=EntityId(operator), site=None if site is None else SiteId(site)
    )
    _enrol_with_retries(agent, envelopes)
    signal.signal(signal.SIGTERM, lambda *_: agent.request_stop())
    agent.start()
    console.print(
        f"agent: {len(identities)} devices, window {window_minutes} min, registry {registry}",
        style="dim",
    )
    try:
        agent.wait(duration)
    except KeyboardInterrupt:
        pass
    finally:
        agent.stop()
        telemetry.close()
        client.close()
    spooled, delivered = agent.spool.counts()
    console.print(
        f"agent stopped: {agent.stats.ticks} ticks, {spooled} reports spooled, "
        f"{delivered} delivered",
        style="dim",
    )


def _enrol_with_retries(agent: Agent, envelopes: list[bytes], attempts: int = 30) -> None:
    import time  # noqa: PLC0415

    for attempt in range(attempts):
        try:
            agent.enrol(envelopes)
        except BrakepedalError as e:
            if e.reason.startswith("delivery.") and attempt < attempts - 1:
                time.sleep(min(2.0, 0.1 * 2**attempt))
                continue
            raise
        return
