"""Checks and conversions shared by the lexical backends that search with pre-tokenised queries as text
(Lucene, Milvus): ``k`` validated, each query's tokens joined into the text the engine analyses."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def check_k(k: Any) -> int:
    """``k`` as an int, or a ValueError if it is not a positive int."""
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}.")
    return int(k)


def query_texts(
    queries_tokens: Sequence[Sequence[str]], join: Callable[[Sequence[str]], str], what: str
) -> tuple[list[str], list[int]]:
    """Each query's tokens joined by ``join``, and the rows whose text is not empty (the ones to ask).

    The queries left without a token are counted in one log line naming ``what`` (the index); they get no
    hits.

    Raises:
        TypeError: If a query is a str instead of a token list.
    """
    texts: list[str] = []
    for position, tokens in enumerate(queries_tokens):
        if isinstance(tokens, str):
            raise TypeError(
                f"queries_tokens[{position}] is the str {tokens!r:.40}, not a token list; use search() "
                "for texts."
            )
        texts.append(join(tokens))
    asked = [row for row, text in enumerate(texts) if text]
    if len(asked) < len(texts):
        logger.info(
            "%s: %d of %d queries have no token; they get no hits", what, len(texts) - len(asked), len(texts)
        )
    return texts, asked
