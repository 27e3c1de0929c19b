import json

import pandas as pd
import pytest
from kedro.io import DatasetError
from matplotlib.figure import Figure

from finrag_pipelines.pipelines.evaluation import nodes
from finrag_pipelines.pipelines.evaluation.params import (
    BootstrapParams,
    FusionParams,
    MetricParams,
    RetrieveParams,
    SplitParams,
)
from finrag_pipelines.retrieval.runs import run_to_frame, unavailable_reason
from finrag_pipelines.retrieval.types import Hit, RetrievalError, Unavailable

METRICS = MetricParams(ks=[1, 3, 5, 10], cutoff=10)
FUSION = FusionParams(
    rrf_k=60,
    normalisation="minmax",
    weight_grid=[0.0, 0.5, 1.0],
    tune_metric="mrr@10",
    depth=100,
    fixed_dense_weight=None,
)


def frame(rows):
    return pd.DataFrame(rows)


def test_split_is_seeded_stable_and_covers_all_queries():
    queries = frame({"query_id": [f"q{i}" for i in range(400)], "text": ["x"] * 400})
    a = nodes.split_queries(queries, SplitParams(tune_fraction=0.3, seed=1))
    b = nodes.split_queries(queries.iloc[::-1], SplitParams(tune_fraction=0.3, seed=1))
    assert a.set_index("query_id")["split"].to_dict() == b.set_index("query_id")["split"].to_dict()
    share = (a["split"] == "tune").mean()
    assert 0.22 < share < 0.38
    c = nodes.split_queries(queries, SplitParams(tune_fraction=0.3, seed=2))
    assert (a["split"] != c["split"]).any()


def _runs_where_tune_prefers_bm25():
    """dense finds the gold of report queries, bm25 the gold of tune queries."""
    queries = frame({"query_id": ["t1", "t2", "r1", "r2"], "text": ["a", "b", "c", "d"]})
    splits = frame({"query_id": ["t1", "t2", "r1", "r2"], "split": ["tune", "tune", "report", "report"]})
    qrels = frame(
        {"query_id": ["t1", "t2", "r1", "r2"], "doc_id": ["g", "g", "g", "g"], "score": [1, 1, 1, 1]}
    )
    qids = list(queries["query_id"])
    good = [Hit("g", 1.0), Hit("x", 0.8), Hit("y", 0.0)]
    bad = [Hit("x", 1.0), Hit("y", 0.2), Hit("g", 0.0)]
    dense = run_to_frame(qids, [bad, bad, good, good])
    bm25 = run_to_frame(qids, [good, good, bad, bad])
    return queries, splits, qrels, dense, bm25


def test_fusion_weight_is_tuned_on_the_tune_split_only():
    queries, splits, qrels, dense, bm25 = _runs_where_tune_prefers_bm25()
    tuned = nodes.tune_fusion_weight(dense, bm25, queries, qrels, splits, FUSION, METRICS)
    assert tuned["dense_weight"] == 0.0  # on `report` dense would win; tuning never looks there
    assert tuned["n_tune_queries"] == 2
    assert [row["dense_weight"] for row in tuned["grid"]] == [0.0, 0.5, 1.0]
    fused = nodes.fuse_weighted(dense, bm25, queries, tuned, FUSION)
    assert fused[fused["rank"] == 1]["doc_id"].tolist() == ["g", "g", "x", "x"]


def test_a_fixed_weight_skips_tuning_so_a_held_out_set_is_never_tuned_on():
    queries, splits, qrels, dense, bm25 = _runs_where_tune_prefers_bm25()
    fixed = FUSION.model_copy(update={"fixed_dense_weight": 1.0})
    chosen = nodes.tune_fusion_weight(
        dense, bm25, queries, qrels, splits.assign(split="report"), fixed, METRICS
    )
    assert chosen["dense_weight"] == 1.0 and chosen["n_tune_queries"] == 0 and chosen["grid"] == []
    assert SplitParams(tune_fraction=0.0, seed=1).tune_fraction == 0.0
    assert (nodes.split_queries(queries, SplitParams(tune_fraction=0.0, seed=1))["split"] == "report").all()


