"""A word-BM25 index in Lucene (Anserini via pyserini) over the project's jieba tokens.

:class:`LuceneBM25Index` implements :class:`~finrag_pipelines.retrieval.interfaces.TermScoringIndex` like the
bm25s :class:`~finrag_pipelines.retrieval.bm25.index.BM25Index`: ``name``, ``meta``, ``num_docs``,
``doc_ids``,
``tokenizer``, ``search``, ``search_tokens``, ``get_scores`` and ``check_compatible``; evaluation, negative
mining, query_distill and ``finrag-serve`` use it unchanged.

Documents are the index tokenizer's jieba tokens joined by spaces, indexed pre-tokenized (Anserini's
``JsonCollection`` + ``-pretokenized``: Lucene's whitespace analyzer, nothing lowercased, stemmed or dropped);
queries go through the same tokenizer and the same whitespace analyzer. Scoring is Lucene 9's
``BM25Similarity`` (k1, b; document lengths stored as 1-byte norms, so scores differ slightly from bm25s) with
optional RM3 query expansion. Anserini rounds returned scores to 4 decimals and breaks ties by document id.
What bm25s does that Lucene cannot (the tf cap, the domain-term weight, another BM25 variant) is listed in
``meta.json`` under ``lucene.not_applied``, as the Milvus backend does.

The folder holds ``lucene/`` (the Lucene index), ``tokenizer/``, ``doc_ids.json`` and ``meta.json`` (last).

Kedro-free library module.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from finrag_pipelines.retrieval.bm25.scoring import BM25Config
from finrag_pipelines.retrieval.index_folder import (
    DOC_IDS_FILE,
    META_FILE,
    REBUILD_HINT,
    read_meta_and_ids,
    write_json,
)
from finrag_pipelines.retrieval.lucene.runtime import JavaClasses, detach_thread, java
from finrag_pipelines.retrieval.named_meta import NamedMeta
from finrag_pipelines.retrieval.query_tokens import check_k, query_texts
from finrag_pipelines.retrieval.types import Hit, IndexMismatchError, RetrievalError, Run
from finrag_pipelines.text.dictionaries import TokenizerConfigError
from finrag_pipelines.text.tokenize import FinanceTokenizer

logger = logging.getLogger(__name__)

BACKEND = "lucene"
FORMAT_VERSION = 1
LUCENE_DIR = "lucene"
TOKENIZER_DIR = "tokenizer"
CONTENTS_FIELD = "contents"  # Anserini's IndexField.CONTENTS
ID_FIELD = "id"
SCORE_DECIMALS = 4  # Anserini's SimpleSearcher returns scores rounded to 4 decimals
ANALYZER = "org.apache.lucene.analysis.core.WhitespaceAnalyzer over pre-tokenized jieba tokens"


@dataclass(frozen=True)
class RM3Config:
    """Lucene's RM3 pseudo-relevance feedback (Anserini ``Rm3Reranker``).

    Attributes:
        fb_terms: Expansion terms taken from the feedback documents.
        fb_docs: Top documents used as feedback.
        original_query_weight: Weight of the original query in the expanded one (0..1).
        filter_terms: Anserini's filter keeping only ``[a-z0-9]`` terms; it drops every Chinese term, so it
            must stay off for this corpus.
    """

    fb_terms: int
    fb_docs: int
    original_query_weight: float
    filter_terms: bool

    def __post_init__(self) -> None:
        for name in ("fb_terms", "fb_docs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"lucene rm3.{name} must be an int >= 1, got {value!r}.")
        weight = self.original_query_weight
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not 0.0 <= weight <= 1.0:
            raise ValueError(f"lucene rm3.original_query_weight must be in [0, 1], got {weight!r}.")


@dataclass(frozen=True)
class LuceneConfig:
    """How the Lucene index is searched (``index_build.lucene`` in conf).

    Attributes:
        k1: BM25 k1; ``None`` = the bm25s scoring's k1 (``index_build.bm25.scoring``).
        b: BM25 b; ``None`` = the bm25s scoring's b.
        rm3: RM3 query expansion, or ``None`` for plain BM25.
        index_threads: Anserini indexing threads.
        search_threads: Threads of one batched search.
    """

    k1: float | None
    b: float | None
    rm3: RM3Config | None
    index_threads: int
    search_threads: int

    def __post_init__(self) -> None:
        if self.k1 is not None and not (isinstance(self.k1, (int, float)) and self.k1 > 0):
            raise ValueError(f"lucene k1 must be a number > 0 or null, got {self.k1!r}.")
        if self.b is not None and not (isinstance(self.b, (int, float)) and 0 <= self.b <= 1):
            raise ValueError(f"lucene b must be in [0, 1] or null, got {self.b!r}.")
        for name in ("index_threads", "search_threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"lucene {name} must be an int >= 1, got {value!r}.")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> LuceneConfig:
        """Build from a conf mapping (``rm3`` a mapping or ``None``)."""
        values = dict(data)
        rm3 = values.pop("rm3", None)
        return cls(**values, rm3=RM3Config(**rm3) if rm3 is not None else None)

    def settings(self, scoring: BM25Config) -> dict[str, Any]:
        """The search settings in effect (k1/b resolved against ``scoring``), as recorded in ``meta.json``."""
        return {
            "k1": float(self.k1 if self.k1 is not None else scoring.k1),
            "b": float(self.b if self.b is not None else scoring.b),
            "rm3": asdict(self.rm3) if self.rm3 is not None else None,
            "index_threads": self.index_threads,
            "search_threads": self.search_threads,
        }


def not_applied(scoring: BM25Config) -> dict[str, Any]:
    """The bm25s-only settings of ``scoring`` Lucene does not apply (with their configured values)."""
    dropped: dict[str, Any] = {"tf_cap": scoring.tf_cap, "domain_term_weight": scoring.domain_term_weight}
    if scoring.method != "lucene":
        dropped["method"] = scoring.method  # Lucene scores with its own BM25 only
    return dropped


def joined(tokens: Sequence[str]) -> str:
    """A document's (or query's) tokens as the whitespace-separated text Lucene indexes."""
    return " ".join(token for token in tokens if token and not token.isspace() and " " not in token)


class LuceneBM25Index(NamedMeta):
    """A Lucene BM25 index with its tokenizer, document ids and ``meta.json``.

    Create with :meth:`build` / :meth:`build_from_tokens` or :meth:`load`, not directly. Implements
    :class:`~finrag_pipelines.retrieval.interfaces.TermScoringIndex`; ``get_scores`` is refused while RM3 is
    on (see :meth:`term_scores_unavailable`).

    Args:
        lucene_dir: The Lucene index directory.
        doc_ids: All document ids (documents without a token are not in Lucene but count here).
        tokenizer: The tokenizer the documents were tokenised with (used for queries).
        meta: Build metadata (``meta.json``).
        cleanup: A temporary folder to remove when the index is garbage-collected (a built, unsaved index).
    """

    def __init__(
        self,
        lucene_dir: Path,
        doc_ids: list[str],
        tokenizer: FinanceTokenizer,
        meta: dict[str, Any],
        *,
        cleanup: Path | None = None,
    ) -> None:
        self._java: JavaClasses = java()
        self._dir = Path(lucene_dir)
        self._doc_ids = doc_ids
        self._row = {doc_id: row for row, doc_id in enumerate(doc_ids)}
        self._tokenizer = tokenizer
        self._meta = meta
        self._lock = threading.Lock()
        settings = meta["lucene"]
        self._searcher = self._java.SimpleSearcher(str(self._dir))
        self._searcher.set_analyzer(self._java.WhitespaceAnalyzer())
        self._searcher.set_bm25(float(settings["k1"]), float(settings["b"]))
        rm3 = settings.get("rm3")
        if rm3:
            self._searcher.set_rm3(
                None,
                int(rm3["fb_terms"]),
                int(rm3["fb_docs"]),
                float(rm3["original_query_weight"]),
                False,
                bool(rm3["filter_terms"]),
            )
        self._scorer: tuple[Any, Any, np.ndarray] | None = None  # get_scores' searcher, generator, rows
        self._finalizer = weakref.finalize(self, _release, self._searcher, cleanup)
        in_lucene = int(self._searcher.get_total_num_docs())
        if in_lucene != settings.get("lucene_num_docs"):
            self.close()
            raise IndexMismatchError(
                f"Lucene index in {self._dir} holds {in_lucene} documents, meta.json says "
                f"{settings.get('lucene_num_docs')}; {REBUILD_HINT}."
            )

    # ------------------------------------------------------------------ building

    @classmethod
    def build(
        cls,
        doc_ids: Sequence[str],
        texts: Sequence[str],
        tokenizer: FinanceTokenizer,
        scoring: BM25Config,
        corpus_hash: str,
        *,
        lucene: LuceneConfig,
        name: str = "bm25",
    ) -> LuceneBM25Index:
        """Tokenise a corpus with ``tokenizer`` and index it in Lucene (see :meth:`build_from_tokens`)."""
        if isinstance(texts, str):
            # a ValueError, as BM25Index raises
            raise ValueError("texts must be a sequence of document texts, not one str.")  # noqa: TRY004
        if len(doc_ids) != len(texts):
            raise ValueError(f"got {len(doc_ids)} doc ids but {len(texts)} texts; pass one id per text.")
        started = time.perf_counter()
        tokens = tokenizer.tokenize_many(texts)
        logger.info(
            "lucene %r: tokenised %d documents in %.2fs", name, len(tokens), time.perf_counter() - started
        )
        return cls.build_from_tokens(
            doc_ids, tokens, tokenizer, scoring, corpus_hash, lucene=lucene, name=name
        )

    @classmethod
    def build_from_tokens(
        cls,
        doc_ids: Sequence[str],
        corpus_tokens: Sequence[Sequence[str]],
        tokenizer: FinanceTokenizer,
        scoring: BM25Config,
        corpus_hash: str,
        *,
        lucene: LuceneConfig,
        name: str = "bm25",
    ) -> LuceneBM25Index:
        """Index documents already tokenised by ``tokenizer`` (pre-tokenized JsonCollection, whitespace).

        Args:
            doc_ids: Unique document ids, one per token list.
            corpus_tokens: ``tokenizer.tokenize_many(texts)``.
            tokenizer: The tokenizer that produced the tokens (used for queries and saved).
            scoring: The bm25s scoring settings of this index group: k1/b unless ``lucene`` sets them; the
                rest is recorded as not applied.
            corpus_hash: Hash of the corpus, stored in ``meta.json``.
            lucene: Lucene's settings.
            name: Retriever name.

        Raises:
            ValueError: On length mismatch, duplicate or empty ids, or a corpus without any token.
            LuceneUnavailableError: If the ``lucene`` extra is missing or Java cannot start.
        """
        ids = [str(doc_id) for doc_id in doc_ids]
        if len(ids) != len(corpus_tokens):
            raise ValueError(
                f"got {len(ids)} doc ids but {len(corpus_tokens)} token lists; one per document."
            )
        if not ids:
            raise ValueError("cannot build a BM25 index over an empty corpus; check the corpus input.")
        if len(set(ids)) != len(ids):
            duplicate = next(doc_id for doc_id in ids if ids.count(doc_id) > 1)
            raise ValueError(
                f"doc_ids must be unique; {duplicate!r} occurs more than once. Deduplicate first."
            )
        if not isinstance(corpus_hash, str) or not corpus_hash:
            raise ValueError(f"corpus_hash must be a non-empty string, got {corpus_hash!r}.")
        classes = java()
        started = time.perf_counter()
        work = Path(tempfile.mkdtemp(prefix="finrag-lucene-"))
        texts = [joined(tokens) for tokens in corpus_tokens]
        empty = sum(1 for text in texts if not text)
        if empty:
            logger.warning(
                "lucene %r: %d of %d documents have no token (empty or all stopwords); they are not "
                "indexed and can never be retrieved",
                name,
                empty,
                len(ids),
            )
        if empty == len(ids):
            shutil.rmtree(work, ignore_errors=True)
            raise ValueError(
                f"no document of the {len(ids)} has a token; check the corpus and the stopwords."
            )
        docs, lucene_dir = work / "docs", work / LUCENE_DIR
        docs.mkdir()
        with (docs / "docs.jsonl").open("w", encoding="utf-8") as handle:
            for doc_id, text in zip(ids, texts, strict=True):
                if text:
                    handle.write(
                        json.dumps({ID_FIELD: doc_id, CONTENTS_FIELD: text}, ensure_ascii=False) + "\n"
                    )
        args = ["-collection", "JsonCollection", "-input", str(docs), "-index", str(lucene_dir),
                "-generator", "DefaultLuceneDocumentGenerator", "-threads", str(lucene.index_threads),
                "-storeDocvectors", "-pretokenized", "-quiet"]  # fmt: skip
        try:
            classes.IndexCollection.main(args)
        except Exception as exc:  # JavaException
            shutil.rmtree(work, ignore_errors=True)
            raise RuntimeError(f"Anserini IndexCollection failed on {len(ids)} documents: {exc}") from exc
        shutil.rmtree(docs)
        lengths = [len(tokens) for tokens in corpus_tokens]
        meta: dict[str, Any] = {
            "kind": "bm25",
            "format_version": FORMAT_VERSION,
            "backend": BACKEND,
            "name": name,
            "corpus_hash": corpus_hash,
            "num_docs": len(ids),
            "vocab_size": len(set(chain.from_iterable(text.split() for text in texts))),
            "avg_doc_len": float(np.mean(lengths)) if lengths else 0.0,
            "empty_docs": empty,
            "bm25": scoring.to_dict(),
            "lucene": {
                **lucene.settings(scoring),
                "analyzer": ANALYZER,
                "lucene_num_docs": len(ids) - empty,
                "score_decimals": SCORE_DECIMALS,
                "not_applied": not_applied(scoring),
                "versions": classes.versions(),
            },
            "tokenizer": tokenizer.describe(),
            "tokenizer_fingerprint": tokenizer.fingerprint,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "doc_ids_file": DOC_IDS_FILE,
            "tokenizer_dir": TOKENIZER_DIR,
            "lucene_dir": LUCENE_DIR,
        }
        index = cls(lucene_dir, ids, tokenizer, meta, cleanup=work)
        logger.info(
            "lucene %r: indexed %d docs (%d without tokens) in %.2fs; k1=%.2f b=%.2f rm3=%s; not applied: %s",
            name, len(ids), empty, time.perf_counter() - started, meta["lucene"]["k1"], meta["lucene"]["b"],
            meta["lucene"]["rm3"], meta["lucene"]["not_applied"],
        )  # fmt: skip
        return index

    # ------------------------------------------------------------------ properties

    @property
    def tokenizer(self) -> FinanceTokenizer:
        """The tokenizer used for documents and queries."""
        return self._tokenizer

    @property
    def doc_ids(self) -> list[str]:
        """Document ids in row order (a copy)."""
        return list(self._doc_ids)

    @property
    def num_docs(self) -> int:
        """Number of documents (including those without a token, which Lucene does not hold)."""
        return len(self._doc_ids)

    # ------------------------------------------------------------------ searching

    def _hits(self, scored: Any) -> list[Hit]:
        return [Hit(str(doc.docid), float(doc.score)) for doc in scored]

    def search_tokens(self, queries_tokens: Sequence[Sequence[str]], k: int) -> Run:
        """Top ``k`` hits for each pre-tokenised query (tokens from :attr:`tokenizer`), best first.

        A query with no token gets ``[]``; documents matching no query term are never returned.

        Raises:
            ValueError: If ``k`` is not a positive int.
            TypeError: If a query is a str instead of a token list.
            RetrievalError: If Lucene fails.
        """
        kk = min(check_k(k), self.num_docs)
        texts, asked = query_texts(queries_tokens, joined, f"lucene {self.name!r}")
        run: Run = [[] for _ in texts]
        if not asked:
            return run
        threads = int(self._meta["lucene"]["search_threads"])
        try:
            with self._lock:
                if len(asked) == 1 or threads == 1:
                    for row in asked:
                        run[row] = self._hits(self._searcher.search(texts[row], kk))
                else:
                    queries, qids = self._java.ArrayList(), self._java.ArrayList()
                    for row in asked:
                        queries.add(texts[row])
                        qids.add(str(row))
                    found = self._searcher.batch_search(queries, qids, kk, threads)
                    for entry in found.entrySet().toArray():
                        run[int(entry.getKey())] = self._hits(entry.getValue())
        except Exception as exc:  # JavaException: never an empty result
            raise RetrievalError(
                f"lucene {self.name!r}: search of {len(asked)} queries failed: {exc}"
            ) from exc
        finally:
            detach_thread()
        return run

    def search(self, queries: Sequence[str], k: int) -> Run:
        """Return the top ``k`` hits for each query (tokenised with the index's tokenizer), in query order.

        Raises:
            ValueError: If ``k`` is not a positive int or ``queries`` is a single string.
        """
        if isinstance(queries, str):
            message = "queries must be a sequence of strings, not one str; wrap it in a list."
            raise ValueError(message)  # noqa: TRY004 - a ValueError, as BM25Index raises
        return self.search_tokens(self._tokenizer.tokenize_many(queries), k)

    def term_scores_unavailable(self) -> str | None:
        """Why :meth:`get_scores` cannot be used on this index, or ``None`` when it can."""
        if self._meta["lucene"].get("rm3"):
            return (
                "this Lucene index searches with RM3 query expansion, whose scores exist only for the "
                "documents the expanded query retrieves; build it with index_build.lucene.rm3: null for "
                "this use, or turn the use off (negative_mining.candidates.bm25.enabled: false)"
            )
        return None

    def _scoring(self) -> tuple[Any, Any, np.ndarray]:
        if self._scorer is None:
            classes, settings = self._java, self._meta["lucene"]
            reader = self._searcher.reader
            searcher = classes.IndexSearcher(reader)
            searcher.setSimilarity(classes.BM25Similarity(float(settings["k1"]), float(settings["b"])))
            stored = reader.storedFields()
            rows = np.array(
                [self._row[str(stored.document(i).get(ID_FIELD))] for i in range(reader.maxDoc())],
                dtype=np.int64,
            )
            self._scorer = (searcher, classes.BagOfWordsQueryGenerator(), rows)
        return self._scorer

    def get_scores(self, tokens: Sequence[str]) -> np.ndarray:
        """The BM25 score of every document (row order) for one tokenised query; 0 where no term matches.

        Lucene's own scoring of the bag-of-words query (same analyzer, k1 and b as :meth:`search`), rounded to
        the 4 decimals :meth:`search` returns.

        Raises:
            IndexCapabilityError: While RM3 is on (:meth:`term_scores_unavailable`).
            RetrievalError: If Lucene fails.
        """
        from finrag_pipelines.retrieval.interfaces import IndexCapabilityError

        why = self.term_scores_unavailable()
        if why is not None:
            raise IndexCapabilityError(f"lucene {self.name!r} has no get_scores: {why}.")
        scores = np.zeros(self.num_docs, dtype=np.float32)
        text = joined(tokens)
        if not text:
            return scores
        try:
            with self._lock:
                searcher, generator, rows = self._scoring()
                query = generator.buildQuery(CONTENTS_FIELD, self._java.WhitespaceAnalyzer(), text)
                top = searcher.search(query, max(1, len(rows)))
                hits = [(int(d.doc), float(d.score)) for d in top.scoreDocs]
        except Exception as exc:
            raise RetrievalError(f"lucene {self.name!r}: scoring {text[:40]!r} failed: {exc}") from exc
        finally:
            detach_thread()
        if hits:
            internal, values = zip(*hits, strict=True)
            scores[rows[list(internal)]] = np.round(np.asarray(values, dtype=np.float64), SCORE_DECIMALS)
        return scores

    # ------------------------------------------------------------------ persistence

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``lucene/``, ``tokenizer/``, ``doc_ids.json`` and ``meta.json`` (last) into ``folder``."""
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        if (target / LUCENE_DIR).exists():
            shutil.rmtree(target / LUCENE_DIR)
        shutil.copytree(self._dir, target / LUCENE_DIR, ignore=shutil.ignore_patterns("write.lock"))
        self._tokenizer.save(target / TOKENIZER_DIR)
        write_json(target / DOC_IDS_FILE, self._doc_ids)
        write_json(target / META_FILE, self._meta)  # last: a folder with meta.json is complete
        logger.info("lucene %r: saved %d docs to %s", self.name, self.num_docs, target)
        return target

    @classmethod
    def load(cls, folder: str | os.PathLike[str], *, name: str | None = None) -> LuceneBM25Index:
        """Open a folder written by :meth:`save`, checking its files, tokenizer and document count.

        Raises:
            IndexMismatchError: On missing or inconsistent files (the message names the folder).
            LuceneUnavailableError: If the ``lucene`` extra is missing or Java cannot start.
        """
        source = Path(folder)
        meta, doc_ids = read_meta_and_ids(
            source, "bm25", FORMAT_VERSION, "BM25", [f"{TOKENIZER_DIR}/tokenizer.json"]
        )
        if meta.get("backend") != BACKEND or not isinstance(meta.get("lucene"), dict):
            raise IndexMismatchError(
                f"{source / META_FILE} is not a Lucene BM25 index (backend "
                f"{meta.get('backend')!r}); {REBUILD_HINT}."
            )
        if not any((source / LUCENE_DIR).glob("segments_*")):
            raise IndexMismatchError(
                f"BM25 index folder {source} lacks a Lucene index in {LUCENE_DIR}/; {REBUILD_HINT}."
            )
        if meta.get("num_docs") != len(doc_ids):
            raise IndexMismatchError(
                f"BM25 index in {source}: meta.json num_docs {meta.get('num_docs')} but "
                f"{DOC_IDS_FILE} has {len(doc_ids)} ids; {REBUILD_HINT}."
            )
        try:
            tokenizer = FinanceTokenizer.load(source / TOKENIZER_DIR)
        except TokenizerConfigError as exc:
            raise IndexMismatchError(
                f"BM25 index in {source}: its tokenizer cannot be restored ({exc})."
            ) from exc
        if tokenizer.fingerprint != meta.get("tokenizer_fingerprint"):
            raise IndexMismatchError(
                f"BM25 index in {source}: tokenizer/ fingerprint {tokenizer.fingerprint[:12]} differs from "
                "the one "
                f"in meta.json ({str(meta.get('tokenizer_fingerprint'))[:12]}); {REBUILD_HINT}."
            )
        if name:
            meta["name"] = name
        index = cls(source / LUCENE_DIR, doc_ids, tokenizer, meta)
        logger.info("lucene %r: opened %d docs from %s", index.name, index.num_docs, source)
        return index

    def check_compatible(self, corpus_hash: str) -> None:
        """Refuse a corpus other than the one the index was built from.

        Raises:
            IndexMismatchError: Naming both hashes and how to fix it.
        """
        if corpus_hash != self._meta.get("corpus_hash"):
            raise IndexMismatchError(
                f"BM25 index {self.name!r} (lucene, {self.num_docs} docs, built "
                f"{self._meta.get('built_at')}) was "
                f"built from corpus {str(self._meta.get('corpus_hash'))[:12]}, but the corpus in use is "
                f"{str(corpus_hash)[:12]}; use the matching corpus or {REBUILD_HINT}."
            )

    def close(self) -> None:
        """Close the Lucene searcher (and remove the temporary folder of an unsaved index)."""
        self._finalizer()

    def __repr__(self) -> str:
        return f"LuceneBM25Index(name={self.name!r}, docs={self.num_docs}, dir={self._dir})"


def _release(searcher: Any, cleanup: Path | None) -> None:
    try:
        searcher.close()
    except Exception as exc:  # noqa: BLE001 - the JVM may already be shutting down
        logger.debug("lucene: closing a searcher failed: %s", exc)
    if cleanup is not None:
        shutil.rmtree(cleanup, ignore_errors=True)
