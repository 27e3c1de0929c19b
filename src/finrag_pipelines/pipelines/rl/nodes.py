"""rl data-prep nodes: rl_train/eval items → verl GRPO parquet rows, prompt-length policy, reward config."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from finrag_pipelines.floors import FloorParams, enforce_floor, floor_verdict
from finrag_pipelines.kernels import planned_kernels
from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.mcq.records import (
    DATA_SOURCE,
    build_rl_rows,
    chat_lengths,
    describe_lengths,
    limit_lengths,
    load_tokenizer,
    tokenizer_name,
)
from finrag_pipelines.mcq.reward import RewardConfig
from finrag_pipelines.mcq.split import holdout_slice
from finrag_pipelines.pipelines.rl.params import (
    RewardParams,
    RlDataParams,
    RlLaunchParams,
    RlLengthParams,
    RlTasksParams,
)
from finrag_pipelines.pipelines.rl.tasks import describe_tasks, validate_task_rows
from finrag_pipelines.project_paths import portable_argv, portable_path
from finrag_pipelines.training.runs import MANIFEST_NAME, TRAIN_LOG_NAME
from finrag_pipelines.training.staging import write_json_if_changed, write_parquet_if_changed
from finrag_pipelines.training.verl_common import last_step_metrics
from finrag_pipelines.training.verl_grpo import (
    VerlGRPOConfig,
    build_grpo_command,
    project_reward_file,
    train_grpo,
)

logger = logging.getLogger(__name__)


def build_rl_rows_by_split(
    mcq_splits: pd.DataFrame, params: RlDataParams
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """GRPO train rows from rl_train; val rows from eval (or a held-out slice of rl_train)."""
    rl = mcq_splits[mcq_splits["split"] == "rl_train"].reset_index(drop=True)
    if params.val_source == "eval":
        pool, train = mcq_splits[mcq_splits["split"] == "eval"].reset_index(drop=True), rl
        size = params.val_size or len(pool)
    else:
        if params.val_size == 0:
            raise ValueError("rl.data.val_size must be > 0 when val_source is rl_train_slice")
        pool, size = rl, params.val_size
    held = pd.Series(holdout_slice(list(pool["question_key"]), size, params.seed))
    val = pool[held.to_numpy()]
    if params.val_source == "rl_train_slice":
        train = rl[~held.to_numpy()]
    train_rows, val_rows = build_rl_rows(train, "rl_train"), build_rl_rows(val, "rl_val")
    logger.info(
        "rl: %d train rows, %d val rows (val from %s)", len(train_rows), len(val_rows), params.val_source
    )
    return train_rows, val_rows


def limit_rl_prompt_lengths(
    rl_rows: pd.DataFrame, params: RlLengthParams
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Prompt length after the chat template (with the generation prompt); apply the policy, validate."""
    lengths, unit = chat_lengths(
        rl_rows["prompt"], load_tokenizer(params.tokenizer_path), add_generation_prompt=True
    )
    kept, counts = limit_lengths(rl_rows, lengths, params.max_prompt_length, params.truncation)
    validate_task_rows(kept)
    report = {
        "tokenizer": tokenizer_name(params.tokenizer_path),
        "max_prompt_length": params.max_prompt_length,
        "truncation": params.truncation,
        **counts,
        "lengths": describe_lengths(lengths, unit),
    }
    logger.info("rl: prompt length policy %s", {k: v for k, v in report.items() if k != "lengths"})
    return kept, report


def export_reward_config(
    params: RewardParams, llm: LLMConfig, tasks: RlTasksParams, search_qa_judge_prompt: dict[str, Any]
) -> dict[str, Any]:
    """The reward config JSON the launcher hands to verl (``reward_kwargs.config_path`` or
    ``$FINRAG_MCQ_REWARD_CONFIG``); checked here with the reward's own parser so a bad value fails now.
    With ``rl.tasks.search_qa`` on it holds a ``search_qa`` block (its judge prompt copied in)."""
    judge: dict[str, Any] = {
        "enabled": params.judge.enabled,
        "max_reasoning_chars": params.judge.max_reasoning_chars,
    }
    if params.judge.enabled:
        judge["llm"] = {**dataclasses.asdict(llm), **params.judge.llm_overrides}
    config = {
        "weights": dict(params.weights),
        "partial_credit": params.partial_credit,
        "allow_fallback": params.allow_fallback,
        "judge": judge,
    }
    if tasks.search_qa:
        search = params.search_qa.model_dump()
        search["judge_llm"] = (
            {**dataclasses.asdict(llm), **params.judge.llm_overrides}
            if search["outcome"] == "judge"
            else None
        )
        search["judge_prompt"] = dict(search_qa_judge_prompt)
        config["search_qa"] = search
    RewardConfig.from_mapping(config)
    return config


