import pandas as pd
import pytest

from finrag_pipelines.pipelines.corpus_prep.nodes import (
    normalise_corpus,
    prepare_qrels,
    prepare_queries,
    screen_documents,
    select_corpus,
    summarise_corpus_prep,
)
from finrag_pipelines.pipelines.corpus_prep.params import DedupParams, FilterParams
from finrag_pipelines.text.corpus import CorpusFormatError, SourceRow

LONG = (
    "公司于2019年底完成新工厂搬迁，新工厂的设计产能为20万台每年，"
    "同时公司致力于通过高效有序管理保证生产效率提升和订单要求满足。"
)
FILTER = FilterParams(min_chars=10)
DEDUP = DedupParams(near=True, ngram=3, max_hamming=6, min_jaccard=0.7)


def rows(objs, source="corpus.jsonl"):
    return [SourceRow(source, i, o) for i, o in enumerate(objs, start=1)]


@pytest.fixture
def corpus():
    return normalise_corpus(
        rows(
            [
                {"_id": "d1", "title": "", "text": LONG},
                {"_id": "d2", "title": "", "text": LONG.replace("20万台", "21万台")},  # near duplicate of d1
                {"_id": "d3", "title": "", "text": "太短"},
                {"id": "d4", "contents": {"基金代码": "510300", "单位净值": "4.123"}},
                {"_id": "d5", "title": "", "text": LONG + "！"},  # exact duplicate of d1 (punctuation)
            ]
        )
    )


def test_screen_documents_audits_every_document(corpus):
    audit = screen_documents(corpus, FILTER, DEDUP)
    assert audit.set_index("doc_id")["status"].to_dict() == {
        "d1": "kept",
        "d2": "near_duplicate",
        "d3": "too_short",
        "d4": "kept",
        "d5": "exact_duplicate",
    }
    kept_as = audit.set_index("doc_id")["kept_as"]
    assert pd.isna(kept_as["d3"])
    assert kept_as.drop("d3").to_dict() == {"d1": "d1", "d2": "d1", "d4": "d4", "d5": "d1"}
    assert list(select_corpus(corpus, audit)["doc_id"]) == ["d1", "d4"]


def test_qrels_follow_dedup_and_drop_judgements_on_too_short_documents(corpus):
    audit = screen_documents(corpus, FILTER, DEDUP)
    queries = prepare_queries(
        rows([{"_id": "q1", "text": "产能多少"}, {"_id": "q2", "text": "太短?"}], "q.jsonl")
    )
    qrels_lines = rows(["query-id\tcorpus-id\tscore", "q1\td2\t1", "q1\td1\t2", "q2\td3\t1"], "qrels.tsv")
    qrels = prepare_qrels(qrels_lines, queries, audit)
    assert qrels.to_dict("records") == [{"query_id": "q1", "doc_id": "d1", "score": 2}]
    report = summarise_corpus_prep(audit, queries, qrels)
    assert report["queries_without_relevant_documents"] == ["q2"]
    assert report["documents_by_status"]["kept"] == 2


def test_qrels_with_unknown_ids_name_the_line(corpus):
    audit = screen_documents(corpus, FILTER, DEDUP)
    queries = prepare_queries(rows([{"_id": "q1", "text": "产能"}]))
    with pytest.raises(CorpusFormatError, match="qrels.tsv:2: corpus id 'nope'"):
        prepare_qrels(rows(["query-id\tcorpus-id\tscore", "q1\tnope\t1"], "qrels.tsv"), queries, audit)
    with pytest.raises(CorpusFormatError, match="qrels.tsv:1: query id 'q9'"):
        prepare_qrels(rows(["q9\td1\t1"], "qrels.tsv"), queries, audit)


def test_empty_corpus_is_an_error():
    with pytest.raises(CorpusFormatError, match="no documents"):
        normalise_corpus([])
