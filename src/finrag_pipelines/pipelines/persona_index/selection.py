"""Pure helpers of persona_index: row validation, keyword matching and greedy embedding deduplication."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np

from finrag_pipelines.text.corpus import SourceRow

# letters that continue an English word; CJK characters, digits and punctuation end it
_LATIN = r"A-Za-z\u00c0-\u024f"
# a keyword's final letter that an ending may replace, and the first letters such an ending starts with
_DROPPED_ENDINGS = {"e": "aeiouy", "y": "i"}


class PersonaFormatError(ValueError):
    """A persona row is malformed; the message names the file and line."""


@dataclass(frozen=True)
class Persona:
    """One validated persona with its provenance."""

    persona_id: str
    persona: str
    source: str


def persona_id(text: str) -> str:
    """A stable id for a persona text: ``p`` + the first 12 hex digits of its sha1
    (independent of line order)."""
    return "p" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def parse_persona(row: SourceRow) -> Persona:
    """Validate one ``{"persona": "<text>"}`` row; whitespace runs are collapsed to one space.

    Raises:
        PersonaFormatError: naming file and line when the row is not an object
            with a non-empty string persona.
    """
    data = row.data
    if not isinstance(data, dict):
        raise PersonaFormatError(
            f'{row.where}: expected a JSON object like {{"persona": "..."}}, got {type(data).__name__}'
        )
    text = data.get("persona")
    if not isinstance(text, str):
        raise PersonaFormatError(
            f"{row.where}: field 'persona' must be a string, got {text!r:.80} (keys: {sorted(data)[:8]})"
        )
    text = " ".join(text.split())
    if not text:
        raise PersonaFormatError(f"{row.where}: field 'persona' is empty; remove the line or fill it in")
    return Persona(persona_id(text), text, row.where)


class KeywordMatcher:
    """Finds which finance keywords a persona mentions.

    English keywords match whole words (or phrases), case-insensitively, optionally followed by one of
    ``suffixes``: attached to the keyword, or replacing a final "e" (endings that start with a vowel) or
    "y" (endings that start with "i"). So with suffixes ``s, es, ial, ics, ation`` "finance" matches
    "Finances" and "financial", "tax" matches "taxes" and "taxation" but not "taxi", "economy" matches
    "economics", and "treasury" does not match "treasures". Chinese keywords match as substrings.

    Args:
        keywords_en: English words or phrases.
        suffixes: Accepted endings.
        keywords_zh: Chinese keywords.
    """

    def __init__(
        self, keywords_en: Sequence[str], suffixes: Sequence[str], keywords_zh: Sequence[str]
    ) -> None:
        self._en = [(kw, _english_pattern(kw, suffixes)) for kw in dict.fromkeys(keywords_en)]
        self._zh = list(dict.fromkeys(keywords_zh))

    @property
    def keywords(self) -> list[str]:
        """Every keyword, English first, in configuration order."""
        return [kw for kw, _ in self._en] + self._zh

    def match(self, text: str) -> list[str]:
        """Return the keywords found in ``text``, in configuration order."""
        return [kw for kw, pattern in self._en if pattern.search(text)] + [
            kw for kw in self._zh if kw in text
        ]


def _alternatives(suffixes: Sequence[str]) -> str:
    return "(?:" + "|".join(re.escape(s) for s in sorted(set(suffixes), key=len, reverse=True)) + ")"


def _english_pattern(keyword: str, suffixes: Sequence[str]) -> re.Pattern[str]:
    words = keyword.split()
    *head, last = words
    stems = [f"{re.escape(last)}{_alternatives(suffixes)}?"]
    if len(last) > 3 and last[-1].lower() in _DROPPED_ENDINGS:
        # finance → financ+ial (a suffix starting with a vowel); economy → econom+ic (one starting with "i")
        fitting = [s for s in suffixes if s[0].lower() in _DROPPED_ENDINGS[last[-1].lower()]]
        if fitting:
            stems.append(f"{re.escape(last[:-1])}{_alternatives(fitting)}")
    body = "".join(f"{re.escape(word)}[\\s\\-]+" for word in head) + f"(?:{'|'.join(stems)})"
    return re.compile(f"(?<![{_LATIN}]){body}(?![{_LATIN}])", re.IGNORECASE)


def greedy_near_duplicates(
    vectors: np.ndarray, threshold: float, block_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy near-duplicate removal in input order by cosine similarity.

    Row ``i`` is kept unless its cosine to a row kept before it is ``>= threshold``. Kept rows go into a
    FAISS inner-product index that grows block by block; within a block rows are compared directly, so
    memory stays ``O(block_size**2 + n*dim)`` instead of ``n**2``.

    Args:
        vectors: ``(n, dim)`` embeddings (rows are L2-normalised here, so any scale works).
        threshold: Cosine at or above which a row duplicates a kept one.
        block_size: Rows compared per block.

    Returns:
        ``kept_as``: int array, ``i`` for a kept row, else the row of the most similar kept row;
        ``cosine``: float array, the highest cosine to a row kept before it (NaN for the first row).

    Raises:
        ValueError: On a bad shape, non-finite values, a threshold outside (0, 1] or block_size < 1.
    """
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"vectors must be a 2-d (n, dim) array, got shape {matrix.shape}.")
    if not np.isfinite(matrix).all():
        bad = int(np.flatnonzero(~np.isfinite(matrix).all(axis=1))[0])
        raise ValueError(f"row {bad} has NaN/inf values; re-encode it.")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}.")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}.")
    n = matrix.shape[0]
    matrix = np.ascontiguousarray(matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12))
    kept_as = np.arange(n, dtype=np.int64)
    cosine = np.full(n, np.nan, dtype=np.float64)
    index = faiss.IndexFlatIP(matrix.shape[1])
    kept_rows: list[int] = []
    for start in range(0, n, block_size):
        block = matrix[start : start + block_size]
        if index.ntotal:
            scores, rows = index.search(block, 1)
            prev_score, prev_row = scores[:, 0].astype(np.float64), np.asarray(kept_rows)[rows[:, 0]]
        else:
            prev_score, prev_row = np.full(len(block), -np.inf), np.full(len(block), -1)
        within = block @ block.T
        block_kept: list[int] = []
        for i in range(len(block)):
            best, best_row = float(prev_score[i]), int(prev_row[i])
            if block_kept:
                local = within[i, block_kept]
                j = int(np.argmax(local))
                if local[j] > best:
                    best, best_row = float(local[j]), start + block_kept[j]
            if best_row < 0:
                block_kept.append(i)
                continue
            cosine[start + i] = best
            if best >= threshold:
                kept_as[start + i] = best_row
            else:
                block_kept.append(i)
        index.add(block[block_kept])
        kept_rows.extend(start + i for i in block_kept)
    return kept_as, cosine
