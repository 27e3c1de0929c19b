"""BM25Index: the tf cap and the domain-term weight match the formula exactly; plain settings equal bm25s."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import bm25s
import numpy as np
import pytest

from finrag_pipelines.retrieval.bm25.index import BM25Index
from finrag_pipelines.retrieval.bm25.scoring import BM25Config
from finrag_pipelines.retrieval.types import Hit, IndexMismatchError, Retriever
from finrag_pipelines.text.tokenize import FinanceTokenizer

# ASCII words: jieba keeps each whole, so the tokens (and every BM25 statistic) are known by hand
DOCS = {
    "d0": "apple " * 8 + "banana",  # tf(apple) = 8 > cap, length 9
    "d1": "apple banana cherry",
    "d2": "cherry cherry date",
    "d3": "apple apple apple date",  # tf(apple) = 3 < cap, length 4
}
IDS, TEXTS = list(DOCS), list(DOCS.values())
LENGTHS = {"d0": 9, "d1": 3, "d2": 3, "d3": 4}
AVGDL = sum(LENGTHS.values()) / 4
K1, B = 1.2, 0.75


def lucene(tf: float, df: int, dl: int, n: int = 4, avgdl: float = AVGDL) -> float:
    """Lucene BM25 contribution of one term, computed by hand."""
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return idf * tf / (tf + K1 * (1 - B + B * dl / avgdl))


def tokenizer(**kwargs: object) -> FinanceTokenizer:
    settings: dict = {"use_finance_dict": False, "stopwords": None, "extra_words": ["apple"]}
    settings.update(kwargs)
    return FinanceTokenizer(**settings)


def build(config: BM25Config, tok: FinanceTokenizer | None = None) -> BM25Index:
    return BM25Index.build(IDS, TEXTS, tok or tokenizer(), config, corpus_hash="hash-a")


def scores_by_id(index: BM25Index, tokens: list[str]) -> dict[str, float]:
    return dict(zip(index.doc_ids, index.get_scores(tokens).tolist()))


def test_tf_cap_caps_tf_inside_the_formula_and_keeps_true_lengths() -> None:
    capped = scores_by_id(build(BM25Config(k1=K1, b=B, tf_cap=5, domain_term_weight=1.0)), ["apple"])
    uncapped = scores_by_id(build(BM25Config(k1=K1, b=B, tf_cap=None, domain_term_weight=1.0)), ["apple"])
    df = 3
    assert capped["d0"] == pytest.approx(lucene(5, df, 9), rel=1e-6)  # tf 8 counts as 5, length stays 9
    assert uncapped["d0"] == pytest.approx(lucene(8, df, 9), rel=1e-6)
    assert capped["d0"] < uncapped["d0"]
    for doc_id, tf in (("d1", 1), ("d3", 3)):  # below the cap: unchanged, same avgdl
        assert capped[doc_id] == uncapped[doc_id] == pytest.approx(lucene(tf, df, LENGTHS[doc_id]), rel=1e-6)
    assert capped["d2"] == uncapped["d2"] == 0.0
    tight = scores_by_id(build(BM25Config(k1=K1, b=B, tf_cap=2, domain_term_weight=1.0)), ["apple"])
    assert tight["d3"] == pytest.approx(lucene(2, df, 4), rel=1e-6)


def test_domain_weight_multiplies_exactly_the_domain_terms_contribution() -> None:
    tok = tokenizer()
    assert tok.is_domain_term("apple") and not tok.is_domain_term("cherry")
    weighted = build(BM25Config(k1=K1, b=B, tf_cap=None, domain_term_weight=1.5), tok)
    unweighted = build(BM25Config(k1=K1, b=B, tf_cap=None, domain_term_weight=1.0), tok)
    apple, cherry = scores_by_id(unweighted, ["apple"]), scores_by_id(unweighted, ["cherry"])
    both = scores_by_id(weighted, ["apple", "cherry"])
    for doc_id in IDS:
        assert both[doc_id] == pytest.approx(1.5 * apple[doc_id] + cherry[doc_id], rel=1e-6, abs=1e-9)
    assert both["d1"] == pytest.approx(1.5 * lucene(1, 3, 3) + lucene(1, 2, 3), rel=1e-6)
    # a query without domain terms is scored exactly as without weights
    assert scores_by_id(weighted, ["cherry", "date"]) == scores_by_id(unweighted, ["cherry", "date"])
    hits = weighted.search(["apple cherry"], k=4)[0]
    assert [h.doc_id for h in hits] == sorted(both, key=lambda d: -both[d])
    assert [h.score for h in hits] == pytest.approx(sorted(both.values(), reverse=True), rel=1e-6)


@pytest.mark.parametrize("method", ["bm25l", "bm25+"])
def test_domain_weight_also_weights_the_nonoccurrence_part(method: str) -> None:
    tok = tokenizer()
    weighted = build(BM25Config(k1=K1, b=B, method=method, tf_cap=None, domain_term_weight=2.0), tok)
    unweighted = build(BM25Config(k1=K1, b=B, method=method, tf_cap=None, domain_term_weight=1.0), tok)
    apple, cherry = unweighted.get_scores(["apple"]), unweighted.get_scores(["cherry"])
    np.testing.assert_allclose(weighted.get_scores(["apple", "cherry"]), 2.0 * apple + cherry, rtol=1e-6)
    # documents matching no query term are never hits, although they score the non-occurrence baseline
    assert {h.doc_id for h in weighted.search(["cherry"], k=4)[0]} == {"d1", "d2"}


def _plain_bm25s(corpus_tokens: list[list[str]], method: str) -> bm25s.BM25:
    plain = bm25s.BM25(k1=K1, b=B, method=method)
    plain.index(corpus_tokens, show_progress=False)
    return plain


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire", "bm25l", "bm25+"])
def test_without_cap_and_weight_scores_equal_plain_bm25s(
    method: str, disc_corpus: list[tuple[str, str]]
) -> None:
    tok = FinanceTokenizer.plain()
    ids = [doc_id for doc_id, _ in disc_corpus]
    corpus_tokens = tok.tokenize_many([text for _, text in disc_corpus])
    ours = BM25Index.build_from_tokens(
        ids,
        corpus_tokens,
        tok,
        BM25Config(k1=K1, b=B, method=method, tf_cap=None, domain_term_weight=1.0),
        "h",
    )
    plain = _plain_bm25s(corpus_tokens, method)
    queries = [tok.tokenize(text[:40]) for _, text in disc_corpus[::7]] + [["公司", "公司", "利润"]]
    for query in queries:
        np.testing.assert_array_equal(ours.get_scores(query), plain.get_scores(query))  # bit-identical
    k = 10
    docs, scores = plain.retrieve(queries, k=k, show_progress=False, n_threads=0, backend_selection="numpy")
    for query, hits, plain_docs, plain_scores in zip(queries, ours.search_tokens(queries, k), docs, scores):
        full = plain.get_scores(query)
        nonocc = (
            float(plain.nonoccurrence_array[plain.get_tokens_ids(query)].sum())
            if method in ("bm25l", "bm25+")
            else 0.0
        )
        matched = [(ids[d], float(s)) for d, s in zip(plain_docs, plain_scores) if s > nonocc]
        assert matched, query
        assert [h.score for h in hits] == [s for _, s in matched]
        assert all(float(full[ids.index(h.doc_id)]) == h.score for h in hits)
        last = matched[-1][1]  # order among exact ties at the cut-off may differ
        assert [h.doc_id for h in hits if h.score > last] == [d for d, s in matched if s > last] or len(
            {s for _, s in matched}
        ) < len(matched)
        assert {h.doc_id for h in hits if h.score > last} == {d for d, s in matched if s > last}


def test_tf_cap_only_changes_documents_above_the_cap(disc_corpus: list[tuple[str, str]]) -> None:
    tok = FinanceTokenizer.plain()
    ids = [doc_id for doc_id, _ in disc_corpus]
    corpus_tokens = tok.tokenize_many([text for _, text in disc_corpus])
    capped = BM25Index.build_from_tokens(
        ids, corpus_tokens, tok, BM25Config(tf_cap=3, domain_term_weight=1.0), "h"
    )
    plain = _plain_bm25s(corpus_tokens, "lucene")
    term = "公司"
    tfs = np.array([tokens.count(term) for tokens in corpus_tokens])
    ours, theirs = capped.get_scores([term]), plain.get_scores([term])
    np.testing.assert_array_equal(ours[tfs <= 3], theirs[tfs <= 3])
    assert (ours[tfs > 3] < theirs[tfs > 3]).all() and (tfs > 3).any()


def test_search_contract_empty_queries_k_clipping_and_protocol(caplog: pytest.LogCaptureFixture) -> None:
    index = build(BM25Config())
    assert isinstance(index, Retriever) and index.name == "bm25"
    with caplog.at_level(logging.INFO, logger="finrag_pipelines.retrieval.bm25"):
        run = index.search(["cherry", "unknown words only", "，。！", "date apple"], k=100)
    assert len(run) == 4
    assert [h.doc_id for h in run[0]] == ["d2", "d1"] and all(isinstance(h, Hit) for h in run[0])
    assert run[1] == [] and run[2] == []
    assert {h.doc_id for h in run[3]} == {"d0", "d1", "d2", "d3"}  # k=100 clipped to the 4 documents
    assert any("2 of 4 queries have no indexed token" in r.getMessage() for r in caplog.records)
    assert [h.doc_id for h in index.search(["apple"], k=1)[0]] == ["d3"]
    assert index.search([], k=3) == []
    with pytest.raises(ValueError, match="k must be a positive int"):
        index.search(["apple"], k=0)
    with pytest.raises(ValueError, match="not one str"):
        index.search("apple", k=3)
    with pytest.raises(TypeError, match=r"queries_tokens\[1\]"):
        index.search_tokens([["apple"], "apple"], k=3)


def test_index_tokenizer_is_used_for_queries() -> None:
    docs, question = ["公司的可转债转股", "股东大会决议"], "请问可转债什么时候转股？"
    finance = BM25Index.build(["a", "b"], docs, FinanceTokenizer(), BM25Config(), "h")
    assert finance.search(["请问董秘您好，谢谢！"], k=2) == [[]]  # only stopwords
    assert [h.doc_id for h in finance.search([question], k=2)[0]] == ["a"]
    # plain jieba cuts the document into 可转 / 债转股 and the question into 可转债 / 转股: no match
    plain = BM25Index.build(
        ["a", "b"], docs, FinanceTokenizer.plain(), BM25Config(tf_cap=None, domain_term_weight=1.0), "h"
    )
    assert plain.search([question], k=2) == [[]]


def test_build_rejects_bad_input() -> None:
    tok = tokenizer()
    with pytest.raises(ValueError, match="'d0' \\(row 1\\) occurs more than once"):
        BM25Index.build(["d0", "d0"], ["apple", "banana"], tok, BM25Config(), "h")
    with pytest.raises(ValueError, match="2 doc ids but 1 texts"):
        BM25Index.build(["d0", "d1"], ["apple"], tok, BM25Config(), "h")
    with pytest.raises(ValueError, match="none of the 1 documents has a token"):
        BM25Index.build(["d0"], ["，。"], tok, BM25Config(), "h")
    for bad in (
        {"k1": 0},
        {"b": 1.5},
        {"method": "bm26"},
        {"tf_cap": 0},
        {"tf_cap": 2.5},
        {"domain_term_weight": 0.0},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            BM25Config(**bad)  # type: ignore[arg-type]


def test_save_load_round_trip(tmp_path: Path) -> None:
    index = build(BM25Config(tf_cap=5, domain_term_weight=1.3))
    index.name = "bm25_fin"
    folder = index.save(tmp_path / "bm25")
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    assert meta["kind"] == "bm25" and meta["format_version"] == 1 and meta["num_docs"] == 4
    assert meta["corpus_hash"] == "hash-a" and meta["doc_ids_file"] == "doc_ids.json"
    assert meta["bm25"] == {
        "k1": 1.2,
        "b": 0.75,
        "method": "lucene",
        "tf_cap": 5,
        "domain_term_weight": 1.3,
        "delta": 0.5,
    }
    assert meta["tokenizer"] == index.tokenizer.describe() and meta["built_at"].endswith("+00:00")
    loaded = BM25Index.load(folder)
    assert loaded.meta == index.meta and loaded.doc_ids == IDS and loaded.config == index.config
    assert loaded.name == "bm25_fin"
    queries = ["apple cherry", "date", "banana apple apple"]
    assert loaded.search(queries, k=4) == index.search(queries, k=4)
    loaded.check_compatible("hash-a")
    with pytest.raises(IndexMismatchError, match="built from corpus hash-a.*corpus in use is hash-b"):
        loaded.check_compatible("hash-b")


def _saved(tmp_path: Path) -> Path:
    return build(BM25Config()).save(tmp_path / "bm25")


def _edit_json(path: Path, update: dict) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(update) if isinstance(data, dict) else None
    path.write_text(json.dumps(data), encoding="utf-8")


def test_load_rejects_missing_files_and_mismatches(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    (folder / "doc_ids.json").unlink()
    with pytest.raises(IndexMismatchError, match=f"{folder}.*lacks doc_ids.json"):
        BM25Index.load(folder)
    with pytest.raises(IndexMismatchError, match="does not exist"):
        BM25Index.load(tmp_path / "nowhere")

    folder = _saved(tmp_path / "v")
    _edit_json(folder / "meta.json", {"format_version": 7})
    with pytest.raises(IndexMismatchError, match="format_version 7"):
        BM25Index.load(folder)

    folder = _saved(tmp_path / "n")
    (folder / "doc_ids.json").write_text(json.dumps(IDS[:3]), encoding="utf-8")
    with pytest.raises(IndexMismatchError, match="num_docs 4, doc_ids.json 3 ids"):
        BM25Index.load(folder)

    folder = _saved(tmp_path / "k")
    _edit_json(folder / "meta.json", {"kind": "dense"})
    with pytest.raises(IndexMismatchError, match="not a BM25 index"):
        BM25Index.load(folder)

    folder = _saved(tmp_path / "p")
    _edit_json(
        folder / "meta.json",
        {"bm25": {"k1": 2.0, "b": 0.75, "method": "lucene", "tf_cap": 5, "domain_term_weight": 1.2}},
    )
    with pytest.raises(IndexMismatchError, match="k1, b, method"):
        BM25Index.load(folder)

    folder = _saved(tmp_path / "t")
    shutil.rmtree(folder / "tokenizer")
    with pytest.raises(IndexMismatchError, match="tokenizer/tokenizer.json"):
        BM25Index.load(folder)
