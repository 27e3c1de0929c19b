"""Settings of the LLM layer: endpoint, sampling, concurrency, retries, failure ceiling, API key.

Every value comes from YAML (``params:llm`` of a pipeline); this module only checks them, so a typo
or a wrong type fails when the run starts, with the field named, instead of after an hour of calls.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from finrag_pipelines.errors import ConfigurationError

logger = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("openai", "keyword")
"""``openai``: any OpenAI-compatible chat-completions server (sglang, vLLM, a hosted API).
``keyword``: an offline, deterministic baseline that never calls an LLM (the pipeline implements it)."""

SERVERS: tuple[str, ...] = ("external", "managed")
"""``external``: ``base_url`` is a server someone runs. ``managed``: the run starts one (``llm_server`` in
conf, :mod:`finrag_pipelines.llm.managed_server`) and points ``base_url`` at it."""

API_KEY_ENV = "FINRAG_LLM_API_KEY"
"""Environment variable read by :func:`resolve_api_key` when the credentials hold no key."""


class LLMConfigError(ConfigurationError):
    """An ``llm`` setting is missing, unknown or out of range, or does not suit the pipeline that uses it."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, kw_only=True)
class LLMConfig:
    """How to reach the LLM and how hard to push it.

    Attributes:
        backend: ``"openai"`` (an OpenAI-compatible HTTP endpoint) or ``"keyword"`` (offline baseline,
            no endpoint needed).
        base_url: The endpoint root including ``/v1``, e.g. ``http://127.0.0.1:30000/v1``; required
            for the ``openai`` backend.
        model: Model name sent with every request (sglang serves whatever name it was started with).
        max_concurrency: Requests in flight at once; set it near the server's batch capacity.
        timeout_s: Seconds one HTTP attempt may take before it counts as a timeout.
        max_retries: Retries after the first attempt on 429, 5xx, timeouts and connection errors.
        temperature: Sampling temperature.
        max_tokens: Completion token cap, or ``None`` for the server's default.
        extra_body: Extra JSON fields merged into each request body, e.g.
            ``{"chat_template_kwargs": {"enable_thinking": False}}`` for Qwen3 on sglang.
        backoff_base_s: First retry waits up to this long (exponential backoff with full jitter).
        backoff_max_s: Cap on one backoff wait, also on a server's ``Retry-After``.
        max_failure_rate: Share of failed or quarantined requests above which a stage fails.
        max_invalid_retries: Extra generations asked for when a response fails validation.
        server: ``"external"`` (``base_url`` is running already) or ``"managed"`` (the run starts the server
            described by ``llm_server`` and routes ``base_url`` to it; see :data:`SERVERS`).
    """

    backend: str
    model: str
    max_concurrency: int
    timeout_s: float
    max_retries: int
    temperature: float
    backoff_base_s: float
    backoff_max_s: float
    max_failure_rate: float
    max_invalid_retries: int
    base_url: str | None = None
    max_tokens: int | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)
    server: str = "external"

    def __post_init__(self) -> None:
        """Check every field; coerce YAML ints to floats where a float is meant.

        Raises:
            LLMConfigError: Naming the first bad field, its value and what is expected.
        """
        if self.backend not in BACKENDS:
            raise LLMConfigError(f"llm.backend must be one of {list(BACKENDS)}, got {self.backend!r}.")
        if self.server not in SERVERS:
            raise LLMConfigError(f"llm.server must be one of {list(SERVERS)}, got {self.server!r}.")
        if self.backend == "openai":
            if not isinstance(self.base_url, str) or not self.base_url.startswith(("http://", "https://")):
                raise LLMConfigError(
                    f"llm.base_url must be an http(s) URL such as 'http://127.0.0.1:30000/v1' when "
                    f"llm.backend is 'openai', got {self.base_url!r}."
                )
        elif self.base_url is not None and not isinstance(self.base_url, str):
            raise LLMConfigError(f"llm.base_url must be a string or null, got {self.base_url!r}.")
        if not isinstance(self.model, str) or not self.model.strip():
            raise LLMConfigError(f"llm.model must be a non-empty string, got {self.model!r}.")
        for name, minimum in (("max_concurrency", 1), ("max_retries", 0), ("max_invalid_retries", 0)):
            value = getattr(self, name)
            if not _is_int(value) or value < minimum:
                raise LLMConfigError(f"llm.{name} must be an integer >= {minimum}, got {value!r}.")
        if self.max_tokens is not None and (not _is_int(self.max_tokens) or self.max_tokens < 1):
            raise LLMConfigError(
                f"llm.max_tokens must be a positive integer or null, got {self.max_tokens!r}."
            )
        floats = {
            "timeout_s": (0.0, False),
            "temperature": (0.0, True),
            "backoff_base_s": (0.0, True),
            "backoff_max_s": (0.0, True),
            "max_failure_rate": (0.0, True),
        }
        for name, (minimum, inclusive) in floats.items():
            value = getattr(self, name)
            ok = _is_number(value) and (value >= minimum if inclusive else value > minimum)
            if not ok:
                bound = f">= {minimum}" if inclusive else f"> {minimum}"
                raise LLMConfigError(f"llm.{name} must be a number {bound}, got {value!r}.")
            object.__setattr__(self, name, float(value))
        if self.temperature > 2.0:
            raise LLMConfigError(f"llm.temperature must be between 0 and 2, got {self.temperature!r}.")
        if self.max_failure_rate > 1.0:
            raise LLMConfigError(
                f"llm.max_failure_rate is a share between 0 and 1 (0.05 = 5%), got {self.max_failure_rate!r}."
            )
        if self.backoff_max_s < self.backoff_base_s:
            raise LLMConfigError(
                f"llm.backoff_max_s ({self.backoff_max_s}) must be >= llm.backoff_base_s "
                f"({self.backoff_base_s})."
            )
        if not isinstance(self.extra_body, Mapping):
            raise LLMConfigError(
                f"llm.extra_body must be a mapping such as "
                f"{{chat_template_kwargs: {{enable_thinking: false}}}}, got {self.extra_body!r}."
            )
        try:
            # A deep, JSON-only copy: it feeds cache keys, and callers must not mutate it behind our back.
            extra_body = json.loads(json.dumps(dict(self.extra_body), sort_keys=True))
        except (TypeError, ValueError) as exc:
            raise LLMConfigError(f"llm.extra_body must hold only JSON values: {exc}.") from exc
        object.__setattr__(self, "extra_body", extra_body)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> LLMConfig:
        """Build a config from a parameters mapping (the ``llm`` block of the YAML).

        Args:
            data: Keys named like the attributes of this class.

        Returns:
            The validated config.

        Raises:
            LLMConfigError: On unknown or missing keys (all of them named) or a bad value.
        """
        if not isinstance(data, Mapping):
            raise LLMConfigError(f"the llm parameters must be a mapping, got {type(data).__name__}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise LLMConfigError(
                f"unknown llm parameter(s) {unknown}; allowed keys are {sorted(known)}. Fix the spelling "
                f"in the llm block of the parameters YAML."
            )
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise LLMConfigError(
                f"missing llm parameter(s) {missing}; add them to the llm block of the YAML."
            )
        return cls(**{str(k): v for k, v in data.items()})

    def sampling(self) -> dict[str, Any]:
        """The parameters that change what the model writes, for cache keys.

        Returns:
            ``{"temperature", "max_tokens", "extra_body"}`` (a fresh dict; ``extra_body`` deep-copied).
        """
        return {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "extra_body": json.loads(json.dumps(self.extra_body)),
        }


