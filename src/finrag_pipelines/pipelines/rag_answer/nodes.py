"""rag_answer nodes: questions → answers (every system) → judge → per-question scores → summary, report.

The LLM is reached only through the injected journal and a client built from the ``llm`` parameters (every
turn journaled: a rerun replays what was answered). The floor and the failure ceiling are checked on the
saved summary; ``answer_metrics.json``, the report and the chart are written after the check.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from finrag_pipelines.floors import FloorParams, enforce_floor
from finrag_pipelines.llm.batch import check_failure_rate
from finrag_pipelines.llm.client import client_factory
from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.llm.journal import ResponseJournal
from finrag_pipelines.pipelines.rag_answer.params import BootstrapParams, QuestionParams
from finrag_pipelines.pipelines.rag_answer.report import plot_metrics, render_markdown
from finrag_pipelines.pipelines.rag_answer.scoring import (
    METRIC_KEYS,
    compare,
    judge_records,
    per_question_rows,
    summarise_system,
    yield_verdict,
)
from finrag_pipelines.rag.chat import JournaledChat
from finrag_pipelines.rag.factory import (
    EVALUATED,
    Indexes,
    PromptSet,
    build_searchers,
    build_systems,
    retriever_reasons,
    system_status,
)
from finrag_pipelines.rag.judge import JudgeSettings
from finrag_pipelines.rag.protocols import tool_schema_from_config
from finrag_pipelines.rag.records import Question
from finrag_pipelines.rag.runner import answer_questions as run_systems
from finrag_pipelines.rag.settings import AnswerSettings, ExtractiveSettings, SearchSettings, SystemsParams

logger = logging.getLogger(__name__)


def select_questions(
    eval_queries: pd.DataFrame,
    eval_qrels: pd.DataFrame,
    query_splits: pd.DataFrame,
    questions: QuestionParams,
) -> pd.DataFrame:
    """The questions of evaluation's ``split`` with at least one relevant document: ``query_id, text,
    gold_doc_ids`` (a seeded sample when ``max_questions`` is set)."""
    in_split = set(query_splits.loc[query_splits["split"] == questions.split, "query_id"])
    relevant = eval_qrels[eval_qrels["score"] > 0].sort_values(
        ["query_id", "score", "doc_id"], ascending=[True, False, True]
    )
    gold = relevant.groupby("query_id", sort=False)["doc_id"].agg(list).to_dict()
    chosen = eval_queries[eval_queries["query_id"].isin(in_split)]
    no_gold = int((~chosen["query_id"].isin(gold)).sum())
    if no_gold:
        logger.warning(
            "rag_answer: %d %s questions have no relevant document and are not asked",
            no_gold,
            questions.split,
        )
    chosen = chosen[chosen["query_id"].isin(gold)].reset_index(drop=True)
    if questions.max_questions is not None and questions.max_questions < len(chosen):
        rng = np.random.default_rng(questions.seed)
        chosen = chosen.iloc[np.sort(rng.choice(len(chosen), questions.max_questions, replace=False))]
        logger.info(
            "rag_answer: sampled %d of the %s questions (seed %d)",
            len(chosen),
            questions.split,
            questions.seed,
        )
    out = pd.DataFrame({"query_id": chosen["query_id"].astype(str), "text": chosen["text"].astype(str)})
    out["gold_doc_ids"] = [list(gold[q]) for q in out["query_id"]]
    logger.info("rag_answer: %d questions from evaluation's %s split", len(out), questions.split)
    return out.reset_index(drop=True)


def answer_questions(
    rag_questions: pd.DataFrame,
    corpus: pd.DataFrame,
    bm25_index: Any,
    dense_index: Any,
    base_encoder: Any,
    dense_finetuned_index: Any,
    finetuned_encoder: Any,
    llm: LLMConfig,
    llm_credentials: dict[str, Any],
    llm_journal: ResponseJournal,
    prompt_closed_book: dict[str, Any],
    prompt_single_shot: dict[str, Any],
    prompt_agent: dict[str, Any],
    prompt_agent_text: dict[str, Any],
    search_tool: dict[str, Any],
    systems: SystemsParams,
    answer: AnswerSettings,
    extractive: ExtractiveSettings,
    search: SearchSettings,
    dataset: str,
) -> dict[str, Any]:
    """Every configured system answers every question; systems that cannot run are recorded with the reason.

    Returns ``{"dataset", "llm_backend", "status": {system: "evaluated" | "not evaluated: …"}, "records":
    [AnswerRecord dicts]}``.
    """
    indexes = (
        None
        if search.url is not None
        else Indexes(
            doc_ids=list(corpus["doc_id"].astype(str)),
            titles=list(corpus["title"].fillna("").astype(str)),
            texts=list(corpus["text"].fillna("").astype(str)),
            bm25=bm25_index,
            dense=dense_index,
            encoder=base_encoder,
            dense_finetuned=dense_finetuned_index,
            encoder_finetuned=finetuned_encoder,
        )
    )
    status = system_status(systems.root, llm.backend, retriever_reasons(indexes))
    for name, state in status.items():
        if state != EVALUATED:
            logger.warning("rag_answer: %s %s", name, state)
    evaluated = {n: s for n, s in systems.root.items() if status[n] == EVALUATED}
    chat = (
        JournaledChat(llm, llm_journal, client_factory(llm, llm_credentials))
        if llm.backend == "openai"
        else None
    )
    # an LLM run journals its searches too: a resumed agent is shown exactly what it was shown before
    retrievers = {s.retriever for s in evaluated.values() if s.retriever}
    searchers = build_searchers(retrievers, search, indexes, llm_journal if chat is not None else None)
    prompts = PromptSet.from_mappings(
        {
            "closed_book": prompt_closed_book,
            "single_shot": prompt_single_shot,
            "agent": prompt_agent,
            "agent_text": prompt_agent_text,
        }
    )
    built = build_systems(
        systems.root,
        status,
        settings=answer,
        extractive=extractive,
        chat=chat,
        prompts=prompts,
        tool_schema=tool_schema_from_config(search_tool),
        searchers=searchers,
    )
    questions = [Question(q, t) for q, t in zip(rag_questions["query_id"], rag_questions["text"])]
    records = run_systems(built, questions, concurrency=llm.max_concurrency, chat=chat, desc="rag_answer")
    return {
        "dataset": dataset,
        "llm_backend": llm.backend,
        "status": status,
        "records": [r.to_dict() for r in records],
    }


def judge_answers(
    rag_answers: dict[str, Any],
    rag_questions: pd.DataFrame,
    corpus: pd.DataFrame,
    llm: LLMConfig,
    llm_credentials: dict[str, Any],
    llm_journal: ResponseJournal,
    judge_prompt: dict[str, Any],
    judge: JudgeSettings,
) -> dict[str, Any]:
    """The optional LLM judge: ``{"status", "scores": {"<system>|<question>": {"score", "error"}}}``.

    A judgement that fails (request or unreadable reply) has ``score: null`` and its error; it is never 0.
    """
    if not judge.enabled:
        return {"status": "disabled (rag_answer.judge.enabled is false)", "scores": {}}
    if llm.backend != "openai":
        return {"status": "not evaluated: the judge needs an LLM and llm.backend is 'keyword'", "scores": {}}
    return judge_records(
        rag_answers, rag_questions, corpus, llm, llm_credentials, llm_journal, judge_prompt, judge
    )


def score_answers(
    rag_answers: dict[str, Any],
    rag_questions: pd.DataFrame,
    corpus: pd.DataFrame,
    rag_judgements: dict[str, Any],
) -> pd.DataFrame:
    """Per-question metrics of every evaluated system (failed questions listed with their error, unscored)."""
    return per_question_rows(rag_answers, rag_questions, corpus, rag_judgements)


def summarise_answers(
    rag_per_question: pd.DataFrame,
    rag_answers: dict[str, Any],
    rag_judgements: dict[str, Any],
    floor: FloorParams,
) -> dict[str, Any]:
    """Metrics, counters, failures and status per system, and the yield floor's verdict (saved first)."""
    systems = {
        name: summarise_system(name, state, rag_per_question, rag_answers["records"])
        for name, state in rag_answers["status"].items()
    }
    return {
        "dataset": rag_answers["dataset"],
        "llm_backend": rag_answers["llm_backend"],
        "judge": rag_judgements["status"],
        "systems": systems,
        "floor": yield_verdict(systems, floor),
    }


