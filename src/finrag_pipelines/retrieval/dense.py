"""Dense retrieval: a FAISS inner-product index over normalised vectors; a Retriever over any vector index.

The index folder records which encoder (fingerprint, settings, query instruction) and which corpus
(hash) it was built from; :meth:`DenseIndex.check_compatible` refuses to pair it with anything else.
:class:`DenseIndex` implements :class:`~finrag_pipelines.retrieval.interfaces.VectorIndex`;
:class:`DenseRetriever` takes any ``VectorIndex`` (FAISS or Milvus).
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

from finrag_pipelines.embedding.encoders import Encoder
from finrag_pipelines.embedding.store import EmbeddingStore, encode_with_store
from finrag_pipelines.retrieval.index_folder import (
    DOC_IDS_FILE,
    META_FILE,
    REBUILD_HINT,
    read_meta_and_ids,
    write_json,
)
from finrag_pipelines.retrieval.interfaces import VectorIndex
from finrag_pipelines.retrieval.types import Hit, IndexMismatchError, RetrievalError, Run

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
IndexType = Literal["flat", "hnsw"]
INDEX_FILE = "index.faiss"

_SEARCH_BATCH = 1024
_ADD_CHUNK_ROWS = 16384  # 64 MB of 1024-d vectors per FAISS add


def iter_row_chunks(matrix: np.ndarray, rows: int = _ADD_CHUNK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, contiguous float32 copy)`` of ``rows`` rows at a time.

    For an ``np.memmap``, the pages of each chunk are released from this process's mapping once the chunk
    is copied (``MADV_DONTNEED``; the data stays in the file and the page cache), so streaming a vector file
    bigger than memory through FAISS does not grow the process's resident memory by the file's size.
    """
    mapping = getattr(matrix, "_mmap", None) if isinstance(matrix, np.memmap) else None
    for start in range(0, matrix.shape[0], rows):
        chunk = np.array(matrix[start : start + rows], dtype=np.float32, order="C")
        if mapping is not None and hasattr(mapping, "madvise"):
            mapping.madvise(mmap.MADV_DONTNEED)
        yield start, chunk


