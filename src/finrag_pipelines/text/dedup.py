"""Exact and near-duplicate detection for documents and generated texts.

Near duplicates: 64-bit SimHash over character n-grams (vectorised with numpy), candidate pairs found
with banded LSH — splitting the 64 bits into ``max_hamming + 1`` bands guarantees (pigeonhole) that
every pair within ``max_hamming`` bits shares at least one band — then verified by the exact Hamming
distance and, against SimHash collisions on short texts, by character n-gram Jaccard similarity.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_BITS = np.arange(64, dtype=np.uint64)
_IGNORED = re.compile(r"[\s\W_]+", re.UNICODE)


def dedup_key(text: str) -> str:
    """Key for exact duplicates: lower-cased text without whitespace and punctuation."""
    return hashlib.sha1(_IGNORED.sub("", text.lower()).encode("utf-8")).hexdigest()


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def ngram_hashes(text: str, n: int) -> np.ndarray:
    """64-bit hashes of all character n-grams of ``text`` (whitespace/punctuation removed), with repeats."""
    clean = _IGNORED.sub("", text.lower())
    codes = np.frombuffer(clean.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if codes.size == 0:
        return codes
    if codes.size < n:
        n = int(codes.size)
    width = codes.size - n + 1
    acc = np.zeros(width, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i in range(n):
            acc = _splitmix64(acc ^ codes[i : i + width])
    return acc


def simhash64(text: str, n: int = 3) -> int:
    """64-bit SimHash of the character n-grams of ``text`` (0 for an empty text)."""
    hashes = ngram_hashes(text, n)
    if hashes.size == 0:
        return 0
    bits = ((hashes[:, None] >> _BITS) & np.uint64(1)).astype(np.int32)
    votes = bits.sum(axis=0) * 2 - hashes.size
    return int(sum(1 << i for i in range(64) if votes[i] > 0))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sets of n-gram hashes."""
    sa, sb = set(a.tolist()), set(b.tolist())
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


@dataclass(frozen=True)
class DuplicateMatch:
    """``index`` duplicates the earlier ``kept_index`` (``kind`` is ``exact`` or ``near``)."""

    index: int
    kept_index: int
    kind: str
    similarity: float


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def find_duplicates(
    texts: Sequence[str],
    *,
    near: bool = True,
    ngram: int = 3,
    max_hamming: int = 3,
    min_jaccard: float = 0.7,
) -> list[DuplicateMatch]:
    """Find exact and near duplicates; the first occurrence of each group is kept.

    Args:
        texts: texts in priority order (earlier ones are kept).
        near: also look for near duplicates (SimHash + Jaccard); exact ones are always found.
        ngram: character n-gram size.
        max_hamming: largest SimHash Hamming distance for a candidate pair (0..15).
        min_jaccard: n-gram Jaccard similarity a candidate pair must reach.

    Returns:
        one match per removed text, pointing at the kept representative of its group.
    """
    if not 0 <= max_hamming <= 15:
        raise ValueError(f"max_hamming must be within 0..15, got {max_hamming}")
    matches: list[DuplicateMatch] = []
    first_of: dict[str, int] = {}
    survivors: list[int] = []
    for i, text in enumerate(texts):
        key = dedup_key(text)
        if key in first_of:
            matches.append(DuplicateMatch(i, first_of[key], "exact", 1.0))
        else:
            first_of[key] = i
            survivors.append(i)
    if not near or len(survivors) < 2:
        return matches

    grams = {i: ngram_hashes(texts[i], ngram) for i in survivors}
    prints = {i: simhash64(texts[i], ngram) for i in survivors}
    bands = max_hamming + 1
    edges = [int(e) for e in np.linspace(0, 64, bands + 1)]
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i in survivors:
        for band in range(bands):
            lo, hi = edges[band], edges[band + 1]
            buckets[band, (prints[i] >> lo) & ((1 << (hi - lo)) - 1)].append(i)

    best: dict[int, float] = {}
    checked: set[tuple[int, int]] = set()
    parent_list = list(range(len(texts)))
    for members in buckets.values():
        for a_pos, a in enumerate(members):
            for b in members[a_pos + 1 :]:
                if (a, b) in checked:
                    continue
                checked.add((a, b))
                if bin(prints[a] ^ prints[b]).count("1") > max_hamming:
                    continue
                sim = jaccard(grams[a], grams[b])
                if sim < min_jaccard:
                    continue
                ra, rb = _find(parent_list, a), _find(parent_list, b)
                if ra != rb:
                    keep, drop = min(ra, rb), max(ra, rb)
                    parent_list[drop] = keep
                    best[b] = max(best.get(b, 0.0), sim)
    for i in survivors:
        root = _find(parent_list, i)
        if root != i:
            matches.append(DuplicateMatch(i, root, "near", best.get(i, min_jaccard)))
    matches.sort(key=lambda m: m.index)
    return matches
