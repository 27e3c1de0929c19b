"""sft_distill nodes: calculation questions (computed answers, optional checked rewrite), rejection-sampled
teacher reasoning for sft_train items, corpus-grounded QA judged by a second call, and the rows ``sft`` reads.

LLM parts reach the endpoint only through a :class:`~.teacher.Teacher` (the project's journal, retries and
failure ceiling); without an endpoint they produce no rows and the report says why.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import numpy as np
import pandas as pd

from finrag_pipelines.finmath import check_numbers_preserved, compose_question, generate_questions
from finrag_pipelines.llm.batch import ChatRequest
from finrag_pipelines.llm.batch import check_failure_rate as assert_failure_rate
from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.llm.journal import ResponseJournal
from finrag_pipelines.llm.prompts import PromptTemplate
from finrag_pipelines.mcq.format import parse_options, render_prompt
from finrag_pipelines.mcq.rejection import SampleVerdict, choose_shortest, judge_sample
from finrag_pipelines.mcq.sft_mix import DISTILL_COLUMNS
from finrag_pipelines.text.corpus import indexable
from finrag_pipelines.text.dedup import find_duplicates

from . import validators
from .params import (
    CalcParams,
    GroundedParams,
    ReasoningParams,
    RewriteParams,
)
from .teacher import choose_teacher

logger = logging.getLogger(__name__)

CALC_SOURCE = "finmath"
SAMPLE_COLUMNS = ("item_id", "sample", "text", "error", "model", "prompt_hash")
CANDIDATE_COLUMNS = ("doc_id", "task", "question", "answer", "error", "model", "prompt_hash")


def _prompt(mapping: dict[str, Any], name: str) -> PromptTemplate:
    return PromptTemplate.from_mapping(mapping, source=f"conf prompts/{name}.yml")


def _short_hash(prompt: PromptTemplate) -> str:
    return prompt.sha256[:16]


# ---------- calculation questions ----------


def generate_calc_questions(params: CalcParams) -> pd.DataFrame:
    """Seeded calculation questions of every configured family, answers computed in code."""
    questions, stats = generate_questions(params.families, params.per_family, params.seed)
    rows = [q.as_row() for q in questions]
    for row in rows:
        digest = hashlib.sha1(f"{row['question']}\x1f{row['options']}".encode()).hexdigest()[:12]
        row["item_id"] = f"{CALC_SOURCE}:{row['family']}:{digest}"
    frame = pd.DataFrame(rows)
    logger.info(
        "sft_distill: %d calculation questions; repeated stems skipped %s",
        len(frame),
        {k: v for k, v in stats.repeated.items() if v},
    )
    return frame


def rewrite_calc_stems(
    calc_questions_generated: pd.DataFrame,
    llm: LLMConfig,
    llm_credentials: dict[str, Any],
    llm_journal: ResponseJournal,
    prompt_sft_distill_rewrite: dict[str, Any],
    params: RewriteParams,
) -> pd.DataFrame:
    """Offer a seeded share of the stems to the LLM for a rewrite; keep a rewrite only if every number of the
    original survives, in order, and its length stays within bounds. Options, answer and solution stay the
    code's. ``rewrite_status`` says what happened to each question (``original`` when none was asked)."""
    frame = calc_questions_generated.copy()
    frame["original_scenario"] = frame["scenario"]
    frame["rewrite_status"], frame["rewrite_model"], frame["rewrite_prompt_hash"] = "original", None, None
    teacher = choose_teacher("rewrite", params.enabled, llm, llm_credentials, llm_journal)
    if not teacher.available or params.fraction == 0 or frame.empty:
        frame["rewrite_status"] = "original" if teacher.available else "not_run"
        return frame
    prompt = _prompt(prompt_sft_distill_rewrite, "sft_distill_rewrite")
    chosen = np.random.default_rng(params.seed).random(len(frame)) < params.fraction
    requests = [
        ChatRequest(id=row.item_id, messages=prompt.render(scenario=row.scenario))
        for row in frame[chosen].itertuples()
    ]
    results = {
        r.id: r
        for r in teacher.ask(
            requests,
            validators.rewritten_stem,
            "rewrite",
            temperature=params.temperature,
            max_tokens=params.max_tokens,
        )
    }
    for index in np.flatnonzero(chosen):
        row = frame.iloc[index]
        result = results[row["item_id"]]
        status = "failed" if result.error else check_numbers_preserved(row["scenario"], result.value).reason
        if status == "ok":
            ratio = len(result.value) / max(1, len(row["scenario"]))
            status = (
                "kept"
                if params.min_length_ratio <= ratio <= params.max_length_ratio
                else "length_out_of_bounds"
            )
        frame.iat[index, frame.columns.get_loc("rewrite_status")] = status
        frame.iat[index, frame.columns.get_loc("rewrite_model")] = teacher.model
        frame.iat[index, frame.columns.get_loc("rewrite_prompt_hash")] = _short_hash(prompt)
        if status == "kept":
            frame.iat[index, frame.columns.get_loc("scenario")] = result.value
            frame.iat[index, frame.columns.get_loc("question")] = compose_question(
                result.value, row["rounding_rule"]
            )
    logger.info("sft_distill: stem rewrites %s", frame.loc[chosen, "rewrite_status"].value_counts().to_dict())
    return frame


