"""Filters for generated queries (pure functions; the node in ``nodes.py`` applies them and counts)."""

from __future__ import annotations

from difflib import SequenceMatcher


def copied_span(query: str, document: str) -> int:
    """Length of the longest run of characters the query shares with the document."""
    if not query or not document:
        return 0
    match = SequenceMatcher(None, query, document, autojunk=False).find_longest_match(
        0, len(query), 0, len(document)
    )
    return match.size


def length_problem(query: str, min_chars: int, max_chars: int) -> str | None:
    """``"too_short"`` / ``"too_long"`` or ``None``."""
    size = len(query.strip())
    if size < min_chars:
        return "too_short"
    if size > max_chars:
        return "too_long"
    return None
