"""mcq_evaluation nodes: eval items → chat requests → answers (journaled, resumable) → scores → report.

The answer is read by the one extractor the RL reward uses
(:func:`finrag_pipelines.mcq.extract.extract_answer`). An item whose request failed after retries is *not
scored* (listed with its error), never counted as wrong; more failures than ``llm.max_failure_rate`` fail the
run after the failures are saved.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import pandas as pd

from finrag_pipelines.llm.batch import ChatRequest, run_chat_batch
from finrag_pipelines.llm.batch import check_failure_rate as assert_failure_rate
from finrag_pipelines.llm.client import client_factory
from finrag_pipelines.llm.config import LLMConfig, LLMConfigError
from finrag_pipelines.llm.journal import ResponseJournal
from finrag_pipelines.mcq.extract import extract_answer
from finrag_pipelines.mcq.format import parse_options, render_prompt
from finrag_pipelines.pipelines.mcq_evaluation.params import AskParams, ScoreParams, SelectParams

logger = logging.getLogger(__name__)


def select_eval_items(mcq_splits: pd.DataFrame, params: SelectParams) -> pd.DataFrame:
    """The items to ask: one split (``eval``: disjoint from sft/rl training),
    optional sources and a seeded sample."""
    items = mcq_splits[mcq_splits["split"] == params.split]
    if params.sources is not None:
        unknown = set(params.sources) - set(mcq_splits["source"])
        if unknown:
            raise ValueError(
                f"mcq_evaluation.select.sources names unknown sources {sorted(unknown)}; "
                f"known: {sorted(set(mcq_splits['source']))}"
            )
        items = items[items["source"].isin(params.sources)]
    if items.empty:
        raise ValueError(f"mcq_evaluation: no items in split {params.split!r} for sources {params.sources}")
    if params.max_items is not None and len(items) > params.max_items:
        keep = np.random.default_rng(params.seed).choice(len(items), size=params.max_items, replace=False)
        items = items.iloc[np.sort(keep)]
    logger.info(
        "mcq_evaluation: %d items from split %r (%s)",
        len(items),
        params.split,
        items["source"].value_counts().to_dict(),
    )
    return items.reset_index(drop=True)


def ask_eval_items(
    mcq_eval_items: pd.DataFrame,
    llm: LLMConfig,
    credentials: dict[str, Any],
    journal: ResponseJournal,
    params: AskParams,
) -> pd.DataFrame:
    """Ask the endpoint every item (journal first, so a rerun asks only what has no answer yet)."""
    config = LLMConfig.from_mapping({**dataclasses.asdict(llm), **params.llm_overrides})
    if config.backend != "openai":
        raise LLMConfigError(
            "mcq_evaluation needs an OpenAI-compatible endpoint (llm.backend=openai), "
            f"got {config.backend!r}; e.g. "
            "--params llm.backend=openai,llm.base_url=http://127.0.0.1:30000/v1,llm.model=<served name>"
        )
    system = [{"role": "system", "content": params.system_prompt}] if params.system_prompt else []
    requests = [
        ChatRequest(
            id=f"mcq:{item_id}", messages=[*system, {"role": "user", "content": render_prompt(q, opts, kind)}]
        )
        for item_id, q, opts, kind in zip(
            mcq_eval_items["item_id"],
            mcq_eval_items["question"],
            mcq_eval_items["options"],
            mcq_eval_items["kind"],
        )
    ]
    results = run_chat_batch(
        requests,
        client_factory=client_factory(config, credentials),
        journal=journal,
        config=config,
        validate=None,
        desc="mcq_evaluation",
    )
    return pd.DataFrame(
        {
            "item_id": mcq_eval_items["item_id"],
            "response": [r.text if r.error is None else None for r in results],
            "error": [r.error for r in results],
            "model": config.model,
        }
    )


def score_answers(
    mcq_eval_items: pd.DataFrame, mcq_answers: pd.DataFrame, params: ScoreParams
) -> pd.DataFrame:
    """One row per item: extracted letters, correct (None when the request failed),
    format compliance, reason."""
    answers = mcq_eval_items.merge(mcq_answers, on="item_id", how="left", validate="one_to_one")
    rows = []
    for row in answers.itertuples(index=False):
        base = {"item_id": row.item_id, "source": row.source, "kind": row.kind, "gold": row.answer}
        if row.error is not None and not (isinstance(row.error, float) and np.isnan(row.error)):
            rows.append(
                {
                    **base,
                    "status": "failed",
                    "predicted": None,
                    "correct": None,
                    "format_ok": None,
                    "reason": str(row.error),
                }
            )
            continue
        found = extract_answer(row.response, parse_options(row.options), allow_fallback=params.allow_fallback)
        rows.append(
            {
                **base,
                "status": "answered",
                "predicted": found.letters,
                "correct": bool(found.letters is not None and found.letters == row.answer),
                "format_ok": bool(found.format_ok and found.reasoning_ok),
                "reason": found.reason,
            }
        )
    return pd.DataFrame(rows)


def _rates(group: pd.DataFrame) -> dict[str, Any]:
    answered = group[group["status"] == "answered"]
    return {
        "items": int(len(group)),
        "answered": int(len(answered)),
        "failed": int(len(group) - len(answered)),
        "accuracy": round(float(answered["correct"].astype(bool).mean()), 6) if len(answered) else None,
        "format_compliance": round(float(answered["format_ok"].astype(bool).mean()), 6)
        if len(answered)
        else None,
    }


def summarise_mcq(mcq_scores: pd.DataFrame, mcq_answers: pd.DataFrame, llm: LLMConfig) -> dict[str, Any]:
    """Accuracy and format compliance overall, by source and by kind (over answered items), failures counted.

    Fails the run (after ``mcq_scores`` is saved) when more requests failed than ``llm.max_failure_rate``.
    """
    failed = int((mcq_scores["status"] == "failed").sum())
    assert_failure_rate(
        failed,
        len(mcq_scores),
        llm.max_failure_rate,
        "mcq_evaluation requests (failed rows: data/08_reporting/mcq/mcq_scores.parquet)",
    )
    answered = mcq_scores[mcq_scores["status"] == "answered"]
    return {
        "model": str(mcq_answers["model"].iloc[0]) if len(mcq_answers) else None,
        "overall": _rates(mcq_scores),
        "by_source": {str(k): _rates(g) for k, g in mcq_scores.groupby("source")},
        "by_kind": {str(k): _rates(g) for k, g in mcq_scores.groupby("kind")},
        "answer_reasons": answered["reason"].value_counts().to_dict(),
        "note": "accuracy and format_compliance are over answered items; failed requests are not scored",
    }


def render_mcq_report(mcq_metrics: dict[str, Any]) -> str:
    """A markdown table of the summary."""

    def fmt(value: float | None) -> str:
        return "—" if value is None else f"{value:.4f}"

    lines = [
        f"# MCQ evaluation — `{mcq_metrics['model']}`",
        "",
        "| slice | items | answered | failed | accuracy | format compliance |",
        "|---|---|---|---|---|---|",
    ]
    slices = [("overall", mcq_metrics["overall"])]
    slices += [(f"source: {k}", v) for k, v in mcq_metrics["by_source"].items()]
    slices += [(f"kind: {k}", v) for k, v in mcq_metrics["by_kind"].items()]
    for name, r in slices:
        lines.append(
            f"| {name} | {r['items']} | {r['answered']} | {r['failed']} | {fmt(r['accuracy'])} | "
            f"{fmt(r['format_compliance'])} |"
        )
    lines += [
        "",
        f"Answer reasons (answered items): {mcq_metrics['answer_reasons']}.",
        "",
        "Format compliance: exactly one `答案：\\boxed{…}` after a closed (or absent) think block, "
        "with reasoning. "
        "A failed request is listed in `mcq_scores` with its error and is not scored.",
        "",
    ]
    return "\n".join(lines)