def check_rewrite_failures(calc_questions: pd.DataFrame, llm: LLMConfig) -> dict[str, Any]:
    """Fail the run when more rewrites failed than ``llm.max_failure_rate`` (the table is saved first)."""
    asked = ~calc_questions["rewrite_status"].isin(["original", "not_run"])
    failed = int((calc_questions["rewrite_status"] == "failed").sum())
    assert_failure_rate(
        failed, int(asked.sum()), llm.max_failure_rate, "sft_distill stem rewrites (see calc_questions)"
    )
    return {"requests": int(asked.sum()), "failed": failed}


# ---------- teacher reasoning (rejection sampling) ----------


def _reasoning_items(mcq_splits: pd.DataFrame, params: ReasoningParams) -> pd.DataFrame:
    items = mcq_splits[mcq_splits["split"] == "sft_train"]
    if params.items == "unexplained":
        items = items[items["explanation"].isna()]
    if params.max_items is not None and params.max_items < len(items):
        keep = np.sort(
            np.random.default_rng(params.seed).choice(len(items), size=params.max_items, replace=False)
        )
        items = items.iloc[keep]
    return items.reset_index(drop=True)


def sample_teacher_reasoning(
    mcq_splits: pd.DataFrame,
    llm: LLMConfig,
    llm_credentials: dict[str, Any],
    llm_journal: ResponseJournal,
    prompt_sft_distill_reasoning: dict[str, Any],
    params: ReasoningParams,
) -> pd.DataFrame:
    """``k`` teacher samples for each chosen sft_train item (the prompt is the one SFT trains on): one row per
    item × sample (``text`` or ``error``), stamped with the teacher model and the prompt hash."""
    teacher = choose_teacher("reasoning", params.enabled, llm, llm_credentials, llm_journal)
    if not teacher.available:
        logger.warning("sft_distill: teacher reasoning %s", teacher.unavailable)
        return pd.DataFrame(columns=list(SAMPLE_COLUMNS))
    items = _reasoning_items(mcq_splits, params)
    prompt = _prompt(prompt_sft_distill_reasoning, "sft_distill_reasoning")
    requests = [
        ChatRequest(
            id=r.item_id, messages=prompt.render(question_prompt=render_prompt(r.question, r.options, r.kind))
        )
        for r in items.itertuples()
    ]
    rows = []
    for sample in range(params.samples):
        results = teacher.ask(
            requests,
            validators.non_empty,
            f"reasoning sample {sample + 1}/{params.samples}",
            temperature=params.temperature,
            max_tokens=params.max_tokens,
            seed=params.seed + sample,
        )
        rows += [
            {
                "item_id": r.id,
                "sample": sample,
                "text": r.text if r.error is None else None,
                "error": r.error,
                "model": teacher.model,
                "prompt_hash": _short_hash(prompt),
            }
            for r in results
        ]
    logger.info("sft_distill: %d teacher samples for %d items", len(rows), len(items))
    return pd.DataFrame(rows, columns=list(SAMPLE_COLUMNS))


def check_reasoning_failures(reasoning_samples: pd.DataFrame, llm: LLMConfig) -> dict[str, Any]:
    """Fail the run when more teacher requests failed than ``llm.max_failure_rate`` (samples saved first)."""
    failed = int(reasoning_samples["error"].notna().sum())
    assert_failure_rate(
        failed,
        len(reasoning_samples),
        llm.max_failure_rate,
        "sft_distill teacher reasoning (see reasoning_samples)",
    )
    return {"requests": len(reasoning_samples), "failed": failed}


