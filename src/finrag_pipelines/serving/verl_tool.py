"""A verl tool that searches the finrag retrieval server (``FinragSearchTool``).

verl (the project's ``train`` extra) is imported only here and only when present: the request and
formatting logic are plain functions (testable without verl), and the ``BaseTool`` subclass exists
only when ``verl`` imports. Without verl, ``FinragSearchTool(...)`` raises an ``ImportError`` that says
what to install.

Tool config (``conf/base/verl/search_tool.yaml``, verl's ``actor_rollout_ref.rollout.multi_turn.
tool_config_path``)::

    tools:
      - class_name: finrag_pipelines.serving.verl_tool.FinragSearchTool
        config: {type: native, retrieval_service_url: http://127.0.0.1:8000/retrieve, topk: 3}
        tool_schema: {type: function, function: {name: search, ...}}

The model calls ``search`` with ``{"query_list": ["...", ...]}``; it gets back Search-R1's text format,
one block per query::

    Doc 1 (Title: <title>)
    <text>

Kedro-free library module.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import uuid4

import httpx

logger = logging.getLogger(__name__)

QUERY_SEPARATOR = "\n---\n"


class ToolArgumentError(ValueError):
    """The model called the tool with unusable arguments (the message is shown to the model)."""


def parse_query_list(parameters: Mapping[str, Any], max_queries: int | None = None) -> list[str]:
    """The queries of a tool call: ``query_list`` (a list of strings) or a single ``query`` string.

    Raises:
        ToolArgumentError: Naming the argument and what is expected.
    """
    if not isinstance(parameters, Mapping):
        raise ToolArgumentError("the tool arguments must be a JSON object with 'query_list'.")
    raw = parameters.get("query_list")
    if raw is None and isinstance(parameters.get("query"), str):
        raw = [parameters["query"]]
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ToolArgumentError("'query_list' must be a non-empty list of query strings.")
    queries = []
    for i, query in enumerate(raw):
        if not isinstance(query, str) or not query.strip():
            raise ToolArgumentError(f"query_list[{i}] must be a non-empty string, got {query!r:.80}.")
        queries.append(query.strip())
    if max_queries is not None and len(queries) > max_queries:
        raise ToolArgumentError(f"at most {max_queries} queries per call, got {len(queries)}.")
    return queries


def build_request(
    queries: Sequence[str],
    topk: int,
    *,
    method: str | None = None,
    alpha: float | None = None,
    return_scores: bool = True,
) -> dict[str, Any]:
    """The JSON body of ``POST /retrieve`` (Search-R1 fields, plus ``method``/``alpha`` when set)."""
    body: dict[str, Any] = {"queries": list(queries), "topk": int(topk), "return_scores": bool(return_scores)}
    if method is not None:
        body["method"] = method
    if alpha is not None:
        body["alpha"] = float(alpha)
    return body


def _hit_contents(hit: Mapping[str, Any]) -> str:
    document = hit.get("document", hit)  # with scores: {"document": {...}, "score"}; without: the document
    contents = document.get("contents") if isinstance(document, Mapping) else None
    if not isinstance(contents, str):
        raise ValueError(f"a hit has no 'contents' string: {json.dumps(hit, ensure_ascii=False)[:120]}")  # noqa: TRY004
    return contents


def format_passages(hits: Sequence[Mapping[str, Any]]) -> str:
    """One query's hits as Search-R1 text: ``Doc i (Title: <first line>)\\n<rest>`` blocks."""
    blocks = []
    for i, hit in enumerate(hits, start=1):
        title, _, text = _hit_contents(hit).partition("\n")
        blocks.append(f"Doc {i} (Title: {title})\n{text}" if title.strip() else f"Doc {i}\n{text}")
    return "\n\n".join(blocks) if blocks else "No results found."


def format_response(payload: Mapping[str, Any], queries: Sequence[str]) -> str:
    """The server's ``{"result": [...]}`` as tool text, one block per query in query order.

    Raises:
        ValueError: If the payload is not a ``result`` list with one entry per query.
    """
    result = payload.get("result") if isinstance(payload, Mapping) else None
    if not isinstance(result, list) or len(result) != len(queries):
        raise ValueError(
            f"expected {{'result': [...]}} with {len(queries)} lists, got {json.dumps(payload, ensure_ascii=False)[:200]}"
        )
    if len(queries) == 1:
        return format_passages(result[0])
    return QUERY_SEPARATOR.join(
        f"Results for: {query}\n{format_passages(hits)}" for query, hits in zip(queries, result, strict=True)
    )


