"""FinanceTokenizer: dictionary terms whole, codes and numbers kept, stopwords, persistence, fast path."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from finrag_pipelines.text import dictionaries, segmenter
from finrag_pipelines.text import tokenize as tokenize_module
from finrag_pipelines.text.dictionaries import TokenizerConfigError
from finrag_pipelines.text.tokenize import FinanceTokenizer

_FINTRUTHQA = Path(__file__).resolve().parents[2] / "data" / "01_raw" / "retrieval" / "fintruthqa"


@pytest.fixture(scope="module")
def finance() -> FinanceTokenizer:
    return FinanceTokenizer()


@pytest.fixture(scope="module")
def plain() -> FinanceTokenizer:
    return FinanceTokenizer.plain()


@pytest.mark.parametrize(
    "term",
    [
        "净资产收益率",
        "员工持股计划",
        "归母净利润",
        "扣非净利润",
        "商誉减值",
        "限售股解禁",
        "董事会秘书",
        "实际控制人",
        "融资融券",
        "沪深300",
    ],
)
def test_finance_dictionary_terms_stay_whole(finance: FinanceTokenizer, term: str) -> None:
    tokens = finance.tokenize(f"公司披露的{term}变化较大")
    assert term.lower() in tokens
    assert finance.is_domain_term(term.lower())


def test_plain_jieba_splits_what_the_dictionary_keeps(
    finance: FinanceTokenizer, plain: FinanceTokenizer
) -> None:
    text = "净资产收益率和员工持股计划"
    assert finance.tokenize(text) == ["净资产收益率", "员工持股计划"]
    assert plain.tokenize(text) == ["净资产", "收益率", "和", "员工", "持股", "计划"]
    assert not plain.is_domain_term("净资产收益率")


@pytest.mark.parametrize("hmm", [True, False])
def test_codes_numbers_and_percentages_survive(hmm: bool) -> None:
    tok = FinanceTokenizer(hmm=hmm)
    tokens = tok.tokenize(
        "贵州茅台600519涨12.5%，平安银行000001.SZ跌-3.2%，沪深300ETF代码510300，营收1,234.56亿元，EPS为2.35元，增长20%"
    )
    for expected in ["600519", "12.5%", "000001.sz", "3.2%", "510300", "1,234.56", "2.35", "20%"]:
        assert expected in tokens, (expected, tokens)
    assert "00700.hk" in tok.tokenize("腾讯控股（00700.HK）")


def test_punctuation_and_whitespace_are_dropped(plain: FinanceTokenizer) -> None:
    tokens = plain.tokenize(
        "公司，。！？、；：“”《年报》（一）…—·,.!?;:()[]{}<>/\\|-_+=*&^%$#@~` \t\n\u3000 利润 🙂"
    )
    assert tokens == ["公司", "年报", "一", "利润"]


def test_full_width_text_is_normalised(finance: FinanceTokenizer) -> None:
    assert finance.tokenize("ＥＴＦ份额增长１２％") == ["etf", "份额", "增长", "12%"]


def test_stopwords_are_removed_and_configurable(tmp_path: Path) -> None:
    question = "请问董秘您好，公司的可转债什么时候转股？谢谢！"
    assert FinanceTokenizer().tokenize(question) == ["公司", "可转债", "时候", "转股"]
    assert FinanceTokenizer(stopwords=None).tokenize(question)[:3] == ["请问", "董秘", "您好"]
    assert FinanceTokenizer(extra_stopwords=["时候"]).tokenize(question) == ["公司", "可转债", "转股"]
    own = tmp_path / "stop.txt"
    own.write_text("# my list\n公司\n可转债\n", encoding="utf-8")
    assert FinanceTokenizer(stopwords=str(own)).tokenize(question) == [
        "请问",
        "董秘",
        "您好",
        "的",
        "什么",
        "时候",
        "转股",
        "谢谢",
    ]


def test_lowercase_setting() -> None:
    assert FinanceTokenizer(lowercase=True).tokenize("ETF与ROE") == ["etf", "roe"]
    upper = FinanceTokenizer(lowercase=False)
    assert upper.tokenize("ETF与ROE") == ["ETF", "ROE"]
    assert upper.is_domain_term("ETF") and not upper.is_domain_term("etf")


def test_extra_words_and_user_dicts_are_kept_whole_and_are_domain_terms(tmp_path: Path) -> None:
    user_dict = tmp_path / "mine.txt"
    user_dict.write_text("鲁信创投 3000 nt\n心衰赛道\n", encoding="utf-8")
    text = "同心医疗布局心衰赛道，鲁信创投参股"
    before = FinanceTokenizer().tokenize(text)
    assert "同心医疗" not in before and "心衰赛道" not in before
    tok = FinanceTokenizer(user_dict_paths=[str(user_dict)], extra_words=["同心医疗"])
    tokens = tok.tokenize(text)
    assert {"同心医疗", "心衰赛道", "鲁信创投"} <= set(tokens)
    assert all(tok.is_domain_term(w) for w in ("同心医疗", "心衰赛道", "鲁信创投"))
    assert not tok.is_domain_term("参股")


def test_tokenize_many_matches_tokenize_also_with_worker_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [f"第{i}期员工持股计划的股票来源为公司回购专用账户已回购的股份，涨幅{i}.5%。" for i in range(40)]
    sequential = FinanceTokenizer(n_jobs=1)
    expected = [sequential.tokenize(t) for t in texts]
    assert sequential.tokenize_many(texts) == expected
    monkeypatch.setattr(tokenize_module, "PARALLEL_MIN_CHARS", 10)
    assert FinanceTokenizer(n_jobs=2).tokenize_many(texts) == expected


def test_bad_inputs_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="item 1"):
        FinanceTokenizer.plain().tokenize_many(["ok", None])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        FinanceTokenizer.plain().tokenize_many("one string")
    with pytest.raises(TokenizerConfigError, match="single string"):
        FinanceTokenizer(user_dict_paths="dict.txt")  # type: ignore[arg-type]
    with pytest.raises(TokenizerConfigError, match="no_such_dict.txt"):
        FinanceTokenizer(user_dict_paths=[str(tmp_path / "no_such_dict.txt")])
    bad = tmp_path / "bad.txt"
    bad.write_text("好词 100 n\n坏 词 12 N 9\n", encoding="utf-8")
    with pytest.raises(TokenizerConfigError, match=r"bad\.txt:2"):
        FinanceTokenizer(user_dict_paths=[str(bad)])
    zero = tmp_path / "zero.txt"
    zero.write_text("拆开 0\n", encoding="utf-8")
    with pytest.raises(TokenizerConfigError, match="zero.txt:1"):
        FinanceTokenizer(user_dict_paths=[str(zero)])
    with pytest.raises(TokenizerConfigError, match="n_jobs"):
        FinanceTokenizer(n_jobs=0)


def test_save_load_round_trip_is_independent_of_the_source_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_dict = tmp_path / "mine.txt"
    user_dict.write_text("心衰赛道 3000 n\n", encoding="utf-8")
    stop = tmp_path / "stop.txt"
    stop.write_text("的\n布局\n", encoding="utf-8")
    original = FinanceTokenizer(
        user_dict_paths=[str(user_dict)],
        extra_words=["同心医疗"],
        stopwords=str(stop),
        extra_stopwords=["参股"],
        hmm=False,
    )
    texts = ["同心医疗布局心衰赛道的净资产收益率为12.5%", "鲁信创投参股000001.SZ", ""]
    expected = original.tokenize_many(texts)
    folder = original.save(tmp_path / "saved")
    assert {p.name for p in folder.iterdir()} == {
        "tokenizer.json",
        "finance_dict.txt",
        "user_dict_0.txt",
        "stopwords.txt",
    }
    # the sources change after saving; the shipped resources are not even read on load
    user_dict.write_text("心衰 3000 n\n", encoding="utf-8")
    stop.write_text("", encoding="utf-8")

    def no_shipped(name: str) -> None:
        raise AssertionError(f"load() read the shipped resource {name}")

    monkeypatch.setattr(dictionaries, "read_builtin", no_shipped)
    restored = FinanceTokenizer.load(folder)
    assert restored.tokenize_many(texts) == expected
    assert restored.describe() == original.describe()
    assert restored.fingerprint == original.fingerprint


def test_load_refuses_edited_or_missing_files(tmp_path: Path) -> None:
    folder = FinanceTokenizer().save(tmp_path / "tok")
    (folder / "stopwords.txt").write_text("改过\n", encoding="utf-8")
    with pytest.raises(TokenizerConfigError, match="stopwords.txt was changed"):
        FinanceTokenizer.load(folder)
    (folder / "stopwords.txt").unlink()
    with pytest.raises(TokenizerConfigError, match="stopwords.txt is missing"):
        FinanceTokenizer.load(folder)
    with pytest.raises(TokenizerConfigError, match="tokenizer.json"):
        FinanceTokenizer.load(tmp_path / "nothing")
    settings = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    settings["format_version"] = 99
    (folder / "tokenizer.json").write_text(json.dumps(settings), encoding="utf-8")
    with pytest.raises(TokenizerConfigError, match="format_version 99"):
        FinanceTokenizer.load(folder)


def test_describe_and_fingerprint_track_what_changes_tokens() -> None:
    base = FinanceTokenizer()
    info = base.describe()
    assert info["use_finance_dict"] and info["stopwords"] == "builtin"
    assert len(info["finance_dict_sha256"]) == 64 and len(info["stopwords_sha256"]) == 64
    assert info["num_domain_terms"] > 500 and info["num_stopwords"] > 100
    json.dumps(info)  # serialisable for meta.json
    assert FinanceTokenizer(n_jobs=2).fingerprint == base.fingerprint  # n_jobs does not change tokens
    assert FinanceTokenizer(extra_stopwords=["公司"]).fingerprint != base.fingerprint
    assert FinanceTokenizer(hmm=False).fingerprint != base.fingerprint
    plain_info = FinanceTokenizer.plain().describe()
    assert (
        not plain_info["use_finance_dict"]
        and plain_info["stopwords"] is None
        and plain_info["num_domain_terms"] == 0
    )


def test_shipped_dictionary_format() -> None:
    tok = FinanceTokenizer()
    dict_text = (Path(tokenize_module.__file__).parent / "resources" / "finance_dict.txt").read_text(
        encoding="utf-8"
    )
    rows = [line.split() for line in dict_text.splitlines() if line.strip()]
    assert len(rows) >= 500
    assert all(
        len(r) == 3 and int(r[1]) >= segmenter.DOMAIN_WORD_MIN_FREQ and r[2] in {"n", "nt", "nz"}
        for r in rows
    )
    tags = {r[0]: r[2] for r in rows}
    assert (
        tags["证监会"] == "nt" and tags["上交所"] == "nt" and tags["科创板"] == "nz" and tags["市盈率"] == "n"
    )
    # every non-ASCII entry is kept whole by jieba on its own
    for word in (r[0] for r in rows if not r[0].isascii()):
        assert word.lower() in tok.tokenize(word) or word.lower() in tok.stopwords, word


def _fintruthqa_sample(n_docs: int, n_queries: int) -> list[str]:
    texts = []
    with (_FINTRUTHQA / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line, _ in zip(handle, range(n_docs)):
            texts.append(json.loads(line)["text"])
    with (_FINTRUTHQA / "queries.jsonl").open(encoding="utf-8") as handle:
        for line, _ in zip(handle, range(n_queries)):
            texts.append(json.loads(line)["text"])
    return texts


@pytest.mark.parametrize("settings", [{}, {"hmm": False}, {"use_finance_dict": False, "stopwords": None}])
def test_jieba_next_fast_path_gives_identical_tokens(
    settings: dict, disc_corpus: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("jieba_next")
    if not (_FINTRUTHQA / "corpus.jsonl").is_file():
        pytest.fail(f"bundled corpus {_FINTRUTHQA} is missing; restore data/01_raw/retrieval/fintruthqa.")
    texts = _fintruthqa_sample(600, 200) + [text for _, text in disc_corpus]
    with caplog.at_level(logging.INFO):
        fast = FinanceTokenizer(segmenter="jieba_next", **settings)
        slow = FinanceTokenizer(segmenter="jieba", **settings)
        assert fast.segmenter_name.startswith("jieba_next") and slow.segmenter_name.startswith("jieba ")
        assert fast.tokenize_many(texts) == slow.tokenize_many(texts)
    assert fast.fingerprint == slow.fingerprint


def test_auto_segmenter_falls_back_to_jieba(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "jieba_next", None)  # makes `import jieba_next` fail
    tok = FinanceTokenizer(segmenter="auto")
    assert tok.segmenter_name.startswith("jieba ")
    assert tok.tokenize("归母净利润增长") == ["归母净利润", "增长"]
    with pytest.raises(TokenizerConfigError, match="pip install jieba-next"):
        FinanceTokenizer(segmenter="jieba_next").tokenize("x")


def test_search_mode_keeps_terms_whole_and_adds_their_dictionary_subwords(tmp_path: Path) -> None:
    default = FinanceTokenizer(stopwords=None)
    search = FinanceTokenizer(stopwords=None, search_mode=True)
    text = "公司第一期员工持股计划的股票来源为回购专用账户，代码600519。"
    assert "员工持股计划" in default.tokenize(text) and "持股" not in default.tokenize(text)
    tokens = search.tokenize(text)
    assert {"员工持股计划", "员工", "持股", "计划"} <= set(tokens)
    assert "600519" in tokens and "60" not in tokens  # codes and numbers are never split into sub-words
    # every default token is still there: search mode only adds
    assert set(default.tokenize(text)) <= set(tokens)
    assert search.describe()["search_mode"] is True and search.fingerprint != default.fingerprint
    restored = FinanceTokenizer.load(search.save(tmp_path / "tok"))
    assert restored.search_mode is True and restored.tokenize(text) == tokens
