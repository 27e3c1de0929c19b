"""The BM25 index folder: bm25s files, tokenizer folder, ``doc_ids.json`` and ``meta.json``, checked on read.

Kedro-free library module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bm25s

from finrag_pipelines.retrieval.bm25.scoring import BM25Config
from finrag_pipelines.retrieval.index_folder import (
    DOC_IDS_FILE,
    META_FILE,
    REBUILD_HINT,
    read_meta_and_ids,
    write_json,
)
from finrag_pipelines.retrieval.types import IndexMismatchError
from finrag_pipelines.text.dictionaries import TokenizerConfigError
from finrag_pipelines.text.tokenizers import Tokenizer, load_tokenizer

FORMAT_VERSION = 1
BM25S_DIR = "bm25s"
TOKENIZER_DIR = "tokenizer"

_BM25S_FILES = (
    "data.csc.index.npy",
    "indices.csc.index.npy",
    "indptr.csc.index.npy",
    "vocab.index.json",
    "params.index.json",
)


@dataclass(frozen=True)
class BM25Folder:
    """What a BM25 index folder holds, checked for consistency.

    Attributes:
        retriever: The bm25s object (score matrix and vocabulary).
        doc_ids: Document ids in row order.
        tokenizer: The tokenizer the index was built with.
        config: Scoring settings (``meta.json["bm25"]``).
        meta: Build metadata (``meta.json``).
    """

    retriever: bm25s.BM25
    doc_ids: list[str]
    tokenizer: Tokenizer
    config: BM25Config
    meta: dict[str, Any]

    @property
    def num_terms(self) -> int:
        """Number of indexed terms (score matrix columns)."""
        return len(self.retriever.scores["indptr"]) - 1


def write_bm25_folder(
    target: Path,
    retriever: bm25s.BM25,
    tokenizer: Tokenizer,
    doc_ids: list[str],
    meta: dict[str, Any],
) -> None:
    """Write the bm25s files, tokenizer folder, ``doc_ids.json`` and ``meta.json`` (last) into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    retriever.save(target / BM25S_DIR, show_progress=False)
    tokenizer.save(target / TOKENIZER_DIR)
    write_json(target / DOC_IDS_FILE, doc_ids)
    write_json(target / META_FILE, meta)  # last: a folder with meta.json is complete


def read_bm25_folder(source: Path, *, mmap: bool = False) -> BM25Folder:
    """Read and validate a folder written by :func:`write_bm25_folder`.

    With ``mmap`` the score matrix arrays are memory-mapped (bm25s's own ``mmap`` load) instead of read.

    Raises:
        IndexMismatchError: On missing files, unreadable or inconsistent contents, or another format
            version (the message names the folder and what is wrong).
    """
    meta, doc_ids = read_meta_and_ids(
        source,
        "bm25",
        FORMAT_VERSION,
        "BM25",
        [f"{TOKENIZER_DIR}/tokenizer.json"] + [f"{BM25S_DIR}/{n}" for n in _BM25S_FILES],
    )
    try:
        config = BM25Config(**meta["bm25"])
    except (KeyError, TypeError, ValueError) as exc:
        raise IndexMismatchError(
            f"{source / META_FILE}: bad 'bm25' settings ({exc}); {REBUILD_HINT}."
        ) from exc
    try:
        retriever = bm25s.BM25.load(source / BM25S_DIR, load_corpus=False, mmap=mmap)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexMismatchError(
            f"cannot read the bm25s files in {source / BM25S_DIR} ({exc}); {REBUILD_HINT}."
        ) from exc
    n_terms = len(retriever.scores["indptr"]) - 1
    problems = []
    if meta.get("num_docs") != len(doc_ids) or retriever.scores["num_docs"] != len(doc_ids):
        problems.append(
            f"meta.json num_docs {meta.get('num_docs')}, {DOC_IDS_FILE} {len(doc_ids)} ids, bm25s params "
            f"num_docs {retriever.scores['num_docs']}"
        )
    if n_terms != len(retriever.vocab_dict):
        problems.append(
            f"bm25s vocabulary has {len(retriever.vocab_dict)} terms but the score matrix {n_terms} columns"
        )
    indices = retriever.scores["indices"]
    if len(indices) and int(indices.max()) >= len(doc_ids):
        problems.append(f"score matrix refers to row {int(indices.max())} of {len(doc_ids)} documents")
    built = (retriever.k1, retriever.b, retriever.method)
    if built != (config.k1, config.b, config.method):
        problems.append(
            f"bm25s params (k1, b, method) {built} differ from meta.json "
            f"{(config.k1, config.b, config.method)}"
        )
    if problems:
        raise IndexMismatchError(
            f"BM25 index in {source} is inconsistent: {'; '.join(problems)}; {REBUILD_HINT}."
        )
    try:
        tokenizer = load_tokenizer(source / TOKENIZER_DIR)
    except TokenizerConfigError as exc:
        raise IndexMismatchError(
            f"BM25 index in {source}: its tokenizer cannot be restored ({exc})."
        ) from exc
    if tokenizer.fingerprint != meta.get("tokenizer_fingerprint"):
        raise IndexMismatchError(
            f"BM25 index in {source}: tokenizer/ fingerprint {tokenizer.fingerprint[:12]} differs from "
            "the one "
            f"recorded in meta.json ({str(meta.get('tokenizer_fingerprint'))[:12]}); {REBUILD_HINT}."
        )
    return BM25Folder(retriever, doc_ids, tokenizer, config, meta)