def summarise_rl_data(
    rl_train_parquet: pd.DataFrame,
    rl_val_parquet: pd.DataFrame,
    rl_train_length_report: dict[str, Any],
    rl_val_length_report: dict[str, Any],
    floor: FloorParams,
) -> dict[str, Any]:
    """Row counts by kind and source, ground-truth letter counts, the length reports, and the yield against
    ``rl.floor`` (train rows kept by the prompt-length policy per train row built)."""

    def describe(rows: pd.DataFrame) -> dict[str, Any]:
        tasks = describe_tasks(rows)  # the MCQ statistics below are over the MCQ rows
        rows = rows[rows["data_source"] == DATA_SOURCE]
        info = pd.DataFrame(list(rows["extra_info"]))
        truth = rows["reward_model"].map(lambda r: r["ground_truth"])
        return {
            "rows": sum(tasks.values()),
            "by_task": tasks,
            "by_kind": info["kind"].value_counts().sort_index().to_dict() if len(info) else {},
            "by_source": info["source"].value_counts().sort_index().to_dict() if len(info) else {},
            "answer_letters": truth.str.len().value_counts().sort_index().to_dict(),
        }

    verdict = floor_verdict(
        "rl",
        len(rl_train_parquet),
        int(rl_train_length_report["n_in"]),
        floor,
        {"dropped_too_long": int(rl_train_length_report["n_dropped"])},
        unit="train rows",
        evidence=["rl_data_stats", "mcq_splits"],
        hint="Check rl.length (max_prompt_length, truncation) and the rl_train split of mcq_splits.",
    )
    return {
        "train": {**describe(rl_train_parquet), "length": rl_train_length_report},
        "val": {**describe(rl_val_parquet), "length": rl_val_length_report},
        "floor": verdict,
    }


def check_rl_floor(rl_data_stats: dict[str, Any]) -> dict[str, Any]:
    """Fail the run before training when too few GRPO train rows are left (the stats are saved first)."""
    return enforce_floor(rl_data_stats["floor"])


def launch_grpo(
    rl_train_parquet: pd.DataFrame,
    rl_val_parquet: pd.DataFrame,
    rl_reward_config: dict[str, Any],
    length: RlLengthParams,
    params: RlLaunchParams,
    floor_check: dict[str, Any],
) -> dict[str, Any]:
    """Stage data and the reward config, then run verl GRPO and merge (``train``)
    or record the checked command.

    ``floor_check`` is only an ordering input: in the pipeline nothing is launched before ``rl.floor`` held.

    A launch node. verl calls the project's ``compute_score`` with ``config_path`` pointing at the staged
    reward config (``reward.custom_reward_function.reward_kwargs``). Without GPUs or a rollout engine,
    ``train`` fails in milliseconds (before ray starts) with the reason.
    """
    work = Path(params.work_dir).resolve()  # verl (and its ray workers) may run from another directory
    data = work / "data"
    train = write_parquet_if_changed(rl_train_parquet, data / "rl_train.parquet")
    val = write_parquet_if_changed(rl_val_parquet, data / "rl_val.parquet")
    reward_config = write_json_if_changed(rl_reward_config, data / "reward_config.json").resolve()
    reward = params.reward_function_path or str(project_reward_file())
    extra = list(params.verl.get("extra_overrides") or [])
    extra.append(f"+reward.custom_reward_function.reward_kwargs.config_path={reward_config}")
    tools = params.verl.get("tool_config_path")  # read by verl's ray workers, which may run elsewhere
    config = VerlGRPOConfig.from_params(
        {
            **params.verl,
            "extra_overrides": extra,
            "model_path": str(Path(params.base_model_path).resolve()),
            "train_files": str(train),
            "val_files": str(val),
            "output_dir": str(work),
            "reward_function_path": reward,
            "max_prompt_length": length.max_prompt_length,
            "tool_config_path": str(Path(tools).resolve()) if tools else None,
        }
    )
    if params.mode == "plan":
        kernels = planned_kernels("verl GRPO", liger=config.use_liger)  # decided again at launch
        argv, env = build_grpo_command(config, kernels=kernels)
        logger.info("rl: launch planned, not run (rl.launch.mode=plan): %s", " ".join(argv[:6]))
        return {
            "status": "planned",
            "reason": "rl.launch.mode=plan",
            "argv": portable_argv(argv),
            "env": env,
            "kernels": kernels.to_dict(),
            "train_rows": len(rl_train_parquet),
            "val_rows": len(rl_val_parquet),
            "base_model_exists": (Path(params.base_model_path) / "config.json").is_file(),
        }
    merged = train_grpo(config, params.merged_dir, progress=params.progress)
    return {
        "status": "trained",
        "model": portable_path(merged),
        "manifest": portable_path(work / MANIFEST_NAME),
        "last_metrics": last_step_metrics(work / TRAIN_LOG_NAME),
        "train_rows": len(rl_train_parquet),
        "val_rows": len(rl_val_parquet),
    }
