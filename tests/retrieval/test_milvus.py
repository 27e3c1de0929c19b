"""Milvus backend (retrieval/milvus/) against FAISS and bm25s, on Milvus Lite embedded and a local server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "pymilvus", reason="the Milvus backend needs pymilvus: pip install 'finrag_pipelines[milvus]'"
)
pytest.importorskip(
    "milvus_lite", reason="the Milvus backend tests need milvus-lite: pip install 'finrag_pipelines[milvus]'"
)

from finrag_pipelines.retrieval.bm25.index import BM25Index
from finrag_pipelines.retrieval.bm25.scoring import BM25Config
from finrag_pipelines.retrieval.dense import DenseIndex, DenseRetriever
from finrag_pipelines.retrieval.interfaces import (
    IndexCapabilityError,
    LexicalIndex,
    TermScoringIndex,
    VectorIndex,
    require_term_scores,
)
from finrag_pipelines.retrieval.milvus.bm25 import MilvusBM25Index
from finrag_pipelines.retrieval.milvus.connection import MilvusTarget, close_clients
from finrag_pipelines.retrieval.milvus.dense import MilvusDenseConfig, MilvusDenseIndex
from finrag_pipelines.retrieval.milvus.local_server import LocalMilvusServer
from finrag_pipelines.retrieval.types import IndexMismatchError, Retriever
from finrag_pipelines.text.tokenize import FinanceTokenizer

FAKE_META = {
    "kind": "test",
    "dim": 32,
    "query_task": None,
    "instruction_template": None,
    "fingerprint": "ab" * 32,
}


class FakeEncoder:
    """Just enough of an Encoder for check_compatible / DenseRetriever: a fixed random projection."""

    dim = 32
    query_task = None
    fingerprint = "ab" * 32

    def describe(self) -> dict:
        return {k: v for k, v in FAKE_META.items() if k != "fingerprint"}

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return _unit_rows(len(texts), 32, seed=sum(map(len, texts)))


def _unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMilvusServer]:
    with LocalMilvusServer(tmp_path_factory.mktemp("milvus_server") / "data") as running:
        yield running
    close_clients()


@pytest.fixture(params=["lite", "server"])
def uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "lite":
        return str(tmp_path / "m.db")
    return request.getfixturevalue("server").uri


@pytest.fixture(scope="module")
def dense() -> tuple[DenseIndex, np.ndarray]:
    docs = _unit_rows(400, 32, seed=0)
    return DenseIndex.build([f"d{i}" for i in range(len(docs))], docs, FAKE_META, corpus_hash="c0"), docs


@pytest.fixture(scope="module")
def bm25(disc_corpus: list[tuple[str, str]]) -> BM25Index:
    ids, texts = zip(*disc_corpus)
    return BM25Index.build(list(ids), list(texts), FinanceTokenizer(), BM25Config(), "disc-v1")


@pytest.fixture(scope="module")
def queries(disc_corpus: list[tuple[str, str]]) -> list[str]:
    # passages of documents plus a few free-form questions
    return [text[40:100] for _, text in disc_corpus[::14]] + ["银行的存款利率是多少", "公司净利润增长的原因"]


def _collection(uri: str, name: str) -> str:
    # the server fixture is shared within the module: one collection name per test and backend
    return f"{name}_{'lite' if uri.endswith('.db') else 'srv'}"


def test_dense_flat_top_k_equals_faiss_flat(uri: str, dense: tuple[DenseIndex, np.ndarray]) -> None:
    index, _ = dense
    milvus = MilvusDenseIndex.write(index, MilvusTarget(uri, _collection(uri, "flat")), show_progress=False)
    queries = _unit_rows(25, 32, seed=1)
    expected = index.search_vectors(queries, k=10)
    got = milvus.search_vectors(queries, k=10)
    assert [[h.doc_id for h in hits] for hits in got] == [[h.doc_id for h in hits] for hits in expected]
    np.testing.assert_allclose(
        [[h.score for h in hits] for hits in got], [[h.score for h in hits] for hits in expected], atol=1e-4
    )
    assert milvus.num_docs == 400 and milvus.dim == 32 and milvus.meta["backend"] == "milvus"
    assert (
        milvus.meta["milvus"]["collection"] == _collection(uri, "flat")
        and milvus.meta["milvus"]["uri"] == uri
    )
    assert sorted(milvus.doc_ids) == sorted(index.doc_ids)
    assert len(milvus.search_vectors(queries[:2], k=1000)[0]) == 400  # k clipped to the corpus
    with pytest.raises(ValueError, match="shape"):
        milvus.search_vectors(np.ones((1, 8), dtype=np.float32), 3)
    # the same query-side checks and messages as the FAISS index, and DenseRetriever takes it unchanged
    milvus.check_compatible(corpus_hash="c0", encoder=FakeEncoder())
    with pytest.raises(IndexMismatchError, match="corpus hash differs"):
        milvus.check_compatible(corpus_hash="other")
    retriever = DenseRetriever(milvus, FakeEncoder(), name="dense_milvus")  # type: ignore[arg-type]
    assert isinstance(retriever, Retriever) and len(retriever.search(["a", "b"], 5)[1]) == 5


def test_dense_hnsw_recall_against_flat(tmp_path: Path, dense: tuple[DenseIndex, np.ndarray]) -> None:
    index, _ = dense
    config = MilvusDenseConfig("HNSW", {"M": 16, "efConstruction": 100}, {"ef": 64})
    milvus = MilvusDenseIndex.write(
        index, MilvusTarget(str(tmp_path / "m.db"), "hnsw"), config, show_progress=False
    )
    queries = _unit_rows(25, 32, seed=2)
    expected = index.search_vectors(queries, k=10)
    got = milvus.search_vectors(queries, k=10)
    recall = np.mean([len({h.doc_id for h in a} & {h.doc_id for h in b}) / 10 for a, b in zip(got, expected)])
    assert recall >= 0.9 and milvus.meta["index_type"] == "hnsw"


def test_bm25_top10_overlaps_bm25s(uri: str, bm25: BM25Index, queries: list[str]) -> None:
    milvus = MilvusBM25Index.write(bm25, MilvusTarget(uri, _collection(uri, "bm25")), show_progress=False)
    expected = bm25.search(queries, 10)
    got = milvus.search(queries, 10)
    overlaps = [
        len({h.doc_id for h in a} & {h.doc_id for h in b}) / max(1, min(len(a), 10))
        for a, b in zip(got, expected)
        if a or b
    ]
    assert np.mean(overlaps) >= 0.8, overlaps
    assert all(h.score > 0 for hits in got for h in hits)
    assert all([h.score for h in hits] == sorted((h.score for h in hits), reverse=True) for hits in got)
    assert milvus.search(["，。"], 5) == [[]]  # no token: no hits, as bm25s
    assert isinstance(milvus, Retriever) and milvus.name == "bm25" and milvus.num_docs == bm25.num_docs
    assert milvus.meta["milvus"]["params"]["bm25_k1"] == bm25.config.k1
    milvus.check_compatible("disc-v1")
    with pytest.raises(IndexMismatchError, match="built from corpus"):
        milvus.check_compatible("other")


def test_rewrite_is_idempotent_and_a_changed_corpus_rebuilds(
    tmp_path: Path, dense: tuple[DenseIndex, np.ndarray]
) -> None:
    index, docs = dense
    target = MilvusTarget(str(tmp_path / "m.db"), "docs")
    first = MilvusDenseIndex.write(index, target, show_progress=False)
    again = MilvusDenseIndex.write(index, target, show_progress=False)
    assert again.meta["built_at"] == first.meta["built_at"]  # left as is, not rewritten
    client = first._client
    assert client.query("docs", filter="", output_fields=["count(*)"])[0]["count(*)"] == 400
    smaller = DenseIndex.build([f"d{i}" for i in range(300)], docs[:300], FAKE_META, corpus_hash="c1")
    rebuilt = MilvusDenseIndex.write(smaller, target, show_progress=False)
    assert rebuilt.meta["corpus_hash"] == "c1" and rebuilt.num_docs == 300
    assert client.query("docs", filter="", output_fields=["count(*)"])[0]["count(*)"] == 300
    # the old meta.json no longer describes the collection: opening with it is refused
    with pytest.raises(IndexMismatchError, match="other inputs"):
        MilvusDenseIndex.open(target, first.meta)
    assert MilvusDenseIndex.open(target, rebuilt.meta).num_docs == 300


def test_bm25_without_tokens_needs_texts(
    tmp_path: Path, bm25: BM25Index, disc_corpus: list[tuple[str, str]]
) -> None:
    bm25.save(tmp_path / "bm25")
    loaded = BM25Index.load(tmp_path / "bm25")
    target = MilvusTarget(str(tmp_path / "m.db"), "bm25")
    with pytest.raises(ValueError, match="texts="):
        MilvusBM25Index.write(loaded, target, show_progress=False)
    written = MilvusBM25Index.write(loaded, target, texts=[t for _, t in disc_corpus], show_progress=False)
    assert written.num_docs == bm25.num_docs


def test_milvus_indexes_satisfy_their_protocols(
    tmp_path: Path, dense: tuple[DenseIndex, np.ndarray], bm25: BM25Index
) -> None:
    uri = str(tmp_path / "m.db")
    vectors = MilvusDenseIndex.write(dense[0], MilvusTarget(uri, "dense"), show_progress=False)
    lexical = MilvusBM25Index.write(bm25, MilvusTarget(uri, "bm25"), show_progress=False)
    assert isinstance(vectors, VectorIndex) and not isinstance(vectors, LexicalIndex)
    assert isinstance(lexical, LexicalIndex) and isinstance(lexical, Retriever)
    assert not isinstance(lexical, TermScoringIndex)  # Milvus gives top hits only, no per-document scores
    assert sorted(lexical.doc_ids) == sorted(bm25.doc_ids)
    tokens = lexical.tokenizer.tokenize_many(["银行的存款利率是多少"])
    assert lexical.search_tokens(tokens, 5) == lexical.search(["银行的存款利率是多少"], 5)
    with pytest.raises(IndexCapabilityError, match="MilvusBM25Index.*BM25IndexDataset"):
        require_term_scores(lexical, "negative_mining's BM25 candidates")


def test_target_validation() -> None:
    with pytest.raises(ValueError, match="ending in '.db'"):
        MilvusTarget("data/milvus", "c")
    with pytest.raises(ValueError, match="collection name"):
        MilvusTarget("m.db", "bad-name")
    assert MilvusTarget("http://h:19530", "c", token="secret").describe() == {
        "uri": "http://h:19530",
        "collection": "c",
        "mode": "server",
    }
