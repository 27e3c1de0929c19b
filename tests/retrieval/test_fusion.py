import pytest

from finrag_pipelines.retrieval.fusion import normalise, rrf, weighted_sum
from finrag_pipelines.retrieval.types import Hit


def hits(*pairs):
    return [Hit(d, s) for d, s in pairs]


def test_rrf_scores_follow_the_formula():
    dense = [hits(("a", 0.9), ("b", 0.8))]
    bm25 = [hits(("b", 12.0), ("c", 3.0))]
    fused = rrf([dense, bm25], k=60)[0]
    assert [h.doc_id for h in fused] == ["b", "a", "c"]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)
    assert fused[1].score == pytest.approx(1 / 61)
    assert fused[2].score == pytest.approx(1 / 62)


def test_rrf_weights_and_depth():
    fused = rrf([[hits(("a", 1))], [hits(("b", 1))]], k=1, weights=[1.0, 3.0], depth=1)[0]
    assert fused == [Hit("b", 1.5)]


def test_minmax_and_constant_lists():
    assert normalise(hits(("a", 4.0), ("b", 2.0), ("c", 0.0))) == {"a": 1.0, "b": 0.5, "c": 0.0}
    assert normalise(hits(("a", 3.0), ("b", 3.0))) == {"a": 1.0, "b": 1.0}
    z = normalise(hits(("a", 1.0), ("b", 3.0)), "zscore")
    assert z["a"] == pytest.approx(-1.0) and z["b"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalise(hits(("a", 1.0)), "rank")


def test_weighted_sum_over_the_union_with_missing_as_floor():
    dense = [hits(("a", 0.9), ("b", 0.5), ("c", 0.1))]
    bm25 = [hits(("c", 10.0), ("d", 5.0), ("e", 0.0))]
    fused = {h.doc_id: h.score for h in weighted_sum([dense, bm25], [0.25, 0.75])[0]}
    assert fused["a"] == pytest.approx(0.25 * 1.0 + 0.75 * 0.0)
    assert fused["c"] == pytest.approx(0.25 * 0.0 + 0.75 * 1.0)
    assert fused["d"] == pytest.approx(0.75 * 0.5)
    assert fused["b"] == pytest.approx(0.25 * 0.5)
    assert set(fused) == {"a", "b", "c", "d", "e"}


def test_weight_one_reproduces_the_first_ranking():
    dense = [hits(("a", 0.9), ("b", 0.5), ("c", 0.1))]
    bm25 = [hits(("c", 10.0), ("b", 5.0))]
    assert [h.doc_id for h in weighted_sum([dense, bm25], [1.0, 0.0])[0]] == ["a", "b", "c"]


def test_misaligned_runs_are_rejected():
    with pytest.raises(ValueError, match="different numbers of queries"):
        rrf([[hits(("a", 1))], []])
    with pytest.raises(ValueError, match="weights"):
        weighted_sum([[hits(("a", 1))]], [0.5, 0.5])
