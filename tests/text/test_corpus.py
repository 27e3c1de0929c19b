import pytest

from finrag_pipelines.text.corpus import (
    CorpusFormatError,
    SourceRow,
    corpus_hash,
    index_text,
    indexable,
    normalise_text,
    parse_document,
    parse_documents,
    parse_qrels,
    parse_queries,
    render_structured,
)


def row(data, line=1, source="c.jsonl"):
    return SourceRow(source, line, data)


def test_beir_row_is_normalised():
    doc = parse_document(
        row({"_id": 7, "title": " 标题 ", "text": "ＡＢＣ１２３\u3000公司  回购\r\n\n\n股份"})
    )
    assert doc.doc_id == "7"
    assert doc.title == "标题"
    assert (
        doc.text == "ABC123 公司 回购\n股份"
    )  # full-width → half-width, spaces collapsed, blank lines folded
    assert doc.where == "c.jsonl:1"


def test_seed_row_with_string_contents_strips_node_prefix_and_takes_title():
    doc = parse_document(
        row(
            {"id": "u1", "contents": "node id: 3f2a-11 text: 基金净值上涨", "metadata": {"Title": "基金日报"}}
        )
    )
    assert doc.text == "基金净值上涨"
    assert doc.title == "基金日报"
    assert '"Title": "基金日报"' in doc.metadata


def test_seed_row_with_structured_contents_becomes_searchable_text():
    doc = parse_document(
        row(
            {
                "id": "s1",
                "contents": {"股票代码": "002851", "交易日期": "20190125", "一级行业名称": "电力设备"},
            }
        )
    )
    assert doc.text.splitlines() == ["股票代码:002851", "交易日期:20190125", "一级行业名称:电力设备"]
    assert "002851" in index_text(doc.title, doc.text)


def test_render_structured_skips_empty_and_encodes_nested():
    assert render_structured({"a": None, "b": "", "c": [1, 2], "d": 1.5}) == "c：[1, 2]\nd：1.5"


@pytest.mark.parametrize(
    "data, message",
    [
        ({"title": "x", "text": "y"}, "unknown corpus row shape"),
        ({"_id": "", "text": "y"}, "'_id' is empty"),
        ({"_id": "1", "text": None}, "needs a string 'text'"),
        ({"_id": True, "text": "y"}, "must be a string or integer id"),
        ({"id": "1", "contents": 5}, "'contents' must be a string or an object"),
        ({"id": "1", "contents": "x", "metadata": [1]}, "'metadata' must be an object"),
        (["not", "an", "object"], "expected a JSON object"),
    ],
)
def test_malformed_rows_name_file_and_line(data, message):
    with pytest.raises(CorpusFormatError, match=message) as err:
        parse_document(row(data, line=42, source="corpus.jsonl"))
    assert "corpus.jsonl:42" in str(err.value)


def test_duplicate_ids_name_both_lines():
    rows = [
        row({"_id": "a", "text": "x"}, 1),
        row({"_id": "b", "text": "y"}, 2),
        row({"_id": "a", "text": "z"}, 3),
    ]
    with pytest.raises(
        CorpusFormatError, match=r"c.jsonl:3: duplicate document id 'a' \(first seen at c.jsonl:1\)"
    ):
        parse_documents(rows)


def test_queries_validation():
    assert parse_queries([row({"_id": "q1", "text": " 请问 "})]) == [("q1", "请问")]
    with pytest.raises(CorpusFormatError, match="q.jsonl:2: duplicate query id 'q1'"):
        parse_queries(
            [row({"_id": "q1", "text": "a"}, 1, "q.jsonl"), row({"_id": "q1", "text": "b"}, 2, "q.jsonl")]
        )
    with pytest.raises(CorpusFormatError, match="empty text"):
        parse_queries([row({"_id": "q1", "text": "  "})])


def test_qrels_parsing_and_errors():
    lines = [
        row("query-id\tcorpus-id\tscore", 1, "qrels.tsv"),
        row("q1\td1\t1", 2, "qrels.tsv"),
        row("q1\td2\t2", 3, "qrels.tsv"),
    ]
    assert parse_qrels(lines) == [("q1", "d1", 1, "qrels.tsv:2"), ("q1", "d2", 2, "qrels.tsv:3")]
    with pytest.raises(CorpusFormatError, match="qrels.tsv:2: expected 3 tab-separated"):
        parse_qrels([row("q1 d1 1", 2, "qrels.tsv")])
    with pytest.raises(CorpusFormatError, match="score 'x' is not a number"):
        parse_qrels([row("q1\td1\tx", 2)])
    with pytest.raises(CorpusFormatError, match="duplicate judgement"):
        parse_qrels([row("q1\td1\t1", 2), row("q1\td1\t1", 3)])


def test_corpus_hash_depends_on_ids_texts_and_order():
    base = corpus_hash(["a", "b"], ["x", "y"])
    assert base == corpus_hash(["a", "b"], ["x", "y"])
    assert base != corpus_hash(["b", "a"], ["y", "x"])
    assert base != corpus_hash(["a", "b"], ["x", "y!"])
    assert base != corpus_hash(["ab"], ["xy"])  # separators prevent ambiguous concatenation


def test_indexable_prepends_titles_once():
    ids, texts, digest = indexable(["1", "2", "3"], ["T", "", "News"], ["body", "only", "News\nbody"])
    assert texts == ["T\nbody", "only", "News\nbody"]
    assert digest == corpus_hash(ids, texts)


def test_normalise_text_removes_control_characters():
    assert normalise_text("a\u200bb\x07c") == "abc"


@pytest.mark.parametrize(
    ("score", "grade"), [("0", 0), ("1", 1), ("3", 3), ("2.0", 2), ("007", 7), ("100", 100)]
)
def test_qrels_grades_are_non_negative_integers(score, grade):
    assert parse_qrels([row(f"q1\td1\t{score}", 2, "qrels.tsv")]) == [("q1", "d1", grade, "qrels.tsv:2")]


@pytest.mark.parametrize(
    ("score", "problem"),
    [
        ("inf", "is not finite"),
        ("-inf", "is not finite"),
        ("nan", "is not finite"),
        ("0.5", "is a fraction"),
        ("-1", "is negative"),
        ("-0.5", "is negative"),
        ("1e3", "is not written as an integer"),
        ("+1", "is not written as an integer"),
        ("101", "is over 100"),
        ("9" * 5000, "is over 100"),
        ("", "is not a number"),
    ],
)
def test_qrels_grade_errors_name_file_line_and_the_rule(score, problem):
    with pytest.raises(CorpusFormatError) as err:
        header = row("query-id\tcorpus-id\tscore", 1, "qrels.tsv")
        parse_qrels([header, row(f"q1\td1\t{score}", 7, "qrels.tsv")])
    message = str(err.value)
    assert message.startswith("qrels.tsv:7: score ")
    assert problem in message
    assert "a grade is an integer 0..100" in message
