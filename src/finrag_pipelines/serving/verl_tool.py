"""A verl tool that searches the finrag retrieval server (``FinragSearchTool``).

verl (the project's ``train`` extra) is imported only here and only when present: the request logic
and the text protocol (:mod:`.tool_text`, re-exported here) are plain functions (testable without
verl), and the ``BaseTool`` subclass exists only when ``verl`` imports. Without verl,
``FinragSearchTool(...)`` raises an ``ImportError`` that says what to install.

Tool config (``conf/base/verl/search_tool.yaml``, verl's ``actor_rollout_ref.rollout.multi_turn.
tool_config_path``)::

    tools:
      - class_name: finrag_pipelines.serving.verl_tool.FinragSearchTool
        config: {type: native, retrieval_service_url: http://127.0.0.1:8000/retrieve, topk: 3}
        tool_schema: {type: function, function: {name: search, ...}}

The model calls ``search`` with ``{"query_list": ["...", ...]}``; it gets back Search-R1's text format,
one block per query, each passage headed by its rank and its document id in square brackets (issue 12's
grounding contract: answers cite the ids they use, ``[a123]``)::

    Doc 1 [a123] (Title: <title>)
    <text>

:data:`PASSAGE_HEADER_RE` / :func:`passage_ids` read the ids back (the search-QA reward does, from the
tool responses in a verl trajectory). A row's ``extra_info.tools_kwargs.search.create_kwargs.source_doc_id``
reaches :meth:`FinragSearchTool.create` (verl 0.9's ``ToolAgentLoop`` calls ``create(create_kwargs=...)``
once per tool call); ``execute`` then returns a step reward of 1.0 when the search returned that document
(verl 0.9.1 only records step rewards, in ``extra_info["tool_rewards"]`` of the reward call).

Kedro-free library module.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import uuid4

import httpx

from finrag_pipelines.serving.tool_text import (  # re-exported: the tool's text protocol
    PASSAGE_HEADER_RE,
    QUERY_SEPARATOR,
    ToolArgumentError,
    format_passages,
    format_response,
    hit_ids,
    parse_query_list,
    passage_ids,
)

__all__ = [
    "PASSAGE_HEADER_RE", "QUERY_SEPARATOR", "FinragSearchTool", "ToolArgumentError", "ToolSettings",
    "build_request", "format_passages", "format_response", "hit_ids", "parse_query_list", "passage_ids",
    "search_async",
]  # fmt: skip
logger = logging.getLogger(__name__)


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
    max_chars: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """POST the queries to the server and format the answer for the model.

    Connection errors and 5xx answers are retried (``max_retries`` attempts, growing delay); a 4xx is
    not. A failure is returned as an explicit ``Search error: ...`` text with ``status`` ``"api_error"``
    (the model sees that the search failed), never as an empty result.

    Returns:
        ``(text, metrics)`` with metrics ``{"status", "query_count", "total_results", "attempts",
        "error", "doc_ids"}`` (``doc_ids``: every returned document id, empty on failure).
    """
    body = build_request(queries, topk, method=method, alpha=alpha)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    metrics: dict[str, Any] = {
        "status": "api_error",
        "query_count": len(queries),
        "total_results": 0,
        "attempts": 0,
        "error": None,
        "doc_ids": [],
    }
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
                    text = format_response(payload, queries, max_chars)
                    ids = hit_ids(payload)
                except ValueError as exc:
                    error = f"bad response from {url}: {exc}"
                    break
                metrics.update(status="success", total_results=len(ids), doc_ids=ids)
                return text, metrics
            error = f"HTTP {response.status_code}: {response.text[:300]}"
            if response.status_code < 500:
                break  # our request is wrong; retrying will not help
        if attempt < max_retries:
            await asyncio.sleep(retry_delay * attempt)
    metrics["error"] = error
    logger.warning(
        "finrag search tool: %s (%d queries, %d attempts)", error, len(queries), metrics["attempts"]
    )
    return f"Search error: {error}", metrics


class ToolSettings:
    """The ``config`` block of the tool's YAML entry, checked.

    Keys: ``retrieval_service_url`` (required), ``topk`` (3), ``method`` / ``alpha`` (server defaults when
    absent), ``timeout`` seconds (30), ``max_retries`` (3), ``max_queries`` (8), ``max_passage_chars``
    (each passage body cut to this many characters; absent = whole passages), ``token_env`` (env var with
    the bearer token, optional).
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        url = config.get("retrieval_service_url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(
                "FinragSearchTool config 'retrieval_service_url' must be an http(s) URL of POST /retrieve, "
                f"got {url!r}."
            )
        self.url = url
        self.topk = int(config.get("topk", 3))
        self.method = config.get("method")
        self.alpha = config.get("alpha")
        self.timeout = float(config.get("timeout", 30))
        self.max_retries = int(config.get("max_retries", 3))
        self.max_queries = int(config.get("max_queries", 8))
        chars = config.get("max_passage_chars")
        if chars is not None and (isinstance(chars, bool) or not isinstance(chars, int) or chars < 1):
            raise ValueError(
                f"FinragSearchTool config 'max_passage_chars' must be an integer >= 1 or absent, "
                f"got {chars!r}."
            )
        self.max_passage_chars = chars
        token_env = config.get("token_env")
        self.token = os.environ.get(token_env, "").strip() or None if token_env else None
        if token_env and self.token is None:
            raise ValueError(
                f"FinragSearchTool config names token_env {token_env!r}, but ${token_env} is unset."
            )


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
            # verl 0.9 returns (instance_id, ToolResponse), older versions the id alone: keep the base's
            # shape. verl 0.9's ToolAgentLoop passes the row's extra_info.tools_kwargs.search.create_kwargs
            # as create_kwargs.
            instance_id = instance_id or str(uuid4())
            create_kwargs = kwargs.get("create_kwargs") or {}
            source = create_kwargs.get("source_doc_id") if isinstance(create_kwargs, Mapping) else None
            self._instances[instance_id] = {"calls": 0, "source_doc_id": str(source) if source else None}
            return await super().create(instance_id, **kwargs)

        @_traced
        async def execute(
            self, instance_id: str, parameters: dict[str, Any], **kwargs: Any
        ) -> tuple[Any, float, dict]:
            try:
                queries = parse_query_list(parameters, self.settings.max_queries)
            except ToolArgumentError as exc:
                text, metrics = f"Search error: {exc}", {"status": "bad_arguments", "error": str(exc)}
            else:
                s = self.settings
                async with httpx.AsyncClient(timeout=s.timeout) as client:
                    text, metrics = await search_async(
                        client,
                        s.url,
                        queries,
                        s.topk,
                        method=s.method,
                        alpha=s.alpha,
                        token=s.token,
                        max_retries=s.max_retries,
                        max_chars=s.max_passage_chars,
                    )
            state = self._instances.setdefault(instance_id, {"calls": 0, "source_doc_id": None})
            state["calls"] += 1
            # step reward: did this search return the row's source document? verl 0.9.1 records it in
            # extra_info["tool_rewards"] (never adds it to the advantage); the search-QA reward
            # cross-checks it
            hit = state["source_doc_id"] is not None and state["source_doc_id"] in metrics.get("doc_ids", [])
            metrics["source_hit"] = hit
            response = _ToolResponse(text=text) if _ToolResponse is not None else text
            return response, 1.0 if hit else 0.0, metrics

        async def calc_reward(self, instance_id: str, **kwargs: Any) -> float:
            return 0.0  # the answer reward is computed by the project's compute_score

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
