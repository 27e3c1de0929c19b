"""Hard-negative selection rules, on plain tables of candidate scores (unit-testable without an index).

A candidate row is one retrieved document for one query from one source (``dense`` or ``bm25``), with
its 1-based rank in that source's list, its score and the score the same source gives the query's
positive document. The rules, in order of precedence (the first that applies gives the status):

1. ``positive``: the candidate is a positive of the query; ``same_document_as_positive``: a passage of a
   positive's document (a corpus split into passages, ``<doc_id>#<k>``), never a negative;
2. ``outside_window``: its rank, counted after removing the positive(s), is outside ``[rank_min, rank_max]``;
3. ``false_negative``: ``score > positive_score * (1 - relative_margin)`` (NV-Retriever's 95% rule), each
   source against its own positive score; a document flagged by one source is dropped from the others too;
4. ``near_duplicate_of_positive``: char n-gram Jaccard with the positive's text ≥ the threshold;
5. ``reranker_false_negative`` (when the reranker filter is on): a cross-encoder scores the pair above the
   positive's own score times ``1 - relative_margin`` (sentence-transformers' ``mine_hard_negatives`` with a
   cross-encoder); the reranker scores only candidates the window could keep;
6. otherwise eligible: sampled per query (``kept``) or ``not_sampled``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from finrag_pipelines.embedding.encoders import format_query
from finrag_pipelines.text.dedup import ngram_hashes

STATUSES = (
    "kept",
    "positive",
    "outside_window",
    "false_negative",
    "near_duplicate_of_positive",
    "not_sampled",
    "same_document_as_positive",
    "reranker_false_negative",
)
CANDIDATE_COLUMNS = ["query_id", "doc_id", "candidate_id", "rank", "score", "source", "positive_score"]
SELECTION_COLUMNS = ["query_id", "candidate_id", "source", "rank", "score", "positive_score", "status"]
SOURCES = ("dense", "bm25")


@dataclass(frozen=True)
class Rules:
    """The selection rules (mirrors ``negative_mining.rules`` plus the BM25 share of negatives)."""

    rank_min: int
    rank_max: int
    relative_margin: float
    near_duplicate_jaccard: float
    near_duplicate_ngram: int
    num_negatives: int
    random_negatives: int
    seed: int
    bm25_share: float = 0.0


def stable_hash(*parts: object) -> int:
    """A 64-bit integer hash of ``parts`` that is the same in every process (unlike ``hash``)."""
    payload = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(payload).digest()[:8], "little")


def unit_interval(*parts: object) -> float:
    """A deterministic number in ``[0, 1)`` from ``parts``."""
    return stable_hash(*parts) / 2.0**64


def query_rng(seed: int, query_id: str) -> np.random.Generator:
    """The per-query generator: the result depends on the query id, never on row order."""
    return np.random.default_rng(stable_hash(seed, query_id))


def assign_split(doc_ids: Sequence[str], dev_fraction: float, seed: int) -> list[str]:
    """``"dev"`` or ``"train"`` per document id, from a seeded hash of the id."""
    return ["dev" if unit_interval("split", seed, d) < dev_fraction else "train" for d in doc_ids]


def window_rank(ranks: np.ndarray, positive_ranks: Sequence[int]) -> np.ndarray:
    """Ranks counted after removing the positives (raw ranks are 1-based and include them)."""
    pos = np.sort(np.asarray(list(positive_ranks), dtype=np.int64))
    return ranks - np.searchsorted(pos, ranks, side="left")


def label_candidates(
    ids: np.ndarray,
    ranks: np.ndarray,
    scores: np.ndarray,
    positive_scores: np.ndarray,
    positives: set[str],
    rules: Rules,
    near_duplicate: Callable[[str], bool],
) -> np.ndarray:
    """Status of each candidate of one query and one source (sampling not yet applied).

    Args:
        ids: Candidate ids of one query from one source.
        ranks: Their 1-based ranks in that source's list (the positive included).
        scores: Their scores.
        positive_scores: The source's score of the query's positive (one per row).
        positives: The query's positive document ids.
        rules: The rules.
        near_duplicate: Whether a candidate id's text near-duplicates a positive (called only for
            candidates that pass the earlier rules).

    Returns:
        One status per row; eligible rows get ``"not_sampled"``.
    """
    ranks = np.asarray(ranks, dtype=np.int64)
    is_pos = np.isin(ids, list(positives))
    rank = window_rank(ranks, ranks[is_pos].tolist())
    status = np.full(len(ids), "not_sampled", dtype=object)
    status[is_pos] = "positive"
    status[~is_pos & ((rank < rules.rank_min) | (rank > rules.rank_max))] = "outside_window"
    line = np.asarray(positive_scores, dtype=np.float64) * (1.0 - rules.relative_margin)
    status[(status == "not_sampled") & (np.asarray(scores, dtype=np.float64) > line)] = "false_negative"
    for i in np.flatnonzero(status == "not_sampled"):
        if near_duplicate(str(ids[i])):
            status[i] = "near_duplicate_of_positive"
    return status


def sample_negatives(
    eligible: Mapping[str, Sequence[str]], rules: Rules, rng: np.random.Generator
) -> list[tuple[str, str]]:
    """Draw up to ``num_negatives`` distinct ids, ``bm25_share`` of them from BM25 when it has enough.

    Args:
        eligible: Eligible candidate ids per source, in rank order.
        rules: The rules (``num_negatives``, ``bm25_share``).
        rng: The query's generator.

    Returns:
        ``(candidate_id, source)`` pairs; a shortfall in one source is filled from the other.
    """
    want_bm25 = round(rules.num_negatives * rules.bm25_share) if eligible.get("bm25") else 0
    quota = {"bm25": want_bm25, "dense": rules.num_negatives - want_bm25}
    chosen: list[tuple[str, str]] = []
    taken: set[str] = set()

    def draw(source: str, n: int) -> None:
        pool = [c for c in eligible.get(source, ()) if c not in taken]
        if n <= 0 or not pool:
            return
        for j in rng.permutation(len(pool))[:n]:
            chosen.append((pool[j], source))
            taken.add(pool[j])

    for source in ("dense", "bm25"):
        draw(source, quota[source])
    for source in ("dense", "bm25"):  # fill a shortfall from whatever is left
        draw(source, rules.num_negatives - len(chosen))
    return chosen


def sample_random(
    n: int,
    corpus_ids: Sequence[str],
    exclude: set[str],
    rng: np.random.Generator,
    near_duplicate: Callable[[str], bool],
    max_tries: int = 1000,
) -> list[str]:
    """Up to ``n`` uniformly drawn corpus ids outside ``exclude`` and not near-duplicating a positive.

    Rejection sampling with at most ``max_tries`` draws (a tiny corpus may yield fewer than ``n``).
    """
    out: list[str] = []
    seen = set(exclude)
    tries = 0
    while len(out) < n and tries < max_tries and len(seen) < len(corpus_ids):
        tries += 1
        doc_id = corpus_ids[int(rng.integers(len(corpus_ids)))]
        if doc_id in seen:
            continue
        seen.add(doc_id)
        if not near_duplicate(doc_id):
            out.append(doc_id)
    return out


class NearDuplicateCheck:
    """Char n-gram Jaccard between a candidate's text and its query's positive text(s), memoised.

    The memo holds the n-gram sets of the ``cache_size`` documents used most recently, so memory stays
    bounded on a large corpus (every query brings ~100 new candidates; a set is ~8 KB for a 150-character
    text) while a positive and the candidates shared by nearby queries are computed once.
    """

    def __init__(
        self, texts: Mapping[str, str], ngram: int, threshold: float, cache_size: int = 10_000
    ) -> None:
        self._texts = texts
        self._ngram = ngram
        self._threshold = threshold
        self._cache_size = cache_size
        self._grams: OrderedDict[str, frozenset[int]] = OrderedDict()

    def _of(self, doc_id: str) -> frozenset[int]:
        grams = self._grams.get(doc_id)
        if grams is None:
            grams = self._grams[doc_id] = frozenset(
                ngram_hashes(self._texts.get(doc_id, ""), self._ngram).tolist()
            )
            if len(self._grams) > self._cache_size:
                self._grams.popitem(last=False)
        else:
            self._grams.move_to_end(doc_id)
        return grams

    def similarity(self, a: str, b: str) -> float:
        """Jaccard similarity of the n-gram sets of two documents (1.0 for two empty texts)."""
        sa, sb = self._of(a), self._of(b)
        if not sa and not sb:
            return 1.0
        common = len(sa & sb)
        return common / (len(sa) + len(sb) - common)

    def for_positives(self, positives: set[str]) -> Callable[[str], bool]:
        """A predicate: does a candidate id near-duplicate any of ``positives``?"""
        return lambda doc_id: any(self.similarity(doc_id, p) >= self._threshold for p in positives)


_DROPPED = (
    "positive",
    "false_negative",
    "near_duplicate_of_positive",
    "same_document_as_positive",
    "reranker_false_negative",
)


def _select_query(
    query_id: str,
    block: Mapping[str, np.ndarray],
    pos: set[str],
    rules: Rules,
    is_dup: Callable[[str], bool],
    corpus_ids: Sequence[str],
    same_document: frozenset[str] = frozenset(),
    reranker_flagged: frozenset[str] = frozenset(),
) -> tuple[np.ndarray, list[str]]:
    """Statuses of one query's candidate rows (sorted by source, rank) and its random negatives.

    ``same_document``: the other passages of the positives' documents; ``reranker_flagged``: candidates the
    reranker scores too close to the positive.
    """
    ids, sources = block["candidate_id"], block["source"]
    status = np.empty(len(ids), dtype=object)
    for source in np.unique(sources):
        rows = sources == source
        status[rows] = label_candidates(
            ids[rows],
            block["rank"][rows],
            block["score"][rows],
            block["positive_score"][rows],
            pos,
            rules,
            is_dup,
        )
    # a document one source flags as a likely false negative is not a negative for any source
    flagged = np.isin(ids, ids[status == "false_negative"])
    status[(status == "not_sampled") & flagged] = "false_negative"
    if same_document:
        status[(status != "positive") & np.isin(ids, list(same_document))] = "same_document_as_positive"
    if reranker_flagged:
        status[(status == "not_sampled") & np.isin(ids, list(reranker_flagged))] = "reranker_false_negative"
    eligible = {
        str(src): ids[(sources == src) & (status == "not_sampled")].tolist() for src in np.unique(sources)
    }
    rng = query_rng(rules.seed, query_id)
    chosen = sample_negatives(eligible, rules, rng)
    for cid, source in chosen:
        status[(ids == cid) & (sources == source)] = "kept"
    # random negatives avoid the positives, the chosen negatives and anything a rule dropped
    dropped = set(ids[np.isin(status, _DROPPED)].tolist())
    avoid = pos | dropped | same_document | reranker_flagged | {c for c, _ in chosen}
    extra = sample_random(rules.random_negatives, corpus_ids, avoid, rng, is_dup)
    return status, extra


def select(
    candidates: pd.DataFrame,
    positives: Mapping[str, set[str]],
    texts: Mapping[str, str],
    corpus_ids: Sequence[str],
    rules: Rules,
    *,
    parents: Mapping[str, str] | None = None,
    reranker_flagged: Mapping[str, set[str]] | None = None,
) -> pd.DataFrame:
    """Apply the rules to every query's candidates and sample its negatives.

    Args:
        candidates: Table with :data:`CANDIDATE_COLUMNS`.
        positives: Positive document ids per query id (every query id in ``candidates`` must be there).
        texts: Indexed text per document id.
        corpus_ids: All document ids, for the random (easy) negatives.
        rules: The rules.
        parents: Passage id → document id for a corpus of passages (``None``: each id is a document).
        reranker_flagged: Per query id, the candidates the reranker filter drops.

    Returns:
        Table with :data:`SELECTION_COLUMNS`, one row per candidate row plus one per random negative
        (source ``random``, rank -1, scores NaN); sorted by query id, source, rank.
    """
    check = NearDuplicateCheck(texts, rules.near_duplicate_ngram, rules.near_duplicate_jaccard)
    ordered = candidates.sort_values(["query_id", "source", "rank", "candidate_id"], kind="stable")
    ordered = ordered.astype({"query_id": str, "candidate_id": str, "source": str}).reset_index(drop=True)
    columns = {
        c: ordered[c].to_numpy() for c in ("candidate_id", "source", "rank", "score", "positive_score")
    }
    query_ids = ordered["query_id"].to_numpy()
    status = np.empty(len(ordered), dtype=object)
    randoms: list[tuple[str, str]] = []
    starts = (
        np.flatnonzero(np.r_[True, query_ids[1:] != query_ids[:-1]]) if len(ordered) else np.zeros(0, int)
    )
    ends = np.append(starts[1:], len(ordered)).astype(int) if len(starts) else starts
    children: dict[str, set[str]] = {}
    for pid, doc in (parents or {}).items():
        children.setdefault(doc, set()).add(pid)
    for start, end in zip(starts, ends, strict=True):
        query_id = str(query_ids[start])
        pos = positives[query_id]
        block = {c: v[start:end] for c, v in columns.items()}
        siblings = {s for p in pos for s in children.get((parents or {}).get(p, p), ())} - pos
        status[start:end], extra = _select_query(
            query_id, block, pos, rules, check.for_positives(pos), corpus_ids, frozenset(siblings),
            frozenset((reranker_flagged or {}).get(query_id, ())),
        )  # fmt: skip
        randoms.extend((query_id, cid) for cid in extra)
    out = ordered[["query_id", "candidate_id", "source", "rank", "score", "positive_score"]].copy()
    out["status"] = status
    if randoms:
        extra_rows = pd.DataFrame(randoms, columns=["query_id", "candidate_id"]).assign(
            source="random", rank=-1, score=np.nan, positive_score=np.nan, status="kept"
        )
        out = pd.concat([out, extra_rows], ignore_index=True)
    out = out.sort_values(["query_id", "source", "rank", "candidate_id"], kind="stable", ignore_index=True)
    out["rank"] = out["rank"].astype("int64")
    return out[SELECTION_COLUMNS]


def infonce_row(query_text: str, positive_text: str, negative_texts: Sequence[str]) -> dict[str, list]:
    """One ms-swift 4.x embedding row: exactly ``messages``, ``positive_messages``, ``negative_messages``.

    ``query_text`` must already carry the instruction (``format_query``); documents never do.
    """
    return {
        "messages": [{"role": "user", "content": query_text}],
        "positive_messages": [[{"role": "user", "content": positive_text}]],
        "negative_messages": [[{"role": "user", "content": t}] for t in negative_texts],
    }


def training_examples(
    queries: pd.DataFrame,
    selection: pd.DataFrame,
    split: pd.DataFrame,
    query_task: str | None,
) -> pd.DataFrame:
    """The examples in their final order: ``split, query_id, doc_id, query_text, negative_ids``.

    Negatives are the ``kept`` rows in (source, rank) order, random ones last; rows sorted by query id.
    """
    kept = selection[selection["status"] == "kept"].copy()
    kept["order"] = kept["source"].map({"dense": 0, "bm25": 1, "random": 2})
    kept = kept.sort_values(["query_id", "order", "rank", "candidate_id"], kind="stable")
    negatives = kept.groupby("query_id")["candidate_id"].agg(list)
    table = queries[["query_id", "doc_id", "query"]].merge(
        split[["query_id", "split"]], on="query_id", how="inner"
    )
    table = table.sort_values("query_id", kind="stable").reset_index(drop=True)
    table["query_text"] = [format_query(query_task, q) for q in table["query"]]
    table["negative_ids"] = [negatives.get(q, []) for q in table["query_id"]]
    return table[["split", "query_id", "doc_id", "query_text", "negative_ids"]]
