from pathlib import Path

import pandas as pd
import pytest
import yaml

from finrag_pipelines.floors import FloorError, FloorParams
from finrag_pipelines.llm.prompts import PromptTemplate
from finrag_pipelines.pipelines.query_distill import answers, keyword_backend, nodes
from finrag_pipelines.pipelines.query_distill.cleaning import copied_span, length_problem
from finrag_pipelines.pipelines.query_distill.params import AnswerParams, CleanParams, SpecParams
from finrag_pipelines.retrieval.bm25.index import BM25Index
from finrag_pipelines.retrieval.bm25.scoring import BM25Config
from finrag_pipelines.text.corpus import corpus_hash
from finrag_pipelines.text.tokenize import FinanceTokenizer

SPEC = SpecParams(
    question_types={
        "keywords": "k",
        "acquire_knowledge": "a",
        "summary": "s",
        "yes_or_no": "y",
        "background": "b",
    },
    difficulties={"high_school": "h", "university": "u", "phd": "p"},
    length_rules={"keywords": "", "acquire_knowledge": "", "summary": "", "yes_or_no": "", "background": ""},
)
ROOT = Path(__file__).resolve().parents[3]
CONF = yaml.safe_load((ROOT / "conf/base/parameters_query_distill.yml").read_text(encoding="utf-8"))[
    "query_distill"
]
ANSWERS = AnswerParams(**CONF["answers"])
STAGE1 = PromptTemplate.from_yaml(ROOT / "conf/base/prompts/query_distill_stage1.yml")
STAGE2 = PromptTemplate.from_yaml(ROOT / "conf/base/prompts/query_distill_stage2.yml")
ECHO1 = answers.PromptEcho.of(STAGE1, ANSWERS.echo_min_chars)
CANDIDATES = [
    "A budget-conscious traveler who plans trips around exchange rates",
    "一位关注家庭理财的中学老师",
    "a bank analyst",
    "a bank auditor",
    "30岁的基金经理",
]
CLEAN = CleanParams(
    min_chars=4,
    max_chars=60,
    max_copied_chars=12,
    near_duplicates=True,
    dedup_max_hamming=3,
    dedup_min_jaccard=0.8,
    round_trip={"enabled": True, "top_k": 1},
)


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
    validate = answers.stage1_validator(CANDIDATES, SPEC, ANSWERS, ECHO1)
    fenced = 'Sure!\n```json\n{"Character": "2", "Question_Type": "Yes_Or_No", "Difficulty": "PhD"}\n```'
    assert validate(fenced) == {"character": 2, "question_type": "yes_or_no", "difficulty": "phd"}
    thinking = '<think>hmm</think>{"character": 5, "question_type": "summary", "difficulty": "university"}'
    assert validate(thinking)["character"] == 5
    for bad, reason in [
        ('{"character": 6, "question_type": "summary", "difficulty": "phd"}', "not one of 1..5"),
        ('{"character": 1, "question_type": "essay", "difficulty": "phd"}', "question_type"),
        ('{"character": "the analyst", "question_type": "summary", "difficulty": "phd"}', "candidate number"),
        (
            '{"character": "a bank", "question_type": "summary", "difficulty": "phd"}',
            r"several candidates \(3, 4\)",
        ),
        (
            '{"character": "3. 一位关注家庭理财的中学老师", "question_type": "summary", "difficulty": "phd"}',
            "by number",
        ),
        ('{"character": 1, "question_type": "summary", "difficulty": "研究生"}', "difficulty must be one of"),
        ("no json here", "(?i)json"),
    ]:
        with pytest.raises(ValueError, match=reason):
            validate(bad)


def test_stage2_validator_cleans_labels_and_rejects_non_queries():
    validate = answers.stage2_validator(30, answers.PromptEcho.of(STAGE2, ANSWERS.echo_min_chars))
    assert validate("查询：公司回购股份的资金来源是什么？") == "公司回购股份的资金来源是什么？"
    assert validate('"公司今年的分红比例是多少？"') == "公司今年的分红比例是多少？"
    with pytest.raises(ValueError, match="not Chinese"):
        validate("What is the dividend?")
    with pytest.raises(ValueError, match="longer than"):
        validate("公司" * 20)
    with pytest.raises(ValueError, match="empty"):
        validate("   ")
    echoed = STAGE2.render(
        question_type="summary",
        question_type_description="概括",
        difficulty="phd",
        difficulty_description="难",
        length_rule="10 到 20 个字",
        character="一位老师",
        passage="基金净值。",
    )
    with pytest.raises(ValueError, match="repeats the prompt"):
        validate(echoed[-1]["content"])


