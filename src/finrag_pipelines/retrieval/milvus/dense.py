"""A dense index in a Milvus collection: the FAISS index's vectors behind the same interface.

:class:`MilvusDenseIndex` implements :class:`~finrag_pipelines.retrieval.interfaces.VectorIndex`, like
:class:`~finrag_pipelines.retrieval.dense.DenseIndex`: ``meta``, ``doc_ids``, ``num_docs``, ``dim``,
``search_vectors(qvecs, k)`` and ``check_compatible`` (the same checks and messages, via
:func:`~finrag_pipelines.retrieval.dense.check_dense_compatible`), so
:class:`~finrag_pipelines.retrieval.dense.DenseRetriever` takes it unchanged. The metric is always inner
product, like the FAISS index.

Written with :meth:`MilvusDenseIndex.write` from the index ``index_build`` returns, idempotently (see
:mod:`~finrag_pipelines.retrieval.milvus.collection`). Kedro-free library module.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from finrag_pipelines.embedding.encoders import Encoder
from finrag_pipelines.retrieval.dense import DenseIndex, check_dense_compatible
from finrag_pipelines.retrieval.milvus.collection import (
    BACKEND,
    FORMAT_VERSION,
    ID_FIELD,
    MAX_TOPK,
    REBUILD_HINT,
    SEARCH_BATCH,
    batches,
    build_key,
    complete_collection,
    create_collection,
    fetch_doc_ids,
    hit_id,
    id_max_length,
    kept_meta,
    open_collection,
    prepare_collection,
    write_rows,
)
from finrag_pipelines.retrieval.milvus.connection import MilvusTarget, connect
from finrag_pipelines.retrieval.query_tokens import check_k
from finrag_pipelines.retrieval.types import Hit, IndexMismatchError, RetrievalError, Run

logger = logging.getLogger(__name__)

DENSE_INDEX_TYPES = ("FLAT", "HNSW", "IVF_FLAT")
VECTOR_FIELD = "vector"


@dataclass(frozen=True)
class MilvusDenseConfig:
    """The dense collection's vector index (metric is always inner product, like the FAISS index).

    Attributes:
        index_type: "FLAT" (exact), "HNSW" or "IVF_FLAT".
        params: Build parameters, e.g. ``{"M": 32, "efConstruction": 200}`` (HNSW), ``{"nlist": 128}``.
        search_params: Search parameters, e.g. ``{"ef": 128}`` (HNSW), ``{"nprobe": 16}`` (IVF_FLAT).
    """

    index_type: str = "FLAT"
    params: Mapping[str, Any] = field(default_factory=dict)
    search_params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if str(self.index_type).upper() not in DENSE_INDEX_TYPES:
            raise ValueError(
                f"milvus dense index_type must be one of {DENSE_INDEX_TYPES}, got {self.index_type!r}."
            )
        object.__setattr__(self, "index_type", str(self.index_type).upper())
        object.__setattr__(self, "params", dict(self.params or {}))
        object.__setattr__(self, "search_params", dict(self.search_params or {}))

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``meta.json["milvus"]``)."""
        return {
            "index_type": self.index_type,
            "metric_type": "IP",
            "params": dict(self.params),
            "search_params": dict(self.search_params),
        }


