"""evaluation nodes: runs of each retriever, fusion tuned on the tune split, metrics on the report split."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from finrag_pipelines.embedding.encoders import Encoder
from finrag_pipelines.embedding.store import EmbeddingStore
from finrag_pipelines.pipelines.evaluation.params import (
    BootstrapParams,
    FusionParams,
    MetricParams,
    RetrieveParams,
    SplitParams,
)
from finrag_pipelines.pipelines.evaluation.report import plot_metrics, render_markdown
from finrag_pipelines.project_paths import portable_text
from finrag_pipelines.retrieval.dense import DenseRetriever
from finrag_pipelines.retrieval.fusion import rrf, weighted_sum
from finrag_pipelines.retrieval.interfaces import LexicalIndex, VectorIndex
from finrag_pipelines.retrieval.metrics import metric_names, paired_bootstrap, query_metrics
from finrag_pipelines.retrieval.runs import frame_to_run, run_to_frame, unavailable_frame, unavailable_reason
from finrag_pipelines.retrieval.splits import assign_splits
from finrag_pipelines.retrieval.types import Hit, RetrievalError, Retriever, Run, Unavailable
from finrag_pipelines.text.corpus import indexable
from finrag_pipelines.text.passages import document_ranking

logger = logging.getLogger(__name__)


def split_queries(eval_queries: pd.DataFrame, split: SplitParams) -> pd.DataFrame:
    """Assign each query to ``tune`` or ``report`` by a seeded hash of its id (stable under reordering)."""

    splits = pd.DataFrame(
        {
            "query_id": eval_queries["query_id"],
            "split": assign_splits(eval_queries["query_id"], split.tune_fraction, split.seed),
        }
    )
    logger.info("evaluation: query splits %s", splits["split"].value_counts().to_dict())
    return splits


def _search(
    retriever: Retriever, corpus: pd.DataFrame, queries: pd.DataFrame, params: RetrieveParams
) -> pd.DataFrame:
    texts = list(queries["text"])
    run: Run = []
    for start in range(0, len(texts), params.batch_size):
        batch = texts[start : start + params.batch_size]
        try:
            hits = retriever.search(batch, params.depth)
        except Exception as exc:  # a failed retrieval aborts the evaluation; it is never scored as a miss
            raise RetrievalError(
                f"retriever '{retriever.name}' failed on queries {start}..{start + len(batch) - 1}: {exc}"
            ) from exc
        if len(hits) != len(batch):
            raise RetrievalError(
                f"retriever '{retriever.name}' returned {len(hits)} result lists for {len(batch)} queries"
            )
        run.extend(hits)
    known = set(corpus["doc_id"])
    unknown = {h.doc_id for hits in run for h in hits} - known
    if unknown:
        raise RetrievalError(
            f"retriever '{retriever.name}' returned ids not in the corpus, e.g. {sorted(unknown)[:5]}"
        )
    empty = sum(1 for hits in run if not hits)
    if empty:
        logger.warning("evaluation: %s found nothing for %d of %d queries", retriever.name, empty, len(run))
    return run_to_frame(list(queries["query_id"]), run)


def retrieve_bm25(
    index: LexicalIndex | Unavailable,
    corpus: pd.DataFrame,
    eval_queries: pd.DataFrame,
    retrieve: RetrieveParams,
) -> pd.DataFrame:
    """Run a lexical (BM25) index over the evaluation queries, after checking it was built from this corpus.

    Any backend (bm25s or Lucene folder, Milvus collection) that implements ``LexicalIndex``. An optional
    index recorded as not built (``bm25_lucene`` without ``index_build.lucene.compare``) gives a run marked
    unavailable.
    """
    if isinstance(index, Unavailable):
        logger.warning("evaluation: lexical retriever not evaluated: %s", index.reason)
        return unavailable_frame(index.reason)
    _, _, digest = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    index.check_compatible(digest)
    return _search(index, corpus, eval_queries, retrieve)


def retrieve_dense(
    index: VectorIndex | Unavailable,
    encoder: Encoder | Unavailable,
    embedding_store: EmbeddingStore,
    corpus: pd.DataFrame,
    eval_queries: pd.DataFrame,
    retrieve: RetrieveParams,
) -> pd.DataFrame:
    """Run a dense index with its encoder; the index must match the corpus, encoder and instruction.

    Query vectors go through the embedding store, so an interrupted or repeated evaluation resumes. An
    optional encoder or index that does not exist (no fine-tuned model yet) gives a run marked unavailable
    with the reason, which the report shows as *not evaluated*.
    """
    for missing in (encoder, index):
        if isinstance(missing, Unavailable):
            logger.warning("evaluation: dense retriever not evaluated: %s", missing.reason)
            return unavailable_frame(missing.reason)
    _, _, digest = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    index.check_compatible(corpus_hash=digest, encoder=encoder)
    retriever = DenseRetriever(index, encoder, batch_size=retrieve.batch_size, store=embedding_store)
    return _search(retriever, corpus, eval_queries, retrieve)


def fuse_rrf(
    dense_run: pd.DataFrame, bm25_run: pd.DataFrame, eval_queries: pd.DataFrame, fusion: FusionParams
) -> pd.DataFrame:
    """Reciprocal rank fusion of the dense and BM25 runs (no tuning needed)."""
    reason = _unavailable(dense_run, bm25_run)
    if reason:
        return unavailable_frame(reason)
    qids = list(eval_queries["query_id"])
    fused = rrf(
        [frame_to_run(dense_run, qids), frame_to_run(bm25_run, qids)], k=fusion.rrf_k, depth=fusion.depth
    )
    return run_to_frame(qids, fused)


def _weighted(
    dense_run: pd.DataFrame, bm25_run: pd.DataFrame, qids: list[str], weight: float, fusion: FusionParams
) -> Run:
    runs = [frame_to_run(dense_run, qids), frame_to_run(bm25_run, qids)]
    return weighted_sum(runs, [weight, 1.0 - weight], method=fusion.normalisation, depth=fusion.depth)


def _unavailable(*runs: pd.DataFrame) -> str | None:
    return next((r for r in map(unavailable_reason, runs) if r), None)


def passage_parents(corpus: pd.DataFrame | None) -> dict[str, str] | None:
    """Passage id → document id when the corpus holds passages (corpus_prep.passages), else ``None``."""
    if corpus is None or "parent_id" not in corpus.columns:
        return None
    ids, parents = corpus["doc_id"].astype(str), corpus["parent_id"].astype(str)
    return None if (ids == parents).all() else dict(zip(ids, parents))


def ranked_documents(hits: list[Hit], parents: dict[str, str] | None) -> list[str]:
    """The document ids a ranked list is scored on: relevance is judged per document, so a passage run counts
    each document once, at its best passage's rank (the max over its passages)."""
    ids = [h.doc_id for h in hits]
    return ids if parents is None else document_ranking(ids, parents)


