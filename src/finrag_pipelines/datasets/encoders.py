"""A dataset that loads an encoder (a local model directory or the offline USE model)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro.io import AbstractDataset, DatasetError

from finrag_pipelines.embedding.encoders import Encoder
from finrag_pipelines.embedding.factory import build_encoder
from finrag_pipelines.retrieval.types import Unavailable

if TYPE_CHECKING:
    from finrag_pipelines.embedding.store import EmbeddingStore


class EncoderDataset(AbstractDataset[None, "Encoder | Unavailable"]):
    """Loads an :class:`~finrag_pipelines.embedding.encoders.Encoder` from its config (read-only).

    Example::

        base_encoder:
          type: finrag_pipelines.datasets.EncoderDataset
          encoder: {kind: hf, model_path: pretrain_models/embedding/Qwen3-Embedding-0.6B, query_task: ...}

    Args:
        encoder: The encoder's settings (``kind`` and its keys), usually ``${globals:encoders.<name>}``.
        model_path: Overrides ``encoder.model_path`` (the same settings over another model folder, e.g. the
            checkpoint a fine-tune started from).
        optional: For a model a pipeline produces (``finetuned_model@encoder``): when its folder has no
            ``config.json`` yet, ``load`` returns an :class:`~finrag_pipelines.retrieval.types.Unavailable`
            with the reason, and the retrievers built on it are reported as not evaluated instead of failing
            the run. Any other problem still raises.
    """

    def __init__(self, encoder: dict[str, Any], model_path: str | None = None, optional: bool = False) -> None:
        self._config = dict(encoder)
        if model_path is not None:
            self._config["model_path"] = model_path
        self._optional = bool(optional)

    @property
    def optional(self) -> bool:
        """Whether a model folder that does not exist yet loads as ``Unavailable`` (a run does not need it)."""
        return self._optional

    def load(self) -> Encoder | Unavailable:
        path = self._config.get("model_path")
        if self._optional and self._config.get("kind") == "hf" and path and not (Path(path) / "config.json").is_file():
            return Unavailable(
                what=f"encoder {path}",
                reason=f"model folder {path} has no config.json yet; run `kedro run --pipelines embedding_finetune`",
            )
        return build_encoder(self._config)

    def save(self, data: Encoder) -> None:
        raise DatasetError("EncoderDataset is read-only: models are produced by training pipelines")

    def _describe(self) -> dict[str, Any]:
        return {"encoder": self._config, "optional": self._optional}


class EmbeddingStoreDataset(AbstractDataset[None, "EmbeddingStore"]):
    """Opens the content-addressed embedding cache folder that lets encoding resume after a crash.

    Nodes receive the store as an injected client and write shards to it as they encode; the dataset
    itself is never saved to.
    """

    def __init__(self, path: str) -> None:
        self._path = path

    def load(self) -> EmbeddingStore:
        from finrag_pipelines.embedding.store import EmbeddingStore

        return EmbeddingStore(self._path)

    def save(self, data: EmbeddingStore) -> None:
        raise DatasetError("EmbeddingStoreDataset is written by the encoding nodes, not saved to")

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path}
