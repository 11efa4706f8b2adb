"""``brakepedal agent run``: sample, report, deliver and answer challenges until stopped.

Three loops share one spool (SQLite serialises them):

* **collect** (its own thread): at every second of the agent's clock, one sample per device;
  every closed window becomes a signed report in the spool (:class:`Collector`);
* **deliver** (its own thread): every ``deliver_every`` seconds, the oldest undelivered reports
  go to the registry (:class:`Deliverer`); an unreachable registry means backoff with jitter;
* **challenges and governance**, on the delivery thread: answer pending challenges from the
  minute records on the node, and, with a :class:`GovernanceWatcher`, refresh and verify the
  governance state every ``governance_every`` seconds; reports name the state it last verified
  (its mirror is what the gate reads).

The clock is real time by default. Simulations and tests run it faster from a start in the
past (``Clock(start, speed)``): the samples, windows and reports are those of simulated time,
while the registry's clock-skew check still holds because simulated time stays behind real time.

Stopping (SIGTERM, SIGINT or :meth:`Agent.stop`) finishes the current tick, stops both loops
and closes the spool: everything produced is on disk, and a restart continues the chains.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from brakepedal.agent.attribution import Attributor
from brakepedal.agent.collector import Collector, HandInSource
from brakepedal.agent.delivery import Deliverer, RegistryClient, answer_challenges
from brakepedal.agent.governance_sync import GovernanceWatcher
from brakepedal.agent.identity import DeviceIdentity
from brakepedal.agent.spool import RetryPolicy, Spool
from brakepedal.agent.telemetry import TelemetryBackend
from brakepedal.errors import BrakepedalError, InputError
from brakepedal.model.types import utc_datetime
from brakepedal.wire.report import GovernanceSeen

__all__ = ["Agent", "Clock"]

log = logging.getLogger("brakepedal.agent")


class Clock:
    """Real time, or simulated time from ``start`` running ``speed`` times as fast."""

    def __init__(self, start: datetime | None = None, speed: float = 1.0) -> None:
        if not 0.0 < speed <= 10_000.0:
            raise InputError("agent.speed_invalid", f"clock speed {speed} is not in (0, 10000]")
        self._start = utc_datetime(start) if start is not None else None
        self._speed = speed
        self._origin = time.monotonic()

    def now(self) -> datetime:
        if self._start is None:
            return datetime.now(UTC)
        elapsed = (time.monotonic() - self._origin) * self._speed
        return self._start + timedelta(seconds=elapsed)

    def sleep_until(self, moment: datetime, stop: threading.Event) -> bool:
        """Sleep until the clock reads ``moment``; False if ``stop`` was set meanwhile."""
        remaining = (moment - self.now()).total_seconds() / self._speed
        if remaining > 0:
            return not stop.wait(remaining)
        return not stop.is_set()


@dataclass
class AgentStats:
    ticks: int = 0
    reports: int = 0
    stored: int = 0
    unreachable: int = 0
    challenges: int = 0


class Agent:
    """One node's agent: a collector, a deliverer and their two threads."""

    def __init__(
        self,
        *,
        backend: TelemetryBackend,
        spool: Spool,
        identities: Sequence[DeviceIdentity],
        client: RegistryClient,
        deliver_spool: Spool,
        clock: Clock | None = None,
        window: timedelta = timedelta(minutes=5),
        attributor: Attributor | None = None,
        handins: HandInSource | None = None,
        governance: Callable[[], GovernanceSeen | None] = lambda: None,
        deliver_every: float = 1.0,
        batch: int = 500,
        challenge_every: float = 5.0,
        retry: RetryPolicy | None = None,
        watcher: GovernanceWatcher | None = None,
        governance_every: float = 60.0,
    ) -> None:
        self.clock = clock or Clock()
        # With a watcher, reports name the governance state it last verified.
        self.watcher = watcher
        if watcher is not None:
            governance = watcher.seen
        self._governance_every = governance_every
        self.spool = spool
        self.identities = list(identities)
        self.collector = Collector(
            backend,
            spool,
            identities,
            window=window,
            attributor=attributor,
            governance=governance,
            handins=handins,
        )
        self.client = client
        # One connection per thread: the collector writes through ``spool``, delivery through
        # its own connection to the same file (SQLite serialises the two).
        if deliver_spool is spool:
            raise InputError(
                "agent.spool_shared", "delivery needs its own connection to the spool file"
            )
        self.deliver_spool = deliver_spool
        self.deliverer = Deliverer(
            self.deliver_spool, client, batch=batch, policy=retry or RetryPolicy()
        )
        self._deliver_every = deliver_every
        self._challenge_every = challenge_every
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.stats = AgentStats()
        self.errors: list[str] = []

    def enrol(self, envelopes: Sequence[bytes]) -> None:
        """Enrol every device (idempotent at the registry); retried by the caller on failure."""
        for envelope in envelopes:
            self.client.enrol(envelope)

    def start(self) -> None:
        for name, target in (("collect", self._collect), ("deliver", self._deliver)):
            thread = threading.Thread(target=target, name=f"agent-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def request_stop(self) -> None:
        """Ask both loops to stop (safe from a signal handler)."""
        self._stop.set()

    def stop(self, *, drain: bool = True) -> None:
        """Stop both loops; with ``drain``, one last bounded attempt to deliver the rest."""
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        if any(thread.is_alive() for thread in self._threads):
            # A loop is still inside a call: touching its connection now could interleave
            # two transactions on it. Leave the rest to the next start.
            log.error("agent loops did not stop in 30 s; not flushing")
            return
        try:
            # Report the minute in progress rather than leave it unreported.
            self.stats.reports += len(self.collector.flush(self.clock.now()))
        except BrakepedalError as e:
            log.warning("flush failed", extra={"reason": e.reason, "detail": e.message})
        if drain:
            try:
                self.stats.stored += self.deliverer.drain(rounds=100)
            except BrakepedalError as e:
                log.warning("final delivery failed", extra={"reason": e.reason})

    def wait(self, seconds: float | None = None) -> None:
        """Block until stopped (or ``seconds`` pass)."""
        self._stop.wait(seconds)

    def _collect(self) -> None:
        moment = self.clock.now().replace(microsecond=0)
        while self.clock.sleep_until(moment, self._stop):
            try:
                produced = self.collector.tick(moment)
            except BrakepedalError as e:  # a device read failed: log, keep the others going
                self.errors.append(f"{e.reason}: {e.message}")
                log.warning("tick failed", extra={"reason": e.reason, "detail": e.message})
                produced = []
            self.stats.ticks += 1
            self.stats.reports += len(produced)
            moment += timedelta(seconds=1)
            # Behind by more than a minute (suspended host): skip ahead, the gap shows.
            lag = self.clock.now() - moment
            if lag > timedelta(minutes=1):
                moment = self.clock.now().replace(microsecond=0)

    def _deliver(self) -> None:
        next_challenge = next_governance = time.monotonic()
        while not self._stop.wait(self._deliver_every):
            if self.watcher is not None and time.monotonic() >= next_governance:
                next_governance = time.monotonic() + self._governance_every
                self.watcher.refresh(datetime.now(UTC))  # never raises; keeps the last good
            try:
                while not self._stop.is_set() and (stored := self.deliverer.deliver()) > 0:
                    self.stats.stored += stored
                if time.monotonic() >= next_challenge:
                    next_challenge = time.monotonic() + self._challenge_every
                    self.stats.challenges += answer_challenges(
                        self.deliver_spool, self.client, [i.device for i in self.identities]
                    )
            except BrakepedalError as e:
                self.stats.unreachable += 1
                log.warning("delivery failed", extra={"reason": e.reason, "detail": e.message})
