"""The evaluation queries' ``tune`` / ``report`` split: a seeded hash of each query id (order-free).

Shared by every step that tunes something on ``tune`` (evaluation's fusion, index_build's vocabulary
ablation), so they all see the same split when given the same ``tune_fraction`` and ``seed``.

Kedro-free library module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

TUNE = "tune"
REPORT = "report"


def split_of(query_id: str, tune_fraction: float, seed: int) -> str:
    """``"tune"`` or ``"report"`` for one query id."""
    digest = hashlib.sha256(f"{seed}:{query_id}".encode()).digest()
    return TUNE if int.from_bytes(digest[:8], "big") / 2**64 < tune_fraction else REPORT


def assign_splits(query_ids: Iterable[str], tune_fraction: float, seed: int) -> list[str]:
    """The split of each query id, in order."""
    return [split_of(str(q), tune_fraction, seed) for q in query_ids]