def test_tuning_rejects_unknown_metric_and_empty_tune_split():
    queries, splits, qrels, dense, bm25 = _runs_where_tune_prefers_bm25()
    with pytest.raises(ValueError, match="tune_metric"):
        nodes.tune_fusion_weight(
            dense, bm25, queries, qrels, splits, FUSION.model_copy(update={"tune_metric": "p@3"}), METRICS
        )
    all_report = splits.assign(split="report")
    with pytest.raises(ValueError, match="no answerable queries"):
        nodes.tune_fusion_weight(dense, bm25, queries, qrels, all_report, FUSION, METRICS)


def test_scores_summary_and_comparisons_use_the_report_split():
    queries, splits, qrels, dense, bm25 = _runs_where_tune_prefers_bm25()
    rrf = nodes.fuse_rrf(dense, bm25, queries, FUSION)
    per_query = nodes.score_runs(queries, qrels, splits, METRICS, dense=dense, bm25=bm25, hybrid_rrf=rrf)
    assert len(per_query) == 12
    summary = nodes.summarise_metrics(per_query, METRICS)
    assert summary["dense"] == {
        "top1": 1.0,
        "top3": 1.0,
        "top5": 1.0,
        "top10": 1.0,
        "mrr@10": 1.0,
        "recall@10": 1.0,
        "ndcg@10": 1.0,
        "n_queries": 2,
    }
    assert summary["bm25"]["top1"] == 0.0 and summary["bm25"]["mrr@10"] == pytest.approx(1 / 3)
    json.dumps(summary)  # serialisable as retrieval_metrics.json
    status = nodes.record_retriever_status(dense=dense, bm25=bm25, hybrid_rrf=rrf)
    comps = nodes.compare_retrievers(
        per_query,
        status,
        BootstrapParams(
            n_resamples=200, confidence=0.95, seed=0, metrics=["mrr@10"], comparisons=[("dense", "bm25")]
        ),
    )
    assert comps[0]["mean_diff"] == pytest.approx(2 / 3) and comps[0]["n_queries"] == 2
    with pytest.raises(ValueError, match="unknown retrievers"):
        nodes.compare_retrievers(
            per_query,
            status,
            BootstrapParams(
                n_resamples=200, confidence=0.95, seed=0, metrics=["mrr@10"], comparisons=[("dense", "nope")]
            ),
        )


