import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from finrag_pipelines.pipelines.persona_index import nodes
from finrag_pipelines.pipelines.persona_index.params import FilterParams, SampleParams, TranslateParams
from finrag_pipelines.pipelines.persona_index.selection import (
    KeywordMatcher,
    PersonaFormatError,
    greedy_near_duplicates,
    persona_id,
)
from finrag_pipelines.text.corpus import SourceRow

ROOT = Path(__file__).resolve().parents[3]
BASE = yaml.safe_load((ROOT / "conf/base/parameters_persona_index.yml").read_text(encoding="utf-8"))[
    "persona_index"
]
SUFFIXES = ["s", "es", "ies", "ial", "ially", "ic", "ics", "ing", "ed", "er", "ers", "ation"]


def rows(*texts, source="p.jsonl"):
    return [SourceRow(source, i, {"persona": t}) for i, t in enumerate(texts, start=1)]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A taxi driver in Lagos", []),
        ("A TAX consultant", ["tax"]),
        ("Someone who files taxes late", ["tax"]),
        ("a professor of taxation", ["tax"]),
        ("A retired Finance teacher", ["finance"]),
        ("a financial analyst", ["finance"]),
        ("struggling financially with personal finances", ["finance"]),
        ("an economist", []),  # "economy" does not reach "economist" without the suffix "ist"
        ("worried about economic growth and the economics of it", ["economy"]),
        ("a collector of treasures", []),  # "treasury" minus y takes only endings that start with "i"
        ("a fund-raiser", ["fund"]),
        ("a fundraiser", []),
        ("a real  estate agent", ["real estate"]),
        ("a hedge-fund manager", ["fund", "hedge fund"]),
        ("一位关注股票市场的退休银行职员", ["股票", "银行"]),
        ("出租车司机", []),
        ("投资tax顾问", ["tax", "投资"]),  # CJK next to an English word is a word boundary
    ],
)
def test_keyword_matching(text, expected):
    matcher = KeywordMatcher(
        ["tax", "finance", "economy", "treasury", "fund", "real estate", "hedge fund"],
        SUFFIXES,
        ["股票", "银行", "投资"],
    )
    assert matcher.match(text) == expected


def test_configured_keywords_keep_finance_and_drop_look_alikes():
    params = FilterParams(**BASE["filter"])
    matcher = KeywordMatcher(params.keywords_en, params.en_suffixes, params.keywords_zh)
    for text in (
        "A stockbroker",
        "an insurance underwriter",
        "a mortgage lender",
        "a wealthy heiress",
        "一名证券分析师",
        "an investment banker",
        "an actuarial analyst",
        "a venture capitalist",
        "a bitcoin trader",
    ):
        assert matcher.match(text), text
    for text in (
        "A taxi driver",
        "a traditional dancer",
        "a stocky rugby player",
        "a collector of treasures",
        "an auditionee",
        "a non-profit volunteer",
        "香港电影忠实粉丝",
    ):
        assert not matcher.match(text), text


def test_filter_params_reject_unknown_and_blank_keys():
    with pytest.raises(ValueError):
        FilterParams(keywords_en=["tax"], en_suffixes=["s"], keywords_zh=[], extra=1)
    with pytest.raises(ValueError):
        FilterParams(keywords_en=["tax", " "], en_suffixes=["s"], keywords_zh=[])


def test_load_personas_removes_exact_duplicates_with_stable_ids():
    table = nodes.load_personas(rows("A banker", "A  banker ", "A tax adviser", "A banker"))
    assert list(table.columns) == ["persona_id", "persona", "source"]
    assert list(table["persona"]) == ["A banker", "A tax adviser"]
    assert list(table["source"]) == ["p.jsonl:1", "p.jsonl:3"]
    # the id depends on the text only, not on the line
    again = nodes.load_personas(rows("x", "A tax adviser"))
    assert again["persona_id"].iat[1] == table["persona_id"].iat[1] == persona_id("A tax adviser")


