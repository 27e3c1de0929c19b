"""Tests for the ms-swift embedding training launcher, including one real few-step CPU training run."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from finrag_pipelines.kernels import KernelChoice
from finrag_pipelines.training import checkpoints, runs
from finrag_pipelines.training import swift as sw

SWIFT = "/venv/bin/swift"

BASE = {
    "tuner_type": "lora",
    "lora_rank": 8,
    "lora_alpha": 32,
    "lora_dropout": 0.0,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "learning_rate": 1e-3,
    "num_train_epochs": 1,
    "max_steps": 4,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "warmup_ratio": 0.0,
    "max_length": 64,
    "truncation_strategy": "right",
    "save_steps": 4,
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

COMMON_TAIL = [
    "--split_dataset_ratio", "0", "--dataloader_drop_last", "true", "--label_names", "labels",
    "--report_to", "none", "--check_model", "false", "--output_dir", "out",
]  # fmt: skip


def _config(**changes) -> sw.SwiftEmbeddingConfig:
    return sw.SwiftEmbeddingConfig.from_params({**BASE, **changes})


def test_lora_command_exact() -> None:
    argv, env = sw.build_sft_command(
        _config(), "m", "train.jsonl", "dev.jsonl", "out", gpus=0, swift_bin=SWIFT
    )
    assert argv == [
        SWIFT, "sft", "--model", "m", "--model_type", "qwen3_emb", "--task_type", "embedding",
        "--loss_type", "infonce", "--tuner_type", "lora", "--lora_rank", "8", "--lora_alpha", "32",
        "--lora_dropout", "0.0", "--target_modules", "q_proj", "k_proj", "v_proj", "o_proj",
        "--dataset", "train.jsonl", "--val_dataset", "dev.jsonl", *COMMON_TAIL,
        "--learning_rate", "0.001", "--num_train_epochs", "1", "--max_steps", "4",
        "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1", "--warmup_ratio", "0.0",
        "--max_length", "64", "--truncation_strategy", "right", "--save_steps", "4", "--logging_steps", "1",
        "--torch_dtype", "float32", "--attn_impl", "sdpa", "--dataloader_num_workers", "0", "--seed", "0",
    ]  # fmt: skip
    assert env == {
        "INFONCE_TEMPERATURE": "0.05",
        "INFONCE_USE_BATCH": "true",
        "INFONCE_MASK_FAKE_NEGATIVE": "false",
        "HF_HUB_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }


def test_full_command_on_gpus_exact() -> None:
    config = _config(
        tuner_type="full",
        max_steps=-1,
        num_train_epochs=2,
        torch_dtype="bfloat16",
        nproc_per_node=2,
        deepspeed="zero3",
        infonce_mask_fake_negative=True,
        extra_args={"save_total_limit": 2, "eval_steps": 100},
    )
    assert config.max_steps is None
    argv, env = sw.build_sft_command(
        config,
        "m",
        "train.jsonl",
        None,
        "out",
        gpus=2,
        swift_bin=SWIFT,
        resume_from="out/v0-20250101-000000/checkpoint-4",
        kernels=KernelChoice("flash_attention_2", "flash-attn importable", True, "liger-kernel importable"),
    )
    assert argv == [
        SWIFT, "sft", "--model", "m", "--model_type", "qwen3_emb", "--task_type", "embedding",
        "--loss_type", "infonce", "--tuner_type", "full", "--dataset", "train.jsonl", *COMMON_TAIL,
        "--learning_rate", "0.001", "--num_train_epochs", "2",
        "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1", "--warmup_ratio", "0.0",
        "--max_length", "64", "--truncation_strategy", "right", "--save_steps", "4", "--logging_steps", "1",
        "--torch_dtype", "bfloat16", "--deepspeed", "zero3", "--attn_impl", "flash_attention_2",
        "--use_liger_kernel", "true", "--dataloader_num_workers", "0", "--seed", "0",
        "--resume_from_checkpoint", "out/v0-20250101-000000/checkpoint-4",
        "--save_total_limit", "2", "--eval_steps", "100",
    ]  # fmt: skip
    assert env == {
        "INFONCE_TEMPERATURE": "0.05",
        "INFONCE_USE_BATCH": "true",
        "INFONCE_MASK_FAKE_NEGATIVE": "true",
        "HF_HUB_OFFLINE": "1",
        "NPROC_PER_NODE": "2",
    }


def test_auto_dtype_omits_flag() -> None:
    argv, _ = sw.build_sft_command(
        _config(torch_dtype="auto"), "m", "t", None, "out", gpus=0, swift_bin=SWIFT
    )
    assert "--torch_dtype" not in argv


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"torch_dtype": "bfloat16"}, "torch_dtype: bfloat16"),
        ({"nproc_per_node": 2}, "nproc_per_node: 2"),
        ({"deepspeed": "zero2"}, "deepspeed: zero2"),
    ],
)
def test_gpu_only_settings_rejected_on_cpu(changes, words) -> None:
    with pytest.raises(runs.TrainingError, match="need a GPU") as info:
        sw.build_sft_command(_config(**changes), "m", "t", None, "out", gpus=0, swift_bin=SWIFT)
    assert words in str(info.value)


def test_more_processes_than_gpus_rejected() -> None:
    with pytest.raises(runs.TrainingError, match="only 1 GPU"):
        sw.check_hardware(_config(nproc_per_node=2), gpus=1)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"tuner_type": "qlora"}, "tuner_type"),
        ({"lora_rank": 0}, "lora_rank"),
        ({"target_modules": []}, "target_modules"),
        ({"torch_dtype": "fp16"}, "torch_dtype"),
        ({"deepspeed": "zero1"}, "deepspeed"),
        ({"max_steps": 0}, "max_steps"),
        ({"infonce_use_batch": "yes"}, "infonce_use_batch"),
        ({"truncation_strategy": "split"}, "truncation_strategy"),
        ({"extra_args": {"output_dir": "x"}}, "extra_args"),
    ],
)
def test_invalid_settings_name_the_field(changes, field) -> None:
    with pytest.raises(ValueError, match=field):
        _config(**changes)


def test_from_params_missing_and_unknown_keys() -> None:
    params = dict(BASE)
    del params["lora_rank"]
    with pytest.raises(ValueError, match="lora_rank"):
        sw.SwiftEmbeddingConfig.from_params(params)
    with pytest.raises(ValueError, match="lora_rnak"):
        sw.SwiftEmbeddingConfig.from_params({**BASE, "lora_rnak": 4})


def test_full_tuning_ignores_lora_fields() -> None:
    config = _config(tuner_type="full", lora_rank=0, target_modules=[])
    argv, _ = sw.build_sft_command(config, "m", "t", None, "out", gpus=0, swift_bin=SWIFT)
    assert "--lora_rank" not in argv and "--target_modules" not in argv


def test_parse_progress() -> None:
    line = (
        "Train:  75%|███| 3/4 [00:13<00:04]  "
        "{'loss': '1.98', 'grad_norm': '38.57', 'global_step/max_steps': '3/4'}"
    )
    metrics = sw.parse_progress(line)
    assert (
        metrics is not None
        and metrics["step"] == 3
        and metrics["max_steps"] == 4
        and metrics["loss"] == "1.98"
    )
    assert sw.parse_progress("[INFO:swift] nothing") is None


def _make_ckpt(folder: Path, lora: bool = True) -> Path:
    folder.mkdir(parents=True)
    (folder / ("adapter_config.json" if lora else "config.json")).write_text("{}")
    return folder


def test_find_last_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _make_ckpt(out / "v0-20250101-000000" / "checkpoint-50")
    _make_ckpt(out / "v1-20250102-000000" / "checkpoint-5")
    _make_ckpt(out / "v1-20250102-000000" / "checkpoint-20")
    _make_ckpt(out / "v1-20250102-000000" / "checkpoint-100-merged")
    (out / "v1-20250102-000000" / "checkpoint-200").mkdir()  # incomplete: no config
    (out / "v2-20250103-000000").mkdir()  # crashed before the first save
    assert checkpoints.find_last_swift_checkpoint(out) == out / "v1-20250102-000000" / "checkpoint-20"
    _make_ckpt(out / "v10-20250104-000000" / "checkpoint-1", lora=False)  # v10 sorts after v2
    assert checkpoints.find_last_swift_checkpoint(out) == out / "v10-20250104-000000" / "checkpoint-1"


def test_find_last_checkpoint_none(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no swift checkpoint"):
        checkpoints.find_last_swift_checkpoint(tmp_path)


def test_merge_full_checkpoint_copies_model_files(tmp_path: Path) -> None:
    ckpt = _make_ckpt(tmp_path / "v0-20250101-000000" / "checkpoint-3", lora=False)
    for name in ("model.safetensors", "tokenizer.json", "optimizer.pt", "scheduler.pt", "rng_state.pth"):
        (ckpt / name).write_text("x")
    out = checkpoints.merge_swift_checkpoint(ckpt, tmp_path / "merged", log_path=tmp_path / "log")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]


def _fake_model(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    return folder


def test_manifest_and_up_to_date(tmp_path: Path) -> None:
    base = _fake_model(tmp_path / "base")
    merged = _fake_model(tmp_path / "merged")
    train = tmp_path / "train.jsonl"
    train.write_text('{"a": 1}\n')
    config = _config()
    files = {"train": train, "dev": None}
    manifest = runs.write_manifest(
        tmp_path / "manifest.json",
        argv=["swift", "sft"],
        env_knobs={"INFONCE_TEMPERATURE": "0.05"},
        data_files=files,
        base_model=base,
        started="t0",
        finished="t1",
        output=merged,
        config=config,
    )
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk == manifest
    assert set(on_disk["versions"]) >= {"torch", "transformers", "ms-swift", "peft"}
    assert on_disk["data_files"]["train"]["sha256"] == runs.file_sha256(train)
    assert on_disk["data_files"]["dev"] is None
    assert on_disk["base_model"]["fingerprint"] == runs.base_model_fingerprint(base)
    assert on_disk["config"]["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    d_hash = runs.data_hash(files)
    c_hash = runs.config_hash(config, runs.base_model_fingerprint(base))
    assert on_disk["data_hash"] == d_hash and on_disk["config_hash"] == c_hash
    path = tmp_path / "manifest.json"
    assert runs.is_up_to_date(path, d_hash, c_hash)
    assert not runs.is_up_to_date(path, d_hash, runs.config_hash(config.replace(lora_rank=16)))
    train.write_text('{"a": 2}\n')
    assert not runs.is_up_to_date(path, runs.data_hash(files), c_hash)
    (merged / "model.safetensors").unlink()
    assert not runs.is_up_to_date(path, d_hash, c_hash)
    assert not runs.is_up_to_date(tmp_path / "missing.json", d_hash, c_hash)


def test_run_logged_failure_carries_tail(tmp_path: Path) -> None:
    script = "import sys\nfor i in range(50): print('line', i)\nsys.exit(3)"
    with pytest.raises(runs.TrainingError, match="exit code 3") as info:
        runs.run_logged([sys.executable, "-c", script], {}, tmp_path / "log.txt", progress=False)
    assert info.value.returncode == 3
    assert info.value.tail[-1] == "line 49" and len(info.value.tail) == 30
    assert "line 0" in (tmp_path / "log.txt").read_text()


def test_run_logged_reports_steps(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    script = "print(\"{'loss': '1.5', 'global_step/max_steps': '2/5'}\")"
    with caplog.at_level(logging.INFO, logger=runs.__name__):
        sw.run_swift([sys.executable, "-c", script], {"X": "1"}, tmp_path / "log.txt", progress=False)
    assert "step 2/5 loss 1.5" in caplog.text


def test_train_embedding_skips_up_to_date_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = _fake_model(tmp_path / "base")
    merged = _fake_model(tmp_path / "merged")
    train = tmp_path / "train.jsonl"
    train.write_text('{"a": 1}\n')
    config = _config()
    files = {"train": train, "dev": None}
    runs.write_manifest(
        tmp_path / "work" / runs.MANIFEST_NAME,
        argv=[],
        env_knobs={},
        data_files=files,
        base_model=base,
        started="t0",
        finished="t1",
        output=merged,
        config=config,
    )

    def boom(*args, **kwargs):
        raise AssertionError("must not retrain")

    monkeypatch.setattr(sw, "run_swift", boom)
    assert sw.train_embedding(config, base, train, None, tmp_path / "work", merged) == merged


# ------------------------------------------------------------------------------------ real CPU training


def _training_rows(disc_corpus: list[tuple[str, str]], n: int = 16) -> list[dict]:
    texts = [text for _, text in disc_corpus if text.strip()]
    rows = []
    for i in range(n):
        doc = texts[i][:80]
        neg = texts[(i + n) % len(texts)][:80]
        query = texts[i][:20]
        rows.append(
            {
                "messages": [{"role": "user", "content": f"Instruct: 检索\nQuery:{query}"}],
                "positive_messages": [[{"role": "user", "content": doc}]],
                "negative_messages": [[{"role": "user", "content": neg}]],
            }
        )
    return rows


@pytest.mark.slow
def test_real_swift_lora_training_on_cpu(
    tiny_qwen3_dir: Path, disc_corpus: list[tuple[str, str]], tmp_path: Path
) -> None:
    from finrag_pipelines.embedding.hf_encoder import HFEncoder

    train = tmp_path / "train.jsonl"
    train.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _training_rows(disc_corpus)),
        encoding="utf-8",
    )
    config = _config()  # LoRA, float32, batch 4, max_length 64, 4 steps
    argv, env = sw.build_sft_command(config, tiny_qwen3_dir, train, None, tmp_path / "runs", gpus=0)
    log = tmp_path / "train.log"
    sw.run_swift(argv, env, log, progress=False)
    assert "global_step/max_steps': '4/4'" in log.read_text(encoding="utf-8")
    checkpoint = checkpoints.find_last_swift_checkpoint(tmp_path / "runs")
    assert checkpoint.name == "checkpoint-4" and (checkpoint / "adapter_config.json").is_file()

    merged = checkpoints.merge_swift_checkpoint(checkpoint, tmp_path / "merged", log_path=log)
    base_encoder = HFEncoder(tiny_qwen3_dir, query_task="检索", device="cpu")
    tuned_encoder = HFEncoder(merged, query_task="检索", device="cpu")
    docs = [text[:60] for _, text in disc_corpus[:5]]
    vectors = tuned_encoder.encode_documents(docs)
    assert vectors.shape == (5, base_encoder.dim)
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert tuned_encoder.fingerprint != base_encoder.fingerprint
    assert not np.allclose(vectors, base_encoder.encode_documents(docs), atol=1e-4)

    manifest = runs.write_manifest(
        tmp_path / runs.MANIFEST_NAME,
        argv=argv,
        env_knobs=env,
        data_files={"train": train},
        base_model=tiny_qwen3_dir,
        started="t0",
        finished="t1",
        output=merged,
        config=config,
        checkpoint=checkpoint,
    )
    assert runs.is_up_to_date(tmp_path / runs.MANIFEST_NAME, manifest["data_hash"], manifest["config_hash"])


def test_train_embedding_trains_skips_remerges_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = _fake_model(tmp_path / "base")
    train = tmp_path / "train.jsonl"
    train.write_text('{"a": 1}\n')
    calls: list[list[str]] = []

    def fake_run(argv, env, log_path, **kwargs):  # writes what a full-tuning swift run leaves behind
        calls.append(list(argv))
        out = Path(argv[argv.index("--output_dir") + 1])
        ckpt = out / f"v{len(calls) - 1}-2025010{len(calls)}-000000" / "checkpoint-4"
        _fake_model(ckpt)
        (ckpt / "optimizer.pt").write_text("state")

    monkeypatch.setattr(sw, "run_swift", fake_run)
    monkeypatch.setattr(sw, "gpu_count", lambda: 0)
    monkeypatch.setattr(sw, "swift_executable", lambda: SWIFT)
    config = _config(tuner_type="full")
    work, merged = tmp_path / "work", tmp_path / "merged"

    assert sw.train_embedding(config, base, train, None, work, merged, progress=False) == merged
    assert len(calls) == 1 and "--resume_from_checkpoint" not in calls[0]
    assert sorted(p.name for p in merged.iterdir()) == [
        "config.json",
        "model.safetensors",
        "training_manifest.json",
    ]
    manifest = json.loads((work / runs.MANIFEST_NAME).read_text())
    assert manifest["status"] == "finished" and manifest["output"] == str(merged.resolve())

    sw.train_embedding(config, base, train, None, work, merged, progress=False)  # up to date
    assert len(calls) == 1
    shutil.rmtree(merged)  # finished run, model gone: merge again, no training
    sw.train_embedding(config, base, train, None, work, merged, progress=False)
    assert len(calls) == 1 and (merged / "model.safetensors").is_file()

    manifest["status"] = "running"  # an interrupted run of the same data and config: resume it
    (work / runs.MANIFEST_NAME).write_text(json.dumps(manifest))
    sw.train_embedding(config, base, train, None, work, merged, progress=False)
    assert len(calls) == 2 and "--resume_from_checkpoint" in calls[1]

    other = config.replace(learning_rate=5e-4)  # new config: fresh runs folder, no resume
    sw.train_embedding(other, base, train, None, work, merged, progress=False)
    assert len(calls) == 3 and "--resume_from_checkpoint" not in calls[2]


def test_train_embedding_in_a_project_records_relative_paths_and_remerges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    base = _fake_model(project / "data" / "base")
    train = project / "data" / "train.jsonl"
    train.write_text('{"a": 1}\n')
    calls: list[list[str]] = []

    def fake_run(argv, env, log_path, **kwargs):
        calls.append(list(argv))
        out = Path(argv[argv.index("--output_dir") + 1])
        _fake_model(out / "v0-20250101-000000" / "checkpoint-4")

    monkeypatch.setattr(sw, "run_swift", fake_run)
    monkeypatch.setattr(sw, "gpu_count", lambda: 0)
    monkeypatch.setattr(sw, "swift_executable", lambda: SWIFT)
    monkeypatch.chdir(project)  # Kedro runs from the project root; conf paths are relative to it
    config = _config(tuner_type="full")
    work, merged = Path("data/work"), Path("data/merged")
    sw.train_embedding(config, base, train, None, work, merged, progress=False)
    for written in (project / "data/work/manifest.json", project / "data/merged/training_manifest.json"):
        assert str(tmp_path) not in written.read_text(encoding="utf-8")
    manifest = json.loads((project / "data/work" / runs.MANIFEST_NAME).read_text())
    assert manifest["output"] == "data/merged" and manifest["checkpoint"].startswith("data/work/runs/")
    assert manifest["argv"][:4] == ["swift", "sft", "--model", "data/base"]

    # finished run, model gone: the recorded (relative) checkpoint is merged again, read from elsewhere
    shutil.rmtree(project / "data/merged")
    monkeypatch.chdir(tmp_path)
    work, merged = project / "data/work", project / "data/merged"
    sw.train_embedding(config, base, train, None, work, merged, progress=False)
    assert len(calls) == 1 and (project / "data/merged/model.safetensors").is_file()