def check_answers(rag_summary: dict[str, Any], llm: LLMConfig) -> dict[str, Any]:
    """Stop the run when too many questions failed (``llm.max_failure_rate``) or the floor is not met."""
    evaluated = [s for s in rag_summary["systems"].values() if s["status"] == EVALUATED]
    check_failure_rate(
        sum(s["failed"] for s in evaluated),
        sum(s["n_questions"] for s in evaluated),
        llm.max_failure_rate,
        "rag_answer (failed questions: data/08_reporting/rag/summary.json and answers.json)",
    )
    return enforce_floor(rag_summary["floor"])


def write_answer_metrics(rag_summary: dict[str, Any], rag_answer_check: dict[str, Any]) -> dict[str, Any]:
    """``answer_metrics.json``: per evaluated system, exactly :data:`METRIC_KEYS` (null: not applicable)."""
    return {
        name: {key: system[key] for key in METRIC_KEYS}
        for name, system in rag_summary["systems"].items()
        if system["status"] == EVALUATED
    }


def compare_systems(
    rag_per_question: pd.DataFrame, rag_summary: dict[str, Any], bootstrap: BootstrapParams
) -> list[dict[str, Any]]:
    """Paired bootstrap intervals of ``a − b`` for each configured pair and metric (skips say why)."""
    status = {name: system["status"] for name, system in rag_summary["systems"].items()}
    return compare(rag_per_question, status, bootstrap)


def write_answer_report(
    rag_summary: dict[str, Any],
    rag_comparisons: list[dict[str, Any]],
    answer_metrics: dict[str, Any],
    rag_answers: dict[str, Any],
    bootstrap: BootstrapParams,
) -> str:
    """The markdown report: systems, metrics, what retrieval adds, counters, failures, example answers."""
    return render_markdown(rag_summary, rag_comparisons, answer_metrics, rag_answers, bootstrap.comparisons)


def plot_answer_metrics(answer_metrics: dict[str, Any], rag_summary: dict[str, Any]) -> Figure:
    """A grouped bar chart of the answer metrics per evaluated system."""
    return plot_metrics(answer_metrics, f"Grounded answers — {rag_summary['dataset']}")
