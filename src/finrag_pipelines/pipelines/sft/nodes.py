"""sft nodes: sft_train items → verl SFT chats → length policy → train/val parquet + stats
→ verl SFT launch."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from finrag_pipelines.floors import FloorParams, enforce_floor, floor_verdict
from finrag_pipelines.kernels import planned_kernels
from finrag_pipelines.mcq.records import (
    build_sft_rows,
    chat_lengths,
    describe_lengths,
    limit_lengths,
    load_tokenizer,
    tokenizer_name,
    validate_sft_rows,
)
from finrag_pipelines.mcq.sft_mix import check_distill_items, distill_chats, mix_chats, rl_and_eval_keys
from finrag_pipelines.mcq.split import holdout_slice, item_key
from finrag_pipelines.pipelines.sft.params import LengthParams, MixParams, SftDataParams, SftLaunchParams
from finrag_pipelines.project_paths import portable_argv, portable_path
from finrag_pipelines.training.runs import MANIFEST_NAME, TRAIN_LOG_NAME
from finrag_pipelines.training.staging import write_parquet_if_changed
from finrag_pipelines.training.verl_common import last_step_metrics
from finrag_pipelines.training.verl_sft import VerlSFTConfig, build_sft_command, train_sft

logger = logging.getLogger(__name__)


def build_sft_examples(mcq_splits: pd.DataFrame, params: SftDataParams) -> pd.DataFrame:
    """Chats for every sft_train item,
    with ``question_key`` and ``has_explanation`` kept for slicing/stats."""
    items = mcq_splits[mcq_splits["split"] == "sft_train"].reset_index(drop=True)
    rows, excluded = build_sft_rows(
        items, target_style=params.target_style, missing_explanation=params.missing_explanation
    )
    meta = items.set_index("item_id").loc[rows["item_id"], ["question_key", "explanation"]]
    rows["question_key"] = meta["question_key"].to_numpy()
    rows["has_explanation"] = meta["explanation"].notna().to_numpy()
    logger.info(
        "sft: %d sft_train items -> %d chats (%d excluded without explanation, missing_explanation=%s)",
        len(items),
        len(rows),
        excluded,
        params.missing_explanation,
    )
    return rows


def mix_sft_sources(
    sft_examples: pd.DataFrame,
    sft_distill_items: pd.DataFrame,
    mcq_splits: pd.DataFrame,
    data: SftDataParams,
    length: LengthParams,
    mix: MixParams,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The configured mix of sft_train chats and sft_distill's verified rows: no question of rl_train or eval,
    one row per item (normalised question + options) across sources, per-source caps; counts and lengths."""
    check_distill_items(sft_distill_items)
    keys = mcq_splits.set_index("item_id").loc[sft_examples["item_id"]]
    repeat_keys = [item_key(q, o) for q, o in zip(keys["question"], keys["options"])]
    original = sft_examples.assign(repeat_key=repeat_keys, mix_source="original")
    chats = pd.concat([original, distill_chats(sft_distill_items, data.target_style)], ignore_index=True)
    order = [(s.name, s.max_rows) for s in mix.sources]
    mixed, counts = mix_chats(chats, order, rl_and_eval_keys(mcq_splits), mix.seed)
    tokenizer = load_tokenizer(length.tokenizer_path)
    lengths, unit = chat_lengths(mixed["messages"], tokenizer, add_generation_prompt=False)
    for name in counts:
        counts[name]["lengths"] = describe_lengths(lengths[(mixed["mix_source"] == name).to_numpy()], unit)
    for name, count in counts.items():
        if count["available"] == 0:
            logger.warning("sft: mix source %r has no rows (sft_distill_report says whether it ran)", name)
    logger.info("sft: mix %s", {name: c["kept"] for name, c in counts.items()})
    return mixed, {"rows": len(mixed), "order": [s.name for s in mix.sources], "sources": counts}


