"""embedding_finetune: a real 3-step ms-swift LoRA run on CPU over a tiny Qwen3, then a skipped re-run."""

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
from finrag_pipelines.embedding.encoders import format_query
from finrag_pipelines.embedding.hf_encoder import HFEncoder
from finrag_pipelines.pipelines.embedding_finetune import create_pipeline, nodes
from finrag_pipelines.pipelines.embedding_finetune.params import BaseModelParams, TrainParams
from finrag_pipelines.training import swift as sw
from finrag_pipelines.training.runs import MANIFEST_NAME, TrainingError, write_manifest

TASK = "检索金融新闻"
P = "params:embedding_finetune."

SWIFT = {
    "tuner_type": "lora",
    "lora_rank": 8,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "target_modules": ["q_proj", "v_proj", "o_proj"],
    "learning_rate": 1e-3,
    "num_train_epochs": 1,
    "max_steps": 3,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "warmup_ratio": 0.0,
    "max_length": 64,
    "truncation_strategy": "right",
    "save_steps": 3,
    "logging_steps": 1,
    "torch_dtype": "float32",
    "nproc_per_node": 1,
    "deepspeed": None,
    "use_liger_kernel": True,
    "infonce_temperature": 0.05,
    "infonce_use_batch": True,
    "infonce_mask_fake_negative": False,
    "dataloader_num_workers": 0,
    "seed": 0,
}


def _rows(texts: list[str], start: int, n: int) -> pd.DataFrame:
    rows = []
    for i in range(start, start + n):
        rows.append(
            {
                "messages": [{"role": "user", "content": format_query(TASK, texts[i][:20])}],
                "positive_messages": [[{"role": "user", "content": texts[i][:80]}]],
                "negative_messages": [[{"role": "user", "content": texts[(i + 40) % len(texts)][:80]}]],
            }
        )
    return pd.DataFrame(rows)


def _train_params(tmp_path: Path, **swift_changes) -> TrainParams:
    return TrainParams(
        work_dir=str(tmp_path / "work"),
        merged_dir=str(tmp_path / "merged"),
        progress=False,
        swift={**SWIFT, **swift_changes},
    )


def _catalog(disc_corpus: list[tuple[str, str]], tmp_path: Path) -> DataCatalog:
    texts = [text for _, text in disc_corpus if text.strip()]
    corpus = pd.DataFrame({"doc_id": [d for d, _ in disc_corpus], "text": [t for _, t in disc_corpus]})
    catalog = DataCatalog(
        {
            "corpus": MemoryDataset(corpus),
            "infonce_train": MemoryDataset(_rows(texts, 0, 16)),
            "infonce_dev": MemoryDataset(_rows(texts, 16, 4)),
            "finetune_base_model@dir": ModelDirectoryDataset(str(tmp_path / "base")),
            "finetuned_model@dir": ModelDirectoryDataset(str(tmp_path / "merged")),
        }
    )
    catalog[P + "base_model"] = BaseModelParams(kind="tiny", model_path=None, tiny_lines=400, seed=0)
    catalog[P + "train"] = _train_params(tmp_path)
    return catalog


