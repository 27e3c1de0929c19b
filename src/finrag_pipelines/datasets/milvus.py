"""Kedro datasets that keep the BM25 / dense indexes in Milvus instead of index folders.

Swapped in by configuration only (``conf/milvus/catalog.yml``): ``save`` takes the same object the
``index_build`` node returns (a :class:`~finrag_pipelines.retrieval.dense.DenseIndex` or
:class:`~finrag_pipelines.retrieval.bm25.index.BM25Index`, or an
:class:`~finrag_pipelines.retrieval.types.Unavailable` stand-in) and writes it to a collection; ``load``
returns a :class:`~finrag_pipelines.retrieval.milvus.dense.MilvusDenseIndex` (a ``VectorIndex``) /
:class:`~finrag_pipelines.retrieval.milvus.bm25.MilvusBM25Index` (a ``LexicalIndex``): the same search
interfaces (:mod:`finrag_pipelines.retrieval.interfaces`). The
``meta.json`` contract stays local at ``meta_path`` (the evaluation report and ``*_index_meta`` datasets
read it); the collection's own properties record what it was built from, and both are checked on load.

``versioned: true`` versions the local part (``meta.json`` and the BM25 tokenizer) like an index folder:
``<meta_path's folder>/<version>/<folder name>/meta.json``. The collection itself is one per dataset and is
rewritten by each build, so only a version whose ``meta.json`` matches the collection's properties can be
opened: an older version made from another corpus or encoder is refused by the same check, never searched.

Example::

    dense_index:
      type: finrag_pipelines.datasets.MilvusDenseIndexDataset
      uri: data/06_models/${_set}/milvus.db          # or http://host:19530
      collection: fintruthqa_dense_base
      meta_path: data/06_models/${_set}/milvus_dense_base/meta.json
      credentials: milvus                              # optional: {token: ...} or {user: ..., password: ...}
      index: {index_type: HNSW, params: {M: 32, efConstruction: 200}, search_params: {ef: 128}}
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import DatasetError
from kedro.io.core import Version

from finrag_pipelines.datasets.versioned import VersionedFolderDataset

_CREDENTIAL_KEYS = ("token", "user", "password", "db_name")


def _target(uri: str, collection: str, credentials: dict[str, Any] | None) -> Any:
    from finrag_pipelines.retrieval.milvus.connection import MilvusTarget

    creds = dict(credentials or {})
    unknown = sorted(set(creds) - set(_CREDENTIAL_KEYS))
    if unknown:
        raise DatasetError(
            f"milvus credentials: unknown keys {unknown}; use token, or user + password "
            "(and optionally db_name)."
        )
    return MilvusTarget(
        uri=uri, collection=collection, **{k: str(v) for k, v in creds.items() if v is not None}
    )


def _write_meta(path: Path, meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    tmp.write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)


class _MilvusIndexDataset(VersionedFolderDataset):
    _label = "index"

    def __init__(
        self,
        uri: str,
        collection: str,
        meta_path: str,
        credentials: dict[str, Any] | None = None,
        batch_size: int = 1000,
        index_timeout_s: float = 600.0,
        show_progress: bool = True,
        metadata: dict[str, Any] | None = None,
        version: Version | None = None,
    ) -> None:
        self._meta_path = PurePosixPath(meta_path)
        self._marker = self._meta_path.name  # a folder is complete once its meta.json is written (last)
        super().__init__(str(self._meta_path.parent), version, metadata)
        self._uri = uri
        self._collection = collection
        self._credentials = credentials
        self._batch_size = int(batch_size)
        self._index_timeout_s = float(index_timeout_s)
        self._show_progress = bool(show_progress)
        if self._batch_size < 1:
            raise DatasetError(f"batch_size must be >= 1, got {batch_size!r}.")
        self._target = _target(uri, collection, credentials)  # validates uri / collection now

    @property
    def _meta_file(self) -> Path:
        return self.folder() / self._marker

    def _read_meta(self) -> dict[str, Any]:
        from finrag_pipelines.retrieval.milvus.collection import REBUILD_HINT
        from finrag_pipelines.retrieval.types import IndexMismatchError

        if not self._meta_file.is_file():
            raise IndexMismatchError(
                f"{self._label} index meta {self._meta_file} for {self._target} does not exist; "
                f"{REBUILD_HINT}."
            )
        try:
            meta = json.loads(self._meta_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IndexMismatchError(f"{self._meta_file} is unreadable ({exc}); {REBUILD_HINT}.") from exc
        if not isinstance(meta, dict):
            raise IndexMismatchError(f"{self._meta_file} must hold a JSON object; {REBUILD_HINT}.")
        return meta

    def _stand_in(self, meta: dict[str, Any]) -> Any:
        from finrag_pipelines.retrieval.types import Unavailable

        return Unavailable.from_meta(meta)

    def _save_unavailable(self, data: Any, folder: Path) -> bool:
        from finrag_pipelines.retrieval.types import Unavailable

        if isinstance(data, Unavailable):
            _write_meta(folder / self._marker, data.to_meta())
            return True
        return False

    def _describe(self) -> dict[str, Any]:
        return {
            "uri": self._uri,
            "collection": self._collection,
            "meta_path": str(self._meta_path),
            "kind": type(self).__name__,
            "version": self._version,
        }


class MilvusDenseIndexDataset(_MilvusIndexDataset):
    """A dense index in a Milvus collection (FLOAT_VECTOR + FLAT/HNSW/IVF_FLAT, inner product).

    Args:
        uri: Local ``*.db`` file (Milvus Lite) or ``http(s)://host:port`` (server).
        collection: Collection name.
        meta_path: Where the ``meta.json`` contract is kept locally.
        credentials: Kedro credentials: ``{token: ...}`` or ``{user: ..., password: ...}`` (+ ``db_name``).
        index: ``{index_type, params, search_params}`` (see ``retrieval.milvus.dense.MilvusDenseConfig``).
        batch_size: Rows per insert request.
        index_timeout_s: How long ``save`` waits for the vector index to be built.
        show_progress: tqdm bar while inserting.
        metadata: Kedro dataset metadata.
    """

    _label = "dense"

    def __init__(
        self, uri: str, collection: str, meta_path: str, index: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(uri, collection, meta_path, **kwargs)
        from finrag_pipelines.retrieval.milvus.dense import MilvusDenseConfig

        try:
            self._config = MilvusDenseConfig(**(index or {}))
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"milvus dense dataset {collection!r}: bad 'index' settings ({exc}).") from exc

    def _read(self, folder: Path) -> Any:
        from finrag_pipelines.retrieval.milvus.dense import MilvusDenseIndex

        meta = self._read_meta()
        stand_in = self._stand_in(meta)
        if stand_in is not None:
            return stand_in
        return MilvusDenseIndex.open(self._target, meta)

    def _write(self, data: Any, folder: Path) -> None:
        from finrag_pipelines.retrieval.milvus.dense import MilvusDenseIndex

        if self._save_unavailable(data, folder):
            return
        written = MilvusDenseIndex.write(
            data,
            self._target,
            self._config,
            batch_size=self._batch_size,
            index_timeout_s=self._index_timeout_s,
            show_progress=self._show_progress,
        )
        _write_meta(folder / self._marker, written.meta)  # last: a meta.json means a complete collection


class MilvusBM25IndexDataset(_MilvusIndexDataset):
    """A BM25 index in a Milvus collection (BM25 function over space-joined jieba tokens).

    The index's tokenizer is saved next to ``meta_path`` (``tokenizer/``) and used for queries.

    Args:
        uri: Local ``*.db`` file (Milvus Lite) or ``http(s)://host:port`` (server).
        collection: Collection name.
        meta_path: Where the ``meta.json`` contract is kept locally.
        credentials: Kedro credentials: ``{token: ...}`` or ``{user: ..., password: ...}`` (+ ``db_name``).
        index: ``{inverted_index_algo, k1, b}`` (see ``retrieval.milvus.bm25.MilvusBM25Config``; k1/b
            default to the bm25s index's).
        batch_size: Rows per insert request.
        index_timeout_s: How long ``save`` waits for the sparse index to be built.
        show_progress: tqdm bar while inserting.
        metadata: Kedro dataset metadata.
    """

    _label = "BM25"

    def __init__(
        self, uri: str, collection: str, meta_path: str, index: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(uri, collection, meta_path, **kwargs)
        from finrag_pipelines.retrieval.milvus.bm25 import MilvusBM25Config

        try:
            self._config = MilvusBM25Config(**(index or {}))
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"milvus BM25 dataset {collection!r}: bad 'index' settings ({exc}).") from exc

    def _read(self, folder: Path) -> Any:
        from finrag_pipelines.retrieval.milvus.bm25 import MilvusBM25Index
        from finrag_pipelines.retrieval.milvus.collection import REBUILD_HINT
        from finrag_pipelines.retrieval.types import IndexMismatchError
        from finrag_pipelines.text.dictionaries import TokenizerConfigError
        from finrag_pipelines.text.tokenize import FinanceTokenizer

        meta = self._read_meta()
        stand_in = self._stand_in(meta)
        if stand_in is not None:
            return stand_in
        try:
            tokenizer = FinanceTokenizer.load(folder / "tokenizer")
        except (TokenizerConfigError, OSError) as exc:
            raise IndexMismatchError(
                f"BM25 index {self._target}: its tokenizer in {folder / 'tokenizer'} cannot be restored "
                f"({exc}); "
                f"{REBUILD_HINT}."
            ) from exc
        return MilvusBM25Index.open(self._target, meta, tokenizer)

    def _write(self, data: Any, folder: Path) -> None:
        from finrag_pipelines.retrieval.bm25.index import BM25Index
        from finrag_pipelines.retrieval.milvus.bm25 import MilvusBM25Index

        if self._save_unavailable(data, folder):
            return
        if not isinstance(data, BM25Index):
            raise DatasetError(
                f"milvus BM25 dataset {self._collection!r} writes the bm25s index's tokens, got "
                f"{type(data).__name__}; "
                "set index_build.bm25.backend: bm25s for --env milvus (Milvus is the lexical backend there)."
            )
        written = MilvusBM25Index.write(
            data,
            self._target,
            self._config,
            batch_size=self._batch_size,
            index_timeout_s=self._index_timeout_s,
            show_progress=self._show_progress,
        )
        written.tokenizer.save(folder / "tokenizer")
        _write_meta(folder / self._marker, written.meta)  # last: a meta.json means a complete collection
