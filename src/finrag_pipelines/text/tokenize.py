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
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

logger = logging.getLogger(__name__)

BUILTIN = "builtin"
"""``stopwords=BUILTIN`` selects the stopword list shipped with the package."""

FORMAT_VERSION = 1
SETTINGS_FILE = "tokenizer.json"
FINANCE_DICT_FILE = "finance_dict.txt"
STOPWORDS_FILE = "stopwords.txt"
SEGMENTERS = ("auto", "jieba", "jieba_next")

_RESOURCES = "finrag_pipelines.text.resources"
_BUILTIN_DICT = "finance_dict.txt"
_BUILTIN_STOPWORDS = "stopwords_zh.txt"
# extra_words get at least this jieba frequency (the shipped dictionary uses the same floor), enough to
# keep every finance term whole against jieba's default dictionary
DOMAIN_WORD_MIN_FREQ = 3000
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
_ASCII_WORD = re.compile(r"[0-9A-Za-z+]+")
_TAG = re.compile(r"[a-z]+")
_HAN_WORD = re.compile(r"[\u4e00-\u9fff]+")  # a word of CJK ideographs only (search-mode sub-words)
# default jieba dictionary (FREQ, total) per segmenter, loaded once per process
_BASE_DICTS: dict[str, tuple[dict[str, int], int]] = {}
_BASE_LOCK = threading.Lock()
_MISSING: Any = object()
_CACHE_LIMIT = 2_000_000  # distinct raw segments remembered by the per-tokenizer cleaning cache


class TokenizerConfigError(ValueError):
    """A tokenizer setting, dictionary or stopword file is invalid; the message names it and the fix."""


