"""The tokenizer interface lexical indexes are built and queried with, and loading a saved one by its kind.

Two implementations: :class:`~finrag_pipelines.text.tokenize.FinanceTokenizer` (jieba words with the finance
dictionary) and :class:`~finrag_pipelines.text.ngram.CharNgramTokenizer` (character n-grams). An index saves
its tokenizer in its folder; :func:`load_tokenizer` restores whichever kind was saved, so queries are always
tokenised exactly as the documents were.

Kedro-free library module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from finrag_pipelines.text import ngram
from finrag_pipelines.text.dictionaries import TokenizerConfigError
from finrag_pipelines.text.tokenize import FinanceTokenizer


@runtime_checkable
class Tokenizer(Protocol):
    """What an index needs from a tokenizer: the tokens, domain terms, an identity and persistence."""

    def tokenize(self, text: str) -> list[str]:
        """The tokens of one text."""
        ...

    def tokenize_many(self, texts: Sequence[str]) -> list[list[str]]:
        """The tokens of each text, in order."""
        ...

    def is_domain_term(self, token: str) -> bool:
        """Whether a token (as tokenize returns it) is a dictionary domain term."""
        ...

    def describe(self) -> dict[str, Any]:
        """Settings (JSON-serialisable) with a ``kind``, recorded in an index's ``meta.json``."""
        ...

    @property
    def fingerprint(self) -> str:
        """A hash of everything that changes the tokens."""
        ...

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write the tokenizer into ``folder`` so :func:`load_tokenizer` restores an identical one."""
        ...


def load_tokenizer(folder: str | os.PathLike[str]) -> Tokenizer:
    """Restore the tokenizer saved in ``folder``, whichever kind it is.

    Raises:
        TokenizerConfigError: On a missing or unreadable ``tokenizer.json`` or a tokenizer that cannot be
            restored (the message names the file).
    """
    path = Path(folder) / ngram.SETTINGS_FILE
    try:
        kind = json.loads(path.read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        kind = None  # FinanceTokenizer.load names the problem with the file
    if kind == ngram.KIND:
        return ngram.CharNgramTokenizer.load(folder)
    if kind not in (None, "finance_jieba"):
        raise TokenizerConfigError(
            f"{path}: unknown tokenizer kind {kind!r} (known: finance_jieba, {ngram.KIND}); rebuild the "
            "index."
        )
    return FinanceTokenizer.load(folder)
