"""The dictionaries and stopword lists a :class:`~finrag_pipelines.text.tokenize.FinanceTokenizer` is built
from: read (shipped with the package or from files), parsed with errors naming ``file:line``, and kept as
their exact text so a saved tokenizer does not depend on the files any more.

Kedro-free library module.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

BUILTIN = "builtin"
"""``stopwords=BUILTIN`` selects the stopword list shipped with the package."""

_RESOURCES = "finrag_pipelines.text.resources"
_BUILTIN_DICT = "finance_dict.txt"
_BUILTIN_STOPWORDS = "stopwords_zh.txt"
_TAG = re.compile(r"[a-z]+")


class TokenizerConfigError(ValueError):
    """A tokenizer setting, dictionary or stopword file is invalid; the message names it and the fix."""


@dataclass(frozen=True)
class TextResource:
    """The exact text of a dictionary or stopword file, with where it came from."""

    source: str
    text: str

    @property
    def sha256(self) -> str:
        """sha256 of the UTF-8 text."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class DictEntry:
    """One jieba dictionary line: the word (NFKC), its frequency and part-of-speech tag if given."""

    word: str
    freq: int | None
    tag: str | None


def nfkc(text: str) -> str:
    """NFKC normal form (full-width letters, digits and punctuation become ASCII)."""
    return unicodedata.normalize("NFKC", text)


def read_builtin(name: str) -> TextResource:
    """A file shipped in ``finrag_pipelines/text/resources``."""
    text = resources.files(_RESOURCES).joinpath(name).read_text(encoding="utf-8")
    return TextResource(source=f"{BUILTIN}:{name}", text=text)


def read_file(path: str | os.PathLike[str], setting: str) -> TextResource:
    """A UTF-8 file named by the setting ``setting`` (named in errors)."""
    file = Path(path)
    if not file.is_file():
        raise TokenizerConfigError(
            f"{setting}: file {str(file)!r} does not exist (resolved from {os.getcwd()}); "
            "fix the path in the tokenizer parameters or remove the entry."
        )
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TokenizerConfigError(f"{setting}: {file} is not UTF-8 ({exc}); re-save it as UTF-8.") from exc
    return TextResource(source=str(file), text=text)


def string_list(value: Any, setting: str) -> list[str]:
    """The setting ``setting`` as a list of non-empty strings (a single string is refused)."""
    if isinstance(value, (str, bytes)):
        raise TokenizerConfigError(
            f"{setting} must be a list of strings, got the single string {value!r}; write it as a YAML list "
            f"(`{setting}: [{value!r}]`)."
        )
    try:
        items = list(value)
    except TypeError:
        raise TokenizerConfigError(
            f"{setting} must be a list of strings, got {type(value).__name__} {value!r}."
        ) from None
    for i, item in enumerate(items):
        if not isinstance(item, (str, os.PathLike)) or not str(item).strip():
            raise TokenizerConfigError(f"{setting}[{i}] must be a non-empty string, got {item!r}.")
    return [str(item) for item in items]


def parse_user_dict(text: str, source: str) -> list[DictEntry]:
    """Parse a jieba user dictionary (``word [freq] [tag]`` per line).

    Args:
        text: File contents.
        source: Where the text came from, for error messages.

    Returns:
        The entries in file order (blank lines skipped).

    Raises:
        TokenizerConfigError: On a malformed line, naming ``source:line``.
    """
    entries: list[DictEntry] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip().lstrip("\ufeff")
        if not line:
            continue
        parts = line.split()
        freq: int | None = None
        tag: str | None = None
        for part in parts[1:]:
            if part.isdigit() and freq is None and tag is None:
                freq = int(part)
            elif _TAG.fullmatch(part) and tag is None:
                tag = part
            else:
                raise TokenizerConfigError(
                    f"{source}:{lineno}: {line!r} is not a jieba dictionary line `word [freq] [tag]` (freq a "
                    "positive integer, tag lowercase letters such as n, nt, nz; words cannot contain spaces)."
                )
        if freq == 0:
            raise TokenizerConfigError(
                f"{source}:{lineno}: frequency 0 for {parts[0]!r} would force-split the word in every jieba "
                "tokenizer of the process (a jieba global); remove the line or give a positive frequency."
            )
        entries.append(DictEntry(nfkc(parts[0]), freq, tag))
    return entries


def parse_stopwords(text: str) -> list[str]:
    """Stopwords of a list with one word per line (``#`` comments and blank lines skipped)."""
    words = []
    for raw in text.splitlines():
        line = raw.strip().lstrip("\ufeff")
        if line and not line.startswith("#"):
            words.append(line)
    return words


def finance_dictionary() -> TextResource:
    """The finance dictionary shipped in ``text/resources/finance_dict.txt``."""
    return read_builtin(_BUILTIN_DICT)


def stopword_list(stopwords: Any) -> TextResource | None:
    """The stopword list a tokenizer's ``stopwords`` setting names.

    Args:
        stopwords: ``"builtin"`` (the shipped list), a file path, or ``None`` (no stopwords).

    Raises:
        TokenizerConfigError: On another value or a missing / non-UTF-8 file.
    """
    if stopwords is None:
        return None
    if isinstance(stopwords, (str, os.PathLike)) and str(stopwords) == BUILTIN:
        return read_builtin(_BUILTIN_STOPWORDS)
    if isinstance(stopwords, (str, os.PathLike)):
        return read_file(stopwords, "stopwords")
    raise TokenizerConfigError(f"stopwords must be 'builtin', a file path or null, got {stopwords!r}.")
