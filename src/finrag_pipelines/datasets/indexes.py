"""Datasets for index folders (BM25, FAISS) whose ``meta.json`` is validated on load.

``versioned: true`` (conf/base): each run's index goes to ``<path>/<version>/<name>`` and a load reads the
newest one (or the one ``--load-versions`` pins); see :mod:`finrag_pipelines.datasets.versioned`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kedro.io import DatasetError

from finrag_pipelines.datasets.versioned import VersionedFolderDataset


class _IndexFolderDataset(VersionedFolderDataset):
    _marker = "meta.json"

    def _index_cls(self) -> Any:
        raise NotImplementedError

    def _read(self, folder: Path) -> Any:
        meta = folder / "meta.json"
        if meta.is_file():  # an optional index recorded as not built (e.g. no fine-tuned model yet)
            from finrag_pipelines.retrieval.types import Unavailable

            try:
                stand_in = Unavailable.from_meta(json.loads(meta.read_text(encoding="utf-8")))
            except (ValueError, AttributeError):
                stand_in = None  # the index class reports a broken meta.json with its own message
            if stand_in is not None:
                return stand_in
        return self._index_cls().load(folder)

    def _write(self, data: Any, folder: Path) -> None:
        data.save(folder)


class BM25IndexDataset(_IndexFolderDataset):
    """A :class:`~finrag_pipelines.retrieval.bm25.index.BM25Index` folder (bm25s files, tokenizer, meta)."""

    def _index_cls(self) -> Any:
        from finrag_pipelines.retrieval.bm25.index import BM25Index

        return BM25Index


class FaissIndexDataset(_IndexFolderDataset):
    """A :class:`~finrag_pipelines.retrieval.dense.DenseIndex` folder (index.faiss, doc_ids.json, meta.json)."""

    def _index_cls(self) -> Any:
        from finrag_pipelines.retrieval.dense import DenseIndex  # imports faiss only when used

        return DenseIndex


class IndexMetaDataset(VersionedFolderDataset):
    """The ``meta.json`` of an index folder, read without loading the index (read-only).

    ``path`` is the index dataset's own path (and ``versioned`` its setting): the same version is read,
    and a ``--load-versions`` pin of the index applies to this view too (``catalog.py``).
    """

    _marker = "meta.json"

    def folder(self) -> Path:
        if self._version and not self._version.load:
            # a view of an index the same run may have just rebuilt: the newest version now, not the one an
            # earlier existence check saw
            self._clear_version_cache()
        return super().folder()

    def _read(self, folder: Path) -> dict[str, Any]:
        meta = folder / "meta.json"
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(
                f"{meta} is not readable JSON ({exc}); rebuild the index with index_build"
            ) from exc
        if not isinstance(data, dict):
            raise DatasetError(f"{meta} must hold a JSON object; rebuild the index with index_build")
        return data

    def save(self, data: Any) -> None:
        raise DatasetError(f"{self.root}: meta.json is written with its index (index_build), not on its own")
