"""reranker_finetune nodes: a base reranker folder, ms-swift rows from the mined examples, one training run.

The rows come from negative_mining's ``infonce_row_ids`` (the same query, positive and negatives the encoder
is trained on, same train/dev split by document) with the raw query text: a reranker reads the query in its
own prompt, not the encoder's instruction. Every passage is cut (by characters, with the base model's
tokenizer) so that its pair fits ``max_length`` whole: ms-swift then drops nothing and never cuts the
generative prompt's end, where the model answers.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from finrag_pipelines.pipelines.reranker_finetune.params import (
    BaseModelParams,
    RerankerSettings,
    RowParams,
    TrainParams,
)
from finrag_pipelines.project_paths import portable_path, portable_values
from finrag_pipelines.rerank.formats import PairFormat, QwenRerankPrompt, TextPairInput, fit_passage
from finrag_pipelines.rerank.loading import load_tokenizer
from finrag_pipelines.text.corpus import indexable
from finrag_pipelines.training import swift as sw
from finrag_pipelines.training.runs import MANIFEST_NAME, TRAIN_LOG_NAME
from finrag_pipelines.training.staging import write_jsonl_if_changed
from finrag_pipelines.training.swift_reranker import TASK_OF_KIND, SwiftRerankerConfig, train_reranker

logger = logging.getLogger(__name__)

ROW_COLUMNS = ("messages", "positive_messages", "negative_messages")


def _config(train: TrainParams, reranker: RerankerSettings) -> SwiftRerankerConfig:
    config = SwiftRerankerConfig.from_params(train.swift)
    if config.task_type != TASK_OF_KIND[reranker.kind]:
        raise ValueError(
            f"reranker_finetune.train.swift.task_type is {config.task_type!r}, but the reranker it trains "
            f"(globals rerankers.finetuned) is kind {reranker.kind!r}, which ms-swift trains as "
            f"{TASK_OF_KIND[reranker.kind]!r}; make the two agree."
        )
    return config


def prepare_reranker_base_model(
    corpus: pd.DataFrame, params: BaseModelParams, reranker: RerankerSettings
) -> Path:
    """The folder of the reranker to fine-tune.

    ``local``: ``params.model_path`` itself (checked for ``config.json``). ``tiny``: a tiny random reranker of
    ``reranker.kind`` (tokenizer trained on the first ``tiny_lines`` corpus lines, weights seeded) built in a
    temporary folder, which the dataset then copies into place.
    """
    if params.kind == "local":
        folder = Path(str(params.model_path))
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"reranker_finetune.base_model.model_path {folder} is not a model folder (no config.json); "
                "put a reranker (e.g. Qwen3-Reranker-0.6B) there, or use base_model.kind: tiny (demo/test)"
            )
        return folder
    from finrag_pipelines.rerank.tiny_models import build_tiny_bert_cross_encoder, build_tiny_qwen3_reranker

    lines = [
        line.strip() for text in corpus["text"].fillna("") for line in str(text).splitlines() if line.strip()
    ][: params.tiny_lines]
    if not lines:
        raise ValueError("corpus has no text to train the tiny reranker's tokenizer on")
    out = Path(tempfile.mkdtemp(prefix="finrag_tiny_reranker_")) / "model"
    build = build_tiny_qwen3_reranker if reranker.kind == "qwen3" else build_tiny_bert_cross_encoder
    return build(lines, out, seed=params.seed)


def _pair_format(model_dir: Path, reranker: RerankerSettings, max_length: int) -> PairFormat:
    if reranker.kind == "qwen3":
        return QwenRerankPrompt(load_tokenizer(model_dir, "left"), reranker.instruction, max_length)
    return TextPairInput(load_tokenizer(model_dir, "right"), max_length)


def _row(query: str, positive: str, negatives: list[str], instruction: str | None) -> dict[str, list]:
    head = [{"role": "system", "content": instruction}] if instruction is not None else []
    return {
        "messages": [*head, {"role": "user", "content": query}],
        "positive_messages": [[{"role": "assistant", "content": positive}]],
        "negative_messages": [[{"role": "assistant", "content": n}] for n in negatives],
    }


def build_reranker_rows(
    infonce_row_ids: pd.DataFrame,
    distilled_queries: pd.DataFrame,
    corpus: pd.DataFrame,
    reranker_base_model: Path,
    rows: RowParams,
    reranker: RerankerSettings,
    train: TrainParams,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """ms-swift reranker rows (train, dev) and their counts, from the mined examples.

    A generative (qwen3) row carries the reranker's instruction as its system message, which ms-swift's
    ``qwen3_reranker`` template puts in ``<Instruct>``. Passages are cut to fit ``train.swift.max_length``;
    an example whose query alone does not fit is dropped and counted.
    """
    config = _config(train, reranker)
    pair_format = _pair_format(Path(reranker_base_model), reranker, config.max_length)
    instruction = pair_format.instruction if isinstance(pair_format, QwenRerankPrompt) else None
    ids, texts, _ = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    text_of = dict(zip(ids, texts))
    query_of = dict(zip(distilled_queries["query_id"].astype(str), distilled_queries["query"].astype(str)))
    missing = sorted({str(q) for q in infonce_row_ids["query_id"]} - set(query_of))
    if missing:
        raise ValueError(
            f"infonce_row_ids names {len(missing)} query id(s) not in distilled_queries (e.g. "
            f"{missing[:3]}); rerun negative_mining on these queries."
        )
    counts = {
        "examples": len(infonce_row_ids),
        "dropped_query_too_long": 0,
        "passages_cut": 0,
        "passages": 0,
        "rows_without_negatives": 0,
    }
    out: dict[str, list[dict[str, list]]] = {"train": [], "dev": []}
    for split, qid, doc_id, negative_ids in zip(
        infonce_row_ids["split"], infonce_row_ids["query_id"], infonce_row_ids["doc_id"],
        infonce_row_ids["negative_ids"], strict=True,
    ):  # fmt: skip
        query = query_of[str(qid)]
        passages = [
            text_of[str(doc_id)],
            *(text_of[str(n)] for n in list(negative_ids)[: rows.max_negatives]),
        ]
        fitted = [fit_passage(pair_format, query, p) for p in passages]
        if fitted[0] is None:
            counts["dropped_query_too_long"] += 1
            continue
        counts["passages"] += len(passages)
        counts["passages_cut"] += sum(f != p for f, p in zip(fitted, passages, strict=True))
        negatives = [f for f in fitted[1:] if f is not None]
        counts["rows_without_negatives"] += int(not negatives)
        out[str(split)].append(_row(query, fitted[0], negatives, instruction))
    train_rows, dev_rows = (pd.DataFrame(out[s], columns=list(ROW_COLUMNS)) for s in ("train", "dev"))
    stats = {
        **counts,
        "train_rows": len(train_rows),
        "dev_rows": len(dev_rows),
        "max_length": config.max_length,
        "kind": reranker.kind,
        "instruction": instruction,
    }
    logger.info(
        "reranker_finetune: %d train / %d dev rows from %d mined examples (%d dropped: query longer than "
        "max_length %d; %d of %d passages cut to fit)",
        len(train_rows), len(dev_rows), counts["examples"], counts["dropped_query_too_long"],
        config.max_length, counts["passages_cut"], counts["passages"],
    )  # fmt: skip
    return train_rows, dev_rows, stats


def _records(rows: pd.DataFrame, name: str) -> list[dict[str, Any]]:
    missing = [c for c in ROW_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"{name} lacks the ms-swift column(s) {missing}; has {list(rows.columns)}")
    return rows[list(ROW_COLUMNS)].to_dict(orient="records")


def train_reranker_model(
    reranker_train: pd.DataFrame,
    reranker_dev: pd.DataFrame,
    reranker_base_model: Path,
    params: TrainParams,
    reranker: RerankerSettings,
) -> Path:
    """Fine-tune the base reranker on the rows with ms-swift and return the merged model folder.

    Settings a CPU cannot run (bfloat16, several processes, deepspeed) fail here, before any file is written.
    """
    config = _config(params, reranker)
    sw.check_hardware(config)
    if len(reranker_train) == 0:
        raise ValueError("reranker_train is empty: run negative_mining (and check reranker_rows_stats)")
    data_dir = Path(params.work_dir) / "data"
    train_file = write_jsonl_if_changed(_records(reranker_train, "reranker_train"), data_dir / "train.jsonl")
    dev_file = None
    if len(reranker_dev):
        dev_file = write_jsonl_if_changed(_records(reranker_dev, "reranker_dev"), data_dir / "dev.jsonl")
    logger.info(
        "fine-tuning reranker %s on %d train / %d dev rows",
        reranker_base_model,
        len(reranker_train),
        len(reranker_dev),
    )
    return train_reranker(
        config, Path(reranker_base_model), train_file, dev_file, params.work_dir, params.merged_dir,
        progress=params.progress,
    )  # fmt: skip


def summarise_reranker_finetune(
    reranker_finetuned: Path, reranker_rows_stats: dict[str, Any], params: TrainParams
) -> dict[str, Any]:
    """A small JSON report: base model, settings, steps and last logged loss and accuracy, rows, manifest."""
    manifest_path = Path(params.work_dir) / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    last: dict[str, Any] = {}
    log = Path(params.work_dir) / TRAIN_LOG_NAME
    if log.is_file():
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            metrics = sw.parse_progress(line)
            if metrics:
                last.update(
                    {
                        k: v
                        for k, v in metrics.items()
                        if k in ("step", "max_steps", "loss", "acc", "train_loss")
                    }
                )
    config = manifest.get("config") or {}
    return {
        "model": portable_path(reranker_finetuned),
        "base_model": portable_values(manifest.get("base_model")),
        "status": manifest.get("status"),
        "task_type": config.get("task_type"),
        "loss_type": config.get("loss_type"),
        "tuner_type": config.get("tuner_type"),
        "steps": last.get("step"),
        "max_steps": last.get("max_steps"),
        "last_logged_loss": float(last["loss"]) if "loss" in last else None,
        "last_logged_acc": float(last["acc"]) if "acc" in last else None,
        "train_loss": float(last["train_loss"]) if "train_loss" in last else None,
        "rows": reranker_rows_stats,
        "started": manifest.get("started"),
        "finished": manifest.get("finished"),
        "manifest": portable_path(manifest_path),
    }
