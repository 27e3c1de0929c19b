"""Where an answering system's searches go: the project's retrieval backend in process, or a finrag-serve.

Both implement :class:`Searcher`: ``await search(queries, k)`` returns one list of :class:`Hit` per query,
best first. :class:`BackendSearcher` runs a :class:`~finrag_pipelines.serving.backend.SearchBackend` (BM25,
dense or hybrid over checked indexes) in one worker thread, so the event loop keeps the LLM requests of
other questions moving while a query is encoded. :class:`HttpSearcher` posts to a running ``finrag-serve``'s
``POST /retrieve`` (Search-R1's API), retrying connection errors and 5xx answers.

A search that fails for good raises :class:`SearchError`; the question then fails (listed, never scored).

Kedro-free library module.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import httpx

from finrag_pipelines.rag.grounding import Hit
from finrag_pipelines.serving.backend import SearchBackend

logger = logging.getLogger(__name__)


class SearchError(RuntimeError):
    """A search failed for good (the retriever raised, or the server kept failing)."""


class Searcher(Protocol):
    """Anything that answers a batch of search queries asynchronously."""

    name: str
    """What is searched, for records and reports (e.g. ``hybrid``, ``url:bm25``)."""

    async def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """The top ``k`` passages of each query, best first, in query order.

        Raises:
            SearchError: When the search fails for good.
        """
        ...

    async def aclose(self) -> None:
        """Release connections and threads (idempotent)."""
        ...


def _hit(doc_id: str, contents: str, score: float) -> Hit:
    title, _, text = contents.partition("\n")
    return Hit(str(doc_id), title, text, float(score))


class BackendSearcher:
    """Searches a :class:`SearchBackend` in this process, one method (``bm25``, ``dense`` or ``hybrid``).

    Searches run in a worker thread (the event loop keeps other questions' LLM requests moving while a query
    is encoded), one at a time per backend: searchers of the same backend share its ``lock``.

    Args:
        backend: The backend (indexes checked against the corpus and the encoder when it was built).
        method: The backend method to use.
        name: The name recorded with each answer (e.g. ``hybrid_finetuned``).
        lock: Shared by every searcher of ``backend`` (a new one when ``None``).
    """

    def __init__(
        self, backend: SearchBackend, method: str, name: str, lock: threading.Lock | None = None
    ) -> None:
        if method not in backend.methods:
            raise ValueError(
                f"retriever {name!r} needs method {method!r}, which this backend cannot serve "
                f"(available: {list(backend.methods)}); build the missing index with index_build."
            )
        self._backend = backend
        self._method = method
        self.name = name
        self._lock = lock if lock is not None else threading.Lock()

    def _search(self, queries: list[str], k: int) -> list[list[Hit]]:
        with self._lock:
            passages = self._backend.search(queries, k, method=self._method)
        return [[_hit(p.doc_id, p.contents, p.score) for p in hits] for hits in passages]

    async def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """See :meth:`Searcher.search`."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, self._search, list(queries), k)
        except Exception as exc:  # any retriever failure fails the question; never an empty result
            raise SearchError(
                f"{self.name} search of {len(queries)} queries (first {str(queries[0])[:60]!r}) failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    async def aclose(self) -> None:
        """Nothing to release (the loop's default executor runs the searches)."""


class HttpSearcher:
    """Searches a running ``finrag-serve`` through ``POST /retrieve``.

    Args:
        url: The endpoint, e.g. ``http://127.0.0.1:8000/retrieve``.
        method: ``bm25``, ``dense`` or ``hybrid``; ``None`` lets the server use its default.
        timeout_s: Seconds per HTTP attempt.
        max_retries: Attempts on connection errors and 5xx answers (a 4xx is not retried).
        token: Bearer token when the server runs with ``--token-env``.
        retry_delay_s: Wait before the second attempt (then growing linearly).
    """

    def __init__(
        self,
        url: str,
        method: str | None,
        *,
        timeout_s: float,
        max_retries: int,
        token: str | None = None,
        retry_delay_s: float = 0.5,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the search URL must be an http(s) URL of POST /retrieve, got {url!r}.")
        self.url = url
        self.method = method
        self.name = f"url:{method or 'server default'}"
        self._timeout_s = timeout_s
        self._max_retries = max(1, max_retries)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._retry_delay_s = retry_delay_s
        self._client: httpx.AsyncClient | None = None

    async def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """See :meth:`Searcher.search`."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout_s)
        body: dict[str, Any] = {"queries": list(queries), "topk": int(k), "return_scores": True}
        if self.method is not None:
            body["method"] = self.method
        error = "no attempt made"
        for attempt in range(1, self._max_retries + 1):
            try:
                response = await self._client.post(self.url, json=body, headers=self._headers)
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 400:
                    try:
                        return parse_retrieve_response(response.json(), len(queries))
                    except ValueError as exc:
                        raise SearchError(f"bad answer from {self.url}: {exc}") from exc
                error = f"HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code < 500:
                    break
            if attempt < self._max_retries:
                await asyncio.sleep(self._retry_delay_s * attempt)
        raise SearchError(f"search at {self.url} failed after {attempt} attempt(s): {error}")

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def parse_retrieve_response(payload: Any, n_queries: int) -> list[list[Hit]]:
    """Read ``{"result": [[{"document": {"id", "contents"}, "score"}, ...], ...]}`` (one list per query).

    Raises:
        ValueError: Naming what is missing.
    """
    result = payload.get("result") if isinstance(payload, Mapping) else None
    if not isinstance(result, list) or len(result) != n_queries:
        raise ValueError(f"expected {{'result': [...]}} with {n_queries} lists, got {str(payload)[:200]}")
    out = []
    for hits in result:
        parsed = []
        for hit in hits if isinstance(hits, list) else [None]:
            document = hit.get("document") if isinstance(hit, Mapping) else None
            if not isinstance(document, Mapping) or not isinstance(document.get("contents"), str):
                raise ValueError(f"a hit has no document contents: {str(hit)[:120]}")  # noqa: TRY004
            if document.get("id") in (None, ""):
                raise ValueError(f"a hit has no document id: {str(hit)[:120]}")
            score = hit.get("score", 0.0)
            parsed.append(
                _hit(str(document["id"]), document["contents"], float(score) if score is not None else 0.0)
            )
        out.append(parsed)
    return out
