"""Scenario files: a simulated world, its governance events and each actor's strategy (YAML).

A scenario is data, reproducible by its ``seed``: who owns whom (``entities``), which devices
exist where (``clusters``), what runs on them and when (``workloads``), what the signatories
decide (``governance``: pause orders, permits, lifts), how each actor behaves (``actors``, a
strategy of :mod:`brakepedal.sim.strategies` with its parameters), and how the auditor works
(``audit``: how often, how many sampling challenges). Hours count from the scenario's
``start``; the world runs in simulated time, compressed (a day of 1,000 devices takes minutes).

Parsing is strict: YAML without aliases, merge keys or duplicate keys; every field known; every
reference resolved (an owner, a cluster, a lineage's earlier workload, an order a lift lifts);
no ownership cycle; no device given to two workloads at once (or within one window); ``days``
a whole number of windows. Every defect is an
:class:`~brakepedal.errors.InputError` ``scenario.*`` whose message names the file and the
field's path (``workloads[2].cluster``). Example files ship in ``brakepedal/sim/scenarios``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from brakepedal.accounting.catalogue import default_catalogue
from brakepedal.errors import InputError
from brakepedal.policy.load import StrictSafeLoader, error_path

__all__ = [
    "Actor",
    "AuditPlan",
    "Cluster",
    "Entity",
    "GovernanceEvents",
    "LiftEvent",
    "OrderEvent",
    "PermitEvent",
    "Scenario",
    "WorkloadSpec",
    "catalogue_names",
    "load_catalogue_scenario",
    "load_scenario",
    "parse_scenario",
]

#: Largest scenario file read (a world is described, not enumerated).
MAX_SCENARIO_BYTES = 1_000_000
#: Devices in one world, all clusters together.
MAX_DEVICES = 1_000_000

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
Hours = Annotated[float, Field(ge=0, le=366 * 24, allow_inf_nan=False)]
Param = str | int | float | bool


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Entity(_Model):
    """A lab, subsidiary or cloud; ``owner`` holds ``share`` of its votes (1: wholly owned).

    More than one half is control (the accounting's rule, :mod:`brakepedal.accounting.groups`):
    the entity is in its owner's group; one half or less, it heads a group of its own."""

    id: Name
    owner: Name | None = None
    share: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 1.0


class Cluster(_Model):
    """``devices`` accelerators of one kind, operated by ``entity`` at ``site``."""

    id: Name
    entity: Name
    site: Name | None = None
    accelerator: str = "nvidia-h100-sxm5-80gb"
    devices: Annotated[int, Field(ge=1, le=MAX_DEVICES)]
    #: Devices shipped here by their manufacturer but never enrolled (``smuggled``), which only
    #: the manufacturer's shipment records show.
    unenrolled: Annotated[int, Field(ge=0, le=MAX_DEVICES)] = 0


class WorkloadSpec(_Model):
    """A job on devices ``[first, first + devices)`` of ``cluster`` for ``hours`` from
    ``start_hour`` (``hours`` absent: to the end), to the minute. A device's report names one
    job, so two workloads may not share a device within one window."""

    id: Name
    kind: Literal["pretraining", "finetune", "rl", "inference", "hpc"]
    cluster: Name
    devices: Annotated[int, Field(ge=1, le=MAX_DEVICES)] | None = None
    first: Annotated[int, Field(ge=0, le=MAX_DEVICES)] = 0
    start_hour: Hours = 0.0
    hours: Annotated[float, Field(gt=0, le=366 * 24, allow_inf_nan=False)] | None = None
    #: The lineage the job trains (training kinds); a later workload naming the same lineage
    #: continues its weights (fine-tunes, RL, a run resumed from a checkpoint).
    lineage: Name | None = None
    #: Whether the run is declared publicly (run declarations, with its snapshots).
    declared: bool = False
    #: Busy share of an inference service at its daily peak (diurnal and bursty below it).
    peak_busy: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.6

    @property
    def training(self) -> bool:
        return self.kind in {"pretraining", "finetune", "rl"}


class OrderEvent(_Model):
    """A pause order, signed by a quorum and published at ``at_hour``.

    Its threshold is given in device-hours of the reference accelerator at its peak (the
    scenario's scale), so the same story holds for a small and a large world."""

    id: Name
    at_hour: Hours
    threshold_device_hours: Annotated[float, Field(gt=0, le=1e12, allow_inf_nan=False)]
    grace_minutes: Annotated[int, Field(ge=0, le=7 * 24 * 60)] = 10
    sunset_days: Annotated[int, Field(ge=1, le=180)] = 30


class PermitEvent(_Model):
    """A training permit for ``lineage`` of ``owner_group``, issued under ``order``'s quorum."""

    id: Name
    at_hour: Hours
    order: Name
    owner_group: Name
    lineage: Name
    budget_device_hours: Annotated[float, Field(gt=0, le=1e12, allow_inf_nan=False)]
    valid_hours: Annotated[float, Field(gt=0, le=366 * 24, allow_inf_nan=False)]


class LiftEvent(_Model):
    """A lift of ``lifts``, published at ``at_hour``."""

    id: Name
    at_hour: Hours
    lifts: Name


class GovernanceEvents(_Model):
    orders: tuple[OrderEvent, ...] = ()
    permits: tuple[PermitEvent, ...] = ()
    lifts: tuple[LiftEvent, ...] = ()


class Actor(_Model):
    """``entity`` (or ``registry``, the registry's operator) follows ``strategy`` from
    ``at_hour``, with the strategy's ``params``."""

    entity: Name
    strategy: Name
    at_hour: Hours = 0.0
    params: dict[Name, Param] = Field(default_factory=dict)


class AuditPlan(_Model):
    """The auditor runs every ``every_hours`` and opens ``budget`` sampling challenges per run,
    planned to catch a falsified ``fraction`` of reports."""

    every_hours: Annotated[float, Field(gt=0, le=30 * 24, allow_inf_nan=False)] = 6.0
    budget: Annotated[int, Field(ge=0, le=100_000)] = 4
    fraction: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.05


class Scenario(_Model):
    """A whole scenario file."""

    format: Literal["brakepedal.scenario"]
    name: Name
    description: str = ""
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    start: datetime = datetime(2026, 6, 1, tzinfo=UTC)
    days: Annotated[float, Field(gt=0, le=366, allow_inf_nan=False)]
    window_minutes: Literal[5, 10, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440] = 60
    entities: Annotated[tuple[Entity, ...], Field(min_length=1)]
    clusters: Annotated[tuple[Cluster, ...], Field(min_length=1)]
    workloads: tuple[WorkloadSpec, ...] = ()
    governance: GovernanceEvents = GovernanceEvents()
    actors: tuple[Actor, ...] = ()
    audit: AuditPlan = AuditPlan()

    @field_validator("start")
    @classmethod
    def _start_whole_hour_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("start needs a time zone (write it with Z)")
        value = value.astimezone(UTC)
        if value.minute or value.second or value.microsecond:
            raise ValueError("start must be a whole hour")
        if not 1971 <= value.year <= 8900:
            # Usage times must lie before 9000 (model.usage); days and backdating fit below.
            raise ValueError("start must lie between 1971 and 8900")
        return value

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    @property
    def hours(self) -> float:
        return self.days * 24

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.window_minutes)

    def at(self, hour: float) -> datetime:
        """The moment ``hour`` hours after the start."""
        return self.start + timedelta(hours=hour)

    @property
    def device_count(self) -> int:
        return sum(c.devices for c in self.clusters)


