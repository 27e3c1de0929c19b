"""A dataset that loads a reranker (a local model folder) from its settings, lazily."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from finrag_pipelines.rerank.factory import KINDS, LazyReranker
from finrag_pipelines.retrieval.types import Unavailable


class RerankerDataset(AbstractDataset[None, "LazyReranker | Unavailable"]):
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
    """

    def __init__(
        self,
        reranker: dict[str, Any] | None,
        model_path: str | None = None,
        optional: bool = False,
        missing_hint: str = "put the reranker model there",
    ) -> None:
        self._config = dict(reranker) if reranker else None
        if self._config is not None and model_path is not None:
            self._config["model_path"] = model_path
        if self._config is not None and self._config.get("kind") not in KINDS:
            raise DatasetError(
                f"reranker settings need kind one of {list(KINDS)}, got {self._config.get('kind')!r}: "
                f"{self._config}"
            )
        self._optional = bool(optional)
        self._hint = missing_hint

    def load(self) -> LazyReranker | Unavailable:
        if self._config is None:
            return Unavailable(
                what="reranker",
                reason="no reranker configured (globals rerankers.base is null); set it to a model folder",
            )
        path = self._config.get("model_path")
        if not path:
            raise DatasetError(f"reranker settings have no model_path: {self._config}")
        if not (Path(path) / "config.json").is_file():
            if self._optional:
                return Unavailable(
                    what=f"reranker {path}", reason=f"model folder {path} has no config.json; {self._hint}"
                )
            raise DatasetError(f"reranker model folder {path} has no config.json; {self._hint}")
        return LazyReranker(self._config)

    def save(self, data: Any) -> None:
        raise DatasetError("RerankerDataset is read-only: models are produced by training pipelines")

    def _describe(self) -> dict[str, Any]:
        return {"reranker": self._config, "optional": self._optional}
