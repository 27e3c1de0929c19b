"""Rerankers over tiny local models: the official prompt, batching, truncation, scores, errors, factory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from finrag_pipelines.rerank.causal_lm import CausalLMReranker
from finrag_pipelines.rerank.cross_encoder import CrossEncoderReranker
from finrag_pipelines.rerank.factory import LazyReranker, build_reranker
from finrag_pipelines.rerank.formats import PREFIX, SUFFIX, QwenRerankPrompt, TextPairInput, fit_passage

INSTRUCTION = "Given a Chinese financial question, judge whether the document answers it"


def _pairs(disc_corpus: list[tuple[str, str]], n: int = 7) -> tuple[list[str], list[str]]:
    docs = [text[: 20 + 9 * i] for i, (_, text) in enumerate(disc_corpus[:n])]  # different lengths, none cut
    queries = [f"{text[:8]}是多少？" for _, text in disc_corpus[3 : 3 + n]]
    return queries, docs


@pytest.fixture(scope="module")
def qwen(tiny_qwen3_reranker_dir: Path) -> CausalLMReranker:
    return CausalLMReranker(
        tiny_qwen3_reranker_dir, instruction=INSTRUCTION, max_length=320, batch_size=3, device="cpu"
    )


@pytest.fixture(scope="module")
def bert(tiny_bert_reranker_dir: Path) -> CrossEncoderReranker:
    return CrossEncoderReranker(tiny_bert_reranker_dir, max_length=128, batch_size=3, device="cpu")


def test_qwen_scores_are_the_yes_probability_of_the_official_prompt(
    qwen: CausalLMReranker, tiny_qwen3_reranker_dir: Path, disc_corpus
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    queries, docs = _pairs(disc_corpus)
    scores = qwen.score_pairs(queries, docs)
    assert scores.dtype == np.float32 and scores.shape == (7,) and ((scores > 0) & (scores < 1)).all()
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen3_reranker_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen3_reranker_dir).eval()
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    for query, doc, score in zip(queries, docs, scores, strict=True):
        prompt = f"{PREFIX}<Instruct>: {INSTRUCTION}\n<Query>: {query}\n<Document>: {doc}{SUFFIX}"
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, -1]  # one unpadded sequence
        expected = torch.softmax(torch.stack([logits[no], logits[yes]]), dim=0)[1].item()
        assert len(qwen.encode_pair(query, doc)) == ids.shape[1] < qwen.max_length
        assert score == pytest.approx(expected, abs=1e-5)


def test_batching_and_padding_do_not_change_scores(qwen: CausalLMReranker, bert, disc_corpus) -> None:
    queries, docs = _pairs(disc_corpus)
    for reranker in (qwen, bert):
        together = reranker.score_pairs(queries, docs)  # batches of 3 mixing lengths, left/right padded
        alone = np.array([reranker.score_pairs([q], [d])[0] for q, d in zip(queries, docs, strict=True)])
        np.testing.assert_allclose(together, alone, atol=1e-5)
        reversed_order = reranker.score_pairs(queries[::-1], docs[::-1])[::-1]
        np.testing.assert_allclose(together, reversed_order, atol=1e-5)
    assert qwen.score_pairs([], []).shape == (0,)


def _swift_ids(
    model_dir: Path, model_type: str, task: str, template: str | None, row: dict
) -> list[list[int]]:
    from swift import get_processor, get_template

    processor = get_processor(str(model_dir), model_type=model_type, task_type=task, download_model=False)
    template_ = get_template(processor, template_type=template, max_length=4096, truncation_strategy="delete")
    template_.set_mode("train")
    return template_.encode(row)["input_ids"]


@pytest.mark.slow
def test_prompts_match_what_ms_swift_trains_on(
    qwen, bert, tiny_qwen3_reranker_dir, tiny_bert_reranker_dir
) -> None:
    query, pos, neg = "公司的净利润是多少？", "公司2023年净利润为1.2亿元。", "今天天气很好"
    row = {"messages": [{"role": "user", "content": query}],
           "positive_messages": [[{"role": "assistant", "content": pos}]],
           "negative_messages": [[{"role": "assistant", "content": neg}]]}  # fmt: skip
    generative = {**row, "messages": [{"role": "system", "content": INSTRUCTION}, *row["messages"]]}
    ids = _swift_ids(tiny_qwen3_reranker_dir, "qwen3_reranker", "generative_reranker", None, generative)
    assert ids == [qwen.encode_pair(query, pos), qwen.encode_pair(query, neg)]
    ids = _swift_ids(tiny_bert_reranker_dir, "bert", "reranker", "bert", row)
    assert ids == [bert.encode_pair(query, pos)["input_ids"], bert.encode_pair(query, neg)["input_ids"]]


def test_long_passages_lose_their_tail_never_the_prompt_end(qwen: CausalLMReranker, bert) -> None:
    long_doc = "营业收入同比增长百分之十二。" * 200
    ids = qwen.encode_pair("收入增长多少？", long_doc)
    assert len(ids) == 320
    assert (
        ids[: len(qwen.prompt.prefix)] == qwen.prompt.prefix
        and ids[-len(qwen.prompt.suffix) :] == qwen.prompt.suffix
    )
    assert 0 < qwen.score_pairs(["收入增长多少？"], [long_doc])[0] < 1
    assert len(bert.encode_pair("收入增长多少？", long_doc)["input_ids"]) == 128


def test_fit_passage_cuts_to_the_longest_prefix_that_fits(qwen: CausalLMReranker, bert) -> None:
    text = "净利润同比增长了百分之三十，主要来自海外业务。" * 40
    for pair_format in (qwen.prompt, bert.pair_input):
        fitted = fit_passage(pair_format, "净利润增长多少？", text)
        assert fitted is not None and text.startswith(fitted) and 0 < len(fitted) < len(text)
        assert pair_format.full_length("净利润增长多少？", fitted) <= pair_format.max_length
        assert pair_format.full_length("净利润增长多少？", text[: len(fitted) + 1]) > pair_format.max_length
        assert fit_passage(pair_format, "短问题", "短文档") == "短文档"
        assert fit_passage(pair_format, "问" * 2000, text) is None  # the query alone is too long


def test_cross_encoder_score_is_the_sigmoid_of_its_logit(bert, tiny_bert_reranker_dir: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_reranker_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_reranker_dir).eval()
    features = tokenizer("利润是多少", "公司利润为一亿元", return_tensors="pt")
    assert "token_type_ids" not in features  # one token type, as swift's reranker templates train
    with torch.no_grad():
        expected = torch.sigmoid(model(**features).logits[0, 0]).item()
    assert bert.score_pairs(["利润是多少"], ["公司利润为一亿元"])[0] == pytest.approx(expected, abs=1e-6)
    assert bert.describe()["score"] == "sigmoid(logit)"


def test_bfloat16_on_cpu_scores_close_to_float32(tiny_qwen3_reranker_dir: Path, qwen, disc_corpus) -> None:
    half = CausalLMReranker(
        tiny_qwen3_reranker_dir, instruction=INSTRUCTION, max_length=320, dtype="bfloat16", device="cpu"
    )
    queries, docs = _pairs(disc_corpus, 4)
    assert half.dtype == "bfloat16" and half.fingerprint != qwen.fingerprint  # dtype changes scores
    np.testing.assert_allclose(half.score_pairs(queries, docs), qwen.score_pairs(queries, docs), atol=0.02)


def test_settings_and_folders_are_checked(tiny_qwen3_reranker_dir, tiny_qwen3_dir, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CausalLMReranker(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no single token 'yes'"):
        CausalLMReranker(tiny_qwen3_dir, device="cpu")  # the embedding tokenizer has no yes/no tokens
    with pytest.raises(ValueError, match="leaves .* tokens"):
        CausalLMReranker(tiny_qwen3_reranker_dir, max_length=64, device="cpu")
    with pytest.raises(ValueError, match="max_length"):
        CausalLMReranker(tiny_qwen3_reranker_dir, max_length=4, device="cpu")
    with pytest.raises(ValueError, match="dtype"):
        CausalLMReranker(tiny_qwen3_reranker_dir, dtype="int8", device="cpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            CausalLMReranker(tiny_qwen3_reranker_dir, device="cuda")


def test_cross_encoder_refuses_a_multiclass_head(tiny_bert_reranker_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "three_labels"
    shutil.copytree(tiny_bert_reranker_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {"0": "a", "1": "b", "2": "c"}
    config["label2id"] = {"a": 0, "b": 1, "c": 2}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="3 labels"):
        CrossEncoderReranker(folder, device="cpu")


def test_pairs_are_validated(qwen) -> None:
    with pytest.raises(TypeError, match="wrap it in a list"):
        qwen.score_pairs("q", ["d"])
    with pytest.raises(ValueError, match="one passage per query"):
        qwen.score_pairs(["q", "r"], ["d"])
    with pytest.raises(TypeError, match=r"passages\[0\]"):
        qwen.score_pairs(["q"], [None])


def test_factory_and_lazy_reranker(tiny_qwen3_reranker_dir: Path, tiny_bert_reranker_dir: Path, qwen) -> None:
    config = {
        "kind": "qwen3",
        "model_path": str(tiny_qwen3_reranker_dir),
        "instruction": INSTRUCTION,
        "max_length": 320,
        "batch_size": 4,
        "dtype": "auto",
        "device": "cpu",
    }
    assert build_reranker(config).fingerprint == qwen.fingerprint  # batch size does not change scores
    assert isinstance(
        build_reranker({"kind": "cross_encoder", "model_path": str(tiny_bert_reranker_dir), "device": "cpu"}),
        CrossEncoderReranker,
    )
    with pytest.raises(ValueError, match="use one of"):
        build_reranker({"kind": "colbert", "model_path": "x"})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['instruction'\]"):
        build_reranker({"kind": "cross_encoder", "model_path": "x", "instruction": "y"})
    with pytest.raises(ValueError, match="model_path"):
        build_reranker({"kind": "qwen3"})
    lazy = LazyReranker(config)
    assert lazy.name == "model" and lazy._built is None  # nothing loaded yet
    assert lazy.fingerprint == qwen.fingerprint and lazy.get() is lazy.get()
    assert lazy.score_pairs(["利润"], ["利润增长"]).shape == (1,)


def test_pair_formats_need_room_for_the_body(tiny_qwen3_reranker_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen3_reranker_dir)
    with pytest.raises(ValueError, match="raise max_length"):
        QwenRerankPrompt(tokenizer, None, 32)
    prompt = QwenRerankPrompt(tokenizer, None, 400)
    assert "Given a web search query" in prompt.instruction  # Qwen3-Reranker's default
    assert TextPairInput(tokenizer, 50).full_length("a", "b") > 0


def test_rerankers_load_with_the_shared_kernel_decision(qwen, bert, caplog) -> None:
    """CPU: sdpa, recorded in describe() with the reason in the log; the fingerprint leaves it out."""
    from finrag_pipelines.embedding.fingerprint import make_fingerprint
    from finrag_pipelines.rerank import loading

    for reranker in (qwen, bert):
        kernels = reranker.kernels
        assert kernels.attn_implementation == "sdpa" and "no CUDA GPU" in kernels.attn_reason
        assert reranker.describe()["attn_implementation"] == "sdpa"
        assert reranker._model.config._attn_implementation == "sdpa"  # what transformers really loaded
        described = {k: v for k, v in reranker.describe().items() if k != "attn_implementation"}
        assert reranker.fingerprint == make_fingerprint(described, reranker._content_hash)
    with caplog.at_level("INFO", logger="finrag_pipelines.kernels"):
        choice = loading.choose_reranker_kernels("r", "cuda", "float32")
    assert choice.attn_implementation == "sdpa" and "float32" in choice.attn_reason
    assert "reranker r kernels: attention sdpa" in caplog.text
