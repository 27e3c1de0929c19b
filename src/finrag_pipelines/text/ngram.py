"""Character n-gram tokenisation: a dictionary-free lexical view of Chinese text for BM25.

:class:`CharNgramTokenizer` has the interface of :class:`~finrag_pipelines.text.tokenize.FinanceTokenizer`
that indexes and their callers use (``tokenize``, ``tokenize_many``, ``is_domain_term``, ``describe``,
``fingerprint``, ``save`` / ``load``), so a :class:`~finrag_pipelines.retrieval.bm25.index.BM25Index` built
with it is a lexical index like any other and the tokenizer saved in its folder tokenises queries exactly as
the documents were. Per text it

1. NFKC-normalises (as the word tokenizer does) and lowercases if configured;
2. cuts the text into segments at whitespace and, with ``split_on_punctuation``, at runs of punctuation and
   symbols (no n-gram crosses a sentence or field boundary);
3. emits every ``n``-character window of each segment; a segment shorter than ``n`` is emitted whole (a
   single-character answer such as ``是`` between commas still counts). With ``ascii_words``, runs of ASCII
   letters and digits (codes, numbers, ``ETF``) are emitted as one token each instead of being cut into
   windows, and split the Chinese text around them into separate segments.

There are no dictionaries and no stopwords: :meth:`CharNgramTokenizer.is_domain_term` is always false (an
n-gram index gets no domain-term weight).

Kedro-free library module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from finrag_pipelines.text.dictionaries import TokenizerConfigError, nfkc

KIND = "char_ngram"
FORMAT_VERSION = 1
SETTINGS_FILE = "tokenizer.json"

_SPACE = re.compile(r"\s+")
_PUNCT_OR_SPACE = re.compile(r"[\W_]+")  # whitespace, punctuation and symbols (Unicode-aware)
_ASCII_RUN = re.compile(r"[0-9a-zA-Z]+")
_SETTINGS = ("n", "lowercase", "split_on_punctuation", "ascii_words")


class CharNgramTokenizer:
    """Character n-grams of NFKC-normalised text.

    Args:
        n: Window length in characters (2 = bigrams).
        lowercase: Lowercase the text first.
        split_on_punctuation: No n-gram spans whitespace, punctuation or symbols (else only whitespace
            is removed and windows run across punctuation).
        ascii_words: Keep runs of ASCII letters and digits whole instead of cutting them into windows.

    Raises:
        TokenizerConfigError: On a bad setting.
    """

    def __init__(
        self,
        *,
        n: int = 2,
        lowercase: bool = True,
        split_on_punctuation: bool = True,
        ascii_words: bool = False,
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 8:
            raise TokenizerConfigError(f"n must be an integer within 1..8 (2 = bigrams), got {n!r}.")
        for setting, value in (
            ("lowercase", lowercase),
            ("split_on_punctuation", split_on_punctuation),
            ("ascii_words", ascii_words),
        ):
            if not isinstance(value, bool):
                raise TokenizerConfigError(f"{setting} must be true or false, got {value!r}.")
        self.n = n
        self.lowercase = lowercase
        self.split_on_punctuation = split_on_punctuation
        self.ascii_words = ascii_words
        self._splitter = _PUNCT_OR_SPACE if split_on_punctuation else _SPACE

    # ------------------------------------------------------------------ tokenisation

    def _windows(self, segment: str, out: list[str]) -> None:
        n = self.n
        if len(segment) <= n:
            out.append(segment)
        else:
            out.extend(segment[i : i + n] for i in range(len(segment) - n + 1))

    def _tokenize_one(self, text: str) -> list[str]:
        text = nfkc(text)
        if self.lowercase:
            text = text.lower()
        if self.split_on_punctuation:
            segments = self._splitter.split(text)
        else:
            segments = [self._splitter.sub("", text)]
        tokens: list[str] = []
        for segment in segments:
            if not segment:
                continue
            if not self.ascii_words:
                self._windows(segment, tokens)
                continue
            start = 0
            for match in _ASCII_RUN.finditer(segment):
                if match.start() > start:
                    self._windows(segment[start : match.start()], tokens)
                tokens.append(match.group())
                start = match.end()
            if start < len(segment):
                self._windows(segment[start:], tokens)
        return tokens

    def tokenize(self, text: str) -> list[str]:
        """The n-grams of one text, in text order (``""`` gives ``[]``).

        Raises:
            TypeError: If ``text`` is not a string.
        """
        if not isinstance(text, str):
            raise TypeError(f"tokenize() takes a str, got {type(text).__name__} {text!r:.60}.")
        return self._tokenize_one(text)

    def tokenize_many(self, texts: Sequence[str]) -> list[list[str]]:
        """The n-grams of each text, in order (in-process: n-grams cost less than a worker start-up).

        Raises:
            TypeError: If ``texts`` is one str or an item is not a string (naming its position).
        """
        if isinstance(texts, str):
            raise TypeError(
                "tokenize_many() takes a sequence of texts, not one str; use tokenize() or wrap it in a list."
            )
        out = []
        # one str object per distinct n-gram across the batch: a corpus of 1M documents has ~136M n-grams but
        # a few hundred thousand distinct ones, so the lists hold pointers (8 bytes), not ~80-byte copies
        shared: dict[str, str] = {}
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"tokenize_many(): item {i} is {type(text).__name__} {text!r:.60}, not str.")
            out.append([shared.setdefault(token, token) for token in self._tokenize_one(text)])
        return out

    def is_domain_term(self, token: str) -> bool:
        """Always false: an n-gram tokenizer has no dictionary."""
        return False

    @property
    def domain_terms(self) -> frozenset[str]:
        """No domain terms (an n-gram tokenizer has no dictionary)."""
        return frozenset()

    # ------------------------------------------------------------------ identity and persistence

    def settings(self) -> dict[str, Any]:
        """The constructor arguments (JSON-serialisable)."""
        return {name: getattr(self, name) for name in _SETTINGS}

    def describe(self) -> dict[str, Any]:
        """``kind``, ``format_version`` and the settings (recorded in an index's ``meta.json``)."""
        return {"kind": KIND, "format_version": FORMAT_VERSION, **self.settings()}

    @property
    def fingerprint(self) -> str:
        """sha256 of :meth:`describe` (every setting changes the tokens)."""
        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode("utf-8")).hexdigest()

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``tokenizer.json`` (kind, settings, fingerprint) into ``folder`` (created)."""
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        saved = {
            "format_version": FORMAT_VERSION,
            "kind": KIND,
            "settings": self.settings(),
            "describe": self.describe(),
            "fingerprint": self.fingerprint,
        }
        tmp = target / f".tmp-{SETTINGS_FILE}-{os.getpid()}"
        tmp.write_text(json.dumps(saved, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, target / SETTINGS_FILE)
        return target

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> CharNgramTokenizer:
        """Restore a tokenizer written by :meth:`save`.

        Raises:
            TokenizerConfigError: On a missing or malformed ``tokenizer.json``, another kind or format
                version, or a fingerprint that the restored settings do not reproduce.
        """
        path = Path(folder) / SETTINGS_FILE
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.get("kind") != KIND or saved.get("format_version") != FORMAT_VERSION:
                raise TokenizerConfigError(
                    f"{path}: kind {saved.get('kind')!r} format_version {saved.get('format_version')!r}, "
                    "this "
                    f"code reads kind {KIND!r} format_version {FORMAT_VERSION}; rebuild the index."
                )
            tokenizer = cls(**{name: saved["settings"][name] for name in _SETTINGS})
        except OSError as exc:
            raise TokenizerConfigError(f"cannot read {path} ({exc}); save the tokenizer again.") from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, TokenizerConfigError):
                raise
            raise TokenizerConfigError(
                f"{path} is malformed ({type(exc).__name__}: {exc}); save the tokenizer again."
            ) from exc
        if tokenizer.fingerprint != saved.get("fingerprint"):
            raise TokenizerConfigError(
                f"{path}: restored fingerprint {tokenizer.fingerprint[:12]} != saved "
                f"{str(saved.get('fingerprint'))[:12]}; rebuild the index."
            )
        return tokenizer

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"CharNgramTokenizer({settings})"