@pytest.mark.parametrize(
    "data, message",
    [
        ({"persona": ""}, "p.jsonl:2: field 'persona' is empty"),
        ({"persona": None}, "p.jsonl:2: field 'persona' must be a string"),
        ({"name": "A banker"}, "p.jsonl:2: field 'persona' must be a string"),
        ("{'persona': 'A banker'}", "p.jsonl:2: expected a JSON object"),
    ],
)
def test_load_personas_names_file_and_line(data, message):
    bad = [SourceRow("p.jsonl", 1, {"persona": "ok"}), SourceRow("p.jsonl", 2, data)]
    with pytest.raises(PersonaFormatError, match=message):
        nodes.load_personas(bad)


def test_filter_personas_keeps_matches_with_their_keywords():
    table = nodes.load_personas(
        rows("A taxi driver", "A tax adviser and banker", "一位银行职员", "A painter")
    )
    params = FilterParams(keywords_en=["tax", "bank"], en_suffixes=["s", "er", "ing"], keywords_zh=["银行"])
    matched = nodes.filter_personas(table, params)
    assert list(matched["persona"]) == ["A tax adviser and banker", "一位银行职员"]
    assert [list(k) for k in matched["keywords"]] == [["tax", "bank"], ["银行"]]
    with pytest.raises(ValueError, match="no persona of 4 matches"):
        nodes.filter_personas(table, FilterParams(keywords_en=["audit"], en_suffixes=[], keywords_zh=[]))


def test_sample_personas_is_seeded_and_keeps_order():
    table = pd.DataFrame({"persona_id": [f"p{i}" for i in range(50)]})
    first = nodes.sample_personas(table, SampleParams(max_personas=10, seed=13))
    second = nodes.sample_personas(table, SampleParams(max_personas=10, seed=13))
    assert list(first["persona_id"]) == list(second["persona_id"])
    assert len(first) == 10 and list(first.index) == list(range(10))
    assert first["persona_id"].map(lambda s: int(s[1:])).is_monotonic_increasing
    assert nodes.sample_personas(table, SampleParams(max_personas=None, seed=1)) is table
    assert nodes.sample_personas(table, SampleParams(max_personas=500, seed=1)) is table


def _translate_args(tmp_path, **llm):
    from pathlib import Path

    import yaml

    from finrag_pipelines.llm.config import LLMConfig
    from finrag_pipelines.llm.journal import ResponseJournal

    root = Path(__file__).resolve().parents[3]
    base = yaml.safe_load((root / "conf/base/parameters.yml").read_text(encoding="utf-8"))["llm"]
    prompt = yaml.safe_load((root / "conf/base/prompts/persona_translate.yml").read_text(encoding="utf-8"))
    return LLMConfig.from_mapping({**base, **llm}), {}, ResponseJournal(tmp_path / "j.jsonl"), prompt


def test_translation_off_passes_the_persona_through(tmp_path):
    table = pd.DataFrame({"persona_id": ["p1"], "persona": ["A banker"], "source": ["f:1"]})
    out = nodes.translate_personas(
        table, *_translate_args(tmp_path, backend="keyword"), TranslateParams(enabled=False)
    )
    assert out["persona_text"].tolist() == ["A banker"]


def test_translation_on_needs_an_llm_backend(tmp_path):
    table = pd.DataFrame({"persona_id": ["p1"], "persona": ["A banker"], "source": ["f:1"]})
    with pytest.raises(ValueError, match="llm.backend=openai"):
        nodes.translate_personas(
            table, *_translate_args(tmp_path, backend="keyword"), TranslateParams(enabled=True)
        )


