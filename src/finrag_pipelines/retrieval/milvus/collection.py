"""What the Milvus dense and BM25 collections share: build keys, idempotent writes, checked opening.

A collection records in its properties the hash of everything its rows were built from (``build key``) and,
once every row is in and indexed, the index's ``meta.json`` contents. :func:`prepare_collection` compares the
build key of what is about to be written with the stored one: the same inputs and a complete collection are
kept as they are, a partly written one is completed with upserts keyed by ``doc_id``, anything else is
dropped and rebuilt. :func:`open_collection` refuses a collection that does not match its ``meta.json``.

Kedro-free library module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from finrag_pipelines.retrieval.milvus.connection import MilvusTarget, connect
from finrag_pipelines.retrieval.types import IndexMismatchError, RetrievalError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
BACKEND = "milvus"
REBUILD_HINT = "rebuild it with `kedro run --env milvus --pipelines index_build`"
ID_FIELD = "doc_id"
VARCHAR_MAX = 65535  # Milvus's VARCHAR limit, in bytes
SEARCH_BATCH = 256  # queries per search request
MAX_TOPK = 16384  # Milvus's limit on limit

_BUILD_KEY = "finrag_build_key"  # collection property: hash of everything the rows were built from
_META_PROP = "finrag_meta"  # collection property: the meta JSON, set once every row is in and indexed


def build_key(build_inputs: Any) -> str:
    """The sha256 of the JSON of everything a collection's rows are built from."""
    payload = json.dumps(build_inputs, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()


def _count(client: Any, collection: str) -> int:
    rows = client.query(collection, filter="", output_fields=["count(*)"], consistency_level="Strong")
    return int(rows[0]["count(*)"])


def _properties(client: Any, collection: str) -> dict[str, str]:
    return dict(client.describe_collection(collection).get("properties") or {})


def batches(n: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive slices of ``size`` over ``n`` items."""
    for start in range(0, n, size):
        yield start, min(n, start + size)


def _progress(total: int, desc: str, show: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="doc", disable=not show, leave=False)


def prepare_collection(client: Any, target: MilvusTarget, key: str, num_docs: int) -> str:
    """Decide what to do with an existing collection: ``"keep"``, ``"resume"`` or ``"create"``.

    Drops a collection built from other inputs (logging why).
    """
    name = target.collection
    if not client.has_collection(name):
        return "create"
    props = _properties(client, name)
    if props.get(_BUILD_KEY) != key:
        logger.info(
            "milvus: %s was built from other inputs (build key %s, now %s); dropping and rebuilding it",
            target,
            str(props.get(_BUILD_KEY))[:12],
            key[:12],
        )
        client.drop_collection(name)
        return "create"
    if props.get(_META_PROP):
        count = _count(client, name)
        if count == num_docs:
            return "keep"
        logger.warning("milvus: %s holds %d rows, expected %d; completing it", target, count, num_docs)
    return "resume"


def kept_meta(client: Any, target: MilvusTarget) -> dict[str, Any]:
    """The meta stored in a complete collection that :func:`prepare_collection` keeps; loads it for search."""
    stored = json.loads(_properties(client, target.collection)[_META_PROP])
    client.load_collection(target.collection)
    return stored


def create_collection(client: Any, target: MilvusTarget, schema: Any, index_params: Any, key: str) -> None:
    """Create the collection with its schema and index, recording the build key."""
    client.create_collection(
        target.collection, schema=schema, index_params=index_params, properties={_BUILD_KEY: key}
    )


def write_rows(
    client: Any,
    target: MilvusTarget,
    action: str,
    num_rows: int,
    rows: Callable[[int, int], list[dict[str, Any]]],
    batch_size: int,
    show_progress: bool,
) -> float:
    """Insert (new collection) or upsert (one being completed: no duplicate doc_ids) every row, in batches.

    Args:
        client: A ``pymilvus.MilvusClient``.
        target: The collection.
        action: ``"create"`` (insert) or ``"resume"`` (upsert), from :func:`prepare_collection`.
        num_rows: Number of rows.
        rows: ``rows(start, stop)`` gives the rows of that slice.
        batch_size: Rows per request.
        show_progress: Show a tqdm bar.

    Returns:
        Seconds spent.
    """
    write = client.insert if action == "create" else client.upsert
    started = time.perf_counter()
    with _progress(num_rows, f"milvus {target.collection}", show_progress) as bar:
        for start, stop in batches(num_rows, batch_size):
            write(target.collection, rows(start, stop))
            bar.update(stop - start)
    return time.perf_counter() - started


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


def complete_collection(
    client: Any, target: MilvusTarget, field_name: str, meta: dict[str, Any], timeout_s: float
) -> None:
    """Wait for ``field_name``'s index, stamp ``meta["built_at"]`` and store ``meta`` (marks it complete).

    Raises:
        RetrievalError: If the index is not built within ``timeout_s`` or its build failed.
    """
    _wait_for_index(client, target, field_name, timeout_s)
    meta["built_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    client.alter_collection_properties(
        target.collection, properties={_META_PROP: json.dumps(meta, ensure_ascii=False)}
    )


def open_collection(target: MilvusTarget, meta: Mapping[str, Any], label: str) -> Any:
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
            f"{str(props.get(_BUILD_KEY))[:12]}, meta.json expects {str(milvus['build_key'])[:12]}); "
            f"{REBUILD_HINT}."
        )
    count = _count(client, target.collection)
    if count != meta.get("num_docs"):
        raise IndexMismatchError(
            f"{label} index: {target} holds {count} rows but meta.json says {meta.get('num_docs')}; "
            f"{REBUILD_HINT}."
        )
    client.load_collection(target.collection)
    return client


def fetch_doc_ids(client: Any, collection: str) -> list[str]:
    """Every document id in the collection, sorted."""
    ids: list[str] = []
    iterator = client.query_iterator(collection, batch_size=10000, filter="", output_fields=[ID_FIELD])
    try:
        while batch := iterator.next():
            ids.extend(str(row[ID_FIELD]) for row in batch)
    finally:
        iterator.close()
    return sorted(ids)


def hit_id(hit: Mapping[str, Any]) -> str:
    """A search hit's primary key (pymilvus names it after the field; older clients call it ``id``)."""
    return str(hit[ID_FIELD] if ID_FIELD in hit else hit["id"])


def id_max_length(doc_ids: Sequence[str]) -> int:
    """The VARCHAR length of the primary key field for these ids (twice the longest, at least 64 bytes)."""
    longest = max(len(doc_id.encode("utf-8")) for doc_id in doc_ids)
    if longest > VARCHAR_MAX:
        raise ValueError(f"a doc_id is {longest} bytes long; Milvus allows {VARCHAR_MAX}. Shorten the ids.")
    return max(64, min(VARCHAR_MAX, 2 * longest))
