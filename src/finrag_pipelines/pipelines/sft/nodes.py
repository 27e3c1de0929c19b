"""sft nodes: sft_train items → verl SFT chats → length policy → train/val parquet + stats → verl SFT launch."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from finrag_pipelines.floors import FloorParams, enforce_floor, floor_verdict
from finrag_pipelines.mcq.records import (
    build_sft_rows,
    chat_lengths,
    describe_lengths,
    limit_lengths,
    load_tokenizer,
    tokenizer_name,
    validate_sft_rows,
)
from finrag_pipelines.mcq.split import holdout_slice
from finrag_pipelines.pipelines.sft.params import LengthParams, SftDataParams, SftLaunchParams
from finrag_pipelines.project_paths import portable_argv, portable_path
from finrag_pipelines.training.runs import MANIFEST_NAME, TRAIN_LOG_NAME
from finrag_pipelines.training.staging import write_parquet_if_changed
from finrag_pipelines.training.verl_common import last_step_metrics
from finrag_pipelines.training.verl_sft import VerlSFTConfig, build_sft_command, train_sft

logger = logging.getLogger(__name__)


def build_sft_examples(mcq_splits: pd.DataFrame, params: SftDataParams) -> pd.DataFrame:
    """Chats for every sft_train item, with ``question_key`` and ``has_explanation`` kept for slicing/stats."""
    items = mcq_splits[mcq_splits["split"] == "sft_train"].reset_index(drop=True)
    rows, excluded = build_sft_rows(items, target_style=params.target_style, missing_explanation=params.missing_explanation)
    meta = items.set_index("item_id").loc[rows["item_id"], ["question_key", "explanation"]]
    rows["question_key"] = meta["question_key"].to_numpy()
    rows["has_explanation"] = meta["explanation"].notna().to_numpy()
    logger.info(
        "sft: %d sft_train items -> %d chats (%d excluded without explanation, missing_explanation=%s)",
        len(items), len(rows), excluded, params.missing_explanation,
    )
    return rows


def limit_sft_lengths(sft_examples: pd.DataFrame, params: LengthParams) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Measure each chat after the chat template and apply ``max_length``/``truncation``."""
    lengths, unit = chat_lengths(sft_examples["messages"], load_tokenizer(params.tokenizer_path), add_generation_prompt=False)
    kept, counts = limit_lengths(sft_examples, lengths, params.max_length, params.truncation)
    report = {
        "tokenizer": tokenizer_name(params.tokenizer_path), "max_length": params.max_length,
        "truncation": params.truncation, **counts, "lengths": describe_lengths(lengths, unit),
    }
    logger.info("sft: length policy %s", {k: v for k, v in report.items() if k != "lengths"})
    return kept, report


def split_sft_validation(sft_examples_fit: pd.DataFrame, params: SftDataParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small stable held-out slice of sft_train as sft_val; both validated as verl SFT parquet."""
    held = pd.Series(holdout_slice(list(sft_examples_fit["question_key"]), params.val_size, params.seed), index=sft_examples_fit.index)
    cols = ["item_id", "messages"]
    train, val = sft_examples_fit.loc[~held, cols].reset_index(drop=True), sft_examples_fit.loc[held, cols].reset_index(drop=True)
    validate_sft_rows(train)
    validate_sft_rows(val)
    return train, val


def summarise_sft_data(
    mcq_splits: pd.DataFrame,
    sft_examples: pd.DataFrame,
    sft_length_report: dict[str, Any],
    sft_train_parquet: pd.DataFrame,
    sft_val_parquet: pd.DataFrame,
    floor: FloorParams,
) -> dict[str, Any]:
    """Row counts, explanation coverage, the length report, and the yield against ``sft.floor`` (train + val
    rows per sft_train item)."""
    items = int((mcq_splits["split"] == "sft_train").sum())
    kept = len(sft_train_parquet) + len(sft_val_parquet)
    reasons = {
        "excluded_without_explanation": items - len(sft_examples),
        "dropped_too_long": int(sft_length_report["n_dropped"]),
    }
    return {
        "examples": len(sft_examples),
        "with_explanation": int(sft_examples["has_explanation"].sum()),
        "train_rows": len(sft_train_parquet),
        "val_rows": len(sft_val_parquet),
        "length": sft_length_report,
        "floor": floor_verdict(
            "sft", kept, items, floor, reasons,
            unit="sft_train items",
            evidence=["sft_data_stats", "mcq_splits"],
            hint="Check sft.data.missing_explanation and sft.length (max_length, truncation).",
        ),
    }


def check_sft_floor(sft_data_stats: dict[str, Any]) -> dict[str, Any]:
    """Fail the run before training when too few sft_train items became chats (the stats are saved first)."""
    return enforce_floor(sft_data_stats["floor"])


def launch_sft(
    sft_train_parquet: pd.DataFrame,
    sft_val_parquet: pd.DataFrame,
    length: LengthParams,
    params: SftLaunchParams,
    floor_check: dict[str, Any],
) -> dict[str, Any]:
    """Stage the SFT data, then train with verl and merge (mode ``train``) or record the checked command (``plan``).

    ``floor_check`` is only an ordering input: in the pipeline nothing is launched before ``sft.floor`` held.

    A launch node: it starts an external trainer. Training fails fast on a machine without a GPU unless
    ``verl.cpu_smoke`` is set; an up-to-date run (same data, settings and base model) is not retrained.
    """
    work = Path(params.work_dir).resolve()  # verl (and its ray workers) may run from another directory
    train = write_parquet_if_changed(sft_train_parquet, work / "data" / "sft_train.parquet")
    val = write_parquet_if_changed(sft_val_parquet, work / "data" / "sft_val.parquet") if len(sft_val_parquet) else None
    config = VerlSFTConfig.from_params({
        **params.verl, "model_path": str(Path(params.base_model_path).resolve()), "train_files": str(train),
        "val_files": None if val is None else str(val), "output_dir": str(work), "max_length": length.max_length,
    })
    if params.mode == "plan":
        argv, env = build_sft_command(config, entry=params.entry, gpus=max(config.nproc_per_node, 1))
        logger.info("sft: launch planned, not run (sft.launch.mode=plan): %s", " ".join(argv[:8]))
        return {"status": "planned", "reason": "sft.launch.mode=plan", "argv": portable_argv(argv),
                "env": env,
                "train_rows": len(sft_train_parquet), "val_rows": len(sft_val_parquet),
                "base_model_exists": (Path(params.base_model_path) / "config.json").is_file()}
    merged = train_sft(config, params.merged_dir, entry=params.entry, progress=params.progress)
    return {"status": "trained", "model": portable_path(merged),
            "manifest": portable_path(work / MANIFEST_NAME),
            "last_metrics": last_step_metrics(work / TRAIN_LOG_NAME),
            "train_rows": len(sft_train_parquet), "val_rows": len(sft_val_parquet)}
