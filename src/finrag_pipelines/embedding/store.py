"""A resumable, content-addressed cache of embedding vectors.

Vectors are keyed by ``(encoder fingerprint, role, sha1 of the exact text)`` and written in
append-only shard files under ``<folder>/<fingerprint>/<role>/``. Each shard is written to a
temporary file, fsync'ed and renamed into place, so a crash (even ``kill -9``) loses at most the
chunk being encoded; a shard that is torn anyway (a file system that does not honour the rename
order, a copy cut short) fails its checksum and is set aside with a warning, and its vectors are
recomputed. Stored vectors are the exact float32 bytes the encoder returned.

Shard layout (little endian)::

    magic b"FEMBSH01" | dim uint32 | n uint64 | n x 20-byte sha1 digests | n x dim float32
    | sha256 of all the bytes before
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from finrag_pipelines.project_paths import portable_values

if TYPE_CHECKING:
    from finrag_pipelines.embedding.encoders import Encoder

logger = logging.getLogger(__name__)

Role = Literal["query", "document"]
ROLES: tuple[str, ...] = ("query", "document")

_MAGIC = b"FEMBSH01"
_HEADER = struct.Struct("<8sIQ")
_DIGEST_BYTES = 20
_CHECKSUM_BYTES = 32
_FINGERPRINT_RE = re.compile(r"^[0-9a-f]{16,128}$")


def text_key(text: str) -> str:
    """Return the store key of a text: the sha1 hex digest of its exact UTF-8 bytes.

    Args:
        text: The text as it is given to the encoder (before any query instruction).

    Returns:
        40 hex characters.
    """
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class EmbeddingStore:
    """Content-addressed, crash-safe embedding cache in a local folder.

    Args:
        folder: Root folder; created on first write.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._counter = 0

    def __repr__(self) -> str:
        return f"EmbeddingStore({str(self.folder)!r})"

    def _role_dir(self, fingerprint: str, role: str) -> Path:
        """Return (without creating) the shard folder of one encoder and role."""
        if not isinstance(fingerprint, str) or not _FINGERPRINT_RE.match(fingerprint):
            raise ValueError(
                f"encoder fingerprint {fingerprint!r} is not a lowercase hex digest; "
                "pass encoder.fingerprint."
            )
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of {ROLES}.")
        return self.folder / fingerprint / role

    def iter_shards(self, fingerprint: str, role: Role) -> Iterator[tuple[Path, list[str], np.ndarray]]:
        """Yield ``(path, keys, vectors)`` of every valid shard of one encoder and role, one shard at a time.

        Torn or corrupt shards are renamed to ``*.corrupt`` with a warning and skipped; their texts count as
        missing. Memory holds one shard (``chunk_size`` vectors) at a time.
        """
        folder = self._role_dir(fingerprint, role)
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("shard-*.bin")):
            try:
                keys, matrix = _read_shard(path)
            except (OSError, ValueError) as exc:
                bad = path.with_suffix(".corrupt")
                logger.warning(
                    "ignoring torn/corrupt embedding shard %s (%s); moved to %s, "
                    "its vectors will be recomputed",
                    path,
                    exc,
                    bad.name,
                )
                try:
                    os.replace(path, bad)
                except OSError:
                    pass
                continue
            yield path, keys, matrix

    def load(self, fingerprint: str, role: Role) -> dict[str, np.ndarray]:
        """Read every valid shard of one encoder and role into memory (the whole role: for small stores;
        :func:`encode_with_store` streams the shards instead).

        Torn or corrupt shards are renamed to ``*.corrupt`` with a warning; their texts count as missing.

        Args:
            fingerprint: ``encoder.fingerprint``.
            role: "query" or "document".

        Returns:
            Mapping from text key (sha1 hex) to a float32 vector (a read-only view).

        Raises:
            ValueError: If valid shards disagree on the vector dimension.
        """
        vectors: dict[str, np.ndarray] = {}
        dims: set[int] = set()
        for _, keys, matrix in self.iter_shards(fingerprint, role):
            dims.add(matrix.shape[1])
            for i, key in enumerate(keys):
                vectors[key] = matrix[i]
        if len(dims) > 1:
            raise ValueError(
                f"embedding shards in {self._role_dir(fingerprint, role)} have different dimensions "
                f"{sorted(dims)}; the fingerprint should have changed with the model. Delete that folder to "
                "rebuild the cache."
            )
        return vectors

    def count(self, fingerprint: str, role: Role) -> int:
        """Return how many distinct texts are stored for one encoder and role (reads one shard at a time)."""
        keys: set[str] = set()
        for _, shard_keys, _ in self.iter_shards(fingerprint, role):
            keys.update(shard_keys)
        return len(keys)

    def fill(self, fingerprint: str, role: Role, plan: EncodingPlan) -> int:
        """Copy the stored vectors of the plan's missing texts into ``plan.vectors``, one shard at a time.

        Args:
            fingerprint: ``encoder.fingerprint``.
            role: "query" or "document".
            plan: The plan; texts found are removed from ``plan.missing``.

        Returns:
            How many distinct texts were found.

        Raises:
            ValueError: When a shard's vectors have another dimension than ``plan.vectors``.
        """
        found = 0
        dim = plan.vectors.shape[1]
        for path, keys, matrix in self.iter_shards(fingerprint, role):
            if not plan.missing:
                break
            if matrix.shape[1] != dim:
                raise ValueError(
                    f"embedding shard {path} holds {matrix.shape[1]}-d vectors but the encoder's are "
                    f"{dim}-d; "
                    "the fingerprint should have changed with the model. Delete "
                    f"{self._role_dir(fingerprint, role)} to rebuild the cache."
                )
            picked = [(i, key) for i, key in enumerate(keys) if key in plan.missing]
            if picked:
                plan.store([key for _, key in picked], matrix[[i for i, _ in picked]])
                found += len(picked)
        return found

    def put(
        self,
        fingerprint: str,
        role: Role,
        keys: Sequence[str],
        vectors: np.ndarray,
        describe: Mapping[str, Any] | None = None,
    ) -> Path:
        """Durably write one shard: temp file, fsync, rename, fsync of the folder.

        Args:
            fingerprint: ``encoder.fingerprint``.
            role: "query" or "document".
            keys: Text keys (see :func:`text_key`), one per row.
            vectors: float32 array of shape ``(len(keys), dim)``.
            describe: ``encoder.describe()``, written once as ``encoder.json`` for people reading the folder.

        Returns:
            The shard path.

        Raises:
            ValueError: If keys and vectors do not match.
        """
        folder = self._role_dir(fingerprint, role)
        matrix = np.ascontiguousarray(vectors)
        if matrix.dtype != np.float32 or matrix.ndim != 2 or matrix.shape[0] != len(keys):
            raise ValueError(
                f"put() needs a float32 array of shape ({len(keys)}, dim); got {matrix.dtype} {matrix.shape}."
            )
        digests = b"".join(bytes.fromhex(key) for key in keys)
        if len(digests) != _DIGEST_BYTES * len(keys):
            raise ValueError("put() keys must be sha1 hex digests from text_key().")
        folder.mkdir(parents=True, exist_ok=True)
        if describe is not None and not (folder.parent / "encoder.json").exists():
            _atomic_write(
                folder.parent / "encoder.json",
                json.dumps(portable_values(dict(describe)), ensure_ascii=False, indent=2).encode("utf-8"),
            )
        body = (
            _HEADER.pack(_MAGIC, matrix.shape[1], matrix.shape[0]) + digests + matrix.astype("<f4").tobytes()
        )
        payload = body + hashlib.sha256(body).digest()
        self._counter += 1
        path = folder / f"shard-{time.time_ns():020d}-{os.getpid()}-{self._counter:06d}.bin"
        _atomic_write(path, payload)
        return path


