"""reranker_finetune: rows from mined examples, a real 3-step ms-swift run on CPU, tiny Qwen3 reranker."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from finrag_pipelines.datasets.models import ModelDirectoryDataset
from finrag_pipelines.pipelines.reranker_finetune import create_pipeline, nodes
from finrag_pipelines.pipelines.reranker_finetune.params import (
    BaseModelParams,
    RerankerSettings,
    RowParams,
    TrainParams,
)
from finrag_pipelines.rerank.causal_lm import CausalLMReranker
from finrag_pipelines.rerank.formats import QwenRerankPrompt
from finrag_pipelines.training import swift as sw
from finrag_pipelines.training.runs import MANIFEST_NAME, TrainingError

P = "params:reranker_finetune."
INSTRUCTION = "Given a Chinese financial question, judge whether the document answers it"
SWIFT = {
    "task_type": "generative_reranker", "model_type": "qwen3_reranker", "template": None,
    "loss_type": "listwise_reranker", "max_positive_samples": 1, "max_negative_samples": 3,
    "listwise_temperature": 1.0, "listwise_min_group_size": 2, "tuner_type": "full", "lora_rank": 8,
    "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": ["all-linear"], "learning_rate": 1e-3,
    "num_train_epochs": 1, "max_steps": 3, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1,
    "warmup_ratio": 0.0, "max_length": 320, "truncation_strategy": "delete", "save_steps": 3,
    "logging_steps": 1,
    "torch_dtype": "float32", "nproc_per_node": 1, "deepspeed": None, "use_liger_kernel": True,
    "dataloader_num_workers": 0, "seed": 0,
}  # fmt: skip


def _reranker(tmp_path: Path, kind: str = "qwen3") -> RerankerSettings:
    return RerankerSettings(kind=kind, model_path=str(tmp_path / "merged"), instruction=INSTRUCTION,
                            max_length=320, batch_size=8, dtype="auto", device="cpu")  # fmt: skip


def _train(tmp_path: Path, **swift_changes) -> TrainParams:
    return TrainParams(work_dir=str(tmp_path / "work"), merged_dir=str(tmp_path / "merged"), progress=False,
                       swift={**SWIFT, **swift_changes})  # fmt: skip


def _mined(
    disc_corpus: list[tuple[str, str]], n: int = 12
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    docs = disc_corpus[:60]
    corpus = pd.DataFrame({"doc_id": [d for d, _ in docs], "title": "", "text": [t for _, t in docs]})
    ids = list(corpus["doc_id"])
    queries = pd.DataFrame({"query_id": [f"q{i}" for i in range(n)], "doc_id": ids[:n],
                            "query": [f"{docs[i][1][:12]}？" for i in range(n)]})  # fmt: skip
    row_ids = pd.DataFrame(
        {
            "split": ["dev" if i % 6 == 5 else "train" for i in range(n)],
            "line": list(range(n)),
            "query_id": list(queries["query_id"]),
            "doc_id": ids[:n],
            "negative_ids": [np.array(ids[20 + i : 25 + i]) for i in range(n)],  # as parquet gives them back
        }
    )
    return row_ids, queries, corpus


def _catalog(disc_corpus, tmp_path: Path) -> DataCatalog:
    row_ids, queries, corpus = _mined(disc_corpus)
    catalog = DataCatalog(
        {
            "corpus": MemoryDataset(corpus),
            "distilled_queries": MemoryDataset(queries),
            "infonce_row_ids": MemoryDataset(row_ids),
            "reranker_base_model@dir": ModelDirectoryDataset(str(tmp_path / "base")),
            "reranker_finetuned@dir": ModelDirectoryDataset(str(tmp_path / "merged")),
            "reranker_train": MemoryDataset(),
            "reranker_dev": MemoryDataset(),
            "reranker_rows_stats": MemoryDataset(),
        }
    )
    catalog[P + "base_model"] = BaseModelParams(kind="tiny", model_path=None, tiny_lines=400, seed=0)
    catalog[P + "rows"] = RowParams(max_negatives=3)
    catalog[P + "reranker"] = _reranker(tmp_path)
    catalog[P + "train"] = _train(tmp_path)
    return catalog


@pytest.mark.slow
def test_finetune_trains_a_tiny_reranker_then_skips(disc_corpus, tmp_path: Path) -> None:
    catalog = _catalog(disc_corpus, tmp_path)
    started = time.perf_counter()
    SequentialRunner().run(create_pipeline().to_outputs("reranker_finetuned@dir"), catalog)
    trained_in = time.perf_counter() - started
    base, merged = tmp_path / "base", tmp_path / "merged"
    assert (base / "config.json").is_file() and (merged / "config.json").is_file()
    manifest = json.loads((tmp_path / "work" / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["status"] == "finished" and manifest["trainer"] == "SwiftRerankerConfig"
    assert (
        "--task_type" in manifest["argv"]
        and manifest["env_knobs"]["GENERATIVE_RERANKER_POSITIVE_TOKEN"] == "yes"
    )
    # CPU: sdpa and no Liger although conf asks for it, with the reasons in the manifest
    assert manifest["argv"][manifest["argv"].index("--attn_impl") + 1] == "sdpa"
    assert "--use_liger_kernel" not in manifest["argv"]
    assert manifest["kernels"]["use_liger"] is False and "no CUDA GPU" in manifest["kernels"]["liger_reason"]
    log = (tmp_path / "work" / "train.log").read_text(encoding="utf-8")
    assert "global_step/max_steps': '3/3'" in log and "filtered dataset length" not in log  # no row dropped
    rows = [
        json.loads(x) for x in (tmp_path / "work/data/train.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert len(rows) == 10 and rows[0]["messages"][0] == {"role": "system", "content": INSTRUCTION}
    assert (
        len(rows[0]["negative_messages"]) == 3 and rows[0]["positive_messages"][0][0]["role"] == "assistant"
    )

    base_reranker = CausalLMReranker(base, instruction=INSTRUCTION, max_length=320, device="cpu")
    tuned = CausalLMReranker(merged, instruction=INSTRUCTION, max_length=320, device="cpu")
    assert tuned.fingerprint != base_reranker.fingerprint
    queries, docs = ["利润是多少？"] * 3, [t[:80] for _, t in disc_corpus[:3]]
    scores = tuned.score_pairs(queries, docs)
    assert np.isfinite(scores).all() and not np.allclose(scores, base_reranker.score_pairs(queries, docs))

    catalog = _catalog(disc_corpus, tmp_path)  # same rows, config and (rebuilt, identical) base: skipped
    catalog["reranker_finetune_report"] = MemoryDataset()
    started = time.perf_counter()
    SequentialRunner().run(create_pipeline(), catalog)
    assert time.perf_counter() - started < min(15, trained_in)
    report = catalog.load("reranker_finetune_report")
    assert (
        report["steps"] == 3
        and report["status"] == "finished"
        and report["task_type"] == "generative_reranker"
    )
    assert report["rows"]["train_rows"] == 10 and report["rows"]["dev_rows"] == 2
    assert report["last_logged_loss"] is not None


def test_rows_fit_max_length_and_carry_the_instruction(
    disc_corpus, tiny_qwen3_reranker_dir: Path, tmp_path
) -> None:
    row_ids, queries, corpus = _mined(disc_corpus)
    corpus.loc[corpus["doc_id"] == row_ids["doc_id"][0], "text"] = "很长的公告正文。" * 300
    row_ids.loc[1, "query_id"] = "q1"
    queries.loc[1, "query"] = "问" * 600  # this query alone does not fit: its example is dropped and counted
    train, dev, stats = nodes.build_reranker_rows(
        row_ids, queries, corpus, tiny_qwen3_reranker_dir, RowParams(max_negatives=2), _reranker(tmp_path),
        _train(tmp_path),
    )  # fmt: skip
    assert stats["dropped_query_too_long"] == 1 and len(train) + len(dev) == len(row_ids) - 1
    assert stats["passages_cut"] >= 1 and stats["instruction"] == INSTRUCTION
    from transformers import AutoTokenizer

    prompt = QwenRerankPrompt(AutoTokenizer.from_pretrained(tiny_qwen3_reranker_dir), INSTRUCTION, 320)
    for row in train.to_dict(orient="records"):
        query = row["messages"][1]["content"]
        for doc in [row["positive_messages"][0], *row["negative_messages"]]:
            assert prompt.full_length(query, doc[0]["content"]) <= 320
        assert len(row["negative_messages"]) == 2
    cross = _reranker(tmp_path, kind="cross_encoder")
    with pytest.raises(ValueError, match="ms-swift trains as 'reranker'"):
        nodes.build_reranker_rows(row_ids, queries, corpus, tiny_qwen3_reranker_dir,
                                  RowParams(max_negatives=2),
                                  cross, _train(tmp_path))  # fmt: skip


def test_cross_encoder_rows_have_no_system_message(
    disc_corpus, tiny_bert_reranker_dir: Path, tmp_path
) -> None:
    row_ids, queries, corpus = _mined(disc_corpus)
    swift = {"task_type": "reranker", "model_type": "bert", "template": "bert",
             "loss_type": "pointwise_reranker",
             "max_length": 128}  # fmt: skip
    train, _, stats = nodes.build_reranker_rows(
        row_ids, queries, corpus, tiny_bert_reranker_dir, RowParams(max_negatives=2),
        _reranker(tmp_path, kind="cross_encoder"), _train(tmp_path, **swift),
    )  # fmt: skip
    assert [m["role"] for m in train["messages"][0]] == ["user"] and stats["instruction"] is None


def test_gpu_only_settings_fail_fast_on_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sw, "gpu_count", lambda: 0)

    def boom(*args, **kwargs):
        raise AssertionError("must not start training")

    monkeypatch.setattr(nodes, "train_reranker", boom)
    params = _train(tmp_path, torch_dtype="bfloat16", nproc_per_node=2)
    rows = pd.DataFrame({"messages": [[]], "positive_messages": [[]], "negative_messages": [[]]})
    with pytest.raises(TrainingError, match="need a GPU") as info:
        nodes.train_reranker_model(rows, rows, tmp_path / "base", params, _reranker(tmp_path))
    assert "torch_dtype: bfloat16" in str(info.value) and "nproc_per_node: 2" in str(info.value)
    assert not (tmp_path / "work").exists()  # failed before writing anything


def test_local_base_model_must_exist(tmp_path: Path) -> None:
    params = BaseModelParams(kind="local", model_path=str(tmp_path / "none"), tiny_lines=10, seed=0)
    with pytest.raises(FileNotFoundError, match="Qwen3-Reranker"):
        nodes.prepare_reranker_base_model(pd.DataFrame({"text": []}), params, _reranker(tmp_path))
    with pytest.raises(ValueError, match="model_path"):
        BaseModelParams(kind="local", model_path=None, tiny_lines=10, seed=0)
