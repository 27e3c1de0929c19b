"""evaluation's first-stage fusion: ``fusion_weighted``, ``fusion_learned`` and ``fusion`` (the one that won).

Both methods are fitted on the ``tune`` split only and compared there by cross-validation (each scored on
folds it was not fitted on); ``fusion`` is the winner. The settings (weights, LightGBM model, the numbers
behind the choice) are the ``fusion_settings`` artefact. Given fixed settings (``fusion_settings_fixed``,
e.g. the dev set's, for a held-out test folder), nothing is fitted on this set: they are applied as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from finrag_pipelines.pipelines.evaluation.params import FirstStageFusionParams, MetricParams
from finrag_pipelines.retrieval.candidates import CandidateTable
from finrag_pipelines.retrieval.first_stage import (
    FusionSettings,
    compare_by_cross_validation,
    metric_functions,
    tune_weights,
)
from finrag_pipelines.retrieval.interfaces import LexicalIndex
from finrag_pipelines.retrieval.learned_fusion import FeatureBuilder, LearnedFusion
from finrag_pipelines.retrieval.metrics import metric_names
from finrag_pipelines.retrieval.runs import frame_to_run, run_to_frame, unavailable_frame, unavailable_reason
from finrag_pipelines.retrieval.types import Unavailable
from finrag_pipelines.text.corpus import indexable

logger = logging.getLogger(__name__)

FUSABLE = ("bm25", "bm25_ngram", "bm25_plain", "dense", "dense_pretrained", "dense_finetuned")
"""First-stage runs the fusion may combine (``evaluation.first_stage_fusion.retrievers`` picks among them)."""
VIEWS = ("bm25", "bm25_ngram", "bm25_plain")
"""Lexical indexes whose tokenizers may give the learned model's coverage features."""
FUSED = ("fusion_weighted", "fusion_learned", "fusion")


def _relevance(qrels: pd.DataFrame) -> dict[str, dict[str, int]]:
    rel: dict[str, dict[str, int]] = {}
    for qid, did, grade in zip(qrels["query_id"], qrels["doc_id"], qrels["score"]):
        if grade > 0:
            rel.setdefault(str(qid), {})[str(did)] = int(grade)
    return rel


def _check_params(params: FirstStageFusionParams, metrics: MetricParams) -> None:
    unknown = [r for r in params.retrievers if r not in FUSABLE]
    if unknown:
        raise ValueError(
            f"evaluation.first_stage_fusion.retrievers names {unknown}; the pipeline offers {list(FUSABLE)}"
        )
    bad_views = [v for v in params.views if v not in VIEWS]
    if bad_views:
        raise ValueError(f"evaluation.first_stage_fusion.views names {bad_views}; known: {list(VIEWS)}")
    names = metric_names(metrics.ks, metrics.cutoff)
    if params.tune_metric not in names:
        raise ValueError(
            f"evaluation.first_stage_fusion.tune_metric {params.tune_metric!r} is not one of {names}"
        )


def _views(bm25: LexicalIndex, bm25_ngram: LexicalIndex, bm25_plain: LexicalIndex) -> dict[str, LexicalIndex]:
    return {"bm25": bm25, "bm25_ngram": bm25_ngram, "bm25_plain": bm25_plain}


def _feature_builder(
    corpus: pd.DataFrame, views: Mapping[str, LexicalIndex], names: list[str]
) -> FeatureBuilder:
    ids, texts, _ = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    return FeatureBuilder(dict(zip(ids, texts)), {name: views[name].tokenizer for name in names})