async def search_async(
    client: httpx.AsyncClient,
    url: str,
    queries: Sequence[str],
    topk: int,
    *,
    method: str | None = None,
    alpha: float | None = None,
    token: str | None = None,
    max_retries: int = 3,
    retry_delay: float = 0.5,
) -> tuple[str, dict[str, Any]]:
    """POST the queries to the server and format the answer for the model.

    Connection errors and 5xx answers are retried (``max_retries`` attempts, growing delay); a 4xx is
    not. A failure is returned as an explicit ``Search error: ...`` text with ``status`` ``"api_error"``
    (the model sees that the search failed), never as an empty result.

    Returns:
        ``(text, metrics)`` with metrics ``{"status", "query_count", "total_results", "attempts",
        "error"}``.
    """
    body = build_request(queries, topk, method=method, alpha=alpha)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    metrics: dict[str, Any] = {"status": "api_error", "query_count": len(queries), "total_results": 0, "attempts": 0,
                               "error": None}
    error = "no attempt made"
    for attempt in range(1, max(1, max_retries) + 1):
        metrics["attempts"] = attempt
        try:
            response = await client.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code < 400:
                try:
                    payload = response.json()
                    text = format_response(payload, queries)
                except ValueError as exc:
                    error = f"bad response from {url}: {exc}"
                    break
                metrics.update(status="success", total_results=sum(len(r) for r in payload["result"]))
                return text, metrics
            error = f"HTTP {response.status_code}: {response.text[:300]}"
            if response.status_code < 500:
                break  # our request is wrong; retrying will not help
        if attempt < max_retries:
            await asyncio.sleep(retry_delay * attempt)
    metrics["error"] = error
    logger.warning("finrag search tool: %s (%d queries, %d attempts)", error, len(queries), metrics["attempts"])
    return f"Search error: {error}", metrics


class ToolSettings:
    """The ``config`` block of the tool's YAML entry, checked.

    Keys: ``retrieval_service_url`` (required), ``topk`` (3), ``method`` / ``alpha`` (server defaults when
    absent), ``timeout`` seconds (30), ``max_retries`` (3), ``max_queries`` (8), ``token_env`` (env var with
    the bearer token, optional).
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        url = config.get("retrieval_service_url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(
                f"FinragSearchTool config 'retrieval_service_url' must be an http(s) URL of POST /retrieve, got {url!r}."
            )
        self.url = url
        self.topk = int(config.get("topk", 3))
        self.method = config.get("method")
        self.alpha = config.get("alpha")
        self.timeout = float(config.get("timeout", 30))
        self.max_retries = int(config.get("max_retries", 3))
        self.max_queries = int(config.get("max_queries", 8))
        token_env = config.get("token_env")
        self.token = os.environ.get(token_env, "").strip() or None if token_env else None
        if token_env and self.token is None:
            raise ValueError(f"FinragSearchTool config names token_env {token_env!r}, but ${token_env} is unset.")


def _verl_classes() -> tuple[Any, Any, Any, Any] | None:
    try:
        from verl.tools.base_tool import BaseTool
        from verl.tools.schemas import OpenAIFunctionToolSchema
    except ImportError:
        return None
    try:
        from verl.tools.schemas import ToolResponse  # verl >= 0.5: execute returns a ToolResponse
    except ImportError:
        ToolResponse = None
    try:
        from verl.utils.rollout_trace import rollout_trace_op
    except ImportError:
        rollout_trace_op = None
    return BaseTool, OpenAIFunctionToolSchema, ToolResponse, rollout_trace_op


_VERL = _verl_classes()

if _VERL is not None:
    _BaseTool, _Schema, _ToolResponse, _trace = _VERL
    _traced = _trace if _trace is not None else (lambda fn: fn)

    class FinragSearchTool(_BaseTool):  # type: ignore[misc, valid-type]
        """verl tool: ``search(query_list)`` against the finrag retrieval server."""

        def __init__(self, config: dict, tool_schema: Any) -> None:
            super().__init__(config, tool_schema)
            self.settings = ToolSettings(config)
            self._instances: dict[str, dict[str, Any]] = {}

        async def create(self, instance_id: str | None = None, **kwargs: Any) -> Any:
            # verl 0.9 returns (instance_id, ToolResponse), older versions the id alone: keep the base's shape
            instance_id = instance_id or str(uuid4())
            self._instances[instance_id] = {"calls": 0}
            return await super().create(instance_id, **kwargs)

        @_traced
        async def execute(self, instance_id: str, parameters: dict[str, Any], **kwargs: Any) -> tuple[Any, float, dict]:
            try:
                queries = parse_query_list(parameters, self.settings.max_queries)
            except ToolArgumentError as exc:
                text, metrics = f"Search error: {exc}", {"status": "bad_arguments", "error": str(exc)}
            else:
                s = self.settings
                async with httpx.AsyncClient(timeout=s.timeout) as client:
                    text, metrics = await search_async(
                        client, s.url, queries, s.topk, method=s.method, alpha=s.alpha, token=s.token,
                        max_retries=s.max_retries,
                    )
            self._instances.setdefault(instance_id, {"calls": 0})["calls"] += 1
            response = _ToolResponse(text=text) if _ToolResponse is not None else text
            return response, 0.0, metrics

        async def calc_reward(self, instance_id: str, **kwargs: Any) -> float:
            return 0.0  # retrieval earns no step reward; the answer reward is computed elsewhere

        async def release(self, instance_id: str, **kwargs: Any) -> None:
            self._instances.pop(instance_id, None)

else:

    class FinragSearchTool:  # type: ignore[no-redef]
        """Placeholder: verl is not installed."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise ImportError(
                "FinragSearchTool needs verl (`pip install -e '.[train]'`, verl 0.9.x); the request and "
                "format functions of finrag_pipelines.serving.verl_tool work without it."
            )
