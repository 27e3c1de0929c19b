"""index_build's mined vocabulary: statistical new words and LLM entities, filtered, ablated on ``tune``.

``mine_statistical_terms`` and ``extract_llm_terms`` propose terms; ``merge_mined_vocabulary`` filters them
against the word tokenizer (known words, stopwords, compounds of known words, function characters at the
edges) and records every decision with its source (provenance); ``ablate_mined_vocabulary`` builds word BM25
without mined terms and with each source's terms and measures them on the evaluation queries' ``tune``
split; ``build_bm25_index_with_vocabulary`` builds ``bm25`` with the variant that won (none when no variant
beat the baseline by ``ablation.min_gain``), the mined terms as a user dictionary whose source names them
(``bm25_lucene`` takes the same dictionary). The ablation scores the variants with the bm25s backend whatever
``bm25.backend`` is: it chooses terms of the tokenizer, which both backends share.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from finrag_pipelines.llm.batch import ChatRequest
from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.llm.distributed import run_chat_requests
from finrag_pipelines.llm.journal import ResponseJournal
from finrag_pipelines.llm.parsing import extract_json_object
from finrag_pipelines.llm.prompts import PromptTemplate
from finrag_pipelines.pipelines.index_build.nodes import lexical_index
from finrag_pipelines.pipelines.index_build.params import BM25Params, LuceneParams, VocabularyParams
from finrag_pipelines.retrieval.bm25.index import BM25Index
from finrag_pipelines.retrieval.bm25.scoring import BM25Config
from finrag_pipelines.retrieval.interfaces import LexicalIndex
from finrag_pipelines.retrieval.metrics import query_metrics
from finrag_pipelines.retrieval.splits import TUNE, assign_splits
from finrag_pipelines.retrieval.types import Unavailable
from finrag_pipelines.text.corpus import indexable
from finrag_pipelines.text.dictionaries import TextResource
from finrag_pipelines.text.tokenize import FinanceTokenizer
from finrag_pipelines.text.vocabulary import (
    discover_terms,
    parse_entity_answer,
    render_user_dict,
    term_rejection,
)

logger = logging.getLogger(__name__)

STATISTICAL_COLUMNS = ["term", "freq", "cohesion", "left_entropy", "right_entropy", "score"]
LLM_COLUMNS = ["term", "category", "alias_of", "documents"]
VOCABULARY_COLUMNS = ["term", "source", "category", "alias_of", "freq", "score", "status"]
NOT_RUN = "not_run"  # DataFrame.attrs key: why a source did not run (kept in the parquet metadata)


def _not_run(columns: list[str], reason: str) -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    frame.attrs[NOT_RUN] = reason
    return frame


def mine_statistical_terms(corpus: pd.DataFrame, params: VocabularyParams) -> pd.DataFrame:
    """New-word candidates of the indexed texts (frequency, cohesion, branching entropy), best first."""
    cfg = params.statistical
    if not cfg.enabled:
        return _not_run(STATISTICAL_COLUMNS, "index_build.vocabulary.statistical.enabled is false")
    _, texts, _ = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    terms = discover_terms(
        texts,
        max_len=cfg.max_len,
        min_freq=cfg.min_freq,
        min_cohesion=cfg.min_cohesion,
        min_entropy=cfg.min_entropy,
        max_terms=cfg.max_terms,
    )
    logger.info("index_build: %d statistical new-word candidates from %d documents", len(terms), len(texts))
    return pd.DataFrame([t.__dict__ for t in terms], columns=STATISTICAL_COLUMNS)


def _sample(doc_ids: list[str], size: int, seed: int) -> list[int]:
    if len(doc_ids) <= size:
        return list(range(len(doc_ids)))
    keys = [hashlib.sha256(f"{seed}:{d}".encode()).hexdigest() for d in doc_ids]
    return sorted(np.argsort(keys, kind="stable")[:size].tolist())


def extract_llm_terms(
    corpus: pd.DataFrame,
    prompt: dict[str, Any],
    llm: LLMConfig,
    llm_credentials: dict[str, Any],
    llm_journal: ResponseJournal,
    params: VocabularyParams,
) -> pd.DataFrame:
    """Terms an LLM extracts from a seeded sample of documents, kept only when found verbatim in them.

    With ``llm.backend`` other than ``openai`` (the offline demo) this source is not run; the frame says why.
    """
    cfg = params.llm
    if not cfg.enabled:
        return _not_run(LLM_COLUMNS, "index_build.vocabulary.llm.enabled is false")
    if llm.backend != "openai":
        return _not_run(
            LLM_COLUMNS,
            f"llm.backend is {llm.backend!r} (offline, no LLM); set llm.backend=openai and llm.base_url "
            "to run it",
        )
    ids, texts, _ = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    template = PromptTemplate.from_mapping(prompt, "conf/base/prompts/vocabulary_entities.yml")
    picked = _sample(ids, cfg.max_documents, cfg.seed)
    documents = {ids[i]: texts[i][: cfg.max_doc_chars] for i in picked}
    requests = [
        ChatRequest(
            doc_id,
            template.render(document=text),
            validate=lambda answer, text=text: parse_entity_answer(extract_json_object(answer), text),
        )
        for doc_id, text in documents.items()
    ]
    config = dataclasses.replace(llm, temperature=cfg.temperature, max_tokens=cfg.max_tokens)
    results = run_chat_requests(
        requests,
        llm_config=config,
        credentials=llm_credentials,
        journal=llm_journal,
        validate=None,
        desc="index_build vocabulary entities",
        execution=None,
    )
    found: dict[tuple[str, str, str | None], set[str]] = {}
    dropped: Counter[str] = Counter()
    failed = 0
    for result in results:
        if not result.ok:
            failed += 1
            continue
        terms, drops = result.value
        dropped.update(drops)
        for term in terms:
            found.setdefault((term.term, term.category, term.alias_of), set()).add(result.id)
    logger.info(
        "index_build: LLM entities from %d documents (%d failed): %d distinct terms kept, dropped %s",
        len(results),
        failed,
        len(found),
        dict(dropped),
    )
    rows = [
        {"term": t, "category": c, "alias_of": a, "documents": len(docs)}
        for (t, c, a), docs in sorted(found.items())
    ]
    return pd.DataFrame(rows, columns=LLM_COLUMNS)


def merge_mined_vocabulary(
    statistical_terms: pd.DataFrame,
    llm_terms: pd.DataFrame,
    bm25: BM25Params,
    params: VocabularyParams,
) -> pd.DataFrame:
    """Every mined term with its source and status: ``candidate`` or ``rejected:<reason>`` (logged counts).

    Reasons: those of :func:`~finrag_pipelines.text.vocabulary.term_rejection`, ``compound`` (a statistical
    candidate the word tokenizer already cuts into known words of two or more characters: a phrase, not a new
    word; an LLM entity such as 贵州茅台 may be one), ``duplicate`` (the
    statistical copy of a term the LLM also found is kept under ``llm``) and ``rare`` (an LLM term found in
    fewer than ``filter.min_llm_documents`` documents).
    """
    tokenizer = FinanceTokenizer(**bm25.tokenizer.model_dump())
    cfg = params.filter
    rows: list[dict[str, Any]] = []
    for row in llm_terms.itertuples(index=False):
        rows.append(
            {
                "term": row.term,
                "source": "llm",
                "category": row.category,
                "alias_of": row.alias_of,
                "freq": int(row.documents),
                "score": None,
            }
        )
    for row in statistical_terms.itertuples(index=False):
        rows.append(
            {
                "term": row.term,
                "source": "statistical",
                "category": None,
                "alias_of": None,
                "freq": int(row.freq),
                "score": float(row.score),
            }
        )
    seen: set[str] = set()
    for row in rows:
        row["status"] = _status(row, tokenizer, cfg, seen)
        if row["status"] == "candidate":
            seen.add(row["term"])
    out = pd.DataFrame(rows, columns=VOCABULARY_COLUMNS)
    counts = out.groupby(["source", "status"]).size().to_dict() if len(out) else {}
    logger.info("index_build: mined vocabulary %s", {f"{s}/{t}": int(n) for (s, t), n in counts.items()})
    for frame, source in ((statistical_terms, "statistical"), (llm_terms, "llm")):
        if frame.attrs.get(NOT_RUN):
            out.attrs[f"{source}_not_run"] = frame.attrs[NOT_RUN]
    return out


def _status(row: dict[str, Any], tokenizer: FinanceTokenizer, cfg: Any, seen: set[str]) -> str:
    term = row["term"]
    if term in seen:
        return "rejected:duplicate"
    reason = term_rejection(
        term, known_words=(), stopwords=tokenizer.stopwords, min_len=cfg.min_len, max_len=cfg.max_len
    )
    if reason is None and tokenizer.is_dictionary_word(term):
        reason = "known"
    if reason is None and row["source"] == "statistical":
        pieces = [p for p in tokenizer.dictionary_cut(term) if p.strip()]
        if len(pieces) > 1 and sum(len(p) >= 2 for p in pieces) >= 2:
            reason = "compound"
    if reason is None and row["source"] == "llm" and row["freq"] < cfg.min_llm_documents:
        reason = "rare"
    return "candidate" if reason is None else f"rejected:{reason}"


def _user_dict(vocabulary: pd.DataFrame, sources: list[str]) -> TextResource | None:
    kept = vocabulary[(vocabulary["status"] == "candidate") & vocabulary["source"].isin(sources)]
    if kept.empty:
        return None
    text = render_user_dict([(t, "nz") for t in kept["term"]])
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return TextResource(
        source=f"mined vocabulary ({'+'.join(sources)}, {len(kept)} terms, sha {digest})", text=text
    )


def _variants(vocabulary: pd.DataFrame) -> dict[str, list[str]]:
    available = sorted(set(vocabulary.loc[vocabulary["status"] == "candidate", "source"]))
    variants: dict[str, list[str]] = {"none": []}
    for source in available:
        variants[source] = [source]
    if len(available) > 1:
        variants["all"] = available
    return variants


def _tokenizer(bm25: BM25Params, user_dict: TextResource | None) -> FinanceTokenizer:
    return FinanceTokenizer(**bm25.tokenizer.model_dump(), user_dicts=[user_dict] if user_dict else [])


def ablate_mined_vocabulary(
    corpus: pd.DataFrame,
    mined_vocabulary: pd.DataFrame,
    eval_queries: pd.DataFrame,
    eval_qrels: pd.DataFrame,
    bm25: BM25Params,
    params: VocabularyParams,
) -> dict[str, Any]:
    """Word BM25 without mined terms and with each source's, on the tune split; the decision and the numbers.

    Raises:
        ValueError: If the tune split has no answerable query or the metric is unknown.
    """
    cfg = params.ablation
    candidates = {
        str(source): int(n)
        for source, n in mined_vocabulary[mined_vocabulary["status"] == "candidate"]
        .groupby("source")
        .size()
        .items()
    }
    not_run = {
        k.removesuffix("_not_run"): v for k, v in mined_vocabulary.attrs.items() if k.endswith("_not_run")
    }
    if cfg.fixed_decision is not None:
        return _fixed_decision(mined_vocabulary, cfg.fixed_decision, cfg.metric, candidates, not_run)
    relevance: dict[str, dict[str, int]] = {}
    for qid, did, grade in zip(eval_qrels["query_id"], eval_qrels["doc_id"], eval_qrels["score"]):
        if grade > 0:
            relevance.setdefault(str(qid), {})[str(did)] = int(grade)
    splits = assign_splits(eval_queries["query_id"], cfg.split.tune_fraction, cfg.split.seed)
    tune = [
        (str(q), str(t))
        for q, t, s in zip(eval_queries["query_id"], eval_queries["text"], splits)
        if s == TUNE and str(q) in relevance
    ]
    if not tune:
        raise ValueError(
            "the vocabulary ablation needs answerable tune queries; raise the split's tune_fraction"
        )
    ids, texts, digest = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    config = BM25Config(**bm25.scoring.model_dump())
    results: dict[str, dict[str, Any]] = {}
    for name, sources in _variants(mined_vocabulary).items():
        user_dict = _user_dict(mined_vocabulary, sources)
        index = BM25Index.build(ids, texts, _tokenizer(bm25, user_dict), config, digest, name=f"bm25[{name}]")
        run = index.search([text for _, text in tune], cfg.depth)
        scores = [
            query_metrics([h.doc_id for h in hits], relevance[qid])[cfg.metric]
            for (qid, _), hits in zip(tune, run)
        ]
        results[name] = {
            "sources": sources,
            "terms": 0 if user_dict is None else user_dict.text.count("\n"),
            cfg.metric: float(np.mean(scores)),
        }
    baseline = results["none"][cfg.metric]
    best = max(results, key=lambda n: (results[n][cfg.metric], n == "none"))
    decision = best if results[best][cfg.metric] - baseline > cfg.min_gain else "none"
    logger.info(
        "index_build: vocabulary ablation on %d tune queries (%s): %s -> %s",
        len(tune),
        cfg.metric,
        {n: round(r[cfg.metric], 4) for n, r in results.items()},
        decision,
    )
    return {
        "metric": cfg.metric,
        "n_tune_queries": len(tune),
        "min_gain": cfg.min_gain,
        "variants": results,
        "decision": decision,
        "sources_kept": results[decision]["sources"],
        "terms_kept": results[decision]["terms"],
        "not_run": not_run,
        "candidates": candidates,
        "source": "ablation on the tune split",
    }


def _fixed_decision(
    vocabulary: pd.DataFrame, decision: str, metric: str, candidates: dict[str, int], not_run: dict[str, str]
) -> dict[str, Any]:
    """The ablation's answer fixed in conf (a held-out set takes the dev set's decision; nothing measured)."""
    sources = sorted(candidates) if decision == "all" else [] if decision == "none" else [decision]
    user_dict = _user_dict(vocabulary, sources) if sources else None
    logger.info("index_build: vocabulary decision fixed in conf: %s (nothing measured on this set)", decision)
    return {
        "metric": metric,
        "n_tune_queries": 0,
        "min_gain": None,
        "variants": {},
        "decision": decision,
        "sources_kept": sources,
        "terms_kept": 0 if user_dict is None else user_dict.text.count("\n"),
        "not_run": not_run,
        "candidates": candidates,
        "source": "fixed in conf (index_build.vocabulary.ablation.fixed_decision), not measured on this set",
    }


def build_bm25_index_with_vocabulary(
    corpus: pd.DataFrame,
    mined_vocabulary: pd.DataFrame,
    vocabulary_ablation: dict[str, Any],
    params: BM25Params,
    lucene: LuceneParams,
) -> LexicalIndex:
    """The word BM25 index (``params.backend``), with the mined terms of the sources the ablation kept as a
    user dictionary."""
    sources = list(vocabulary_ablation.get("sources_kept") or [])
    user_dict = _user_dict(mined_vocabulary, sources) if sources else None
    ids, texts, digest = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    index = lexical_index(ids, texts, digest, _tokenizer(params, user_dict), params, lucene)
    logger.info(
        "index_build: %s (%s) over %d documents, mined vocabulary: %s",
        params.name,
        params.backend,
        len(ids),
        user_dict.source if user_dict else "none (the ablation kept no variant)",
    )
    return index


def build_bm25_lucene_index(
    corpus: pd.DataFrame,
    mined_vocabulary: pd.DataFrame,
    vocabulary_ablation: dict[str, Any],
    params: BM25Params,
    lucene: LuceneParams,
) -> LexicalIndex | Unavailable:
    """``bm25_lucene``: ``params`` (index_build.bm25, same mined vocabulary) in Lucene, evaluated next to
    ``bm25``; only with ``lucene.compare`` (otherwise recorded as not built: evaluation reports it as not
    evaluated)."""
    if not lucene.compare:
        return Unavailable(what="bm25_lucene index", reason="off (index_build.lucene.compare: false)")
    same = params.model_copy(update={"name": "bm25_lucene", "backend": "lucene"})
    return build_bm25_index_with_vocabulary(corpus, mined_vocabulary, vocabulary_ablation, same, lucene)