def _atomic_write(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via a fsync'ed temp file and an atomic rename."""
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    with tmp.open("wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # platforms without directory fds
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _read_shard(path: Path) -> tuple[list[str], np.ndarray]:
    """Parse and verify one shard file.

    Raises:
        ValueError: If the file is short, has a bad magic or fails its checksum.
    """
    data = path.read_bytes()
    if len(data) < _HEADER.size + _CHECKSUM_BYTES:
        raise ValueError(f"only {len(data)} bytes")
    magic, dim, n = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise ValueError(f"bad magic {magic!r}")
    expected = _HEADER.size + n * _DIGEST_BYTES + n * dim * 4 + _CHECKSUM_BYTES
    if len(data) != expected:
        raise ValueError(f"{len(data)} bytes, expected {expected} for {n} vectors of dim {dim}")
    body = data[:-_CHECKSUM_BYTES]
    if hashlib.sha256(body).digest() != data[-_CHECKSUM_BYTES:]:
        raise ValueError("checksum mismatch")
    offset = _HEADER.size
    digests = data[offset : offset + n * _DIGEST_BYTES]
    keys = [digests[i * _DIGEST_BYTES : (i + 1) * _DIGEST_BYTES].hex() for i in range(n)]
    offset += n * _DIGEST_BYTES
    matrix = np.frombuffer(data, dtype="<f4", count=n * dim, offset=offset).reshape(n, dim)
    return keys, matrix


@dataclass
class EncodingPlan:
    """What an encoding run has to do, and the output it fills in as vectors arrive.

    Attributes:
        vectors: The output, float32 ``(len(texts), dim)`` in input order (rows of repeated texts are
            copied from their first occurrence by :func:`assemble_vectors`).
        first_row: Key -> the first input row holding that text.
        missing: Key -> text for each distinct text not filled yet, in first-seen order.
        repeats: ``(row, first_row)`` of every input row whose text occurred before.
        cached_rows: Input rows answered by the store.
        cached_distinct: Distinct texts answered by the store.
    """

    vectors: np.ndarray
    first_row: dict[str, int]
    missing: dict[str, str]
    repeats: list[tuple[int, int]]
    cached_rows: int = 0
    cached_distinct: int = 0

    def store(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Put the vectors of ``keys`` (each still missing) into their rows."""
        rows = [self.first_row[key] for key in keys]
        self.vectors[rows] = vectors
        for key in keys:
            self.missing.pop(key, None)


def check_encode_args(texts: Sequence[str], role: str, chunk_size: int) -> list[str]:
    """Validate the arguments shared by the local and the Ray encoding paths; return the texts as a list.

    Raises:
        ValueError: On a bad role or chunk size.
        TypeError: When ``texts`` is one string.
    """
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {ROLES}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one str; wrap it in a list.")
    return list(texts)


def plan_encoding(
    items: Sequence[str],
    role: Role,
    store: EmbeddingStore | None,
    fingerprint: str,
    dim: int,
    out: np.ndarray | None = None,
) -> EncodingPlan:
    """Look the texts up in the store (streaming its shards) and list the distinct ones still to encode.

    Args:
        items: Texts in the order wanted.
        role: "query" or "document".
        store: The cache, or ``None`` (everything is missing).
        fingerprint: ``encoder.fingerprint`` (ignored without a store).
        dim: The encoder's dimension.
        out: Where to put the vectors (e.g. an ``np.memmap``), float32 ``(len(items), dim)``; ``None``
            allocates an array.

    Raises:
        ValueError: When ``out`` has another shape or dtype, or a stored vector another dimension.
    """
    if out is None:
        out = np.empty((len(items), dim), dtype=np.float32)
    elif out.dtype != np.float32 or out.shape != (len(items), dim):
        raise ValueError(
            f"out must be a float32 array of shape ({len(items)}, {dim}); got {out.dtype} {out.shape}."
        )
    first_row: dict[str, int] = {}
    missing: dict[str, str] = {}
    repeats: list[tuple[int, int]] = []
    for row, text in enumerate(items):
        key = text_key(text)
        first = first_row.setdefault(key, row)
        if first == row:
            missing[key] = text
        else:
            repeats.append((row, first))
    plan = EncodingPlan(out, first_row, missing, repeats)
    if store is not None:
        plan.cached_distinct = store.fill(fingerprint, role, plan)
        if plan.cached_distinct:
            found = np.ones(len(items), dtype=bool)
            found[[first_row[key] for key in missing]] = False
            repeat_firsts = np.fromiter((first for _, first in repeats), dtype=np.int64, count=len(repeats))
            plan.cached_rows = plan.cached_distinct + int(found[repeat_firsts].sum())
    return plan


def check_vectors(vectors: np.ndarray, n: int, dim: int, encoder_name: str) -> np.ndarray:
    """Return ``vectors`` if it is a float32 ``(n, dim)`` array.

    Raises:
        ValueError: Naming the encoder, the shape and dtype it returned and the expected ones.
    """
    vectors = np.asarray(vectors)
    if vectors.dtype != np.float32 or vectors.shape != (n, dim):
        raise ValueError(
            f"encoder {encoder_name} returned {vectors.dtype} {vectors.shape}, expected float32 ({n}, {dim})."
        )
    return vectors


def assemble_vectors(
    plan: EncodingPlan,
    role: Role,
    dim: int,
    encoder_name: str,
    store: EmbeddingStore | None,
    fingerprint: str,
) -> np.ndarray:
    """Copy the rows of repeated texts from their first occurrence once every distinct text has its vector,
    and log; returns ``plan.vectors``.

    Raises:
        RuntimeError: When a text still has no vector (a bug in the caller).
    """
    if plan.missing:
        raise RuntimeError(f"{len(plan.missing)} {role} texts got no vector from {encoder_name}; a bug.")
    for start in range(0, len(plan.repeats), 65536):
        pairs = np.asarray(plan.repeats[start : start + 65536], dtype=np.int64)
        plan.vectors[pairs[:, 0]] = plan.vectors[pairs[:, 1]]
    n = plan.vectors.shape[0]
    logger.info(
        "%s %s embeddings for %d texts: %d from the store, %d computed (%d distinct)%s",
        encoder_name,
        role,
        n,
        plan.cached_rows,
        n - plan.cached_rows,
        len(plan.first_row) - plan.cached_distinct,
        f" (store {store.folder})" if store is not None else " (no store)",
    )
    return plan.vectors


def encode_with_store(
    encoder: Encoder,
    texts: Sequence[str],
    role: Role,
    store: EmbeddingStore | None,
    chunk_size: int = 1024,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Encode texts, reusing stored vectors and storing new ones chunk by chunk.

    Only texts missing from the store are encoded (each distinct text once), ``chunk_size`` at a
    time; each chunk is written as a durable shard before the next starts, so an interrupted run
    resumes where it stopped. :func:`finrag_pipelines.embedding.distributed.encode_with_store_ray` does
    the same on a Ray actor pool. The store is read one shard at a time, straight into the output, so
    memory is the output plus one shard (and the output can be an ``np.memmap``).

    Args:
        encoder: The encoder; its ``fingerprint`` keys the cache.
        texts: Texts in the order wanted.
        role: "query" (encoded with ``encode_queries``) or "document" (``encode_documents``).
        store: The cache; ``None`` encodes everything without caching.
        chunk_size: Texts encoded and written per shard.
        out: Where to write the vectors: float32 ``(len(texts), encoder.dim)``, e.g. an ``np.memmap`` for
            a corpus whose vectors do not fit in memory; ``None`` allocates an array.

    Returns:
        float32 array of shape ``(len(texts), encoder.dim)`` in input order (``out`` when given),
        bit-identical to what the encoder returned when each vector was computed.

    Raises:
        ValueError: On a bad role or chunk size, a bad ``out``, or when the encoder returns a wrongly shaped
            array.
    """
    items = check_encode_args(texts, role, chunk_size)
    encode = encoder.encode_queries if role == "query" else encoder.encode_documents
    dim = encoder.dim
    if not items:
        return np.empty((0, dim), dtype=np.float32) if out is None else out
    fingerprint = encoder.fingerprint if store is not None else ""
    plan = plan_encoding(items, role, store, fingerprint, dim, out)
    del items
    describe = encoder.describe()
    pending = list(plan.missing.items())
    for start in range(0, len(pending), chunk_size):
        chunk = pending[start : start + chunk_size]
        vectors = check_vectors(encode([text for _, text in chunk]), len(chunk), dim, encoder.name)
        chunk_keys = [key for key, _ in chunk]
        if store is not None:
            store.put(fingerprint, role, chunk_keys, vectors, describe=describe)
        plan.store(chunk_keys, vectors)
        if len(pending) > chunk_size:
            logger.info(
                "encoded %d/%d missing %s texts", min(start + chunk_size, len(pending)), len(pending), role
            )
    return assemble_vectors(plan, role, dim, encoder.name, store, fingerprint)
