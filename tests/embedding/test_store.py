"""The resumable embedding store: cache hits, crash and resume, torn shards, bit-identical vectors."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from finrag_pipelines.embedding.encoders import Encoder
from finrag_pipelines.embedding.hf_encoder import HFEncoder
from finrag_pipelines.embedding.store import EmbeddingStore, encode_with_store, text_key
from finrag_pipelines.embedding.use_encoder import USEEncoder

SRC = Path(__file__).resolve().parents[2] / "src"


class CountingEncoder:
    """Delegates to a real encoder, records every text it is asked to encode, can fail on a given call."""

    def __init__(self, inner: Encoder, fail_on_call: int | None = None) -> None:
        self.inner = inner
        self.fail_on_call = fail_on_call
        self.calls: list[list[str]] = []

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def query_task(self) -> str | None:
        return self.inner.query_task

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    @property
    def encoded(self) -> list[str]:
        return [text for call in self.calls for text in call]

    def _record(self, texts: Sequence[str]) -> None:
        self.calls.append(list(texts))
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise RuntimeError("simulated crash")

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        self._record(texts)
        return self.inner.encode_queries(texts)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        self._record(texts)
        return self.inner.encode_documents(texts)


@pytest.fixture(scope="module")
def hf_encoder(tiny_qwen3_dir: Path) -> HFEncoder:
    return HFEncoder(tiny_qwen3_dir, query_task="检索相关文档", batch_size=8, max_length=64)


@pytest.fixture(scope="module")
def texts(disc_corpus: list[tuple[str, str]]) -> list[str]:
    lines = [line.strip() for _, text in disc_corpus for line in text.splitlines() if line.strip()]
    return list(dict.fromkeys(lines))[:45]  # distinct, in corpus order


def test_second_run_is_all_cached_and_bit_identical(
    hf_encoder: HFEncoder, texts: list[str], tmp_path: Path
) -> None:
    store = EmbeddingStore(tmp_path / "store")
    first = CountingEncoder(hf_encoder)
    computed = encode_with_store(first, texts, "document", store, chunk_size=16)
    assert len(first.encoded) == len(set(texts))
    again = CountingEncoder(hf_encoder)
    cached = encode_with_store(again, texts, "document", store, chunk_size=16)
    assert again.calls == []
    assert cached.dtype == np.float32 and np.array_equal(cached, computed)
    assert store.count(hf_encoder.fingerprint, "document") == len(set(texts))
    assert (tmp_path / "store" / hf_encoder.fingerprint / "encoder.json").is_file()


def test_duplicates_roles_and_encoders_are_kept_apart(
    hf_encoder: HFEncoder, tiny_qwen3_dir: Path, texts: list[str], tmp_path: Path
) -> None:
    store = EmbeddingStore(tmp_path / "store")
    doubled = texts[:5] + texts[:5]
    counting = CountingEncoder(hf_encoder)
    docs = encode_with_store(counting, doubled, "document", store)
    assert counting.encoded == texts[:5]
    np.testing.assert_array_equal(docs[:5], docs[5:])
    # the same texts as queries get the instruction: a separate cache entry, other vectors
    queries = encode_with_store(counting, texts[:5], "query", store)
    assert counting.encoded == texts[:5] * 2
    assert np.abs(queries - docs[:5]).max() > 1e-3
    # another encoder setting (so another fingerprint) does not reuse them
    other = CountingEncoder(HFEncoder(tiny_qwen3_dir, query_task="检索相关文档", batch_size=8, max_length=32))
    encode_with_store(other, texts[:5], "document", store)
    assert other.encoded == texts[:5]


def test_resume_after_crash_encodes_only_missing_texts(
    hf_encoder: HFEncoder, texts: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = EmbeddingStore(tmp_path / "store")
    crashing = CountingEncoder(hf_encoder, fail_on_call=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        encode_with_store(crashing, texts, "document", store, chunk_size=10)
    shard_dir = tmp_path / "store" / hf_encoder.fingerprint / "document"
    shards = sorted(shard_dir.glob("shard-*.bin"))
    assert len(shards) == 2  # two chunks survived the crash
    # a torn last shard (cut short mid-write) and a temp file left behind by the crash
    data = shards[-1].read_bytes()
    (shard_dir / "shard-99999999999999999999-1-000001.bin").write_bytes(data[: len(data) // 2])
    (shard_dir / ".tmp-shard-x.bin-1").write_bytes(data[:100])

    resumed = CountingEncoder(hf_encoder)
    with caplog.at_level(logging.WARNING, logger="finrag_pipelines.embedding.store"):
        vectors = encode_with_store(resumed, texts, "document", store, chunk_size=10)
    assert "torn/corrupt" in caplog.text
    assert resumed.encoded == texts[20:]
    assert not (shard_dir / "shard-99999999999999999999-1-000001.bin").exists()

    fresh = encode_with_store(CountingEncoder(hf_encoder), texts, "document", None, chunk_size=10)
    assert np.array_equal(vectors, fresh)
    assert store.count(hf_encoder.fingerprint, "document") == len(texts)


_KILL_SCRIPT = """
import sys, time
from finrag_pipelines.embedding.use_encoder import USEEncoder
from finrag_pipelines.embedding.store import EmbeddingStore, encode_with_store

class Slow(USEEncoder):
    def encode_documents(self, texts):
        time.sleep(0.3)
        return super().encode_documents(texts)

texts = [line.rstrip("\\n") for line in open(sys.argv[2], encoding="utf-8")]
encode_with_store(Slow(threads=1), texts, "document", EmbeddingStore(sys.argv[1]), chunk_size=5)
"""


def test_resume_after_kill_9(texts: list[str], tmp_path: Path) -> None:
    use = USEEncoder(threads=1)
    lines = tmp_path / "texts.txt"
    lines.write_text("\n".join(texts) + "\n", encoding="utf-8")
    store_dir = tmp_path / "store"
    shard_dir = store_dir / use.fingerprint / "document"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(store_dir), str(lines)], env=env)
    try:
        deadline = time.monotonic() + 60
        while len(list(shard_dir.glob("shard-*.bin"))) < 2:
            assert proc.poll() is None, "the encoding process ended before it could be killed"
            assert time.monotonic() < deadline, "no shard written within 60 s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    stored = EmbeddingStore(store_dir).count(use.fingerprint, "document")
    assert 10 <= stored < len(texts)

    resumed = CountingEncoder(use)
    vectors = encode_with_store(resumed, texts, "document", EmbeddingStore(store_dir), chunk_size=5)
    assert len(resumed.encoded) == len(texts) - stored
    assert set(resumed.encoded) == set(texts) - set(texts[:stored])
    np.testing.assert_allclose(vectors, use.encode_documents(texts), atol=1e-5)


def test_text_key_and_bad_inputs(tmp_path: Path, hf_encoder: HFEncoder) -> None:
    assert text_key("苹果") == text_key("苹果") != text_key("苹果 ")
    store = EmbeddingStore(tmp_path)
    with pytest.raises(ValueError, match="role"):
        encode_with_store(hf_encoder, ["a"], "passage", store)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fingerprint"):
        store.load("../escape", "document")
    assert encode_with_store(hf_encoder, [], "document", store).shape == (0, hf_encoder.dim)
