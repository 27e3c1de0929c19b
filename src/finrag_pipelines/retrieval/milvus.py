"""Milvus (Lite embedded, or a server) behind the same interface as the FAISS and bm25s indexes.

* :class:`MilvusDenseIndex` quacks like :class:`~finrag_pipelines.retrieval.dense.DenseIndex`: ``meta``,
  ``doc_ids``, ``num_docs``, ``dim``, ``search_vectors(qvecs, k)`` and ``check_compatible`` (the same checks
  and messages, via :func:`~finrag_pipelines.retrieval.dense.check_dense_compatible`), so
  :class:`~finrag_pipelines.retrieval.dense.DenseRetriever` takes it unchanged.
* :class:`MilvusBM25Index` quacks like :class:`~finrag_pipelines.retrieval.bm25.BM25Index`: ``name``,
  ``meta``, ``num_docs``, ``tokenizer``, ``search(queries, k)``, ``search_tokens`` and ``check_compatible``.
  Documents are stored as their jieba tokens joined by spaces in a VARCHAR field analysed by Milvus's
  ``standard`` tokenizer + ``lowercase`` (Milvus Lite rejects ``whitespace``); a BM25 ``Function`` fills a
  sparse vector field. Queries are tokenised by the index's own :class:`FinanceTokenizer` and joined the
  same way. The bm25s-only refinements (tf cap, domain-term weights) have no Milvus counterpart; ``k1``/``b``
  are carried over.

Both are written with :meth:`MilvusDenseIndex.write` / :meth:`MilvusBM25Index.write` from the index object
``index_build`` returns, idempotently: a collection built from the same inputs (corpus hash, encoder
fingerprint or tokenizer fingerprint, index settings; recorded in the collection's properties) is left as
it is, a partly written one is completed with upserts keyed by ``doc_id``, anything else is dropped and
rebuilt. ``write`` returns only once the vector index is built and the collection loaded, so searches never
fall back to brute force while Milvus Lite builds in the background.

``uri`` is a local ``*.db`` path (Milvus Lite, embedded) or ``http(s)://host:port`` (a server, or
``milvus-lite server``). Kedro-free library module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from finrag_pipelines.embedding.encoders import Encoder
from finrag_pipelines.retrieval.bm25 import BM25Index
from finrag_pipelines.retrieval.dense import DenseIndex, check_dense_compatible
from finrag_pipelines.retrieval.types import Hit, IndexMismatchError, RetrievalError, Run
from finrag_pipelines.text.tokenize import FinanceTokenizer

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
BACKEND = "milvus"
DENSE_INDEX_TYPES = ("FLAT", "HNSW", "IVF_FLAT")
BM25_ANALYZER: dict[str, Any] = {"tokenizer": "standard", "filter": ["lowercase"]}
REBUILD_HINT = "rebuild it with `kedro run --env milvus --pipelines index_build`"

ID_FIELD = "doc_id"
VECTOR_FIELD = "vector"
TEXT_FIELD = "text"
SPARSE_FIELD = "sparse"
BM25_FUNCTION = "bm25"

_BUILD_KEY = "finrag_build_key"  # collection property: hash of everything the rows were built from
_META_PROP = "finrag_meta"  # collection property: the meta JSON, set once every row is in and indexed
_VARCHAR_MAX = 65535  # Milvus's VARCHAR limit, in bytes
_SEARCH_BATCH = 256  # queries per search request
_MAX_TOPK = 16384  # Milvus's limit on limit
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class MilvusUnavailableError(RuntimeError):
    """pymilvus (and, for a local path, milvus-lite) is not installed."""


# ---------------------------------------------------------------------------------------------- connection


@dataclass(frozen=True)
class MilvusTarget:
    """Where a collection lives.

    Attributes:
        uri: A local file path ending in ``.db`` (Milvus Lite, embedded in this process) or a server URL
            such as ``http://host:19530``.
        collection: Collection name (letters, digits, underscores).
        token: Server token (``user:password`` or an API key), if the server needs one.
        user: Server user name (with ``password``), if the server needs one.
        password: Server password.
        db_name: Server database; empty = the default one.
    """

    uri: str
    collection: str
    token: str = field(default="", repr=False)
    user: str = ""
    password: str = field(default="", repr=False)
    db_name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.uri, str) or not self.uri:
            raise ValueError(f"milvus uri must be a non-empty string, got {self.uri!r}.")
        if not self.embedded and not self.uri.lower().startswith(
            ("http://", "https://", "tcp://", "grpc://")
        ):
            raise ValueError(
                f"milvus uri {self.uri!r} is neither a local '*.db' path (Milvus Lite) nor an "
                "http(s)://host:port server URL."
            )
        if self.embedded and not self.uri.endswith(".db"):
            raise ValueError(
                f"milvus uri {self.uri!r}: a local Milvus Lite database must be a file path ending in '.db' "
                "(e.g. data/06_models/fintruthqa/milvus.db); for a server use http://host:19530."
            )
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,254}", self.collection or ""):
            raise ValueError(
                f"milvus collection name {self.collection!r} must start with a letter or underscore and hold "
                "only letters, digits and underscores."
            )
        if self.password and not self.user:
            raise ValueError("milvus credentials: a password needs a user; or give a token instead.")

    @property
    def embedded(self) -> bool:
        """Whether ``uri`` is a local Milvus Lite file (not a server URL)."""
        return not _URL.match(self.uri)

    def describe(self) -> dict[str, Any]:
        """What ``meta.json`` records about the target (never the secrets)."""
        described: dict[str, Any] = {
            "uri": self.uri,
            "collection": self.collection,
            "mode": "lite" if self.embedded else "server",
        }
        if self.db_name:
            described["db_name"] = self.db_name
        return described

    def __str__(self) -> str:
        return f"milvus collection {self.collection!r} at {self.uri}"


_CLIENTS: dict[tuple[str, str, str, str, str], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def connect(target: MilvusTarget) -> Any:
    """A ``pymilvus.MilvusClient`` for ``target``, shared by every index on the same connection.

    One client per database file matters for Milvus Lite: the file is opened once per process.

    Raises:
        MilvusUnavailableError: If pymilvus / milvus-lite is not installed.
        RetrievalError: If the server cannot be reached.
    """
    try:
        from pymilvus import MilvusClient
    except ImportError as exc:
        raise MilvusUnavailableError(
            "the Milvus backend needs pymilvus (and milvus-lite for a local .db file): "
            "pip install 'finrag_pipelines[milvus]'."
        ) from exc
    uri = str(Path(target.uri).expanduser().resolve()) if target.embedded else target.uri
    key = (uri, target.token, target.user, target.password, target.db_name)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            if target.embedded:
                Path(uri).parent.mkdir(parents=True, exist_ok=True)
            try:
                client = MilvusClient(
                    uri=uri,
                    token=target.token,
                    user=target.user,
                    password=target.password,
                    db_name=target.db_name,
                )
            except Exception as exc:  # pymilvus raises MilvusException or grpc errors
                raise RetrievalError(f"cannot connect to {target}: {exc}") from exc
            _CLIENTS[key] = client
    return client


def close_clients() -> None:
    """Close every shared client (tests, and before handing a Lite file to another process)."""
    with _CLIENTS_LOCK:
        for client in _CLIENTS.values():
            try:
                client.close()
            except Exception:
                logger.debug("milvus: closing a client failed", exc_info=True)
        _CLIENTS.clear()


# ---------------------------------------------------------------------------------------------- settings


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


@dataclass(frozen=True)
class MilvusBM25Config:
    """The BM25 collection's sparse index.

    Attributes:
        inverted_index_algo: Milvus's ``SPARSE_INVERTED_INDEX`` algorithm ("DAAT_MAXSCORE", "DAAT_WAND",
            "TAAT_NAIVE").
        k1: BM25 k1; ``None`` = the one the bm25s index was built with.
        b: BM25 b; ``None`` = the one the bm25s index was built with.
    """

    inverted_index_algo: str = "DAAT_MAXSCORE"
    k1: float | None = None
    b: float | None = None

    def resolve(self, index: BM25Index) -> dict[str, Any]:
        """The index parameters for ``index`` (its k1/b unless set here)."""
        return {
            "inverted_index_algo": self.inverted_index_algo,
            "bm25_k1": float(self.k1 if self.k1 is not None else index.config.k1),
            "bm25_b": float(self.b if self.b is not None else index.config.b),
        }


# ---------------------------------------------------------------------------------------------- shared


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def _count(client: Any, collection: str) -> int:
    rows = client.query(collection, filter="", output_fields=["count(*)"], consistency_level="Strong")
    return int(rows[0]["count(*)"])


def _properties(client: Any, collection: str) -> dict[str, str]:
    return dict(client.describe_collection(collection).get("properties") or {})


def _batches(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def _progress(total: int, desc: str, show: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="doc", disable=not show, leave=False)


def _prepare_collection(client: Any, target: MilvusTarget, build_key: str, num_docs: int) -> str:
    """Decide what to do with an existing collection: ``"keep"``, ``"resume"`` or ``"create"``.

    Drops a collection built from other inputs (logging why).
    """
    name = target.collection
    if not client.has_collection(name):
        return "create"
    props = _properties(client, name)
    if props.get(_BUILD_KEY) != build_key:
        logger.info(
            "milvus: %s was built from other inputs (build key %s, now %s); dropping and rebuilding it",
            target,
            str(props.get(_BUILD_KEY))[:12],
            build_key[:12],
        )
        client.drop_collection(name)
        return "create"
    if props.get(_META_PROP):
        count = _count(client, name)
        if count == num_docs:
            return "keep"
        logger.warning("milvus: %s holds %d rows, expected %d; completing it", target, count, num_docs)
    return "resume"


def _wait_for_index(client: Any, target: MilvusTarget, field_name: str, timeout_s: float) -> None:
    """Flush, wait until the index covers every row, then load the collection.

    Milvus Lite builds indexes in the background and answers by brute force until they exist.

    Raises:
        RetrievalError: If the index is not built within ``timeout_s`` or its build failed.
    """
    name = target.collection
    client.flush(name)
    started = time.monotonic()
    delay = 0.05
    while True:
        state = client.describe_index(name, index_name=field_name)
        status = str(state.get("state", ""))
        pending = int(state.get("pending_index_rows") or 0)
        total = int(state.get("total_rows") or 0)
        indexed = int(state.get("indexed_rows") or 0)
        if status.lower().endswith("failed"):
            raise RetrievalError(f"{target}: building the {field_name!r} index failed: {state}.")
        if status.lower().endswith("finished") and pending == 0 and indexed >= total:
            break
        if time.monotonic() - started > timeout_s:
            raise RetrievalError(
                f"{target}: the {field_name!r} index is not built after {timeout_s:.0f}s "
                f"(state {status!r}, {indexed}/{total} rows); raise index_timeout_s or check the server."
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)
    client.load_collection(name)
    logger.info(
        "milvus: %s index %r built and loaded in %.2fs", target, field_name, time.monotonic() - started
    )


def _finish(client: Any, target: MilvusTarget, meta: Mapping[str, Any]) -> None:
    client.alter_collection_properties(
        target.collection, properties={_META_PROP: json.dumps(meta, ensure_ascii=False)}
    )


def _open(target: MilvusTarget, meta: Mapping[str, Any], label: str) -> Any:
    """Connect and check that the collection is the one ``meta`` describes; load it for search.

    Raises:
        IndexMismatchError: If it is missing, incomplete, built from other inputs, or has another row count.
    """
    client = connect(target)
    milvus = meta.get("milvus") or {}
    if meta.get("backend") != BACKEND or not milvus.get("build_key"):
        raise IndexMismatchError(
            f"{label} meta.json for {target} is not a Milvus index meta; {REBUILD_HINT}."
        )
    if not client.has_collection(target.collection):
        raise IndexMismatchError(f"{label} index: {target} does not exist; {REBUILD_HINT}.")
    props = _properties(client, target.collection)
    if props.get(_BUILD_KEY) != milvus["build_key"] or not props.get(_META_PROP):
        raise IndexMismatchError(
            f"{label} index: {target} was built from other inputs or not completed (build key "
            f"{str(props.get(_BUILD_KEY))[:12]}, meta.json expects {str(milvus['build_key'])[:12]}); {REBUILD_HINT}."
        )
    count = _count(client, target.collection)
    if count != meta.get("num_docs"):
        raise IndexMismatchError(
            f"{label} index: {target} holds {count} rows but meta.json says {meta.get('num_docs')}; {REBUILD_HINT}."
        )
    client.load_collection(target.collection)
    return client


def _check_k(k: Any) -> int:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}.")
    return int(k)


def _doc_ids(client: Any, collection: str) -> list[str]:
    ids: list[str] = []
    iterator = client.query_iterator(collection, batch_size=10000, filter="", output_fields=[ID_FIELD])
    try:
        while batch := iterator.next():
            ids.extend(str(row[ID_FIELD]) for row in batch)
    finally:
        iterator.close()
    return sorted(ids)


def _hit_id(hit: Mapping[str, Any]) -> str:
    """A search hit's primary key (pymilvus names it after the field; older clients call it ``id``)."""
    return str(hit[ID_FIELD] if ID_FIELD in hit else hit["id"])


