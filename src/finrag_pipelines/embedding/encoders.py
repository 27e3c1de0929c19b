"""Text encoders for dense retrieval: Qwen3-Embedding style HF models and the offline USE baseline.

The query instruction template lives here and nowhere else: mining, indexing, serving and
evaluation all call :func:`format_query` (through :meth:`Encoder.encode_queries`), so a query is
always encoded with the identical string. Documents never get an instruction.

Every encoder has a ``fingerprint``: a sha256 over everything that changes its vectors
(:meth:`Encoder.describe`) plus a hash of the model files, so an index or a cached vector can be
checked against the encoder that is about to be used with it (:mod:`.fingerprint`).

The encoders: :class:`~.hf_encoder.HFEncoder` (Qwen3-Embedding style HF models),
:class:`~.use_encoder.USEEncoder` (the offline USE baseline); :func:`~.factory.build_encoder` builds either
from a parameters block.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

QUERY_TEMPLATE = "Instruct: {task}\nQuery:{query}"
"""The Qwen3-Embedding query instruction. Documents are encoded without any instruction."""


def format_query(task: str | None, query: str) -> str:
    """Wrap a query in the Qwen3-Embedding instruction template.

    Args:
        task: One-sentence task description, e.g. "Given a question, retrieve passages that
            answer it". ``None`` or an empty string means no instruction.
        query: The raw query text.

    Returns:
        ``QUERY_TEMPLATE.format(task=task, query=query)``, or ``query`` unchanged when there is no task.
    """
    if not task:
        return query
    return QUERY_TEMPLATE.format(task=task, query=query)


@runtime_checkable
class Encoder(Protocol):
    """Anything that turns texts into L2-normalised float32 vectors for inner-product search."""

    @property
    def name(self) -> str:
        """Short human-readable name, used in logs and run names."""
        ...

    @property
    def dim(self) -> int:
        """Vector dimension."""
        ...

    @property
    def query_task(self) -> str | None:
        """Instruction put in front of queries (``None``: queries are encoded as they are)."""
        ...

    @property
    def fingerprint(self) -> str:
        """sha256 hex digest of ``describe()`` and of the model content."""
        ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Encode queries (with the instruction, if any) into a float32 ``(n, dim)`` array."""
        ...

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Encode documents (never with an instruction) into a float32 ``(n, dim)`` array."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable settings: everything that changes the vectors."""
        ...


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Return float32 rows scaled to unit L2 norm (all-zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


def check_texts(texts: Sequence[str], what: str) -> list[str]:
    """Validate a batch of texts and return it as a list."""
    if isinstance(texts, str):
        raise TypeError(
            f"{what} must be a sequence of strings, got one str {texts[:40]!r}; wrap it in a list."
        )
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"{what}[{i}] is {type(text).__name__} {text!r:.60}, expected str.")
    return items
