import pandas as pd
import pytest

from finrag_pipelines.pipelines.query_distill import keyword_backend, nodes
from finrag_pipelines.pipelines.query_distill.cleaning import copied_span, length_problem
from finrag_pipelines.pipelines.query_distill.params import CleanParams, SpecParams
from finrag_pipelines.retrieval.bm25.index import BM25Index
from finrag_pipelines.retrieval.bm25.scoring import BM25Config
from finrag_pipelines.text.corpus import corpus_hash
from finrag_pipelines.text.tokenize import FinanceTokenizer

SPEC = SpecParams(
    question_types={"keywords": "k", "acquire_knowledge": "a", "summary": "s", "yes_or_no": "y", "background": "b"},
    difficulties={"high_school": "h", "university": "u", "phd": "p"},
    length_rules={"keywords": "", "acquire_knowledge": "", "summary": "", "yes_or_no": "", "background": ""},
)
CLEAN = CleanParams(min_chars=4, max_chars=60, max_copied_chars=12, near_duplicates=True, dedup_max_hamming=3,
                    dedup_min_jaccard=0.8, round_trip={"enabled": True, "top_k": 1})


def test_keyword_choices_are_deterministic_and_spread():
    types = list(SPEC.question_types)
    picks = [keyword_backend.pick(13, f"d{i}", "type", types) for i in range(500)]
    assert picks == [keyword_backend.pick(13, f"d{i}", "type", types) for i in range(500)]
    counts = pd.Series(picks).value_counts()
    assert set(counts.index) == set(types) and counts.min() > 60
    assert picks != [keyword_backend.pick(14, f"d{i}", "type", types) for i in range(500)]


def test_keyword_templates_are_filled_with_document_keywords():
    text = "公司第一期员工持股计划的股票来源为公司回购专用账户已回购的股份，员工持股计划存续期为36个月。"
    words = keyword_backend.keywords(text, 3)
    assert words and all(w in text for w in words)
    query = keyword_backend.fill_template(1, "d1", "summary", ["关于${k1}与${k2}，主要说了哪些内容？"], words)
    assert words[0] in query and words[1] in query
    with pytest.raises(ValueError, match="keyword"):
        keyword_backend.fill_template(1, "d1", "summary", ["${k1}${k2}${k3}${k4}"], words[:2])


def test_stage1_validator_accepts_messy_answers_and_rejects_rule_breaks():
    validate = nodes._stage1_validator(5, SPEC)
    fenced = 'Sure!\n```json\n{"Character": "2", "Question_Type": "Yes_Or_No", "Difficulty": "PhD"}\n```'
    assert validate(fenced) == {"character": 2, "question_type": "yes_or_no", "difficulty": "phd"}
    thinking = '<think>hmm</think>{"character": 5, "question_type": "summary", "difficulty": "university"}'
    assert validate(thinking)["character"] == 5
    for bad, reason in [
        ('{"character": 6, "question_type": "summary", "difficulty": "phd"}', "not one of 1..5"),
        ('{"character": 1, "question_type": "essay", "difficulty": "phd"}', "question_type"),
        ('{"character": "the analyst", "question_type": "summary", "difficulty": "phd"}', "candidate number"),
        ("no json here", "(?i)json"),
    ]:
        with pytest.raises(ValueError, match=reason):
            validate(bad)


def test_stage2_validator_cleans_labels_and_rejects_non_queries():
    validate = nodes._stage2_validator(30)
    assert validate("查询：公司回购股份的资金来源是什么？") == "公司回购股份的资金来源是什么？"
    assert validate('"公司今年的分红比例是多少？"') == "公司今年的分红比例是多少？"
    with pytest.raises(ValueError, match="not Chinese"):
        validate("What is the dividend?")
    with pytest.raises(ValueError, match="longer than"):
        validate("公司" * 20)
    with pytest.raises(ValueError, match="empty"):
        validate("   ")


def test_copy_and_length_filters():
    doc = "公司于2019年底完成新工厂搬迁，新工厂的设计产能为20万台每年。"
    assert copied_span("新工厂的设计产能为20万台每年吗", doc) == len("新工厂的设计产能为20万台每年")
    assert copied_span("产能多少", doc) <= 2
    assert length_problem("好", 4, 10) == "too_short" and length_problem("好" * 11, 4, 10) == "too_long"
    assert length_problem("好好好好", 4, 10) is None


def test_clean_queries_applies_every_filter_and_stamps_rows():
    docs = pd.DataFrame({
        "doc_id": ["d1", "d2"],
        "text": ["公司于2019年底完成新工厂搬迁，新工厂的设计产能为20万台每年。", "第一期员工持股计划的股票来源为回购专用账户。"],
    })
    tokenizer = FinanceTokenizer(stopwords="builtin", search_mode=True)
    ids, texts = list(docs["doc_id"]), list(docs["text"])
    index = BM25Index.build(ids, texts, tokenizer, BM25Config(), corpus_hash(ids, texts))
    generated = pd.DataFrame({
        "doc_id": ["d1", "d1", "d1", "d2", "d2", "d1", "d2"],
        "persona_id": ["p1"] * 7,
        "question_type": ["keywords"] * 7,
        "difficulty": ["phd"] * 7,
        "query": ["新工厂产能多大？", "新工厂产能多大?", "公司于2019年底完成新工厂搬迁了吗", "员工持股计划股票从哪来？",
                  "好", "员工持股计划股票来源？", None],
        "error": [None] * 6 + ["stage 2: HTTP 500 after 6 attempts"],
    })
    personas = pd.DataFrame({"persona_id": ["p1"], "persona": ["an investor"], "persona_text": ["an investor"]})
    llm = type("L", (), {"backend": "keyword", "model": "x"})()
    audit = nodes.clean_queries(generated, docs, personas, index, {}, llm, {}, {},
                                nodes.KeywordBackendParams(top_keywords=3, seed=1, templates={"keywords": ["$k1"]}), CLEAN)
    assert list(audit["status"]) == ["kept", "exact_duplicate", "copies_document", "kept", "too_short", "round_trip_miss"]
    assert set(audit["model"]) == {"keyword-baseline"} and audit["prompt_hash"].str.startswith("keyword:").all()
    assert audit["query_id"].is_unique and set(audit["persona"]) == {"an investor"}
    kept = nodes.select_kept_queries(audit)
    assert list(kept.columns) == ["query_id", "doc_id", "query", "persona", "question_type", "difficulty", "model", "prompt_hash"]
    assert len(kept) == 2