class MilvusDenseIndex:
    """A Milvus collection of document vectors, with the dense index's build metadata.

    Create with :meth:`write` or :meth:`open`, not directly.

    Args:
        client: A ``pymilvus.MilvusClient``.
        target: The collection.
        meta: Build metadata (the local ``meta.json``).
    """

    def __init__(self, client: Any, target: MilvusTarget, meta: dict[str, Any]) -> None:
        self._client = client
        self._target = target
        self._meta = meta
        self._doc_ids: list[str] | None = None

    @classmethod
    def write(
        cls,
        index: DenseIndex,
        target: MilvusTarget,
        config: MilvusDenseConfig | None = None,
        *,
        batch_size: int = 1000,
        index_timeout_s: float = 600.0,
        show_progress: bool = True,
    ) -> MilvusDenseIndex:
        """Write a built FAISS index's vectors to the collection (idempotent, see :mod:`.collection`).

        Args:
            index: The index ``index_build`` returned (its vectors are read back from FAISS).
            target: The collection.
            config: Vector index settings (default exact ``FLAT``).
            batch_size: Rows per insert request.
            index_timeout_s: How long to wait for the vector index to be built.
            show_progress: Show a tqdm bar while inserting.

        Returns:
            The searchable index (index built, collection loaded).
        """
        from pymilvus import DataType

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        config = config or MilvusDenseConfig()
        built = index.meta
        built.pop("hnsw", None)  # FAISS's HNSW settings; Milvus's are in meta["milvus"]
        source_index_type = built.get("index_type")
        build_inputs = {
            "format_version": FORMAT_VERSION,
            "kind": "dense",
            "corpus_hash": built.get("corpus_hash"),
            "fingerprint": (built.get("encoder") or {}).get("fingerprint"),
            "dim": built.get("dim"),
            "num_docs": index.num_docs,
            "index": config.to_dict(),
        }
        key = build_key(build_inputs)
        meta = {
            **built,
            "backend": BACKEND,
            "index_type": config.index_type.lower(),
            "built_from_index_type": source_index_type,
            "milvus": {**target.describe(), **config.to_dict(), "build_key": key},
        }
        client = connect(target)
        action = prepare_collection(client, target, key, index.num_docs)
        if action == "keep":
            logger.info(
                "milvus: %s already holds this dense index (%d docs); left as is", target, index.num_docs
            )
            return cls(client, target, kept_meta(client, target))
        doc_ids = index.doc_ids
        vectors = index.vectors()
        if action == "create":
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field(ID_FIELD, DataType.VARCHAR, is_primary=True, max_length=id_max_length(doc_ids))
            schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=index.dim)
            index_params = client.prepare_index_params()
            index_params.add_index(
                field_name=VECTOR_FIELD,
                index_type=config.index_type,
                metric_type="IP",
                params=dict(config.params),
            )
            create_collection(client, target, schema, index_params, key)

        def rows(start: int, stop: int) -> list[dict[str, Any]]:
            return [
                {ID_FIELD: doc_id, VECTOR_FIELD: vector}
                for doc_id, vector in zip(doc_ids[start:stop], vectors[start:stop].tolist(), strict=True)
            ]

        seconds = write_rows(client, target, action, len(doc_ids), rows, batch_size, show_progress)
        logger.info(
            "milvus: %s %s %d vectors (dim %d) in %.2fs",
            target,
            "inserted" if action == "create" else "upserted",
            len(doc_ids),
            index.dim,
            seconds,
        )
        complete_collection(client, target, VECTOR_FIELD, meta, index_timeout_s)
        written = cls(client, target, meta)
        written._doc_ids = list(doc_ids)
        return written

    @classmethod
    def open(cls, target: MilvusTarget, meta: Mapping[str, Any]) -> MilvusDenseIndex:
        """Connect to a collection written by :meth:`write` and check it against its ``meta.json``.

        Args:
            target: The collection (and connection credentials).
            meta: The ``meta.json`` that :meth:`write` produced.

        Raises:
            IndexMismatchError: If the collection is missing, incomplete or built from other inputs.
        """
        if meta.get("kind") != "dense":
            raise IndexMismatchError(
                f"meta.json for {target} is not a dense index (kind {meta.get('kind')!r}); {REBUILD_HINT}."
            )
        client = open_collection(target, meta, "dense")
        logger.info(
            "milvus: opened dense %s (%s docs, %s)", target, meta.get("num_docs"), meta.get("index_type")
        )
        return cls(client, target, dict(meta))

    @property
    def meta(self) -> dict[str, Any]:
        """A copy of the build metadata (the contents of ``meta.json``)."""
        return json.loads(json.dumps(self._meta))

    @property
    def target(self) -> MilvusTarget:
        """The collection."""
        return self._target

    @property
    def doc_ids(self) -> list[str]:
        """Document ids (sorted; fetched from Milvus on first use)."""
        if self._doc_ids is None:
            self._doc_ids = fetch_doc_ids(self._client, self._target.collection)
        return list(self._doc_ids)

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self._meta["dim"])

    @property
    def num_docs(self) -> int:
        """Number of indexed documents."""
        return int(self._meta["num_docs"])

    def search_vectors(self, qvecs: np.ndarray, k: int) -> Run:
        """Search query vectors (inner product), as :meth:`DenseIndex.search_vectors`.

        Raises:
            ValueError: On a bad shape, non-finite values or ``k < 1``.
            RetrievalError: If Milvus fails to answer.
        """
        kk = min(check_k(k), self.num_docs, MAX_TOPK)
        matrix = np.ascontiguousarray(qvecs, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != self.dim:
            raise ValueError(f"query vectors must have shape (n, {self.dim}); got {matrix.shape}.")
        if not np.isfinite(matrix).all():
            raise ValueError("query vectors contain NaN/inf; check the encoder output.")
        params = {"metric_type": "IP", "params": dict(self._meta["milvus"].get("search_params") or {})}
        run: Run = []
        for start, stop in batches(matrix.shape[0], SEARCH_BATCH):
            try:
                result = self._client.search(
                    self._target.collection,
                    data=matrix[start:stop].tolist(),
                    anns_field=VECTOR_FIELD,
                    limit=kk,
                    search_params=params,
                    output_fields=[],
                )
            except Exception as exc:  # MilvusException, grpc errors
                raise RetrievalError(
                    f"{self._target}: search failed for queries {start}..{stop - 1}: {exc}"
                ) from exc
            run.extend([Hit(hit_id(hit), float(hit["distance"])) for hit in hits] for hits in result)
        return run

    def check_compatible(self, corpus_hash: str | None = None, encoder: Encoder | None = None) -> None:
        """Refuse a corpus or an encoder other than the ones the index was built from (as DenseIndex does)."""
        check_dense_compatible(
            self._meta,
            self.num_docs,
            f" in {self._target}",
            corpus_hash=corpus_hash,
            encoder=encoder,
            hint=REBUILD_HINT,
        )

    def __repr__(self) -> str:
        return f"MilvusDenseIndex({self._target}, docs={self.num_docs}, {self._meta.get('index_type')})"
