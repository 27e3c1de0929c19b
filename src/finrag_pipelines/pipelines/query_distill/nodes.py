"""query_distill nodes: personas per document → stage 1 plan → stage 2 query → cleaning → report.

The LLM is reached only through the injected journal (a durable response cache) and a client built from the
``llm`` parameters: a rerun replays every answer already received and calls the endpoint only for the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from finrag_pipelines.embedding.encoders import Encoder
from finrag_pipelines.embedding.store import EmbeddingStore
from finrag_pipelines.execution import ExecutionConfig
from finrag_pipelines.floors import FloorParams, enforce_floor, floor_verdict
from finrag_pipelines.llm.batch import ChatRequest, ChatResult
from finrag_pipelines.llm.batch import check_failure_rate as assert_failure_rate
from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.llm.distributed import run_chat_requests
from finrag_pipelines.llm.journal import ResponseJournal
from finrag_pipelines.llm.prompts import PromptTemplate
from finrag_pipelines.pipelines.query_distill.answers import PromptEcho, stage1_validator, stage2_validator
from finrag_pipelines.pipelines.query_distill.cleaning import copied_span, length_problem
from finrag_pipelines.pipelines.query_distill.params import (
    AnswerParams,
    CleanParams,
    KeywordBackendParams,
    PersonaParams,
    SelectParams,
    SpecParams,
)
from finrag_pipelines.retrieval.dense import DenseRetriever
from finrag_pipelines.retrieval.interfaces import LexicalIndex, VectorIndex
from finrag_pipelines.text.corpus import indexable
from finrag_pipelines.text.dedup import find_duplicates

from . import keyword_backend

logger = logging.getLogger(__name__)

KEYWORD_MODEL = "keyword-baseline"


def select_documents(corpus: pd.DataFrame, select: SelectParams) -> pd.DataFrame:
    """Every corpus document long enough to ask about (or a seeded sample): ``doc_id, text``."""
    _, texts, _ = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    docs = pd.DataFrame({"doc_id": corpus["doc_id"].astype(str), "text": texts})
    short = docs["text"].str.len() < select.min_chars
    if short.any():
        logger.info(
            "query_distill: %d documents shorter than %d characters get no query",
            int(short.sum()),
            select.min_chars,
        )
    docs = docs[~short]
    if select.max_documents is not None and select.max_documents < len(docs):
        rng = np.random.default_rng(select.seed)
        docs = docs.iloc[np.sort(rng.choice(len(docs), size=select.max_documents, replace=False))]
        logger.info("query_distill: sampled %d documents (seed %d)", len(docs), select.seed)
    logger.info("query_distill: %d documents selected", len(docs))
    return docs.reset_index(drop=True)


def retrieve_personas(
    documents: pd.DataFrame,
    persona_index: VectorIndex,
    finance_personas: pd.DataFrame,
    persona_encoder: Encoder,
    embedding_store: EmbeddingStore,
    personas: PersonaParams,
) -> pd.DataFrame:
    """The top-k candidate personas of each document (documents are the query side):
    ``doc_id, persona_ids``."""
    retriever = DenseRetriever(persona_index, persona_encoder, name="personas", store=embedding_store)
    run = retriever.search(list(documents["text"]), personas.top_k)
    known = set(finance_personas["persona_id"])
    unknown = {h.doc_id for hits in run for h in hits} - known
    if unknown:
        raise ValueError(
            f"persona index holds ids missing from finance_personas, e.g. {sorted(unknown)[:3]}; "
            "rebuild persona_index"
        )
    return pd.DataFrame(
        {"doc_id": documents["doc_id"], "persona_ids": [[h.doc_id for h in hits] for hits in run]}
    )


def _llm_run(
    requests: list[ChatRequest],
    llm: LLMConfig,
    credentials: dict[str, Any],
    journal: ResponseJournal,
    validate: Callable[[str], Any] | None,
    desc: str,
    execution: ExecutionConfig | None,
) -> list[ChatResult]:
    return run_chat_requests(
        requests,
        llm_config=llm,
        credentials=credentials,
        journal=journal,
        validate=validate,
        desc=desc,
        execution=execution,
    )


def _choice_list(options: dict[str, str]) -> str:
    return "\n".join(f"- {name}: {text}" for name, text in options.items())


def plan_queries(
    documents: pd.DataFrame,
    document_personas: pd.DataFrame,
    finance_personas: pd.DataFrame,
    llm: LLMConfig,
    llm_credentials: dict[str, Any],
    llm_journal: ResponseJournal,
    stage1_prompt: dict[str, Any],
    spec: SpecParams,
    keyword: KeywordBackendParams,
    select: SelectParams,
    answers: AnswerParams,
    execution: ExecutionConfig | None = None,
) -> pd.DataFrame:
    """Stage 1: for each document choose a persona, a question type and a difficulty.

    Each document's answer is checked against its own candidates (``answers.stage1_validator``): a persona
    given by number, text or an unambiguous prefix; a label by name, alias or description; never an echo of
    the prompt. ``execution.backend: ray`` sends the LLM requests from a Ray actor pool (same journal, same
    results).

    Returns one row per document: ``doc_id, persona_id, question_type, difficulty, error`` (``error`` set and
    the rest empty when the LLM failed or kept answering outside the rules).
    """
    candidates = dict(zip(document_personas["doc_id"], document_personas["persona_ids"]))
    if llm.backend == "keyword":
        rows = [
            {
                "doc_id": doc_id,
                "persona_id": keyword_backend.pick(keyword.seed, doc_id, "persona", list(candidates[doc_id])),
                "question_type": keyword_backend.pick(
                    keyword.seed, doc_id, "type", list(spec.question_types)
                ),
                "difficulty": keyword_backend.pick(
                    keyword.seed, doc_id, "difficulty", list(spec.difficulties)
                ),
                "error": None,
            }
            for doc_id in documents["doc_id"]
        ]
        return pd.DataFrame(rows)
    answers.check_labels(spec)
    prompt = PromptTemplate.from_mapping(stage1_prompt, source="conf prompts/query_distill_stage1.yml")
    echo = PromptEcho.of(prompt, answers.echo_min_chars)
    text_of = dict(zip(finance_personas["persona_id"], finance_personas["persona_text"]))
    n_candidates = min(len(ids) for ids in candidates.values())
    requests = []
    for doc_id, text in zip(documents["doc_id"], documents["text"]):
        shown = [text_of[p] for p in candidates[doc_id][:n_candidates]]
        messages = prompt.render(
            passage=text[: select.passage_max_chars],
            characters="\n".join(f"{i}. {persona}" for i, persona in enumerate(shown, start=1)),
            question_types=_choice_list(spec.question_types),
            difficulties=_choice_list(spec.difficulties),
        )
        validate = stage1_validator(shown, spec, answers, echo)  # this document's own candidates
        requests.append(ChatRequest(id=doc_id, messages=messages, validate=validate))
    results = _llm_run(requests, llm, llm_credentials, llm_journal, None, "stage 1: plan", execution)
    rows = []
    for result in results:
        if result.error is None:
            plan = result.value
            rows.append(
                {
                    "doc_id": result.id,
                    "persona_id": candidates[result.id][plan["character"] - 1],
                    "question_type": plan["question_type"],
                    "difficulty": plan["difficulty"],
                    "error": None,
                }
            )
        else:
            rows.append(
                {
                    "doc_id": result.id,
                    "persona_id": None,
                    "question_type": None,
                    "difficulty": None,
                    "error": f"stage 1: {result.error}",
                }
            )
    return pd.DataFrame(rows)


def write_queries(
    documents: pd.DataFrame,
    query_plans: pd.DataFrame,
    finance_personas: pd.DataFrame,
    llm: LLMConfig,
    llm_credentials: dict[str, Any],
    llm_journal: ResponseJournal,
    stage2_prompt: dict[str, Any],
    spec: SpecParams,
    keyword: KeywordBackendParams,
    select: SelectParams,
    clean: CleanParams,
    answers: AnswerParams,
    execution: ExecutionConfig | None = None,
) -> pd.DataFrame:
    """Stage 2: one Chinese query per planned document, from the chosen persona's point of view.

    An answer that repeats the prompt's instructions is invalid (regenerated, then quarantined).

    ``execution.backend: ray`` sends the LLM requests from a Ray actor pool (same journal, same results).

    Returns one row per document: the plan columns plus ``query`` (or ``error``, carried over from stage 1).
    """
    plans = query_plans.merge(documents, on="doc_id", how="left", validate="one_to_one")
    ok = plans["error"].isna()
    queries: dict[str, str | None] = {}
    errors: dict[str, str | None] = dict(zip(plans.loc[~ok, "doc_id"], plans.loc[~ok, "error"]))
    if llm.backend == "keyword":
        for row in plans[ok].itertuples():
            try:
                words = keyword_backend.keywords(row.text, keyword.top_keywords)
                queries[row.doc_id] = keyword_backend.fill_template(
                    keyword.seed, row.doc_id, row.question_type, keyword.templates[row.question_type], words
                )
            except (ValueError, KeyError) as exc:
                errors[row.doc_id] = f"stage 2: {exc}"
    else:
        prompt = PromptTemplate.from_mapping(stage2_prompt, source="conf prompts/query_distill_stage2.yml")
        text_of = dict(zip(finance_personas["persona_id"], finance_personas["persona_text"]))
        requests = [
            ChatRequest(
                id=row.doc_id,
                messages=prompt.render(
                    character=text_of[row.persona_id],
                    passage=row.text[: select.passage_max_chars],
                    question_type=row.question_type,
                    question_type_description=spec.question_types[row.question_type],
                    difficulty=row.difficulty,
                    difficulty_description=spec.difficulties[row.difficulty],
                    length_rule=spec.length_rules[row.question_type],
                ),
            )
            for row in plans[ok].itertuples()
        ]
        validate = stage2_validator(clean.max_chars, PromptEcho.of(prompt, answers.echo_min_chars))
        results = _llm_run(requests, llm, llm_credentials, llm_journal, validate, "stage 2: write", execution)
        for result in results:
            if result.error is None:
                queries[result.id] = result.value
            else:
                errors[result.id] = f"stage 2: {result.error}"
    out = plans.drop(columns=["text", "error"])
    out["query"] = out["doc_id"].map(queries)
    out["error"] = out["doc_id"].map(errors)
    return out


def collect_failures(generated_queries: pd.DataFrame) -> pd.DataFrame:
    """Every document that got no query, with the reason (kept as a dataset, never silently dropped)."""
    failed = generated_queries[generated_queries["error"].notna()][
        ["doc_id", "persona_id", "question_type", "difficulty", "error"]
    ]
    if len(failed):
        logger.warning(
            "query_distill: %d documents failed; first reasons: %s",
            len(failed),
            list(failed["error"].head(3)),
        )
    return failed.reset_index(drop=True)


def check_failure_rate(
    distill_failures: pd.DataFrame, generated_queries: pd.DataFrame, llm: LLMConfig
) -> dict[str, Any]:
    """Fail the run when more documents failed than ``llm.max_failure_rate`` allows
    (failures are saved first)."""
    total = len(generated_queries)
    assert_failure_rate(
        len(distill_failures), total, llm.max_failure_rate, "query_distill documents (see distill_failures)"
    )
    return {
        "documents": total,
        "failed": len(distill_failures),
        "failure_rate": round(len(distill_failures) / total, 6) if total else 0.0,
        "max_failure_rate": llm.max_failure_rate,
    }


def _prompt_stamp(
    llm: LLMConfig,
    stage1_prompt: dict[str, Any],
    stage2_prompt: dict[str, Any],
    keyword: KeywordBackendParams,
) -> tuple[str, str]:
    """(model, prompt hash) stamped on every row: what produced it."""
    if llm.backend == "keyword":
        blob = json.dumps(keyword.model_dump(), sort_keys=True, ensure_ascii=False)
        return KEYWORD_MODEL, "keyword:" + hashlib.sha256(blob.encode()).hexdigest()[:16]
    one = PromptTemplate.from_mapping(stage1_prompt, source="stage 1").sha256
    two = PromptTemplate.from_mapping(stage2_prompt, source="stage 2").sha256
    return llm.model, hashlib.sha256(f"{one}:{two}".encode()).hexdigest()[:16]


def clean_queries(
    generated_queries: pd.DataFrame,
    documents: pd.DataFrame,
    finance_personas: pd.DataFrame,
    bm25_index: LexicalIndex,
    failure_summary: dict[str, Any],
    llm: LLMConfig,
    stage1_prompt: dict[str, Any],
    stage2_prompt: dict[str, Any],
    keyword: KeywordBackendParams,
    clean: CleanParams,
) -> pd.DataFrame:
    """Drop bad queries and stamp the rest; every row keeps its fate in ``status`` (``kept`` or the reason).

    Filters, in order: length bounds; copies of a long document span; exact and near duplicates (the first
    kept); the round trip (the base BM25 index must rank the source document in the top k).
    ``failure_summary`` is only an ordering input: cleaning runs after the failure-rate check passed.
    """
    frame = (
        generated_queries[generated_queries["error"].isna()].drop(columns=["error"]).reset_index(drop=True)
    )
    text_of = dict(zip(documents["doc_id"], documents["text"]))
    status = [length_problem(q, clean.min_chars, clean.max_chars) or "kept" for q in frame["query"]]
    for i, (q, d) in enumerate(zip(frame["query"], frame["doc_id"])):
        if status[i] == "kept" and copied_span(q, text_of[d]) >= clean.max_copied_chars:
            status[i] = "copies_document"
    alive = [i for i, s in enumerate(status) if s == "kept"]
    for match in find_duplicates(
        [frame["query"].iat[i] for i in alive],
        near=clean.near_duplicates,
        max_hamming=clean.dedup_max_hamming,
        min_jaccard=clean.dedup_min_jaccard,
    ):
        status[alive[match.index]] = f"{match.kind}_duplicate"
    if clean.round_trip.enabled:
        alive = [i for i, s in enumerate(status) if s == "kept"]
        run = bm25_index.search([frame["query"].iat[i] for i in alive], clean.round_trip.top_k)
        for i, hits in zip(alive, run):
            if frame["doc_id"].iat[i] not in {h.doc_id for h in hits}:
                status[i] = "round_trip_miss"
    model, prompt_hash = _prompt_stamp(llm, stage1_prompt, stage2_prompt, keyword)
    persona_of = dict(zip(finance_personas["persona_id"], finance_personas["persona"]))
    frame["persona"] = frame["persona_id"].map(persona_of)
    frame["query_id"] = [
        f"dq-{hashlib.sha1(f'{d}:{q}'.encode()).hexdigest()[:12]}"
        for d, q in zip(frame["doc_id"], frame["query"])
    ]
    frame["model"], frame["prompt_hash"], frame["status"] = model, prompt_hash, status
    counts = pd.Series(status).value_counts().to_dict()
    logger.info("query_distill: %d generated queries; %s", len(frame), counts)
    return frame[
        [
            "query_id",
            "doc_id",
            "query",
            "persona_id",
            "persona",
            "question_type",
            "difficulty",
            "model",
            "prompt_hash",
            "status",
        ]
    ]


def select_kept_queries(query_audit: pd.DataFrame, floor_check: dict[str, Any]) -> pd.DataFrame:
    """The training queries: ``query_id, doc_id, query, persona, question_type, difficulty, model,
    prompt_hash``.

    ``floor_check`` is only an ordering input: the table downstream stages read is written after the floor
    held.
    """
    kept = query_audit[query_audit["status"] == "kept"]
    return kept[
        ["query_id", "doc_id", "query", "persona", "question_type", "difficulty", "model", "prompt_hash"]
    ].reset_index(drop=True)


def _reason_kind(error: str) -> str:
    """``"stage 1: HTTP 500 after 6 attempts: …"`` → ``"stage 1: HTTP 500 after 6 attempts"``
    (for counting)."""
    return ":".join(error.split(":")[:2]).strip()


def summarise_distillation(
    query_audit: pd.DataFrame,
    distill_failures: pd.DataFrame,
    failure_summary: dict[str, Any],
    llm: LLMConfig,
    floor: FloorParams,
) -> dict[str, Any]:
    """Which backend produced the data, the type × difficulty mix of kept queries, every filter count, and the
    yield against ``query_distill.floor`` (kept queries per selected document)."""
    kept = query_audit[query_audit["status"] == "kept"]
    mix = kept.groupby(["question_type", "difficulty"]).size()
    kinds = distill_failures["error"].astype(str).map(_reason_kind).value_counts()
    failure_reasons = {k: int(v) for k, v in kinds.items()}
    dropped = {k: int(v) for k, v in query_audit["status"].value_counts().items() if k != "kept"}
    verdict = floor_verdict(
        "query_distill",
        len(kept),
        failure_summary["documents"],
        floor,
        {**failure_reasons, **dropped},
        unit="documents",
        evidence=["distill_report", "distilled_query_audit", "distill_failures"],
        hint="An endpoint answering every request alike collapses into duplicates; quarantined answers carry "
        "their reason in distill_failures.",
    )
    return {
        "backend": llm.backend,
        "model": KEYWORD_MODEL if llm.backend == "keyword" else llm.model,
        "note": "keyword backend: TF-IDF keywords in templates, an offline baseline, not an LLM"
        if llm.backend == "keyword"
        else "",
        "documents": failure_summary["documents"],
        "failed_documents": failure_summary["failed"],
        "failure_reasons": failure_reasons,
        "generated": int(len(query_audit)),
        "kept": int(len(kept)),
        "dropped": dropped,
        "mix": {f"{t}/{d}": int(n) for (t, d), n in mix.items()},
        "prompt_hash": str(query_audit["prompt_hash"].iat[0]) if len(query_audit) else None,
        "floor": verdict,
    }


def check_distill_floor(distill_report: dict[str, Any]) -> dict[str, Any]:
    """Fail the run when distillation kept nothing or less than its floor (the report and the audit are
    saved first)."""
    return enforce_floor(distill_report["floor"])
