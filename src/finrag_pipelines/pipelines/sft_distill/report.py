"""The sft_distill report: what each part produced, what was refused and why, and which parts did not run."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pandas as pd

from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.pipelines.sft_distill.params import (
    CalcParams,
    GroundedParams,
    ReasoningParams,
    RewriteParams,
)
from finrag_pipelines.pipelines.sft_distill.teacher import part_status


def _counts(series: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in series.value_counts().sort_index().items()}


def _pass_rates(items: pd.DataFrame, by: str) -> dict[str, dict[str, Any]]:
    """Per group: items, items with a correct sample, that share, and the share of correct samples."""
    out = {}
    for key, group in items.groupby(by, sort=True):
        passed = int((group["n_correct"] > 0).sum())
        out[str(key)] = {
            "items": len(group),
            "passed": passed,
            "item_pass_rate": round(passed / len(group), 4),
            "sample_pass_rate": round(
                int(group["n_correct"].sum()) / max(1, int(group["n_samples"].sum())), 4
            ),
        }
    return out


def _stamp(frame: pd.DataFrame) -> dict[str, Any]:
    return {
        "model": sorted(set(frame["model"].dropna())) if "model" in frame else [],
        "prompt_hash": sorted(set(frame["prompt_hash"].dropna())) if "prompt_hash" in frame else [],
    }


def summarise_sft_distill(
    calc_questions: pd.DataFrame,
    reasoning_items: pd.DataFrame,
    reasoning_verdicts: pd.DataFrame,
    grounded_qa_audit: pd.DataFrame,
    sft_distill_items: pd.DataFrame,
    llm: LLMConfig,
    calc: CalcParams,
    rewrite: RewriteParams,
    reasoning: ReasoningParams,
    grounded: GroundedParams,
) -> dict[str, Any]:
    """Counts per part; a part without an endpoint is reported as not run, never as zero results."""
    mistakes = Counter(name for blob in calc_questions["distractors"] for name in json.loads(blob).values())
    offered = calc_questions[~calc_questions["rewrite_status"].isin(["original", "not_run"])]
    report: dict[str, Any] = {
        "llm_backend": llm.backend,
        "calc": {
            "status": "run (answers computed in code, no LLM)",
            "seed": calc.seed,
            "questions": len(calc_questions),
            "per_family": _counts(calc_questions["family"]),
            "per_family_variant": _counts(calc_questions["family"] + "/" + calc_questions["variant"]),
            "phrasings_per_family": {
                f: int(g["phrasing"].nunique()) for f, g in calc_questions.groupby("family")
            },
            "answer_letters": _counts(calc_questions["answer"]),
            "distractor_mistakes": dict(sorted(mistakes.items())),
            "rewrite": {
                "status": part_status("rewrite", rewrite.enabled, llm),
                "offered": len(offered),
                "outcomes": _counts(offered["rewrite_status"]),
            },
        },
    }
    status = part_status("reasoning", reasoning.enabled, llm)
    section: dict[str, Any] = {
        "status": status,
        "items_asked": reasoning.items,
        "samples_per_item": reasoning.samples,
        "temperature": reasoning.temperature,
    }
    if status == "run":
        passed = int((reasoning_items["n_correct"] > 0).sum())
        section.update(
            {
                "teacher": _stamp(reasoning_verdicts),
                "items": len(reasoning_items),
                "samples": len(reasoning_verdicts),
                "sample_verdicts": _counts(reasoning_verdicts["verdict"]),
                "format_details": _counts(
                    reasoning_verdicts.loc[reasoning_verdicts["verdict"] == "format_invalid", "detail"]
                ),
                "items_with_correct_sample": passed,
                "never_correct": len(reasoning_items) - passed,
                "item_pass_rate": round(passed / len(reasoning_items), 4) if len(reasoning_items) else None,
                "pass_rate_by_kind": _pass_rates(reasoning_items, "kind"),
                "pass_rate_by_subject": _pass_rates(reasoning_items, "subject"),
            }
        )
    report["reasoning"] = section
    status = part_status("grounded", grounded.enabled, llm)
    section = {"status": status, "task_types": list(grounded.task_types)}
    if status == "run":
        kept = grounded_qa_audit[grounded_qa_audit["status"] == "kept"]
        section.update(
            {
                "generator": _stamp(grounded_qa_audit),
                "documents": int(grounded_qa_audit["doc_id"].nunique()),
                "pairs": len(grounded_qa_audit),
                "outcomes": _counts(grounded_qa_audit["status"]),
                "kept_by_task": _counts(kept["task"]),
            }
        )
    report["grounded"] = section
    report["rows_for_sft"] = _counts(sft_distill_items["mix_source"])
    return report
