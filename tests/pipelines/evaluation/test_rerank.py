"""evaluation's rerank stage and passage runs: `<name>_rerank`, not-evaluated reasons, document scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from finrag_pipelines.pipelines.evaluation import create_pipeline, nodes, rerank
from finrag_pipelines.pipelines.evaluation.params import FusionParams, MetricParams, RerankParams
from finrag_pipelines.pipelines.evaluation.pipeline import RERANKABLE, RETRIEVERS
from finrag_pipelines.rerank.factory import LazyReranker
from finrag_pipelines.retrieval.runs import frame_to_run, run_to_frame, unavailable_frame, unavailable_reason
from finrag_pipelines.retrieval.types import Hit, Unavailable

METRICS = MetricParams(ks=[1, 3, 5, 10], cutoff=10)
RERANK = RerankParams(retrievers=["bm25"], top_n=10, chunk_pairs=64)


class OracleReranker:
    """Scores 1 for the passage that holds the query's marker, 0 otherwise."""

    name = "oracle"
    fingerprint = "f"

    def describe(self) -> dict:
        return {"kind": "oracle"}

    def score_pairs(self, queries, passages):
        return np.array([float(q in p) for q, p in zip(queries, passages, strict=True)], dtype=np.float32)


def _corpus() -> pd.DataFrame:
    return pd.DataFrame({"doc_id": ["d1", "d2", "d3"], "title": ["", "t2", ""], "text": ["甲", "乙", "丙"]})


def test_first_stage_is_reranked_only_when_listed_and_available() -> None:
    queries = pd.DataFrame({"query_id": ["q1", "q2"], "text": ["乙", "丙"]})
    first = run_to_frame(["q1", "q2"], [[Hit("d1", 3), Hit("d2", 2)], [Hit("d3", 1), Hit("d1", 0.5)]])
    out = rerank.rerank_first_stage(first, OracleReranker(), _corpus(), queries, RERANK, first_stage="bm25")
    ranked = [[h.doc_id for h in hits] for hits in frame_to_run(out, ["q1", "q2"])]
    assert ranked == [["d2", "d1"], ["d3", "d1"]]
    oracle = OracleReranker()
    skipped = rerank.rerank_first_stage(first, oracle, _corpus(), queries, RERANK, first_stage="dense")
    assert "not listed in evaluation.rerank.retrievers" in unavailable_reason(skipped)
    none = Unavailable(what="reranker", reason="no reranker configured")
    out = rerank.rerank_first_stage(first, none, _corpus(), queries, RERANK, first_stage="bm25")
    assert unavailable_reason(out) == "no reranker configured"
    gone = unavailable_frame("no fine-tuned model")
    out = rerank.rerank_first_stage(gone, OracleReranker(), _corpus(), queries, RERANK, first_stage="bm25")
    assert unavailable_reason(out) == "no fine-tuned model"


def test_unknown_first_stages_in_conf_are_refused() -> None:
    unavailable = Unavailable("reranker", "off")
    with pytest.raises(ValueError, match=r"names \['dense'\], which the rerank stage does not offer"):
        rerank.describe_rerank(unavailable, unavailable, RERANK.model_copy(update={"retrievers": ["dense"]}))


def test_every_rerankable_first_stage_has_both_reranked_runs() -> None:
    assert {"bm25_rerank", "bm25_rerank_finetuned", "hybrid_weighted_rerank"} <= set(RETRIEVERS)
    pipeline = create_pipeline()
    outputs = pipeline.all_outputs()
    assert all(f"run_{r}_rerank{s}" in outputs for r in RERANKABLE for s in ("", "_finetuned"))


def test_passage_runs_are_scored_per_document_at_the_best_passage() -> None:
    ids = ["a#0", "a#1", "b", "c#0", "c#1"]
    corpus = pd.DataFrame({"doc_id": ids, "parent_id": ["a", "a", "b", "c", "c"], "title": "", "text": "x"})
    queries = pd.DataFrame({"query_id": ["q"], "text": ["?"]})
    qrels = pd.DataFrame({"query_id": ["q"], "doc_id": ["b"], "score": [1]})
    splits = pd.DataFrame({"query_id": ["q"], "split": ["report"]})
    run = run_to_frame(["q"], [[Hit("a#1", 0.9), Hit("a#0", 0.8), Hit("c#0", 0.7), Hit("b", 0.6)]])
    per_passage = nodes.score_runs(queries, qrels, splits, METRICS, None, bm25=run)
    per_document = nodes.score_runs(queries, qrels, splits, METRICS, corpus, bm25=run)
    assert per_passage["mrr@10"].iloc[0] == pytest.approx(1 / 4)  # scored as if passages were documents
    assert per_document["mrr@10"].iloc[0] == pytest.approx(1 / 3)  # a, c, b
    plain = corpus.assign(parent_id=corpus["doc_id"])
    assert nodes.passage_parents(plain) is None and nodes.passage_parents(corpus)["a#1"] == "a"