def limit_sft_lengths(
    sft_examples: pd.DataFrame, params: LengthParams
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Measure each chat after the chat template and apply ``max_length``/``truncation``."""
    lengths, unit = chat_lengths(
        sft_examples["messages"], load_tokenizer(params.tokenizer_path), add_generation_prompt=False
    )
    kept, counts = limit_lengths(sft_examples, lengths, params.max_length, params.truncation)
    report = {
        "tokenizer": tokenizer_name(params.tokenizer_path),
        "max_length": params.max_length,
        "truncation": params.truncation,
        **counts,
        "lengths": describe_lengths(lengths, unit),
    }
    logger.info("sft: length policy %s", {k: v for k, v in report.items() if k != "lengths"})
    return kept, report


def split_sft_validation(
    sft_examples_fit: pd.DataFrame, params: SftDataParams
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small stable held-out slice of sft_train as sft_val; both validated as verl SFT parquet."""
    held = pd.Series(
        holdout_slice(list(sft_examples_fit["question_key"]), params.val_size, params.seed),
        index=sft_examples_fit.index,
    )
    cols = ["item_id", "messages"]
    train, val = (
        sft_examples_fit.loc[~held, cols].reset_index(drop=True),
        sft_examples_fit.loc[held, cols].reset_index(drop=True),
    )
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
    rows per sft_train item; rows of the other mix sources do not count towards it)."""
    item_ids = set(mcq_splits.loc[mcq_splits["split"] == "sft_train", "item_id"])
    items = len(item_ids)
    kept = int(pd.concat([sft_train_parquet["item_id"], sft_val_parquet["item_id"]]).isin(item_ids).sum())
    reasons = {
        "excluded_without_explanation": items - len(sft_examples),
        "dropped_too_long_or_repeated": len(sft_examples) - kept,
    }
    return {
        "examples": len(sft_examples),
        "with_explanation": int(sft_examples["has_explanation"].sum()),
        "train_rows": len(sft_train_parquet),
        "val_rows": len(sft_val_parquet),
        "length": sft_length_report,
        "floor": floor_verdict(
            "sft",
            kept,
            items,
            floor,
            reasons,
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
    """Stage the SFT data, then train with verl and merge (mode ``train``)
    or record the checked command (``plan``).

    ``floor_check`` is only an ordering input: in the pipeline nothing is launched before ``sft.floor`` held.

    A launch node: it starts an external trainer. Training fails fast on a machine without a GPU unless
    ``verl.cpu_smoke`` is set; an up-to-date run (same data, settings and base model) is not retrained.
    """
    work = Path(params.work_dir).resolve()  # verl (and its ray workers) may run from another directory
    train = write_parquet_if_changed(sft_train_parquet, work / "data" / "sft_train.parquet")
    val = (
        write_parquet_if_changed(sft_val_parquet, work / "data" / "sft_val.parquet")
        if len(sft_val_parquet)
        else None
    )
    config = VerlSFTConfig.from_params(
        {
            **params.verl,
            "model_path": str(Path(params.base_model_path).resolve()),
            "train_files": str(train),
            "val_files": None if val is None else str(val),
            "output_dir": str(work),
            "max_length": length.max_length,
        }
    )
    if params.mode == "plan":
        kernels = planned_kernels("verl SFT", liger=config.use_liger)  # decided again at launch
        gpus = max(config.nproc_per_node, 1)
        argv, env = build_sft_command(config, entry=params.entry, gpus=gpus, kernels=kernels)
        logger.info("sft: launch planned, not run (sft.launch.mode=plan): %s", " ".join(argv[:8]))
        return {
            "status": "planned",
            "reason": "sft.launch.mode=plan",
            "argv": portable_argv(argv),
            "env": env,
            "kernels": kernels.to_dict(),
            "train_rows": len(sft_train_parquet),
            "val_rows": len(sft_val_parquet),
            "base_model_exists": (Path(params.base_model_path) / "config.json").is_file(),
        }
    merged = train_sft(config, params.merged_dir, entry=params.entry, progress=params.progress)
    return {
        "status": "trained",
        "model": portable_path(merged),
        "manifest": portable_path(work / MANIFEST_NAME),
        "last_metrics": last_step_metrics(work / TRAIN_LOG_NAME),
        "train_rows": len(sft_train_parquet),
        "val_rows": len(sft_val_parquet),
    }
