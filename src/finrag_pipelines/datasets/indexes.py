"""Datasets for index folders (BM25, FAISS) whose ``meta.json`` is validated on load.

``versioned: true`` (conf/base): each run's index goes to ``<path>/<version>/<name>`` and a load reads the
newest one (or the one ``--load-versions`` pins); see :mod:`finrag_pipelines.datasets.versioned`.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from kedro.io import DatasetError
from kedro.io.core import Version

from finrag_pipelines.datasets.versioned import VersionedFolderDataset


class _IndexFolderDataset(VersionedFolderDataset):
    """An index folder; ``mmap: true`` loads it memory-mapped (instant, pages read on demand and shared
    between processes; a save writes a new folder and renames it into place, so a mapped reader is never cut).
    An index class whose ``load`` has no ``mmap`` option (Lucene, which reads its files from disk itself)
    is opened as it is."""

    _marker = "meta.json"

    def _index_cls(self, meta: dict[str, Any] | None) -> Any:
        """The index class that reads a folder whose ``meta.json`` holds ``meta`` (``None``: unreadable)."""
        raise NotImplementedError

    def __init__(
        self,
        path: str,
        mmap: bool = False,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(path, version=version, metadata=metadata)
        self._mmap = bool(mmap)

    def _read(self, folder: Path) -> Any:
        meta_file = folder / "meta.json"
        meta = None
        if meta_file.is_file():  # an optional index recorded as not built (e.g. no fine-tuned model yet)
            from finrag_pipelines.retrieval.types import Unavailable

            try:
                meta = json.loads(meta_file.read_text(encoding="utf-8"))
                stand_in = Unavailable.from_meta(meta)
            except (ValueError, AttributeError):
                meta, stand_in = None, None  # the index class reports a broken meta.json with its own message
            if stand_in is not None:
                return stand_in
        index_cls = self._index_cls(meta if isinstance(meta, dict) else None)
        if self._mmap and "mmap" in inspect.signature(index_cls.load).parameters:
            return index_cls.load(folder, mmap=True)
        return index_cls.load(folder)

    def _write(self, data: Any, folder: Path) -> None:
        data.save(folder)

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "mmap": self._mmap}


class BM25IndexDataset(_IndexFolderDataset):
    """A BM25 index folder: :class:`~finrag_pipelines.retrieval.bm25.index.BM25Index` (bm25s files, tokenizer,
    meta), or :class:`~finrag_pipelines.retrieval.lucene.index.LuceneBM25Index` when ``meta.json`` says
    ``backend: lucene`` (a Lucene index, tokenizer, meta). Both are lexical indexes: callers do not choose."""

    def _index_cls(self, meta: dict[str, Any] | None) -> Any:
        if meta is not None and meta.get("backend") == "lucene":
            # imported here: Java starts only when a Lucene index is opened
            from finrag_pipelines.retrieval.lucene.index import LuceneBM25Index

            return LuceneBM25Index
        from finrag_pipelines.retrieval.bm25.index import BM25Index

        return BM25Index


class FaissIndexDataset(_IndexFolderDataset):
    """A :class:`~finrag_pipelines.retrieval.dense.DenseIndex` folder (index.faiss, doc_ids.json,
    meta.json)."""

    def _index_cls(self, meta: dict[str, Any] | None) -> Any:
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
