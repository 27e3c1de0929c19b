"""jieba tokenisation for Chinese finance text: a finance user dictionary, stopwords, codes and numbers kept.

:class:`FinanceTokenizer` owns a private jieba ``Tokenizer`` (never the module-global one), so a plain
tokenizer and a finance one can live side by side in one process. Per text it

1. NFKC-normalises (full-width letters, digits and punctuation become ASCII);
2. cuts out exchange-suffixed security codes (``000001.SZ``), numbers with thousands separators
   (``1,234.56``), decimals and percentages (``12.5%``) as whole tokens, which jieba would otherwise
   split at the dot, comma or percent sign (bare codes such as ``600519`` are whole in jieba already);
3. segments the rest with jieba (``cut(text, HMM=hmm)``) over its default dictionary plus the finance
   dictionary, user dictionaries and extra words; with ``search_mode`` it also emits the dictionary
   2- and 3-character words inside each longer Chinese word, as jieba's ``cut_for_search`` does, so a
   dictionary term stays whole *and* still matches text that uses only part of it;
4. drops tokens made only of whitespace, punctuation or symbols (ASCII and CJK), lowercases if
   configured, and drops stopwords.

Dictionary entries made only of ASCII letters and digits (``ETF``, ``ROE``) are domain terms but are not
given to jieba: jieba keeps ASCII runs whole anyway, and a short entry such as ``PE`` would otherwise cut
``PEG`` into ``PE`` + ``G``.

Segmenter: ``segmenter="auto"`` uses ``jieba_next`` (a Rust-accelerated jieba fork, several times faster)
when it is installed and plain ``jieba`` otherwise. After step 4 both give identical tokens (checked on
the whole FinTruthQA corpus with the finance dictionary; they differ only in how they split runs of
hyphens, which step 4 drops).

The dictionaries and stopword lists come from :mod:`~finrag_pipelines.text.dictionaries`, the segmenter from
:mod:`~finrag_pipelines.text.segmenter`, the saved folder format from
:mod:`~finrag_pipelines.text.tokenizer_folder`.

Kedro-free: settings are plain Python values, so they can come straight from YAML.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import re
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from finrag_pipelines.text.dictionaries import (
    BUILTIN,
    DictEntry,
    TextResource,
    TokenizerConfigError,
    finance_dictionary,
    nfkc,
    parse_stopwords,
    parse_user_dict,
    read_file,
    stopword_list,
    string_list,
)
from finrag_pipelines.text.segmenter import (
    SEGMENTERS,
    add_domain_words,
    new_segmenter,
    segmenter_label,
    with_subwords,
)
from finrag_pipelines.text.tokenizer_folder import (
    FORMAT_VERSION,
    malformed,
    read_tokenizer_folder,
    write_tokenizer_folder,
)

logger = logging.getLogger(__name__)

# tokenize_many() starts worker processes only for inputs at least this large (characters)
PARALLEL_MIN_CHARS = 400_000
_CHUNKS_PER_JOB = 4
# settings that do not change the tokens; left out of the fingerprint
_RUNTIME_KEYS = frozenset({"n_jobs", "segmenter", "user_dict_paths", "stopwords"})

_PROTECTED = re.compile(
    r"(?<![0-9A-Za-z.])("
    r"\d{4,6}\.(?:SH|SZ|BJ|HK|SS)(?![0-9A-Za-z])"  # exchange-suffixed codes: 600519.SH, 00700.HK
    r"|\d{1,3}(?:,\d{3})+(?:\.\d+)?%?(?![0-9,])"  # thousands separators: 1,234.56
    r"|\d+\.\d+%?(?![0-9.])"  # decimals and decimal percentages: 2.35, 12.5%
    r"|\d+%"  # integer percentages: 20%
    r")",
    re.IGNORECASE,
)
_JUNK = re.compile(r"[\W_]+")  # whitespace / punctuation / symbols only (Unicode-aware)
_MISSING: Any = object()
_CACHE_LIMIT = 2_000_000  # distinct raw segments remembered by the per-tokenizer cleaning cache


class FinanceTokenizer:
    """jieba tokenizer with a finance dictionary, stopwords and number/code protection.

    Args:
        use_finance_dict: Load the finance dictionary shipped in ``text/resources/finance_dict.txt``.
        user_dict_paths: Extra jieba user-dictionary files (``word [freq] [tag]`` per line; a word without
            freq gets one that keeps it whole, at least
            :data:`~finrag_pipelines.text.segmenter.DOMAIN_WORD_MIN_FREQ`).
        extra_words: Extra domain terms, kept whole (frequency chosen as for user words without one).
        stopwords: ``"builtin"`` for the shipped list, a file path (one word per line, ``#`` comments),
            or ``None`` for no stopwords.
        extra_stopwords: Stopwords added to the list above.
        lowercase: Lowercase tokens (after segmentation, so mixed dictionary words such as ``A股``
            still match) and compare stopwords / domain terms lowercased.
        hmm: jieba's HMM for words missing from the dictionaries.
        n_jobs: Worker processes :meth:`tokenize_many` may use for large inputs (1 = never).
        search_mode: Also emit the dictionary sub-words of long Chinese words (jieba's search mode).
        segmenter: ``"auto"`` (jieba_next if installed, else jieba), ``"jieba"`` or ``"jieba_next"``.
        user_dicts: User dictionaries given as text (e.g. a mined vocabulary), after those of
            ``user_dict_paths``; each keeps its ``source`` (provenance) in :meth:`describe` and in the saved
            folder.

    Raises:
        TokenizerConfigError: On a bad setting, a missing or malformed dictionary / stopword file.
    """

    def __init__(
        self,
        *,
        use_finance_dict: bool = True,
        user_dict_paths: Sequence[str | os.PathLike[str]] = (),
        extra_words: Sequence[str] = (),
        stopwords: str | os.PathLike[str] | None = BUILTIN,
        extra_stopwords: Sequence[str] = (),
        lowercase: bool = True,
        hmm: bool = True,
        n_jobs: int = 1,
        search_mode: bool = False,
        segmenter: str = "auto",
        user_dicts: Sequence[TextResource] = (),
    ) -> None:
        for setting, value in (
            ("use_finance_dict", use_finance_dict),
            ("lowercase", lowercase),
            ("hmm", hmm),
            ("search_mode", search_mode),
        ):
            if not isinstance(value, bool):
                raise TokenizerConfigError(f"{setting} must be true or false, got {value!r}.")
        finance = finance_dictionary() if use_finance_dict else None
        if isinstance(user_dicts, TextResource) or not all(isinstance(r, TextResource) for r in user_dicts):
            raise TokenizerConfigError(
                "user_dicts must be a list of TextResource (dictionary texts with their source), got "
                f"{user_dicts!r:.80}."
            )
        user_dicts = [
            read_file(p, f"user_dict_paths[{i}]")
            for i, p in enumerate(string_list(user_dict_paths, "user_dict_paths"))
        ] + list(user_dicts)
        stop_res = stopword_list(stopwords)
        self._setup(
            finance=finance,
            user_dicts=user_dicts,
            extra_words=string_list(extra_words, "extra_words"),
            stopwords_setting=None if stopwords is None else str(stopwords),
            stopwords_res=stop_res,
            extra_stopwords=string_list(extra_stopwords, "extra_stopwords"),
            lowercase=lowercase,
            hmm=hmm,
            n_jobs=n_jobs,
            search_mode=search_mode,
            segmenter=segmenter,
        )

    # ------------------------------------------------------------------ construction

    def _setup(
        self,
        *,
        finance: TextResource | None,
        user_dicts: list[TextResource],
        extra_words: list[str],
        stopwords_setting: str | None,
        stopwords_res: TextResource | None,
        extra_stopwords: list[str],
        lowercase: bool,
        hmm: bool,
        n_jobs: int,
        segmenter: str,
        search_mode: bool = False,
    ) -> None:
        if not isinstance(n_jobs, int) or isinstance(n_jobs, bool) or n_jobs < 1:
            raise TokenizerConfigError(f"n_jobs must be an integer >= 1, got {n_jobs!r}.")
        if segmenter not in SEGMENTERS:
            raise TokenizerConfigError(f"segmenter must be one of {SEGMENTERS}, got {segmenter!r}.")
        self._finance = finance
        self._user_dicts = list(user_dicts)
        self._extra_words = [nfkc(w.strip()) for w in extra_words]
        self._stopwords_setting = stopwords_setting
        self._stopwords_res = stopwords_res
        self._extra_stopwords = [w.strip() for w in extra_stopwords]
        self.lowercase = lowercase
        self.hmm = hmm
        self.search_mode = search_mode
        self.n_jobs = n_jobs
        self._segmenter_choice = segmenter
        # parse everything now: malformed files fail at construction, not at the first tokenize()
        self._dict_entries: list[DictEntry] = []
        if finance is not None:
            self._dict_entries += parse_user_dict(finance.text, finance.source)
        for res in self._user_dicts:
            self._dict_entries += parse_user_dict(res.text, res.source)
        terms = [e.word for e in self._dict_entries] + self._extra_words
        self._domain_terms = frozenset(self._norm(t) for t in terms if t)
        stop = parse_stopwords(stopwords_res.text) if stopwords_res is not None else []
        self._stopwords = frozenset(self._norm(nfkc(w)) for w in stop + self._extra_stopwords if w)
        self._segmenter: Any = None
        self._segmenter_name = ""
        self._lock = threading.Lock()
        self._cache: dict[str, Any] = {}

    @classmethod
    def plain(
        cls, *, lowercase: bool = True, hmm: bool = True, n_jobs: int = 1, segmenter: str = "auto"
    ) -> FinanceTokenizer:
        """The baseline: plain jieba, no user dictionary, no stopwords (punctuation/whitespace still dropped).

        Args:
            lowercase: Lowercase tokens.
            hmm: jieba's HMM for unknown words.
            n_jobs: Worker processes for large inputs.
            segmenter: See the class docstring.

        Returns:
            The tokenizer.
        """
        return cls(
            use_finance_dict=False,
            user_dict_paths=[],
            extra_words=[],
            stopwords=None,
            extra_stopwords=[],
            lowercase=lowercase,
            hmm=hmm,
            n_jobs=n_jobs,
            segmenter=segmenter,
        )

    def _norm(self, term: str) -> str:
        return term.lower() if self.lowercase else term

    def _ensure_segmenter(self) -> Any:
        """Create and load the private jieba tokenizer on first use (thread-safe)."""
        if self._segmenter is not None:
            return self._segmenter
        with self._lock:
            if self._segmenter is not None:
                return self._segmenter
            started = time.perf_counter()
            seg, name = new_segmenter(self._segmenter_choice)
            add_domain_words(seg, self._dict_entries, self._extra_words)
            seg.lcut("预热", HMM=self.hmm)  # build lazily-built structures now, before any fork
            self._segmenter_name = name
            self._segmenter = seg
            logger.info(
                "tokenizer ready in %.2fs: %s, %d domain terms, %d stopwords, hmm=%s, lowercase=%s",
                time.perf_counter() - started,
                name,
                len(self._domain_terms),
                len(self._stopwords),
                self.hmm,
                self.lowercase,
            )
            return seg

    # ------------------------------------------------------------------ tokenisation

    def _clean_new(self, token: str) -> str | None:
        """The kept form of a raw segment not seen before, or ``None`` when it is dropped; cached."""
        out: str | None = token
        if not token or _JUNK.fullmatch(token):
            out = None
        else:
            if self.lowercase:
                out = token.lower()
            if out in self._stopwords:
                out = None
        if len(self._cache) < _CACHE_LIMIT:
            self._cache[token] = out
        return out

    def _tokenize_one(self, text: str, seg: Any) -> list[str]:
        text = nfkc(text)
        cut = seg.cut
        hmm = self.hmm
        raw: list[str] = []
        start = 0
        for match in _PROTECTED.finditer(text):
            if match.start() > start:
                raw.extend(cut(text[start : match.start()], HMM=hmm))
            raw.append(match.group(1))
            start = match.end()
        if start < len(text):
            raw.extend(cut(text[start:] if start else text, HMM=hmm))
        if self.search_mode:
            raw = with_subwords(raw, seg.FREQ)
        cache_get = self._cache.get
        clean_new = self._clean_new
        tokens: list[str] = []
        for piece in raw:
            kept = cache_get(piece, _MISSING)
            if kept is _MISSING:
                kept = clean_new(piece)
            if kept is not None:
                tokens.append(kept)
        return tokens

    def tokenize(self, text: str) -> list[str]:
        """Tokenise one text.

        Args:
            text: Any string (``""`` gives ``[]``).

        Returns:
            The kept tokens in text order.

        Raises:
            TypeError: If ``text`` is not a string.
        """
        if not isinstance(text, str):
            raise TypeError(f"tokenize() takes a str, got {type(text).__name__} {text!r:.60}.")
        return self._tokenize_one(text, self._ensure_segmenter())

    def tokenize_many(self, texts: Sequence[str]) -> list[list[str]]:
        """Tokenise many texts, with ``n_jobs`` worker processes when the input is large.

        Workers are only started for at least :data:`PARALLEL_MIN_CHARS` characters (process start-up
        and result transfer cost more than they save below that), never from inside a daemonic process
        (e.g. a multiprocessing pool worker). On Linux they are forked and inherit the loaded dictionaries;
        elsewhere they are spawned and reload them.

        Args:
            texts: Texts, in order.

        Returns:
            One token list per text, in order.

        Raises:
            TypeError: If an item is not a string (naming its position).
        """
        if isinstance(texts, str):
            raise TypeError(
                "tokenize_many() takes a sequence of texts, not one str; use tokenize() or wrap it in a list."
            )
        items = list(texts)
        for i, text in enumerate(items):
            if not isinstance(text, str):
                raise TypeError(f"tokenize_many(): item {i} is {type(text).__name__} {text!r:.60}, not str.")
        seg = self._ensure_segmenter()
        n_chars = sum(map(len, items))
        jobs = min(self.n_jobs, os.cpu_count() or 1, max(1, len(items) // _CHUNKS_PER_JOB))
        if jobs > 1 and n_chars >= PARALLEL_MIN_CHARS:
            if multiprocessing.current_process().daemon:
                logger.info(
                    "tokenize_many: inside a daemonic process, tokenising %d texts in-process", len(items)
                )
            else:
                return self._tokenize_parallel(items, jobs)
        return [self._tokenize_one(text, seg) for text in items]

    def _tokenize_parallel(self, items: list[str], jobs: int) -> list[list[str]]:
        n_chunks = jobs * _CHUNKS_PER_JOB
        size = -(-len(items) // n_chunks)
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        # fork (Linux): workers inherit the loaded dictionaries; elsewhere spawn, and each worker reloads them
        ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        started = time.perf_counter()
        with ctx.Pool(jobs, initializer=_init_worker, initargs=(self,)) as pool:
            parts = pool.map(_worker_tokenize, chunks, chunksize=1)
        logger.debug(
            "tokenize_many: %d texts on %d processes in %.2fs",
            len(items),
            jobs,
            time.perf_counter() - started,
        )
        return [tokens for part in parts for tokens in part]

    # ------------------------------------------------------------------ queries on the vocabulary

    def is_domain_term(self, token: str) -> bool:
        """Whether a token is a finance-dictionary, user-dictionary or extra word (as tokens come out).

        Args:
            token: A token as returned by :meth:`tokenize` (lowercased when ``lowercase``).

        Returns:
            True for domain terms.
        """
        return token in self._domain_terms

    def is_dictionary_word(self, word: str) -> bool:
        """Whether jieba's dictionary (with this tokenizer's domain words loaded) already holds ``word``.

        Args:
            word: A word (NFKC-normalised here).

        Returns:
            True for a word of jieba's dictionary, the finance dictionary, a user dictionary or extra words.
        """
        word = nfkc(word)
        if self._norm(word) in self._domain_terms:
            return True
        return int(self._ensure_segmenter().FREQ.get(word) or 0) > 0

    def dictionary_cut(self, text: str) -> list[str]:
        """jieba's dictionary-only cut (no HMM) of ``text`` with this tokenizer's domain words loaded.

        Unlike :meth:`tokenize`, nothing is dropped, lowercased or protected: it shows how the dictionary
        alone splits a string (e.g. whether a mined term is just two known words).
        """
        return list(self._ensure_segmenter().cut(nfkc(text), HMM=False))

    @property
    def domain_terms(self) -> frozenset[str]:
        """All domain terms, in token form."""
        return self._domain_terms

    @property
    def stopwords(self) -> frozenset[str]:
        """All stopwords, in token form."""
        return self._stopwords

    @property
    def segmenter_name(self) -> str:
        """``"jieba_next <version>"`` or ``"jieba <version>"`` (loads the segmenter)."""
        self._ensure_segmenter()
        return self._segmenter_name

    # ------------------------------------------------------------------ identity and persistence

    def describe(self) -> dict[str, Any]:
        """Settings plus sha256 of the exact dictionary and stopword texts (JSON-serialisable).

        Returns:
            A dict; ``n_jobs``, ``segmenter`` and source paths are informative and are left out of
            :attr:`fingerprint`.
        """
        return {
            "kind": "finance_jieba",
            "format_version": FORMAT_VERSION,
            "use_finance_dict": self._finance is not None,
            "finance_dict_sha256": self._finance.sha256 if self._finance else None,
            "user_dict_paths": [res.source for res in self._user_dicts],
            "user_dicts_sha256": [res.sha256 for res in self._user_dicts],
            "extra_words": list(self._extra_words),
            "stopwords": self._stopwords_setting,
            "stopwords_sha256": self._stopwords_res.sha256 if self._stopwords_res else None,
            "extra_stopwords": list(self._extra_stopwords),
            "num_domain_terms": len(self._domain_terms),
            "num_stopwords": len(self._stopwords),
            "lowercase": self.lowercase,
            "hmm": self.hmm,
            "search_mode": self.search_mode,
            "n_jobs": self.n_jobs,
            "segmenter": segmenter_label(self._segmenter_choice),
        }

    @property
    def fingerprint(self) -> str:
        """sha256 of :meth:`describe` without the keys that do not change tokens."""
        settings = {k: v for k, v in self.describe().items() if k not in _RUNTIME_KEYS}
        return hashlib.sha256(
            json.dumps(settings, sort_keys=True, ensure_ascii=False).encode("utf-8")
        ).hexdigest()

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write the exact dictionaries and stopwords used, plus ``tokenizer.json`` with the settings.

        Args:
            folder: Target folder (created if missing).

        Returns:
            The folder.
        """
        target = Path(folder)
        write_tokenizer_folder(
            target,
            finance=self._finance,
            user_dicts=self._user_dicts,
            stopwords=self._stopwords_res,
            settings={
                "extra_words": self._extra_words,
                "stopwords": self._stopwords_setting,
                "extra_stopwords": self._extra_stopwords,
                "lowercase": self.lowercase,
                "hmm": self.hmm,
                "search_mode": self.search_mode,
                "n_jobs": self.n_jobs,
                "segmenter": self._segmenter_choice,
            },
            describe=self.describe(),
            fingerprint=self.fingerprint,
        )
        return target

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> FinanceTokenizer:
        """Restore a tokenizer written by :meth:`save`, from the copies in the folder.

        Later edits of the shipped dictionary or of the original user files do not change it.

        Args:
            folder: A folder written by :meth:`save`.

        Returns:
            A tokenizer giving identical tokens, with the same :meth:`describe` and :attr:`fingerprint`.

        Raises:
            TokenizerConfigError: On a missing or unreadable file, a sha256 mismatch or an unknown format.
        """
        source = Path(folder)
        saved = read_tokenizer_folder(source)
        tok = cls.__new__(cls)
        try:
            tok._setup(**saved.parts)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, TokenizerConfigError):
                raise
            raise malformed(saved.settings_path, exc) from exc
        if saved.fingerprint and tok.fingerprint != saved.fingerprint:
            raise TokenizerConfigError(
                f"{source}: restored tokenizer fingerprint {tok.fingerprint[:12]} != saved "
                f"{saved.fingerprint[:12]} "
                "(tokenizer code changed how it reads its settings); rebuild the index."
            )
        return tok

    # ------------------------------------------------------------------ pickling (spawned workers)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_segmenter"] = None
        state["_segmenter_name"] = ""
        state["_lock"] = None
        state["_cache"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"FinanceTokenizer(finance_dict={self._finance is not None}, user_dicts={len(self._user_dicts)}, "
            f"extra_words={len(self._extra_words)}, stopwords={self._stopwords_setting!r}, "
            f"lowercase={self.lowercase}, hmm={self.hmm}, search_mode={self.search_mode}, "
            f"n_jobs={self.n_jobs})"
        )


# ---------------------------------------------------------------------- worker processes

_WORKER_TOKENIZER: FinanceTokenizer | None = None


def _init_worker(tokenizer: FinanceTokenizer) -> None:
    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = tokenizer


def _worker_tokenize(texts: list[str]) -> list[list[str]]:
    tokenizer = _WORKER_TOKENIZER
    if tokenizer is None:  # pragma: no cover - only if the pool initializer did not run
        raise RuntimeError("tokenizer worker was started without its tokenizer")
    seg = tokenizer._ensure_segmenter()
    return [tokenizer._tokenize_one(text, seg) for text in texts]
