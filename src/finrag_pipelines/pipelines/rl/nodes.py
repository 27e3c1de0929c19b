"""rl data-prep nodes: rl_train/eval items → verl GRPO parquet rows, prompt-length policy, reward config."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from finrag_pipelines.mcq.records import (
    build_rl_rows,
    chat_lengths,
    describe_lengths,
    limit_lengths,
    load_tokenizer,
    tokenizer_name,
    validate_rl_rows,
)
from finrag_pipelines.mcq.reward import RewardConfig
from finrag_pipelines.mcq.split import holdout_slice
from finrag_pipelines.pipelines.rl.params import RewardParams, RlDataParams, RlLengthParams

logger = logging.getLogger(__name__)


def build_rl_rows_by_split(mcq_splits: pd.DataFrame, params: RlDataParams) -> tuple[pd.DataFrame, pd.DataFrame]:
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
    logger.info("rl: %d train rows, %d val rows (val from %s)", len(train_rows), len(val_rows), params.val_source)
    return train_rows, val_rows


def limit_rl_prompt_lengths(rl_rows: pd.DataFrame, params: RlLengthParams) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Prompt length after the chat template (with the generation prompt); apply the policy, validate."""
    lengths, unit = chat_lengths(rl_rows["prompt"], load_tokenizer(params.tokenizer_path), add_generation_prompt=True)
    kept, counts = limit_lengths(rl_rows, lengths, params.max_prompt_length, params.truncation)
    validate_rl_rows(kept)
    report = {
        "tokenizer": tokenizer_name(params.tokenizer_path), "max_prompt_length": params.max_prompt_length,
        "truncation": params.truncation, **counts, "lengths": describe_lengths(lengths, unit),
    }
    logger.info("rl: prompt length policy %s", {k: v for k, v in report.items() if k != "lengths"})
    return kept, report


def export_reward_config(params: RewardParams, llm: dict[str, Any]) -> dict[str, Any]:
    """The reward config JSON the launcher hands to verl (``reward_kwargs.config_path`` or
    ``$FINRAG_MCQ_REWARD_CONFIG``); checked here with the reward's own parser so a bad value fails now."""
    judge: dict[str, Any] = {"enabled": params.judge.enabled, "max_reasoning_chars": params.judge.max_reasoning_chars}
    if params.judge.enabled:
        judge["llm"] = {**llm, **params.judge.llm_overrides}
    config = {
        "weights": dict(params.weights), "partial_credit": params.partial_credit,
        "allow_fallback": params.allow_fallback, "judge": judge,
    }
    RewardConfig.from_mapping(config)
    return config


def summarise_rl_data(
    rl_train_parquet: pd.DataFrame, rl_val_parquet: pd.DataFrame, rl_train_length_report: dict[str, Any], rl_val_length_report: dict[str, Any]
) -> dict[str, Any]:
    """Row counts by kind and source, ground-truth letter counts, and the length reports."""

    def describe(rows: pd.DataFrame) -> dict[str, Any]:
        info = pd.DataFrame(list(rows["extra_info"]))
        truth = rows["reward_model"].map(lambda r: r["ground_truth"])
        return {
            "rows": len(rows),
            "by_kind": info["kind"].value_counts().sort_index().to_dict() if len(info) else {},
            "by_source": info["source"].value_counts().sort_index().to_dict() if len(info) else {},
            "answer_letters": truth.str.len().value_counts().sort_index().to_dict(),
        }

    return {
        "train": {**describe(rl_train_parquet), "length": rl_train_length_report},
        "val": {**describe(rl_val_parquet), "length": rl_val_length_report},
    }
