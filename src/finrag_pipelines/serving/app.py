"""FastAPI app of the retrieval server, speaking the Search-R1 / verl search-tool retriever API.

``POST /retrieve``::

    {"queries": ["...", ...], "topk": 3, "return_scores": true, "method": "hybrid", "alpha": 0.3,
     "rerank": true}
    -> {"result": [[{"document": {"id": "...", "contents": "title\\ntext"}, "score": 1.23}, ...], ...]}

one list per query, in query order. As in Search-R1's ``retrieval_server.py``, ``topk`` may be omitted
(the server's default), ``return_scores`` defaults to false, and without scores each hit is the
document itself (``{"id", "contents"}``). ``method``, ``alpha`` and ``rerank`` (the server's reranker
reorders the first-stage hits; its relevance probability becomes the score) are extensions; other extra
fields are ignored, as Search-R1 does. When the corpus is split into passages, each document also carries
``doc_id``, the document the passage (``id`` = ``<doc_id>#<k>``) belongs to.

``GET /health``: 503 until the backend is warmed up, then 200. ``GET /info``: encoder, instruction,
index metadata, methods, limits and batching counters.

Every invalid request gets a 4xx whose ``detail`` names the field (a body that is not JSON, is nested
too deeply to parse or holds a query with a lone surrogate included); a retriever failure is a 500 with
the cause, never an empty result. With a token configured, ``/retrieve`` and ``/info`` need
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from finrag_pipelines.retrieval.types import RetrievalError
from finrag_pipelines.serving.backend import Passage, SearchBackend, SearchJob, SearchRequestError
from finrag_pipelines.serving.batching import BatcherClosedError, MicroBatcher
from finrag_pipelines.serving.settings import Limits, ServingSettings

logger = logging.getLogger(__name__)

_AUTH_PATHS = ("/retrieve", "/info")


class RetrieveRequest(BaseModel):
    """Body of ``POST /retrieve`` (validated with the server's :class:`Limits` as context)."""

    model_config = ConfigDict(extra="ignore")

    queries: list[StrictStr] = Field(min_length=1)
    topk: StrictInt | None = None
    return_scores: StrictBool = False
    method: Literal["dense", "bm25", "hybrid", "bm25_ngram", "fusion"] | None = None
    alpha: StrictFloat | StrictInt | None = None
    rerank: StrictBool | None = None

    @field_validator("queries")
    @classmethod
    def _check_queries(cls, value: list[str], info: ValidationInfo) -> list[str]:
        limits: Limits = (info.context or {})["limits"]
        if len(value) > limits.max_queries:
            raise ValueError(f"at most {limits.max_queries} queries per request, got {len(value)}")
        for i, query in enumerate(value):
            if not query.strip():
                raise ValueError(f"queries[{i}] is empty; send a non-empty query string")
            bad = next((j for j, ch in enumerate(query) if "\ud800" <= ch <= "\udfff"), None)
            if bad is not None:
                raise ValueError(
                    f"queries[{i}] has a lone surrogate \\u{ord(query[bad]):04x} at character {bad}, "
                    "which is not text; send valid Unicode (a surrogate only as half of a pair)"
                )
            if len(query) > limits.max_query_chars:
                raise ValueError(
                    f"queries[{i}] has {len(query)} characters; the limit is {limits.max_query_chars}"
                )
        return value

    @field_validator("topk")
    @classmethod
    def _check_topk(cls, value: int | None, info: ValidationInfo) -> int | None:
        limits: Limits = (info.context or {})["limits"]
        if value is not None and not 1 <= value <= limits.max_topk:
            raise ValueError(f"topk must be within 1..{limits.max_topk}, got {value}")
        return value

    @field_validator("alpha")
    @classmethod
    def _check_alpha(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(f"alpha must be within [0, 1], got {value}")
        return value


def _error(status: int, field: str, message: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"detail": f"{field}: {message}", "errors": [{"field": field, "message": message}], **extra},
        status_code=status,
        headers=headers,
    )


def _validation_error(exc: ValidationError) -> JSONResponse:
    errors = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in err["loc"]) or "body"
        message = err["msg"].removeprefix("Value error, ")
        errors.append({"field": field, "message": message})
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return JSONResponse({"detail": detail, "errors": errors}, status_code=422)


def _document(p: Passage, passages: bool) -> dict[str, Any]:
    if passages:
        return {"id": p.doc_id, "doc_id": p.parent_id or p.doc_id, "contents": p.contents}
    return {"id": p.doc_id, "contents": p.contents}


def format_results(
    results: list[list[Passage]], return_scores: bool, passages: bool = False
) -> list[list[dict[str, Any]]]:
    """Search-R1's ``result`` list: ``{"document": {...}, "score"}`` per hit, or the bare document.

    Args:
        passages: The corpus is split into passages: each document also names its ``doc_id``.
    """
    if return_scores:
        return [[{"document": _document(p, passages), "score": p.score} for p in hits] for hits in results]
    return [[_document(p, passages) for p in hits] for hits in results]