def parse_scenario(data: bytes | str, *, name: str = "scenario") -> Scenario:
    """Parse and check a scenario file's text; ``name`` names it in messages."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as e:
        raise InputError(
            "scenario.encoding_invalid", f"scenario {name}: not UTF-8 at byte {e.start}"
        ) from e
    if len(text) > MAX_SCENARIO_BYTES:
        raise InputError(
            "scenario.too_large", f"scenario {name}: {len(text)} characters > {MAX_SCENARIO_BYTES}"
        )
    try:
        document = yaml.load(text, Loader=StrictSafeLoader)  # noqa: S506 (a SafeLoader subclass)
    except (yaml.YAMLError, ValueError, RecursionError) as e:
        raise InputError("scenario.syntax_invalid", f"scenario {name}: not valid YAML: {e}") from e
    if not isinstance(document, dict):
        raise InputError("scenario.not_mapping", f"scenario {name}: the top level is not a mapping")
    try:
        scenario = Scenario.model_validate(document)
    except ValidationError as e:
        raise _input_error(e, name) from e
    _check_references(scenario, name)
    return scenario


def load_scenario(path: Path) -> Scenario:
    """Read and parse the scenario file at ``path``."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError("scenario.unreadable", f"scenario {path}: {e.strerror}") from e
    return parse_scenario(data, name=str(path))


