"""Build a reranker from a plain dict (e.g. a Kedro parameters block): ``kind`` picks the class.

Kedro-free library module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from finrag_pipelines.rerank.interfaces import Reranker

_COMMON = {"kind", "model_path", "max_length", "batch_size", "dtype", "device", "name", "progress"}
_KEYS = {"qwen3": _COMMON | {"instruction"}, "cross_encoder": _COMMON}
KINDS = tuple(_KEYS)


def build_reranker(config: Mapping[str, Any]) -> Reranker:
    """Build a reranker from its settings.

    Examples::

        {"kind": "qwen3", "model_path": "pretrain_models/reranker/Qwen3-Reranker-0.6B",
         "instruction": "Given a financial question, judge whether the document answers it",
         "max_length": 1024, "batch_size": 8, "dtype": "auto", "device": "auto"}
        {"kind": "cross_encoder", "model_path": "pretrain_models/reranker/bge-reranker-v2-m3",
         "max_length": 512, "batch_size": 32, "dtype": "auto", "device": "auto"}

    Args:
        config: Settings; ``kind`` picks the reranker (``qwen3`` | ``cross_encoder``), the other keys are its
            constructor arguments.

    Returns:
        A :class:`~.causal_lm.CausalLMReranker` or a :class:`~.cross_encoder.CrossEncoderReranker`.

    Raises:
        TypeError: If ``config`` is not a mapping.
        ValueError: On a missing or unknown ``kind``, an unknown key, or a missing ``model_path``.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"reranker config must be a mapping, got {type(config).__name__}: {config!r:.80}.")
    kind = config.get("kind")
    allowed = _KEYS.get(str(kind))
    if allowed is None:
        raise ValueError(f"reranker config key 'kind' is {kind!r}; use one of {list(KINDS)}.")
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(
            f"reranker config (kind {kind!r}) has unknown key(s) {unknown}; allowed keys: {sorted(allowed)}."
        )
    kwargs = {key: value for key, value in config.items() if key != "kind"}
    model_path = kwargs.pop("model_path", None)
    if not model_path:
        raise ValueError(f"reranker config (kind {kind!r}) is missing the required key 'model_path'.")
    if kind == "qwen3":
        from finrag_pipelines.rerank.causal_lm import CausalLMReranker

        return CausalLMReranker(os.fspath(model_path), **kwargs)
    from finrag_pipelines.rerank.cross_encoder import CrossEncoderReranker

    return CrossEncoderReranker(os.fspath(model_path), **kwargs)


class LazyReranker:
    """A reranker built on first use: a pipeline that may not rerank (a retriever not listed, a filter turned
    off) loads no model. ``name`` comes from the settings; everything else builds the model.

    Args:
        config: The :func:`build_reranker` settings.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._config = dict(config)
        self._built: Reranker | None = None

    @property
    def config(self) -> dict[str, Any]:
        """The settings it builds from."""
        return dict(self._config)

    @property
    def name(self) -> str:
        """``name`` from the settings, else the model folder's name."""
        return str(
            self._config.get("name") or os.path.basename(os.path.normpath(str(self._config["model_path"])))
        )

    def get(self) -> Reranker:
        """The reranker, built now if it was not yet."""
        if self._built is None:
            self._built = build_reranker(self._config)
        return self._built

    @property
    def fingerprint(self) -> str:
        """The built reranker's fingerprint."""
        return self.get().fingerprint

    def describe(self) -> dict[str, Any]:
        """The built reranker's description."""
        return self.get().describe()

    def score_pairs(self, queries: Any, passages: Any) -> Any:
        """The built reranker's scores."""
        return self.get().score_pairs(queries, passages)
