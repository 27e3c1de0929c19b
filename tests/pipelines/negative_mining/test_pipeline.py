import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from kedro_datasets.pandas import JSONDataset as PandasJSONDataset
from kedro_datasets.pandas import ParquetDataset

from finrag_pipelines.embedding.encoders import format_query
from finrag_pipelines.embedding.hf_encoder import HFEncoder
from finrag_pipelines.embedding.store import EmbeddingStore, encode_with_store
from finrag_pipelines.execution import ExecutionConfig
from finrag_pipelines.floors import FloorError, FloorParams
from finrag_pipelines.pipelines.negative_mining import create_pipeline
from finrag_pipelines.pipelines.negative_mining.params import (
    CandidateParams,
    FormatParams,
    RerankFilterParams,
    RuleParams,
    SplitParams,
)
from finrag_pipelines.retrieval.bm25.index import BM25Index
from finrag_pipelines.retrieval.bm25.scoring import BM25Config
from finrag_pipelines.retrieval.dense import DenseIndex
from finrag_pipelines.retrieval.types import Unavailable
from finrag_pipelines.text.corpus import indexable
from finrag_pipelines.text.tokenize import FinanceTokenizer

ROOT = Path(__file__).resolve().parents[3]
CONF = yaml.safe_load((ROOT / "conf/base/parameters_negative_mining.yml").read_text(encoding="utf-8"))[
    "negative_mining"
]

TASK = "检索金融新闻"
JSONL = {
    "save_args": {"orient": "records", "lines": True, "force_ascii": False},
    "load_args": {"orient": "records", "lines": True},
}


class CountingEncoder:
    """Delegates to a real encoder and counts the queries it is asked to encode."""

    def __init__(self, inner):
        self._inner = inner
        self.queries_encoded = 0

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def encode_queries(self, texts):
        self.queries_encoded += len(texts)
        return self._inner.encode_queries(texts)