def tune_first_stage_fusion(
    eval_queries: pd.DataFrame,
    eval_qrels: pd.DataFrame,
    query_splits: pd.DataFrame,
    corpus: pd.DataFrame,
    bm25_index: LexicalIndex,
    bm25_ngram_index: LexicalIndex,
    bm25_plain_index: LexicalIndex,
    fusion_settings_fixed: dict[str, Any] | Unavailable,
    params: FirstStageFusionParams,
    metrics: MetricParams,
    **runs: pd.DataFrame,
) -> dict[str, Any]:
    """The fusion settings: fixed ones as given, else weights and a LightGBM model fitted on ``tune``.

    Retrievers of ``params.retrievers`` that were not evaluated (no fine-tuned model) are left out and named
    in ``selection.left_out``. Fixed settings must find every retriever they fuse.

    Raises:
        ValueError: On unknown retrievers or views, a tune split without answerable queries, or fixed settings
            that need a retriever this run does not have.
    """
    _check_params(params, metrics)
    status = {name: unavailable_reason(runs[name]) for name in FUSABLE}
    if not isinstance(fusion_settings_fixed, Unavailable):
        fixed = FusionSettings.from_dict(fusion_settings_fixed, "fusion_settings_fixed")
        missing = {
            name: status.get(name, "not a run this pipeline offers")
            for name in fixed.retrievers
            if status.get(name, "absent")
        }
        if missing:
            raise ValueError(f"the fixed fusion settings fuse {list(fixed.retrievers)}, but here {missing}")
        logger.info(
            "evaluation: first-stage fusion fixed (%s), %s wins; nothing tuned", fixed.source, fixed.method
        )
        return {
            **fixed.to_dict(),
            "source": f"fixed: {fixed.source or 'given settings'} (not tuned on this set)",
        }
    left_out = {name: status[name] for name in params.retrievers if status[name]}
    retrievers = [name for name in params.retrievers if not status[name]]
    if not retrievers:
        raise ValueError(f"no first-stage run to fuse: {left_out}")
    for name, reason in left_out.items():
        logger.warning("evaluation: %s left out of the first-stage fusion: %s", name, reason)
    relevance = _relevance(eval_qrels)
    tune_ids = set(query_splits.loc[query_splits["split"] == "tune", "query_id"])
    positions = [i for i, q in enumerate(eval_queries["query_id"]) if q in tune_ids and q in relevance]
    if len(positions) < params.cv_folds:
        raise ValueError(
            f"the tune split has {len(positions)} answerable queries, fewer than the {params.cv_folds} "
            "cross-validation folds; raise evaluation.split.tune_fraction or run with fixed fusion settings "
            "(--params fixed_fusion_settings=<fusion_settings.json of a dev set>)"
        )
    qids = [str(eval_queries["query_id"].iloc[i]) for i in positions]
    texts = [str(eval_queries["text"].iloc[i]) for i in positions]
    table = CandidateTable.from_runs(
        {name: frame_to_run(runs[name], qids) for name in retrievers}, params.depth
    )
    query_metric = metric_functions(
        [relevance[q] for q in qids], params.tune_metric, metrics.ks, metrics.cutoff
    )
    weights, grid = tune_weights(table, query_metric, params.weight_step, metrics.cutoff)
    learners: dict[str, Any] = {}
    learned = None
    if params.learned.enabled:
        builder = _feature_builder(
            corpus, _views(bm25_index, bm25_ngram_index, bm25_plain_index), params.views
        )
        features = builder.features(table, texts)
        labels = [np.array([relevance[q].get(d, 0) for d in c.doc_ids]) for q, c in zip(qids, table.queries)]

        def fit(train: np.ndarray | list[int]) -> LearnedFusion:
            return LearnedFusion.fit(
                [features[p] for p in train],
                [labels[p] for p in train],
                retrievers=retrievers,
                views=params.views,
                params=params.learned.lightgbm,
                trained_on={"tune_queries": len(train)},
            )

        def learn(train: np.ndarray) -> Any:
            model = fit(train)
            return lambda p, _candidates: model.score(features[p])

        learners["learned"] = learn
        learned = fit(list(range(len(qids))))
    cv = compare_by_cross_validation(
        table,
        query_metric,
        step=params.weight_step,
        cutoff=metrics.cutoff,
        folds=params.cv_folds,
        seed=params.seed,
        learners=learners,
        repeats=params.cv_repeats,
    )
    winner = cv.winner()
    best_grid = sorted(grid, key=lambda row: -row["metric"])[:10]
    settings = FusionSettings(
        tuple(retrievers),
        winner,
        weights,
        params.depth,
        learned,
        selection={
            "metric": params.tune_metric,
            "n_tune_queries": len(qids),
            "cv_folds": params.cv_folds,
            "cv_repeats": params.cv_repeats,
            "cv": cv.per_method,
            "winner": winner,
            "weighted_on_all_tune": max(row["metric"] for row in grid),
            "grid_top": best_grid,
            "left_out": left_out,
            "trained_on": "tune split only (never report)",
        },
        source=f"tuned on {len(qids)} tune queries",
    )
    logger.info(
        "evaluation: first-stage fusion over %s: weights %s; %d-fold %s on tune %s -> %s",
        retrievers,
        weights,
        params.cv_folds,
        params.tune_metric,
        {k: round(v, 4) for k, v in cv.per_method.items()},
        winner,
    )
    return settings.to_dict()