def test_a_missing_finetuned_model_is_reported_not_scored(tmp_path):
    """No fine-tuned model yet: its index, runs, hybrids and comparisons say so; nothing is scored 0."""
    from finrag_pipelines.datasets import EncoderDataset, FaissIndexDataset
    from finrag_pipelines.pipelines.index_build.nodes import build_dense_index
    from finrag_pipelines.pipelines.index_build.params import DenseParams

    queries, splits, qrels, dense, bm25 = _runs_where_tune_prefers_bm25()
    encoder = EncoderDataset(
        {"kind": "hf", "model_path": str(tmp_path / "merged"), "query_task": "t"}, optional=True
    ).load()
    assert isinstance(encoder, Unavailable) and "embedding_finetune" in encoder.reason
    with pytest.raises(DatasetError, match="does not exist"):  # not optional: a missing model is an error
        EncoderDataset({"kind": "hf", "model_path": str(tmp_path / "merged"), "query_task": "t"}).load()
    corpus = frame({"doc_id": ["d1"], "title": [""], "text": ["x"]})
    index = build_dense_index(
        corpus, encoder, None, DenseParams(index_type="flat", hnsw_m=32, ef_search=64, chunk_size=8)
    )
    dataset = FaissIndexDataset(str(tmp_path / "dense_finetuned"))
    dataset.save(index)
    loaded = dataset.load()
    assert (
        loaded == index
        and json.loads((tmp_path / "dense_finetuned" / "meta.json").read_text())["status"] == "unavailable"
    )

    run = nodes.retrieve_dense(loaded, encoder, None, corpus, queries, RetrieveParams(depth=10, batch_size=8))
    run.to_parquet(tmp_path / "run.parquet")  # the catalog's ParquetDataset keeps the marker
    run = pd.read_parquet(tmp_path / "run.parquet")
    assert unavailable_reason(run) == encoder.reason
    weight = nodes.tune_fusion_weight(run, bm25, queries, qrels, splits, FUSION, METRICS)
    assert weight["dense_weight"] is None and "not tuned" in weight["source"]
    fused = nodes.fuse_weighted(run, bm25, queries, weight, FUSION)
    assert unavailable_reason(fused) and unavailable_reason(nodes.fuse_rrf(run, bm25, queries, FUSION))

    runs = {"dense": dense, "bm25": bm25, "dense_finetuned": run, "hybrid_weighted_finetuned": fused}
    per_query = nodes.score_runs(queries, qrels, splits, METRICS, **runs)
    assert set(per_query["retriever"]) == {"dense", "bm25"}
    status = nodes.record_retriever_status(**runs)
    assert status["dense"] == "evaluated" and status["dense_finetuned"].startswith(
        "not evaluated: model folder"
    )
    comps = nodes.compare_retrievers(
        per_query,
        status,
        BootstrapParams(
            n_resamples=100,
            confidence=0.95,
            seed=0,
            metrics=["mrr@10"],
            comparisons=[("dense_finetuned", "dense"), ("dense", "bm25")],
        ),
    )
    assert comps[0]["status"] == "skipped" and "dense_finetuned not evaluated" in comps[0]["reason"]
    assert comps[1]["metric"] == "mrr@10"
    summary = nodes.summarise_metrics(per_query, METRICS)
    assert "dense_finetuned" not in summary  # absent, never a zero
    prep = {
        "documents_in": 1,
        "documents_by_status": {"kept": 1},
        "queries": 4,
        "judgements": 4,
        "queries_without_relevant_documents": [],
    }
    text = nodes.write_report(
        summary,
        comps,
        status,
        {
            "dense_weight": 0.5,
            "metric": "ndcg@10",
            "n_tune_queries": 2,
            "grid": [{"dense_weight": 0.5, "ndcg@10": 1.0}],
        },
        weight,
        splits,
        prep,
        {},
        {},
        {},
        index.to_meta(),
        index.to_meta(),
        "set",
    )
    assert "Not evaluated (no score recorded)" in text and "- `dense_finetuned`: model folder" in text
    assert "dense_finetuned: not built" in text.replace("**", "")


def test_queries_without_relevant_documents_are_not_scored():
    queries, splits, qrels, dense, bm25 = _runs_where_tune_prefers_bm25()
    per_query = nodes.score_runs(queries, qrels[qrels["query_id"] != "r2"], splits, METRICS, dense=dense)
    assert set(per_query["query_id"]) == {"t1", "t2", "r1"}


class _Failing:
    name = "broken"

    def search(self, queries, k):
        raise ConnectionError("index server went away")


class _Short:
    name = "short"

    def search(self, queries, k):
        return [[Hit("d1", 1.0)]][: len(queries) - 1]


class _Stranger:
    name = "stranger"

    def search(self, queries, k):
        return [[Hit("not-in-corpus", 1.0)] for _ in queries]


@pytest.mark.parametrize(
    "retriever, message",
    [
        (_Failing(), "retriever 'broken' failed on queries 0..1: index server went away"),
        (_Short(), "returned 1 result lists for 2 queries"),
        (_Stranger(), "ids not in the corpus"),
    ],
)
def test_a_retrieval_failure_aborts_instead_of_scoring_zero(retriever, message):
    corpus = frame({"doc_id": ["d1"], "title": [""], "text": ["x"]})
    queries = frame({"query_id": ["q1", "q2"], "text": ["a", "b"]})
    with pytest.raises(RetrievalError, match=message):
        nodes._search(retriever, corpus, queries, RetrieveParams(depth=10, batch_size=8))