@pytest.mark.slow
def test_finetune_trains_then_skips(disc_corpus: list[tuple[str, str]], tmp_path: Path) -> None:
    pipeline = create_pipeline().to_outputs("finetuned_model@dir")
    SequentialRunner().run(pipeline, _catalog(disc_corpus, tmp_path))

    base, merged = tmp_path / "base", tmp_path / "merged"
    assert (base / "config.json").is_file() and (merged / "config.json").is_file()
    manifest = json.loads((tmp_path / "work" / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["status"] == "finished" and manifest["config"]["max_steps"] == 3
    train_lines = (tmp_path / "work" / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(train_lines) == 16 and TASK in train_lines[0]  # Chinese kept unescaped
    assert "global_step/max_steps': '3/3'" in (tmp_path / "work" / "train.log").read_text(encoding="utf-8")

    base_encoder = HFEncoder(base, query_task=TASK, device="cpu")
    tuned = HFEncoder(merged, query_task=TASK, device="cpu")
    assert tuned.fingerprint != base_encoder.fingerprint
    docs = [text[:60] for _, text in disc_corpus[:4]]
    vectors = tuned.encode_documents(docs)
    assert vectors.shape == (4, base_encoder.dim) and np.isfinite(vectors).all()

    # same data, config and (rebuilt, identical) tiny base: skipped, and the report is written
    train_jsonl = tmp_path / "work" / "data" / "train.jsonl"
    mtime = train_jsonl.stat().st_mtime_ns
    catalog = _catalog(disc_corpus, tmp_path)
    catalog["finetune_report"] = MemoryDataset()
    started = time.perf_counter()
    SequentialRunner().run(create_pipeline(), catalog)
    assert time.perf_counter() - started < 15
    assert train_jsonl.stat().st_mtime_ns == mtime  # unchanged rows are not rewritten
    report = catalog.load("finetune_report")
    assert report["steps"] == 3 and report["train_rows"] == 16 and report["dev_rows"] == 4
    assert report["status"] == "finished" and report["last_logged_loss"] is not None


def test_gpu_only_settings_fail_fast_on_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sw, "gpu_count", lambda: 0)

    def boom(*args, **kwargs):
        raise AssertionError("must not start training")

    monkeypatch.setattr(sw, "train_embedding", boom)
    params = _train_params(tmp_path, torch_dtype="bfloat16", deepspeed="zero2")
    rows = pd.DataFrame({"messages": [[]], "positive_messages": [[]], "negative_messages": [[]]})
    with pytest.raises(TrainingError, match="need a GPU") as info:
        nodes.train_embedding_model(rows, rows, tmp_path / "base", params)
    assert "torch_dtype: bfloat16" in str(info.value) and "deepspeed: zero2" in str(info.value)
    assert not (tmp_path / "work").exists()  # failed before writing anything


def test_local_base_model_is_returned_not_copied(tmp_path: Path) -> None:
    folder = tmp_path / "pretrained"
    params = BaseModelParams(kind="local", model_path=str(folder), tiny_lines=10, seed=0)
    with pytest.raises(FileNotFoundError, match=str(folder)):
        nodes.prepare_base_model(pd.DataFrame({"text": []}), params)
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert nodes.prepare_base_model(pd.DataFrame({"text": []}), params) == folder
    ModelDirectoryDataset(str(folder)).save(folder)  # same folder: nothing copied
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pretrained"]


def test_local_kind_needs_a_path() -> None:
    with pytest.raises(ValueError, match="model_path"):
        BaseModelParams(kind="local", model_path=None, tiny_lines=10, seed=0)


def test_finetune_report_paths_are_relative_to_the_project_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # Kedro runs from the project root
    base = tmp_path / "data" / "base"
    base.mkdir(parents=True)
    (base / "config.json").write_text("{}")
    (base / "model.safetensors").write_bytes(b"weights")
    train = tmp_path / "work" / "data" / "train.jsonl"
    train.parent.mkdir(parents=True)
    train.write_text('{"a": 1}\n')
    (tmp_path / "work" / "train.log").write_text("{'loss': '1.5', 'global_step/max_steps': '3/3'}\n")
    params = _train_params(tmp_path)
    write_manifest(
        Path(params.work_dir) / MANIFEST_NAME, argv=["swift", "sft"], env_knobs={},
        data_files={"train": train}, base_model=base, started="t0", finished="t1", output=tmp_path / "merged",
        config=sw.SwiftEmbeddingConfig.from_params(params.swift),
    )  # fmt: skip
    rows = pd.DataFrame({"messages": [[]] * 2})
    report = nodes.summarise_finetune(tmp_path / "merged", rows, rows.iloc[:1], params)
    assert str(tmp_path) not in json.dumps(report, ensure_ascii=False)
    assert report["model"] == "merged" and report["manifest"] == "work/manifest.json"
    assert report["base_model"]["path"] == "data/base"
    assert report["steps"] == 3 and report["last_logged_loss"] == 1.5
