"""A BM25 index in a Milvus collection: the bm25s index's documents, as tokens, behind the same interface.

:class:`MilvusBM25Index` implements :class:`~finrag_pipelines.retrieval.interfaces.LexicalIndex`, like
:class:`~finrag_pipelines.retrieval.bm25.index.BM25Index`: ``name``, ``meta``, ``num_docs``, ``doc_ids``,
``tokenizer``, ``search(queries, k)``, ``search_tokens`` and ``check_compatible``. It does *not* implement
:class:`~finrag_pipelines.retrieval.interfaces.TermScoringIndex` (``get_scores``: the score of every
document for one query): Milvus answers with the top hits only (see :attr:`MilvusBM25Index.UNSUPPORTED`).

Documents are stored as their jieba tokens joined by spaces in a VARCHAR field analysed by Milvus's
``standard`` tokenizer + ``lowercase`` (Milvus Lite rejects ``whitespace``); a BM25 ``Function`` fills a
sparse vector field. Queries are tokenised by the index's own :class:`FinanceTokenizer` and joined the same
way. The bm25s-only refinements (tf cap, domain-term weights) have no Milvus counterpart; ``k1``/``b`` are
carried over.

Written with :meth:`MilvusBM25Index.write` from the index ``index_build`` returns, idempotently (see
:mod:`~finrag_pipelines.retrieval.milvus.collection`). Kedro-free library module.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from finrag_pipelines.retrieval.bm25.index import BM25Index
from finrag_pipelines.retrieval.milvus.collection import (
    BACKEND,
    FORMAT_VERSION,
    ID_FIELD,
    MAX_TOPK,
    REBUILD_HINT,
    SEARCH_BATCH,
    VARCHAR_MAX,
    batches,
    build_key,
    complete_collection,
    create_collection,
    fetch_doc_ids,
    hit_id,
    id_max_length,
    kept_meta,
    open_collection,
    prepare_collection,
    write_rows,
)
from finrag_pipelines.retrieval.milvus.connection import MilvusTarget, connect
from finrag_pipelines.retrieval.named_meta import NamedMeta
from finrag_pipelines.retrieval.query_tokens import check_k, query_texts
from finrag_pipelines.retrieval.types import Hit, IndexMismatchError, RetrievalError, Run
from finrag_pipelines.text.tokenize import FinanceTokenizer

logger = logging.getLogger(__name__)

BM25_ANALYZER: dict[str, Any] = {"tokenizer": "standard", "filter": ["lowercase"]}
TEXT_FIELD = "text"
SPARSE_FIELD = "sparse"
BM25_FUNCTION = "bm25"


@dataclass(frozen=True)
class MilvusBM25Config:
    """The BM25 collection's sparse index.

    Attributes:
        inverted_index_algo: Milvus's ``SPARSE_INVERTED_INDEX`` algorithm ("DAAT_MAXSCORE", "DAAT_WAND",
            "TAAT_NAIVE").
        k1: BM25 k1; ``None`` = the one the bm25s index was built with.
        b: BM25 b; ``None`` = the one the bm25s index was built with.
    """

    inverted_index_algo: str = "DAAT_MAXSCORE"
    k1: float | None = None
    b: float | None = None

    def resolve(self, index: BM25Index) -> dict[str, Any]:
        """The index parameters for ``index`` (its k1/b unless set here)."""
        return {
            "inverted_index_algo": self.inverted_index_algo,
            "bm25_k1": float(self.k1 if self.k1 is not None else index.config.k1),
            "bm25_b": float(self.b if self.b is not None else index.config.b),
        }


def joined_tokens(tokens: Sequence[str]) -> str:
    """One document's (or query's) jieba tokens as the space-joined text Milvus analyses."""
    return " ".join(token for token in tokens if token and not token.isspace())


class MilvusBM25Index(NamedMeta):
    """A Milvus collection with a BM25 function over space-joined jieba tokens, and its tokenizer.

    Create with :meth:`write` or :meth:`open`, not directly. Implements
    :class:`~finrag_pipelines.retrieval.interfaces.LexicalIndex`; the members it cannot provide are listed in
    :attr:`UNSUPPORTED`.

    Args:
        client: A ``pymilvus.MilvusClient``.
        target: The collection.
        tokenizer: The tokenizer the documents were tokenised with (used for queries).
        meta: Build metadata (the local ``meta.json``).
    """

    DEFAULT_NAME = "bm25"  # collections written before the name was recorded
    UNSUPPORTED: ClassVar[Mapping[str, str]] = {
        "get_scores": (
            "Milvus answers a BM25 query with its top hits only, never with the score of every document; "
            "use the bm25s index (BM25Index, a `finrag_pipelines.datasets.BM25IndexDataset` folder) where "
            "every document's score is needed, e.g. negative_mining's BM25 candidates, or turn that use off "
            "(negative_mining.candidates.bm25.enabled: false)"
        ),
    }
    """Members of :class:`~finrag_pipelines.retrieval.interfaces.TermScoringIndex` this backend does not
    have, each with why and what to use instead (read by
    :func:`~finrag_pipelines.retrieval.interfaces.require_term_scores`)."""

    def __init__(
        self, client: Any, target: MilvusTarget, tokenizer: FinanceTokenizer, meta: dict[str, Any]
    ) -> None:
        self._client = client
        self._target = target
        self._tokenizer = tokenizer
        self._meta = meta
        self._doc_ids: list[str] | None = None

    @classmethod
    def write(
        cls,
        index: BM25Index,
        target: MilvusTarget,
        config: MilvusBM25Config | None = None,
        *,
        texts: Sequence[str] | None = None,
        batch_size: int = 1000,
        index_timeout_s: float = 600.0,
        show_progress: bool = True,
    ) -> MilvusBM25Index:
        """Write a built BM25 index's documents (their tokens) to the collection (idempotent).

        Args:
            index: The index ``index_build`` returned; its :attr:`~BM25Index.corpus_tokens` are written.
            target: The collection.
            config: Sparse index settings (default: the index's k1/b).
            texts: The document texts in row order, re-tokenised with the index's tokenizer; only needed for
                an index that does not carry its tokens (one loaded from a folder).
            batch_size: Rows per insert request.
            index_timeout_s: How long to wait for the sparse index to be built.
            show_progress: Show a tqdm bar while inserting.

        Returns:
            The searchable index.

        Raises:
            ValueError: If the index carries no tokens and no texts are given, or a document is too long.
        """
        from pymilvus import DataType, Function, FunctionType

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        config = config or MilvusBM25Config()
        built = index.meta
        index_params = config.resolve(index)
        build_inputs = {
            "format_version": FORMAT_VERSION,
            "kind": "bm25",
            "corpus_hash": built.get("corpus_hash"),
            "tokenizer_fingerprint": built.get("tokenizer_fingerprint"),
            "num_docs": index.num_docs,
            "analyzer": BM25_ANALYZER,
            "index": index_params,
        }
        key = build_key(build_inputs)
        meta = {
            **built,
            "backend": BACKEND,
            "milvus": {
                **target.describe(),
                "index_type": "SPARSE_INVERTED_INDEX",
                "metric_type": "BM25",
                "analyzer": BM25_ANALYZER,
                "params": index_params,
                "build_key": key,
                "not_applied": {
                    "tf_cap": index.config.tf_cap,
                    "domain_term_weight": index.config.domain_term_weight,
                },
            },
        }
        client = connect(target)
        action = prepare_collection(client, target, key, index.num_docs)
        if action == "keep":
            logger.info(
                "milvus: %s already holds this BM25 index (%d docs); left as is", target, index.num_docs
            )
            return cls(client, target, index.tokenizer, kept_meta(client, target))
        tokens = index.corpus_tokens
        if tokens is None:
            if texts is None:
                raise ValueError(
                    f"BM25 index {index.name!r} carries no tokenised corpus (it was loaded from a folder); "
                    "write the index that BM25Index.build returns, or pass texts= (the documents in row "
                    "order)."
                )
            if len(texts) != index.num_docs:
                raise ValueError(f"got {len(texts)} texts for a BM25 index of {index.num_docs} documents.")
            tokens = index.tokenizer.tokenize_many(texts)
        doc_ids = index.doc_ids
        joined = [joined_tokens(doc) for doc in tokens]
        longest = max(range(len(joined)), key=lambda row: len(joined[row].encode("utf-8")))
        text_bytes = len(joined[longest].encode("utf-8"))
        if text_bytes > VARCHAR_MAX:
            raise ValueError(
                f"document {doc_ids[longest]!r} is {text_bytes} bytes as joined tokens; a Milvus VARCHAR "
                f"holds at most {VARCHAR_MAX}. Split long documents into passages in corpus_prep."
            )
        if action == "create":
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field(ID_FIELD, DataType.VARCHAR, is_primary=True, max_length=id_max_length(doc_ids))
            schema.add_field(
                TEXT_FIELD,
                DataType.VARCHAR,
                max_length=VARCHAR_MAX,
                enable_analyzer=True,
                analyzer_params=BM25_ANALYZER,
            )
            schema.add_field(SPARSE_FIELD, DataType.SPARSE_FLOAT_VECTOR)
            schema.add_function(
                Function(
                    name=BM25_FUNCTION,
                    function_type=FunctionType.BM25,
                    input_field_names=[TEXT_FIELD],
                    output_field_names=[SPARSE_FIELD],
                )
            )
            sparse_index = client.prepare_index_params()
            sparse_index.add_index(
                field_name=SPARSE_FIELD,
                index_type="SPARSE_INVERTED_INDEX",
                metric_type="BM25",
                params=index_params,
            )
            create_collection(client, target, schema, sparse_index, key)

        def rows(start: int, stop: int) -> list[dict[str, Any]]:
            return [
                {ID_FIELD: doc_id, TEXT_FIELD: text}
                for doc_id, text in zip(doc_ids[start:stop], joined[start:stop], strict=True)
            ]

        seconds = write_rows(client, target, action, len(doc_ids), rows, batch_size, show_progress)
        logger.info(
            "milvus: %s %s %d tokenised documents in %.2fs",
            target,
            "inserted" if action == "create" else "upserted",
            len(doc_ids),
            seconds,
        )
        complete_collection(client, target, SPARSE_FIELD, meta, index_timeout_s)
        written = cls(client, target, index.tokenizer, meta)
        written._doc_ids = list(doc_ids)
        return written

    @classmethod
    def open(
        cls, target: MilvusTarget, meta: Mapping[str, Any], tokenizer: FinanceTokenizer
    ) -> MilvusBM25Index:
        """Connect to a collection written by :meth:`write` and check it against its ``meta.json``.

        Args:
            target: The collection (and connection credentials).
            meta: The ``meta.json`` that :meth:`write` produced.
            tokenizer: The tokenizer saved with it (its fingerprint must match ``meta.json``).

        Raises:
            IndexMismatchError: If the collection is missing, incomplete, built from other inputs, or the
                tokenizer differs.
        """
        if meta.get("kind") != "bm25":
            raise IndexMismatchError(
                f"meta.json for {target} is not a BM25 index (kind {meta.get('kind')!r}); {REBUILD_HINT}."
            )
        if tokenizer.fingerprint != meta.get("tokenizer_fingerprint"):
            raise IndexMismatchError(
                f"BM25 index {target}: tokenizer fingerprint {tokenizer.fingerprint[:12]} differs from the "
                f"one recorded in meta.json ({str(meta.get('tokenizer_fingerprint'))[:12]}); {REBUILD_HINT}."
            )
        client = open_collection(target, meta, "BM25")
        logger.info("milvus: opened BM25 %s (%s docs)", target, meta.get("num_docs"))
        return cls(client, target, tokenizer, dict(meta))

    @property
    def target(self) -> MilvusTarget:
        """The collection."""
        return self._target

    @property
    def tokenizer(self) -> FinanceTokenizer:
        """The tokenizer used for documents and queries."""
        return self._tokenizer

    @property
    def doc_ids(self) -> list[str]:
        """Document ids (sorted; fetched from Milvus on first use)."""
        if self._doc_ids is None:
            self._doc_ids = fetch_doc_ids(self._client, self._target.collection)
        return list(self._doc_ids)

    @property
    def num_docs(self) -> int:
        """Number of indexed documents."""
        return int(self._meta["num_docs"])

    def search_tokens(self, queries_tokens: Sequence[Sequence[str]], k: int) -> Run:
        """Top ``k`` hits for each pre-tokenised query (tokens from :attr:`tokenizer`), best first.

        A query with no token gets ``[]`` (as :meth:`BM25Index.search_tokens`). Scores are Milvus's BM25
        scores (Milvus Lite reports them negated as distances; they are returned positive).

        Raises:
            ValueError: If ``k`` is not a positive int.
            TypeError: If a query is a str instead of a token list.
            RetrievalError: If Milvus fails to answer.
        """
        kk = min(check_k(k), self.num_docs, MAX_TOPK)
        texts, asked = query_texts(queries_tokens, joined_tokens, f"bm25 {self.name!r} (milvus)")
        run: Run = [[] for _ in texts]
        params = {"metric_type": "BM25", "params": {}}
        for start, stop in batches(len(asked), SEARCH_BATCH):
            rows = asked[start:stop]
            try:
                result = self._client.search(
                    self._target.collection,
                    data=[texts[row] for row in rows],
                    anns_field=SPARSE_FIELD,
                    limit=kk,
                    search_params=params,
                    output_fields=[],
                )
            except Exception as exc:  # MilvusException, grpc errors
                raise RetrievalError(
                    f"{self._target}: BM25 search failed for queries {rows[0]}..{rows[-1]}: {exc}"
                ) from exc
            for row, hits in zip(rows, result, strict=True):
                run[row] = [Hit(hit_id(hit), abs(float(hit["distance"]))) for hit in hits]
        return run

    def search(self, queries: Sequence[str], k: int) -> Run:
        """Return the top ``k`` hits for each query (tokenised with the index's tokenizer), in query order.

        Raises:
            ValueError: If ``k`` is not a positive int or ``queries`` is a single string.
        """
        if isinstance(queries, str):
            raise ValueError("queries must be a sequence of strings, not one str; wrap it in a list.")
        return self.search_tokens(self._tokenizer.tokenize_many(queries), k)

    def check_compatible(self, corpus_hash: str) -> None:
        """Refuse a corpus other than the one the index was built from (as ``BM25Index.check_compatible``).

        Raises:
            IndexMismatchError: Naming both hashes and how to fix it.
        """
        if corpus_hash != self._meta.get("corpus_hash"):
            raise IndexMismatchError(
                f"BM25 index {self.name!r} ({self.num_docs} docs, built {self._meta.get('built_at')}, "
                f"{self._target}) was built from corpus {str(self._meta.get('corpus_hash'))[:12]}, but the "
                f"corpus in use is {str(corpus_hash)[:12]}; use the matching corpus or {REBUILD_HINT}."
            )

    def __repr__(self) -> str:
        return f"MilvusBM25Index(name={self.name!r}, {self._target}, docs={self.num_docs})"
