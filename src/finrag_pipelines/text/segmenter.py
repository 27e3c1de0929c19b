"""The jieba segmenter behind a :class:`~finrag_pipelines.text.tokenize.FinanceTokenizer`: a private
``jieba`` (or ``jieba_next``) tokenizer loaded with the domain dictionaries, and jieba's search-mode
sub-words.

Kedro-free library module.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from finrag_pipelines.text.dictionaries import DictEntry, TokenizerConfigError

SEGMENTERS = ("auto", "jieba", "jieba_next")
# extra_words get at least this jieba frequency (the shipped dictionary uses the same floor), enough to
# keep every finance term whole against jieba's default dictionary
DOMAIN_WORD_MIN_FREQ = 3000

_ASCII_WORD = re.compile(r"[0-9A-Za-z+]+")
_HAN_WORD = re.compile(r"[\u4e00-\u9fff]+")  # a word of CJK ideographs only (search-mode sub-words)
# default jieba dictionary (FREQ, total) per segmenter, loaded once per process
_BASE_DICTS: dict[str, tuple[dict[str, int], int]] = {}
_BASE_LOCK = threading.Lock()


def new_segmenter(choice: str) -> tuple[Any, str]:
    """A fresh, private, loaded jieba-compatible tokenizer object and its description.

    The default dictionary is read once per process and segmenter kind; later tokenizers start from a copy
    of it (jieba's ``FREQ``/``total``), which takes milliseconds instead of the ~0.5 s of a cache load.
    """
    seg: Any = None
    name = ""
    if choice in ("auto", "jieba_next"):
        try:
            import jieba_next
        except ImportError:
            if choice == "jieba_next":
                raise TokenizerConfigError(
                    "segmenter 'jieba_next' is not installed; `pip install jieba-next==1.0.0rc1` or use "
                    "segmenter 'auto' (falls back to jieba)."
                ) from None
        else:
            seg, name = jieba_next.Tokenizer(), f"jieba_next {getattr(jieba_next, '__version__', '?')}"
    if seg is None:
        import jieba

        seg, name = jieba.Tokenizer(), f"jieba {getattr(jieba, '__version__', '?')}"
    with _BASE_LOCK:
        base = _BASE_DICTS.get(name)
        if base is None:
            seg.initialize()
            _BASE_DICTS[name] = (dict(seg.FREQ), seg.total)
            return seg, name
    seg.FREQ, seg.total = dict(base[0]), base[1]
    seg.initialized = True
    return seg, name


def segmenter_label(choice: str) -> str:
    """The segmenter ``choice`` resolves to here: ``"jieba"`` or ``"jieba_next"`` (without loading it)."""
    if choice == "jieba":
        return "jieba"
    try:
        import jieba_next  # noqa: F401
    except ImportError:
        return "jieba"
    return "jieba_next"


def add_domain_words(seg: Any, entries: Sequence[DictEntry], extra_words: Sequence[str]) -> None:
    """Give the segmenter the dictionary entries and extra words (ASCII-only ones are left to jieba).

    Words without a frequency get one that keeps them whole (at least :data:`DOMAIN_WORD_MIN_FREQ`).
    """
    unpriced: list[DictEntry] = []
    for entry in entries:
        if _ASCII_WORD.fullmatch(entry.word):
            continue
        if entry.freq is None:
            unpriced.append(entry)
        else:
            seg.add_word(entry.word, entry.freq, entry.tag)
    unpriced += [DictEntry(w, None, None) for w in extra_words if w and not _ASCII_WORD.fullmatch(w)]
    # words without a frequency get one that keeps them whole; all suggestions first, then the adds,
    # since every add_word makes jieba_next rebuild its prefix trie on the next cut
    freqs = [max(DOMAIN_WORD_MIN_FREQ, int(seg.suggest_freq(e.word, tune=False)) + 1) for e in unpriced]
    for entry, freq in zip(unpriced, freqs):
        seg.add_word(entry.word, freq, entry.tag)


def with_subwords(pieces: list[str], freq: Mapping[str, int]) -> list[str]:
    """jieba's search mode: before each Chinese word longer than 2 (3) characters, the dictionary
    words among its 2-grams (3-grams)."""
    out: list[str] = []
    for word in pieces:
        size = len(word)
        if size > 2 and _HAN_WORD.fullmatch(word):
            out.extend(word[i : i + 2] for i in range(size - 1) if freq.get(word[i : i + 2]))
            if size > 3:
                out.extend(word[i : i + 3] for i in range(size - 2) if freq.get(word[i : i + 3]))
        out.append(word)
    return out