@pytest.mark.parametrize(
    ("character", "expected"),
    [
        ('"A budget-conscious traveler who plans trips around exchange rates"', 1),  # the seed's own format
        ('"A budget-conscious traveler…"', 1),
        ('"a budget conscious traveler who plans trips around exchange rates."', 1),
        ('"一位关注家庭理财的中学老师"', 2),
        ('"2. 一位关注家庭理财的中学老师"', 2),
        ('"编号2"', 2),
        ('"候选人 3"', 3),
        ('"第5位"', 5),
        ("4", 4),
    ],
)
def test_stage1_accepts_a_persona_by_number_text_or_prefix(character, expected):
    validate = answers.stage1_validator(CANDIDATES, SPEC, ANSWERS, ECHO1)
    answer = f'{{"Characters": {character}, "Question_Type": "关键词型", "Difficulty": "高中"}}'
    expected_plan = {"character": expected, "question_type": "keywords", "difficulty": "high_school"}
    assert validate(answer) == expected_plan


@pytest.mark.parametrize(
    ("question_type", "difficulty", "expected"),
    [
        ("summary", "大学", ("summary", "university")),
        ("总结型", "博士", ("summary", "phd")),
        ("background（背景询问型）", "high_school（高中水平）", ("background", "high_school")),
        ("yes", "PhD", ("yes_or_no", "phd")),
        ("acquire", "本科", ("acquire_knowledge", "university")),
    ],
)
def test_stage1_accepts_label_names_aliases_and_prefixes(question_type, difficulty, expected):
    validate = answers.stage1_validator(CANDIDATES, SPEC, ANSWERS, ECHO1)
    plan = validate(f'{{"character": 1, "question_type": "{question_type}", "difficulty": "{difficulty}"}}')
    assert (plan["question_type"], plan["difficulty"]) == expected


def test_stage1_rejects_an_answer_that_repeats_the_prompt_and_its_example():
    validate = answers.stage1_validator(CANDIDATES, SPEC, ANSWERS, ECHO1)
    numbered = "\n".join(f"{i}. {c}" for i, c in enumerate(CANDIDATES, 1))
    rendered = STAGE1.render(
        passage="某基金2023年1月5日单位净值1.2345元。",
        question_types="- summary: s",
        difficulties="- phd: p",
        characters=numbered,
    )
    prompt = rendered[-1]["content"]
    assert '{"character": 2, "question_type": "acquire_knowledge", "difficulty": "high_school"}' in prompt
    with pytest.raises(ValueError, match="repeats the prompt.*prompt's own example"):
        validate(prompt)
    # a real answer around its JSON may quote a persona or the passage: that is no echo
    quoted = (
        f'候选人2“{CANDIDATES[1]}”最关心，{{"character": 2, "question_type": "summary", "difficulty": "phd"}}'
    )
    assert validate(quoted)["character"] == 2
    # the example object alone, verbatim, is the prompt's example too (not a plan for this document)
    with pytest.raises(ValueError, match="prompt's own example"):
        validate('{"character": 2, "question_type": "acquire_knowledge", "difficulty": "high_school"}')
    # the same values in another order of keys are still the example; other values are a plan
    with pytest.raises(ValueError, match="prompt's own example"):
        validate('{"difficulty": "high_school", "character": 2, "question_type": "acquire_knowledge"}')
    assert (
        validate('{"character": 2, "question_type": "acquire_knowledge", "difficulty": "phd"}')["character"]
        == 2
    )


def test_answer_aliases_must_name_one_known_label():
    bad = {**CONF["answers"], "aliases": {"question_types": {"essay": ["作文"]}, "difficulties": {}}}
    with pytest.raises(ValueError, match=r"aliases.question_types names \['essay'\]"):
        AnswerParams(**bad).check_labels(SPEC)
    same = {"phd": ["大学"], "university": ["大学"]}
    twice = {**CONF["answers"], "aliases": {"question_types": {}, "difficulties": same}}
    with pytest.raises(ValueError, match="also names"):
        AnswerParams(**twice).check_labels(SPEC)
    AnswerParams(**CONF["answers"]).check_labels(SpecParams(**CONF["spec"]))


