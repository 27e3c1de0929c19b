"""The embedding store at scale: shards streamed into the output (or a memmap), never the whole role in
memory."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from finrag_pipelines.embedding.store import EmbeddingStore, encode_with_store, text_key


class HashEncoder:
    """Deterministic stand-in: each text's vector is seeded by its sha256 (no model files)."""

    name, query_task = "hash", None

    def __init__(self, dim: int = 512) -> None:
        self.dim = dim
        self.calls = 0

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"hash-{self.dim}".encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        return {"kind": "hash", "dim": self.dim}

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            out[row] = np.random.default_rng(seed).standard_normal(self.dim, dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    encode_queries = encode_documents


def _texts(n: int) -> list[str]:
    return [f"文档{i}：营业收入同比增长{i % 97}%" for i in range(n)]


def test_cached_vectors_are_streamed_shard_by_shard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, encoder = EmbeddingStore(tmp_path / "cache"), HashEncoder(dim=32)
    texts = _texts(300)
    first = encode_with_store(encoder, texts, "document", store, chunk_size=64)
    assert len(list((tmp_path / "cache" / encoder.fingerprint / "document").glob("shard-*.bin"))) == 5

    def no_load(*_: Any) -> None:
        raise AssertionError("encode_with_store must not load the whole role")

    monkeypatch.setattr(EmbeddingStore, "load", no_load)
    calls = encoder.calls
    wanted = texts[::-1] + texts[:10] + ["新的文本"]  # reordered, repeated, one new
    again = encode_with_store(encoder, wanted, "document", store, chunk_size=64)
    assert encoder.calls == calls + 1  # only the new text was encoded
    np.testing.assert_array_equal(again[:300], first[::-1])
    np.testing.assert_array_equal(again[300:310], first[:10])
    np.testing.assert_array_equal(again[310], encoder.encode_documents(["新的文本"])[0])
    assert store.count(encoder.fingerprint, "document") == 301


def test_out_memmap_receives_the_vectors(tmp_path: Path) -> None:
    store, encoder = EmbeddingStore(tmp_path / "cache"), HashEncoder(dim=16)
    texts = _texts(50) + _texts(5)
    expected = encode_with_store(encoder, texts, "document", None)
    out = np.lib.format.open_memmap(tmp_path / "v.npy", mode="w+", dtype=np.float32, shape=(55, 16))
    result = encode_with_store(encoder, texts, "document", store, chunk_size=8, out=out)
    assert result is out
    out.flush()
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), expected)
    with pytest.raises(ValueError, match=r"out must be a float32 array of shape \(55, 16\)"):
        encode_with_store(encoder, texts, "document", store, out=np.zeros((55, 8), dtype=np.float32))


def test_reading_a_store_holds_one_shard_not_the_role(tmp_path: Path) -> None:
    store, encoder = EmbeddingStore(tmp_path / "cache"), HashEncoder(dim=512)
    texts = _texts(4000)  # 8 MB of vectors in 16 shards
    encode_with_store(encoder, texts, "document", store, chunk_size=256)
    out = np.lib.format.open_memmap(tmp_path / "v.npy", mode="w+", dtype=np.float32, shape=(4000, 512))
    tracemalloc.start()
    try:
        encode_with_store(encoder, texts, "document", store, out=out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3_000_000, f"peak {peak} bytes to read 8 MB of stored vectors into a memmap"
    np.testing.assert_array_equal(out[123], encoder.encode_documents([texts[123]])[0])


def test_a_shard_of_another_dimension_is_refused(tmp_path: Path) -> None:
    store, encoder = EmbeddingStore(tmp_path / "cache"), HashEncoder(dim=8)
    store.put(encoder.fingerprint, "document", [text_key("x")], np.zeros((1, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"holds 4-d vectors but the encoder's are 8-d.*Delete"):
        encode_with_store(encoder, ["x"], "document", store)
