"""DenseIndex (flat/HNSW FAISS) and DenseRetriever, end to end on the tiny Qwen3 model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from finrag_pipelines.embedding.hf_encoder import HFEncoder
from finrag_pipelines.retrieval.dense import DenseIndex, DenseRetriever, measure_dense_qps
from finrag_pipelines.retrieval.types import Hit, IndexMismatchError, RetrievalError, Retriever

FAKE_META = {
    "kind": "test",
    "dim": 32,
    "query_task": None,
    "instruction_template": None,
    "fingerprint": "ab" * 32,
}


def _unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def random_index() -> tuple[DenseIndex, np.ndarray, list[str]]:
    docs = _unit_rows(500, 32, seed=0)
    ids = [f"d{i}" for i in range(len(docs))]
    return DenseIndex.build(ids, docs, FAKE_META, corpus_hash="c0"), docs, ids


@pytest.fixture(scope="module")
def encoder(tiny_qwen3_dir: Path) -> HFEncoder:
    return HFEncoder(tiny_qwen3_dir, query_task=None, batch_size=16, max_length=128)


@pytest.fixture(scope="module")
def corpus(disc_corpus: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    seen: dict[str, str] = {}
    for doc_id, text in disc_corpus:
        seen.setdefault(text[:300], doc_id)  # distinct texts only, so each query has one right answer
    return list(seen.values()), list(seen.keys())


@pytest.fixture(scope="module")
def tiny_index(encoder: HFEncoder, corpus: tuple[list[str], list[str]]) -> DenseIndex:
    ids, texts = corpus
    meta = {**encoder.describe(), "fingerprint": encoder.fingerprint}
    return DenseIndex.build(ids, encoder.encode_documents(texts), meta, corpus_hash="disc-v1")


def test_flat_search_equals_brute_force(random_index: tuple[DenseIndex, np.ndarray, list[str]]) -> None:
    index, docs, ids = random_index
    queries = _unit_rows(20, 32, seed=1)
    run = index.search_vectors(queries, k=10)
    scores = queries @ docs.T
    for qi, hits in enumerate(run):
        top = np.argsort(-scores[qi])[:10]
        assert [hit.doc_id for hit in hits] == [ids[j] for j in top]
        np.testing.assert_allclose([hit.score for hit in hits], scores[qi, top], atol=1e-5)
        assert all(isinstance(hit, Hit) for hit in hits)


def test_k_is_clipped_and_inputs_checked() -> None:
    docs = _unit_rows(3, 32, seed=2)
    index = DenseIndex.build(["a", "b", "c"], docs, FAKE_META, corpus_hash="c")
    run = index.search_vectors(docs, k=10)
    assert [len(hits) for hits in run] == [3, 3, 3]
    assert [hits[0].doc_id for hits in run] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="shape"):
        index.search_vectors(docs[:, :16], k=1)
    with pytest.raises(ValueError, match="k must"):
        index.search_vectors(docs, k=0)
    with pytest.raises(ValueError, match="unique"):
        DenseIndex.build(["a", "a", "c"], docs, FAKE_META, corpus_hash="c")
    with pytest.raises(ValueError, match="fingerprint"):
        DenseIndex.build(["a", "b", "c"], docs, {"kind": "x"}, corpus_hash="c")
    with pytest.raises(ValueError, match="index_type"):
        DenseIndex.build(["a", "b", "c"], docs, FAKE_META, corpus_hash="c", index_type="ivf")  # type: ignore[arg-type]


def test_hnsw_option(random_index: tuple[DenseIndex, np.ndarray, list[str]], tmp_path: Path) -> None:
    flat, docs, ids = random_index
    hnsw = DenseIndex.build(
        ids, docs, FAKE_META, corpus_hash="c0", index_type="hnsw", hnsw_m=16, ef_search=64
    )
    queries = _unit_rows(50, 32, seed=3)
    exact = flat.search_vectors(queries, k=10)
    approx = hnsw.search_vectors(queries, k=10)
    recall = np.mean([len({h.doc_id for h in a} & {h.doc_id for h in e}) / 10 for a, e in zip(approx, exact)])
    assert recall >= 0.9
    assert hnsw.meta["index_type"] == "hnsw" and hnsw.meta["hnsw"]["ef_search"] == 64
    loaded = DenseIndex.load(hnsw.save(tmp_path / "hnsw"))
    assert loaded.search_vectors(queries, k=10) == approx


def test_save_load_round_trip(random_index: tuple[DenseIndex, np.ndarray, list[str]], tmp_path: Path) -> None:
    index, _, ids = random_index
    folder = index.save(tmp_path / "dense")
    assert sorted(p.name for p in folder.iterdir()) == ["doc_ids.json", "index.faiss", "meta.json"]
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    for key in (
        "kind",
        "format_version",
        "encoder",
        "instruction_template",
        "query_task",
        "dim",
        "num_docs",
        "index_type",
        "corpus_hash",
        "built_at",
    ):
        assert key in meta
    assert meta["kind"] == "dense" and meta["format_version"] == 1 and meta["num_docs"] == 500
    assert meta["encoder"]["fingerprint"] == FAKE_META["fingerprint"]
    loaded = DenseIndex.load(folder)
    queries = _unit_rows(5, 32, seed=4)
    assert loaded.search_vectors(queries, k=7) == index.search_vectors(queries, k=7)
    assert loaded.doc_ids == ids and loaded.meta == index.meta


def test_load_rejects_broken_folders(
    random_index: tuple[DenseIndex, np.ndarray, list[str]], tmp_path: Path
) -> None:
    index, _, ids = random_index
    with pytest.raises(IndexMismatchError, match="nothing_here"):
        DenseIndex.load(tmp_path / "nothing_here")
    folder = index.save(tmp_path / "broken")
    (folder / "doc_ids.json").write_text(json.dumps(ids[:-1]), encoding="utf-8")
    with pytest.raises(IndexMismatchError, match="inconsistent"):
        DenseIndex.load(folder)
    folder = index.save(tmp_path / "old_format")
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    (folder / "meta.json").write_text(json.dumps({**meta, "format_version": 0}), encoding="utf-8")
    with pytest.raises(IndexMismatchError, match="format_version") as info:
        DenseIndex.load(folder)
    assert str(folder) in str(info.value)
    (folder / "index.faiss").unlink()
    with pytest.raises(IndexMismatchError, match="index.faiss"):
        DenseIndex.load(folder)


def test_check_compatible(tiny_index: DenseIndex, encoder: HFEncoder, tiny_qwen3_dir: Path) -> None:
    tiny_index.check_compatible(corpus_hash="disc-v1", encoder=encoder)
    with pytest.raises(IndexMismatchError, match="corpus hash") as info:
        tiny_index.check_compatible(corpus_hash="disc-v2")
    assert "kedro run --pipelines index_build" in str(info.value)
    with_task = HFEncoder(tiny_qwen3_dir, query_task="检索相关文档", batch_size=16, max_length=128)
    with pytest.raises(IndexMismatchError, match="query_task"):
        tiny_index.check_compatible(encoder=with_task)
    shorter = HFEncoder(tiny_qwen3_dir, query_task=None, batch_size=16, max_length=64)
    with pytest.raises(IndexMismatchError, match="max_length 128 -> 64"):
        tiny_index.check_compatible(encoder=shorter)
    with pytest.raises(IndexMismatchError, match="query_task"):
        DenseRetriever(tiny_index, with_task)


def test_dense_retriever_end_to_end(
    tiny_index: DenseIndex, encoder: HFEncoder, corpus: tuple[list[str], list[str]], tmp_path: Path
) -> None:
    ids, texts = corpus
    retriever = DenseRetriever(DenseIndex.load(tiny_index.save(tmp_path / "idx")), encoder, batch_size=7)
    assert isinstance(retriever, Retriever) and retriever.name == "dense"
    run = retriever.search(texts[:20], k=5)
    assert len(run) == 20 and all(len(hits) == 5 for hits in run)
    assert [hits[0].doc_id for hits in run] == ids[:20]  # a document's own text finds it first
    assert all(hits[0].score == pytest.approx(1.0, abs=1e-4) for hits in run)
    assert all(a.score >= b.score for hits in run for a, b in zip(hits, hits[1:]))
    direct = tiny_index.search_vectors(encoder.encode_queries(texts[:20]), k=5)
    assert [[h.doc_id for h in hits] for hits in run] == [[h.doc_id for h in hits] for hits in direct]
    np.testing.assert_allclose(
        [[h.score for h in hits] for hits in run], [[h.score for h in hits] for hits in direct], atol=1e-5
    )
    assert retriever.search([], k=5) == []


def test_dense_retriever_wraps_failures(tiny_index: DenseIndex, encoder: HFEncoder) -> None:
    retriever = DenseRetriever(tiny_index, encoder, name="dense-tiny", batch_size=2)
    with pytest.raises(RetrievalError, match="dense-tiny.*queries 2..3") as info:
        retriever.search(["苹果", "股价", "市值", None], k=3)  # type: ignore[list-item]
    assert isinstance(info.value.__cause__, TypeError)
    with pytest.raises(ValueError, match="k must"):
        retriever.search(["苹果"], k=0)


def test_measure_dense_qps(
    tiny_index: DenseIndex, encoder: HFEncoder, corpus: tuple[list[str], list[str]]
) -> None:
    result = measure_dense_qps(encoder, tiny_index, corpus[1][:12], k=5, batch_size=4, one_by_one_limit=5)
    assert result["dense_batched_qps"] > 0 and result["dense_one_by_one_qps"] > 0
    assert result["one_by_one_queries"] == 5


def test_dense_retriever_reuses_stored_query_vectors(
    tiny_index: DenseIndex,
    encoder: HFEncoder,
    corpus: tuple[list[str], list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from finrag_pipelines.embedding.store import EmbeddingStore

    _, texts = corpus
    fresh = DenseRetriever(tiny_index, encoder, batch_size=4).search(texts[:6], k=3)
    calls: list[int] = []
    original = encoder.encode_queries
    monkeypatch.setattr(encoder, "encode_queries", lambda batch: calls.append(len(batch)) or original(batch))
    retriever = DenseRetriever(tiny_index, encoder, batch_size=4, store=EmbeddingStore(tmp_path / "store"))
    first = retriever.search(texts[:6], k=3)
    assert sum(calls) == 6
    again = retriever.search(texts[:6], k=3)
    assert sum(calls) == 6  # all six query vectors came from the store
    assert [[h.doc_id for h in hits] for hits in first] == [[h.doc_id for h in hits] for hits in again]
    assert [[h.doc_id for h in hits] for hits in first] == [[h.doc_id for h in hits] for hits in fresh]
