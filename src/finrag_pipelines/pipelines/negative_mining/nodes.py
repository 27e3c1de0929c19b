"""negative_mining nodes: split by document, mine candidates, apply the rules, write ms-swift rows."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from finrag_pipelines.embedding.distributed import encode_with_execution
from finrag_pipelines.embedding.encoders import Encoder
from finrag_pipelines.embedding.store import EmbeddingStore, encode_with_store
from finrag_pipelines.execution import ExecutionConfig
from finrag_pipelines.floors import FloorParams, enforce_floor, floor_verdict
from finrag_pipelines.pipelines.negative_mining.params import (
    CandidateParams,
    FormatParams,
    RerankFilterParams,
    RuleParams,
    SplitParams,
)
from finrag_pipelines.rerank.interfaces import Reranker
from finrag_pipelines.retrieval.interfaces import (
    LexicalIndex,
    TermScoringIndex,
    VectorIndex,
    require_term_scores,
)
from finrag_pipelines.retrieval.types import Unavailable
from finrag_pipelines.text.corpus import indexable

from . import mining, report

logger = logging.getLogger(__name__)


def _corpus_texts(corpus: pd.DataFrame) -> tuple[list[str], dict[str, str], str]:
    ids, texts, digest = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    return ids, dict(zip(ids, texts)), digest


def _check_positives(queries: pd.DataFrame, texts: dict[str, str]) -> None:
    missing = sorted(set(queries["doc_id"].astype(str)) - set(texts))
    if missing:
        raise ValueError(
            f"distilled_queries: {len(missing)} doc_id(s) are not in the corpus (e.g. {missing[:3]}); "
            "the queries were distilled from another corpus — rerun query_distill on this retrieval_dataset."
        )


def split_queries_by_document(distilled_queries: pd.DataFrame, params: SplitParams) -> pd.DataFrame:
    """Assign each query the split of its document (seeded hash of doc_id): no document straddles splits."""
    table = distilled_queries[["query_id", "doc_id"]].astype(str).reset_index(drop=True)
    docs = sorted(set(table["doc_id"]))
    of_doc = dict(zip(docs, mining.assign_split(docs, params.dev_fraction, params.seed)))
    table["split"] = table["doc_id"].map(of_doc)
    counts = table.groupby("split").agg(queries=("query_id", "size"), documents=("doc_id", "nunique"))
    logger.info(
        "negative_mining: split by document (dev_fraction %.2f): %s",
        params.dev_fraction,
        counts.to_dict("index"),
    )
    if len(docs) and "dev" not in set(table["split"]):
        logger.warning(
            "negative_mining: no document landed in dev (%d documents); infonce_dev is empty", len(docs)
        )
    return table


def _dense_candidates(
    qids: list[str],
    pos_ids: list[str],
    qvecs: np.ndarray,
    pvecs: np.ndarray,
    index: VectorIndex,
    params: CandidateParams,
) -> pd.DataFrame:
    positive = np.einsum("ij,ij->i", qvecs, pvecs)  # q · d_pos: the positive's own dense score
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(qids), params.batch_size):  # memory: batch_size x depth hits
        run = index.search_vectors(qvecs[start : start + params.batch_size], params.depth)
        for offset, hits in enumerate(run):
            i = start + offset
            rows.extend(
                (qids[i], pos_ids[i], h.doc_id, r, h.score, "dense", float(positive[i]))
                for r, h in enumerate(hits, 1)
            )
    return pd.DataFrame(rows, columns=mining.CANDIDATE_COLUMNS)


def _bm25_candidates(
    qids: list[str], pos_ids: list[str], queries: list[str], index: TermScoringIndex, params: CandidateParams
) -> pd.DataFrame:
    row_of = {doc_id: i for i, doc_id in enumerate(index.doc_ids)}
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(qids), params.batch_size):
        tokens = index.tokenizer.tokenize_many(queries[start : start + params.batch_size])
        run = index.search_tokens(tokens, params.depth)
        for offset, (toks, hits) in enumerate(zip(tokens, run, strict=True)):
            i = start + offset
            positive = float(index.get_scores(toks)[row_of[pos_ids[i]]])
            rows.extend(
                (qids[i], pos_ids[i], h.doc_id, r, h.score, "bm25", positive) for r, h in enumerate(hits, 1)
            )
    return pd.DataFrame(rows, columns=mining.CANDIDATE_COLUMNS)


def mine_candidates(
    distilled_queries: pd.DataFrame,
    corpus: pd.DataFrame,
    dense_index: VectorIndex,
    base_encoder: Encoder,
    embedding_store: EmbeddingStore,
    bm25_index: LexicalIndex,
    params: CandidateParams,
    execution: ExecutionConfig | None = None,
) -> pd.DataFrame:
    """Retrieve the top ``depth`` dense (and BM25) candidates per query, with the positive's own score.

    Query and positive-document vectors come through the embedding store, so a re-run encodes nothing new;
    ``execution.backend: ray`` encodes the queries on a Ray actor pool (same store, same vectors). BM25
    candidates need the positive's own BM25 score, so a lexical backend without ``get_scores`` (Milvus) is
    refused before anything is encoded.
    """
    scoring = None
    if params.bm25.enabled:
        scoring = require_term_scores(bm25_index, "negative_mining's BM25 candidates")
    _, texts, digest = _corpus_texts(corpus)
    dense_index.check_compatible(corpus_hash=digest, encoder=base_encoder)
    _check_positives(distilled_queries, texts)
    qids = distilled_queries["query_id"].astype(str).tolist()
    pos_ids = distilled_queries["doc_id"].astype(str).tolist()
    queries = distilled_queries["query"].astype(str).tolist()
    qvecs = encode_with_execution(
        base_encoder, queries, "query", embedding_store, params.batch_size, execution
    )
    pvecs = encode_with_store(
        base_encoder, [texts[d] for d in pos_ids], "document", embedding_store, chunk_size=params.batch_size
    )
    tables = [_dense_candidates(qids, pos_ids, qvecs, pvecs, dense_index, params)]
    if scoring is not None:
        scoring.check_compatible(digest)
        tables.append(_bm25_candidates(qids, pos_ids, queries, scoring, params))
    candidates = pd.concat(tables, ignore_index=True)
    logger.info(
        "negative_mining: %d queries, %d candidates (%s), depth %d",
        len(qids),
        len(candidates),
        candidates["source"].value_counts().to_dict(),
        params.depth,
    )
    return candidates


RERANK_SCORE_COLUMNS = ["query_id", "candidate_id", "rerank_score", "rerank_positive_score"]


def score_candidates_with_reranker(
    mining_candidates: pd.DataFrame,
    distilled_queries: pd.DataFrame,
    corpus: pd.DataFrame,
    reranker: Reranker | Unavailable,
    rules: RuleParams,
    rerank_filter: RerankFilterParams,
) -> pd.DataFrame:
    """The reranker's score of every candidate the window could keep, and of the query's positive.

    Off (``rerank_filter.enabled: false``): an empty table, and no reranker is loaded.
    """
    if not rerank_filter.enabled:
        dtypes = (str, str, float, float)
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(RERANK_SCORE_COLUMNS, dtypes)})
    missing = reranker.reason if isinstance(reranker, Unavailable) else None
    if missing:
        raise ValueError(
            f"negative_mining.rerank_filter.enabled is true but no reranker is available: {missing}; "
            "configure globals rerankers.base or turn the filter off."
        )
    _, texts, _ = _corpus_texts(corpus)
    query_of = dict(zip(distilled_queries["query_id"].astype(str), distilled_queries["query"].astype(str)))
    table = mining_candidates.astype({"query_id": str, "doc_id": str, "candidate_id": str})
    # raw ranks count the positive: rank_max + 1 covers the window's end whether or not the positive is above
    window = table[(table["rank"] >= rules.rank_min) & (table["rank"] <= rules.rank_max + 1)]
    window = window[window["candidate_id"] != window["doc_id"]]
    pairs = pd.concat(
        [
            window[["query_id", "candidate_id"]],
            table[["query_id", "doc_id"]].rename(columns={"doc_id": "candidate_id"}),
        ]
    ).drop_duplicates(ignore_index=True)
    queries = [query_of[q] for q in pairs["query_id"]]
    passages = [texts[c] for c in pairs["candidate_id"]]
    scores = np.empty(len(pairs), dtype=np.float32)
    for start in range(0, len(pairs), rerank_filter.chunk_pairs):
        end = start + rerank_filter.chunk_pairs
        scores[start:end] = reranker.score_pairs(queries[start:end], passages[start:end])
    pairs["rerank_score"] = scores
    positive = table.drop_duplicates("query_id").set_index("query_id")["doc_id"]
    own = pairs.set_index(["query_id", "candidate_id"])["rerank_score"]
    pairs["rerank_positive_score"] = [float(own[(q, positive[q])]) for q in pairs["query_id"]]
    logger.info(
        "negative_mining: reranker %s scored %d (query, candidate) pairs of %d queries",
        reranker.name, len(pairs), pairs["query_id"].nunique(),
    )  # fmt: skip
    return pairs[RERANK_SCORE_COLUMNS]


def _reranker_flagged(scores: pd.DataFrame, rerank_filter: RerankFilterParams) -> dict[str, set[str]]:
    if not rerank_filter.enabled or scores.empty:
        return {}
    line = scores["rerank_positive_score"] * (1.0 - rerank_filter.relative_margin)
    hit = scores[scores["rerank_score"] > line]  # the positive itself is labelled before this rule applies
    return hit.groupby("query_id")["candidate_id"].agg(lambda s: set(s.astype(str))).to_dict()


def _parents(corpus: pd.DataFrame) -> dict[str, str] | None:
    if "parent_id" not in corpus.columns:
        return None
    ids, parents = corpus["doc_id"].astype(str), corpus["parent_id"].astype(str)
    return None if (ids == parents).all() else dict(zip(ids, parents))


def select_negatives(
    mining_candidates: pd.DataFrame,
    corpus: pd.DataFrame,
    rules: RuleParams,
    candidates: CandidateParams,
    mining_rerank_scores: pd.DataFrame | None = None,
    rerank_filter: RerankFilterParams | None = None,
) -> pd.DataFrame:
    """Label every candidate (positive, other passages of its document, window, 95% rule, near-duplicate,
    reranker filter) and sample the negatives."""
    ids, texts, _ = _corpus_texts(corpus)
    if candidates.depth < rules.rank_max + 1:
        logger.warning(
            "negative_mining: candidates.depth %d < rules.rank_max + 1 (%d); the window's tail is never seen",
            candidates.depth,
            rules.rank_max + 1,
        )
    positives = mining_candidates.groupby("query_id")["doc_id"].agg(lambda s: set(s.astype(str))).to_dict()
    share = candidates.bm25.share if candidates.bm25.enabled else 0.0
    config = mining.Rules(**rules.model_dump(), bm25_share=share)
    flagged = _reranker_flagged(mining_rerank_scores, rerank_filter) if rerank_filter is not None else {}
    selection = mining.select(
        mining_candidates, positives, texts, ids, config, parents=_parents(corpus), reranker_flagged=flagged
    )
    counts = selection.groupby(["source", "status"]).size().to_dict()
    hard = selection[(selection["status"] == "kept") & (selection["source"] != "random")]
    per_query = hard.groupby("query_id").size().reindex(list(positives), fill_value=0)
    logger.info(
        "negative_mining: statuses %s; %d of %d queries short of %d hard negatives",
        counts,
        int((per_query < rules.num_negatives).sum()),
        len(per_query),
        rules.num_negatives,
    )
    return selection


def build_infonce_rows(
    distilled_queries: pd.DataFrame,
    mining_selection: pd.DataFrame,
    mining_query_split: pd.DataFrame,
    corpus: pd.DataFrame,
    params: FormatParams,
    floor_check: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ms-swift 4.x embedding rows (train, dev): instruction-wrapped query, positive text, negative texts.

    ``floor_check`` is only an ordering input: the rows fine-tuning reads are written after the floor held.
    """
    _, texts, _ = _corpus_texts(corpus)
    examples = mining.training_examples(
        distilled_queries, mining_selection, mining_query_split, params.query_task
    )
    rows = [
        mining.infonce_row(q, texts[d], [texts[n] for n in negs])
        for q, d, negs in zip(
            examples["query_text"], examples["doc_id"], examples["negative_ids"], strict=True
        )
    ]
    table = pd.DataFrame(rows, columns=["messages", "positive_messages", "negative_messages"])
    train, dev = (table[examples["split"] == s].reset_index(drop=True) for s in ("train", "dev"))
    logger.info("negative_mining: %d train rows, %d dev rows", len(train), len(dev))
    return train, dev