def test_translation_through_a_real_local_endpoint(tmp_path):
    from finrag_pipelines.llm.stub_server import Reply, ScriptedOpenAIServer

    table = pd.DataFrame(
        {"persona_id": ["p1", "p2"], "persona": ["A banker", "A tax adviser"], "source": ["f:1", "f:2"]}
    )

    def behaviour(body, n):
        text = body["messages"][-1]["content"]
        return Reply(content="译文：一位银行家" if "A banker" in text else "Sorry, I can't.")

    with ScriptedOpenAIServer(behaviour) as server:
        args = _translate_args(
            tmp_path,
            backend="openai",
            base_url=server.base_url,
            backoff_base_s=0.01,
            max_invalid_retries=1,
            max_failure_rate=0.5,
        )
        out = nodes.translate_personas(table, *args, TranslateParams(enabled=True))
    assert out["persona_text"].tolist() == [
        "一位银行家",
        "A tax adviser",
    ]  # a failed one keeps its English text
    assert out["translation_error"].isna().tolist() == [True, False]


def _unit(*rows_):
    m = np.asarray(rows_, dtype=np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


@pytest.mark.parametrize("block_size", [1, 2, 3, 100])
def test_greedy_near_duplicates_on_explicit_vectors(block_size):
    # 0 kept; 1 duplicates 0 (cos .95); 2 is close to 1 (.95) but not to 0, and 1 was dropped: kept;
    # 3 is orthogonal: kept; 4 is an exact copy of 3; 5 is closer to 2 than to 0, both above the threshold
    a = np.array([1.0, 0.0, 0.0])
    vectors = _unit(
        a,
        [0.95, math.sqrt(1 - 0.95**2), 0.0],
        [0.8, 0.6, 0.0],
        [0.0, 0.0, 1.0],
        [0.0, 0.0, 2.0],
        [0.85, 0.53, 0.0],
    )
    kept_as, cosine = greedy_near_duplicates(vectors, 0.9, block_size=block_size)
    assert kept_as.tolist() == [0, 0, 2, 3, 3, 2]
    assert math.isnan(cosine[0])
    assert cosine[1] == pytest.approx(0.95, abs=1e-5) and cosine[2] == pytest.approx(0.8, abs=1e-5)
    assert cosine[3] == pytest.approx(0.0, abs=1e-6) and cosine[4] == pytest.approx(1.0, abs=1e-6)


def test_greedy_near_duplicates_matches_a_brute_force_reference():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 16))
    vectors = centres[rng.integers(0, 20, size=300)] + rng.normal(scale=0.25, size=(300, 16))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    kept: list[int] = []
    expected = []
    for i in range(len(unit)):
        sims = unit[kept] @ unit[i] if kept else np.array([])
        if len(sims) and sims.max() >= 0.9:
            expected.append(kept[int(np.argmax(sims))])
        else:
            expected.append(i)
            kept.append(i)
    for block_size in (7, 64, 1024):
        kept_as, _ = greedy_near_duplicates(vectors.astype(np.float32), 0.9, block_size=block_size)
        assert kept_as.tolist() == expected
    assert 20 <= len(kept) < 300


def test_greedy_near_duplicates_rejects_bad_input():
    with pytest.raises(ValueError, match="row 1 has NaN"):
        greedy_near_duplicates(np.array([[1.0, 0.0], [np.nan, 1.0]]), 0.9)
    with pytest.raises(ValueError, match="threshold"):
        greedy_near_duplicates(np.eye(2), 1.5)
    kept_as, cosine = greedy_near_duplicates(np.zeros((0, 4), dtype=np.float32), 0.9)
    assert kept_as.size == 0 and cosine.size == 0


def test_select_personas_keeps_the_kept_rows_and_final_columns():
    personas = pd.DataFrame(
        {
            "persona_id": ["a", "b", "c"],
            "persona": ["x", "y", "z"],
            "source": ["f:1", "f:2", "f:3"],
            "keywords": [["tax"], ["tax"], ["bank"]],
            "persona_text": ["x", "y", "z"],
        }
    )
    audit = pd.DataFrame(
        {
            "persona_id": ["a", "b", "c"],
            "status": ["kept", "near_duplicate", "kept"],
            "kept_as": ["a", "a", "c"],
            "cosine": [np.nan, 0.95, 0.1],
        }
    )
    final = nodes.select_personas(personas, audit)
    assert list(final.columns) == ["persona_id", "persona", "persona_text", "source"]
    assert list(final["persona_id"]) == ["a", "c"]
