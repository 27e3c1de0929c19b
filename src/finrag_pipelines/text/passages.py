"""Splitting long documents into passages: Chinese sentence ends, table rows kept whole, sentence overlap.

A document's body is cut into units, then packed greedily into passages of at most ``max_chars`` characters:

* line breaks always end a unit, and a line that fits in ``max_chars`` is one unit (a ``key：value`` field of
  a structured document stays whole); a longer line is cut into sentences, each ending after ``。！？!?；;``
  (closing quotes and brackets stay with their sentence) or a ``…`` run;
* a *table row* (a line holding ``|`` or a tab) is one unit that is never cut, even when it alone exceeds
  ``max_chars`` (its passage is then longer, and counted);
* any other unit longer than ``max_chars`` is cut into ``max_chars`` pieces (counted);
* consecutive passages share whole trailing units of the previous passage up to ``overlap_chars`` (never a
  part of a sentence).

The title is not part of the body: each passage row carries its document's title, so the indexed text
(:func:`~finrag_pipelines.text.corpus.index_text`) repeats it in every passage. A document whose body fits in
one passage keeps its id; the passages of a longer one are ``<doc_id>#<k>`` (k from 0), and every row names
its ``parent_id``.

Kedro-free library module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

_SENTENCE_END = re.compile(r"(?:[。！？!?；;]+|…+|\.{3,})[”’」』）)\]】\"']*")
PASSAGE_SEPARATOR = "#"


@dataclass
class SplitStats:
    """Counts of one corpus split (for logs and the corpus_prep report)."""

    documents: int = 0
    documents_split: int = 0
    passages: int = 0
    oversized_table_rows: int = 0
    hard_cut_units: int = 0
    longest_passage_chars: int = 0
    by_document: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, int]:
        """JSON-ready counts (without the per-document table)."""
        return {
            "documents": self.documents,
            "documents_split": self.documents_split,
            "passages": self.passages,
            "oversized_table_rows": self.oversized_table_rows,
            "hard_cut_units": self.hard_cut_units,
            "longest_passage_chars": self.longest_passage_chars,
        }


def is_table_row(line: str) -> bool:
    """A line of a table: ``|`` or tab separated cells."""
    return "|" in line or "\t" in line


def sentences(line: str) -> list[str]:
    """The sentences of one line, each keeping its end punctuation (and closing quotes)."""
    out, start = [], 0
    for match in _SENTENCE_END.finditer(line):
        out.append(line[start : match.end()])
        start = match.end()
    if start < len(line):
        out.append(line[start:])
    return [s for s in out if s.strip()]


def units(text: str, max_chars: int, stats: SplitStats | None = None) -> list[str]:
    """The unbreakable pieces of a body, each ending where a passage may end (a line keeps its newline)."""
    out: list[str] = []
    lines = text.split("\n")
    for i, line in enumerate(lines):
        end = "\n" if i < len(lines) - 1 else ""
        if not line.strip():
            continue
        if len(line) <= max_chars or is_table_row(line):
            if stats is not None and len(line) > max_chars:
                stats.oversized_table_rows += 1
            out.append(line + end)
            continue
        pieces = sentences(line)
        for j, sentence in enumerate(pieces):
            tail = end if j == len(pieces) - 1 else ""
            if len(sentence) <= max_chars:
                out.append(sentence + tail)
                continue
            if stats is not None:
                stats.hard_cut_units += 1
            cuts = [sentence[k : k + max_chars] for k in range(0, len(sentence), max_chars)]
            out.extend(cuts[:-1])
            out.append(cuts[-1] + tail)
    return out


def pack(pieces: Sequence[str], max_chars: int, overlap_chars: int) -> list[str]:
    """Greedy packing of units into passages of at most ``max_chars`` (a lone oversized unit stays whole),
    each new passage starting with the previous one's trailing units that fit in ``overlap_chars``."""
    passages: list[list[str]] = []
    current: list[str] = []
    size = 0
    fresh = 0  # units in `current` that are not overlap
    for unit in pieces:
        if current and fresh and size + len(unit) > max_chars:
            passages.append(current)
            carry: list[str] = []
            carried = 0
            for prev in reversed(current):
                if carried + len(prev) > overlap_chars or carried + len(prev) + len(unit) > max_chars:
                    break
                carry.insert(0, prev)
                carried += len(prev)
            current, size, fresh = carry, carried, 0
        current.append(unit)
        size += len(unit)
        fresh += 1
    if current and fresh:
        passages.append(current)
    return ["".join(p).strip() for p in passages]


def split_document(
    text: str, max_chars: int, overlap_chars: int, stats: SplitStats | None = None
) -> list[str]:
    """The passages of one body (``[text]`` when it fits in ``max_chars``).

    Raises:
        ValueError: If ``max_chars`` < 1 or ``overlap_chars`` is not within ``[0, max_chars)``.
    """
    if max_chars < 1 or not 0 <= overlap_chars < max_chars:
        raise ValueError(
            f"passages need max_chars >= 1 and 0 <= overlap_chars < max_chars, got {max_chars} and "
            f"{overlap_chars}."
        )
    if len(text) <= max_chars:
        return [text]
    return [p for p in pack(units(text, max_chars, stats), max_chars, overlap_chars) if p]


def passage_id(doc_id: str, k: int) -> str:
    """``<doc_id>#<k>``."""
    return f"{doc_id}{PASSAGE_SEPARATOR}{k}"


def split_corpus(
    doc_ids: Sequence[str], texts: Sequence[str], max_chars: int, overlap_chars: int
) -> tuple[list[tuple[str, str, str, int]], SplitStats]:
    """Split every document body.

    Returns:
        ``(rows, stats)``: one ``(passage_id, parent_id, text, k)`` row per passage in corpus order (an
        unsplit document keeps its id, k 0), and the counts.

    Raises:
        ValueError: If a passage id equals another document's id (rename that document).
    """
    stats = SplitStats(documents=len(doc_ids))
    rows: list[tuple[str, str, str, int]] = []
    for doc_id, text in zip(doc_ids, texts, strict=True):
        parts = split_document(text, max_chars, overlap_chars, stats)
        if len(parts) == 1:
            rows.append((doc_id, doc_id, parts[0], 0))
        else:
            stats.documents_split += 1
            rows.extend((passage_id(doc_id, k), doc_id, part, k) for k, part in enumerate(parts))
        stats.by_document[doc_id] = len(parts)
    ids = [r[0] for r in rows]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        clash = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise ValueError(
            f"passage id {clash!r} is also the id of another document; rename that document (ids containing "
            f"'{PASSAGE_SEPARATOR}<number>') or turn passages off."
        )
    stats.passages = len(rows)
    stats.longest_passage_chars = max((len(r[2]) for r in rows), default=0)
    return rows, stats


def parent_map(passage_ids: Sequence[str], parent_ids: Sequence[str] | None) -> dict[str, str]:
    """Passage id → document id (identity when ``parent_ids`` is None: a corpus without passages)."""
    if parent_ids is None:
        return {p: p for p in passage_ids}
    return dict(zip(passage_ids, parent_ids, strict=True))


def document_ranking(passage_ids: Sequence[str], parent_of: Mapping[str, str]) -> list[str]:
    """A ranked passage list as a ranked document list: each document at its best passage's rank.

    Ranked lists are best first, so the first passage of a document is its maximum score.
    """
    seen: set[str] = set()
    out = []
    for pid in passage_ids:
        doc = parent_of.get(pid, pid)
        if doc not in seen:
            seen.add(doc)
            out.append(doc)
    return out
