"""rag_answer's scoring helpers: judge requests, per-question rows, per-system summaries, comparisons."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pandas as pd

from finrag_pipelines.floors import FloorParams, floor_verdict
from finrag_pipelines.llm.batch import ChatRequest
from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.llm.distributed import run_chat_requests
from finrag_pipelines.llm.journal import ResponseJournal
from finrag_pipelines.llm.prompts import PromptTemplate
from finrag_pipelines.pipelines.rag_answer.params import BootstrapParams
from finrag_pipelines.rag.factory import EVALUATED
from finrag_pipelines.rag.judge import JudgeSettings, judge_slots, judge_validator
from finrag_pipelines.rag.metrics import PER_QUESTION_METRICS, mean_or_none, score_record
from finrag_pipelines.rag.records import AnswerRecord, Counters
from finrag_pipelines.retrieval.metrics import paired_bootstrap

logger = logging.getLogger(__name__)

METRIC_KEYS: tuple[str, ...] = (
    "n_questions",
    "answered",
    "abstained",
    "failed",
    "search_recall",
    "citation_precision",
    "citation_recall",
    "answer_f1",
    "rouge_l",
    "judge_score",
    "mean_searches",
)
"""The keys of each system in ``answer_metrics.json`` (issue 12's format)."""

COUNTERS: tuple[str, ...] = tuple(f"n_{name}" for name in vars(Counters()))


def _documents(corpus: pd.DataFrame) -> dict[str, str]:
    titles = corpus["title"].fillna("").astype(str)
    texts = corpus["text"].fillna("").astype(str)
    return {str(d): f"{t}\n{x}" if t.strip() else x for d, t, x in zip(corpus["doc_id"], titles, texts)}


def _records(rag_answers: dict[str, Any]) -> list[AnswerRecord]:
    status = rag_answers["status"]
    return [AnswerRecord.from_dict(r) for r in rag_answers["records"] if status.get(r["system"]) == EVALUATED]


def judge_records(
    rag_answers: dict[str, Any],
    rag_questions: pd.DataFrame,
    corpus: pd.DataFrame,
    llm: LLMConfig,
    credentials: dict[str, Any],
    journal: ResponseJournal,
    prompt_mapping: dict[str, Any],
    judge: JudgeSettings,
) -> dict[str, Any]:
    """Ask the judge about every answered (non-failed) record; failures are marked, never scored 0."""
    prompt = PromptTemplate.from_mapping(prompt_mapping, source="conf prompts/rag_judge.yml")
    documents = _documents(corpus)
    questions = {
        q: (t, list(g))
        for q, t, g in zip(rag_questions["query_id"], rag_questions["text"], rag_questions["gold_doc_ids"])
    }
    requests = []
    for record in _records(rag_answers):
        if record.failed:
            continue
        text, gold = questions[record.question_id]
        cited = [(d, documents[d]) for d in record.citations if d in documents]
        slots = judge_slots(
            text, "\n\n".join(documents[d] for d in gold), record.answer or "（空）", cited, judge
        )
        requests.append(ChatRequest(f"{record.system}|{record.question_id}", prompt.render(**slots)))
    results = run_chat_requests(
        requests,
        llm_config=llm,
        credentials=credentials,
        journal=journal,
        validate=judge_validator(judge),
        desc="rag judge",
        execution=None,
    )
    failed = sum(1 for r in results if r.error)
    if failed:
        logger.warning(
            "rag_answer: the judge failed on %d of %d answers (marked, not scored)", failed, len(results)
        )
    return {
        "status": EVALUATED,
        "model": llm.model,
        "prompt_hash": prompt.sha256,
        "scores": {r.id: {"score": r.value if r.error is None else None, "error": r.error} for r in results},
    }


def per_question_rows(
    rag_answers: dict[str, Any],
    rag_questions: pd.DataFrame,
    corpus: pd.DataFrame,
    rag_judgements: dict[str, Any],
) -> pd.DataFrame:
    """One row per (evaluated system, question): ``system, question_id, failed, error, judge_error`` and the
    metrics of :func:`~finrag_pipelines.rag.metrics.score_record` (null for failed questions)."""
    documents = _documents(corpus)
    gold = dict(zip(rag_questions["query_id"], rag_questions["gold_doc_ids"]))
    judged = rag_judgements.get("scores", {})
    rows = []
    for record in _records(rag_answers):
        verdict = judged.get(f"{record.system}|{record.question_id}", {})
        base = {
            "system": record.system,
            "question_id": record.question_id,
            "failed": record.failed,
            "error": record.error,
            "judge_error": verdict.get("error"),
        }
        if record.failed:
            rows.append(base)
            continue
        golds = list(gold[record.question_id])
        rows.append(
            {**base, **score_record(record, golds, {d: documents[d] for d in golds}, verdict.get("score"))}
        )
    columns = [
        "system",
        "question_id",
        "failed",
        "error",
        "judge_error",
        *PER_QUESTION_METRICS,
        "n_searches",
        "turns",
        "abstained",
        "empty_answer",
        *COUNTERS,
    ]
    frame = pd.DataFrame(rows, columns=columns)
    for column in (*PER_QUESTION_METRICS, "n_searches", "turns"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in ("failed", "abstained", "empty_answer"):
        frame[column] = frame[column].fillna(False).astype(bool)
    for column in COUNTERS:
        frame[column] = frame[column].fillna(0).astype("int64")
    return frame


def summarise_system(
    name: str, status: str, per_question: pd.DataFrame, records: list[dict[str, Any]]
) -> dict:
    """One system's summary: status, :data:`METRIC_KEYS`, turns, abstention rate, counters, failures."""
    if status != EVALUATED:
        return {"status": status}
    rows = per_question[per_question["system"] == name]
    scored = rows[~rows["failed"]]
    abstained = int(scored["abstained"].sum())
    empty = int(scored["empty_answer"].sum())
    mine = [r for r in records if r["system"] == name]
    first = mine[0] if mine else {}

    def mean(column: str) -> float | None:
        return mean_or_none(list(scored[column])) if len(scored) else None

    return {
        "status": status,
        "kind": first.get("kind"),
        "model": first.get("model"),
        "retriever": first.get("retriever"),
        "protocol": first.get("protocol"),
        "prompt_hash": first.get("prompt_hash"),
        "n_questions": len(rows),
        "answered": int(len(scored) - abstained),
        "abstained": abstained,
        "failed": int(len(rows) - len(scored)),
        **{metric: mean(metric) for metric in PER_QUESTION_METRICS},
        "mean_searches": mean("n_searches"),
        "mean_turns": mean("turns"),
        "abstention_rate": round(abstained / len(scored), 6) if len(scored) else None,
        "questions_with_empty_answer": empty,
        "judge_failures": int(scored["judge_error"].notna().sum()),
        "counters": {c[2:]: int(scored[c].sum()) for c in COUNTERS},
        "questions_with": {c[2:]: int((scored[c] > 0).sum()) for c in COUNTERS},
        "failures": [
            {"question_id": q, "error": e}
            for q, e in zip(rows.loc[rows["failed"], "question_id"], rows.loc[rows["failed"], "error"])
        ],
    }


def yield_verdict(systems: dict[str, dict[str, Any]], floor: FloorParams) -> dict[str, Any]:
    """The floor on answers: kept = answered (not failed, abstained or empty) over every evaluated system."""
    evaluated = {n: s for n, s in systems.items() if s["status"] == EVALUATED}
    total = sum(s["n_questions"] for s in evaluated.values())
    reasons: Counter[str] = Counter()
    for system in evaluated.values():
        reasons["abstained"] += system["abstained"]
        reasons["empty answer"] += system["questions_with_empty_answer"]
        for failure in system["failures"]:
            reasons[f"failed: {str(failure['error'])[:80]}"] += 1
    kept = total - sum(reasons.values())
    return floor_verdict(
        "rag_answer",
        max(kept, 0),
        total,
        floor,
        reasons,
        unit="answers",
        evidence=["data/08_reporting/rag/answers.json", "data/08_reporting/rag/summary.json"],
        hint="An endpoint that fails, answers nothing or always abstains, or a retriever that finds nothing, "
        "leaves no answers; check llm.base_url and the indexes (index_build).",
    )


def compare(
    per_question: pd.DataFrame, status: dict[str, str], bootstrap: BootstrapParams
) -> list[dict[str, Any]]:
    """Paired bootstrap of ``a − b`` per configured pair and metric over questions both answered with a value.

    Raises:
        ValueError: When a pair names a system that is not configured.
    """
    out: list[dict[str, Any]] = []
    for a, b in bootstrap.comparisons:
        unknown = {a, b} - set(status)
        if unknown:
            raise ValueError(
                f"rag_answer.bootstrap.comparisons names unknown systems {sorted(unknown)}; "
                f"configured: {sorted(status)}"
            )
        skipped = [f"{n} not evaluated" for n in (a, b) if status[n] != EVALUATED]  # why: the summary says
        if skipped:
            out.append({"a": a, "b": b, "status": "skipped", "reason": "; ".join(skipped)})
            continue
        left = per_question[(per_question["system"] == a) & ~per_question["failed"]].set_index("question_id")
        right = per_question[(per_question["system"] == b) & ~per_question["failed"]].set_index("question_id")
        for metric in bootstrap.metrics:
            pairs = left[[metric]].join(right[[metric]], lsuffix="_a", rsuffix="_b", how="inner").dropna()
            if pairs.empty:
                out.append(
                    {
                        "a": a,
                        "b": b,
                        "metric": metric,
                        "status": "not applicable",
                        "reason": f"no question has {metric} for both",
                    }
                )
                continue
            ci = paired_bootstrap(
                pairs[f"{metric}_a"].to_numpy(),
                pairs[f"{metric}_b"].to_numpy(),
                bootstrap.n_resamples,
                bootstrap.confidence,
                bootstrap.seed,
            )
            out.append(
                {
                    "a": a,
                    "b": b,
                    "metric": metric,
                    "status": EVALUATED,
                    "mean_diff": ci.mean_diff,
                    "low": ci.low,
                    "high": ci.high,
                    "p_value": ci.p_value,
                    "n_questions": ci.n_queries,
                    "confidence": bootstrap.confidence,
                }
            )
    return out
