"""corpus_prep nodes: small pure functions over tables;
parsing and dedup live in ``finrag_pipelines.text``."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from finrag_pipelines.pipelines.corpus_prep.params import DedupParams, FilterParams, PassageParams
from finrag_pipelines.text.corpus import (
    CorpusFormatError,
    SourceRow,
    index_text,
    parse_documents,
    parse_qrels,
    parse_queries,
)
from finrag_pipelines.text.dedup import find_duplicates
from finrag_pipelines.text.passages import split_corpus

logger = logging.getLogger(__name__)

CORPUS_COLUMNS = ["doc_id", "title", "text", "metadata", "source"]


def normalise_corpus(corpus_raw: list[SourceRow]) -> pd.DataFrame:
    """Validate every corpus row (BEIR or seed format) and normalise it to
    ``doc_id, title, text, metadata``."""
    docs = parse_documents(corpus_raw)
    if not docs:
        raise CorpusFormatError("the corpus file has no documents")
    frame = pd.DataFrame(
        [(d.doc_id, d.title, d.text, d.metadata, d.where) for d in docs], columns=CORPUS_COLUMNS
    )
    logger.info("corpus_prep: parsed %d documents", len(frame))
    return frame


def screen_documents(corpus: pd.DataFrame, filter: FilterParams, dedup: DedupParams) -> pd.DataFrame:  # noqa: A002
    """Decide for every document: ``kept``, ``too_short``, ``exact_duplicate`` or ``near_duplicate``.

    Returns an audit table ``doc_id, status, kept_as, similarity`` with one row per input document;
    a duplicate's ``kept_as`` names the document that represents it.
    """
    texts = [index_text(t, x) for t, x in zip(corpus["title"], corpus["text"])]
    status = ["kept"] * len(texts)
    kept_as: list[str | None] = list(corpus["doc_id"])
    similarity = [float("nan")] * len(texts)
    long_enough = [i for i, text in enumerate(texts) if len(text.strip()) >= filter.min_chars]
    for i in set(range(len(texts))) - set(long_enough):
        status[i], kept_as[i] = "too_short", None
    matches = find_duplicates(
        [texts[i] for i in long_enough],
        near=dedup.near,
        ngram=dedup.ngram,
        max_hamming=dedup.max_hamming,
        min_jaccard=dedup.min_jaccard,
    )
    for match in matches:
        i, keep = long_enough[match.index], long_enough[match.kept_index]
        status[i] = f"{match.kind}_duplicate"
        kept_as[i] = corpus["doc_id"].iat[keep]
        similarity[i] = match.similarity
    audit = pd.DataFrame(
        {"doc_id": corpus["doc_id"], "status": status, "kept_as": kept_as, "similarity": similarity}
    )
    counts = audit["status"].value_counts().to_dict()
    logger.info(
        "corpus_prep: %d documents in, %d kept; dropped: %s",
        len(audit),
        counts.get("kept", 0),
        {k: v for k, v in counts.items() if k != "kept"} or "none",
    )
    return audit


def select_corpus(corpus: pd.DataFrame, doc_status: pd.DataFrame) -> pd.DataFrame:
    """Keep the documents the audit marked ``kept``, in input order."""
    kept = set(doc_status.loc[doc_status["status"] == "kept", "doc_id"])
    return corpus[corpus["doc_id"].isin(kept)].reset_index(drop=True)


def split_passages(corpus: pd.DataFrame, passages: PassageParams) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The corpus that is indexed: one row per passage, each naming its ``parent_id`` (see text/passages.py).

    Disabled: the documents as they are, ``parent_id`` = ``doc_id``. Enabled: a body longer than
    ``max_chars`` becomes passages ``<doc_id>#<k>`` with the document's title and metadata.
    """
    if not passages.enabled:
        out = corpus.assign(parent_id=corpus["doc_id"], passage=0)
        report = {"enabled": False, "documents": len(corpus), "passages": len(corpus)}
        return out.reset_index(drop=True), report
    rows, stats = split_corpus(
        [str(d) for d in corpus["doc_id"]],
        [str(t) for t in corpus["text"]],
        passages.max_chars,
        passages.overlap_chars,
    )
    table = pd.DataFrame(rows, columns=["doc_id", "parent_id", "text", "passage"])
    meta = corpus.drop(columns=["text"]).rename(columns={"doc_id": "parent_id"})
    out = table.merge(meta, on="parent_id", how="left", validate="many_to_one")
    out = out[[*CORPUS_COLUMNS, "parent_id", "passage"]]
    report = {
        "enabled": True,
        "max_chars": passages.max_chars,
        "overlap_chars": passages.overlap_chars,
        **stats.to_dict(),
    }
    logger.info(
        "corpus_prep: %d documents -> %d passages (%d documents split; %d table rows over max_chars "
        "kept whole, %d sentences cut at max_chars)",
        stats.documents,
        stats.passages,
        stats.documents_split,
        stats.oversized_table_rows,
        stats.hard_cut_units,
    )
    return out, report


def prepare_queries(queries_raw: list[SourceRow]) -> pd.DataFrame:
    """Validate BEIR queries into ``query_id, text``."""
    queries = pd.DataFrame(parse_queries(queries_raw), columns=["query_id", "text"])
    logger.info("corpus_prep: %d queries", len(queries))
    return queries


def prepare_qrels(
    qrels_raw: list[SourceRow], queries: pd.DataFrame, doc_status: pd.DataFrame
) -> pd.DataFrame:
    """Validate judgements against the queries and corpus, and follow deduplication.

    A judgement on a removed duplicate moves to the document kept in its place (the highest grade wins
    when both were judged); a judgement on a too-short (dropped) document is removed and counted, so
    its query may end up with no relevant document, which the evaluation reports as unanswerable.
    """
    known_queries = set(queries["query_id"])
    status = dict(zip(doc_status["doc_id"], zip(doc_status["status"], doc_status["kept_as"])))
    rows, moved, dropped = [], 0, 0
    for qid, did, grade, where in parse_qrels(qrels_raw):
        if qid not in known_queries:
            raise CorpusFormatError(f"{where}: query id '{qid}' is not in queries.jsonl")
        if did not in status:
            raise CorpusFormatError(f"{where}: corpus id '{did}' is not in corpus.jsonl")
        state, target = status[did]
        if state == "too_short":
            dropped += 1
            continue
        moved += int(target != did)
        rows.append((qid, target, grade))
    qrels = pd.DataFrame(rows, columns=["query_id", "doc_id", "score"])
    qrels = qrels.groupby(["query_id", "doc_id"], as_index=False, sort=False)["score"].max()
    logger.info(
        "corpus_prep: %d judgements kept (%d moved to a kept duplicate, %d dropped with too-short documents)",
        len(qrels),
        moved,
        dropped,
    )
    return qrels


def summarise_corpus_prep(
    doc_status: pd.DataFrame, queries: pd.DataFrame, qrels: pd.DataFrame
) -> dict[str, Any]:
    """Counts for the record: documents by status, queries, judgements, queries left without relevant docs."""
    answerable = set(qrels.loc[qrels["score"] > 0, "query_id"])
    unanswerable = sorted(set(queries["query_id"]) - answerable)
    if unanswerable:
        logger.warning(
            "corpus_prep: %d queries have no relevant document left: %s", len(unanswerable), unanswerable[:10]
        )
    return {
        "documents_in": int(len(doc_status)),
        "documents_by_status": {k: int(v) for k, v in doc_status["status"].value_counts().items()},
        "queries": int(len(queries)),
        "judgements": int(len(qrels)),
        "queries_without_relevant_documents": unanswerable,
    }
