"""A BM25 index over bm25s: build, search with domain-term weights, save and load.

The score matrix (with the tf cap) is built in :mod:`~finrag_pipelines.retrieval.bm25.scoring`. The
domain-term weight (``domain_term_weight``) is applied at query time: a query term that the tokenizer calls a
domain term (:meth:`FinanceTokenizer.is_domain_term`) has its column multiplied by the weight before the sum.
A query with no such term goes through bm25s's own scoring (``BM25.get_scores_from_ids``), unchanged; others
are scored by one vectorised gather + ``np.bincount`` over the CSC arrays.

As in bm25s, a term repeated in the query counts once per occurrence. Unlike bm25s, documents that match
no query term are never returned (so a query may get fewer than ``k`` hits), a query with no indexed
token gets ``[]`` (counted in a log line), and ``k`` larger than the corpus is clipped.

Kedro-free library module.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

from finrag_pipelines.retrieval.bm25.folder import (
    BM25S_DIR,
    FORMAT_VERSION,
    TOKENIZER_DIR,
    read_bm25_folder,
    write_bm25_folder,
)
from finrag_pipelines.retrieval.bm25.scoring import BM25Config, score_corpus
from finrag_pipelines.retrieval.index_folder import DOC_IDS_FILE, REBUILD_HINT
from finrag_pipelines.retrieval.named_meta import NamedMeta
from finrag_pipelines.retrieval.types import Hit, IndexMismatchError, Run
from finrag_pipelines.text.tokenizers import Tokenizer

logger = logging.getLogger(__name__)


class BM25Index(NamedMeta):
    """A bm25s index with its tokenizer, document ids, scoring settings and build metadata.

    Build with :meth:`build` / :meth:`build_from_tokens` or :meth:`load`, not directly. Implements
    :class:`~finrag_pipelines.retrieval.interfaces.TermScoringIndex` (a
    :class:`~finrag_pipelines.retrieval.interfaces.LexicalIndex` with :meth:`get_scores`), hence the
    :class:`~finrag_pipelines.retrieval.types.Retriever` protocol.

    Args:
        retriever: The bm25s object holding the score matrix and vocabulary.
        doc_ids: Document ids in row order.
        tokenizer: The tokenizer used at build time (and for queries).
        config: Scoring settings.
        meta: Build metadata (contents of ``meta.json``).
        name: Retriever name for runs and reports.
    """

    def __init__(
        self,
        retriever: bm25s.BM25,
        doc_ids: list[str],
        tokenizer: Tokenizer,
        config: BM25Config,
        meta: dict[str, Any],
        name: str = "bm25",
    ) -> None:
        self._bm25 = retriever
        self._doc_ids = doc_ids
        self._tokenizer = tokenizer
        self._config = config
        self._meta = meta
        self._meta["name"] = name
        self._vocab: dict[str, int] = retriever.vocab_dict
        self._num_docs = int(retriever.scores["num_docs"])
        self._data: np.ndarray = retriever.scores["data"]
        self._indices: np.ndarray = retriever.scores["indices"]
        self._indptr: np.ndarray = retriever.scores["indptr"]
        self._nonoccurrence: np.ndarray | None = retriever.nonoccurrence_array
        self._corpus_tokens: list[list[str]] | None = None  # kept by build_from_tokens (not saved)
        self._weights: np.ndarray | None = None
        self._weighted_ids: frozenset[int] = frozenset()
        if config.domain_term_weight != 1.0:
            weighted = [i for token, i in self._vocab.items() if tokenizer.is_domain_term(token)]
            self._weighted_ids = frozenset(weighted)
            self._weights = np.ones(len(self._indptr) - 1, dtype=np.float32)
            self._weights[weighted] = np.float32(config.domain_term_weight)

    # ------------------------------------------------------------------ building

    @classmethod
    def build(
        cls,
        doc_ids: Sequence[str],
        texts: Sequence[str],
        tokenizer: Tokenizer,
        config: BM25Config,
        corpus_hash: str,
        *,
        name: str = "bm25",
    ) -> BM25Index:
        """Tokenise a corpus and build the index.

        Args:
            doc_ids: Unique document ids, one per text.
            texts: Document texts.
            tokenizer: Tokenizer for documents and, later, queries (saved with the index).
            config: Scoring settings.
            corpus_hash: Hash of the corpus (see ``text.corpus.corpus_hash``), stored in ``meta.json``.
            name: Retriever name.

        Returns:
            The index.

        Raises:
            ValueError: On length mismatch, duplicate or empty ids, or a corpus without any token.
        """
        if isinstance(texts, str):
            raise ValueError("texts must be a sequence of document texts, not one str.")
        if len(doc_ids) != len(texts):
            raise ValueError(f"got {len(doc_ids)} doc ids but {len(texts)} texts; pass one id per text.")
        started = time.perf_counter()
        tokens = tokenizer.tokenize_many(texts)
        logger.info(
            "bm25 %r: tokenised %d documents in %.2fs", name, len(tokens), time.perf_counter() - started
        )
        return cls.build_from_tokens(doc_ids, tokens, tokenizer, config, corpus_hash, name=name)

    @classmethod
    def build_from_tokens(
        cls,
        doc_ids: Sequence[str],
        corpus_tokens: Sequence[Sequence[str]],
        tokenizer: Tokenizer,
        config: BM25Config,
        corpus_hash: str,
        *,
        name: str = "bm25",
    ) -> BM25Index:
        """Build the index from documents already tokenised by ``tokenizer``.

        Args:
            doc_ids: Unique document ids, one per token list.
            corpus_tokens: ``tokenizer.tokenize_many(texts)``.
            tokenizer: The tokenizer that produced the tokens (used for queries and saved).
            config: Scoring settings.
            corpus_hash: Hash of the corpus, stored in ``meta.json``.
            name: Retriever name.

        Returns:
            The index.

        Raises:
            ValueError: On length mismatch, duplicate or empty ids, or a corpus without any token.
        """
        ids = [str(doc_id) for doc_id in doc_ids]
        if len(ids) != len(corpus_tokens):
            raise ValueError(
                f"got {len(ids)} doc ids but {len(corpus_tokens)} token lists; pass one id per document."
            )
        if not ids:
            raise ValueError("cannot build a BM25 index over an empty corpus; check the corpus input.")
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            for row, doc_id in enumerate(ids):
                if doc_id in seen:
                    raise ValueError(
                        f"doc_ids must be unique; {doc_id!r} (row {row}) occurs more than once. Deduplicate "
                        "the corpus first."
                    )
                seen.add(doc_id)
        if not isinstance(corpus_hash, str) or not corpus_hash:
            raise ValueError(f"corpus_hash must be a non-empty string, got {corpus_hash!r}.")
        started = time.perf_counter()
        scored = score_corpus(corpus_tokens, config)
        retriever, vocab, empty_docs = scored.retriever, scored.retriever.vocab_dict, scored.empty_docs
        if empty_docs:
            logger.warning(
                "bm25 %r: %d of %d documents have no token (empty or all stopwords); they can never be "
                "retrieved",
                name,
                empty_docs,
                len(ids),
            )
        meta: dict[str, Any] = {
            "kind": "bm25",
            "format_version": FORMAT_VERSION,
            "name": name,
            "corpus_hash": corpus_hash,
            "num_docs": len(ids),
            "vocab_size": len(vocab),
            "avg_doc_len": scored.avg_doc_len,
            "empty_docs": empty_docs,
            "bm25": config.to_dict(),
            "tokenizer": tokenizer.describe(),
            "tokenizer_fingerprint": tokenizer.fingerprint,
            "bm25s_version": bm25s.__version__,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "doc_ids_file": DOC_IDS_FILE,
            "bm25s_dir": BM25S_DIR,
            "tokenizer_dir": TOKENIZER_DIR,
        }
        index = cls(retriever, ids, tokenizer, config, meta, name=name)
        index._corpus_tokens = [
            tokens if isinstance(tokens, list) else list(tokens) for tokens in corpus_tokens
        ]
        logger.info(
            "bm25 %r: indexed %d docs, %d terms (%d domain terms weighted %.2f), tf_cap=%s, %s k1=%.2f "
            "b=%.2f in %.2fs",
            name,
            len(ids),
            len(vocab),
            len(index._weighted_ids),
            config.domain_term_weight,
            config.tf_cap,
            config.method,
            config.k1,
            config.b,
            time.perf_counter() - started,
        )
        return index

    # ------------------------------------------------------------------ properties

    @property
    def config(self) -> BM25Config:
        """Scoring settings."""
        return self._config

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer used for documents and queries."""
        return self._tokenizer

    @property
    def doc_ids(self) -> list[str]:
        """Document ids in row order (a copy)."""
        return list(self._doc_ids)

    @property
    def num_docs(self) -> int:
        """Number of indexed documents."""
        return self._num_docs

    @property
    def corpus_tokens(self) -> list[list[str]] | None:
        """The documents' tokens in row order, as built (shared, do not modify); ``None`` after :meth:`load`.

        Other backends (e.g. a Milvus collection) are filled from these, so they index exactly the tokens
        this index was built from. Not written by :meth:`save`.
        """
        return self._corpus_tokens

    @property
    def vocab_size(self) -> int:
        """Number of distinct indexed terms."""
        return len(self._indptr) - 1

    @property
    def bm25s(self) -> bm25s.BM25:
        """The underlying bm25s object (shared, do not modify)."""
        return self._bm25

    # ------------------------------------------------------------------ scoring

    def term_ids(self, tokens: Sequence[str]) -> list[int]:
        """Vocabulary ids of the indexed tokens among ``tokens`` (unknown ones dropped, repeats kept)."""
        get = self._vocab.get
        return [i for i in map(get, tokens) if i is not None]

    def _scores(self, ids: list[int]) -> tuple[np.ndarray, float]:
        """Scores of all documents for one query's term ids, and the score of a document matching none."""
        if not self._weighted_ids or self._weighted_ids.isdisjoint(ids):
            scores = self._bm25.get_scores_from_ids(ids)
            baseline = float(self._nonoccurrence[ids].sum()) if self._nonoccurrence is not None else 0.0
            return scores, baseline
        assert self._weights is not None
        terms = np.asarray(ids, dtype=np.int64)
        weights = self._weights[terms]
        starts = self._indptr[terms]
        lengths = self._indptr[terms + 1] - starts
        total = int(lengths.sum())
        # positions of every posting of every query term, in one gather
        positions = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(total)
        values = self._data[positions] * np.repeat(weights, lengths)
        scores = np.bincount(self._indices[positions], weights=values, minlength=self._num_docs)
        baseline = 0.0
        if self._nonoccurrence is not None:
            baseline = float((self._nonoccurrence[terms] * weights).sum())
            scores += baseline
        return scores, baseline

    def get_scores(self, tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every document (row order) for one tokenised query, weights and cap applied.

        Args:
            tokens: Query tokens from :attr:`tokenizer`.

        Returns:
            ``(num_docs,)`` scores; all zeros (or the bm25l/bm25+ baseline) when no token is indexed.
        """
        ids = self.term_ids(tokens)
        if not ids:
            return np.zeros(self._num_docs, dtype=np.float32)
        return self._scores(ids)[0]

    def _top(self, scores: np.ndarray, k: int, baseline: float) -> list[Hit]:
        # partition only the matching documents: argpartition over the whole corpus, mostly ties at the
        # baseline, costs ~4x more (it is where bm25s's retrieve spends most of its time)
        rows = np.flatnonzero(scores > baseline)
        if rows.size > k:
            rows = rows[np.argpartition(scores[rows], rows.size - k)[rows.size - k :]]
        top = scores[rows]
        order = np.lexsort((rows, -top))  # score descending, then row ascending
        doc_ids = self._doc_ids
        return [Hit(doc_ids[row], score) for row, score in zip(rows[order].tolist(), top[order].tolist())]

    def search_tokens(self, queries_tokens: Sequence[Sequence[str]], k: int) -> Run:
        """Top ``k`` hits for each pre-tokenised query (tokens from :attr:`tokenizer`).

        Args:
            queries_tokens: One token list per query.
            k: Hits per query; clipped to the number of documents.

        Returns:
            One list of hits per query, best first (ties by row order); ``[]`` for a query with no
            indexed token. Documents matching no query term are not returned.

        Raises:
            ValueError: If ``k`` is not a positive int.
            TypeError: If a query is a str instead of a token list.
        """
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}.")
        kk = min(int(k), self._num_docs)
        run: Run = []
        empty = 0
        for position, tokens in enumerate(queries_tokens):
            if isinstance(tokens, str):
                raise TypeError(
                    f"queries_tokens[{position}] is the str {tokens!r:.40}, not a token list; use search() "
                    "for texts."
                )
            ids = self.term_ids(tokens)
            if not ids:
                empty += 1
                run.append([])
                continue
            scores, baseline = self._scores(ids)
            run.append(self._top(scores, kk, baseline))
        if empty:
            logger.info(
                "bm25 %r: %d of %d queries have no indexed token (all unknown words or stopwords); they get "
                "no hits",
                self.name,
                empty,
                len(run),
            )
        return run

    def search(self, queries: Sequence[str], k: int) -> Run:
        """Return the top ``k`` hits for each query, best first, in query order.

        Args:
            queries: Query texts (tokenised with the index's tokenizer).
            k: Hits per query; clipped to the number of documents.

        Returns:
            One list of hits per query (see :meth:`search_tokens`).

        Raises:
            ValueError: If ``k`` is not a positive int or ``queries`` is a single string.
            TypeError: If a query is not a string.
        """
        if isinstance(queries, str):
            raise ValueError("queries must be a sequence of strings, not one str; wrap it in a list.")
        return self.search_tokens(self._tokenizer.tokenize_many(queries), k)

    # ------------------------------------------------------------------ persistence

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write the bm25s files, the tokenizer folder, ``doc_ids.json`` and ``meta.json`` (last).

        Args:
            folder: Target folder; created if missing.

        Returns:
            The folder.
        """
        target = Path(folder)
        write_bm25_folder(target, self._bm25, self._tokenizer, self._doc_ids, self._meta)
        logger.info("bm25 %r: saved %d docs to %s", self.name, self._num_docs, target)
        return target

    @classmethod
    def load(
        cls, folder: str | os.PathLike[str], *, name: str | None = None, mmap: bool = False
    ) -> BM25Index:
        """Load and validate a saved index.

        Args:
            folder: A folder written by :meth:`save`.
            name: Retriever name; defaults to the name recorded at build time.
            mmap: Memory-map the score matrix (bm25s ``mmap=True``) instead of reading it: pages are read
                on demand and shared between processes serving the same folder. Do not rebuild the folder in
                place while a process has it mapped.

        Returns:
            The index, with the tokenizer it was built with.

        Raises:
            IndexMismatchError: On missing files, unreadable or inconsistent contents, or another format
                version (the message names the folder and what is wrong).
        """
        source = Path(folder)
        saved = read_bm25_folder(source, mmap=mmap)
        meta, doc_ids, n_terms = saved.meta, saved.doc_ids, saved.num_terms
        index = cls(
            saved.retriever,
            doc_ids,
            saved.tokenizer,
            saved.config,
            meta,
            name=name or str(meta.get("name") or "bm25"),
        )
        logger.info("bm25 %r: loaded %d docs, %d terms from %s", index.name, len(doc_ids), n_terms, source)
        return index

    def check_compatible(self, corpus_hash: str) -> None:
        """Refuse a corpus other than the one the index was built from.

        Args:
            corpus_hash: Hash of the corpus in use.

        Raises:
            IndexMismatchError: Naming both hashes and how to fix it.
        """
        if corpus_hash != self._meta.get("corpus_hash"):
            raise IndexMismatchError(
                f"BM25 index {self.name!r} ({self._num_docs} docs, built {self._meta.get('built_at')}) was "
                "built from "
                f"corpus {str(self._meta.get('corpus_hash'))[:12]}, but the corpus in use is "
                f"{str(corpus_hash)[:12]}; "
                f"use the matching corpus or {REBUILD_HINT}."
            )

    def __repr__(self) -> str:
        return (
            f"BM25Index(name={self.name!r}, docs={self._num_docs}, terms={self.vocab_size}, "
            f"config={self._config})"
        )