def _fuse(
    method: str | None,
    eval_queries: pd.DataFrame,
    corpus: pd.DataFrame,
    fusion_settings: dict[str, Any],
    views: Mapping[str, LexicalIndex],
    runs: Mapping[str, pd.DataFrame],
) -> pd.DataFrame:
    settings = FusionSettings.from_dict(fusion_settings, "fusion_settings")
    chosen = method or settings.method
    if chosen == "learned" and settings.learned is None:
        return unavailable_frame(
            "no learned fusion model (evaluation.first_stage_fusion.learned.enabled is false)"
        )
    qids = list(eval_queries["query_id"])
    run_of = {name: frame_to_run(runs[name], qids) for name in settings.retrievers}
    builder = _feature_builder(corpus, views, list(settings.views)) if chosen == "learned" else None
    fused = settings.fuse(run_of, list(eval_queries["text"]), builder, chosen)
    return run_to_frame(qids, fused)


def fuse_first_stage_weighted(
    eval_queries: pd.DataFrame,
    corpus: pd.DataFrame,
    fusion_settings: dict[str, Any],
    bm25_index: LexicalIndex,
    bm25_ngram_index: LexicalIndex,
    bm25_plain_index: LexicalIndex,
    **runs: pd.DataFrame,
) -> pd.DataFrame:
    """``fusion_weighted``: the tuned weighted min-max fusion."""
    views = _views(bm25_index, bm25_ngram_index, bm25_plain_index)
    return _fuse("weighted", eval_queries, corpus, fusion_settings, views, runs)


def fuse_first_stage_learned(
    eval_queries: pd.DataFrame,
    corpus: pd.DataFrame,
    fusion_settings: dict[str, Any],
    bm25_index: LexicalIndex,
    bm25_ngram_index: LexicalIndex,
    bm25_plain_index: LexicalIndex,
    **runs: pd.DataFrame,
) -> pd.DataFrame:
    """``fusion_learned``: the LightGBM model's ranking (not evaluated when none was trained)."""
    views = _views(bm25_index, bm25_ngram_index, bm25_plain_index)
    return _fuse("learned", eval_queries, corpus, fusion_settings, views, runs)


def fuse_first_stage(
    eval_queries: pd.DataFrame,
    corpus: pd.DataFrame,
    fusion_settings: dict[str, Any],
    bm25_index: LexicalIndex,
    bm25_ngram_index: LexicalIndex,
    bm25_plain_index: LexicalIndex,
    **runs: pd.DataFrame,
) -> pd.DataFrame:
    """``fusion``: whichever method won on the tune split (or the fixed settings' choice)."""
    views = _views(bm25_index, bm25_ngram_index, bm25_plain_index)
    return _fuse(None, eval_queries, corpus, fusion_settings, views, runs)
