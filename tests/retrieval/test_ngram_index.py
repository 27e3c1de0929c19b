"""The character n-gram BM25 index: the bm25s machinery with an n-gram tokenizer saved in its folder."""

from __future__ import annotations

import json

import pytest

from finrag_pipelines.datasets.indexes import BM25IndexDataset
from finrag_pipelines.retrieval.bm25.index import BM25Index
from finrag_pipelines.retrieval.bm25.scoring import BM25Config
from finrag_pipelines.retrieval.interfaces import LexicalIndex, TermScoringIndex
from finrag_pipelines.retrieval.types import IndexMismatchError
from finrag_pipelines.text.corpus import indexable
from finrag_pipelines.text.ngram import CharNgramTokenizer
from finrag_pipelines.text.tokenize import FinanceTokenizer

CONFIG = BM25Config(k1=1.2, b=0.75, method="lucene", tf_cap=None, domain_term_weight=1.0)


@pytest.fixture(scope="module")
def docs(disc_corpus: list[tuple[str, str]]) -> tuple[list[str], list[str], str]:
    return indexable([d for d, _ in disc_corpus], [""] * len(disc_corpus), [t for _, t in disc_corpus])


@pytest.fixture(scope="module")
def ngram(docs: tuple[list[str], list[str], str]) -> BM25Index:
    ids, texts, digest = docs
    return BM25Index.build(ids, texts, CharNgramTokenizer(n=2), CONFIG, digest, name="bm25_ngram")


def test_it_is_a_lexical_index_whose_queries_use_the_index_tokenizer(ngram: BM25Index, docs) -> None:
    ids, texts, _ = docs
    assert isinstance(ngram, LexicalIndex) and isinstance(ngram, TermScoringIndex)
    assert ngram.meta["tokenizer"]["kind"] == "char_ngram" and ngram.meta["name"] == "bm25_ngram"
    # search(text) == search_tokens(the index tokenizer's n-grams)
    query = texts[10][3:30]
    assert ngram.search([query], 5) == ngram.search_tokens([CharNgramTokenizer(n=2).tokenize(query)], 5)
    assert ngram.search([query], 1)[0][0].doc_id == ids[10]


def test_bigrams_match_where_word_segmentation_differs(docs) -> None:
    """A document term the word tokenizer keeps whole is still found from a query holding only part of it."""
    ids, texts, digest = docs
    text = "公司主营新能源汽车动力电池业务。"
    doc_ids, doc_texts = [*ids, "planted"], [*texts, text]
    query = ["动力电"]  # not a word: jieba cuts it differently from the document's 动力电池
    ngram = BM25Index.build(doc_ids, doc_texts, CharNgramTokenizer(n=2), CONFIG, digest)
    assert ngram.search(query, 1)[0][0].doc_id == "planted"
    word = BM25Index.build(doc_ids, doc_texts, FinanceTokenizer.plain(), CONFIG, digest)
    assert all(hit.doc_id != "planted" for hit in word.search(query, 3)[0])


def test_the_folder_round_trip_restores_the_ngram_tokenizer(ngram: BM25Index, docs, tmp_path) -> None:
    ids, texts, digest = docs
    dataset = BM25IndexDataset(str(tmp_path / "bm25_ngram"))
    dataset.save(ngram)
    meta = json.loads((tmp_path / "bm25_ngram" / "meta.json").read_text())
    assert meta["tokenizer"] == CharNgramTokenizer(n=2).describe() and meta["num_docs"] == len(ids)
    back = dataset.load()
    assert isinstance(back.tokenizer, CharNgramTokenizer) and back.name == "bm25_ngram"
    assert back.search([texts[3][:25]], 3) == ngram.search([texts[3][:25]], 3)
    back.check_compatible(digest)
    with pytest.raises(IndexMismatchError):
        back.check_compatible("0" * 64)
    settings = tmp_path / "bm25_ngram" / "tokenizer" / "tokenizer.json"
    saved = json.loads(settings.read_text())
    saved["settings"]["n"] = 3
    saved["fingerprint"] = CharNgramTokenizer(n=3).fingerprint  # consistent in itself, not with meta.json
    settings.write_text(json.dumps(saved))
    with pytest.raises(IndexMismatchError, match="fingerprint"):
        BM25Index.load(tmp_path / "bm25_ngram")