def judge_reasoning_samples(
    reasoning_samples: pd.DataFrame, mcq_splits: pd.DataFrame, failure_check: dict[str, Any]
) -> pd.DataFrame:
    """The rejection rule on every sample: ``verdict`` (correct, wrong_answer, no_reasoning, format_invalid,
    request_failed), the extractor's ``detail``, the letters read and the reasoning kept for correct ones.
    ``failure_check`` is only an ordering input (judging runs after the ceiling held)."""
    items = mcq_splits.set_index("item_id")
    out = reasoning_samples.copy()
    verdicts = []
    for row in reasoning_samples.itertuples():
        item = items.loc[row.item_id]
        error = row.error if isinstance(row.error, str) else None
        verdicts.append(judge_sample(row.text, item["answer"], parse_options(item["options"]).keys(), error))
    out["verdict"] = [v.verdict for v in verdicts]
    out["detail"] = [v.detail for v in verdicts]
    out["letters"] = [v.letters for v in verdicts]
    out["reasoning"] = [v.reasoning if v.correct else None for v in verdicts]
    return out


def select_verified_reasoning(
    reasoning_verdicts: pd.DataFrame, mcq_splits: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per item: samples, correct samples, the shortest correct one. Returns ``(reasoning_items,
    distilled_reasoning, reasoning_never_correct)``; items never answered correctly are listed, not forced."""
    items = mcq_splits.set_index("item_id")
    stats, kept, never = [], [], []
    for item_id, group in reasoning_verdicts.groupby("item_id", sort=False):
        group = group.sort_values("sample")
        item = items.loc[item_id]
        chosen = choose_shortest(
            [
                SampleVerdict(v, d, None, r if isinstance(r, str) else "")
                for v, d, r in zip(group["verdict"], group["detail"], group["reasoning"])
            ]
        )
        counts = group["verdict"].value_counts().to_dict()
        stats.append(
            {
                "item_id": item_id,
                "source": item["source"],
                "subject": item["subject"],
                "kind": item["kind"],
                "n_samples": len(group),
                "n_correct": int(counts.get("correct", 0)),
                "chosen_sample": None if chosen is None else int(group["sample"].iloc[chosen]),
                "verdicts": json.dumps(counts, sort_keys=True),
            }
        )
        if chosen is None:
            never.append(
                {
                    "item_id": item_id,
                    "source": item["source"],
                    "subject": item["subject"],
                    "kind": item["kind"],
                    "question": item["question"],
                    "answer": item["answer"],
                    "n_samples": len(group),
                    "teacher_letters": json.dumps(group["letters"].tolist(), ensure_ascii=False),
                    "verdicts": json.dumps(counts, sort_keys=True),
                }
            )
            continue
        best = group.iloc[chosen]
        kept.append(
            {
                "item_id": f"distill:{item_id}",
                "mix_source": "distilled_reasoning",
                "source": item["source"],
                "subject": item["subject"],
                "kind": item["kind"],
                "question": item["question"],
                "options": item["options"],
                "answer": item["answer"],
                "explanation": best["reasoning"],
                "context": None,
                "model": best["model"],
                "prompt_hash": best["prompt_hash"],
            }
        )
    stats_frame = pd.DataFrame(
        stats,
        columns=[
            "item_id",
            "source",
            "subject",
            "kind",
            "n_samples",
            "n_correct",
            "chosen_sample",
            "verdicts",
        ],
    )
    never_frame = pd.DataFrame(
        never,
        columns=[
            "item_id",
            "source",
            "subject",
            "kind",
            "question",
            "answer",
            "n_samples",
            "teacher_letters",
            "verdicts",
        ],
    )
    logger.info(
        "sft_distill: verified reasoning for %d of %d items; %d never answered correctly",
        len(kept),
        len(stats),
        len(never),
    )
    return stats_frame, pd.DataFrame(kept, columns=list(DISTILL_COLUMNS)), never_frame


# ---------- corpus-grounded QA ----------


def select_grounded_documents(corpus: pd.DataFrame, params: GroundedParams) -> pd.DataFrame:
    """Documents long enough to ask about (or a seeded sample), each with its seeded task type(s):
    ``doc_id, task, passage``."""
    _, texts, _ = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    docs = pd.DataFrame({"doc_id": corpus["doc_id"].astype(str), "text": texts})
    docs = docs[docs["text"].str.len() >= params.documents.min_chars]
    rng = np.random.default_rng(params.documents.seed)
    if params.documents.max_documents is not None and params.documents.max_documents < len(docs):
        docs = docs.iloc[np.sort(rng.choice(len(docs), size=params.documents.max_documents, replace=False))]
    tasks = list(params.task_types)
    rows = [
        {"doc_id": d, "task": tasks[int(t)], "passage": text[: params.documents.passage_max_chars]}
        for d, text in zip(docs["doc_id"], docs["text"])
        for t in rng.choice(len(tasks), size=params.tasks_per_document, replace=False)
    ]
    logger.info("sft_distill: %d grounded tasks over %d documents", len(rows), len(docs))
    return pd.DataFrame(rows, columns=["doc_id", "task", "passage"])


def _task_id(doc_id: str, task: str) -> str:
    return f"{doc_id}\x1f{task}"


def write_grounded_qa(
    grounded_documents: pd.DataFrame,
    llm: LLMConfig,
    llm_credentials: dict[str, Any],
    llm_journal: ResponseJournal,
    prompt_sft_distill_grounded_write: dict[str, Any],
    params: GroundedParams,
) -> pd.DataFrame:
    """One question-answer pair per document × task type, written by the LLM from the passage alone."""
    teacher = choose_teacher("grounded", params.enabled, llm, llm_credentials, llm_journal)
    if not teacher.available:
        logger.warning("sft_distill: grounded QA %s", teacher.unavailable)
        return pd.DataFrame(columns=list(CANDIDATE_COLUMNS))
    prompt = _prompt(prompt_sft_distill_grounded_write, "sft_distill_grounded_write")
    requests = [
        ChatRequest(
            id=_task_id(r.doc_id, r.task),
            messages=prompt.render(
                passage=r.passage, task=r.task, task_description=params.task_types[r.task]
            ),
        )
        for r in grounded_documents.itertuples()
    ]
    validate = validators.grounded_pair(
        (params.question_min_chars, params.question_max_chars), params.answer_max_chars
    )
    results = teacher.ask(
        requests, validate, "grounded QA", temperature=params.temperature, max_tokens=params.max_tokens
    )
    rows = [
        {
            "doc_id": d,
            "task": t,
            "question": r.value["question"] if r.ok else None,
            "answer": r.value["answer"] if r.ok else None,
            "error": r.error,
            "model": teacher.model,
            "prompt_hash": _short_hash(prompt),
        }
        for (d, t), r in zip(zip(grounded_documents["doc_id"], grounded_documents["task"]), results)
    ]
    return pd.DataFrame(rows, columns=list(CANDIDATE_COLUMNS))


def judge_grounded_qa(
    grounded_qa_candidates: pd.DataFrame,
    grounded_documents: pd.DataFrame,
    llm: LLMConfig,
    llm_credentials: dict[str, Any],
    llm_journal: ResponseJournal,
    prompt_sft_distill_grounded_judge: dict[str, Any],
    params: GroundedParams,
) -> pd.DataFrame:
    """A second call per written pair: is the answer supported by the passage? Adds ``supported``,
    ``judge_reason``, ``judge_error`` and the ``passage``."""
    out = grounded_qa_candidates.merge(
        grounded_documents, on=["doc_id", "task"], how="left", validate="one_to_one"
    )
    out["supported"], out["judge_reason"], out["judge_error"] = None, None, None
    written = out["error"].isna()
    teacher = choose_teacher("grounded", params.enabled, llm, llm_credentials, llm_journal)
    if not teacher.available or not written.any():
        return out
    prompt = _prompt(prompt_sft_distill_grounded_judge, "sft_distill_grounded_judge")
    requests = [
        ChatRequest(
            id=_task_id(r.doc_id, r.task),
            messages=prompt.render(passage=r.passage, question=r.question, answer=r.answer),
        )
        for r in out[written].itertuples()
    ]
    results = {
        r.id: r
        for r in teacher.ask(
            requests,
            validators.support_verdict,
            "grounded QA judge",
            temperature=params.judge_temperature,
            max_tokens=params.max_tokens,
        )
    }
    for index in np.flatnonzero(written.to_numpy()):
        result = results[_task_id(out.at[index, "doc_id"], out.at[index, "task"])]
        if result.ok:
            out.at[index, "supported"] = bool(result.value["supported"])
            out.at[index, "judge_reason"] = result.value["reason"]
        else:
            out.at[index, "judge_error"] = result.error
    return out


def check_grounded_failures(grounded_qa_judged: pd.DataFrame, llm: LLMConfig) -> dict[str, Any]:
    """Fail the run when more write + judge requests failed than ``llm.max_failure_rate`` (saved first)."""
    written_ok = int(grounded_qa_judged["error"].isna().sum())
    failed = int(grounded_qa_judged["error"].notna().sum() + grounded_qa_judged["judge_error"].notna().sum())
    total = len(grounded_qa_judged) + written_ok
    assert_failure_rate(
        failed, total, llm.max_failure_rate, "sft_distill grounded QA (see grounded_qa_judged)"
    )
    return {"requests": total, "failed": failed}


def select_grounded_qa(
    grounded_qa_judged: pd.DataFrame,
    eval_queries: pd.DataFrame,
    failure_check: dict[str, Any],
    params: GroundedParams,
) -> pd.DataFrame:
    """Every pair with its fate in ``status``: ``kept``, ``write_failed``, ``judge_failed``, ``unsupported``,
    ``eval_duplicate`` (an evaluation query, exactly or nearly) or ``duplicate`` (of an earlier kept pair)."""
    out = grounded_qa_judged.copy()
    status = np.where(
        out["error"].notna(),
        "write_failed",
        np.where(
            out["judge_error"].notna(),
            "judge_failed",
            np.where(out["supported"].astype(object).eq(True), "kept", "unsupported"),
        ),
    ).astype(object)
    alive = np.flatnonzero(status == "kept")
    if not len(alive):
        out["status"] = status
        return out
    evals = [str(t) for t in eval_queries["text"]]
    texts = evals + [str(out["question"].iat[i]) for i in alive]
    for match in find_duplicates(
        texts,
        near=params.dedup.near_duplicates,
        max_hamming=params.dedup.max_hamming,
        min_jaccard=params.dedup.min_jaccard,
    ):
        if match.index >= len(evals):
            status[alive[match.index - len(evals)]] = (
                "eval_duplicate" if match.kept_index < len(evals) else "duplicate"
            )
    out["status"] = status
    logger.info("sft_distill: grounded QA %s", pd.Series(status).value_counts().to_dict())
    return out


# ---------- the verified rows sft reads ----------


def assemble_sft_distill_items(
    calc_questions: pd.DataFrame,
    distilled_reasoning: pd.DataFrame,
    grounded_qa_audit: pd.DataFrame,
    rewrite_check: dict[str, Any],
) -> pd.DataFrame:
    """Every verified row (``mcq.sft_mix.DISTILL_COLUMNS``), ``mix_source`` naming its part.
    ``rewrite_check`` is only an ordering input (the rewrite failure ceiling held)."""
    calc = pd.DataFrame(
        {
            "item_id": calc_questions["item_id"],
            "mix_source": "calc",
            "source": CALC_SOURCE,
            "subject": calc_questions["subject"],
            "kind": "single",
            "question": calc_questions["question"],
            "options": calc_questions["options"],
            "answer": calc_questions["answer"],
            "explanation": calc_questions["solution"],
            "context": None,
            "model": np.where(
                calc_questions["rewrite_status"] == "kept", calc_questions["rewrite_model"], "finmath"
            ),
            "prompt_hash": calc_questions["rewrite_prompt_hash"].where(
                calc_questions["rewrite_status"] == "kept", None
            ),
        },
        columns=list(DISTILL_COLUMNS),
    )
    grounded = grounded_qa_audit[grounded_qa_audit["status"] == "kept"]
    qa = pd.DataFrame(
        {
            "item_id": [f"grounded:{d}:{t}" for d, t in zip(grounded["doc_id"], grounded["task"])],
            "mix_source": "grounded_qa",
            "source": "corpus",
            "subject": grounded["task"].to_numpy(),
            "kind": "qa",
            "question": grounded["question"].to_numpy(),
            "options": None,
            "answer": grounded["answer"].to_numpy(),
            "explanation": None,
            "context": grounded["passage"].to_numpy(),
            "model": grounded["model"].to_numpy(),
            "prompt_hash": grounded["prompt_hash"].to_numpy(),
        },
        columns=list(DISTILL_COLUMNS),
    )
    parts = [p for p in (distilled_reasoning, calc, qa) if len(p)]
    items = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(DISTILL_COLUMNS))
    items = items.astype({c: "object" for c in DISTILL_COLUMNS})
    logger.info("sft_distill: %s verified rows", items["mix_source"].value_counts().to_dict())
    return items
