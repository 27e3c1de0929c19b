"""Multi-retriever fusion: candidate tables, simplex weights, cross-validation, LightGBM ranker, settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finrag_pipelines.retrieval.candidates import CandidateTable
from finrag_pipelines.retrieval.first_stage import (
    FusionSettings,
    compare_by_cross_validation,
    folds_of,
    metric_functions,
    simplex_grid,
    tune_weights,
    weighted_run,
)
from finrag_pipelines.retrieval.fusion import weighted_sum
from finrag_pipelines.retrieval.learned_fusion import FeatureBuilder, LearnedFusion, feature_names
from finrag_pipelines.retrieval.types import Hit
from finrag_pipelines.text.ngram import CharNgramTokenizer

LGBM = {
    "n_estimators": 30,
    "learning_rate": 0.2,
    "num_leaves": 4,
    "min_child_samples": 2,
    "random_state": 0,
    "n_jobs": 1,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}


def test_candidate_table_holds_scores_ranks_and_minmax_with_floor() -> None:
    table = CandidateTable.from_runs({"a": [[Hit("d1", 3.0), Hit("d2", 1.0)]], "b": [[Hit("d3", 0.5)]]})
    q = table.queries[0]
    assert q.doc_ids == ["d1", "d2", "d3"] and table.retrievers == ("a", "b")
    np.testing.assert_array_equal(q.ranks[:, 0], [1, 2, np.nan])
    # b lists one score: a constant list says nothing, every candidate gets 1 (weighted_sum's floor rule)
    np.testing.assert_array_equal(q.normalised, [[1.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    assert np.isnan(q.scores[2, 0]) and q.scores[2, 1] == 0.5
    with pytest.raises(ValueError, match="different numbers of queries"):
        CandidateTable.from_runs({"a": [[]], "b": [[], []]})


def test_simplex_grid() -> None:
    grid = simplex_grid(3, 0.5)
    assert sorted(grid) == sorted(
        [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]
    )
    assert len(simplex_grid(4, 0.1)) == 286 and all(abs(sum(w) - 1) < 1e-9 for w in simplex_grid(4, 0.1))
    with pytest.raises(ValueError, match="divides 1"):
        simplex_grid(2, 0.3)


hits = st.lists(
    st.tuples(st.sampled_from([f"d{i}" for i in range(8)]), st.floats(0, 10, allow_nan=False)),
    max_size=6,
    unique_by=lambda t: t[0],
).map(lambda pairs: [Hit(d, s) for d, s in sorted(pairs, key=lambda p: -p[1])])


@settings(max_examples=60, deadline=None)
@given(a=hits, b=hits, w=st.sampled_from(simplex_grid(2, 0.1)))
def test_weighted_run_ranks_as_weighted_sum(a, b, w) -> None:
    """The vectorised fusion gives the scores of retrieval.fusion.weighted_sum (min-max, missing → floor)."""
    table = CandidateTable.from_runs({"a": [a], "b": [b]})
    ours = weighted_run(table, {"a": w[0], "b": w[1]}, depth=10)[0]
    theirs = weighted_sum([[a], [b]], list(w), method="minmax", depth=10)[0]
    assert {h.doc_id: round(h.score, 9) for h in ours} == {h.doc_id: round(h.score, 9) for h in theirs}
    assert [round(h.score, 9) for h in ours] == sorted((round(h.score, 9) for h in ours), reverse=True)


def _runs_where_b_finds_the_gold(n: int) -> tuple[dict, list[dict[str, int]]]:
    """Retriever a ranks the gold document third, b ranks it first; c is noise."""
    rng = np.random.default_rng(0)
    runs: dict[str, list] = {"a": [], "b": [], "c": []}
    relevance = []
    for q in range(n):
        gold, others = f"g{q}", [f"x{q}_{i}" for i in range(5)]
        runs["a"].append([Hit(others[0], 3.0), Hit(others[1], 2.0), Hit(gold, 1.0)])
        runs["b"].append([Hit(gold, 5.0), Hit(others[2], 4.0), Hit(others[0], 1.0)])
        runs["c"].append(
            [Hit(d, float(s)) for d, s in zip(rng.permutation([gold, *others]), range(6, 0, -1))]
        )
        relevance.append({gold: 1})
    return runs, relevance


def test_tune_weights_finds_the_useful_retriever() -> None:
    runs, relevance = _runs_where_b_finds_the_gold(12)
    table = CandidateTable.from_runs(runs)
    weights, grid = tune_weights(table, metric_functions(relevance, "mrr@10", [1, 3], 10), 0.25, 10)
    assert weights["b"] >= 0.5 and len(grid) == len(simplex_grid(3, 0.25))
    assert max(row["metric"] for row in grid) == 1.0
    fused = weighted_run(table, weights, 10)
    assert all(hits[0].doc_id == f"g{q}" for q, hits in enumerate(fused))


def test_folds_are_a_seeded_partition() -> None:
    folds = folds_of(23, 5, 7)
    assert sorted(np.concatenate(folds).tolist()) == list(range(23)) and len(folds) == 5
    assert [f.tolist() for f in folds] == [f.tolist() for f in folds_of(23, 5, 7)]
    assert [f.tolist() for f in folds] != [f.tolist() for f in folds_of(23, 5, 8)]
    with pytest.raises(ValueError, match="at least k"):
        folds_of(3, 5, 0)


def test_cross_validation_scores_learners_only_on_folds_they_did_not_see() -> None:
    runs, relevance = _runs_where_b_finds_the_gold(20)
    table = CandidateTable.from_runs(runs)
    seen: list[set[int]] = []

    def cheat(train):  # a learner that is perfect on its training queries and wrong elsewhere
        known = set(train.tolist())
        seen.append(known)
        return lambda p, c: np.array([1.0 if (p in known) == d.startswith("g") else 0.0 for d in c.doc_ids])

    cv = compare_by_cross_validation(
        table,
        metric_functions(relevance, "mrr@10", [1], 10),
        step=0.5,
        cutoff=10,
        folds=4,
        seed=0,
        learners={"cheat": cheat},
        repeats=2,
    )
    assert len(seen) == 8 and all(len(s) == 15 for s in seen)
    assert cv.per_method["cheat"] < 0.5 and cv.per_method["weighted"] == 1.0 and cv.winner() == "weighted"
    assert len(cv.per_query["weighted"]) == 20


def _feature_data(n: int):
    """Queries whose gold document is the one that contains the query's words (coverage decides)."""
    rng = np.random.default_rng(1)
    words = ["营业收入", "净利润", "毛利率", "研发投入", "分红方案", "回购股份", "募集资金", "产能扩张"]
    doc_texts: dict[str, str] = {}
    runs: dict[str, list] = {"a": [], "b": []}
    queries, relevance = [], []
    for q in range(n):
        word = words[q % len(words)]
        gold, others = f"g{q}", [f"x{q}_{i}" for i in range(4)]
        doc_texts[gold] = f"公司{word}情况说明{q}"
        for i, d in enumerate(others):
            doc_texts[d] = f"公司{words[(q + i + 1) % len(words)]}说明{q}"
        order = list(rng.permutation([gold, *others]))
        runs["a"].append([Hit(d, float(5 - i)) for i, d in enumerate(order)])
        runs["b"].append([Hit(d, float(5 - i)) for i, d in enumerate(reversed(order))])
        queries.append(f"请问{word}是多少")
        relevance.append({gold: 1})
    return runs, queries, relevance, doc_texts


