"""The server's optional rerank step and passage corpora: backend, settings and the real HTTP server."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from finrag_pipelines.retrieval.bm25.index import BM25Index
from finrag_pipelines.retrieval.bm25.scoring import BM25Config
from finrag_pipelines.serving.app import create_app
from finrag_pipelines.serving.backend import SearchRequestError
from finrag_pipelines.serving.server import ServerThread
from finrag_pipelines.serving.settings import ServingConfigError
from finrag_pipelines.text.corpus import indexable
from finrag_pipelines.text.tokenize import FinanceTokenizer


class LengthReranker:
    """Prefers shorter passages; records every batch of pairs it scores."""

    name = "length"
    fingerprint = "f"

    def __init__(self) -> None:
        self.batches: list[int] = []

    def describe(self) -> dict:
        return {"kind": "length"}

    def score_pairs(self, queries, passages):
        self.batches.append(len(queries))
        return np.array([1.0 / (1.0 + len(p)) for p in passages], dtype=np.float32)


def test_rerank_reorders_the_first_stage_depth_and_returns_topk(backend_factory, queries) -> None:
    reranker = LengthReranker()
    backend = backend_factory(reranker=reranker, rerank_depth=8)
    plain = backend.search(queries[:2], 3, method="bm25")
    first = backend.search(queries[:2], 8, method="bm25")
    reranked = backend.search(queries[:2], 3, method="bm25", rerank=True)
    assert reranker.batches == [sum(len(hits) for hits in first)]  # both queries' pairs in one call
    for before, after, top in zip(first, reranked, plain, strict=True):
        lengths = {p.doc_id: len(backend._indexed[p.doc_id]) for p in before}
        assert [p.doc_id for p in after] == sorted(lengths, key=lambda d: lengths[d])[:3]
        assert all(0 < p.score < 1 for p in after) and after != top
    assert backend.search(queries[:2], 3, method="bm25", rerank=False) == plain
    assert backend_factory(reranker=reranker, rerank_depth=8, rerank_default=True).search(
        queries[:2], 3, method="bm25"
    ) == reranked  # fmt: skip


def test_rerank_requests_without_a_reranker_are_refused(backend_factory, settings_factory) -> None:
    backend = backend_factory()
    with pytest.raises(SearchRequestError, match="rerank: this server has no reranker"):
        backend.job(["q"], 3, rerank=True)
    assert backend.info()["rerank"]["available"] is False
    with pytest.raises(ValueError, match="rerank_default needs a reranker"):
        backend_factory(rerank_default=True)
    with pytest.raises(ServingConfigError, match="rerank.default: true needs rerank.enabled"):
        settings_factory(rerank={"enabled": False, "default": True, "depth": 5})


def test_server_reranks_on_request_and_names_each_passages_document(corpus, encoder, settings) -> None:
    from finrag_pipelines.retrieval.dense import DenseIndex
    from finrag_pipelines.serving.backend import SearchBackend

    # the first document split into two passages, as corpus_prep.passages writes them
    ids = ["p#0", "p#1", *corpus["doc_id"][1:20]]
    parents = ["p", "p", *corpus["doc_id"][1:20]]
    first = corpus["text"][0]
    texts = [first[: len(first) // 2], first[len(first) // 2 :], *corpus["text"][1:20]]
    titles = ["标题", "标题", *corpus["title"][1:20]]
    pids, indexed, digest = indexable(ids, titles, texts)
    bm25 = BM25Index.build(pids, indexed, FinanceTokenizer(), BM25Config(), digest)
    dense = DenseIndex.build(pids, encoder.encode_documents(indexed),
                             {**encoder.describe(), "fingerprint": encoder.fingerprint}, digest)  # fmt: skip
    backend = SearchBackend(
        doc_ids=ids, titles=titles, texts=texts, bm25=bm25, dense=dense, encoder=encoder,
        default_method="bm25", alpha=0.5, alpha_source="test", fusion_depth=10, encode_batch_size=8,
        parent_ids=parents,
        reranker=LengthReranker(), rerank_depth=10,
    )  # fmt: skip
    query = texts[1][3:15]
    with ServerThread(create_app(backend, settings)) as server:
        body = {"queries": [query], "topk": 3, "return_scores": True}
        plain = httpx.post(f"{server.url}/retrieve", json=body).json()["result"][0]
        assert plain[0]["document"]["id"] == "p#1" and plain[0]["document"]["doc_id"] == "p"
        others = [h["document"] for h in plain[1:]]
        assert all(d["doc_id"] == d["id"] for d in others if not d["id"].startswith("p#"))
        reranked = httpx.post(f"{server.url}/retrieve", json={**body, "rerank": True}).json()["result"][0]
        assert [h["score"] for h in reranked] == sorted((h["score"] for h in reranked), reverse=True)
        assert reranked != plain and all(0 < h["score"] < 1 for h in reranked)
        bad = httpx.post(f"{server.url}/retrieve", json={**body, "rerank": "yes"})
        assert bad.status_code == 422 and "rerank" in bad.json()["detail"]
        info = httpx.get(f"{server.url}/info").json()
        assert info["rerank"]["available"] is True
        assert info["passages"] == {"split": True, "split_documents": 1}
