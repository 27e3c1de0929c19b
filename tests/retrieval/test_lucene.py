"""The Lucene (pyserini/Anserini) BM25 backend over the small DISC-FinLLM corpus: build, search, scores,
folder."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from finrag_pipelines.datasets.indexes import BM25IndexDataset
from finrag_pipelines.retrieval.bm25.index import BM25Index
from finrag_pipelines.retrieval.bm25.scoring import BM25Config
from finrag_pipelines.retrieval.interfaces import (
    IndexCapabilityError,
    LexicalIndex,
    TermScoringIndex,
    require_term_scores,
)
from finrag_pipelines.retrieval.lucene.index import LuceneBM25Index, LuceneConfig, RM3Config, not_applied
from finrag_pipelines.retrieval.types import IndexMismatchError, RetrievalError, Retriever
from finrag_pipelines.text.tokenize import FinanceTokenizer

PLAIN = LuceneConfig(k1=None, b=None, rm3=None, index_threads=2, search_threads=2)
SCORING = BM25Config(k1=1.2, b=0.75, method="lucene", tf_cap=5, domain_term_weight=1.2)


@pytest.fixture(scope="module")
def docs(disc_corpus: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    return [d for d, _ in disc_corpus], [t for _, t in disc_corpus]


@pytest.fixture(scope="module")
def tokenizer() -> FinanceTokenizer:
    return FinanceTokenizer(use_finance_dict=True, stopwords="builtin", search_mode=True)


@pytest.fixture(scope="module")
def lucene(lucene_java, docs, tokenizer) -> LuceneBM25Index:  # type: ignore[no-untyped-def]
    ids, texts = docs
    return LuceneBM25Index.build(ids, texts, tokenizer, SCORING, "corpus-hash", lucene=PLAIN, name="bm25")


@pytest.fixture(scope="module")
def queries(docs: tuple[list[str], list[str]]) -> list[str]:
    """Phrases cut from 40 documents (so each has a known source document)."""
    return [text.strip().replace("\n", " ")[10:40] for text in docs[1][:40]]


def test_lucene_builds_searches_and_agrees_with_bm25s_on_the_same_tokens(lucene, docs, tokenizer, queries):
    ids, texts = docs
    assert isinstance(lucene, LexicalIndex) and isinstance(lucene, TermScoringIndex)
    assert isinstance(lucene, Retriever) and lucene.num_docs == len(ids) and lucene.doc_ids == ids
    run = lucene.search(queries, 10)
    assert len(run) == len(queries) and all(0 < len(hits) <= 10 for hits in run)
    assert all(a.score >= b.score for hits in run for a, b in itertools.pairwise(hits))
    # the source document is found first for nearly every phrase
    assert sum(hits[0].doc_id == ids[i] for i, hits in enumerate(run)) >= 36
    # same tokens, same k1/b: the same top hit as bm25s without the tf cap / domain weight (Lucene's 1-byte
    # length
    # norms move scores by about a percent, which may swap near ties)
    plain = BM25Config(k1=1.2, b=0.75, method="lucene", tf_cap=None, domain_term_weight=1.0)
    bm25s = BM25Index.build(ids, texts, tokenizer, plain, "corpus-hash")
    reference = bm25s.search(queries, 10)
    assert sum(a[0].doc_id == b[0].doc_id for a, b in zip(run, reference)) >= 38
    top = [(a[0].score, b[0].score) for a, b in zip(run, reference) if a[0].doc_id == b[0].doc_id]
    assert max(abs(x - y) / y for x, y in top) < 0.05
    # no token, empty result; a str instead of tokens is refused; k is checked
    assert lucene.search(["的"], 5) == [[]] and lucene.search_tokens([[]], 3) == [[]]
    with pytest.raises(TypeError, match="not a token list"):
        lucene.search_tokens(["股票"], 3)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="positive int"):
        lucene.search(queries[:1], 0)
    with pytest.raises(ValueError, match="not one str"):
        lucene.search("股票", 3)  # type: ignore[arg-type]


def test_get_scores_gives_every_document_the_score_search_returns(lucene, tokenizer, queries):
    assert require_term_scores(lucene, "negative mining") is lucene
    for query in queries[:5]:
        tokens = tokenizer.tokenize(query)
        scores = lucene.get_scores(tokens)
        assert scores.shape == (lucene.num_docs,)
        hits = lucene.search_tokens([tokens], lucene.num_docs)[0]
        rows = {doc_id: row for row, doc_id in enumerate(lucene.doc_ids)}
        matched = np.zeros(lucene.num_docs, dtype=bool)
        for hit in hits:
            assert scores[rows[hit.doc_id]] == pytest.approx(hit.score, abs=2e-4)
            matched[rows[hit.doc_id]] = True
        assert (scores[~matched] == 0).all() and matched.any()
    assert (lucene.get_scores([]) == 0).all()


def test_a_batch_and_single_queries_give_the_same_hits(lucene, queries):
    batched = lucene.search(queries[:8], 5)
    assert batched == [lucene.search([q], 5)[0] for q in queries[:8]]


def test_meta_json_keeps_the_bm25_contract_and_lists_what_lucene_does_not_apply(lucene, tmp_path):
    meta = lucene.meta
    assert meta["kind"] == "bm25" and meta["backend"] == "lucene" and meta["num_docs"] == lucene.num_docs
    assert (
        meta["corpus_hash"] == "corpus-hash" and meta["tokenizer_fingerprint"] == lucene.tokenizer.fingerprint
    )
    assert meta["bm25"]["tf_cap"] == 5 and meta["tokenizer"]["search_mode"] is True
    assert meta["lucene"]["k1"] == 1.2 and meta["lucene"]["b"] == 0.75 and meta["lucene"]["rm3"] is None
    assert meta["lucene"]["not_applied"] == {"tf_cap": 5, "domain_term_weight": 1.2}
    assert meta["lucene"]["versions"]["pyserini"] and "anserini" in meta["lucene"]["versions"]["anserini_jar"]
    assert not_applied(BM25Config(method="bm25l"))["method"] == "bm25l"

    dataset = BM25IndexDataset(str(tmp_path / "bm25"))
    dataset.save(lucene)
    assert sorted(p.name for p in (tmp_path / "bm25").iterdir()) == [
        "doc_ids.json",
        "lucene",
        "meta.json",
        "tokenizer",
    ]
    loaded = dataset.load()  # the dataset reads backend: lucene from meta.json and opens Lucene
    assert isinstance(loaded, LuceneBM25Index) and loaded.meta == meta
    assert loaded.search(["公司 股票 收益"], 5) == lucene.search(["公司 股票 收益"], 5)
    loaded.check_compatible("corpus-hash")
    with pytest.raises(IndexMismatchError, match="was built from corpus"):
        loaded.check_compatible("another-corpus")

    # a folder that lies about its contents is refused on load
    saved = json.loads((tmp_path / "bm25" / "meta.json").read_text(encoding="utf-8"))
    (tmp_path / "bm25" / "meta.json").write_text(
        json.dumps({**saved, "lucene": {**saved["lucene"], "lucene_num_docs": 3}}), encoding="utf-8"
    )
    with pytest.raises(Exception, match="holds 139 documents, meta.json says 3"):  # Kedro wraps it
        dataset.load()
    (tmp_path / "bm25" / "meta.json").write_text(json.dumps({**saved, "backend": "other"}), encoding="utf-8")
    with pytest.raises(IndexMismatchError):
        LuceneBM25Index.load(tmp_path / "bm25")


def test_rm3_and_k1_b_come_from_conf_and_rm3_refuses_term_scores(
    lucene_java, docs, tokenizer, queries, lucene
):
    ids, texts = docs
    rm3 = LuceneConfig(
        k1=0.9,
        b=0.4,
        rm3=RM3Config(fb_terms=10, fb_docs=5, original_query_weight=0.5, filter_terms=False),
        index_threads=1,
        search_threads=1,
    )
    expanded = LuceneBM25Index.build(
        ids, texts, tokenizer, SCORING, "corpus-hash", lucene=rm3, name="bm25_rm3"
    )
    assert expanded.meta["lucene"]["k1"] == 0.9 and expanded.meta["lucene"]["rm3"]["fb_docs"] == 5
    run = expanded.search(queries[:10], 10)
    assert all(run) and run != lucene.search(queries[:10], 10)  # the expanded query scores differently
    # RM3 adds Chinese feedback terms, so documents sharing no query term are found too
    plain_ids = {h.doc_id for hits in lucene.search(queries[:10], 100) for h in hits}
    assert {h.doc_id for hits in expanded.search(queries[:10], 100) for h in hits} - plain_ids
    with pytest.raises(IndexCapabilityError, match="RM3 query expansion") as caught:
        require_term_scores(expanded, "negative_mining's BM25 candidates")
    assert "rm3: null" in str(caught.value) and "bm25.enabled: false" in str(caught.value)
    with pytest.raises(IndexCapabilityError):
        expanded.get_scores(["股票"])
    with pytest.raises(ValueError, match="original_query_weight"):
        RM3Config(fb_terms=10, fb_docs=5, original_query_weight=1.5, filter_terms=False)


def test_build_input_errors_name_the_problem(lucene_java, tokenizer):
    with pytest.raises(ValueError, match="unique"):
        LuceneBM25Index.build_from_tokens(["a", "a"], [["x"], ["y"]], tokenizer, SCORING, "h", lucene=PLAIN)
    with pytest.raises(ValueError, match="no document"):
        LuceneBM25Index.build_from_tokens(["a"], [[]], tokenizer, SCORING, "h", lucene=PLAIN)
    with pytest.raises(ValueError, match="one per document"):
        LuceneBM25Index.build_from_tokens(["a"], [], tokenizer, SCORING, "h", lucene=PLAIN)


def test_a_search_failure_is_an_error_never_an_empty_result(lucene_java, docs, tokenizer):
    ids, texts = docs
    index = LuceneBM25Index.build(ids[:20], texts[:20], tokenizer, SCORING, "h", lucene=PLAIN)
    index.close()
    with pytest.raises(RetrievalError, match="search of 1 queries failed"):
        index.search(["股票 基金"], 3)
    assert not Path(str(index._dir)).exists()  # an unsaved index's temporary folder is removed on close


def test_the_milvus_env_refuses_a_lucene_index_naming_the_setting(lucene, tmp_path):
    pytest.importorskip("pymilvus", reason="the Milvus dataset needs pymilvus (the milvus extra)")
    from kedro.io import DatasetError

    from finrag_pipelines.datasets.milvus import MilvusBM25IndexDataset

    dataset = MilvusBM25IndexDataset(
        uri=str(tmp_path / "m.db"), collection="c_bm25", meta_path=str(tmp_path / "milvus_bm25" / "meta.json")
    )
    with pytest.raises(DatasetError, match="set index_build.bm25.backend: bm25s for --env milvus"):
        dataset.save(lucene)
    assert not (tmp_path / "m.db").exists()