def catalogue_names() -> list[str]:
    """The scenarios shipped with brakepedal, one per strategy of the catalogue."""
    folder = resources.files("brakepedal.sim") / "scenarios"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def load_catalogue_scenario(name: str) -> Scenario:
    """A shipped scenario by name (see :func:`catalogue_names`)."""
    if name not in catalogue_names():
        raise InputError(
            "scenario.unknown", f"no shipped scenario {name!r}; known: {catalogue_names()}"
        )
    folder = resources.files("brakepedal.sim") / "scenarios"
    return parse_scenario((folder / f"{name}.yaml").read_bytes(), name=name)


def _input_error(error: ValidationError, name: str) -> InputError:
    first: ErrorDetails = error.errors(include_url=False)[0]
    path = error_path(tuple(first["loc"])) or "(document)"
    kind = first["type"]
    reason = {
        "extra_forbidden": "scenario.unknown_field",
        "missing": "scenario.field_missing",
    }.get(kind, "scenario.field_invalid")
    message = str(first["msg"]).removeprefix("Value error, ")
    count = error.error_count()
    more = f" (and {count - 1} more)" if count > 1 else ""
    return InputError(reason, f"scenario {name}: {path}: {message}{more}")


def _fail(name: str, path: str, message: str, reason: str = "scenario.reference_invalid") -> None:
    raise InputError(reason, f"scenario {name}: {path}: {message}")


def _check_references(s: Scenario, name: str) -> None:
    entities = {e.id: e for e in s.entities}
    _unique(name, "entities", [e.id for e in s.entities])
    _unique(name, "clusters", [c.id for c in s.clusters])
    _unique(name, "workloads", [w.id for w in s.workloads])
    _unique_governance(s.governance, name)
    _check_length(s, name)
    for i, entity in enumerate(s.entities):
        if entity.id == "registry":
            _fail(name, f"entities[{i}].id", "'registry' names the registry's operator")
        if entity.owner is not None and entity.owner not in entities:
            _fail(name, f"entities[{i}].owner", f"no entity {entity.owner!r}")
    # Every owner is known now: the walks below cannot leave the graph.
    for i, entity in enumerate(s.entities):
        seen = {entity.id}
        owner = entity.owner
        while owner is not None:
            if owner in seen:
                _fail(name, f"entities[{i}].owner", f"ownership cycle through {owner!r}")
            seen.add(owner)
            owner = entities[owner].owner
    clusters = {c.id: c for c in s.clusters}
    catalogue = default_catalogue()
    for i, cluster in enumerate(s.clusters):
        if cluster.entity not in entities:
            _fail(name, f"clusters[{i}].entity", f"no entity {cluster.entity!r}")
        try:
            known = catalogue.get(cluster.accelerator).id
        except InputError as e:
            _fail(name, f"clusters[{i}].accelerator", e.message)
            raise  # pragma: no cover - _fail raised
        if known != cluster.accelerator:
            _fail(name, f"clusters[{i}].accelerator", f"write the catalogue id {known!r}")
    if s.device_count > MAX_DEVICES:
        _fail(name, "clusters", f"{s.device_count} devices > {MAX_DEVICES}", "scenario.too_large")
    _check_workloads(s, clusters, name)
    _check_governance(s, entities, name)
    _check_actors(s, entities, name)


def _check_governance(s: Scenario, entities: dict[str, Entity], name: str) -> None:
    orders = {o.id for o in s.governance.orders}
    for i, permit in enumerate(s.governance.permits):
        if permit.order not in orders:
            _fail(name, f"governance.permits[{i}].order", f"no order {permit.order!r}")
        if permit.owner_group not in entities:
            _fail(name, f"governance.permits[{i}].owner_group", f"no entity {permit.owner_group!r}")
    for i, lift in enumerate(s.governance.lifts):
        if lift.lifts not in orders:
            _fail(name, f"governance.lifts[{i}].lifts", f"no order {lift.lifts!r}")


def _check_actors(s: Scenario, entities: dict[str, Entity], name: str) -> None:
    from brakepedal.sim.strategies import STRATEGIES  # noqa: PLC0415 (they read scenarios)

    for i, actor in enumerate(s.actors):
        if actor.entity != "registry" and actor.entity not in entities:
            _fail(name, f"actors[{i}].entity", f"no entity {actor.entity!r}")
        strategy = STRATEGIES.get(actor.strategy)
        if strategy is None:
            _fail(
                name,
                f"actors[{i}].strategy",
                f"unknown strategy {actor.strategy!r}; known: {sorted(STRATEGIES)}",
                "scenario.strategy_unknown",
            )
        else:
            problem = strategy.check(actor, s)
            if problem is not None:
                _fail(name, f"actors[{i}].{problem[0]}", problem[1], "scenario.strategy_invalid")


