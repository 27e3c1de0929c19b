"""Exact and near-duplicate detection for documents and generated texts.

Near duplicates: 64-bit SimHash over character n-grams (vectorised with numpy), candidate pairs found
with banded LSH — splitting the 64 bits into ``max_hamming + 1`` bands guarantees (pigeonhole) that
every pair within ``max_hamming`` bits shares at least one band — then verified by the exact Hamming
distance and, against SimHash collisions on short texts, by character n-gram Jaccard similarity.

Scale: SimHashes are computed for batches of texts at once (:func:`simhash64_many`); pairs sharing a band
are enumerated band by band from a sort of the band values, their Hamming distance checked in numpy, and
a pair is examined only in the first band it shares, so no set of checked pairs is kept. Only the texts in
a pair within ``max_hamming`` bits get their n-gram sets built (for the Jaccard check). Memory is
O(texts) (an 8-byte print and a few index arrays each), time O(texts + pairs sharing a band); with the
default 16-bit bands that is about ``texts² / 2^17`` pairs per band by chance (7.6 million at a million
texts) plus the real near-duplicate clusters.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_BITS = np.arange(64, dtype=np.uint64)
_IGNORED = re.compile(r"[\s\W_]+", re.UNICODE)
_BATCH_WINDOWS = 1 << 18  # n-gram windows per SimHash batch (bounds the batch's 64-column bit matrix)
_BATCH_TEXTS = 8192  # texts cleaned at a time
_BYTE_POPCOUNT = np.array([i.bit_count() for i in range(256)], dtype=np.uint8)


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


def _popcount64(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    return _BYTE_POPCOUNT[values.view(np.uint8).reshape(-1, 8)].sum(axis=1)


def _clean(text: str) -> str:
    return _IGNORED.sub("", text.lower())


def simhash64_many(texts: Sequence[str], n: int = 3) -> np.ndarray:
    """:func:`simhash64` of every text (bit-identical), computed for batches of texts at once.

    Texts are cleaned a batch at a time, so memory holds one batch's cleaned copies, not the corpus's.

    Returns:
        uint64 array, one print per text.
    """
    out = np.zeros(len(texts), dtype=np.uint64)
    for offset in range(0, len(texts), _BATCH_TEXTS):
        cleaned = [_clean(text) for text in texts[offset : offset + _BATCH_TEXTS]]
        lengths = np.fromiter(map(len, cleaned), dtype=np.int64, count=len(cleaned))
        for i in np.flatnonzero((lengths > 0) & (lengths < n)).tolist():  # shorter than one n-gram
            out[offset + i] = simhash64(cleaned[i], n)
        full = np.flatnonzero(lengths >= n)
        start = 0
        while start < full.size:
            windows = np.cumsum(lengths[full[start:]] - n + 1)
            stop = start + max(1, int(np.searchsorted(windows, _BATCH_WINDOWS, side="right")))
            batch = full[start:stop]
            out[offset + batch] = _simhash_batch([cleaned[i] for i in batch.tolist()], lengths[batch], n)
            start = stop
    return out


def _simhash_batch(cleaned: list[str], lengths: np.ndarray, n: int) -> np.ndarray:
    """SimHashes of cleaned texts that each hold at least one n-gram."""
    codes = np.frombuffer("".join(cleaned).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    width = codes.size - n + 1
    acc = np.zeros(width, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i in range(n):
            acc = _splitmix64(acc ^ codes[i : i + width])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    counts = lengths - n + 1
    # window positions that lie inside one text: each text's first ``counts`` positions
    keep = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
    bits = np.unpackbits(acc[keep].view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # set bits per text and bit position: summed along the contiguous axis (fast), then back to rows
    ones = np.add.reduceat(np.ascontiguousarray(bits.T), first, axis=1, dtype=np.int32).T
    votes = ones * 2 - counts[:, None]
    return np.ascontiguousarray(np.packbits(votes > 0, axis=1, bitorder="little")).view(np.uint64).ravel()


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
        one match per removed text, pointing at the kept representative of its group; a near duplicate's
        ``similarity`` is the Jaccard of the pair that joined it to its group.
    """
    if not 0 <= max_hamming <= 15:
        raise ValueError(f"max_hamming must be within 0..15, got {max_hamming}")
    matches: list[DuplicateMatch] = []
    first_of: dict[bytes, int] = {}
    survivors: list[int] = []
    for i, text in enumerate(texts):
        key = hashlib.sha1(_clean(text).encode("utf-8")).digest()  # dedup_key's digest
        first = first_of.setdefault(key, i)
        if first != i:
            matches.append(DuplicateMatch(i, first, "exact", 1.0))
        else:
            survivors.append(i)
    del first_of
    if not near or len(survivors) < 2:
        return matches
    ids = np.asarray(survivors, dtype=np.int64)
    prints = simhash64_many([texts[i] for i in survivors], ngram)
    pairs = _close_pairs(prints, max_hamming)  # positions in ``survivors``, a < b

    grams: dict[int, set[int]] = {}

    def gram_set(position: int) -> set[int]:
        found = grams.get(position)
        if found is None:
            found = grams[position] = set(ngram_hashes(texts[survivors[position]], ngram).tolist())
        return found

    parent = list(range(len(survivors)))
    best: dict[int, float] = {}
    for a, b in pairs.tolist():
        sa, sb = gram_set(a), gram_set(b)
        sim = 1.0 if not sa and not sb else len(sa & sb) / len(sa | sb)
        if sim < min_jaccard:
            continue
        ra, rb = _find(parent, a), _find(parent, b)
        if ra != rb:
            keep, drop = min(ra, rb), max(ra, rb)
            parent[drop] = keep
            best[b] = max(best.get(b, 0.0), sim)
    for position in range(len(survivors)):
        root = _find(parent, position)
        if root != position:
            matches.append(
                DuplicateMatch(int(ids[position]), int(ids[root]), "near", best.get(position, min_jaccard))
            )
    matches.sort(key=lambda m: m.index)
    return matches


def _close_pairs(prints: np.ndarray, max_hamming: int) -> np.ndarray:
    """``(a, b)`` rows (``a < b``, sorted) of the prints within ``max_hamming`` bits that share a band.

    Each pair is taken in the first band it shares only, so nothing remembers which pairs were seen.
    """
    bands = max_hamming + 1
    edges = [int(e) for e in np.linspace(0, 64, bands + 1)]
    values = [(prints >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1) for lo, hi in pairwise(edges)]
    found: list[np.ndarray] = []
    for band, value in enumerate(values):
        order = np.argsort(value, kind="stable")
        ordered = value[order]
        boundaries = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1], True])
        run_end = np.repeat(boundaries[1:], np.diff(boundaries))  # exclusive end of each position's run
        active = np.flatnonzero(run_end - np.arange(order.size) > 1)
        step = 1
        while active.size:
            a, b = order[active], order[active + step]
            close = _popcount64(prints[a] ^ prints[b]) <= max_hamming
            for earlier in values[:band]:  # shared an earlier band: already taken there
                close &= earlier[a] != earlier[b]
            if close.any():
                found.append(np.sort(np.stack([a[close], b[close]], axis=1), axis=1))
            step += 1
            active = active[run_end[active] - active > step]
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.concatenate(found)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