@dataclass(frozen=True)
class _TextResource:
    """The exact text of a dictionary or stopword file, with where it came from."""

    source: str
    text: str

    @property
    def sha256(self) -> str:
        """sha256 of the UTF-8 text."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _DictEntry:
    word: str
    freq: int | None
    tag: str | None


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def _read_builtin(name: str) -> _TextResource:
    text = resources.files(_RESOURCES).joinpath(name).read_text(encoding="utf-8")
    return _TextResource(source=f"{BUILTIN}:{name}", text=text)


def _read_file(path: str | os.PathLike[str], setting: str) -> _TextResource:
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
    return _TextResource(source=str(file), text=text)


def _string_list(value: Any, setting: str) -> list[str]:
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


def parse_user_dict(text: str, source: str) -> list[_DictEntry]:
    """Parse a jieba user dictionary (``word [freq] [tag]`` per line).

    Args:
        text: File contents.
        source: Where the text came from, for error messages.

    Returns:
        The entries in file order (blank lines skipped).

    Raises:
        TokenizerConfigError: On a malformed line, naming ``source:line``.
    """
    entries: list[_DictEntry] = []
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
        entries.append(_DictEntry(_nfkc(parts[0]), freq, tag))
    return entries


def _parse_stopwords(text: str) -> list[str]:
    words = []
    for raw in text.splitlines():
        line = raw.strip().lstrip("\ufeff")
        if line and not line.startswith("#"):
            words.append(line)
    return words


def _new_segmenter(choice: str) -> tuple[Any, str]:
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


def _segmenter_label(choice: str) -> str:
    if choice == "jieba":
        return "jieba"
    try:
        import jieba_next  # noqa: F401
    except ImportError:
        return "jieba"
    return "jieba_next"


class FinanceTokenizer:
    """jieba tokenizer with a finance dictionary, stopwords and number/code protection.

    Args:
        use_finance_dict: Load the finance dictionary shipped in ``text/resources/finance_dict.txt``.
        user_dict_paths: Extra jieba user-dictionary files (``word [freq] [tag]`` per line; a word without
            freq gets one that keeps it whole, at least :data:`DOMAIN_WORD_MIN_FREQ`).
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
    ) -> None:
        for setting, value in (
            ("use_finance_dict", use_finance_dict),
            ("lowercase", lowercase),
            ("hmm", hmm),
            ("search_mode", search_mode),
        ):
            if not isinstance(value, bool):
                raise TokenizerConfigError(f"{setting} must be true or false, got {value!r}.")
        finance = _read_builtin(_BUILTIN_DICT) if use_finance_dict else None
        user_dicts = [
            _read_file(p, f"user_dict_paths[{i}]")
            for i, p in enumerate(_string_list(user_dict_paths, "user_dict_paths"))
        ]
        if stopwords is None:
            stop_res = None
        elif isinstance(stopwords, (str, os.PathLike)) and str(stopwords) == BUILTIN:
            stop_res = _read_builtin(_BUILTIN_STOPWORDS)
        elif isinstance(stopwords, (str, os.PathLike)):
            stop_res = _read_file(stopwords, "stopwords")
        else:
            raise TokenizerConfigError(
                f"stopwords must be 'builtin', a file path or null, got {stopwords!r}."
            )
        self._setup(
            finance=finance,
            user_dicts=user_dicts,
            extra_words=_string_list(extra_words, "extra_words"),
            stopwords_setting=None if stopwords is None else str(stopwords),
            stopwords_res=stop_res,
            extra_stopwords=_string_list(extra_stopwords, "extra_stopwords"),
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
        finance: _TextResource | None,
        user_dicts: list[_TextResource],
        extra_words: list[str],
        stopwords_setting: str | None,
        stopwords_res: _TextResource | None,
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
        self._extra_words = [_nfkc(w.strip()) for w in extra_words]
        self._stopwords_setting = stopwords_setting
        self._stopwords_res = stopwords_res
        self._extra_stopwords = [w.strip() for w in extra_stopwords]
        self.lowercase = lowercase
        self.hmm = hmm
        self.search_mode = search_mode
        self.n_jobs = n_jobs
        self._segmenter_choice = segmenter
        # parse everything now: malformed files fail at construction, not at the first tokenize()
        self._dict_entries: list[_DictEntry] = []
        if finance is not None:
            self._dict_entries += parse_user_dict(finance.text, finance.source)
        for res in self._user_dicts:
            self._dict_entries += parse_user_dict(res.text, res.source)
        terms = [e.word for e in self._dict_entries] + self._extra_words
        self._domain_terms = frozenset(self._norm(t) for t in terms if t)
        stop = _parse_stopwords(stopwords_res.text) if stopwords_res is not None else []
        self._stopwords = frozenset(self._norm(_nfkc(w)) for w in stop + self._extra_stopwords if w)
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
            seg, name = _new_segmenter(self._segmenter_choice)
            unpriced: list[_DictEntry] = []
            for entry in self._dict_entries:
                if _ASCII_WORD.fullmatch(entry.word):
                    continue
                if entry.freq is None:
                    unpriced.append(entry)
                else:
                    seg.add_word(entry.word, entry.freq, entry.tag)
            unpriced += [
                _DictEntry(w, None, None) for w in self._extra_words if w and not _ASCII_WORD.fullmatch(w)
            ]
            # words without a frequency get one that keeps them whole; all suggestions first, then the adds,
            # since every add_word makes jieba_next rebuild its prefix trie on the next cut
            freqs = [
                max(DOMAIN_WORD_MIN_FREQ, int(seg.suggest_freq(e.word, tune=False)) + 1) for e in unpriced
            ]
            for entry, freq in zip(unpriced, freqs):
                seg.add_word(entry.word, freq, entry.tag)
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
        text = _nfkc(text)
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
            raw = _with_subwords(raw, seg.FREQ)
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
            "segmenter": _segmenter_label(self._segmenter_choice),
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
        target.mkdir(parents=True, exist_ok=True)
        files: dict[str, Any] = {"finance_dict": None, "user_dicts": [], "stopwords": None}
        if self._finance is not None:
            _write_text(target / FINANCE_DICT_FILE, self._finance.text)
            files["finance_dict"] = {
                "file": FINANCE_DICT_FILE,
                "source": self._finance.source,
                "sha256": self._finance.sha256,
            }
        for i, res in enumerate(self._user_dicts):
            name = f"user_dict_{i}.txt"
            _write_text(target / name, res.text)
            files["user_dicts"].append({"file": name, "source": res.source, "sha256": res.sha256})
        if self._stopwords_res is not None:
            _write_text(target / STOPWORDS_FILE, self._stopwords_res.text)
            files["stopwords"] = {
                "file": STOPWORDS_FILE,
                "source": self._stopwords_res.source,
                "sha256": self._stopwords_res.sha256,
            }
        settings = {
            "format_version": FORMAT_VERSION,
            "settings": {
                "extra_words": self._extra_words,
                "stopwords": self._stopwords_setting,
                "extra_stopwords": self._extra_stopwords,
                "lowercase": self.lowercase,
                "hmm": self.hmm,
                "search_mode": self.search_mode,
                "n_jobs": self.n_jobs,
                "segmenter": self._segmenter_choice,
            },
            "files": files,
            "describe": self.describe(),
            "fingerprint": self.fingerprint,
        }
        _write_text(target / SETTINGS_FILE, json.dumps(settings, ensure_ascii=False, indent=1))
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
        settings_path = source / SETTINGS_FILE
        if not settings_path.is_file():
            raise TokenizerConfigError(
                f"{source} has no {SETTINGS_FILE}: not a saved tokenizer folder; save one with "
                "FinanceTokenizer.save()."
            )
        try:
            saved = json.loads(settings_path.read_text(encoding="utf-8"))
            if saved.get("format_version") != FORMAT_VERSION:
                raise TokenizerConfigError(
                    f"{settings_path}: format_version {saved.get('format_version')!r}, this code reads "
                    f"{FORMAT_VERSION}; "
                    "rebuild the index that holds this tokenizer."
                )
            opts = saved["settings"]
            files = saved["files"]

            def restore(entry: dict[str, Any] | None) -> _TextResource | None:
                if entry is None:
                    return None
                path = source / entry["file"]
                if not path.is_file():
                    raise TokenizerConfigError(
                        f"{path} is missing (listed in {settings_path}); the saved tokenizer is incomplete, "
                        "save it again."
                    )
                res = _TextResource(source=str(entry["source"]), text=path.read_text(encoding="utf-8"))
                if res.sha256 != entry["sha256"]:
                    raise TokenizerConfigError(
                        f"{path} was changed after saving (sha256 {res.sha256[:12]} != recorded "
                        f"{str(entry['sha256'])[:12]}); "
                        "restore it or rebuild the index."
                    )
                return res

            user_dicts = [restore(entry) for entry in files["user_dicts"]]
            tok = cls.__new__(cls)
            tok._setup(
                finance=restore(files["finance_dict"]),
                user_dicts=[res for res in user_dicts if res is not None],
                extra_words=list(opts["extra_words"]),
                stopwords_setting=opts["stopwords"],
                stopwords_res=restore(files["stopwords"]),
                extra_stopwords=list(opts["extra_stopwords"]),
                lowercase=bool(opts["lowercase"]),
                hmm=bool(opts["hmm"]),
                search_mode=bool(opts.get("search_mode", False)),
                n_jobs=int(opts["n_jobs"]),
                segmenter=str(opts["segmenter"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, TokenizerConfigError):
                raise
            raise TokenizerConfigError(
                f"{settings_path} is malformed ({type(exc).__name__}: {exc}); save the tokenizer again."
            ) from exc
        if saved.get("fingerprint") and tok.fingerprint != saved["fingerprint"]:
            raise TokenizerConfigError(
                f"{source}: restored tokenizer fingerprint {tok.fingerprint[:12]} != saved "
                f"{str(saved['fingerprint'])[:12]} "
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
            f"lowercase={self.lowercase}, hmm={self.hmm}, search_mode={self.search_mode}, n_jobs={self.n_jobs})"
        )


def _with_subwords(pieces: list[str], freq: Mapping[str, int]) -> list[str]:
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


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


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
