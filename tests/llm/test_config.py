"""LLMConfig validation, sampling() and API key resolution."""

from __future__ import annotations

from typing import Any

import pytest

from finrag_pipelines.llm.config import API_KEY_ENV, LLMConfig, LLMConfigError, resolve_api_key

YAML_BLOCK: dict[str, Any] = {
    "backend": "openai",
    "base_url": "http://127.0.0.1:30000/v1",
    "model": "qwen3",
    "max_concurrency": 32,
    "timeout_s": 60,
    "max_retries": 5,
    "temperature": 0.1,
    "max_tokens": 512,
    "extra_body": {"chat_template_kwargs": {"enable_thinking": False}},
    "backoff_base_s": 1.0,
    "backoff_max_s": 30.0,
    "max_failure_rate": 0.05,
    "max_invalid_retries": 2,
}


def test_from_mapping_reads_the_yaml_block() -> None:
    config = LLMConfig.from_mapping(YAML_BLOCK)
    assert config.model == "qwen3"
    assert config.timeout_s == 60.0 and isinstance(config.timeout_s, float)
    assert config.sampling() == {
        "temperature": 0.1,
        "max_tokens": 512,
        "extra_body": {"chat_template_kwargs": {"enable_thinking": False}},
    }


def test_sampling_and_extra_body_are_copies() -> None:
    source = {**YAML_BLOCK, "extra_body": {"chat_template_kwargs": {"enable_thinking": False}}}
    config = LLMConfig.from_mapping(source)
    source["extra_body"]["chat_template_kwargs"]["enable_thinking"] = True
    config.sampling()["extra_body"]["chat_template_kwargs"]["enable_thinking"] = True
    assert config.extra_body == {"chat_template_kwargs": {"enable_thinking": False}}


def test_unknown_keys_are_named() -> None:
    with pytest.raises(LLMConfigError, match=r"unknown llm parameter\(s\) \['max_concurency'\]"):
        LLMConfig.from_mapping({**YAML_BLOCK, "max_concurency": 8})


def test_missing_keys_are_named() -> None:
    data = {k: v for k, v in YAML_BLOCK.items() if k not in ("model", "max_retries")}
    with pytest.raises(LLMConfigError, match=r"missing llm parameter\(s\) \['max_retries', 'model'\]"):
        LLMConfig.from_mapping(data)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("backend", "vllm", "llm.backend must be one of"),
        ("base_url", None, "llm.base_url must be an http"),
        ("base_url", "127.0.0.1:30000", "llm.base_url must be an http"),
        ("model", "", "llm.model"),
        ("max_concurrency", 0, "llm.max_concurrency must be an integer >= 1"),
        ("max_concurrency", 2.5, "llm.max_concurrency"),
        ("max_retries", -1, "llm.max_retries"),
        ("max_retries", True, "llm.max_retries"),
        ("timeout_s", 0, "llm.timeout_s must be a number > 0"),
        ("temperature", 3, "llm.temperature"),
        ("max_tokens", 0, "llm.max_tokens"),
        ("max_failure_rate", 5, "llm.max_failure_rate is a share"),
        ("backoff_max_s", 0.5, "llm.backoff_max_s"),
        ("extra_body", ["x"], "llm.extra_body must be a mapping"),
        ("extra_body", {"x": object()}, "llm.extra_body must hold only JSON"),
        ("max_invalid_retries", "2", "llm.max_invalid_retries"),
    ],
)
def test_bad_values_name_the_field(field: str, value: Any, message: str) -> None:
    with pytest.raises(LLMConfigError, match=message):
        LLMConfig.from_mapping({**YAML_BLOCK, field: value})


def test_keyword_backend_needs_no_url() -> None:
    config = LLMConfig.from_mapping({**YAML_BLOCK, "backend": "keyword", "base_url": None})
    assert config.base_url is None


def test_resolve_api_key_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert resolve_api_key({"api_key": "sk-credentials"}) == "sk-credentials"
    assert resolve_api_key({"api_key": ""}) == "from-env"
    assert resolve_api_key(None) == "from-env"
    monkeypatch.delenv(API_KEY_ENV)
    assert resolve_api_key({"api_key": "  "}) == "EMPTY"
    assert resolve_api_key({}) == "EMPTY"
    with pytest.raises(LLMConfigError, match="api_key must be a string"):
        resolve_api_key({"api_key": 123})
