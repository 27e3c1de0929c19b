"""MilvusDenseIndexDataset / MilvusBM25IndexDataset: save what index_build returns,
load a searchable index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from kedro.io import DatasetError

pytest.importorskip(
    "pymilvus", reason="the Milvus datasets need pymilvus: pip install 'finrag_pipelines[milvus]'"
)
pytest.importorskip(
    "milvus_lite", reason="the Milvus dataset tests need milvus-lite: pip install 'finrag_pipelines[milvus]'"
)

from finrag_pipelines.datasets.milvus import MilvusBM25IndexDataset, MilvusDenseIndexDataset
from finrag_pipelines.retrieval.bm25.index import BM25Index
from finrag_pipelines.retrieval.bm25.scoring import BM25Config
from finrag_pipelines.retrieval.dense import DenseIndex
from finrag_pipelines.retrieval.milvus.bm25 import MilvusBM25Index
from finrag_pipelines.retrieval.milvus.connection import close_clients
from finrag_pipelines.retrieval.milvus.dense import MilvusDenseIndex
from finrag_pipelines.retrieval.milvus.local_server import LocalMilvusServer
from finrag_pipelines.retrieval.types import IndexMismatchError, Unavailable
from finrag_pipelines.text.tokenize import FinanceTokenizer

# Kedro wraps what load() raises in a DatasetError that keeps the message
MISMATCH = (IndexMismatchError, DatasetError)
FAKE_META = {
    "kind": "test",
    "dim": 16,
    "query_task": None,
    "instruction_template": None,
    "fingerprint": "cd" * 32,
}


def _dense(n: int, corpus_hash: str) -> DenseIndex:
    rows = np.random.default_rng(0).standard_normal((n, 16)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return DenseIndex.build([f"d{i}" for i in range(n)], rows, FAKE_META, corpus_hash=corpus_hash)


def _count(index: MilvusDenseIndex) -> int:
    return int(
        index._client.query(index.target.collection, filter="", output_fields=["count(*)"])[0]["count(*)"]
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with LocalMilvusServer(tmp_path_factory.mktemp("milvus_server") / "data") as running:
        yield running
    close_clients()


@pytest.fixture(params=["lite", "server"])
def uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "m.db") if request.param == "lite" else request.getfixturevalue("server").uri


def test_dense_dataset_round_trip_idempotent_and_rebuild(uri: str, tmp_path: Path) -> None:
    collection = "dense_" + ("lite" if uri.endswith(".db") else "srv")
    meta_path = tmp_path / "milvus_dense" / "meta.json"
    dataset = MilvusDenseIndexDataset(
        uri=uri,
        collection=collection,
        meta_path=str(meta_path),
        index={"index_type": "FLAT"},
        batch_size=64,
        show_progress=False,
    )
    assert not dataset.exists()
    built = _dense(200, "c0")
    dataset.save(built)
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    assert (
        meta["backend"] == "milvus"
        and meta["corpus_hash"] == "c0"
        and meta["milvus"]["collection"] == collection
    )
    loaded = dataset.load()
    assert isinstance(loaded, MilvusDenseIndex) and loaded.num_docs == 200
    queries = built.vectors()[:3]
    assert [h.doc_id for h in loaded.search_vectors(queries, 1)[0]] == ["d0"]
    dataset.save(built)  # re-run: left as is, no duplicate rows
    assert _count(dataset.load()) == 200
    dataset.save(_dense(120, "c1"))  # changed corpus: dropped and rebuilt
    reloaded = dataset.load()
    assert reloaded.meta["corpus_hash"] == "c1" and _count(reloaded) == 120
    with pytest.raises(IndexMismatchError, match="corpus hash differs"):  # not through Kedro
        reloaded.check_compatible(corpus_hash="c0")


def test_meta_json_that_does_not_match_the_collection_is_refused(tmp_path: Path) -> None:
    meta_path = tmp_path / "dense" / "meta.json"
    dataset = MilvusDenseIndexDataset(
        uri=str(tmp_path / "m.db"), collection="d", meta_path=str(meta_path), show_progress=False
    )
    with pytest.raises(MISMATCH, match="does not exist"):
        dataset.load()
    dataset.save(_dense(50, "c0"))
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["milvus"]["build_key"] = "0" * 64
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(MISMATCH, match="other inputs"):
        dataset.load()
    meta["kind"] = "bm25"
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(MISMATCH, match="not a dense index"):
        dataset.load()
    other = MilvusDenseIndexDataset(
        uri=str(tmp_path / "m.db"), collection="missing", meta_path=str(meta_path)
    )
    meta["kind"] = "dense"
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(MISMATCH, match="does not exist"):
        other.load()


def test_unavailable_is_recorded_and_returned(tmp_path: Path) -> None:
    dataset = MilvusDenseIndexDataset(
        uri=str(tmp_path / "m.db"), collection="ft", meta_path=str(tmp_path / "ft" / "meta.json")
    )
    dataset.save(Unavailable(what="dense index", reason="no fine-tuned model yet"))
    assert dataset.exists()
    assert dataset.load() == Unavailable(what="dense index", reason="no fine-tuned model yet")


def test_bm25_dataset_round_trip(uri: str, tmp_path: Path, disc_corpus: list[tuple[str, str]]) -> None:
    ids, texts = zip(*disc_corpus)
    built = BM25Index.build(list(ids), list(texts), FinanceTokenizer(), BM25Config(), "disc-v1")
    meta_path = tmp_path / "milvus_bm25" / "meta.json"
    collection = "bm25_" + ("lite" if uri.endswith(".db") else "srv")
    dataset = MilvusBM25IndexDataset(
        uri=uri, collection=collection, meta_path=str(meta_path), show_progress=False
    )
    dataset.save(built)
    assert (meta_path.parent / "tokenizer").is_dir()
    loaded = dataset.load()
    assert isinstance(loaded, MilvusBM25Index) and loaded.tokenizer.fingerprint == built.tokenizer.fingerprint
    loaded.check_compatible("disc-v1")
    hits = loaded.search([texts[3][:40]], 10)[0]
    assert ids[3] in {h.doc_id for h in hits}
    dataset.save(built)
    assert loaded.meta["built_at"] == dataset.load().meta["built_at"]  # idempotent: left as is
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["tokenizer_fingerprint"] = "x" * 64
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(MISMATCH, match="tokenizer fingerprint"):
        dataset.load()


def test_bad_configuration_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="index_type"):
        MilvusDenseIndexDataset(
            uri=str(tmp_path / "m.db"), collection="c", meta_path="m.json", index={"index_type": "PQ"}
        )
    with pytest.raises(DatasetError, match="unknown keys"):
        MilvusDenseIndexDataset(
            uri=str(tmp_path / "m.db"), collection="c", meta_path="m.json", credentials={"api_key": "x"}
        )
    with pytest.raises(ValueError, match="http"):
        MilvusBM25IndexDataset(uri="ftp://h", collection="c", meta_path="m.json")