def test_copy_and_length_filters():
    doc = "公司于2019年底完成新工厂搬迁，新工厂的设计产能为20万台每年。"
    assert copied_span("新工厂的设计产能为20万台每年吗", doc) == len("新工厂的设计产能为20万台每年")
    assert copied_span("产能多少", doc) <= 2
    assert length_problem("好", 4, 10) == "too_short" and length_problem("好" * 11, 4, 10) == "too_long"
    assert length_problem("好好好好", 4, 10) is None


def test_clean_queries_applies_every_filter_and_stamps_rows():
    docs = pd.DataFrame(
        {
            "doc_id": ["d1", "d2"],
            "text": [
                "公司于2019年底完成新工厂搬迁，新工厂的设计产能为20万台每年。",
                "第一期员工持股计划的股票来源为回购专用账户。",
            ],
        }
    )
    tokenizer = FinanceTokenizer(stopwords="builtin", search_mode=True)
    ids, texts = list(docs["doc_id"]), list(docs["text"])
    index = BM25Index.build(ids, texts, tokenizer, BM25Config(), corpus_hash(ids, texts))
    generated = pd.DataFrame(
        {
            "doc_id": ["d1", "d1", "d1", "d2", "d2", "d1", "d2"],
            "persona_id": ["p1"] * 7,
            "question_type": ["keywords"] * 7,
            "difficulty": ["phd"] * 7,
            "query": [
                "新工厂产能多大？",
                "新工厂产能多大?",
                "公司于2019年底完成新工厂搬迁了吗",
                "员工持股计划股票从哪来？",
                "好",
                "员工持股计划股票来源？",
                None,
            ],
            "error": [None] * 6 + ["stage 2: HTTP 500 after 6 attempts"],
        }
    )
    personas = pd.DataFrame(
        {"persona_id": ["p1"], "persona": ["an investor"], "persona_text": ["an investor"]}
    )
    llm = type("L", (), {"backend": "keyword", "model": "x"})()
    audit = nodes.clean_queries(
        generated,
        docs,
        personas,
        index,
        {},
        llm,
        {},
        {},
        nodes.KeywordBackendParams(top_keywords=3, seed=1, templates={"keywords": ["$k1"]}),
        CLEAN,
    )
    assert list(audit["status"]) == [
        "kept",
        "exact_duplicate",
        "copies_document",
        "kept",
        "too_short",
        "round_trip_miss",
    ]
    assert (
        set(audit["model"]) == {"keyword-baseline"} and audit["prompt_hash"].str.startswith("keyword:").all()
    )
    assert audit["query_id"].is_unique and set(audit["persona"]) == {"an investor"}
    kept = nodes.select_kept_queries(audit, {"passed": True})
    assert list(kept.columns) == [
        "query_id",
        "doc_id",
        "query",
        "persona",
        "question_type",
        "difficulty",
        "model",
        "prompt_hash",
    ]
    assert len(kept) == 2


def test_distillation_report_carries_the_floor_and_the_check_fails_below_it():
    audit = pd.DataFrame(
        {
            "query_id": ["q1", "q2", "q3"],
            "doc_id": ["d1", "d2", "d3"],
            "query": ["同一个问题？"] * 3,
            "question_type": ["summary"] * 3,
            "difficulty": ["phd"] * 3,
            "prompt_hash": ["h"] * 3,
            "status": ["kept", "exact_duplicate", "exact_duplicate"],
        }
    )
    failures = pd.DataFrame({"doc_id": ["d4"], "error": ["stage 1: invalid output: no JSON object"]})
    llm = type("L", (), {"backend": "openai", "model": "m"})()
    summary = {"documents": 4, "failed": 1}
    floor = FloorParams(min_kept=1, min_share=0.3)
    report = nodes.summarise_distillation(audit, failures, summary, llm, floor)
    verdict = report["floor"]
    assert (verdict["kept"], verdict["total"], verdict["passed"]) == (1, 4, False)
    assert verdict["top_drop_reasons"] == {"exact_duplicate": 2, "stage 1: invalid output": 1}
    message = r"query_distill kept 1 of 4 documents \(25.0%\).*min_share=30%.*exact_duplicate 2"
    with pytest.raises(FloorError, match=message):
        nodes.check_distill_floor(report)
    lower = FloorParams(min_kept=1, min_share=0.25)
    report = nodes.summarise_distillation(audit, failures, summary, llm, lower)
    assert nodes.check_distill_floor(report)["passed"]
