"""Run bookkeeping shared by the trainers: portable paths in manifests, the run record, the log reader,
and the typed trainer-config base."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import pytest

from finrag_pipelines.project_paths import portable_argv, portable_path, portable_text
from finrag_pipelines.training import runs, swift, verl_common
from finrag_pipelines.training.swift import SwiftEmbeddingConfig

SWIFT = {
    "tuner_type": "lora", "lora_rank": 8, "lora_alpha": 32, "lora_dropout": 0.0,
    "target_modules": ["q_proj", "v_proj"], "learning_rate": 1e-3, "num_train_epochs": 1, "max_steps": 4,
    "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "warmup_ratio": 0.0, "max_length": 64,
    "truncation_strategy": "right", "save_steps": 4, "logging_steps": 1, "torch_dtype": "float32",
    "nproc_per_node": 1, "deepspeed": None, "use_liger_kernel": False, "infonce_temperature": 0.05,
    "infonce_use_batch": True,
    "infonce_mask_fake_negative": False, "dataloader_num_workers": 0, "seed": 0,
}  # fmt: skip


def _fake_model(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    return folder


# ----------------------------------------------------------------------------------------- portable paths


def test_portable_text_rewrites_only_paths_under_the_root() -> None:
    root = "/proj/finrag"
    assert portable_text("/proj/finrag/data/06_models/m", root) == "data/06_models/m"
    assert portable_text("/proj/finrag", root) == "."
    assert portable_text("model.path=/proj/finrag/data/m", root) == "model.path=data/m"
    assert portable_text("+a.b=/proj/finrag/x.json", root) == "+a.b=x.json"
    assert portable_text("k=['/proj/finrag/a b.parquet']", root) == "k=['a b.parquet']"
    assert portable_text("[/proj/finrag/a,/proj/finrag/b]", root) == "[a,b]"
    assert portable_text("/proj/finrag-old/data", root) == "/proj/finrag-old/data"  # a sibling folder
    assert portable_text("/other/proj/finrag/data", root) == "/other/proj/finrag/data"  # not at a path start
    assert portable_text("/models/qwen3", root) == "/models/qwen3"  # outside the project: as configured
    assert portable_path(Path("/proj/finrag/data"), root) == "data"


def test_portable_argv_names_an_executable_outside_the_root() -> None:
    argv = [
        "/opt/venv/bin/torchrun",
        "--standalone",
        "/proj/finrag/tests/shim.py",
        "model.path=/proj/finrag/m",
    ]
    assert portable_argv(argv, "/proj/finrag") == [
        "torchrun",
        "--standalone",
        "tests/shim.py",
        "model.path=m",
    ]
    assert portable_argv(["/proj/finrag/.venv/bin/swift", "sft"], "/proj/finrag") == [
        ".venv/bin/swift",
        "sft",
    ]


# ------------------------------------------------------------------------------------------------ manifests


def _project(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    project = tmp_path / "project"
    files = {
        "base": _fake_model(project / "data" / "base"),
        "merged": _fake_model(project / "data" / "merged"),
        "ckpt": _fake_model(project / "data" / "work" / "runs" / "k" / "checkpoint-4"),
        "train": project / "data" / "work" / "data" / "train.jsonl",
    }
    files["train"].parent.mkdir(parents=True)
    files["train"].write_text('{"a": 1}\n')
    return project, files


def test_manifest_under_the_project_carries_no_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, files = _project(tmp_path)
    monkeypatch.chdir(project)  # Kedro runs from the project root
    config = SwiftEmbeddingConfig.from_params(SWIFT)
    path = project / "data" / "work" / runs.MANIFEST_NAME
    manifest = runs.write_manifest(
        path,
        argv=["/opt/venv/bin/swift", "sft", "--model", str(files["base"]), "--dataset", str(files["train"])],
        env_knobs={"INFONCE_TEMPERATURE": "0.05"},
        data_files={"train": files["train"], "dev": None},
        base_model=files["base"],
        started="t0",
        finished="t1",
        output=files["merged"],
        checkpoint=files["ckpt"],
        config=config,
    )
    text = path.read_text(encoding="utf-8")
    assert str(tmp_path) not in text and json.loads(text) == manifest
    assert manifest["argv"] == [
        "swift",
        "sft",
        "--model",
        "data/base",
        "--dataset",
        "data/work/data/train.jsonl",
    ]
    assert manifest["output"] == "data/merged" and manifest["base_model"]["path"] == "data/base"
    assert manifest["data_files"]["train"]["path"] == "data/work/data/train.jsonl"
    assert manifest["project_root"] == "../.."

    d_hash = runs.data_hash({"train": files["train"], "dev": None})
    c_hash = runs.config_hash(config, runs.base_model_fingerprint(files["base"]))
    monkeypatch.chdir(tmp_path)  # read from elsewhere: paths resolve against the recorded project root
    assert runs.is_up_to_date(path, d_hash, c_hash)
    moved = tmp_path / "moved"
    project.rename(moved)  # the whole project moves to another place (or machine)
    assert runs.is_up_to_date(moved / "data" / "work" / runs.MANIFEST_NAME, d_hash, c_hash)
    shutil.rmtree(moved / "data" / "merged")
    assert not runs.is_up_to_date(moved / "data" / "work" / runs.MANIFEST_NAME, d_hash, c_hash)


def test_manifest_outside_the_project_keeps_paths_as_given(tmp_path: Path) -> None:
    _, files = _project(tmp_path)  # the current folder (the repository) is the project root here
    manifest = runs.write_manifest(
        tmp_path / runs.MANIFEST_NAME, argv=["swift"], env_knobs={}, data_files={"train": files["train"]},
        base_model=files["base"], started="t0", finished="t1", output=files["merged"],
    )  # fmt: skip
    assert manifest["project_root"] is None and manifest["output"] == str(files["merged"])
    assert manifest["trainer"] is None and set(manifest["versions"]) == {"torch", "transformers", "peft"}


def test_training_run_records_start_and_finish_and_copies_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, files = _project(tmp_path)
    monkeypatch.chdir(project)
    config = SwiftEmbeddingConfig.from_params(SWIFT)
    run = runs.TrainingRun(
        project / "data" / "work",
        config=config,
        data_files={"train": files["train"]},
        base_model=files["base"],
    )
    assert run.previous() is None and not run.is_up_to_date(files["merged"])
    with pytest.raises(RuntimeError, match="start"):
        run.finish(files["merged"], checkpoint=files["ckpt"])
    run.start(["swift", "sft", "--output_dir", str(project / "data" / "work" / "runs" / run.key)], {})
    assert run.previous()["status"] == "running" and not run.is_up_to_date(files["merged"])
    run.finish(files["merged"], checkpoint=files["ckpt"], metrics={"step": 4})
    assert run.is_up_to_date(files["merged"])

    copied = files["merged"] / runs.COPIED_MANIFEST_NAME
    manifest = json.loads(copied.read_text(encoding="utf-8"))
    assert str(tmp_path) not in copied.read_text(encoding="utf-8")
    assert manifest["project_root"] == "../.." and manifest["metrics"] == {"step": 4}
    assert manifest["argv"][-1] == f"data/work/runs/{run.key}"
    assert runs.recorded_path(copied, manifest, manifest["checkpoint"]).resolve() == files["ckpt"].resolve()
    assert run.recorded_path(run.previous(), "checkpoint").resolve() == files["ckpt"].resolve()
    other = runs.TrainingRun(
        run.work_dir,
        config=config.replace(seed=1),
        data_files={"train": files["train"]},
        base_model=files["base"],
    )
    assert other.previous() is None and other.key != run.key and not other.is_up_to_date(files["merged"])


# ----------------------------------------------------------------------------------------------- log reader


def test_log_format_hints_notable_lines_and_steps(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    script = (
        "print('Dataset filtered, origin length: 4, filtered dataset length: 0')\n"
        "print('last_model_checkpoint: /x/checkpoint-4')\nprint('step:2 - train/loss:1.5 - train/lr:0.1')\n"
    )
    with caplog.at_level(logging.DEBUG, logger=runs.__name__):
        swift.run_swift([sys.executable, "-c", script], {}, tmp_path / "log.txt", progress=False)
        verl_common.run_verl([sys.executable, "-c", script], {}, tmp_path / "log.txt", progress=False)
    levels = {(r.levelname, r.getMessage()) for r in caplog.records}
    hint = "rows longer than max_length are dropped under truncation_strategy: delete"
    assert (
        "WARNING",
        f"swift: Dataset filtered, origin length: 4, filtered dataset length: 0 ({hint})",
    ) in levels
    assert ("INFO", "swift: last_model_checkpoint: /x/checkpoint-4") in levels
    assert ("INFO", "step 2 train/loss 1.5") in levels  # verl's step line; train/lr left out
    assert ("DEBUG", "verl: last_model_checkpoint: /x/checkpoint-4") in levels  # not notable for verl


# ------------------------------------------------------------------------------------------ trainer config


def test_trainer_config_is_frozen_and_replace_validates() -> None:
    config = SwiftEmbeddingConfig.from_params(SWIFT)
    with pytest.raises(ValueError):
        config.seed = 3  # type: ignore[misc]
    assert config.replace(lora_rank=16).lora_rank == 16 and config.lora_rank == 8
    with pytest.raises(
        ValueError, match=r"^swift training setting lora_rank=0: must be an int >= 1 for LoRA\.$"
    ):
        config.replace(lora_rank=0)
    assert config.replace(max_steps=-1).max_steps is None
    assert config == SwiftEmbeddingConfig(**SWIFT) and config.to_dict()["target_modules"] == [
        "q_proj",
        "v_proj",
    ]
    with pytest.raises(ValueError, match=r"^swift training setting max_length=8\.5: must be an int >= 8\.$"):
        SwiftEmbeddingConfig(**{**SWIFT, "max_length": 8.5})  # no float silently becomes an int