def _relevance(qrels: pd.DataFrame) -> dict[str, dict[str, int]]:
    rel: dict[str, dict[str, int]] = {}
    for qid, did, grade in zip(qrels["query_id"], qrels["doc_id"], qrels["score"]):
        if grade > 0:
            rel.setdefault(qid, {})[did] = int(grade)
    return rel


def tune_fusion_weight(
    dense_run: pd.DataFrame,
    bm25_run: pd.DataFrame,
    eval_queries: pd.DataFrame,
    eval_qrels: pd.DataFrame,
    query_splits: pd.DataFrame,
    fusion: FusionParams,
    metrics: MetricParams,
    corpus: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Pick the dense weight of the weighted hybrid on the ``tune`` split only (never on ``report``).

    With ``fusion.fixed_dense_weight`` set, that weight is used as given (e.g. one tuned on a dev set when
    this run evaluates a held-out test set) and nothing is tuned here.
    """
    reason = _unavailable(dense_run, bm25_run)
    if reason:
        return {
            "dense_weight": None,
            "metric": fusion.tune_metric,
            "n_tune_queries": 0,
            "grid": [],
            "source": f"not tuned: {reason}",
        }
    if fusion.fixed_dense_weight is not None:
        logger.info(
            "evaluation: weighted hybrid dense weight fixed in conf at %.2f", fusion.fixed_dense_weight
        )
        return {
            "dense_weight": fusion.fixed_dense_weight,
            "metric": fusion.tune_metric,
            "n_tune_queries": 0,
            "grid": [],
            "source": "fixed in conf (evaluation.fusion.fixed_dense_weight)",
        }
    relevance = _relevance(eval_qrels)
    tune_ids = set(query_splits.loc[query_splits["split"] == "tune", "query_id"])
    qids = [q for q in eval_queries["query_id"] if q in tune_ids and q in relevance]
    if not qids:
        raise ValueError(
            "the tune split has no answerable queries; raise evaluation.split.tune_fraction or set "
            "evaluation.fusion.fixed_dense_weight"
        )
    if fusion.tune_metric not in metric_names(metrics.ks, metrics.cutoff):
        raise ValueError(
            f"fusion.tune_metric {fusion.tune_metric!r} is not one of "
            f"{metric_names(metrics.ks, metrics.cutoff)}"
        )
    grid = []
    parents = passage_parents(corpus)
    for weight in fusion.weight_grid:
        fused = _weighted(dense_run, bm25_run, qids, weight, fusion)
        scores = [
            query_metrics(ranked_documents(hits, parents), relevance[q], metrics.ks, metrics.cutoff)[
                fusion.tune_metric
            ]
            for q, hits in zip(qids, fused)
        ]
        grid.append({"dense_weight": float(weight), fusion.tune_metric: float(np.mean(scores))})
    best = max(grid, key=lambda row: (row[fusion.tune_metric], -abs(row["dense_weight"] - 0.5)))
    logger.info(
        "evaluation: weighted hybrid dense weight %.2f (%s %.4f on %d tune queries)",
        best["dense_weight"],
        fusion.tune_metric,
        best[fusion.tune_metric],
        len(qids),
    )
    return {
        "dense_weight": best["dense_weight"],
        "metric": fusion.tune_metric,
        "n_tune_queries": len(qids),
        "grid": grid,
        "source": "tuned on the tune split",
    }


def fuse_weighted(
    dense_run: pd.DataFrame,
    bm25_run: pd.DataFrame,
    eval_queries: pd.DataFrame,
    fusion_weight: dict[str, Any],
    fusion: FusionParams,
) -> pd.DataFrame:
    """Weighted sum of normalised dense and BM25 scores with the tuned dense weight."""
    reason = _unavailable(dense_run, bm25_run)
    if reason:
        return unavailable_frame(reason)
    qids = list(eval_queries["query_id"])
    return run_to_frame(
        qids, _weighted(dense_run, bm25_run, qids, float(fusion_weight["dense_weight"]), fusion)
    )


def score_runs(
    eval_queries: pd.DataFrame,
    eval_qrels: pd.DataFrame,
    query_splits: pd.DataFrame,
    metrics: MetricParams,
    corpus: pd.DataFrame | None = None,
    **runs: pd.DataFrame,
) -> pd.DataFrame:
    """Per-query metrics of every run: ``retriever, query_id, split, <metrics>``.

    Queries without any relevant document cannot be scored; they are left out and counted. When the corpus
    holds passages, each run is scored as a document run (a document at its best passage's rank).
    """
    parents = passage_parents(corpus)
    if parents is not None:
        logger.info(
            "evaluation: %d passages of %d documents; runs scored per document",
            len(parents),
            len(set(parents.values())),
        )
    relevance = _relevance(eval_qrels)
    qids = [q for q in eval_queries["query_id"] if q in relevance]
    skipped = len(eval_queries) - len(qids)
    if skipped:
        logger.warning("evaluation: %d queries have no relevant document and are not scored", skipped)
    split_of = dict(zip(query_splits["query_id"], query_splits["split"]))
    rows = []
    for name, frame in runs.items():
        if unavailable_reason(frame):
            logger.warning("evaluation: %s not scored: %s", name, unavailable_reason(frame))
            continue
        for qid, hits in zip(qids, frame_to_run(frame, qids)):
            ranked = ranked_documents(hits, parents)
            scores = query_metrics(ranked, relevance[qid], metrics.ks, metrics.cutoff)
            rows.append({"retriever": name, "query_id": qid, "split": split_of[qid], **scores})
    return pd.DataFrame(rows)


def record_retriever_status(**runs: pd.DataFrame) -> dict[str, str]:
    """``{"<retriever>": "evaluated" | "not evaluated: <reason>"}`` for every configured run."""
    return {
        name: f"not evaluated: {unavailable_reason(frame)}" if unavailable_reason(frame) else "evaluated"
        for name, frame in runs.items()
    }


def summarise_metrics(per_query_metrics: pd.DataFrame, metrics: MetricParams) -> dict[str, dict[str, float]]:
    """Mean metrics per retriever on the ``report`` split: ``{"<retriever>": {"top1", ..., "n_queries"}}``."""
    report = per_query_metrics[per_query_metrics["split"] == "report"]
    names = metric_names(metrics.ks, metrics.cutoff)
    out: dict[str, dict[str, float]] = {}
    for retriever, group in report.groupby("retriever", sort=False):
        out[str(retriever)] = {name: round(float(group[name].mean()), 6) for name in names}
        out[str(retriever)]["n_queries"] = int(len(group))
    return out


def compare_retrievers(
    per_query_metrics: pd.DataFrame, retriever_status: dict[str, str], bootstrap: BootstrapParams
) -> list[dict[str, Any]]:
    """Paired bootstrap intervals of ``a − b`` on the report split for each configured pair and metric.

    A pair with a retriever that was not evaluated (e.g. no fine-tuned model) is listed as skipped with the
    reason.
    """
    report = per_query_metrics[per_query_metrics["split"] == "report"]
    out: list[dict[str, Any]] = []
    for a, b in bootstrap.comparisons:
        unknown = {a, b} - set(retriever_status)
        if unknown:
            raise ValueError(
                f"evaluation.bootstrap.comparisons names unknown retrievers {sorted(unknown)}; "
                f"known: {sorted(retriever_status)}"
            )
        skipped = [f"{n} {retriever_status[n]}" for n in (a, b) if retriever_status[n] != "evaluated"]
        if skipped:
            out.append({"a": a, "b": b, "status": "skipped", "reason": "; ".join(skipped)})
            continue
        left = report[report["retriever"] == a].set_index("query_id")
        right = report[report["retriever"] == b].set_index("query_id").loc[left.index]
        for metric in bootstrap.metrics:
            ci = paired_bootstrap(
                left[metric].to_numpy(),
                right[metric].to_numpy(),
                bootstrap.n_resamples,
                bootstrap.confidence,
                bootstrap.seed,
            )
            out.append(
                {
                    "a": a,
                    "b": b,
                    "metric": metric,
                    "mean_diff": ci.mean_diff,
                    "low": ci.low,
                    "high": ci.high,
                    "p_value": ci.p_value,
                    "n_queries": ci.n_queries,
                    "confidence": bootstrap.confidence,
                }
            )
    return out


def write_report(
    retrieval_metrics: dict[str, dict[str, float]],
    retrieval_comparisons: list[dict[str, Any]],
    retriever_status: dict[str, str],
    fusion_weight: dict[str, Any],
    fusion_weight_finetuned: dict[str, Any],
    query_splits: pd.DataFrame,
    corpus_prep_report: dict[str, Any],
    bm25_index_meta: dict[str, Any],
    bm25_plain_index_meta: dict[str, Any],
    dense_index_meta: dict[str, Any],
    dense_pretrained_index_meta: dict[str, Any],
    dense_finetuned_index_meta: dict[str, Any],
    dataset: str,
    rerank_settings: dict[str, Any] | None = None,
    fusion_settings: dict[str, Any] | None = None,
    vocabulary_ablation: dict[str, Any] | None = None,
    bm25_ngram_index_meta: dict[str, Any] | None = None,
    bm25_lucene_index_meta: dict[str, Any] | None = None,
) -> str:
    """The markdown report (metrics, bootstrap differences, fusion tuning, rerank stage, index provenance).

    Paths under the project root are written relative to it (the report travels; the machine does not).
    """
    return portable_text(
        render_markdown(
            dataset,
            retrieval_metrics,
            retrieval_comparisons,
            {"hybrid_weighted": fusion_weight, "hybrid_weighted_finetuned": fusion_weight_finetuned},
            query_splits["split"].value_counts().to_dict(),
            corpus_prep_report,
            {
                "bm25": bm25_index_meta,
                "bm25_plain": bm25_plain_index_meta,
                **({"bm25_lucene": bm25_lucene_index_meta} if bm25_lucene_index_meta is not None else {}),
                "dense": dense_index_meta,
                "dense_pretrained": dense_pretrained_index_meta,
                "dense_finetuned": dense_finetuned_index_meta,
                **({"bm25_ngram": bm25_ngram_index_meta} if bm25_ngram_index_meta else {}),
            },
            retriever_status=retriever_status,
            rerank=rerank_settings,
            first_stage_fusion=fusion_settings,
            vocabulary=vocabulary_ablation,
        )
    )


def plot_retrieval_metrics(retrieval_metrics: dict[str, dict[str, float]], dataset: str) -> Figure:
    """A grouped bar chart of the report-split metrics."""
    return plot_metrics(retrieval_metrics, f"Retrieval metrics — {dataset}")