def test_fusion_is_tuned_on_document_rankings_too() -> None:
    corpus = pd.DataFrame({"doc_id": ["g#0", "g#1", "x", "y"], "parent_id": ["g", "g", "x", "y"],
                           "title": [""] * 4, "text": ["t"] * 4})  # fmt: skip
    queries = pd.DataFrame({"query_id": ["t1"], "text": ["a"]})
    splits = pd.DataFrame({"query_id": ["t1"], "split": ["tune"]})
    qrels = pd.DataFrame({"query_id": ["t1"], "doc_id": ["g"], "score": [1]})
    dense = run_to_frame(["t1"], [[Hit("g#1", 1.0), Hit("x", 0.5), Hit("y", 0.0)]])
    bm25 = run_to_frame(["t1"], [[Hit("x", 1.0), Hit("y", 0.5), Hit("g#0", 0.0)]])
    fusion = FusionParams(rrf_k=60, normalisation="minmax", weight_grid=[0.0, 1.0], tune_metric="mrr@10",
                          depth=10, fixed_dense_weight=None)  # fmt: skip
    tuned = nodes.tune_fusion_weight(dense, bm25, queries, qrels, splits, fusion, METRICS, corpus)
    assert tuned["dense_weight"] == 1.0 and tuned["grid"][1]["mrr@10"] == 1.0  # g#1 counts as g
    untuned = nodes.tune_fusion_weight(dense, bm25, queries, qrels, splits, fusion, METRICS)
    assert untuned["grid"][1]["mrr@10"] == 0.0  # without the corpus, g#1 is not g


@pytest.mark.slow
def test_sliced_evaluation_reranks_with_a_real_tiny_reranker(disc_corpus, tiny_qwen3_reranker_dir) -> None:
    docs = disc_corpus[:30]
    corpus = pd.DataFrame({"doc_id": [d for d, _ in docs], "title": "", "text": [t[:120] for _, t in docs]})
    qids = [f"q{i}" for i in range(12)]
    queries = pd.DataFrame({"query_id": qids, "text": [t[:12] for _, t in docs[:12]]})
    lists = [[Hit(d, 1.0 - 0.01 * k) for k, (d, _) in enumerate(docs[i : i + 15])] for i in range(12)]
    first = run_to_frame(qids, lists)
    config = {"kind": "qwen3", "model_path": str(tiny_qwen3_reranker_dir), "max_length": 256, "device": "cpu"}
    names = ("rerank_bm25", "rerank_bm25_finetuned", "rerank_hybrid_weighted", "describe_rerank")
    pipeline = create_pipeline().only_nodes(*(f"evaluation.{n}" for n in names))
    catalog = DataCatalog(
        {
            "run_bm25": MemoryDataset(first),
            "run_hybrid_weighted": MemoryDataset(first),
            "reranker": MemoryDataset(LazyReranker(config), copy_mode="assign"),
            "reranker_finetuned@reranker": MemoryDataset(Unavailable("reranker", "no fine-tuned one yet")),
            "corpus": MemoryDataset(corpus),
            "eval_queries": MemoryDataset(queries),
        }
    )
    catalog["params:evaluation.rerank"] = RERANK
    SequentialRunner().run(pipeline, catalog)
    reranked = catalog.load("run_bm25_rerank")
    assert unavailable_reason(reranked) is None
    run = frame_to_run(reranked, qids)
    assert all(len(hits) == 10 for hits in run)  # top_n of each 15-hit list
    assert all(h.doc_id in {d for d, _ in docs[i : i + 10]} for i, hits in enumerate(run) for h in hits)
    assert all(hits == sorted(hits, key=lambda h: -h.score) for hits in run)
    assert unavailable_reason(catalog.load("run_bm25_rerank_finetuned")) == "no fine-tuned one yet"
    assert "not listed" in unavailable_reason(catalog.load("run_hybrid_weighted_rerank"))
    settings = catalog.load("rerank_settings")
    assert settings["rerankers"]["rerank"]["kind"] == "qwen3" and settings["top_n"] == 10
    assert settings["rerankers"]["rerank_finetuned"] == {
        "status": "unavailable",
        "reason": "no fine-tuned one yet",
    }


def test_report_has_a_rerank_section() -> None:
    metrics = {"bm25": {"mrr@10": 0.5, "n_queries": 3}, "bm25_rerank": {"mrr@10": 0.6, "n_queries": 3}}
    comps = [{"a": "bm25_rerank", "b": "bm25", "metric": "mrr@10", "mean_diff": 0.1, "low": 0.01, "high": 0.2,
              "p_value": 0.02, "n_queries": 3, "confidence": 0.95}]  # fmt: skip
    settings = {
        "retrievers": ["bm25"],
        "top_n": 50,
        "rerankers": {
            "rerank": {"status": "configured", "kind": "qwen3", "model_path": "m"},
            "rerank_finetuned": {"status": "unavailable", "reason": "run reranker_finetune"},
        },
    }
    status = {"bm25": "evaluated", "bm25_rerank": "evaluated", "bm25_rerank_finetuned": "not evaluated: x"}
    weight = {"dense_weight": None, "source": "not tuned"}
    splits = pd.DataFrame({"query_id": ["a"], "split": ["report"]})
    prep = {"documents_in": 3, "documents_by_status": {"kept": 3}, "queries": 3, "judgements": 3,
            "queries_without_relevant_documents": []}  # fmt: skip
    meta = {"status": "unavailable", "reason": "r"}
    text = nodes.write_report(metrics, comps, status, weight, weight, splits, prep, meta, meta, meta, meta,
                              meta, "set", settings)  # fmt: skip
    assert "## Rerank stage" in text and "top 50 hits of each of `bm25`" in text
    assert "kind `qwen3`" in text and "`rerank_finetuned`: not evaluated — run reranker_finetune." in text
    assert "`bm25_rerank` is **better than** `bm25` on mrr@10" in text