class DenseIndex:
    """A FAISS inner-product index with its document ids and build metadata.

    Build with :meth:`build` or :meth:`load`, not directly. Implements
    :class:`~finrag_pipelines.retrieval.interfaces.VectorIndex`.

    Args:
        index: The FAISS index (row ``i`` is ``doc_ids[i]``).
        doc_ids: Document ids in row order.
        meta: Build metadata (see :meth:`build`).
    """

    def __init__(self, index: faiss.Index, doc_ids: list[str], meta: dict[str, Any]) -> None:
        self._index = index
        self._doc_ids = doc_ids
        self._meta = meta
        self._source: Path | None = None

    @classmethod
    def build(
        cls,
        doc_ids: Sequence[str],
        vectors: np.ndarray,
        encoder_meta: Mapping[str, Any],
        corpus_hash: str,
        index_type: IndexType = "flat",
        hnsw_m: int = 32,
        ef_search: int = 128,
        ef_construction: int = 200,
    ) -> DenseIndex:
        """Build an index from document vectors.

        Args:
            doc_ids: Unique document ids, one per row of ``vectors``.
            vectors: float32 ``(n, dim)`` L2-normalised document vectors.
            encoder_meta: ``encoder.describe()`` plus ``"fingerprint": encoder.fingerprint``.
            corpus_hash: Hash of the corpus the vectors came from.
            index_type: "flat" (exact, ``IndexFlatIP``) or "hnsw" (``IndexHNSWFlat``, inner product).
            hnsw_m: HNSW neighbours per node.
            ef_search: HNSW search beam width.
            ef_construction: HNSW build beam width.

        Returns:
            The index.

        Raises:
            ValueError: On mismatched shapes, duplicate ids, non-finite vectors, missing fingerprint
                or an unknown index type.
        """
        ids = [str(doc_id) for doc_id in doc_ids]
        matrix = vectors if isinstance(vectors, np.ndarray) else np.asarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != len(ids) or matrix.shape[0] == 0:
            raise ValueError(
                f"vectors must have shape (len(doc_ids), dim) with at least one row; got {matrix.shape} "
                f"for {len(ids)} doc ids."
            )
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            for doc_id in ids:
                if doc_id in seen:
                    raise ValueError(
                        f"doc_ids must be unique; {doc_id!r} occurs more than once. "
                        "Deduplicate the corpus first."
                    )
                seen.add(doc_id)
        if not encoder_meta.get("fingerprint"):
            raise ValueError(
                "encoder_meta needs a 'fingerprint' key: pass "
                "{**encoder.describe(), 'fingerprint': encoder.fingerprint}."
            )
        low, high = np.inf, -np.inf
        for start, chunk in iter_row_chunks(matrix):  # bounded memory, also for an np.memmap
            finite = np.isfinite(chunk).all(axis=1)
            if not finite.all():
                bad = start + int(np.flatnonzero(~finite)[0])
                raise ValueError(f"vector of doc {ids[bad]!r} (row {bad}) has NaN/inf values; re-encode it.")
            norms = np.sqrt(np.einsum("ij,ij->i", chunk, chunk))
            low, high = min(low, float(norms.min())), max(high, float(norms.max()))
        if max(abs(low - 1.0), abs(high - 1.0)) > 1e-3:
            logger.warning(
                "document vectors are not L2-normalised (norms %.4f..%.4f): inner product is not cosine",
                low,
                high,
            )
        dim = int(matrix.shape[1])
        if index_type == "flat":
            index: faiss.Index = faiss.IndexFlatIP(dim)
        elif index_type == "hnsw":
            if hnsw_m < 2 or ef_search < 1 or ef_construction < 1:
                raise ValueError(
                    "hnsw_m must be >= 2 and ef_search/ef_construction >= 1; "
                    f"got {hnsw_m}, {ef_search}, {ef_construction}."
                )
            index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
        else:
            raise ValueError(f"index_type {index_type!r} is not 'flat' or 'hnsw'.")
        started = time.perf_counter()
        for _, chunk in iter_row_chunks(matrix):
            index.add(chunk)
        encoder = dict(encoder_meta)
        meta: dict[str, Any] = {
            "kind": "dense",
            "format_version": FORMAT_VERSION,
            "encoder": encoder,
            "instruction_template": encoder.get("instruction_template"),
            "query_task": encoder.get("query_task"),
            "dim": dim,
            "num_docs": len(ids),
            "index_type": index_type,
            "corpus_hash": corpus_hash,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if index_type == "hnsw":
            meta["hnsw"] = {"m": hnsw_m, "ef_search": ef_search, "ef_construction": ef_construction}
        built = cls(index, ids, meta)
        built._apply_search_params()
        logger.info(
            "built %s dense index: %d docs, dim %d, encoder %s, in %.2fs",
            index_type,
            len(ids),
            dim,
            encoder.get("model_name") or encoder.get("kind"),
            time.perf_counter() - started,
        )
        return built

    def _apply_search_params(self) -> None:
        """Set HNSW efSearch from the metadata."""
        hnsw = self._meta.get("hnsw")
        if hnsw and hasattr(self._index, "hnsw"):
            self._index.hnsw.efSearch = int(hnsw["ef_search"])

    @property
    def meta(self) -> dict[str, Any]:
        """A copy of the build metadata (the contents of meta.json)."""
        return json.loads(json.dumps(self._meta))

    @property
    def doc_ids(self) -> list[str]:
        """Document ids in row order (a copy)."""
        return list(self._doc_ids)

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self._meta["dim"])

    @property
    def num_docs(self) -> int:
        """Number of indexed documents."""
        return len(self._doc_ids)

    def search_vectors(self, qvecs: np.ndarray, k: int) -> Run:
        """Search query vectors.

        Args:
            qvecs: float32 ``(n, dim)`` query vectors.
            k: Hits per query; clipped to the number of documents.

        Returns:
            One list of hits per query, best first (FAISS's -1 padding removed).

        Raises:
            ValueError: On a bad shape, non-finite values or ``k < 1``.
        """
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}.")
        matrix = np.ascontiguousarray(qvecs, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != self.dim:
            raise ValueError(f"query vectors must have shape (n, {self.dim}); got {matrix.shape}.")
        if not np.isfinite(matrix).all():
            raise ValueError("query vectors contain NaN/inf; check the encoder output.")
        kk = min(int(k), self._index.ntotal)
        run: Run = []
        for start in range(0, matrix.shape[0], _SEARCH_BATCH):
            scores, rows = self._index.search(matrix[start : start + _SEARCH_BATCH], kk)
            for score_row, id_row in zip(scores.tolist(), rows.tolist(), strict=True):
                run.append(
                    [
                        Hit(self._doc_ids[j], float(s))
                        for s, j in zip(score_row, id_row, strict=True)
                        if j >= 0
                    ]
                )
        return run

    def save(self, folder: str | Path) -> Path:
        """Write ``index.faiss``, ``doc_ids.json`` and ``meta.json`` (each via temp file + rename).

        Args:
            folder: Target folder; created if missing.

        Returns:
            The folder.
        """
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        tmp_index = target / f".tmp-{INDEX_FILE}-{os.getpid()}"
        faiss.write_index(self._index, str(tmp_index))
        os.replace(tmp_index, target / INDEX_FILE)
        write_json(target / DOC_IDS_FILE, self._doc_ids)
        write_json(target / META_FILE, self._meta)  # last: a folder with meta.json is complete
        logger.info("saved dense index (%d docs) to %s", self.num_docs, target)
        return target

    @classmethod
    def load(cls, folder: str | Path, *, mmap: bool = False) -> DenseIndex:
        """Load and validate a saved index.

        Args:
            folder: A folder written by :meth:`save`.
            mmap: Memory-map the vectors (``faiss.IO_FLAG_MMAP_IFC``, flat and HNSW) instead of reading them:
                loading is instant, pages are read on demand, shared between processes serving the same
                folder and given back to the page cache under memory pressure. ``save`` replaces files by
                rename, so a rebuild never changes a mapped file under a running reader.

        Returns:
            The index.

        Raises:
            IndexMismatchError: On missing files, unreadable or inconsistent contents, or another
                format version.
        """
        source = Path(folder)
        meta, doc_ids = read_meta_and_ids(source, "dense", FORMAT_VERSION, "dense", [INDEX_FILE])
        try:
            index = faiss.read_index(str(source / INDEX_FILE), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
        except RuntimeError as exc:
            raise IndexMismatchError(f"cannot read {source / INDEX_FILE} ({exc}); {REBUILD_HINT}.") from exc
        if index.ntotal != len(doc_ids) or meta.get("num_docs") != len(doc_ids):
            raise IndexMismatchError(
                f"dense index in {source} is inconsistent: index.faiss has {index.ntotal} vectors, "
                f"doc_ids.json {len(doc_ids)} ids, meta.json num_docs {meta.get('num_docs')}; {REBUILD_HINT}."
            )
        if index.d != meta.get("dim"):
            raise IndexMismatchError(
                f"dense index in {source}: index.faiss has dim {index.d}, "
                f"meta.json says {meta.get('dim')}; {REBUILD_HINT}."
            )
        loaded = cls(index, doc_ids, meta)
        loaded._apply_search_params()
        loaded._source = source
        logger.info(
            "loaded dense index from %s (%d docs, %s%s)",
            source,
            len(doc_ids),
            meta.get("index_type"),
            ", memory-mapped" if mmap else "",
        )
        return loaded

    def vectors(self) -> np.ndarray:
        """The indexed document vectors, float32 ``(num_docs, dim)`` in row order (a copy, via FAISS)."""
        return np.asarray(self._index.reconstruct_n(0, self._index.ntotal), dtype=np.float32)

    def check_compatible(self, corpus_hash: str | None = None, encoder: Encoder | None = None) -> None:
        """Refuse a corpus or an encoder other than the ones the index was built from.

        Args:
            corpus_hash: Hash of the corpus in use, or ``None`` to skip the check.
            encoder: Encoder that will encode queries, or ``None`` to skip the check.

        Raises:
            IndexMismatchError: Naming what differs and how to fix it.
        """
        where = f" in {self._source}" if self._source is not None else ""
        check_dense_compatible(self._meta, self.num_docs, where, corpus_hash=corpus_hash, encoder=encoder)


def check_dense_compatible(
    meta: Mapping[str, Any],
    num_docs: int,
    where: str = "",
    *,
    corpus_hash: str | None = None,
    encoder: Encoder | None = None,
    hint: str = REBUILD_HINT,
) -> None:
    """The checks of :meth:`DenseIndex.check_compatible` on a dense index's ``meta.json`` contents.

    Shared by every dense backend (FAISS folders, Milvus collections), so they refuse the same things with
    the same messages.

    Args:
        meta: The index's build metadata.
        num_docs: Number of indexed documents (named in the message).
        where: How the message locates the index, e.g. ``" in data/06_models/x/dense_base"``.
        corpus_hash: Hash of the corpus in use, or ``None`` to skip the check.
        encoder: Encoder that will encode queries, or ``None`` to skip the check.
        hint: How to rebuild the index (end of the message).

    Raises:
        IndexMismatchError: Naming what differs and how to fix it.
    """
    problems: list[str] = []
    if corpus_hash is not None and corpus_hash != meta.get("corpus_hash"):
        problems.append(
            f"corpus hash differs (index built from {meta.get('corpus_hash')!r}, corpus now {corpus_hash!r})"
        )
    if encoder is not None:
        built = dict(meta.get("encoder", {}))
        if encoder.dim != meta.get("dim"):
            problems.append(f"encoder dim {encoder.dim} != index dim {meta.get('dim')}")
        if (encoder.query_task or None) != (meta.get("query_task") or None):
            problems.append(
                f"query_task differs (index {meta.get('query_task')!r}, encoder {encoder.query_task!r})"
            )
        if encoder.fingerprint != built.get("fingerprint"):
            current = encoder.describe()
            changed = sorted(
                key
                for key in set(current) | set(built)
                if key not in {"fingerprint", "model_path", "model_name"}
                and current.get(key) != built.get(key)
            )
            detail = (
                "settings differ: "
                + ", ".join(f"{key} {built.get(key)!r} -> {current.get(key)!r}" for key in changed)
                if changed
                else "same settings, different model files (retrained or replaced model)"
            )
            problems.append(
                f"encoder fingerprint differs ({str(built.get('fingerprint'))[:12]} -> "
                f"{encoder.fingerprint[:12]}; {detail})"
            )
    if problems:
        raise IndexMismatchError(
            f"dense index{where} ({meta.get('index_type')}, {num_docs} docs, "
            f"built {meta.get('built_at')}) "
            f"does not match: {'; '.join(problems)}. Use the encoder settings it was built with, or "
            f"{hint}."
        )


class DenseRetriever:
    """Retriever over a vector index: encodes queries in batches, searches the index in batches.

    Args:
        index: The index, any :class:`~finrag_pipelines.retrieval.interfaces.VectorIndex` (FAISS, Milvus).
        encoder: Query encoder; must match the index (checked here).
        name: Retriever name used in runs and reports.
        batch_size: Queries per encode + search step.
        corpus_hash: Optional corpus hash to check against the index as well.
        store: Optional embedding store: query vectors are looked up there and new ones written to it
            (role ``"query"``), so re-running an evaluation does not re-encode its queries.

    Raises:
        IndexMismatchError: If the encoder (or corpus) does not match the index.
    """

    def __init__(
        self,
        index: VectorIndex,
        encoder: Encoder,
        name: str = "dense",
        batch_size: int = 64,
        *,
        corpus_hash: str | None = None,
        store: EmbeddingStore | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        index.check_compatible(corpus_hash=corpus_hash, encoder=encoder)
        self.index = index
        self.encoder = encoder
        self.name = name
        self.batch_size = batch_size
        self.store = store

    def _encode(self, batch: list[str]) -> np.ndarray:
        if self.store is None:
            return self.encoder.encode_queries(batch)
        return encode_with_store(self.encoder, batch, "query", self.store, chunk_size=len(batch))

    def search(self, queries: Sequence[str], k: int) -> Run:
        """Return the top ``k`` hits for each query, best first, in query order.

        Args:
            queries: Query texts (the encoder adds its instruction).
            k: Hits per query.

        Returns:
            One list of hits per query.

        Raises:
            ValueError: If ``k < 1`` or ``queries`` is a single string.
            RetrievalError: If encoding or searching fails (with the batch and cause).
        """
        if isinstance(queries, str):
            raise ValueError("queries must be a sequence of strings, not one str; wrap it in a list.")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}.")
        items = list(queries)
        run: Run = []
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            where = (
                f"retriever {self.name!r}, queries {start}..{start + len(batch) - 1} (first {batch[0]!r:.60})"
            )
            try:
                qvecs = self._encode(batch)
            except Exception as exc:
                raise RetrievalError(
                    f"{where}: encoder {self.encoder.name} failed: {type(exc).__name__}: {exc}"
                ) from exc
            try:
                hits = self.index.search_vectors(qvecs, k)
            except Exception as exc:
                raise RetrievalError(
                    f"{where}: search of {type(self.index).__name__} failed: {type(exc).__name__}: {exc}"
                ) from exc
            if len(hits) != len(batch):
                raise RetrievalError(f"{where}: got {len(hits)} result lists for {len(batch)} queries.")
            run.extend(hits)
        return run


def measure_dense_qps(
    encoder: Encoder,
    index: VectorIndex,
    queries: Sequence[str],
    k: int = 10,
    batch_size: int = 64,
    one_by_one_limit: int | None = None,
) -> dict[str, float]:
    """Time dense retrieval (query encoding + index search) batched and one query per call.

    Both modes run through :class:`DenseRetriever`, after one warm-up call.

    Args:
        encoder: Query encoder (matching ``index``).
        index: The index.
        queries: Query texts.
        k: Hits per query.
        batch_size: Queries per batch for the batched mode.
        one_by_one_limit: Time only the first this many queries one by one (``None``: all).

    Returns:
        ``{"dense_batched_qps", "dense_one_by_one_qps", "batched_queries", "one_by_one_queries",
        "batched_seconds", "one_by_one_seconds"}``.
    """
    items = list(queries)
    if not items:
        raise ValueError("measure_dense_qps needs at least one query.")
    retriever = DenseRetriever(index, encoder, name="dense-bench", batch_size=batch_size)
    retriever.search(items[:1], k)  # warm-up (lazy model loading, thread pools)
    started = time.perf_counter()
    retriever.search(items, k)
    batched = time.perf_counter() - started
    single = items if one_by_one_limit is None else items[:one_by_one_limit]
    started = time.perf_counter()
    for query in single:
        retriever.search([query], k)
    one_by_one = time.perf_counter() - started
    return {
        "dense_batched_qps": len(items) / batched,
        "dense_one_by_one_qps": len(single) / one_by_one,
        "batched_queries": float(len(items)),
        "one_by_one_queries": float(len(single)),
        "batched_seconds": batched,
        "one_by_one_seconds": one_by_one,
    }