def test_features_have_the_named_columns_and_coverage() -> None:
    runs, queries, _, doc_texts = _feature_data(4)
    table = CandidateTable.from_runs(runs)
    builder = FeatureBuilder(doc_texts, {"ngram": CharNgramTokenizer(n=2)})
    matrices = builder.features(table, queries)
    names = feature_names(("a", "b"), ("ngram",))
    assert all(m.shape == (5, len(names)) for m in matrices)
    coverage = matrices[0][:, names.index("ngram:coverage")]
    gold_row = table.queries[0].doc_ids.index("g0")
    assert coverage[gold_row] == coverage.max() and coverage[gold_row] == 3 / 8  # 营业 业收 收入 of 8 bigrams
    assert matrices[0][gold_row, names.index("doc_chars")] == len(doc_texts["g0"])
    with pytest.raises(KeyError, match="no text"):
        FeatureBuilder({}, {"ngram": CharNgramTokenizer()}).features(table, queries)


def test_the_learned_ranker_learns_coverage_and_survives_json() -> None:
    runs, queries, relevance, doc_texts = _feature_data(40)
    table = CandidateTable.from_runs(runs)
    builder = FeatureBuilder(doc_texts, {"ngram": CharNgramTokenizer(n=2)})
    matrices = builder.features(table, queries)
    labels = [np.array([rel.get(d, 0) for d in q.doc_ids]) for rel, q in zip(relevance, table.queries)]
    model = LearnedFusion.fit(matrices[:30], labels[:30], retrievers=["a", "b"], views=["ngram"], params=LGBM)
    assert model.trained_on["queries_with_a_positive"] == 30
    top = [q.doc_ids[int(np.argmax(model.score(x)))] for q, x in zip(table.queries[30:], matrices[30:])]
    assert top == [f"g{q}" for q in range(30, 40)]  # held-out queries: the covering document first
    settings_ = FusionSettings(("a", "b"), "learned", {"a": 0.5, "b": 0.5}, 10, model, source="test")
    back = FusionSettings.from_dict(json.loads(json.dumps(settings_.to_dict())))
    fused = back.fuse({n: r[30:] for n, r in runs.items()}, queries[30:], builder)
    assert [hits[0].doc_id for hits in fused] == top
    np.testing.assert_allclose(back.learned.score(matrices[31]), model.score(matrices[31]))
    # a query no retriever found anything for gets no hits, in a batch with others
    assert (
        back.fuse({"a": [[], runs["a"][35]], "b": [[], runs["b"][35]]}, ["无", queries[35]], builder)[0] == []
    )
    with pytest.raises(ValueError, match="no training query has a relevant"):
        LearnedFusion.fit(
            matrices[:2], [np.zeros(5), np.zeros(5)], retrievers=["a", "b"], views=["ngram"], params=LGBM
        )


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="needs a learned model"):
        FusionSettings(("a",), "learned", {"a": 1.0}, 10)
    with pytest.raises(ValueError, match="one of"):
        FusionSettings(("a",), "best", {"a": 1.0}, 10)
    with pytest.raises(ValueError, match="not in retrievers"):
        FusionSettings(("a",), "weighted", {"z": 1.0}, 10)
    good = FusionSettings(("a", "b"), "weighted", {"a": 0.3, "b": 0.7}, 10).to_dict()
    with pytest.raises(ValueError, match="format_version"):
        FusionSettings.from_dict({**good, "format_version": 99}, "x.json")
    with pytest.raises(ValueError, match="x.json: not first-stage fusion settings"):
        FusionSettings.from_dict({"kind": "other"}, "x.json")
    with pytest.raises(KeyError, match="needs the runs of"):
        FusionSettings.from_dict(good).fuse({"a": [[]]}, ["q"])
    with pytest.raises(ValueError, match="cannot run"):
        FusionSettings.from_dict(good).fuse({"a": [[]], "b": [[]]}, ["q"], method="learned")
