"""The ms-swift reranker launcher: exact commands, settings checks, GPU-only switches failing fast on CPU."""

from __future__ import annotations

import pytest

from finrag_pipelines.kernels import KernelChoice
from finrag_pipelines.training import swift as sw
from finrag_pipelines.training import swift_reranker as sr
from finrag_pipelines.training.runs import TrainingError

SWIFT = "/venv/bin/swift"

BASE = {
    "task_type": "generative_reranker",
    "model_type": "qwen3_reranker",
    "template": None,
    "loss_type": "listwise_reranker",
    "max_positive_samples": 1,
    "max_negative_samples": 3,
    "listwise_temperature": 1.0,
    "listwise_min_group_size": 2,
    "tuner_type": "lora",
    "lora_rank": 8,
    "lora_alpha": 32,
    "lora_dropout": 0.0,
    "target_modules": ["all-linear"],
    "learning_rate": 1e-4,
    "num_train_epochs": 1,
    "max_steps": 3,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "warmup_ratio": 0.0,
    "max_length": 320,
    "truncation_strategy": "delete",
    "save_steps": 3,
    "logging_steps": 1,
    "torch_dtype": "float32",
    "nproc_per_node": 1,
    "deepspeed": None,
    "use_liger_kernel": True,
    "dataloader_num_workers": 0,
    "seed": 0,
}


def _config(**changes) -> sr.SwiftRerankerConfig:
    return sr.SwiftRerankerConfig.from_params({**BASE, **changes})


def test_generative_reranker_command_exact() -> None:
    argv, env = sr.build_reranker_command(_config(), "m", "train.jsonl", None, "out", gpus=0, swift_bin=SWIFT)
    assert argv == [
        SWIFT, "sft", "--model", "m", "--model_type", "qwen3_reranker", "--task_type", "generative_reranker",
        "--loss_type", "listwise_reranker", "--tuner_type", "lora", "--lora_rank", "8", "--lora_alpha", "32",
        "--lora_dropout", "0.0", "--target_modules", "all-linear", "--dataset", "train.jsonl",
        "--split_dataset_ratio", "0", "--dataloader_drop_last", "true", "--label_names", "labels",
        "--report_to", "none", "--check_model", "false", "--output_dir", "out", "--learning_rate", "0.0001",
        "--num_train_epochs", "1", "--max_steps", "3", "--per_device_train_batch_size", "2",
        "--gradient_accumulation_steps", "1", "--warmup_ratio", "0.0", "--max_length", "320",
        "--truncation_strategy", "delete", "--save_steps", "3", "--logging_steps", "1",
        "--torch_dtype", "float32", "--attn_impl", "sdpa",
        "--dataloader_num_workers", "0", "--seed", "0",
    ]  # fmt: skip
    assert env == {
        "MAX_POSITIVE_SAMPLES": "1", "MAX_NEGATIVE_SAMPLES": "3", "LISTWISE_RERANKER_TEMPERATURE": "1.0",
        "LISTWISE_RERANKER_MIN_GROUP_SIZE": "2", "GENERATIVE_RERANKER_POSITIVE_TOKEN": "yes",
        "GENERATIVE_RERANKER_NEGATIVE_TOKEN": "no", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "",
    }  # fmt: skip


def test_cross_encoder_command_names_its_template_and_uses_the_gpus() -> None:
    config = _config(
        task_type="reranker",
        model_type="bert",
        template="bert",
        loss_type="pointwise_reranker",
        tuner_type="full",
        truncation_strategy="right",
        torch_dtype="bfloat16",
        nproc_per_node=2,
    )
    kernels = KernelChoice("flash_attention_2", "flash-attn importable", True, "liger-kernel importable")
    argv, env = sr.build_reranker_command(
        config, "m", "t.jsonl", "d.jsonl", "out", gpus=2, swift_bin=SWIFT, kernels=kernels
    )
    assert argv[4:12] == ["--model_type", "bert", "--task_type", "reranker",
                          "--loss_type", "pointwise_reranker",
                          "--template", "bert"]  # fmt: skip
    assert (
        "--val_dataset" in argv
        and "--lora_rank" not in argv
        and argv[argv.index("--torch_dtype") + 1] == "bfloat16"
    )
    # the shared swift base passes the kernel decision to the reranker launcher too
    assert argv[argv.index("--attn_impl") + 1] == "flash_attention_2"
    assert argv[argv.index("--use_liger_kernel") + 1] == "true"
    assert env["NPROC_PER_NODE"] == "2" and "CUDA_VISIBLE_DEVICES" not in env
    assert "GENERATIVE_RERANKER_POSITIVE_TOKEN" not in env


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"torch_dtype": "bfloat16"}, "torch_dtype: bfloat16"),
        ({"nproc_per_node": 2}, "nproc_per_node: 2"),
        ({"deepspeed": "zero2"}, "deepspeed: zero2"),
    ],
)
def test_gpu_only_settings_fail_fast_on_cpu(changes, words) -> None:
    with pytest.raises(TrainingError, match="need a GPU") as info:
        sr.build_reranker_command(_config(**changes), "m", "t", None, "o", gpus=0, swift_bin=SWIFT)
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"task_type": "embedding"}, "task_type"),
        ({"loss_type": "infonce"}, "loss_type"),
        (
            {"loss_type": "reranker"},
            "loss_type",
        ),  # an upstream example's name, not in ms-swift 4.6's loss_map
        ({"truncation_strategy": "right"}, "truncation_strategy"),  # would cut the generative prompt's end
        ({"max_negative_samples": 0}, "max_negative_samples"),
        ({"listwise_min_group_size": 1}, "listwise_min_group_size"),
        ({"model_type": " "}, "model_type"),
        ({"extra_args": {"template": "x"}}, "extra_args"),
    ],
)
def test_invalid_settings_name_the_field(changes, field) -> None:
    with pytest.raises(ValueError, match=f"setting {field}="):
        _config(**changes)


def test_embedding_only_settings_are_unknown_here() -> None:
    with pytest.raises(
        ValueError, match=r"unknown swift reranker training setting\(s\) \['infonce_temperature'\]"
    ):
        sr.SwiftRerankerConfig.from_params({**BASE, "infonce_temperature": 0.1})
    assert isinstance(_config(), sw.SwiftTrainConfig)


def test_train_reranker_goes_through_the_shared_run_bookkeeping(tmp_path, monkeypatch) -> None:
    calls = []

    def fake_train(config, build_command, *args, **kwargs):
        calls.append((build_command, kwargs["what"]))
        return tmp_path

    monkeypatch.setattr(sw, "train_swift", fake_train)
    assert sr.train_reranker(_config(), "m", "t", None, tmp_path / "w", tmp_path) == tmp_path
    assert calls == [(sr.build_reranker_command, "reranker")]