def resolve_api_key(credentials: Mapping[str, Any] | None) -> str:
    """Pick the API key: the credentials entry, else ``$FINRAG_LLM_API_KEY``, else ``"EMPTY"``.

    Local servers (sglang, vLLM) accept any key but the ``openai`` client refuses an empty one, hence
    the ``"EMPTY"`` placeholder.

    Args:
        credentials: The ``llm`` credentials mapping (``{"api_key": ...}``) or ``None``.

    Returns:
        A non-empty key.

    Raises:
        LLMConfigError: If ``credentials`` is not a mapping or its ``api_key`` is not a string.
    """
    if credentials is not None:
        if not isinstance(credentials, Mapping):
            raise LLMConfigError(
                f"llm credentials must be a mapping like {{api_key: ...}}, got {type(credentials).__name__}."
            )
        key = credentials.get("api_key")
        if key is not None and not isinstance(key, str):
            raise LLMConfigError(f"llm credentials api_key must be a string, got {type(key).__name__}.")
        if key and key.strip():
            return key.strip()
    env_key = os.environ.get(API_KEY_ENV, "").strip()
    if env_key:
        return env_key
    logger.debug("no LLM API key in credentials or $%s; using the placeholder 'EMPTY'", API_KEY_ENV)
    return "EMPTY"
