"""Character n-gram tokenizer: tokens, settings, save / load, and loading a saved tokenizer by its kind."""

from __future__ import annotations

import json

import pytest

from finrag_pipelines.text.dictionaries import TextResource, TokenizerConfigError
from finrag_pipelines.text.ngram import CharNgramTokenizer
from finrag_pipelines.text.tokenize import FinanceTokenizer
from finrag_pipelines.text.tokenizers import Tokenizer, load_tokenizer


def test_bigrams_stop_at_punctuation_and_keep_short_segments() -> None:
    tok = CharNgramTokenizer(n=2)
    assert tok.tokenize("营业收入，增长") == ["营业", "业收", "收入", "增长"]
    assert tok.tokenize("是，否") == ["是", "否"]  # a segment shorter than n is one token
    assert tok.tokenize("") == [] and tok.tokenize("，。！") == []


def test_nfkc_lowercase_and_whitespace() -> None:
    tok = CharNgramTokenizer(n=2)
    # full-width letters and digits become ASCII and lowercase; whitespace separates segments
    assert tok.tokenize("ＥＴＦ 基金") == ["et", "tf", "基金"]
    assert CharNgramTokenizer(n=2, lowercase=False).tokenize("ETF") == ["ET", "TF"]


def test_without_punctuation_split_windows_run_across_it() -> None:
    tok = CharNgramTokenizer(n=2, split_on_punctuation=False)
    assert tok.tokenize("收入，增长") == ["收入", "入,", ",增", "增长"]  # NFKC: the full-width comma is ","
    assert tok.tokenize("收 入") == ["收入"]  # only whitespace is removed


def test_ascii_words_keep_codes_and_numbers_whole() -> None:
    tok = CharNgramTokenizer(n=2, ascii_words=True)
    assert tok.tokenize("贵州茅台600519涨停") == ["贵州", "州茅", "茅台", "600519", "涨停"]
    assert CharNgramTokenizer(n=2).tokenize("股票600519")[:3] == ["股票", "票6", "60"]


def test_unigrams_and_trigrams() -> None:
    assert CharNgramTokenizer(n=1).tokenize("利润率") == ["利", "润", "率"]
    assert CharNgramTokenizer(n=3).tokenize("净利润率") == ["净利润", "利润率"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n": 0}, "n"),
        ({"n": "2"}, "n"),
        ({"n": True}, "n"),
        ({"lowercase": "yes"}, "lowercase"),
        ({"ascii_words": 1}, "ascii_words"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, field: str) -> None:
    with pytest.raises(TokenizerConfigError, match=field):
        CharNgramTokenizer(**kwargs)


def test_tokenize_many_checks_its_input() -> None:
    tok = CharNgramTokenizer()
    assert tok.tokenize_many(["收入", "利润"]) == [["收入"], ["利润"]]
    with pytest.raises(TypeError, match="sequence of texts"):
        tok.tokenize_many("收入")
    with pytest.raises(TypeError, match="item 1"):
        tok.tokenize_many(["收入", 3])  # type: ignore[list-item]


def test_no_domain_terms_and_a_fingerprint_per_setting() -> None:
    tok = CharNgramTokenizer()
    assert not tok.is_domain_term("收入") and tok.domain_terms == frozenset()
    assert tok.describe()["kind"] == "char_ngram" and tok.describe()["n"] == 2
    assert tok.fingerprint != CharNgramTokenizer(n=3).fingerprint
    assert tok.fingerprint != CharNgramTokenizer(ascii_words=True).fingerprint
    assert tok.fingerprint == CharNgramTokenizer().fingerprint
    assert isinstance(tok, Tokenizer) and isinstance(FinanceTokenizer.plain(), Tokenizer)


def test_save_load_round_trip_and_tampering(tmp_path) -> None:
    tok = CharNgramTokenizer(n=3, ascii_words=True)
    tok.save(tmp_path / "tok")
    back = load_tokenizer(tmp_path / "tok")
    assert isinstance(back, CharNgramTokenizer) and back.settings() == tok.settings()
    assert back.tokenize("贵州茅台600519") == tok.tokenize("贵州茅台600519")
    saved = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    saved["settings"]["n"] = 2  # settings changed after saving: the fingerprint no longer matches
    (tmp_path / "tok" / "tokenizer.json").write_text(json.dumps(saved))
    with pytest.raises(TokenizerConfigError, match="fingerprint"):
        load_tokenizer(tmp_path / "tok")
    saved["kind"] = "something_else"
    (tmp_path / "tok" / "tokenizer.json").write_text(json.dumps(saved))
    with pytest.raises(TokenizerConfigError, match="unknown tokenizer kind 'something_else'"):
        load_tokenizer(tmp_path / "tok")


def test_load_tokenizer_restores_a_finance_tokenizer_with_its_user_dictionary(tmp_path) -> None:
    mined = TextResource(source="mined vocabulary (statistical, 1 terms)", text="冰墩墩 nz\n")
    tok = FinanceTokenizer(user_dicts=[mined])
    assert "冰墩墩" in tok.tokenize("冬奥会的冰墩墩很受欢迎") and tok.is_domain_term("冰墩墩")
    tok.save(tmp_path / "fin")
    back = load_tokenizer(tmp_path / "fin")
    assert isinstance(back, FinanceTokenizer) and back.fingerprint == tok.fingerprint
    assert back.describe()["user_dict_paths"] == [
        "mined vocabulary (statistical, 1 terms)"
    ]  # provenance kept
    assert back.tokenize("冰墩墩") == ["冰墩墩"]
    with pytest.raises(TokenizerConfigError, match="TextResource"):
        FinanceTokenizer(user_dicts=["冰墩墩"])  # type: ignore[list-item]


def test_tokenize_many_shares_one_string_per_distinct_ngram() -> None:
    tokenizer = CharNgramTokenizer(n=2)
    texts = ["营业收入增长", "营业收入下降", "营业收入增长"]
    many = tokenizer.tokenize_many(texts)
    assert many == [tokenizer.tokenize(t) for t in texts]
    assert many[0][0] is many[1][0] is many[2][0]  # "营业": one object, not a copy per occurrence
    distinct = {t for tokens in many for t in tokens}
    assert len({id(token) for tokens in many for token in tokens}) == len(distinct)
