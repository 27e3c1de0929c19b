"""Loading indexes memory-mapped, and building a dense index from an np.memmap, give the same answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from finrag_pipelines.retrieval.bm25.index import BM25Index
from finrag_pipelines.retrieval.bm25.scoring import BM25Config, score_corpus
from finrag_pipelines.retrieval.dense import DenseIndex, iter_row_chunks
from finrag_pipelines.text.tokenize import FinanceTokenizer

META = {"kind": "fake", "dim": 16, "query_task": None, "fingerprint": "cd" * 32}
TEXTS = [
    "营业收入同比增长",
    "净利润下降，毛利率稳定",
    "公司回购股份并分红",
    "营业收入 净利润 分红",
    "可转债募集资金",
]


def _unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
def test_dense_from_a_memmap_and_loaded_memory_mapped(tmp_path: Path, index_type: str) -> None:
    docs = _unit_rows(300, 16, seed=0)
    np.save(tmp_path / "v.npy", docs)
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    ids = [f"d{i}" for i in range(len(docs))]
    queries = _unit_rows(12, 16, seed=1)
    in_memory = DenseIndex.build(ids, docs, META, "c0", index_type=index_type)
    streamed = DenseIndex.build(ids, mapped, META, "c0", index_type=index_type)
    assert streamed.search_vectors(queries, 5) == in_memory.search_vectors(queries, 5)
    folder = streamed.save(tmp_path / "dense")
    loaded = DenseIndex.load(folder, mmap=True)
    assert loaded.search_vectors(queries, 5) == in_memory.search_vectors(queries, 5)
    np.testing.assert_array_equal(loaded.vectors(), docs)


def test_row_chunks_cover_a_memmap_in_order(tmp_path: Path) -> None:
    docs = _unit_rows(130, 4, seed=2)
    np.save(tmp_path / "v.npy", docs)
    chunks = list(iter_row_chunks(np.load(tmp_path / "v.npy", mmap_mode="r"), rows=50))
    assert [start for start, _ in chunks] == [0, 50, 100]
    np.testing.assert_array_equal(np.concatenate([chunk for _, chunk in chunks]), docs)
    assert all(chunk.flags.c_contiguous and chunk.dtype == np.float32 for _, chunk in chunks)


def test_dense_build_still_checks_every_row_in_chunks(tmp_path: Path) -> None:
    docs = _unit_rows(40_000, 2, seed=3)  # more than one chunk
    docs[39_999, 1] = np.nan
    ids = [f"d{i}" for i in range(len(docs))]
    with pytest.raises(ValueError, match=r"'d39999' \(row 39999\) has NaN"):
        DenseIndex.build(ids, docs, META | {"dim": 2}, "c0")


def test_bm25_loaded_memory_mapped_answers_the_same(tmp_path: Path) -> None:
    tokenizer = FinanceTokenizer(stopwords=None)
    ids = [f"d{i}" for i in range(len(TEXTS))]
    index = BM25Index.build(ids, TEXTS, tokenizer, BM25Config(domain_term_weight=1.3), corpus_hash="h")
    folder = index.save(tmp_path / "bm25")
    mapped = BM25Index.load(folder, mmap=True)
    assert isinstance(mapped.bm25s.scores["data"], np.memmap)
    queries = ["营业收入", "分红 净利润", "可转债"]
    assert mapped.search(queries, k=3) == index.search(queries, k=3)
    np.testing.assert_array_equal(mapped.get_scores(["营业收入"]), index.get_scores(["营业收入"]))


def test_score_corpus_counts_empty_documents_from_flat_arrays() -> None:
    scored = score_corpus([["a", "b", "a"], [], ["b"]], BM25Config(tf_cap=None, domain_term_weight=1.0))
    assert scored.empty_docs == 1 and scored.avg_doc_len == pytest.approx(4 / 3)
    assert scored.retriever.scores["num_docs"] == 3 and scored.retriever.vocab_dict == {"a": 0, "b": 1}


def test_score_matrix_counted_in_document_chunks_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    from finrag_pipelines.retrieval.bm25 import scoring

    rng = np.random.default_rng(0)
    corpus = [[f"t{t}" for t in rng.integers(0, 50, size=rng.integers(0, 30))] for _ in range(400)]
    config = BM25Config(method="bm25l", tf_cap=3)
    whole = scoring.score_corpus(corpus, config).retriever.scores
    monkeypatch.setattr(scoring, "_PAIR_CHUNK_TOKENS", 7)  # many chunks, some documents longer than one
    chunked = scoring.score_corpus(corpus, config).retriever.scores
    for key in ("data", "indices", "indptr"):
        assert chunked[key].dtype == whole[key].dtype
        np.testing.assert_array_equal(chunked[key], whole[key])
