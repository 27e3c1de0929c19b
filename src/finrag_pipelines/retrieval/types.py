"""The one retriever interface shared by BM25, dense and fused retrievers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable


class RetrievalError(RuntimeError):
    """A retriever could not answer. Never turn this into an empty result or a zero score."""


class IndexMismatchError(ValueError):
    """An index does not belong to the corpus / encoder / tokenizer it is used with."""


@dataclass(frozen=True)
class Hit:
    """One retrieved document."""

    doc_id: str
    score: float


# one ranked list of hits per query, in query order
Run = list[list[Hit]]


@runtime_checkable
class Retriever(Protocol):
    """Anything that maps a batch of query texts to ranked hits."""

    name: str

    def search(self, queries: Sequence[str], k: int) -> Run:
        """Return the top ``k`` hits for each query, best first, in query order."""
        ...
