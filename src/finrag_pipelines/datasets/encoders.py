"""A dataset that loads an encoder (a local model directory or the offline USE model)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kedro.io import AbstractDataset, DatasetError

from finrag_pipelines.embedding.encoders import Encoder, build_encoder

if TYPE_CHECKING:
    from finrag_pipelines.embedding.store import EmbeddingStore


class EncoderDataset(AbstractDataset[None, Encoder]):
    """Loads an :class:`~finrag_pipelines.embedding.encoders.Encoder` from its config (read-only).

    Example::

        base_encoder:
          type: finrag_pipelines.datasets.EncoderDataset
          encoder: {kind: hf, model_path: pretrain_models/embedding/Qwen3-Embedding-0.6B, query_task: ...}
    """

    def __init__(self, encoder: dict[str, Any]) -> None:
        self._config = dict(encoder)

    def load(self) -> Encoder:
        return build_encoder(self._config)

    def save(self, data: Encoder) -> None:
        raise DatasetError("EncoderDataset is read-only: models are produced by training pipelines")

    def _describe(self) -> dict[str, Any]:
        return {"encoder": self._config}


class EmbeddingStoreDataset(AbstractDataset[None, "EmbeddingStore"]):
    """Opens the content-addressed embedding cache folder that lets encoding resume after a crash.

    Nodes receive the store as an injected client and write shards to it as they encode; the dataset
    itself is never saved to.
    """

    def __init__(self, path: str) -> None:
        self._path = path

    def load(self) -> "EmbeddingStore":
        from finrag_pipelines.embedding.store import EmbeddingStore

        return EmbeddingStore(self._path)

    def save(self, data: "EmbeddingStore") -> None:
        raise DatasetError("EmbeddingStoreDataset is written by the encoding nodes, not saved to")

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path}
