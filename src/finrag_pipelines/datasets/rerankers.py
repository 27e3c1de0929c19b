"""A dataset that loads a reranker (a local model folder) from its settings, lazily."""

from __future__ import annotations

from typing import Any

from kedro.io import DatasetError
from kedro.io.core import Version, VersionNotFoundError

from finrag_pipelines.datasets.versioned import VersionedFolderDataset
from finrag_pipelines.rerank.factory import KINDS, LazyReranker
from finrag_pipelines.retrieval.types import Unavailable


class RerankerDataset(VersionedFolderDataset):
    """Loads a reranker from its settings (read-only); the model itself is built on first use.

    Example::

        reranker:
          type: finrag_pipelines.datasets.RerankerDataset
          reranker: ${globals:rerankers.base}   # {kind: qwen3 | cross_encoder, model_path: ...} or null

    Args:
        reranker: The reranker's settings, or ``None`` when none is configured (then ``load`` returns an
            :class:`~finrag_pipelines.retrieval.types.Unavailable` saying so).
        model_path: Overrides ``reranker.model_path``.
        optional: When the model folder has no ``config.json`` yet (a model a pipeline produces, or one not
            copied to this machine), ``load`` returns an ``Unavailable`` with the reason instead of failing.
        missing_hint: What to do about a missing folder, for that reason.
        version: ``versioned: true`` (a reranker a pipeline saves with versions,
            ``reranker_finetuned@reranker``): ``model_path`` is the root of the versions and the newest (or
            the pinned) one is loaded.
        metadata: Kedro dataset metadata.
    """

    _marker = "config.json"

    def __init__(
        self,
        reranker: dict[str, Any] | None,
        model_path: str | None = None,
        optional: bool = False,
        missing_hint: str = "put the reranker model there",
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._config = dict(reranker) if reranker else None
        if self._config is not None and model_path is not None:
            self._config["model_path"] = model_path
        if self._config is not None and self._config.get("kind") not in KINDS:
            raise DatasetError(
                f"reranker settings need kind one of {list(KINDS)}, got {self._config.get('kind')!r}: "
                f"{self._config}"
            )
        path = (self._config or {}).get("model_path")
        if version is not None and not path:
            raise DatasetError(
                f"RerankerDataset: `versioned: true` needs settings with a model_path, got {reranker}"
            )
        super().__init__(str(path or "."), version, metadata)
        self._optional = bool(optional)
        self._hint = missing_hint

    @property
    def optional(self) -> bool:
        """Whether a model folder that does not exist yet loads as ``Unavailable`` (runs need not have it)."""
        return self._optional

    def load(self) -> LazyReranker | Unavailable:
        if self._config is None:
            return Unavailable(
                what="reranker",
                reason="no reranker configured (globals rerankers.base is null); set it to a model folder",
            )
        path = self._config.get("model_path")
        if not path:
            raise DatasetError(f"reranker settings have no model_path: {self._config}")
        try:
            folder = self.folder()
        except VersionNotFoundError:
            folder = None
        if folder is None or not (folder / "config.json").is_file():
            where = f"no version of {path} exists yet"
            if folder is not None:
                where = f"model folder {folder} has no config.json"
            if self._optional:
                return Unavailable(what=f"reranker {path}", reason=f"{where}; {self._hint}")
            raise DatasetError(f"reranker {where}; {self._hint}")
        return LazyReranker({**self._config, "model_path": str(folder)})

    def save(self, data: Any) -> None:
        raise DatasetError("RerankerDataset is read-only: models are produced by training pipelines")

    def _exists(self) -> bool:
        # unversioned (or none configured): a missing folder is reported by load
        return not self.is_versioned or super()._exists()

    def _describe(self) -> dict[str, Any]:
        return {"reranker": self._config, "optional": self._optional, "version": self._version}
