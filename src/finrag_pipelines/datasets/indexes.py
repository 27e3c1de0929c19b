"""Datasets for index folders (BM25, FAISS) whose ``meta.json`` is validated on load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset


class _IndexFolderDataset(AbstractDataset):
    """An index folder; ``mmap: true`` loads it memory-mapped (instant, pages read on demand and shared
    between processes; :meth:`save` swaps the whole folder by rename, so a mapped reader is never cut)."""

    def _index_cls(self) -> Any:
        raise NotImplementedError

    def __init__(self, path: str, mmap: bool = False) -> None:
        self._path = PurePosixPath(path)
        self._mmap = bool(mmap)

    def load(self) -> Any:
        meta = Path(self._path) / "meta.json"
        if meta.is_file():  # an optional index recorded as not built (e.g. no fine-tuned model yet)
            from finrag_pipelines.retrieval.types import Unavailable

            try:
                stand_in = Unavailable.from_meta(json.loads(meta.read_text(encoding="utf-8")))
            except (ValueError, AttributeError):
                stand_in = None  # the index class reports a broken meta.json with its own message
            if stand_in is not None:
                return stand_in
        return self._index_cls().load(Path(self._path), mmap=self._mmap)

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
    """A :class:`~finrag_pipelines.retrieval.bm25.index.BM25Index` folder (bm25s files, tokenizer, meta)."""

    def _index_cls(self) -> Any:
        from finrag_pipelines.retrieval.bm25.index import BM25Index

        return BM25Index


class FaissIndexDataset(_IndexFolderDataset):
    """A :class:`~finrag_pipelines.retrieval.dense.DenseIndex` folder (index.faiss, doc_ids.json, meta.json)."""

    def _index_cls(self) -> Any:
        from finrag_pipelines.retrieval.dense import DenseIndex  # imports faiss only when used

        return DenseIndex
