"""rerank_run over a deterministic fake reranker; RerankerDataset's unavailable cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kedro.io import DatasetError

from finrag_pipelines.datasets.rerankers import RerankerDataset
from finrag_pipelines.rerank.factory import LazyReranker
from finrag_pipelines.rerank.interfaces import Reranker, rerank_run
from finrag_pipelines.retrieval.types import Hit, RetrievalError, Unavailable


class CountingReranker:
    """Scores a pair by how many characters of the query appear in the passage (ties are common)."""

    name = "counting"
    fingerprint = "f"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def describe(self) -> dict:
        return {"kind": "fake"}

    def score_pairs(self, queries, passages) -> np.ndarray:
        self.calls.append(len(queries))
        shared = [sum(c in p for c in q) / 10 for q, p in zip(queries, passages, strict=True)]
        return np.array(shared, np.float32)


TEXTS = {"a": "甲乙丙", "b": "丁", "c": "甲乙", "d": "甲", "e": "乙丙"}


def test_reranks_the_top_n_by_score_ties_keep_first_stage_order() -> None:
    reranker = CountingReranker()
    assert isinstance(reranker, Reranker)
    run = [[Hit("b", 9), Hit("d", 8), Hit("e", 7), Hit("c", 6), Hit("a", 5)], [Hit("d", 1)], []]
    out = rerank_run(reranker, ["甲乙丙", "甲", "x"], run, TEXTS, top_n=4, chunk_pairs=2)
    # "a" was below the top 4
    assert [[h.doc_id for h in hits] for hits in out] == [["e", "c", "d", "b"], ["d"], []]
    assert [h.score for h in out[0]] == pytest.approx([0.2, 0.2, 0.1, 0.0])  # e before c: first-stage order
    assert reranker.calls == [2, 2, 1]  # 5 pairs in chunks of 2, across queries
    by_function = rerank_run(reranker, ["甲乙丙", "甲", "x"], run, TEXTS.__getitem__, top_n=4)
    assert by_function == out


def test_failures_are_errors_never_zero_scores() -> None:
    run = [[Hit("zz", 1.0)]]
    with pytest.raises(RetrievalError, match="'zz' has no passage text"):
        rerank_run(CountingReranker(), ["q"], run, TEXTS, top_n=10)

    class Broken(CountingReranker):
        def score_pairs(self, queries, passages):
            raise RuntimeError("CUDA out of memory")

    with pytest.raises(RetrievalError, match="failed on pairs 0..0: RuntimeError: CUDA out of memory"):
        rerank_run(Broken(), ["q"], [[Hit("a", 1.0)]], TEXTS, top_n=10)

    class Short(CountingReranker):
        def score_pairs(self, queries, passages):
            return np.zeros(len(queries) + 1)

    with pytest.raises(RetrievalError, match="scores for 1 pairs"):
        rerank_run(Short(), ["q"], [[Hit("a", 1.0)]], TEXTS, top_n=10)
    with pytest.raises(ValueError, match="2 queries for 1 result lists"):
        rerank_run(CountingReranker(), ["q", "r"], [[]], TEXTS, top_n=10)


def test_reranker_dataset_reports_what_is_missing(tmp_path: Path, tiny_bert_reranker_dir: Path) -> None:
    off = RerankerDataset(None).load()
    assert isinstance(off, Unavailable) and "no reranker configured" in off.reason
    config = {"kind": "cross_encoder", "model_path": str(tmp_path / "absent")}
    missing = RerankerDataset(config, optional=True, missing_hint="run reranker_finetune").load()
    assert isinstance(missing, Unavailable) and "run reranker_finetune" in missing.reason
    with pytest.raises(DatasetError, match="has no config.json"):
        RerankerDataset(config).load()
    with pytest.raises(DatasetError, match="kind one of"):
        RerankerDataset({"kind": "colbert", "model_path": "x"})
    lazy = RerankerDataset(config, model_path=str(tiny_bert_reranker_dir)).load()
    assert isinstance(lazy, LazyReranker) and lazy._built is None  # nothing loaded until it scores
    assert lazy.score_pairs(["利润"], ["利润增长"]).shape == (1,)
    with pytest.raises(DatasetError, match="read-only"):
        RerankerDataset(config).save(lazy)
