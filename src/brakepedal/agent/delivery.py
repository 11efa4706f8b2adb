"""Delivery: spooled reports to the registry, with retries, backoff and jitter.

The registry answers per report: ``accepted`` and ``duplicate`` both mean "stored" (a
duplicate is a resend of a report the registry already holds, e.g. after an agent crash
between sending and recording the answer), so the spool marks them delivered. ``rejected``
reports stay in the spool with their own backoff: the registry kept them as evidence, and a
report rejected for ``ingest.sequence_gap`` is accepted once its predecessor arrives.

When the registry cannot be reached (connection refused, timeout, 5xx), nothing is marked and
the whole agent backs off: capped exponential delay with full jitter
(:class:`~brakepedal.agent.spool.RetryPolicy`), so a fleet that lost its registry does not
return in one synchronised wave. Reports keep being produced into the spool meanwhile; an
outage leaves no gap, only a delay.

Reasons: ``delivery.unreachable`` (TransportError), ``delivery.refused`` (the registry refused
the whole batch: a 4xx with its reason), ``delivery.answer_invalid``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from brakepedal.agent.spool import RetryPolicy, Spool, SpooledReport
from brakepedal.errors import InputError, TransportError
from brakepedal.model.types import DeviceId

log = logging.getLogger("brakepedal.agent")

__all__ = ["Deliverer", "DeliveryStats", "RegistryClient", "answer_challenges"]


class RegistryClient:
    """The registry's HTTP API as the agent uses it."""

    def __init__(
        self, url: str, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._client = httpx.Client(base_url=url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise TransportError(
                "delivery.unreachable", f"{method} {path}: {type(e).__name__}: {e}"
            ) from e
        if response.status_code >= 500:
            raise TransportError(
                "delivery.unreachable", f"{method} {path}: HTTP {response.status_code}"
            )
        if response.status_code >= 400:
            try:
                problem = response.json()
                reason, detail = str(problem["reason"]), str(problem["detail"])
            except (ValueError, KeyError, TypeError):
                reason, detail = "delivery.refused", response.text[:200]
            raise InputError(reason, f"{method} {path}: HTTP {response.status_code}: {detail}")
        return response

    def enrol(self, envelope: bytes) -> dict[str, Any]:
        answer: dict[str, Any] = self._call("POST", "/v1/devices", content=envelope).json()
        return answer

    def submit(self, envelopes: Sequence[bytes]) -> list[dict[str, Any]]:
        body = b'{"reports":[' + b",".join(envelopes) + b"]}"
        answer = self._call("POST", "/v1/reports", content=body).json()
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != len(envelopes):
            raise TransportError("delivery.answer_invalid", "the registry's answer is malformed")
        return results

    def pending_challenges(self, device: DeviceId) -> list[dict[str, Any]]:
        answer = self._call("GET", f"/v1/challenges/pending/{device}").json()
        challenges = answer.get("challenges", []) if isinstance(answer, dict) else []
        return [c for c in challenges if isinstance(c, dict)]

    def answer_challenge(self, number: int, minutes: Sequence[bytes]) -> None:
        body = b'{"minutes":[' + b",".join(minutes) + b"]}"
        self._call("POST", f"/v1/challenges/{number}/answer", content=body)

    def checkpoint(self) -> bytes:
        return self._call("GET", "/v1/log/checkpoint").content

    def governance_files(self) -> dict[str, bytes]:
        names = self._call("GET", "/v1/governance/files").json().get("files", [])
        return {
            str(name): self._call("GET", f"/v1/governance/files/{name}").content for name in names
        }

    def governance_evidence(self) -> bytes:
        return self._call("GET", "/v1/governance/evidence").content


@dataclass
class DeliveryStats:
    """Counts since the deliverer started."""

    batches: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    unreachable: int = 0
    refused: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class Deliverer:
    """Sends the spool's oldest undelivered reports, in chain order, in batches."""

    def __init__(
        self,
        spool: Spool,
        client: RegistryClient,
        *,
        policy: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen dataclass
        batch: int = 500,
        rng: random.Random | None = None,
    ) -> None:
        if not 1 <= batch <= 10_000:
            raise InputError("delivery.batch_invalid", f"batch size {batch} is not 1..10000")
        self._spool = spool
        self._client = client
        self._policy = policy
        self._batch = batch
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._failures = 0
        self.next_attempt: datetime | None = None
        self.stats = DeliveryStats()

    def deliver(self, at: datetime | None = None) -> int:
        """One round: send what is due; the number of reports now stored at the registry.

        Returns 0 without sending while backing off after an unreachable registry.
        """
        now = at or datetime.now(UTC)
        if self.next_attempt is not None and now < self.next_attempt:
            return 0
        due = self._in_chain_order(self._spool.due(at=now, limit=self._batch))
        if not due:
            return 0
        try:
            results = self._client.submit([item.envelope for item in due])
        except TransportError:
            self._failures += 1
            self.stats.unreachable += 1
            self.next_attempt = now + self._policy.delay(self._failures, self._rng)
            raise
        except InputError as e:
            # The registry refused the whole batch: back off as for an outage, and send
            # smaller batches if it was too large.
            self._failures += 1
            self.stats.refused += 1
            if e.reason == "ingest.batch_too_large":
                self._batch = max(1, self._batch // 2)
            self.next_attempt = now + self._policy.delay(self._failures, self._rng)
            raise
        self._failures = 0
        self.next_attempt = None
        self.stats.batches += 1
        stored = 0
        for item, result in zip(due, results, strict=True):
            status = result.get("status") if isinstance(result, dict) else None
            if status in ("accepted", "duplicate"):
                self._spool.delivered(item.device, item.sequence, at=now)
                stored += 1
                if status == "accepted":
                    self.stats.accepted += 1
                else:
                    self.stats.duplicate += 1
            else:
                reason = str(result.get("reason")) if isinstance(result, dict) else "?"
                self.stats.rejected += 1
                self.stats.reasons[reason] = self.stats.reasons.get(reason, 0) + 1
                self._spool.failed(
                    item.device, item.sequence, at=now, policy=self._policy, rng=self._rng
                )
        return stored

    def _in_chain_order(self, due: list[SpooledReport]) -> list[SpooledReport]:
        """Of ``due``, each device's reports from its first undelivered one, without a hole.

        A report the registry rejected waits out its own backoff; its successors wait with it
        instead of being sent (and rejected as a gap, and kept as evidence) meanwhile.
        """
        expected = self._spool.first_undelivered()
        ready = []
        for item in sorted(due, key=lambda r: (r.device, r.sequence)):
            if expected.get(item.device) == item.sequence:
                ready.append(item)
                expected[item.device] = item.sequence + 1
        return ready

    def drain(self, *, rounds: int = 1000) -> int:
        """Deliver until nothing is due, ignoring the backoff (shutdown); total stored."""
        total = 0
        self.next_attempt = None
        for _ in range(rounds):
            sent = self.deliver()
            total += sent
            if not sent:
                break
        return total

    @staticmethod
    def undelivered(spool: Spool) -> int:
        spooled, delivered = spool.counts()
        return spooled - delivered


def answer_challenges(spool: Spool, client: RegistryClient, devices: Sequence[DeviceId]) -> int:
    """Answer every pending challenge for ``devices`` from the minute records on this node."""
    answered = 0
    for device in devices:
        for challenge in client.pending_challenges(device):
            sequence = challenge.get("sequence")
            number = challenge.get("id")
            if not isinstance(sequence, int) or not isinstance(number, int):
                continue
            minutes = spool.minutes(device, sequence)
            if not minutes:
                continue
            try:
                client.answer_challenge(number, minutes)
            except InputError as e:  # this answer was refused; the others still go
                log.warning("challenge answer refused", extra={"id": number, "reason": e.reason})
                continue
            answered += 1
    return answered