def _unique(name: str, where: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for i, item in enumerate(ids):
        if item in seen:
            _fail(name, f"{where}[{i}].id", f"{item!r} appears twice", "scenario.duplicate_id")
        seen.add(item)


def _unique_governance(g: GovernanceEvents, name: str) -> None:
    """Orders, permits and lifts share one namespace (they are published by id): a second use
    of an id is refused at its own path (``governance.lifts[0].id``), naming the first."""
    seen: dict[str, str] = {}
    lists: tuple[tuple[str, tuple[OrderEvent | PermitEvent | LiftEvent, ...]], ...] = (
        ("orders", g.orders),
        ("permits", g.permits),
        ("lifts", g.lifts),
    )
    for where, events in lists:
        for i, event in enumerate(events):
            path = f"governance.{where}[{i}].id"
            first = seen.get(event.id)
            if first is not None:
                _fail(
                    name,
                    path,
                    f"{event.id!r} appears twice (first at {first})",
                    "scenario.duplicate_id",
                )
            seen[event.id] = path


def _whole(value: float) -> int | None:
    """``value`` as an integer if it is one (to a millionth), else None."""
    nearest = round(value)
    return nearest if abs(value - nearest) < 1e-6 else None


def _check_length(s: Scenario, name: str) -> None:
    """The scenario is a whole number of windows: the world runs window by window, and a
    last window past the end would simulate (and audit) time the scenario does not have."""
    minutes = _whole(s.days * 24 * 60)
    if minutes is None or minutes % s.window_minutes:
        _fail(
            name,
            "days",
            f"{s.days:g} days ({s.days * 24 * 60:g} minutes) is not a whole number of "
            f"{s.window_minutes}-minute windows (window_minutes)",
            "scenario.field_invalid",
        )


def _window_span(s: Scenario, start_hour: float, end_hour: float) -> tuple[int, int]:
    """The windows (by index) a span of hours touches, to the minute: [first, last)."""
    begin, end = round(start_hour * 60), round(end_hour * 60)
    return begin // s.window_minutes, -(-end // s.window_minutes)


def _check_workloads(s: Scenario, clusters: dict[str, Cluster], name: str) -> None:
    taken: dict[str, list[tuple[int, int, float, float, str]]] = {}
    for i, w in enumerate(s.workloads):
        cluster = clusters.get(w.cluster)
        if cluster is None:
            _fail(name, f"workloads[{i}].cluster", f"no cluster {w.cluster!r}")
            return
        if w.first >= cluster.devices:
            _fail(
                name,
                f"workloads[{i}].first",
                f"device {w.first} is not in {w.cluster} (devices 0..{cluster.devices - 1})",
            )
        count = w.devices if w.devices is not None else cluster.devices - w.first
        if w.first + count > cluster.devices:
            _fail(
                name,
                f"workloads[{i}].devices",
                f"devices {w.first}..{w.first + count - 1} are not all in {w.cluster} "
                f"(devices 0..{cluster.devices - 1})",
            )
        if w.start_hour >= s.hours:
            _fail(name, f"workloads[{i}].start_hour", f"after the scenario's end ({s.hours} h)")
        if w.training != (w.lineage is not None):
            _fail(
                name,
                f"workloads[{i}].lineage",
                "training workloads name a lineage, others do not",
            )
        # Absent hours: to the end of the scenario (not start_hour + the scenario's length).
        end = min(s.hours, w.start_hour + w.hours) if w.hours is not None else s.hours
        span = _window_span(s, w.start_hour, end)
        for first, last, start, stop, other in taken.get(w.cluster, []):
            if not (first < w.first + count and w.first < last):
                continue
            if start < end and w.start_hour < stop:
                _fail(
                    name,
                    f"workloads[{i}]",
                    f"shares devices of {w.cluster} with workload {other!r} at the same time",
                    "scenario.devices_overlap",
                )
            theirs = _window_span(s, start, stop)
            if span[0] < theirs[1] and theirs[0] < span[1]:
                _fail(
                    name,
                    f"workloads[{i}]",
                    f"shares devices of {w.cluster} with workload {other!r} within one "
                    f"{s.window_minutes}-minute window (a device's report names one job)",
                    "scenario.devices_overlap",
                )
        taken.setdefault(w.cluster, []).append((w.first, w.first + count, w.start_hour, end, w.id))
