"""Passages on long documents built from real texts: passage retrieval vs truncation, scored per document.

The bundled DISC-FinLLM documents are shuffled (seeded) and concatenated eight at a time into long
"announcements", so a query's relevant text sits anywhere in its long document; its judgements move to the
long document. Truncation — what an encoder with a token limit does to a long document — keeps only the
first ``TRUNCATE_CHARS``; passages (corpus_prep.passages) keep everything, and evaluation scores each
document at its best passage. Measured numbers are printed (``pytest -s``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from finrag_pipelines.pipelines.corpus_prep.nodes import split_passages
from finrag_pipelines.pipelines.corpus_prep.params import PassageParams
from finrag_pipelines.pipelines.evaluation.nodes import score_runs
from finrag_pipelines.pipelines.evaluation.params import MetricParams
from finrag_pipelines.retrieval.bm25.index import BM25Index
from finrag_pipelines.retrieval.bm25.scoring import BM25Config
from finrag_pipelines.retrieval.dense import DenseIndex, DenseRetriever
from finrag_pipelines.retrieval.runs import run_to_frame
from finrag_pipelines.text.corpus import indexable
from finrag_pipelines.text.tokenize import FinanceTokenizer

DISC = Path(__file__).resolve().parents[2] / "data/01_raw/retrieval/disc_finllm"
GROUP = 8
TRUNCATE_CHARS = 512
PASSAGES = PassageParams(enabled=True, max_chars=400, overlap_chars=80)
METRICS = MetricParams(ks=[1, 3, 5, 10], cutoff=10)


def _long_document_set() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rows = [
        json.loads(line) for line in (DISC / "corpus.jsonl").read_text(encoding="utf-8").splitlines() if line
    ]
    order = np.random.default_rng(7).permutation(len(rows))
    long_of: dict[str, str] = {}
    docs = []
    for k, start in enumerate(range(0, len(order), GROUP)):
        parts = [rows[i] for i in order[start : start + GROUP]]
        for part in parts:
            long_of[str(part["_id"])] = f"L{k}"
        text = "\n".join(f"{p.get('title') or ''}\n{p['text']}".strip() for p in parts)
        docs.append((f"L{k}", f"长文档{k}", text))
    corpus = pd.DataFrame(docs, columns=["doc_id", "title", "text"]).assign(metadata="{}", source="test")
    queries = pd.DataFrame(
        [
            (q["_id"], q["text"])
            for q in map(json.loads, (DISC / "queries.jsonl").read_text("utf-8").splitlines())
        ],
        columns=["query_id", "text"],
    )
    qrels = pd.read_csv(DISC / "qrels.tsv", sep="\t", dtype=str)
    qrels = pd.DataFrame(
        {"query_id": qrels["query-id"], "doc_id": qrels["corpus-id"].map(long_of), "score": 1}
    )
    return corpus, queries, qrels.drop_duplicates(["query_id", "doc_id"])


def _mrr(corpus_rows: pd.DataFrame, run, queries, qrels) -> float:
    splits = pd.DataFrame({"query_id": queries["query_id"], "split": "report"})
    frame = run_to_frame(list(queries["query_id"]), run)
    return float(score_runs(queries, qrels, splits, METRICS, corpus_rows, run=frame)["mrr@10"].mean())


@pytest.mark.slow
def test_passages_find_what_truncation_cuts_off_in_long_documents() -> None:
    from finrag_pipelines.embedding.use_encoder import USEEncoder

    corpus, queries, qrels = _long_document_set()
    assert corpus["text"].str.len().median() > 4 * TRUNCATE_CHARS  # long documents indeed
    passages, stats = split_passages(corpus, PASSAGES)
    assert (
        stats["documents_split"] == len(corpus) and passages["text"].str.len().max() <= 2 * PASSAGES.max_chars
    )
    truncated = corpus.assign(text=corpus["text"].str.slice(0, TRUNCATE_CHARS), parent_id=corpus["doc_id"])
    whole = corpus.assign(parent_id=corpus["doc_id"])
    encoder = USEEncoder(threads=2, batch_size=64)
    texts = list(queries["text"])
    mrr: dict[str, float] = {}
    for name, rows in (("truncated", truncated), ("whole", whole), ("passages", passages)):
        ids, indexed, digest = indexable(rows["doc_id"], rows["title"], rows["text"])
        bm25 = BM25Index.build(ids, indexed, FinanceTokenizer(n_jobs=1), BM25Config(), digest)
        mrr[f"bm25_{name}"] = _mrr(rows, bm25.search(texts, 100), queries, qrels)
        if name != "whole":  # an encoder with a length limit sees the truncated text, never the whole
            meta = {**encoder.describe(), "fingerprint": encoder.fingerprint}
            dense = DenseIndex.build(ids, encoder.encode_documents(indexed), meta, digest)
            mrr[f"dense_{name}"] = _mrr(
                rows, DenseRetriever(dense, encoder).search(texts, 100), queries, qrels
            )
    print(f"\nlong documents: {len(corpus)} x {GROUP} DISC texts -> {len(passages)} passages; MRR@10 {mrr}")
    # dense: passages see the whole document; truncation drops 7/8 of it
    assert mrr["dense_passages"] > mrr["dense_truncated"] + 0.15
    # BM25 never truncates, but a long document's length normalisation dilutes the matching part
    assert mrr["bm25_passages"] > mrr["bm25_truncated"] + 0.15
    assert mrr["bm25_passages"] >= mrr["bm25_whole"] - 0.05
