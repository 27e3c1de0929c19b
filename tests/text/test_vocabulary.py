"""Mined vocabulary: statistical new-word discovery, filtering, LLM answers, the user dictionary."""

from __future__ import annotations

import math

import pytest

from finrag_pipelines.text.dictionaries import parse_user_dict
from finrag_pipelines.text.vocabulary import (
    discover_terms,
    parse_entity_answer,
    render_user_dict,
    term_rejection,
)

# a planted new word (冰墩墩) between varied neighbours on both sides
BEFORE = ["今天买", "我们看", "市场说", "公司卖", "大家爱", "游客抢", "孩子要", "媒体报"]
AFTER = ["很受欢迎", "售罄", "走红", "上市", "热销", "脱销", "火了", "出圈"]
CORPUS = [f"{b}冰墩墩{a}。" for b in BEFORE for a in AFTER]


def test_a_planted_word_is_found_with_its_statistics() -> None:
    terms = discover_terms(CORPUS, max_len=4, min_freq=5, min_cohesion=0.5, min_entropy=1.0, max_terms=50)
    found = {t.term: t for t in terms}
    assert "冰墩墩" in found
    word = found["冰墩墩"]
    assert word.freq == len(CORPUS)
    assert word.left_entropy == pytest.approx(math.log(8)) and word.right_entropy == pytest.approx(
        math.log(8)
    )
    assert word.score == pytest.approx(
        word.cohesion * min(word.left_entropy, word.right_entropy) * math.log(word.freq)
    )


def test_fragments_of_a_word_fail_the_entropy_test() -> None:
    terms = discover_terms(CORPUS, max_len=4, min_freq=5, min_cohesion=0.5, min_entropy=1.0, max_terms=50)
    found = {t.term for t in terms}
    # 冰墩 is always followed by 墩, 墩墩 always preceded by 冰: one neighbour, entropy 0
    assert "冰墩" not in found and "墩墩" not in found


def test_thresholds_and_ranking() -> None:
    loose = discover_terms(CORPUS, max_len=4, min_freq=1, min_cohesion=-10, min_entropy=0, max_terms=10_000)
    strict = discover_terms(CORPUS, max_len=4, min_freq=60, min_cohesion=-10, min_entropy=0, max_terms=10_000)
    assert {t.term for t in strict} <= {t.term for t in loose} and all(t.freq >= 60 for t in strict)
    assert [t.score for t in loose] == sorted((t.score for t in loose), reverse=True)
    assert (
        len(discover_terms(CORPUS, max_len=4, min_freq=1, min_cohesion=-10, min_entropy=0, max_terms=3)) == 3
    )
    assert (
        discover_terms(["abc 123", ""], max_len=4, min_freq=1, min_cohesion=0, min_entropy=0, max_terms=5)
        == []
    )
    with pytest.raises(ValueError, match="max_len"):
        discover_terms(CORPUS, max_len=1, min_freq=1, min_cohesion=0, min_entropy=0, max_terms=5)


@pytest.mark.parametrize(
    ("term", "reason"),
    [
        ("冰", "length"),
        ("2023", "numeric"),
        ("冰 墩", "whitespace"),
        ("公司", "known"),
        ("的确", "function_edge"),
        ("冰墩墩", None),
        ("因为", "stopword"),
    ],
)
def test_term_rejection_names_the_reason(term: str, reason: str | None) -> None:
    got = term_rejection(term, known_words={"公司"}, stopwords={"因为"}, min_len=2, max_len=6)
    assert got == reason


def test_entity_answers_keep_only_what_the_document_says() -> None:
    doc = "贵州茅台（600519）公告：茅台酒毛利率提升，i茅台上线。"
    answer = {
        "organizations": ["贵州茅台", "五粮液"],  # 五粮液 is not in the document: invented, dropped
        "products": ["i茅台", " "],
        "metrics": ["毛利率"],
        "terms": [],
        "aliases": [{"code": "600519", "name": "贵州茅台"}, {"code": "ABC", "name": "茅台"}],
    }
    terms, dropped = parse_entity_answer(answer, doc)
    assert [(t.term, t.category, t.alias_of) for t in terms] == [
        ("贵州茅台", "organizations", None),
        ("i茅台", "products", None),
        ("毛利率", "metrics", None),
        ("贵州茅台", "alias", "600519"),
    ]
    assert dropped == {"not_in_document": 1, "empty": 1, "alias_not_a_stock_code": 1}


@pytest.mark.parametrize(
    "answer",
    [
        {"organizations": "贵州茅台"},
        {"terms": [1, 2]},
        {"aliases": {"code": "600519"}},
        {"aliases": [{"code": 1}]},
    ],
)
def test_malformed_entity_answers_are_invalid(answer: dict) -> None:
    with pytest.raises(ValueError):
        parse_entity_answer(answer, "贵州茅台")


def test_user_dictionary_parses_back() -> None:
    text = render_user_dict([("冰墩墩", "nz"), ("元宇宙", None)])
    assert [(e.word, e.freq, e.tag) for e in parse_user_dict(text, "mined")] == [
        ("冰墩墩", None, "nz"),
        ("元宇宙", None, None),
    ]
    assert render_user_dict([]) == ""
    with pytest.raises(ValueError, match="whitespace"):
        render_user_dict([("冰 墩", None)])
    with pytest.raises(ValueError, match="lowercase"):
        render_user_dict([("冰墩墩", "NZ")])