@pytest.fixture
def setup(tmp_path, disc_corpus, tiny_qwen3_dir):
    docs = disc_corpus[:80]
    corpus = pd.DataFrame({"doc_id": [d for d, _ in docs], "title": "", "text": [t for _, t in docs]})
    ids, texts, digest = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    encoder = CountingEncoder(HFEncoder(str(tiny_qwen3_dir), query_task=TASK, max_length=64, batch_size=16))
    store = EmbeddingStore(tmp_path / "cache")
    vectors = encode_with_store(encoder, texts, "document", store)
    dense = DenseIndex.build(ids, vectors, {**encoder.describe(), "fingerprint": encoder.fingerprint}, digest)
    bm25 = BM25Index.build(ids, texts, FinanceTokenizer(n_jobs=1), BM25Config(), digest)
    queries = pd.DataFrame(
        {
            "query_id": [f"q{i}" for i in range(40)],
            "doc_id": [ids[i // 2] for i in range(40)],
            "query": [texts[i // 2][(i % 2) * 10 : (i % 2) * 10 + 20] for i in range(40)],
        }
    )
    return corpus, queries, encoder, store, dense, bm25


def catalog_for(tmp_path, corpus, queries, encoder, store, dense, bm25, relative_margin=0.05):
    catalog = DataCatalog(
        {
            "distilled_queries": MemoryDataset(queries),
            "corpus": MemoryDataset(corpus),
            "dense_index": MemoryDataset(dense, copy_mode="assign"),
            "base_encoder": MemoryDataset(encoder, copy_mode="assign"),
            "embedding_store": MemoryDataset(store, copy_mode="assign"),
            "bm25_index": MemoryDataset(bm25, copy_mode="assign"),
            "reranker": MemoryDataset(Unavailable("reranker", "no reranker configured"), copy_mode="assign"),
            "infonce_train": PandasJSONDataset(filepath=str(tmp_path / "infonce_train.jsonl"), **JSONL),
            "infonce_dev": PandasJSONDataset(filepath=str(tmp_path / "infonce_dev.jsonl"), **JSONL),
            "mining_stats": JSONDataset(filepath=str(tmp_path / "mining_stats.json")),
            **{
                name: ParquetDataset(filepath=str(tmp_path / f"{name}.parquet"))
                for name in (
                    "mining_query_split",
                    "mining_selection",
                    "infonce_row_ids",
                    "mining_rerank_scores",
                )
            },
        }
    )
    catalog["params:negative_mining.split"] = SplitParams(dev_fraction=0.25, seed=7)
    catalog["params:negative_mining.candidates"] = CandidateParams(
        batch_size=7, depth=30, bm25={"enabled": True, "share": 0.25}
    )
    catalog["params:negative_mining.rules"] = RuleParams(
        rank_min=3,
        rank_max=25,
        relative_margin=relative_margin,
        near_duplicate_jaccard=0.8,
        near_duplicate_ngram=3,
        num_negatives=4,
        random_negatives=1,
        seed=13,
    )
    catalog["params:negative_mining.format"] = FormatParams(query_task=TASK)
    catalog["params:negative_mining.rerank_filter"] = RerankFilterParams(**CONF["rerank_filter"])
    catalog["params:negative_mining.floor"] = FloorParams(**CONF["floor"])
    catalog["params:negative_mining.execution"] = ExecutionConfig(
        **yaml.safe_load((ROOT / "conf/base/parameters_negative_mining.yml").read_text(encoding="utf-8"))[
            "negative_mining"
        ]["execution"]
    )
    return catalog


def test_pipeline_writes_swift_rows_and_reuses_stored_query_vectors(tmp_path, setup):
    corpus, queries, encoder, *_ = setup
    catalog = catalog_for(tmp_path, *setup)
    SequentialRunner().run(create_pipeline(), catalog)
    assert encoder.queries_encoded == queries["query"].nunique()  # distinct texts

    lines = (tmp_path / "infonce_train.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    dev = [json.loads(x) for x in (tmp_path / "infonce_dev.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) + len(dev) == len(queries) and rows and dev
    assert "\\u" not in lines[0]  # Chinese written unescaped
    ids = catalog.load("infonce_row_ids")  # the ids behind each line, in file order
    doc_text = dict(zip(corpus["doc_id"], corpus["text"]))
    query_text = dict(zip(queries["query_id"], queries["query"]))
    for split_name, split_rows in (("train", rows), ("dev", dev)):
        sidecar = ids[ids.split == split_name]
        assert list(sidecar.line) == list(range(len(split_rows)))
        for row, qid, doc_id in zip(split_rows, sidecar.query_id, sidecar.doc_id, strict=True):
            assert set(row) == {"messages", "positive_messages", "negative_messages"}
            assert row["messages"] == [{"role": "user", "content": format_query(TASK, query_text[qid])}]
            assert row["messages"][0]["content"].startswith(f"Instruct: {TASK}\nQuery:")
            assert row["positive_messages"] == [[{"role": "user", "content": doc_text[doc_id]}]]
            assert 1 <= len(row["negative_messages"]) <= 5
            assert all(len(neg) == 1 and neg[0]["role"] == "user" for neg in row["negative_messages"])
            assert doc_text[doc_id] not in [neg[0]["content"] for neg in row["negative_messages"]]

    # no document straddles train and dev
    split = catalog.load("mining_query_split")
    assert split.groupby("doc_id")["split"].nunique().max() == 1
    stats = catalog.load("mining_stats")
    assert stats["queries"] == len(queries) and set(stats["candidates_seen"]) == {"dense", "bm25"}
    assert stats["split"]["dev"]["queries"] == len(dev)
    selection = catalog.load("mining_selection")
    kept = selection[selection.status == "kept"]
    assert set(kept.source) <= {"dense", "bm25", "random"} and (kept.source == "random").sum() == len(queries)

    # a second run with the same store encodes no query again and selects the same negatives
    again = catalog_for(tmp_path, *setup)
    SequentialRunner().run(create_pipeline(), again)
    assert encoder.queries_encoded == queries["query"].nunique()  # distinct texts
    assert again.load("mining_selection").equals(selection)


def test_a_lexical_index_without_term_scores_is_refused_before_encoding(tmp_path, setup):
    pytest.importorskip("milvus_lite", reason="needs milvus-lite: pip install 'finrag_pipelines[milvus]'")
    from finrag_pipelines.pipelines.negative_mining.nodes import mine_candidates
    from finrag_pipelines.retrieval.interfaces import IndexCapabilityError
    from finrag_pipelines.retrieval.milvus.bm25 import MilvusBM25Index
    from finrag_pipelines.retrieval.milvus.connection import MilvusTarget, close_clients

    corpus, queries, encoder, store, dense, bm25 = setup
    milvus = MilvusBM25Index.write(bm25, MilvusTarget(str(tmp_path / "m.db"), "bm25"), show_progress=False)
    try:
        with_bm25 = CandidateParams(batch_size=7, depth=30, bm25={"enabled": True, "share": 0.25})
        with pytest.raises(IndexCapabilityError, match="MilvusBM25Index.*BM25IndexDataset"):
            mine_candidates(queries, corpus, dense, encoder, store, milvus, with_bm25)
        assert encoder.queries_encoded == 0  # refused before any query was encoded
        # without BM25 candidates a Milvus lexical index is fine: it is never asked for scores
        dense_only = CandidateParams(batch_size=7, depth=30, bm25={"enabled": False, "share": 0.25})
        candidates = mine_candidates(queries, corpus, dense, encoder, store, milvus, dense_only)
        assert set(candidates["source"]) == {"dense"} and len(candidates) == 30 * len(queries)
    finally:
        close_clients()


def test_a_mining_run_that_keeps_no_hard_negative_fails_on_its_floor(tmp_path, setup):
    # a margin of 0.99 drops every candidate scoring above 1% of its positive as a false negative
    catalog = catalog_for(tmp_path, *setup, relative_margin=0.99)
    message = r"negative_mining kept 0 of 40 queries with a hard negative.*false_negative"
    with pytest.raises(FloorError, match=message):
        SequentialRunner().run(create_pipeline(), catalog)
    stats = catalog.load("mining_stats")  # saved before the run stopped
    assert stats["queries_without_hard_negative"] == 40 and stats["floor"]["passed"] is False
    assert not (tmp_path / "infonce_train.jsonl").exists()
    assert not (tmp_path / "infonce_row_ids.parquet").exists()


class MarkerReranker:
    """A cross-encoder stand-in: scores a pair by shared characters; counts the pairs it is asked."""

    name = "marker"
    fingerprint = "f"

    def __init__(self):
        self.pairs = 0

    def describe(self):
        return {"kind": "marker"}

    def score_pairs(self, queries, passages):
        self.pairs += len(queries)
        shared = [len(set(q) & set(p)) / max(1, len(set(q))) for q, p in zip(queries, passages)]
        return np.array(shared, np.float32)


def test_reranker_filter_drops_what_it_scores_near_the_positive(tmp_path, setup):
    catalog = catalog_for(tmp_path, *setup)
    reranker = MarkerReranker()
    catalog["reranker"] = MemoryDataset(reranker, copy_mode="assign")
    catalog["params:negative_mining.rerank_filter"] = RerankFilterParams(
        enabled=True, relative_margin=0.3, chunk_pairs=50
    )
    SequentialRunner().run(create_pipeline(), catalog)
    scores = catalog.load("mining_rerank_scores")
    assert reranker.pairs == len(scores) > 0 and scores["rerank_score"].between(0, 1).all()
    selection = catalog.load("mining_selection")
    dropped = selection[selection.status == "reranker_false_negative"].merge(
        scores, on=["query_id", "candidate_id"]
    )
    assert len(dropped) > 0
    assert (dropped["rerank_score"] > 0.7 * dropped["rerank_positive_score"]).all()
    kept = selection[(selection.status == "kept") & (selection.source != "random")].merge(
        scores, on=["query_id", "candidate_id"]
    )
    assert (kept["rerank_score"] <= 0.7 * kept["rerank_positive_score"] + 1e-6).all()
    stats = catalog.load("mining_stats")
    assert sum(s["reranker_false_negative"] for s in stats["status_by_source"].values()) == len(
        selection[selection.status == "reranker_false_negative"]
    )


def test_an_enabled_filter_without_a_reranker_fails_and_a_disabled_one_loads_none(tmp_path, setup):
    from finrag_pipelines.pipelines.negative_mining.nodes import score_candidates_with_reranker

    corpus, queries, *_ = setup
    candidates = pd.DataFrame(columns=["query_id", "doc_id", "candidate_id", "rank", "score", "source",
                                       "positive_score"])  # fmt: skip
    rules = RuleParams(rank_min=1, rank_max=5, relative_margin=0.05, near_duplicate_jaccard=0.8,
                       near_duplicate_ngram=3, num_negatives=2, random_negatives=0, seed=1)  # fmt: skip
    on = RerankFilterParams(enabled=True, relative_margin=0.05, chunk_pairs=10)
    with pytest.raises(ValueError, match="no reranker configured"):
        none = Unavailable("r", "no reranker configured")
        score_candidates_with_reranker(candidates, queries, corpus, none, rules, on)

    class Boom:
        def __getattr__(self, name):
            raise AssertionError("a disabled filter must not touch the reranker")

    off = on.model_copy(update={"enabled": False})
    assert score_candidates_with_reranker(candidates, queries, corpus, Boom(), rules, off).empty
