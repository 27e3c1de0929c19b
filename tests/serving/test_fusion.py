"""The server's ``bm25_ngram`` and ``fusion`` methods: the evaluation's fusion settings, served."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from finrag_pipelines.retrieval.bm25.index import BM25Index
from finrag_pipelines.retrieval.bm25.scoring import BM25Config
from finrag_pipelines.retrieval.candidates import CandidateTable
from finrag_pipelines.retrieval.dense import DenseRetriever
from finrag_pipelines.retrieval.first_stage import FusionSettings
from finrag_pipelines.retrieval.learned_fusion import FeatureBuilder, LearnedFusion
from finrag_pipelines.serving.app import create_app
from finrag_pipelines.serving.server import ServerThread
from finrag_pipelines.text.corpus import indexable
from finrag_pipelines.text.ngram import CharNgramTokenizer

LGBM = {
    "n_estimators": 20,
    "num_leaves": 4,
    "min_child_samples": 2,
    "random_state": 0,
    "n_jobs": 1,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}
DEPTH = 15


@pytest.fixture(scope="module")
def ngram(corpus) -> BM25Index:  # type: ignore[no-untyped-def]
    ids, texts, digest = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    config = BM25Config(k1=1.2, b=0.75, method="lucene", tf_cap=None, domain_term_weight=1.0)
    return BM25Index.build(ids, texts, CharNgramTokenizer(n=2), config, digest, name="bm25_ngram")


def _runs(indexes, ngram, encoder, queries):  # type: ignore[no-untyped-def]
    bm25, dense = indexes
    return {
        "bm25": bm25.search(queries, DEPTH),
        "bm25_ngram": ngram.search(queries, DEPTH),
        "dense": DenseRetriever(dense, encoder).search(queries, DEPTH),
    }


@pytest.fixture(scope="module")
def learned_settings(corpus, indexes, ngram, encoder) -> FusionSettings:  # type: ignore[no-untyped-def]
    """A LightGBM fusion trained on queries cut from the documents (the source document is relevant)."""
    ids, texts, _ = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    queries = [texts[i][3:18] for i in range(0, 40)]
    runs = _runs(indexes, ngram, encoder, queries)
    table = CandidateTable.from_runs(runs, DEPTH)
    builder = FeatureBuilder(
        dict(zip(ids, texts)), {"bm25": indexes[0].tokenizer, "bm25_ngram": ngram.tokenizer}
    )
    labels = [np.array([int(d == ids[i]) for d in q.doc_ids]) for i, q in enumerate(table.queries)]
    model = LearnedFusion.fit(
        builder.features(table, queries),
        labels,
        retrievers=list(runs),
        views=["bm25", "bm25_ngram"],
        params=LGBM,
    )
    return FusionSettings(
        tuple(runs), "learned", {"bm25": 0.3, "bm25_ngram": 0.5, "dense": 0.2}, DEPTH, model, source="test"
    )


@pytest.mark.parametrize("method", ["learned", "weighted"])
def test_fusion_serves_what_the_settings_give_for_the_same_runs(
    backend_factory, corpus, indexes, ngram, encoder, queries, learned_settings, method
) -> None:  # type: ignore[no-untyped-def]
    settings = FusionSettings(
        learned_settings.retrievers,
        method,
        learned_settings.weights,
        DEPTH,
        learned_settings.learned,
        source="test",
    )
    backend = backend_factory(lexical={"bm25_ngram": ngram}, fusion=settings, default_method="auto")
    assert backend.methods == ("dense", "bm25", "hybrid", "bm25_ngram", "fusion")
    assert backend.default_method == "fusion" and backend.info()["fusion"]["method"] == method
    ids, texts, _ = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    builder = FeatureBuilder(
        dict(zip(ids, texts)), {"bm25": indexes[0].tokenizer, "bm25_ngram": ngram.tokenizer}
    )
    expected = settings.fuse(_runs(indexes, ngram, encoder, queries), queries, builder)
    served = backend.search(queries, 5)
    for hits, passages in zip(expected, served):
        assert [p.doc_id for p in passages] == [h.doc_id for h in hits[:5]]
        np.testing.assert_allclose(
            [p.score for p in passages], [h.score for h in hits[:5]], rtol=1e-5, atol=1e-6
        )
    # one micro-batch of mixed methods equals separate searches
    jobs = [
        backend.job(queries[:2], 3, "fusion"),
        backend.job(queries[2:4], 4, "bm25_ngram"),
        backend.job(queries[:1], 2, "hybrid"),
    ]
    together = backend.search_jobs(jobs)
    assert together[0] == backend.search(queries[:2], 3, "fusion")
    assert together[1] == backend.search(queries[2:4], 4, "bm25_ngram")
    assert [p.doc_id for p in together[1][0]] == [h.doc_id for h in ngram.search(queries[2:3], 4)[0]]


def test_auto_falls_back_to_hybrid_and_missing_parts_are_named(
    backend_factory, ngram, learned_settings
) -> None:  # type: ignore[no-untyped-def]
    assert backend_factory(default_method="auto").default_method == "hybrid"
    with pytest.raises(ValueError, match="bm25_ngram"):
        backend_factory(fusion=learned_settings)  # the settings fuse bm25_ngram, which this server lacks
    with pytest.raises(ValueError, match="not available"):
        backend_factory(default_method="fusion")


def test_fusion_over_http(  # type: ignore[no-untyped-def]
    backend_factory, settings, ngram, learned_settings, queries
) -> None:
    backend = backend_factory(lexical={"bm25_ngram": ngram}, fusion=learned_settings)
    with ServerThread(create_app(backend, settings)) as server:
        body = {"queries": queries[:2], "topk": 3, "return_scores": True, "method": "fusion"}
        response = httpx.post(f"{server.url}/retrieve", json=body, timeout=60)
        assert response.status_code == 200, response.text
        ids = [[hit["document"]["id"] for hit in hits] for hits in response.json()["result"]]
        assert ids == [[p.doc_id for p in hits] for hits in backend.search(queries[:2], 3, "fusion")]
        bad = httpx.post(f"{server.url}/retrieve", json={**body, "method": "splade"}, timeout=60)
        assert bad.status_code == 422 and "method" in bad.text
