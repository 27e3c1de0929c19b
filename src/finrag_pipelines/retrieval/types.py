"""The one retriever interface shared by BM25, dense and fused retrievers."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable


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


@dataclass(frozen=True)
class Unavailable:
    """Stands in for an optional encoder or index that does not exist yet (e.g. no fine-tuned model).

    It is carried through index_build and evaluation, which report the retriever as *not evaluated* with
    ``reason`` — never as a zero score — instead of failing a run that does not need it.
    """

    what: str
    reason: str

    def to_meta(self) -> dict[str, str]:
        """The ``meta.json`` of an index folder that records why the index was not built."""
        return {"status": "unavailable", "what": self.what, "reason": self.reason}

    def save(self, folder: os.PathLike[str] | str) -> None:
        """Write only ``meta.json`` (index folder datasets call ``save`` on what a node returns)."""
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        (path / "meta.json").write_text(
            json.dumps(self.to_meta(), ensure_ascii=False, indent=2), encoding="utf-8"
        )

    @classmethod
    def from_meta(cls, meta: dict[str, str]) -> Unavailable | None:
        """The stand-in recorded in an index ``meta.json``, or ``None`` for a real index."""
        if meta.get("status") != "unavailable":
            return None
        return cls(what=str(meta.get("what", "index")), reason=str(meta.get("reason", "unknown")))