def _id_max_length(doc_ids: Sequence[str]) -> int:
    longest = max(len(doc_id.encode("utf-8")) for doc_id in doc_ids)
    if longest > _VARCHAR_MAX:
        raise ValueError(f"a doc_id is {longest} bytes long; Milvus allows {_VARCHAR_MAX}. Shorten the ids.")
    return max(64, min(_VARCHAR_MAX, 2 * longest))


# ---------------------------------------------------------------------------------------------- dense


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
        """Write a built FAISS index's vectors to the collection (idempotent, see the module docstring).

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
        build_key = _digest(build_inputs)
        meta = {
            **built,
            "backend": BACKEND,
            "index_type": config.index_type.lower(),
            "built_from_index_type": source_index_type,
            "milvus": {**target.describe(), **config.to_dict(), "build_key": build_key},
        }
        client = connect(target)
        action = _prepare_collection(client, target, build_key, index.num_docs)
        if action == "keep":
            logger.info(
                "milvus: %s already holds this dense index (%d docs); left as is", target, index.num_docs
            )
            stored = json.loads(_properties(client, target.collection)[_META_PROP])
            client.load_collection(target.collection)
            return cls(client, target, stored)
        doc_ids = index.doc_ids
        vectors = index.vectors()
        if action == "create":
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field(ID_FIELD, DataType.VARCHAR, is_primary=True, max_length=_id_max_length(doc_ids))
            schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=index.dim)
            index_params = client.prepare_index_params()
            index_params.add_index(
                field_name=VECTOR_FIELD,
                index_type=config.index_type,
                metric_type="IP",
                params=dict(config.params),
            )
            client.create_collection(
                target.collection,
                schema=schema,
                index_params=index_params,
                properties={_BUILD_KEY: build_key},
            )
        write = client.insert if action == "create" else client.upsert  # upsert: no duplicate doc_ids
        started = time.perf_counter()
        with _progress(len(doc_ids), f"milvus {target.collection}", show_progress) as bar:
            for start, stop in _batches(len(doc_ids), batch_size):
                rows = [
                    {ID_FIELD: doc_id, VECTOR_FIELD: vector}
                    for doc_id, vector in zip(doc_ids[start:stop], vectors[start:stop].tolist(), strict=True)
                ]
                write(target.collection, rows)
                bar.update(stop - start)
        logger.info(
            "milvus: %s %s %d vectors (dim %d) in %.2fs",
            target,
            "inserted" if action == "create" else "upserted",
            len(doc_ids),
            index.dim,
            time.perf_counter() - started,
        )
        _wait_for_index(client, target, VECTOR_FIELD, index_timeout_s)
        meta["built_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        _finish(client, target, meta)
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
        client = _open(target, meta, "dense")
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
            self._doc_ids = _doc_ids(self._client, self._target.collection)
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
        kk = min(_check_k(k), self.num_docs, _MAX_TOPK)
        matrix = np.ascontiguousarray(qvecs, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != self.dim:
            raise ValueError(f"query vectors must have shape (n, {self.dim}); got {matrix.shape}.")
        if not np.isfinite(matrix).all():
            raise ValueError("query vectors contain NaN/inf; check the encoder output.")
        params = {"metric_type": "IP", "params": dict(self._meta["milvus"].get("search_params") or {})}
        run: Run = []
        for start, stop in _batches(matrix.shape[0], _SEARCH_BATCH):
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
            run.extend([Hit(_hit_id(hit), float(hit["distance"])) for hit in hits] for hits in result)
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


# ---------------------------------------------------------------------------------------------- BM25


def joined_tokens(tokens: Sequence[str]) -> str:
    """One document's (or query's) jieba tokens as the space-joined text Milvus analyses."""
    return " ".join(token for token in tokens if token and not token.isspace())


class MilvusBM25Index:
    """A Milvus collection with a BM25 function over space-joined jieba tokens, and its tokenizer.

    Create with :meth:`write` or :meth:`open`, not directly.

    Args:
        client: A ``pymilvus.MilvusClient``.
        target: The collection.
        tokenizer: The tokenizer the documents were tokenised with (used for queries).
        meta: Build metadata (the local ``meta.json``).
    """

    def __init__(
        self, client: Any, target: MilvusTarget, tokenizer: FinanceTokenizer, meta: dict[str, Any]
    ) -> None:
        self._client = client
        self._target = target
        self._tokenizer = tokenizer
        self._meta = meta
        self._doc_ids: list[str] | None = None

    @classmethod
    def write(
        cls,
        index: BM25Index,
        target: MilvusTarget,
        config: MilvusBM25Config | None = None,
        *,
        texts: Sequence[str] | None = None,
        batch_size: int = 1000,
        index_timeout_s: float = 600.0,
        show_progress: bool = True,
    ) -> MilvusBM25Index:
        """Write a built BM25 index's documents (their tokens) to the collection (idempotent).

        Args:
            index: The index ``index_build`` returned; its :attr:`~BM25Index.corpus_tokens` are written.
            target: The collection.
            config: Sparse index settings (default: the index's k1/b).
            texts: The document texts in row order, re-tokenised with the index's tokenizer; only needed for
                an index that does not carry its tokens (one loaded from a folder).
            batch_size: Rows per insert request.
            index_timeout_s: How long to wait for the sparse index to be built.
            show_progress: Show a tqdm bar while inserting.

        Returns:
            The searchable index.

        Raises:
            ValueError: If the index carries no tokens and no texts are given, or a document is too long.
        """
        from pymilvus import DataType, Function, FunctionType

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        config = config or MilvusBM25Config()
        built = index.meta
        index_params = config.resolve(index)
        build_inputs = {
            "format_version": FORMAT_VERSION,
            "kind": "bm25",
            "corpus_hash": built.get("corpus_hash"),
            "tokenizer_fingerprint": built.get("tokenizer_fingerprint"),
            "num_docs": index.num_docs,
            "analyzer": BM25_ANALYZER,
            "index": index_params,
        }
        build_key = _digest(build_inputs)
        meta = {
            **built,
            "backend": BACKEND,
            "milvus": {
                **target.describe(),
                "index_type": "SPARSE_INVERTED_INDEX",
                "metric_type": "BM25",
                "analyzer": BM25_ANALYZER,
                "params": index_params,
                "build_key": build_key,
                "not_applied": {
                    "tf_cap": index.config.tf_cap,
                    "domain_term_weight": index.config.domain_term_weight,
                },
            },
        }
        client = connect(target)
        action = _prepare_collection(client, target, build_key, index.num_docs)
        if action == "keep":
            logger.info(
                "milvus: %s already holds this BM25 index (%d docs); left as is", target, index.num_docs
            )
            stored = json.loads(_properties(client, target.collection)[_META_PROP])
            client.load_collection(target.collection)
            return cls(client, target, index.tokenizer, stored)
        tokens = index.corpus_tokens
        if tokens is None:
            if texts is None:
                raise ValueError(
                    f"BM25 index {index.name!r} carries no tokenised corpus (it was loaded from a folder); "
                    "write the index that BM25Index.build returns, or pass texts= (the documents in row order)."
                )
            if len(texts) != index.num_docs:
                raise ValueError(f"got {len(texts)} texts for a BM25 index of {index.num_docs} documents.")
            tokens = index.tokenizer.tokenize_many(texts)
        doc_ids = index.doc_ids
        joined = [joined_tokens(doc) for doc in tokens]
        longest = max(range(len(joined)), key=lambda row: len(joined[row].encode("utf-8")))
        text_bytes = len(joined[longest].encode("utf-8"))
        if text_bytes > _VARCHAR_MAX:
            raise ValueError(
                f"document {doc_ids[longest]!r} is {text_bytes} bytes as joined tokens; a Milvus VARCHAR holds at "
                f"most {_VARCHAR_MAX}. Split long documents into passages in corpus_prep."
            )
        if action == "create":
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field(ID_FIELD, DataType.VARCHAR, is_primary=True, max_length=_id_max_length(doc_ids))
            schema.add_field(
                TEXT_FIELD,
                DataType.VARCHAR,
                max_length=_VARCHAR_MAX,
                enable_analyzer=True,
                analyzer_params=BM25_ANALYZER,
            )
            schema.add_field(SPARSE_FIELD, DataType.SPARSE_FLOAT_VECTOR)
            schema.add_function(
                Function(
                    name=BM25_FUNCTION,
                    function_type=FunctionType.BM25,
                    input_field_names=[TEXT_FIELD],
                    output_field_names=[SPARSE_FIELD],
                )
            )
            sparse_index = client.prepare_index_params()
            sparse_index.add_index(
                field_name=SPARSE_FIELD,
                index_type="SPARSE_INVERTED_INDEX",
                metric_type="BM25",
                params=index_params,
            )
            client.create_collection(
                target.collection,
                schema=schema,
                index_params=sparse_index,
                properties={_BUILD_KEY: build_key},
            )
        write = client.insert if action == "create" else client.upsert
        started = time.perf_counter()
        with _progress(len(doc_ids), f"milvus {target.collection}", show_progress) as bar:
            for start, stop in _batches(len(doc_ids), batch_size):
                rows = [
                    {ID_FIELD: doc_id, TEXT_FIELD: text}
                    for doc_id, text in zip(doc_ids[start:stop], joined[start:stop], strict=True)
                ]
                write(target.collection, rows)
                bar.update(stop - start)
        logger.info(
            "milvus: %s %s %d tokenised documents in %.2fs",
            target,
            "inserted" if action == "create" else "upserted",
            len(doc_ids),
            time.perf_counter() - started,
        )
        _wait_for_index(client, target, SPARSE_FIELD, index_timeout_s)
        meta["built_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        _finish(client, target, meta)
        written = cls(client, target, index.tokenizer, meta)
        written._doc_ids = list(doc_ids)
        return written

    @classmethod
    def open(
        cls, target: MilvusTarget, meta: Mapping[str, Any], tokenizer: FinanceTokenizer
    ) -> MilvusBM25Index:
        """Connect to a collection written by :meth:`write` and check it against its ``meta.json``.

        Args:
            target: The collection (and connection credentials).
            meta: The ``meta.json`` that :meth:`write` produced.
            tokenizer: The tokenizer saved with it (its fingerprint must match ``meta.json``).

        Raises:
            IndexMismatchError: If the collection is missing, incomplete, built from other inputs, or the
                tokenizer differs.
        """
        if meta.get("kind") != "bm25":
            raise IndexMismatchError(
                f"meta.json for {target} is not a BM25 index (kind {meta.get('kind')!r}); {REBUILD_HINT}."
            )
        if tokenizer.fingerprint != meta.get("tokenizer_fingerprint"):
            raise IndexMismatchError(
                f"BM25 index {target}: tokenizer fingerprint {tokenizer.fingerprint[:12]} differs from the one "
                f"recorded in meta.json ({str(meta.get('tokenizer_fingerprint'))[:12]}); {REBUILD_HINT}."
            )
        client = _open(target, meta, "BM25")
        logger.info("milvus: opened BM25 %s (%s docs)", target, meta.get("num_docs"))
        return cls(client, target, tokenizer, dict(meta))

    @property
    def name(self) -> str:
        """Retriever name used in runs, logs and reports."""
        return str(self._meta.get("name") or "bm25")

    @name.setter
    def name(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise ValueError(f"name must be a non-empty string, got {value!r}.")
        self._meta["name"] = value

    @property
    def meta(self) -> dict[str, Any]:
        """A copy of the build metadata (the contents of ``meta.json``)."""
        return json.loads(json.dumps(self._meta))

    @property
    def target(self) -> MilvusTarget:
        """The collection."""
        return self._target

    @property
    def tokenizer(self) -> FinanceTokenizer:
        """The tokenizer used for documents and queries."""
        return self._tokenizer

    @property
    def doc_ids(self) -> list[str]:
        """Document ids (sorted; fetched from Milvus on first use)."""
        if self._doc_ids is None:
            self._doc_ids = _doc_ids(self._client, self._target.collection)
        return list(self._doc_ids)

    @property
    def num_docs(self) -> int:
        """Number of indexed documents."""
        return int(self._meta["num_docs"])

    def search_tokens(self, queries_tokens: Sequence[Sequence[str]], k: int) -> Run:
        """Top ``k`` hits for each pre-tokenised query (tokens from :attr:`tokenizer`), best first.

        A query with no token gets ``[]`` (as :meth:`BM25Index.search_tokens`). Scores are Milvus's BM25
        scores (Milvus Lite reports them negated as distances; they are returned positive).

        Raises:
            ValueError: If ``k`` is not a positive int.
            TypeError: If a query is a str instead of a token list.
            RetrievalError: If Milvus fails to answer.
        """
        kk = min(_check_k(k), self.num_docs, _MAX_TOPK)
        texts: list[str] = []
        for position, tokens in enumerate(queries_tokens):
            if isinstance(tokens, str):
                raise TypeError(
                    f"queries_tokens[{position}] is the str {tokens!r:.40}, not a token list; use search() for texts."
                )
            texts.append(joined_tokens(tokens))
        run: Run = [[] for _ in texts]
        asked = [row for row, text in enumerate(texts) if text]
        if len(asked) < len(texts):
            logger.info(
                "bm25 %r (milvus): %d of %d queries have no token; they get no hits",
                self.name,
                len(texts) - len(asked),
                len(texts),
            )
        params = {"metric_type": "BM25", "params": {}}
        for start, stop in _batches(len(asked), _SEARCH_BATCH):
            rows = asked[start:stop]
            try:
                result = self._client.search(
                    self._target.collection,
                    data=[texts[row] for row in rows],
                    anns_field=SPARSE_FIELD,
                    limit=kk,
                    search_params=params,
                    output_fields=[],
                )
            except Exception as exc:  # MilvusException, grpc errors
                raise RetrievalError(
                    f"{self._target}: BM25 search failed for queries {rows[0]}..{rows[-1]}: {exc}"
                ) from exc
            for row, hits in zip(rows, result, strict=True):
                run[row] = [Hit(_hit_id(hit), abs(float(hit["distance"]))) for hit in hits]
        return run

    def search(self, queries: Sequence[str], k: int) -> Run:
        """Return the top ``k`` hits for each query (tokenised with the index's tokenizer), in query order.

        Raises:
            ValueError: If ``k`` is not a positive int or ``queries`` is a single string.
        """
        if isinstance(queries, str):
            raise ValueError("queries must be a sequence of strings, not one str; wrap it in a list.")
        return self.search_tokens(self._tokenizer.tokenize_many(queries), k)

    def check_compatible(self, corpus_hash: str) -> None:
        """Refuse a corpus other than the one the index was built from (as :meth:`BM25Index.check_compatible`).

        Raises:
            IndexMismatchError: Naming both hashes and how to fix it.
        """
        if corpus_hash != self._meta.get("corpus_hash"):
            raise IndexMismatchError(
                f"BM25 index {self.name!r} ({self.num_docs} docs, built {self._meta.get('built_at')}, "
                f"{self._target}) was built from corpus {str(self._meta.get('corpus_hash'))[:12]}, but the corpus "
                f"in use is {str(corpus_hash)[:12]}; use the matching corpus or {REBUILD_HINT}."
            )

    def __repr__(self) -> str:
        return f"MilvusBM25Index(name={self.name!r}, {self._target}, docs={self.num_docs})"
