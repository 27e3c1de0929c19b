"""Fixtures: small BM25 + dense indexes over the bundled DISC-FinLLM corpus, and a real local server."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from finrag_pipelines.embedding.encoders import format_query
from finrag_pipelines.retrieval.bm25.index import BM25Index
from finrag_pipelines.retrieval.bm25.scoring import BM25Config
from finrag_pipelines.retrieval.dense import DenseIndex
from finrag_pipelines.serving.app import create_app
from finrag_pipelines.serving.backend import SearchBackend
from finrag_pipelines.serving.server import ServerThread
from finrag_pipelines.serving.settings import ServingSettings, load_settings
from finrag_pipelines.text.corpus import indexable
from finrag_pipelines.text.tokenize import FinanceTokenizer

_REPO = Path(__file__).resolve().parents[2]
N_DOCS = 60
TOKEN = "s3cret-token"


class HashEncoder:
    """A tiny deterministic encoder (character uni/bigrams hashed into 64 dims, L2-normalised).

    Implements the :class:`~finrag_pipelines.embedding.encoders.Encoder` protocol, instruction included.
    """

    def __init__(self, query_task: str | None = "检索回答问题的文档", dim: int = 64) -> None:
        self._task = query_task
        self._dim = dim
        self.calls: list[int] = []  # batch sizes of encode_queries calls

    @property
    def name(self) -> str:
        return "hash-encoder"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def query_task(self) -> str | None:
        return self._task

    def describe(self) -> dict[str, Any]:
        return {"kind": "hash", "dim": self._dim, "query_task": self._task, "instruction_template": None}

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            grams = list(text) + [text[i : i + 2] for i in range(len(text) - 1)]
            for gram in grams:
                digest = hashlib.md5(gram.encode("utf-8")).digest()
                out[row, digest[0] % self._dim] += 1.0 if digest[1] % 2 else -1.0
            norm = np.linalg.norm(out[row])
            out[row] = out[row] / norm if norm else 1.0 / np.sqrt(self._dim)
        return out

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return self._encode([format_query(self._task, t) for t in texts])

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(list(texts))


def serving_settings(**changes: Any) -> ServingSettings:
    """The project's conf/base/parameters_serving.yml, with some keys changed."""
    conf = yaml.safe_load((_REPO / "conf/base/parameters_serving.yml").read_text(encoding="utf-8"))["serving"]
    for key, value in changes.items():
        if isinstance(value, dict):
            conf[key] = {**conf[key], **value}
        else:
            conf[key] = value
    return load_settings(conf)


@pytest.fixture(scope="session")
def corpus(disc_corpus: list[tuple[str, str]]) -> dict[str, list[str]]:
    """60 documents; every third gets a title."""
    docs = disc_corpus[:N_DOCS]
    return {
        "doc_id": [d for d, _ in docs],
        "title": [f"标题{i}" if i % 3 == 0 else "" for i in range(len(docs))],
        "text": [t for _, t in docs],
    }


@pytest.fixture(scope="session")
def queries(corpus: dict[str, list[str]]) -> list[str]:
    """Queries cut from documents (so BM25 finds terms and dense has signal)."""
    return [corpus["text"][i].strip().replace("\n", " ")[5:25] for i in (1, 7, 13, 22, 31, 45)]


@pytest.fixture(scope="session")
def encoder() -> HashEncoder:
    return HashEncoder()


@pytest.fixture(scope="session")
def indexes(corpus: dict[str, list[str]], encoder: HashEncoder) -> tuple[BM25Index, DenseIndex]:
    ids, texts, digest = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    bm25 = BM25Index.build(ids, texts, FinanceTokenizer(), BM25Config(), digest)
    meta = {**encoder.describe(), "fingerprint": encoder.fingerprint}
    dense = DenseIndex.build(ids, encoder.encode_documents(texts), meta, digest)
    return bm25, dense


def make_backend(
    corpus: dict[str, list[str]],
    indexes: tuple[BM25Index, DenseIndex],
    default_encoder: Any,
    settings: ServingSettings,
    **kw: Any,
) -> SearchBackend:
    bm25, dense = indexes
    args: dict[str, Any] = {
        "doc_ids": corpus["doc_id"],
        "titles": corpus["title"],
        "texts": corpus["text"],
        "bm25": bm25,
        "dense": dense,
        "encoder": default_encoder,
        "default_method": settings.method,
        "alpha": 0.4,
        "alpha_source": "test",
        "fusion_depth": 20,
        "encode_batch_size": settings.encode_batch_size,
    }
    args.update(kw)
    return SearchBackend(**args)


@pytest.fixture(scope="session")
def backend_factory(corpus, indexes, encoder, settings):  # type: ignore[no-untyped-def]
    """``factory(**overrides)`` -> a SearchBackend over the test indexes."""
    return lambda **kw: make_backend(corpus, indexes, encoder, settings, **kw)


@pytest.fixture(scope="session")
def settings_factory():  # type: ignore[no-untyped-def]
    """``factory(**changes)`` -> the project's serving settings with some keys changed."""
    return serving_settings


@pytest.fixture(scope="session")
def encoder_factory():  # type: ignore[no-untyped-def]
    """``factory(query_task=..., dim=...)`` -> a HashEncoder."""
    return HashEncoder


@pytest.fixture(scope="session")
def settings() -> ServingSettings:
    # a generous wait so that concurrent test requests reliably share a batch
    return serving_settings(
        limits={"max_queries": 8, "max_topk": 10, "max_query_chars": 64, "max_body_bytes": 4096},
        batcher={"max_batch": 64, "max_wait_ms": 30},
    )


@pytest.fixture(scope="session")
def backend(corpus, indexes, encoder, settings) -> SearchBackend:  # type: ignore[no-untyped-def]
    return make_backend(corpus, indexes, encoder, settings)


@pytest.fixture(scope="session")
def server(backend: SearchBackend, settings: ServingSettings) -> Iterator[ServerThread]:
    """The real server (uvicorn, random free port, background thread), no auth."""
    with ServerThread(create_app(backend, settings)) as running:
        yield running


@pytest.fixture(scope="session")
def token_server(backend: SearchBackend, settings: ServingSettings) -> Iterator[ServerThread]:
    """The real server with a bearer token."""
    with ServerThread(create_app(backend, settings, token=TOKEN)) as running:
        yield running