async def _read_body(request: Request, limit: int) -> bytes | JSONResponse:
    """The request body, or an error response when it is over ``limit`` bytes (header or actual size)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            return _error(400, "Content-Length", f"must be a byte count, got {declared!r}")
        if int(declared) > limit:
            return _error(413, "body", f"{declared} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return _error(413, "body", f"more than {limit} bytes; the limit is {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_json(body: bytes) -> Any:
    """The parsed body, or a 400 naming why it is not JSON the server can read."""
    try:
        return json.loads(body)
    except RecursionError:  # e.g. 200 KB of "[": the parser recurses once per level
        return _error(400, "body", "is nested too deeply to parse; send a flat JSON object")
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, integers of over 4300 digits
        return _error(400, "body", f"is not valid JSON ({exc}); send a JSON object")


class _GuardMiddleware:
    """Pure ASGI middleware: bearer-token check, request log line with latency, JSON 500 on a crash.

    (A pure ASGI middleware rather than ``@app.middleware("http")``, whose per-request overhead is
    measurable at hundreds of requests per second.)
    """

    def __init__(self, app: Any, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token is not None else None

    def _authorised(self, scope: dict[str, Any]) -> bool:
        if self.token is None or scope.get("path") not in _AUTH_PATHS:
            return True
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, given = header.partition(b" ")
        return scheme.lower() == b"bearer" and secrets.compare_digest(given.strip(), self.token)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
            await send(message)

        try:
            if not self._authorised(scope):
                await _error(401, "Authorization", "missing or wrong bearer token")(
                    scope, receive, send_status
                )
            else:
                await self.app(scope, receive, send_status)
        except Exception:
            logger.exception("serving: unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if response_started:
                raise
            await _error(500, "server", "internal error; see the server log")(scope, receive, send_status)
        finally:
            n_queries = (scope.get("state") or {}).get("n_queries")
            logger.info(
                "%s %s -> %d in %.1f ms%s",
                scope.get("method"),
                scope.get("path"),
                status,
                (time.perf_counter() - started) * 1000,
                f" ({n_queries} queries)" if n_queries is not None else "",
            )


def create_app(backend: SearchBackend, settings: ServingSettings, *, token: str | None = None) -> FastAPI:
    """Build the FastAPI app over a loaded backend.

    Args:
        backend: The search backend (indexes already checked against corpus and encoder).
        settings: Limits, batching and defaults.
        token: Bearer token required on ``/retrieve`` and ``/info``; ``None`` = no auth.

    Returns:
        The app; ``app.state.batcher`` is the :class:`MicroBatcher` while it runs.
    """
    limits = settings.limits
    batcher: MicroBatcher[SearchJob, list[list[Passage]]] = MicroBatcher(
        backend.search_jobs,
        size_of=lambda job: len(job.queries),
        max_batch=settings.batcher.max_batch,
        max_wait_ms=settings.batcher.max_wait_ms,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        started = time.perf_counter()
        try:  # warm-up: lazy model loading and thread pools happen before the first real request
            warm = [backend.job(["warm-up"], 1, method) for method in backend.methods]
            if backend.can_rerank:  # loads the reranker's weights before the first request
                warm.append(backend.job(["warm-up"], 1, backend.default_method, rerank=True))
            await batcher.run_in_worker(backend.search_jobs, warm)
        except Exception:
            logger.exception("serving: warm-up search failed; /health stays 503")
        else:
            app.state.ready = True
            logger.info("serving: ready (warm-up %.2fs)", time.perf_counter() - started)
        try:
            yield
        finally:
            app.state.ready = False
            await batcher.stop()

    app = FastAPI(title="finrag retrieval server", lifespan=lifespan)
    app.state.ready = False
    app.state.batcher = batcher

    app.add_middleware(_GuardMiddleware, token=token)

    @app.get("/health")
    async def health() -> JSONResponse:
        if not app.state.ready:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ok", "methods": list(backend.methods), "num_docs": backend.num_docs})

    @app.get("/info")
    async def info() -> JSONResponse:
        return JSONResponse(
            {
                **backend.info(),
                "ready": bool(app.state.ready),
                "default_topk": settings.default_topk,
                "limits": limits.model_dump(),
                "batcher": {
                    "max_batch": settings.batcher.max_batch,
                    "max_wait_ms": settings.batcher.max_wait_ms,
                    **batcher.stats.to_dict(),
                },
                "auth": "bearer" if token is not None else "none",
            }
        )

    @app.post("/retrieve")
    async def retrieve(request: Request) -> JSONResponse:
        body = await _read_body(request, limits.max_body_bytes)
        if isinstance(body, JSONResponse):
            return body
        payload = _parse_json(body)
        if isinstance(payload, JSONResponse):
            return payload
        if not isinstance(payload, dict):
            return _error(422, "body", f"must be a JSON object, got {type(payload).__name__}")
        try:
            parsed = RetrieveRequest.model_validate(payload, context={"limits": limits})
        except ValidationError as exc:
            return _validation_error(exc)
        if not app.state.ready:
            return _error(503, "server", "not ready yet; retry when GET /health returns 200")
        try:
            job = backend.job(
                parsed.queries,
                settings.default_topk if parsed.topk is None else parsed.topk,
                parsed.method,
                None if parsed.alpha is None else float(parsed.alpha),
                parsed.rerank,
            )
        except SearchRequestError as exc:
            return _error(422, exc.field, exc.message)
        request.state.n_queries = len(job.queries)
        try:
            results = await batcher.submit(job)
        except BatcherClosedError as exc:
            return _error(503, "server", str(exc))
        except RetrievalError as exc:
            logger.error("serving: retrieval failed: %s", exc)
            return _error(500, "retrieval", str(exc))
        return JSONResponse({"result": format_results(results, parsed.return_scores, backend.has_passages)})

    return app
