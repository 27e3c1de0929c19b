"""embedding_finetune nodes: a base model folder, then one ms-swift InfoNCE LoRA run merged into a plain
model.

The training node is a launcher: it writes the rows it receives as JSONL, hands them to
:func:`finrag_pipelines.training.swift.train_embedding` (skip when up to date, resume when interrupted,
merge LoRA, manifest) and returns the merged folder; the ``finetuned_model`` dataset records it.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from finrag_pipelines.pipelines.embedding_finetune.params import BaseModelParams, TrainParams
from finrag_pipelines.project_paths import portable_path, portable_values
from finrag_pipelines.training import swift as sw
from finrag_pipelines.training.runs import MANIFEST_NAME, TRAIN_LOG_NAME
from finrag_pipelines.training.staging import write_jsonl_if_changed

logger = logging.getLogger(__name__)

INFONCE_COLUMNS = ("messages", "positive_messages", "negative_messages")


def prepare_base_model(corpus: pd.DataFrame, params: BaseModelParams) -> Path:
    """The folder of the model to fine-tune.

    ``local``: ``params.model_path`` itself (checked for ``config.json``); the catalog's
    ``finetune_base_model`` points at the same folder, so saving it copies nothing.
    ``tiny``: a tiny random Qwen3 (tokenizer trained on the first ``tiny_lines`` corpus lines, weights
    seeded) built in a temporary folder, which the dataset then copies into place.
    """
    if params.kind == "local":
        folder = Path(str(params.model_path))
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"embedding_finetune.base_model.model_path {folder} is not a model folder (no config.json); "
                "put a Qwen3-Embedding checkpoint there, or use base_model.kind: tiny (demo/test envs)"
            )
        return folder
    from finrag_pipelines.embedding.tiny_model import build_tiny_qwen3

    lines = [
        line.strip() for text in corpus["text"].fillna("") for line in str(text).splitlines() if line.strip()
    ][: params.tiny_lines]
    if not lines:
        raise ValueError("corpus has no text to train the tiny model's tokenizer on")
    out = Path(tempfile.mkdtemp(prefix="finrag_tiny_qwen3_")) / "model"
    return build_tiny_qwen3(lines, out, seed=params.seed)


def _records(rows: pd.DataFrame, name: str) -> list[dict[str, Any]]:
    missing = [c for c in INFONCE_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"{name} lacks the ms-swift column(s) {missing}; has {list(rows.columns)}")
    return rows[list(INFONCE_COLUMNS)].to_dict(orient="records")


def train_embedding_model(
    infonce_train: pd.DataFrame,
    infonce_dev: pd.DataFrame,
    finetune_base_model: Path,
    params: TrainParams,
) -> Path:
    """Fine-tune the base model on the InfoNCE rows with ms-swift and return the merged model folder.

    Settings a CPU cannot run (bfloat16, several processes, deepspeed) fail here, before any file is
    written, with a message naming them.
    """
    config = sw.SwiftEmbeddingConfig.from_params(params.swift)
    sw.check_hardware(config)
    if len(infonce_train) == 0:
        raise ValueError("infonce_train is empty: run negative_mining first")
    data_dir = Path(params.work_dir) / "data"
    train_file = write_jsonl_if_changed(_records(infonce_train, "infonce_train"), data_dir / "train.jsonl")
    dev_file = None
    if len(infonce_dev):
        dev_file = write_jsonl_if_changed(_records(infonce_dev, "infonce_dev"), data_dir / "dev.jsonl")
    logger.info(
        "fine-tuning %s on %d train / %d dev rows", finetune_base_model, len(infonce_train), len(infonce_dev)
    )
    return sw.train_embedding(
        config,
        Path(finetune_base_model),
        train_file,
        dev_file,
        params.work_dir,
        params.merged_dir,
        progress=params.progress,
    )


def summarise_finetune(
    finetuned_model: Path, infonce_train: pd.DataFrame, infonce_dev: pd.DataFrame, params: TrainParams
) -> dict[str, Any]:
    """A small JSON report: base model, settings, steps, the logged loss per step and the last one, data
    sizes, manifest path (paths relative to the project root)."""
    manifest_path = Path(params.work_dir) / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    step = max_steps = loss = train_loss = None
    curve: list[dict[str, Any]] = []
    log = Path(params.work_dir) / TRAIN_LOG_NAME
    if log.is_file():
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            metrics = sw.parse_progress(line)
            if metrics:
                step, max_steps = metrics.get("step", step), metrics.get("max_steps", max_steps)
                loss = metrics.get("loss", loss)
                train_loss = metrics.get("train_loss", train_loss)
                if metrics.get("loss") is not None and metrics.get("step") is not None:
                    curve.append({"step": int(metrics["step"]), "loss": float(metrics["loss"])})
    config = manifest.get("config") or {}
    return {
        "model": portable_path(finetuned_model),
        "base_model": portable_values(manifest.get("base_model")),
        "status": manifest.get("status"),
        "tuner_type": config.get("tuner_type"),
        "steps": step,
        "max_steps": max_steps,
        "last_logged_loss": float(loss) if loss is not None else None,
        "train_loss": float(train_loss) if train_loss is not None else None,
        "loss_curve": curve,  # experiment tracking plots it (tracking.py)
        "train_rows": len(infonce_train),
        "dev_rows": len(infonce_dev),
        "started": manifest.get("started"),
        "finished": manifest.get("finished"),
        "manifest": portable_path(manifest_path),
    }
