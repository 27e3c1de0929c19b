"""Datasets for index folders (BM25, FAISS) whose ``meta.json`` is validated on load."""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset


class _IndexFolderDataset(AbstractDataset):
    """An index folder; ``mmap: true`` loads it memory-mapped (instant, pages read on demand and shared
    between processes; :meth:`save` swaps the whole folder by rename, so a mapped reader is never cut).
    An index class whose ``load`` has no ``mmap`` option (Lucene, which reads its files from disk itself)
    is opened as it is."""

    def _index_cls(self, meta: dict[str, Any] | None) -> Any:
        """The index class that reads a folder whose ``meta.json`` holds ``meta`` (``None``: unreadable)."""
        raise NotImplementedError

    def __init__(self, path: str, mmap: bool = False) -> None:
        self._path = PurePosixPath(path)
        self._mmap = bool(mmap)

    def load(self) -> Any:
        meta_file = Path(self._path) / "meta.json"
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
            return index_cls.load(Path(self._path), mmap=True)
        return index_cls.load(Path(self._path))

    def save(self, data: Any) -> None:
        folder = Path(self._path)
        tmp = folder.with_name(folder.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        data.save(tmp)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)  # a crash mid-save never leaves a half-written index in place

    def _exists(self) -> bool:
        return (Path(self._path) / "meta.json").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "kind": type(self).__name__, "mmap": self._mmap}


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
