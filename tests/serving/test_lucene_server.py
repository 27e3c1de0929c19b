"""finrag-serve over a Lucene (pyserini) BM25 index: the HTTP answers are the index's own, from the server's
worker thread (Java calls from a non-main thread)."""

from __future__ import annotations

import httpx
import pytest

from finrag_pipelines.retrieval.bm25.scoring import BM25Config
from finrag_pipelines.retrieval.lucene.index import LuceneBM25Index, LuceneConfig
from finrag_pipelines.serving.app import create_app
from finrag_pipelines.serving.backend import SearchBackend
from finrag_pipelines.serving.server import ServerThread
from finrag_pipelines.text.corpus import indexable
from finrag_pipelines.text.tokenize import FinanceTokenizer


@pytest.fixture(scope="module")
def lucene(lucene_java, corpus) -> LuceneBM25Index:  # type: ignore[no-untyped-def]
    ids, texts, digest = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    config = LuceneConfig(k1=None, b=None, rm3=None, index_threads=1, search_threads=2)
    return LuceneBM25Index.build(ids, texts, FinanceTokenizer(), BM25Config(), digest, lucene=config)


def test_server_answers_bm25_from_a_lucene_index(lucene, corpus, queries, settings):
    backend = SearchBackend(
        doc_ids=corpus["doc_id"],
        titles=corpus["title"],
        texts=corpus["text"],
        bm25=lucene,
        dense=None,
        encoder=None,
        default_method="bm25",
        alpha=0.5,
        alpha_source="test",
        fusion_depth=20,
        encode_batch_size=settings.encode_batch_size,
    )
    info = backend.info()["indexes"]["bm25"]
    assert info["backend"] == "lucene" and info["lucene"]["not_applied"]["tf_cap"] == 5
    expected = lucene.search(queries[:4], 3)
    with ServerThread(create_app(backend, settings)) as server:
        for _ in range(2):  # the worker thread attaches to the JVM, detaches, and attaches again
            reply = httpx.post(
                f"{server.url}/retrieve",
                json={"queries": queries[:4], "topk": 3, "return_scores": True},
                timeout=30,
            )
            assert reply.status_code == 200, reply.text
            got = [[(p["document"]["id"], p["score"]) for p in hits] for hits in reply.json()["result"]]
            assert got == [[(h.doc_id, pytest.approx(h.score)) for h in hits] for hits in expected]
