"""Index folder datasets load memory-mapped when the catalog says ``mmap: true``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from finrag_pipelines.datasets import BM25IndexDataset, FaissIndexDataset
from finrag_pipelines.retrieval.bm25.index import BM25Index
from finrag_pipelines.retrieval.bm25.scoring import BM25Config
from finrag_pipelines.retrieval.dense import DenseIndex
from finrag_pipelines.text.tokenize import FinanceTokenizer


def test_index_datasets_load_memory_mapped(tmp_path: Path) -> None:
    texts = ["营业收入同比增长", "净利润下降", "公司回购股份"]
    ids = ["a", "b", "c"]
    bm25 = BM25Index.build(ids, texts, FinanceTokenizer(stopwords=None), BM25Config(), corpus_hash="h")
    vectors = np.eye(3, 4, dtype=np.float32)
    dense = DenseIndex.build(ids, vectors, {"kind": "fake", "dim": 4, "fingerprint": "ef" * 32}, "h")
    for dataset_cls, index in ((BM25IndexDataset, bm25), (FaissIndexDataset, dense)):
        path = str(tmp_path / dataset_cls.__name__)
        dataset_cls(path).save(index)
        mapped = dataset_cls(path, mmap=True)
        assert mapped._describe()["mmap"] is True
        loaded = mapped.load()
        assert loaded.doc_ids == ids
    assert isinstance(
        BM25IndexDataset(str(tmp_path / "BM25IndexDataset"), mmap=True).load().bm25s.scores["data"], np.memmap
    )
    query = np.array([[0, 1, 0, 0]], dtype=np.float32)
    loaded = FaissIndexDataset(str(tmp_path / "FaissIndexDataset"), mmap=True).load()
    assert loaded.search_vectors(query, 1)[0][0].doc_id == "b"


def test_a_versioned_index_loads_its_newest_version_memory_mapped(tmp_path: Path) -> None:
    from kedro.io.core import Version

    texts, ids = ["营业收入同比增长", "净利润下降"], ["a", "b"]
    path = str(tmp_path / "bm25")
    for version, corpus_hash in (("2026-01-01T00.00.00.000Z", "old"), ("2026-01-02T00.00.00.000Z", "new")):
        tokenizer = FinanceTokenizer(stopwords=None)
        index = BM25Index.build(ids, texts, tokenizer, BM25Config(), corpus_hash=corpus_hash)
        BM25IndexDataset(path, version=Version(None, version)).save(index)
    loaded = BM25IndexDataset(path, mmap=True, version=Version(None, None)).load()
    assert loaded.meta["corpus_hash"] == "new"
    assert isinstance(loaded.bm25s.scores["data"], np.memmap)
