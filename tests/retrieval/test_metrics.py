import math

import numpy as np
import pytest

from finrag_pipelines.retrieval.metrics import metric_names, paired_bootstrap, query_metrics


def test_single_relevant_document():
    m = query_metrics(["x", "y", "gold", "z"], {"gold": 1})
    assert (m["top1"], m["top3"], m["top5"], m["top10"]) == (0.0, 1.0, 1.0, 1.0)
    assert m["mrr@10"] == pytest.approx(1 / 3)
    assert m["recall@10"] == 1.0
    assert m["ndcg@10"] == pytest.approx(1 / math.log2(4))


def test_multiple_graded_relevant_documents():
    m = query_metrics(["a", "n", "b"], {"a": 1, "b": 2, "c": 1, "neg": 0})
    assert m["mrr@10"] == 1.0
    assert m["recall@10"] == pytest.approx(2 / 3)
    dcg = 1 / math.log2(2) + 3 / math.log2(4)
    idcg = 3 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@10"] == pytest.approx(dcg / idcg)


def test_cutoff_excludes_late_hits():
    ranked = [f"d{i}" for i in range(20)] + ["gold"]
    m = query_metrics(ranked, {"gold": 1})
    assert m["mrr@10"] == 0 and m["top10"] == 0 and m["ndcg@10"] == 0 and m["recall@10"] == 0


def test_empty_ranking_is_a_miss_and_no_relevant_is_an_error():
    assert query_metrics([], {"g": 1})["mrr@10"] == 0.0
    with pytest.raises(ValueError, match="without relevant"):
        query_metrics(["a"], {"a": 0})


def test_metric_names_order():
    assert metric_names([1, 3], 10) == ["top1", "top3", "mrr@10", "recall@10", "ndcg@10"]


def test_paired_bootstrap_detects_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(0)
    base = rng.random(300)
    better = paired_bootstrap(base + 0.1, base, n_resamples=500, seed=1)
    assert better.mean_diff == pytest.approx(0.1)
    assert better.low == pytest.approx(0.1) and better.high == pytest.approx(0.1)
    noise = paired_bootstrap(rng.random(300), rng.random(300), n_resamples=1000, seed=1)
    assert noise.low < noise.mean_diff < noise.high
    assert noise.low < 0 < noise.high and noise.p_value > 0.05
    with pytest.raises(ValueError):
        paired_bootstrap(np.ones(3), np.ones(4))