def test_report_and_plot():
    metrics = {
        "bm25": {"top1": 0.5, "mrr@10": 0.6, "n_queries": 10},
        "bm25_plain": {"top1": 0.4, "mrr@10": 0.5, "n_queries": 10},
    }
    comps = [
        {
            "a": "bm25",
            "b": "bm25_plain",
            "metric": "mrr@10",
            "mean_diff": 0.1,
            "low": 0.02,
            "high": 0.2,
            "p_value": 0.01,
            "n_queries": 10,
            "confidence": 0.95,
        }
    ]
    weight = {
        "dense_weight": 0.3,
        "metric": "ndcg@10",
        "n_tune_queries": 5,
        "grid": [{"dense_weight": 0.3, "ndcg@10": 0.7}],
    }
    splits = frame({"query_id": ["a", "b"], "split": ["tune", "report"]})
    prep = {
        "documents_in": 3,
        "documents_by_status": {"kept": 3},
        "queries": 2,
        "judgements": 2,
        "queries_without_relevant_documents": [],
    }
    meta = {
        "kind": "bm25",
        "built_at": "now",
        "num_docs": 3,
        "corpus_hash": "abc",
        "bm25": {"k1": 1.2},
        "tokenizer": {},
    }
    dense_meta = {
        "kind": "dense",
        "num_docs": 3,
        "encoder": {"kind": "usem3", "fingerprint": "f"},
        "dim": 512,
        "index_type": "flat",
        "query_task": None,
        "instruction_template": "Instruct: {task}\nQuery:{query}",
    }
    status = {"bm25": "evaluated", "bm25_plain": "evaluated"}
    text = nodes.write_report(
        metrics,
        comps,
        status,
        weight,
        weight,
        splits,
        prep,
        meta,
        meta,
        dense_meta,
        dense_meta,
        dense_meta,
        "fintruthqa",
    )
    assert "# Retrieval evaluation — `fintruthqa`" in text
    assert "| bm25 | 0.5000 | 0.6000 | 10 |" in text
    assert "is **better than** plain jieba+bm25s on mrr@10: +0.1000" in text
    assert "w = **0.30**" in text
    assert isinstance(nodes.plot_retrieval_metrics(metrics, "fintruthqa"), Figure)


def test_report_shows_the_lucene_twin_its_settings_and_its_difference_to_bm25():
    metrics = {
        "bm25": {"top1": 0.5, "mrr@10": 0.6, "n_queries": 10},
        "bm25_lucene": {"top1": 0.5, "mrr@10": 0.61, "n_queries": 10},
    }
    comps = [
        {
            "a": "bm25_lucene",
            "b": "bm25",
            "metric": "mrr@10",
            "mean_diff": 0.01,
            "low": -0.01,
            "high": 0.03,
            "p_value": 0.4,
            "n_queries": 10,
            "confidence": 0.95,
        }
    ]
    weight = {"dense_weight": None, "source": "not tuned"}
    splits = frame({"query_id": ["a"], "split": ["report"]})
    prep = {
        "documents_in": 3,
        "documents_by_status": {"kept": 3},
        "queries": 1,
        "judgements": 1,
        "queries_without_relevant_documents": [],
    }
    meta = {
        "kind": "bm25",
        "built_at": "now",
        "num_docs": 3,
        "corpus_hash": "abc",
        "bm25": {"k1": 0.9},
        "tokenizer": {},
    }
    settings = {
        "k1": 0.9,
        "b": 0.75,
        "rm3": None,
        "not_applied": {"tf_cap": 5, "domain_term_weight": 1.2},
        "versions": {"pyserini": "1.6.0"},
    }
    lucene = {**meta, "backend": "lucene", "lucene": settings}
    dense = {"status": "unavailable", "reason": "none"}
    status = {"bm25": "evaluated", "bm25_lucene": "evaluated"}
    text = nodes.write_report(
        metrics,
        comps,
        status,
        weight,
        weight,
        splits,
        prep,
        meta,
        meta,
        dense,
        dense,
        dense,
        "fintruthqa",
        bm25_lucene_index_meta=lucene,
    )
    assert "- **bm25_lucene**: built now" in text
    assert "backend: Lucene (pyserini 1.6.0), k1 0.9, b 0.75, RM3 `None`; not applied: `{'tf_cap': 5" in text
    assert (
        "in Lucene (pyserini; without the tf cap and the domain-term weight) are **not distinguishable from**"
    ) in text
    # not built: the lexical twin is "not evaluated" with the reason, never scored
    queries = frame({"query_id": ["q"], "text": ["股票"]})
    corpus = frame({"doc_id": ["d"], "title": [""], "text": ["股票"]})
    why = "off (index_build.lucene.compare: false)"
    off = nodes.retrieve_bm25(
        Unavailable("bm25_lucene index", why), corpus, queries, RetrieveParams(depth=10, batch_size=2)
    )
    assert unavailable_reason(off) == why
