"""rl's tasks: multiple-choice rows (mcq_prep) and search-QA rows (rl_search_qa), mixed into one GRPO set.

With ``rl.tasks.search_qa`` off nothing changes: the rows are the MCQ rows as before. With it on, every row
names its agent loop (``single_turn_agent`` for MCQ, ``tool_agent`` for search QA), so one verl run trains
both; the project's ``compute_score`` dispatches on ``data_source``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from finrag_pipelines.errors import ConfigurationError
from finrag_pipelines.llm.prompts import PromptTemplate
from finrag_pipelines.mcq.records import DATA_SOURCE as MCQ_SOURCE
from finrag_pipelines.mcq.records import validate_rl_rows
from finrag_pipelines.pipelines.rl.params import RewardParams, RlLaunchParams, RlTasksParams
from finrag_pipelines.retrieval.types import Unavailable
from finrag_pipelines.search_qa import rows as sqa
from finrag_pipelines.search_qa.reward import DATA_SOURCE as SEARCH_QA_SOURCE

logger = logging.getLogger(__name__)

MCQ_AGENT = "single_turn_agent"
TOOL_RESPONSE_OVERRIDE = "actor_rollout_ref.rollout.multi_turn.max_tool_response_length"


class TaskConfigError(ConfigurationError):
    """rl.tasks asks for something the rest of the configuration or the inputs cannot give (one line from
    ``kedro run``: a ConfigurationError)."""


def mix_counts(n_mcq: int, n_search: int, share: float | None) -> tuple[int, int]:
    """Rows to keep per task so that search QA is ``share`` of them (as many as possible); all when null."""
    if share is None or n_mcq == 0 or n_search == 0:
        return n_mcq, n_search
    total = min(n_mcq / (1 - share), n_search / share)
    return min(n_mcq, round(total * (1 - share))), min(n_search, round(total * share))


def _sample(rows: pd.DataFrame, size: int | None, seed: int) -> pd.DataFrame:
    """A seeded sample of ``size`` rows in their original order (all rows when ``size`` is null or more)."""
    if size is None or size >= len(rows):
        return rows.reset_index(drop=True)
    chosen = np.sort(np.random.default_rng(seed).choice(len(rows), size=size, replace=False))
    return rows.iloc[chosen].reset_index(drop=True)


def _check_launch(launch: RlLaunchParams) -> None:
    if not launch.verl.get("tool_config_path"):
        raise TaskConfigError(
            "rl.tasks.search_qa is on but rl.launch.verl.tool_config_path is null: verl would never call the "
            "search tool; set it to conf/base/verl/search_tool.yaml (and run finrag-serve while training)"
        )
    overrides = [str(o) for o in launch.verl.get("extra_overrides") or []]
    if not any(o.lstrip("+").startswith(TOOL_RESPONSE_OVERRIDE + "=") for o in overrides):
        raise TaskConfigError(
            f"rl.tasks.search_qa is on but rl.launch.verl.extra_overrides has no "
            f"{TOOL_RESPONSE_OVERRIDE}=<chars>: "
            "verl's default (256 characters) cuts the passages and their [doc id] headers"
        )


def _with_agent(rows: pd.DataFrame, agent: str) -> pd.DataFrame:
    return rows.assign(agent_name=agent)[list(sqa.ROW_COLUMNS)]


def mix_rl_tasks(
    mcq_train_rows: pd.DataFrame,
    mcq_val_rows: pd.DataFrame,
    search_qa_items: pd.DataFrame | Unavailable,
    search_qa_prompt: dict[str, Any],
    tasks: RlTasksParams,
    reward: RewardParams,
    launch: RlLaunchParams,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The GRPO train and val rows of the enabled tasks, and a report of the mix.

    Train rows per task are capped by ``rl.tasks.max_train_rows`` and rebalanced to ``search_qa_share``
    (seeded samples); val rows are every val row of each enabled task.

    Raises:
        TaskConfigError: search_qa on while its items do not exist (one line naming the pipeline to run),
            or without the tool config / tool response length verl needs.
    """
    mcq_train = (
        _sample(mcq_train_rows, tasks.max_train_rows.mcq, tasks.seed) if tasks.mcq else mcq_train_rows[:0]
    )
    mcq_val = mcq_val_rows if tasks.mcq else mcq_val_rows[:0]
    report: dict[str, Any] = {"tasks": tasks.model_dump()}
    if not tasks.search_qa:
        report.update(train={"mcq": len(mcq_train)}, val={"mcq": len(mcq_val)})
        return mcq_train, mcq_val.reset_index(drop=True), report
    if isinstance(search_qa_items, Unavailable):
        raise TaskConfigError(
            f"rl.tasks.search_qa is on but {search_qa_items.reason} "
            "(it reads query_distill's distilled_queries); "
            "or set rl.tasks.search_qa=false"
        )
    _check_launch(launch)
    prompt = PromptTemplate.from_mapping(search_qa_prompt, source="conf/base/prompts/rl_search_qa.yml")
    train_items = _sample(
        search_qa_items[search_qa_items["split"] == "train"], tasks.max_train_rows.search_qa, tasks.seed
    )
    val_items = search_qa_items[search_qa_items["split"] == "val"].reset_index(drop=True)
    n_mcq, n_search = mix_counts(len(mcq_train), len(train_items), tasks.search_qa_share)
    mcq_train, train_items = _sample(mcq_train, n_mcq, tasks.seed), _sample(train_items, n_search, tasks.seed)
    max_searches = reward.search_qa.max_searches
    train = pd.concat(
        [
            _with_agent(mcq_train, MCQ_AGENT),
            sqa.build_rows(train_items, prompt, max_searches, first_index=len(mcq_train)),
        ],
        ignore_index=True,
    )
    val = pd.concat(
        [
            _with_agent(mcq_val, MCQ_AGENT),
            sqa.build_rows(val_items, prompt, max_searches, first_index=len(mcq_val)),
        ],
        ignore_index=True,
    )
    report.update(
        train={"mcq": len(mcq_train), "search_qa": len(train_items)},
        val={"mcq": len(mcq_val), "search_qa": len(val_items)},
        search_qa_items={"train": int((search_qa_items["split"] == "train").sum()), "val": len(val_items)},
        search_qa_prompt={"name": prompt.name, "version": prompt.version, "sha256": prompt.sha256[:16]},
    )
    logger.info("rl: task mix train %s, val %s", report["train"], report["val"])
    return train, val, report


def validate_task_rows(rows: pd.DataFrame) -> None:
    """Check each task's rows with that task's schema; any other ``data_source`` is an error.

    Raises:
        RecordSchemaError | SearchQARowError: Naming the first bad row and field.
        TaskConfigError: An unknown ``data_source``.
    """
    unknown = sorted(set(rows["data_source"]) - {MCQ_SOURCE, SEARCH_QA_SOURCE})
    if unknown:
        raise TaskConfigError(
            f"RL rows with unknown data_source {unknown}; expected {MCQ_SOURCE} or {SEARCH_QA_SOURCE}"
        )
    mcq, search = rows[rows["data_source"] == MCQ_SOURCE], rows[rows["data_source"] == SEARCH_QA_SOURCE]
    if len(mcq) or not len(search):
        validate_rl_rows(mcq)
    if len(search):
        sqa.validate_rows(search)


def describe_tasks(rows: pd.DataFrame) -> dict[str, int]:
    """Rows per ``data_source``."""
    return {str(k): int(v) for k, v in rows["data_source"].value_counts().sort_index().items()}
