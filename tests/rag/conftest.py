"""Fixtures: a BM25 search backend over the bundled DISC-FinLLM corpus and the project's rag settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.pipelines.index_build.nodes import build_bm25_index
from finrag_pipelines.pipelines.index_build.params import BM25Params, LuceneParams
from finrag_pipelines.rag.factory import PROMPT_NAMES, PromptSet
from finrag_pipelines.rag.settings import AnswerSettings, ExtractiveSettings
from finrag_pipelines.retrieval.types import Unavailable
from finrag_pipelines.serving.backend import SearchBackend

ROOT = Path(__file__).resolve().parents[2]
CONF = yaml.safe_load((ROOT / "conf/base/parameters_rag_answer.yml").read_text(encoding="utf-8"))[
    "rag_answer"
]
N_DOCS = 60


def conf_settings(**changes: Any) -> AnswerSettings:
    """The base conf's answer settings with some keys changed."""
    return AnswerSettings(**{**CONF["answer"], **changes})


def extractive_settings() -> ExtractiveSettings:
    return ExtractiveSettings(**CONF["extractive"])


def prompts() -> PromptSet:
    return PromptSet.from_mappings(
        {
            name: yaml.safe_load((ROOT / f"conf/base/prompts/rag_{name}.yml").read_text(encoding="utf-8"))
            for name in PROMPT_NAMES
        }
    )


def tool_config() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "conf/base/verl/search_tool.yaml").read_text(encoding="utf-8"))


def llm_config(base_url: str = "http://127.0.0.1:9/v1", **changes: Any) -> LLMConfig:
    base = yaml.safe_load((ROOT / "conf/base/parameters.yml").read_text(encoding="utf-8"))["llm"]
    fast = {
        "backend": "openai",
        "base_url": base_url,
        "model": "stub-qwen",
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "max_retries": 1,
        "timeout_s": 5,
        "max_concurrency": 8,
    }
    return LLMConfig.from_mapping({**base, **fast, **changes})


@pytest.fixture(scope="session")
def small_corpus(disc_corpus) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "doc_id": [d for d, _ in disc_corpus[:N_DOCS]],
            "title": "",
            "text": [t for _, t in disc_corpus[:N_DOCS]],
        }
    )


@pytest.fixture(scope="session")
def bm25(small_corpus):
    params = yaml.safe_load((ROOT / "conf/base/parameters_index_build.yml").read_text(encoding="utf-8"))
    conf = params["index_build"]
    return build_bm25_index(small_corpus, BM25Params(**conf["bm25"]), LuceneParams(**conf["lucene"]))


@pytest.fixture(scope="session")
def backend(small_corpus, bm25) -> SearchBackend:
    return SearchBackend(
        doc_ids=list(small_corpus["doc_id"]),
        titles=list(small_corpus["title"]),
        texts=list(small_corpus["text"]),
        bm25=bm25,
        dense=None,
        encoder=None,
        default_method="bm25",
        alpha=0.5,
        alpha_source="test",
        fusion_depth=20,
        encode_batch_size=8,
    )


@pytest.fixture
def no_dense() -> Unavailable:
    return Unavailable(what="dense index", reason="not built in this test")