def list_infonce_row_ids(
    distilled_queries: pd.DataFrame,
    mining_selection: pd.DataFrame,
    mining_query_split: pd.DataFrame,
    params: FormatParams,
    floor_check: dict[str, Any],
) -> pd.DataFrame:
    """The ids behind each ms-swift row (same order; ``line`` is the 0-based line in its split's file).

    ``floor_check`` is only an ordering input, as for :func:`build_infonce_rows`.
    """
    examples = mining.training_examples(
        distilled_queries, mining_selection, mining_query_split, params.query_task
    )
    examples["line"] = examples.groupby("split").cumcount()
    return examples[["split", "line", "query_id", "doc_id", "negative_ids"]]


def summarise_mining(
    mining_candidates: pd.DataFrame,
    mining_selection: pd.DataFrame,
    mining_query_split: pd.DataFrame,
    rules: RuleParams,
    floor: FloorParams,
) -> dict[str, Any]:
    """Counts per rule and source, short queries, split sizes, score quantiles, and the yield against
    ``negative_mining.floor`` (queries that got at least one hard negative)."""
    stats = report.mining_stats(mining_candidates, mining_selection, mining_query_split, rules.num_negatives)
    kept, total, reasons = report.hard_negative_yield(mining_selection, mining_query_split)
    stats["floor"] = floor_verdict(
        "negative_mining",
        kept,
        total,
        floor,
        reasons,
        unit="queries with a hard negative",
        evidence=["mining_stats", "mining_selection", "mining_candidates"],
        hint="Check negative_mining.rules (rank window, relative_margin) and that the indexes and "
        "distilled_queries belong to this corpus.",
    )
    return stats


def check_mining_floor(mining_stats: dict[str, Any]) -> dict[str, Any]:
    """Fail the run when too few queries got a hard negative (the stats and the selection are saved first)."""
    return enforce_floor(mining_stats["floor"])


def plot_mining_scores(mining_selection: pd.DataFrame) -> Figure:
    """Histogram of dense scores: positives vs kept negatives vs dropped false negatives."""
    return report.score_histogram(mining_selection)
