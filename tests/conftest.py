"""Session fixtures shared across test packages: the small DISC-FinLLM corpus and a tiny Qwen3 model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]
_DISC_CORPUS = _REPO / "data" / "01_raw" / "retrieval" / "disc_finllm" / "corpus.jsonl"


@pytest.fixture(scope="session")
def disc_corpus() -> list[tuple[str, str]]:
    """The bundled DISC-FinLLM retrieval corpus (139 docs) as ``(doc_id, text)`` pairs."""
    if not _DISC_CORPUS.is_file():
        pytest.fail(
            f"bundled test corpus {_DISC_CORPUS} is missing; restore data/01_raw/retrieval/disc_finllm."
        )
    docs: list[tuple[str, str]] = []
    with _DISC_CORPUS.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                docs.append((str(row["_id"]), row.get("text") or row.get("title") or ""))
    return docs


@pytest.fixture(scope="session")
def tiny_qwen3_dir(disc_corpus: list[tuple[str, str]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen3 embedding model (tokenizer trained on corpus lines), built once per session."""
    from finrag_pipelines.embedding.tiny_model import build_tiny_qwen3

    lines = [line.strip() for _, text in disc_corpus for line in text.splitlines() if line.strip()][:400]
    return build_tiny_qwen3(lines, tmp_path_factory.mktemp("tiny_qwen3") / "model")


def _corpus_lines(disc_corpus: list[tuple[str, str]], n: int = 400) -> list[str]:
    return [line.strip() for _, text in disc_corpus for line in text.splitlines() if line.strip()][:n]


@pytest.fixture(scope="session")
def tiny_qwen3_reranker_dir(
    disc_corpus: list[tuple[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A tiny random Qwen3-Reranker-style causal LM (``yes``/``no`` single tokens), built once per session."""
    from finrag_pipelines.rerank.tiny_models import build_tiny_qwen3_reranker

    folder = tmp_path_factory.mktemp("tiny_qwen3_rr") / "model"
    return build_tiny_qwen3_reranker(_corpus_lines(disc_corpus), folder)


@pytest.fixture(scope="session")
def tiny_bert_reranker_dir(
    disc_corpus: list[tuple[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A tiny random BERT cross-encoder (one label), built once per session."""
    from finrag_pipelines.rerank.tiny_models import build_tiny_bert_cross_encoder

    folder = tmp_path_factory.mktemp("tiny_bert_rr") / "model"
    return build_tiny_bert_cross_encoder(_corpus_lines(disc_corpus), folder)


@pytest.fixture(scope="session")
def lucene_java() -> object:
    """The Lucene backend's Java classes (the JVM starts once per test session, ~3-8 s).

    Skipped only where Java cannot start; a missing ``lucene`` extra fails, so CI (which installs it) runs
    these.
    """
    from finrag_pipelines.retrieval.lucene.runtime import LuceneUnavailableError, java

    try:
        return java()
    except LuceneUnavailableError as exc:
        if exc.kind == "java":
            pytest.skip(f"Java cannot start on this machine: {exc}")
        pytest.fail(f"{exc} (make install puts it in .venv)")
