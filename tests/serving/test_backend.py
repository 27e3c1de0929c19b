"""SearchBackend: equality with the offline retrievers, alpha extremes, job merging, index checks."""

from __future__ import annotations

import pytest

from finrag_pipelines.retrieval.dense import DenseRetriever
from finrag_pipelines.retrieval.fusion import weighted_sum
from finrag_pipelines.retrieval.types import IndexMismatchError
from finrag_pipelines.serving.backend import SearchRequestError, tuned_alpha


def _ids(results):  # type: ignore[no-untyped-def]
    return [[p.doc_id for p in hits] for hits in results]


def test_results_equal_offline_retrievers(backend, indexes, encoder, queries) -> None:  # type: ignore[no-untyped-def]
    bm25, dense = indexes
    offline_dense = DenseRetriever(dense, encoder).search(queries, 5)
    offline_bm25 = bm25.search(queries, 5)
    for method, offline in (("dense", offline_dense), ("bm25", offline_bm25)):
        served = backend.search(queries, 5, method)
        assert _ids(served) == [[h.doc_id for h in hits] for hits in offline]
        assert [p.score for hits in served for p in hits] == pytest.approx(
            [h.score for hits in offline for h in hits]
        )
    fused = weighted_sum(
        [DenseRetriever(dense, encoder).search(queries, 20), bm25.search(queries, 20)], [0.4, 0.6], depth=5
    )
    served = backend.search(queries, 5, "hybrid")
    assert _ids(served) == [[h.doc_id for h in hits] for hits in fused]
    assert all(len(hits) == 5 for hits in served)


def test_alpha_extremes_rank_like_single_retrievers(backend, queries) -> None:  # type: ignore[no-untyped-def]
    assert _ids(backend.search(queries, 5, "hybrid", alpha=1.0)) == _ids(backend.search(queries, 5, "dense"))
    assert _ids(backend.search(queries, 5, "hybrid", alpha=0.0)) == _ids(backend.search(queries, 5, "bm25"))
    assert _ids(backend.search(queries, 5, "hybrid", alpha=0.5)) != _ids(backend.search(queries, 5, "dense"))


def test_contents_are_title_newline_text(backend, corpus) -> None:  # type: ignore[no-untyped-def]
    hits = backend.search([corpus["text"][0][:20]], 10, "bm25")[0]
    by_id = dict(zip(corpus["doc_id"], zip(corpus["title"], corpus["text"])))
    for passage in hits:
        title, text = by_id[passage.doc_id]
        assert passage.contents == f"{title}\n{text}"


def test_merged_jobs_equal_separate_searches(backend, queries) -> None:  # type: ignore[no-untyped-def]
    jobs = [
        backend.job(queries[:2], 3, "dense"),
        backend.job(queries[2:4], 7, "hybrid", 0.8),
        backend.job(queries[4:], 2, "bm25"),
        backend.job(queries[:1], 9, "hybrid"),
    ]
    merged = backend.search_jobs(jobs)
    for job, result in zip(jobs, merged):
        alpha = job.alpha if job.method == "hybrid" else None
        assert _ids(result) == _ids(backend.search(list(job.queries), job.topk, job.method, alpha))


def test_job_rejects_bad_requests_naming_the_field(backend) -> None:  # type: ignore[no-untyped-def]
    cases = [
        ({"queries": [], "topk": 3}, "queries"),
        ({"queries": ["a", " "], "topk": 3}, "queries[1]"),
        ({"queries": ["a"], "topk": 0}, "topk"),
        ({"queries": ["a"], "topk": 3, "method": "sparse"}, "method"),
        ({"queries": ["a"], "topk": 3, "method": "dense", "alpha": 0.5}, "alpha"),
        ({"queries": ["a"], "topk": 3, "method": "hybrid", "alpha": 1.5}, "alpha"),
    ]
    for kwargs, field in cases:
        with pytest.raises(SearchRequestError) as info:
            backend.job(**kwargs)
        assert info.value.field == field


def test_refuses_another_corpus(backend_factory, corpus) -> None:  # type: ignore[no-untyped-def]
    texts = list(corpus["text"])
    texts[3] = texts[3] + " 修改"
    with pytest.raises(IndexMismatchError, match="corpus"):
        backend_factory(texts=texts)


def test_refuses_another_encoder(backend_factory, encoder_factory) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(IndexMismatchError, match="query_task"):
        backend_factory(encoder=encoder_factory(query_task="another instruction"))
    with pytest.raises(IndexMismatchError, match="dim"):
        backend_factory(encoder=encoder_factory(dim=32))


def test_missing_index_limits_methods(backend_factory) -> None:  # type: ignore[no-untyped-def]
    only_bm25 = backend_factory(dense=None, encoder=None, default_method="bm25")
    assert only_bm25.methods == ("bm25",)
    with pytest.raises(SearchRequestError, match="not available"):
        only_bm25.job(["a"], 3, "hybrid")
    with pytest.raises(ValueError, match="default method"):
        backend_factory(dense=None, encoder=None, default_method="hybrid")


def test_tuned_alpha() -> None:
    assert tuned_alpha({"dense_weight": 0.3, "source": "tuned"}) == 0.3
    with pytest.raises(ValueError, match="not tuned"):
        tuned_alpha({"dense_weight": None, "source": "not tuned: dense unavailable"})
    with pytest.raises(ValueError, match="dense_weight"):
        tuned_alpha([0.3])


def test_info_describes_what_is_served(backend) -> None:  # type: ignore[no-untyped-def]
    info = backend.info()
    assert info["encoder"]["query_task"] == "检索回答问题的文档"
    assert info["encoder"]["instruction_template"].startswith("Instruct:")
    assert info["encoder"]["dim"] == 64
    assert info["corpus"]["num_docs"] == 60
    assert info["indexes"]["bm25"]["built_at"] and info["indexes"]["dense"]["built_at"]
    assert info["methods"] == ["dense", "bm25", "hybrid"]
