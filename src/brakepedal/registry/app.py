"""The registry's HTTP API (FastAPI): ``create_app(registry)``; ``docs/registry.md`` lists it.

Handlers read raw bodies, because the bytes a device signed are the bytes kept, and run the
registry's (blocking, database-bound) work in the thread pool. Every error is JSON
``{"reason": ..., "detail": ...}`` with the status its kind calls for: 400 malformed input,
401/403 credentials, 404 unknown things, 413 too large, 422 input that does not verify,
503 storage trouble. Nothing a client sends can make a 500: the last handler turns anything
unexpected into a logged ``registry.internal`` 500 that the schemathesis test would catch.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any

import msgspec
from fastapi import Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from brakepedal.crypto.canonical import parse_json_object
from brakepedal.errors import BrakepedalError, InfrastructureError, InputError, TrustError
from brakepedal.model.limits import Limits
from brakepedal.model.types import parse_utc_timestamp
from brakepedal.registry.ingest import ACCEPTED, DUPLICATE, ItemResult
from brakepedal.registry.service import Registry
from brakepedal.tlog.tiles import Tile

__all__ = ["create_app"]

log = logging.getLogger("brakepedal.registry")

_STATUS = {
    "registry.not_found": 404,
    "ingest.batch_too_large": 413,
    "registry.credential_missing": 401,
    "registry.credential_invalid": 401,
    "registry.role_insufficient": 403,
}
_MAX_BODY = 16_000_000
#: A day's minute records (1,440) at about 1 KB each, with room to spare.
_MAX_ANSWER = 4_000_000
#: A finding set the registry appends to its log (the log's own bound on an entry).
_MAX_FINDINGS = 1_000_000
_ANSWER_LIMITS = Limits(max_json_bytes=_MAX_ANSWER)


def _plain_str(value: object) -> str:
    # str subclasses (the identifier types an ItemResult may carry) encode as their text.
    if isinstance(value, str):
        return str(value)
    raise NotImplementedError(type(value))


_ANSWER_ENCODER = msgspec.json.Encoder(enc_hook=_plain_str)


def _ingest_answer(results: list[ItemResult], tree_size: int) -> bytes:
    """The ingest answer's JSON: straight from the result structs, or, should a result's text
    hold what UTF-8 cannot (a lone surrogate; rejections keep peeked text as the evidence
    does, so none should), through the standard library, which escapes it: the batch is
    stored by now, and its answer must not fail."""
    try:
        return _ANSWER_ENCODER.encode({"results": results, "tree_size": tree_size})
    except UnicodeEncodeError:
        answer = {"results": [r.to_json() for r in results], "tree_size": tree_size}
        return json.dumps(answer, separators=(",", ":")).encode()


class Problem(BaseModel):
    reason: str
    detail: str


class ItemResultModel(BaseModel):
    index: int
    status: str
    device: str | None
    sequence: int | None
    log_index: int | None
    reason: str | None
    detail: str | None


class IngestResponse(BaseModel):
    results: list[ItemResultModel]
    tree_size: int


class EnrolledModel(BaseModel):
    device: str
    trust_level: str
    manufacturer: str
    serial: str
    log_index: int
    created: bool


class Health(BaseModel):
    status: str
    tree_size: int


class ProofModel(BaseModel):
    index: int | None = None
    old_size: int | None = None
    size: int
    hashes: list[str]


class Aggregate(BaseModel):
    operator: str
    day: str
    devices: int
    reports: int
    busy_hours: float
    energy_kwh: float
    flop_bound: str


class ChallengeRef(BaseModel):
    id: int
    device: str
    sequence: int


#: Sequences, sizes and indices: stored as signed 64-bit integers, so every route bounds them.
_MAX_NUMBER = 2**62
_NAME_MAX = 128
_NAME_PATTERN = r"^[a-z0-9][a-z0-9._:-]*$"


class ChallengeRequest(BaseModel):
    device: Annotated[str, Field(min_length=1, max_length=_NAME_MAX, pattern=_NAME_PATTERN)]
    sequence: Annotated[int, Field(ge=0, le=_MAX_NUMBER)]


def _problem(status: int, reason: str, detail: str) -> JSONResponse:
    return JSONResponse({"reason": reason, "detail": detail}, status_code=status)


def _status_of(error: BrakepedalError) -> int:
    if error.reason in _STATUS:
        return _STATUS[error.reason]
    if isinstance(error, InfrastructureError):
        return 503
    if isinstance(error, TrustError):
        return 422
    return 400


def _raw_body(schema: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {media: {"schema": schema}}}}


_ENVELOPE_SCHEMA = {
    "type": "object",
    "required": ["payload", "payloadType", "signatures"],
    "properties": {
        "payload": {"type": "string"},
        "payloadType": {"type": "string"},
        "signatures": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"keyid": {"type": "string"}, "sig": {"type": "string"}},
            },
        },
    },
}


async def _body(request: Request, limit: int = _MAX_BODY) -> bytes:
    """The body, refused (413) as soon as it is known to exceed ``limit``: never buffered whole."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise InputError("ingest.batch_too_large", f"body: {declared} bytes > {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InputError("ingest.batch_too_large", f"body: more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _credential(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> tuple[str, str]:
    if authorization is None or not authorization.startswith("Bearer "):
        raise InputError("registry.credential_missing", "send Authorization: Bearer <token>")
    registry: Registry = request.app.state.registry
    who = registry.role_of(authorization.removeprefix("Bearer ").strip())
    if who is None:
        raise InputError("registry.credential_invalid", "unknown credential")
    return who


def _auditor(who: Annotated[tuple[str, str], Depends(_credential)]) -> str:
    if who[1] not in ("auditor", "admin"):
        raise InputError("registry.role_insufficient", f"{who[0]} is not an auditor")
    return who[0]


def _admin(who: Annotated[tuple[str, str], Depends(_credential)]) -> str:
    if who[1] != "admin":
        raise InputError("registry.role_insufficient", f"{who[0]} is not an admin")
    return who[0]


Auditor = Annotated[str, Depends(_auditor)]
Admin = Annotated[str, Depends(_admin)]
Size = Annotated[int, Query(ge=0, le=_MAX_NUMBER)]
Name = Annotated[str, Path(max_length=_NAME_MAX, pattern=_NAME_PATTERN)]


def create_app(registry: Registry, *, inline_ingest: bool = False) -> FastAPI:  # noqa: PLR0915
    """The ASGI app serving ``registry`` (one route table).

    ``inline_ingest`` verifies and stores a batch on the event loop's own thread, so a worker
    busy with a batch accepts no new connection meanwhile and the kernel hands the next one to
    an idle worker: what ``registry serve --workers N`` uses (N processes, each one batch at a
    time, as in a pre-fork server). A lone worker keeps the default, a thread per batch, so
    that health, proofs and checkpoints answer while a batch is verified.
    """
    app = FastAPI(
        title="brakepedal registry",
        version="1",
        description="Verifies, stores and logs accelerator usage reports; serves proofs.",
    )
    app.state.registry = registry
    metrics = CollectorRegistry()
    items_total = Counter(
        "brakepedal_reports_total",
        "Report items by outcome and reason",
        ["status", "reason"],
        registry=metrics,
    )
    batch_seconds = Histogram(
        "brakepedal_ingest_batch_seconds", "Time to ingest one batch", registry=metrics
    )
    requests_total = Counter(
        "brakepedal_http_requests_total",
        "HTTP requests by route and status",
        ["route", "status"],
        registry=metrics,
    )
    tree_size = Gauge("brakepedal_log_tree_size", "Entries in the log", registry=metrics)
    tree_size.set_function(registry.store.size)

    @app.exception_handler(BrakepedalError)
    async def _brakepedal_error(_request: Request, error: BrakepedalError) -> JSONResponse:
        return _problem(_status_of(error), error.reason, error.message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error", extra={"path": request.url.path})
        return _problem(500, "registry.internal", type(error).__name__)

    @app.middleware("http")
    async def _observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        requests_total.labels(name, str(response.status_code)).inc()
        log.info(
            "request",
            extra={
                "method": request.method,
                "route": name,
                "status": response.status_code,
                "ms": round((time.perf_counter() - started) * 1000, 3),
            },
        )
        return response

    # ------------------------------------------------------------------ operations

    @app.get("/healthz", response_model=Health)
    async def health() -> dict[str, Any]:
        return {"status": "ok", "tree_size": await run_in_threadpool(registry.store.size)}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------------ devices, reports

    @app.post(
        "/v1/devices",
        response_model=EnrolledModel,
        responses={400: {"model": Problem}, 422: {"model": Problem}},
        openapi_extra=_raw_body(_ENVELOPE_SCHEMA),
    )
    async def enrol(request: Request) -> dict[str, Any]:
        body = await _body(request)
        enrolled = await run_in_threadpool(registry.enrol, body)
        log.info("enrolled", extra={"device": enrolled.device, "new_enrolment": enrolled.created})
        return dataclasses.asdict(enrolled)

    @app.get("/v1/devices/{device}", responses={404: {"model": Problem}})
    async def device(device: Name) -> dict[str, Any]:
        return await run_in_threadpool(registry.device, device, private=False)

    @app.post(
        "/v1/reports",
        response_model=IngestResponse,
        responses={400: {"model": Problem}, 413: {"model": Problem}},
        openapi_extra=_raw_body(
            {
                "type": "object",
                "required": ["reports"],
                "properties": {"reports": {"type": "array", "items": _ENVELOPE_SCHEMA}},
            }
        ),
    )
    async def ingest(request: Request) -> Response:
        body = await _body(request)
        started = time.perf_counter()
        if inline_ingest:
            results = registry.ingest_body(body)
        else:
            results = await run_in_threadpool(registry.ingest_body, body)
        batch_seconds.observe(time.perf_counter() - started)
        outcomes = collections.Counter((r.status, r.reason or "") for r in results)
        for (status, reason), count in outcomes.items():
            items_total.labels(status, reason).inc(count)
        accepted = outcomes[(ACCEPTED, "")]
        duplicates = sum(n for (status, _), n in outcomes.items() if status == DUPLICATE)
        log.info(
            "batch",
            extra={
                "items": len(results),
                "accepted": accepted,
                "duplicates": duplicates,
                "rejected": len(results) - accepted - duplicates,
            },
        )
        size = (
            registry.store.size() if inline_ingest else await run_in_threadpool(registry.store.size)
        )
        # Encoded straight from the result structs, not validated item by item against
        # IngestResponse (which documents it): the results are ours, and a batch holds up to
        # a thousand of them.
        return Response(_ingest_answer(results, size), media_type="application/json")

    @app.get("/v1/reports/{device}/{sequence}", responses={404: {"model": Problem}})
    async def report(
        device: Name,
        sequence: Annotated[int, Path(ge=0, le=_MAX_NUMBER)],
        _who: Auditor,
    ) -> dict[str, Any]:
        index, envelope = await run_in_threadpool(registry.report, device, sequence)
        return {"log_index": index, "envelope": parse_json_object(envelope, what="envelope")}

    @app.get("/v1/rejections")
    async def rejected(
        _who: Auditor,
        after: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        rows = await run_in_threadpool(lambda: registry.rejections(after=after, limit=limit))
        return {"rejections": rows}

    # ------------------------------------------------------------------ the log

    @app.get("/v1/log/checkpoint", response_class=PlainTextResponse)
    async def checkpoint() -> Response:
        note = await run_in_threadpool(registry.checkpoint)
        return Response(note, media_type="text/plain; charset=utf-8")

    @app.post(
        "/v1/findings",
        responses={400: {"model": Problem}, 413: {"model": Problem}},
        openapi_extra=_raw_body(_ENVELOPE_SCHEMA),
    )
    async def publish_findings(request: Request, who: Auditor) -> dict[str, Any]:
        body = await _body(request, _MAX_FINDINGS)
        index = await run_in_threadpool(registry.publish_findings, body)
        log.info("findings published", extra={"auditor": who, "log_index": index})
        return {"log_index": index}

    @app.get(
        "/v1/log/checkpoint/witnessed",
        response_class=PlainTextResponse,
        responses={404: {"model": Problem}},
    )
    async def witnessed_checkpoint(
        cosignatures: Annotated[int, Query(ge=1, le=100)] = 1,
    ) -> Response:
        note = await run_in_threadpool(registry.witnessed_checkpoint, cosignatures)
        if note is None:
            raise InputError(
                "registry.not_found", f"no checkpoint has {cosignatures} cosignatures yet"
            )
        return Response(note, media_type="text/plain; charset=utf-8")

    @app.post(
        "/v1/log/cosignatures",
        response_class=PlainTextResponse,
        responses={400: {"model": Problem}, 422: {"model": Problem}},
        openapi_extra=_raw_body({"type": "string"}, "text/plain"),
    )
    async def cosign(request: Request) -> Response:
        body = await _body(request)
        merged = await run_in_threadpool(registry.add_cosignatures, body)
        return Response(merged, media_type="text/plain; charset=utf-8")

    @app.get("/v1/log/proof/inclusion", response_model=ProofModel)
    async def inclusion(index: Size, size: Size) -> Response:
        proof = await run_in_threadpool(registry.inclusion, index, size)
        return Response(proof.to_json(), media_type="application/json")

    @app.get("/v1/log/proof/consistency", response_model=ProofModel)
    async def consistency(old: Size, new: Size) -> Response:
        def build() -> bytes:
            from brakepedal.tlog.proof import ConsistencyProof  # noqa: PLC0415

            if not 0 < old <= new <= registry.store.size():
                raise InputError(
                    "registry.proof_range",
                    f"old {old}, new {new}: need 0 < old <= new <= {registry.store.size()}",
                )
            hashes = tuple(registry.log.consistency_proof(old, new))
            return ConsistencyProof(old, new, hashes).to_json()

        return Response(await run_in_threadpool(build), media_type="application/json")

    @app.get("/v1/log/tile/{path:path}", responses={400: {"model": Problem}})
    async def tile(path: Annotated[str, Path(max_length=200)]) -> Response:
        def read() -> bytes:
            t = Tile.from_path("tile/" + path)
            if t.level < 0 or path.startswith("entries/"):
                raise InputError("registry.not_found", "entry bundles need an auditor")
            size = registry.store.size()
            first = (t.index * 256 + t.width) << (8 * t.level)
            if first > size:
                raise InputError("registry.not_found", f"tile {path} is beyond the tree")
            return registry.log.tile(t.level, t.index, t.width)

        return Response(await run_in_threadpool(read), media_type="application/octet-stream")

    @app.get("/v1/log/entries")
    async def entries(
        _who: Auditor,
        start: Size,
        end: Size,
    ) -> dict[str, Any]:
        if not start < end <= start + 1000:
            raise InputError("registry.range_invalid", "need start < end <= start + 1000")
        rows = await run_in_threadpool(registry.store.read_entries, start, end)
        # Base64: entries are bytes (a governance target may be any file), and an auditor
        # must get back exactly the bytes whose leaf hashes it recomputes.
        return {"start": start, "entries": [base64.b64encode(row).decode() for row in rows]}

    # ------------------------------------------------------------------ challenges

    @app.post("/v1/challenges", response_model=ChallengeRef, responses={404: {"model": Problem}})
    async def challenge(request: ChallengeRequest, who: Auditor) -> dict[str, Any]:
        number = await run_in_threadpool(
            lambda: registry.challenge(request.device, request.sequence, by=who)
        )
        return {"id": number, "device": request.device, "sequence": request.sequence}

    @app.get("/v1/challenges/pending/{device}")
    async def pending(device: Name) -> dict[str, Any]:
        return {"challenges": await run_in_threadpool(registry.pending_challenges, device)}

    @app.post(
        "/v1/challenges/{number}/answer",
        responses={400: {"model": Problem}, 422: {"model": Problem}},
        openapi_extra=_raw_body(
            {
                "type": "object",
                "required": ["minutes"],
                "properties": {"minutes": {"type": "array", "items": {"type": "object"}}},
            }
        ),
    )
    async def answer(
        number: Annotated[int, Path(ge=1, le=2**62)], request: Request
    ) -> dict[str, Any]:
        body = await _body(request, _MAX_ANSWER)

        def store() -> None:
            from brakepedal.crypto.canonical import canonical_json  # noqa: PLC0415

            expected = registry.challenge_minute_count(number)  # unknown or answered: refused
            document = parse_json_object(body, what="answer", limits=_ANSWER_LIMITS)
            minutes = document.get("minutes")
            if set(document) != {"minutes"} or not isinstance(minutes, list):
                raise InputError("registry.answer_invalid", 'want {"minutes": [record, ...]}')
            if len(minutes) != expected or not all(isinstance(m, dict) for m in minutes):
                raise InputError(
                    "registry.answer_invalid", f"want the report's {expected} minute records"
                )
            registry.answer_challenge(number, [canonical_json(m) for m in minutes])

        await run_in_threadpool(store)
        return {"id": number, "status": "answered"}

    @app.get("/v1/challenges/{number}", responses={404: {"model": Problem}})
    async def challenge_status(
        number: Annotated[int, Path(ge=1, le=2**62)], _who: Auditor
    ) -> dict[str, Any]:
        return await run_in_threadpool(registry.challenge_status, number)

    # ------------------------------------------------------------------ governance

    @app.get("/v1/governance/files")
    async def governance_index() -> dict[str, Any]:
        files = await run_in_threadpool(registry.governance_files)
        return {"files": sorted(files)}

    @app.get("/v1/governance/files/{path:path}", responses={404: {"model": Problem}})
    async def governance_file(
        path: Annotated[str, Path(max_length=300, pattern=r"^[A-Za-z0-9._/-]+$")],
    ) -> Response:
        data = await run_in_threadpool(registry.governance_file, path)
        return Response(data, media_type="application/octet-stream")

    @app.get("/v1/governance/evidence")
    async def governance_evidence() -> Response:
        return Response(
            await run_in_threadpool(registry.governance_evidence), media_type="application/json"
        )

    @app.post(
        "/v1/governance/proposals",
        responses={400: {"model": Problem}, 422: {"model": Problem}},
        openapi_extra=_raw_body({"type": "object"}),
    )
    async def governance_publish(request: Request) -> dict[str, Any]:
        body = await _body(request)
        indices = await run_in_threadpool(registry.publish_governance, body)
        log.info("governance published", extra={"files": sorted(indices)})
        return {"published": indices}

    @app.post("/v1/governance/timestamp")
    async def governance_timestamp(_who: Admin) -> dict[str, Any]:
        return {"published": await run_in_threadpool(registry.refresh_governance_timestamp)}

    # ------------------------------------------------------------------ accounting

    @app.get("/v1/accounting/operators", response_model=list[Aggregate])
    async def aggregates(
        day: date, tree_size: Annotated[int | None, Query(ge=0, le=2**62)] = None
    ) -> list[dict[str, Any]]:
        return await run_in_threadpool(lambda: registry.public_aggregates(day, tree_size=tree_size))

    @app.get("/v1/accounting/devices/{device}")
    async def device_usage(
        device: Name,
        _who: Auditor,
        start: Annotated[str, Query(max_length=40)],
        end: Annotated[str, Query(max_length=40)],
    ) -> dict[str, Any]:
        since, until = parse_utc_timestamp(start), parse_utc_timestamp(end)
        return await run_in_threadpool(
            lambda: registry.device_usage(device, start=since, end=until)
        )

    @app.get("/v1/status")
    async def status(_who: Auditor) -> dict[str, Any]:
        counts = await run_in_threadpool(registry.counts)
        return counts | {"now": datetime.now(UTC).isoformat()}

    return app
