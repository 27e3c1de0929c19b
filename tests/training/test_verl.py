"""Tests for the verl launcher: exact commands, overrides composed against verl's own Hydra configs,
preflight checks, checkpoint/merge/manifest handling, and one real few-step LoRA SFT run on CPU."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from finrag_pipelines.kernels import KernelChoice
from finrag_pipelines.training import checkpoints, runs, verl_common, verl_grpo, verl_sft
from finrag_pipelines.training.runs import TrainingError

# what a GPU machine with flash-attn and liger-kernel decides (kernels.choose_kernels), for exact commands
GPU_KERNELS = KernelChoice("flash_attention_2", "flash-attn importable", True, "liger-kernel importable")
SDPA_NO_LIGER = KernelChoice("sdpa", "flash-attn is not importable (ModuleNotFoundError)", False, "not there")

TORCHRUN = "/venv/bin/torchrun"
PY = "/venv/bin/python"
SHIM = Path(__file__).with_name("verl_cpu_shim.py")

SFT = {
    "model_path": "/models/qwen3-8b",
    "train_files": "/data/sft/train.parquet",
    "val_files": "/data/sft/val.parquet",
    "output_dir": "/out/sft",
    "messages_key": "messages",
    "lora_rank": 32,
    "lora_alpha": 64,
    "target_modules": "all-linear",
    "use_liger": True,
    "ulysses_sequence_parallel_size": 2,
    "learning_rate": 1e-4,
    "lr_warmup_steps_ratio": 0.1,
    "lr_scheduler_type": "cosine",
    "total_epochs": 2,
    "total_training_steps": None,
    "train_batch_size": 64,
    "micro_batch_size_per_gpu": 4,
    "max_length": 2048,
    "truncation": "right",
    "nproc_per_node": 2,
    "save_freq": 200,
    "test_freq": 100,
    "project_name": "finrag",
    "experiment_name": "qwen3-8b-sft",
    "logger": ["console"],
    "dataloader_num_workers": 8,
    "seed": 42,
    "cpu_smoke": False,
}

GRPO = {
    "model_path": "/models/qwen3-8b-sft",
    "train_files": "/data/rl/train.parquet",
    "val_files": "/data/rl/test.parquet",
    "output_dir": "/out/grpo",
    "reward_function_path": "/rewards/finance.py",
    "reward_function_name": "compute_score",
    "use_liger": True,
    "rollout_engine": "vllm",
    "rollout_n": 4,
    "tensor_model_parallel_size": 1,
    "gpu_memory_utilization": 0.55,
    "max_prompt_length": 512,
    "max_response_length": 1024,
    "filter_overlong_prompts": True,
    "truncation": "error",
    "train_batch_size": 64,
    "val_batch_size": 32,
    "ppo_mini_batch_size": 64,
    "ppo_micro_batch_size_per_gpu": 16,
    "log_prob_micro_batch_size_per_gpu": 16,
    "learning_rate": 1e-5,
    "lr_warmup_steps_ratio": 0.15,
    "use_kl_loss": True,
    "kl_loss_coef": 0.001,
    "kl_loss_type": "low_var_kl",
    "entropy_coeff": 0,
    "lora_rank": 32,
    "lora_alpha": 64,
    "target_modules": "all-linear",
    "total_epochs": 1,
    "save_freq": 200,
    "test_freq": 50,
    "val_before_train": False,
    "n_gpus_per_node": 1,
    "project_name": "finrag",
    "experiment_name": "qwen3-8b-grpo",
    "logger": ["console"],
    "seed": 42,
}


def _sft(**changes) -> verl_sft.VerlSFTConfig:
    return verl_sft.VerlSFTConfig.from_params({**SFT, **changes})


def _grpo(**changes) -> verl_grpo.VerlGRPOConfig:
    return verl_grpo.VerlGRPOConfig.from_params({**GRPO, **changes})


# ------------------------------------------------------------------------------------------------- SFT


def test_sft_command_exact() -> None:
    argv, env = verl_sft.build_sft_command(_sft(), gpus=2, torchrun_bin=TORCHRUN, kernels=GPU_KERNELS)
    assert argv == [
        TORCHRUN, "--standalone", "--nnodes=1", "--nproc_per_node=2", "-m", "verl.trainer.sft_trainer",
        "data.train_files=/data/sft/train.parquet", "data.val_files=/data/sft/val.parquet",
        "data.messages_key=messages", "data.train_batch_size=64", "data.micro_batch_size_per_gpu=4",
        "data.max_length=2048", "data.truncation=right", "data.num_workers=8",
        "model.path=/models/qwen3-8b", "model.lora_rank=32", "model.lora_alpha=64",
        "model.target_modules=all-linear", "model.use_liger=True",
        "+model.override_config.attn_implementation=flash_attention_2",
        "engine.ulysses_sequence_parallel_size=2",
        "optim.lr=0.0001", "optim.lr_warmup_steps_ratio=0.1", "optim.lr_scheduler_type=cosine",
        "trainer.default_local_dir=/out/sft/checkpoints", "trainer.project_name=finrag",
        "trainer.experiment_name=qwen3-8b-sft", "trainer.logger=[console]", "trainer.total_epochs=2",
        "trainer.total_training_steps=null", "trainer.save_freq=200", "trainer.test_freq=100",
        "trainer.seed=42", "trainer.resume_mode=auto", "trainer.nnodes=1", "trainer.n_gpus_per_node=2",
        "hydra.run.dir=/out/sft/hydra",
    ]  # fmt: skip
    assert env == {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def test_sft_cpu_smoke_command_with_entry_script_and_full_tuning() -> None:
    config = _sft(
        cpu_smoke=True,
        use_liger=False,
        lora_rank=0,
        nproc_per_node=1,
        ulysses_sequence_parallel_size=1,
        val_files=None,
        target_modules=["q_proj", "v_proj"],
        extra_overrides=["model.enable_gradient_checkpointing=False"],
    )
    argv, env = verl_sft.build_sft_command(
        config, checkpoint_dir="/tmp/ck", entry=SHIM, gpus=0, torchrun_bin=TORCHRUN
    )
    assert argv[:5] == [TORCHRUN, "--standalone", "--nnodes=1", "--nproc_per_node=1", str(SHIM)]
    assert "data.val_files=null" in argv and "model.lora_rank=0" in argv
    assert not any(a.startswith(("model.lora_alpha", "model.target_modules")) for a in argv)
    assert "trainer.default_local_dir=/tmp/ck" in argv
    assert argv[-4:] == [*verl_sft.CPU_SMOKE_OVERRIDES, "model.enable_gradient_checkpointing=False"]
    # on a CPU: sdpa, remove-padding off (it packs sequences for flash-attn), liger off
    assert "+model.override_config.attn_implementation=sdpa" in argv
    assert "model.use_remove_padding=False" in argv
    assert "model.use_liger=False" in argv
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    module_argv, _ = verl_sft.build_sft_command(config, entry="my.module", gpus=0, torchrun_bin=TORCHRUN)
    assert module_argv[4:6] == ["-m", "my.module"]


def test_sft_target_module_list_is_a_hydra_list() -> None:
    config = _sft(target_modules=["q_proj", "v_proj"])
    argv, _ = verl_sft.build_sft_command(config, gpus=2, torchrun_bin=TORCHRUN, kernels=GPU_KERNELS)
    assert "model.target_modules=[q_proj,v_proj]" in argv


@pytest.mark.parametrize(
    ("changes", "gpus", "words"),
    [
        ({}, 0, "needs a CUDA GPU"),
        ({"nproc_per_node": 4, "train_batch_size": 64}, 2, "nproc_per_node: 4"),
    ],
)
def test_sft_gpu_preflight_fails_fast(changes, gpus, words) -> None:
    with pytest.raises(TrainingError, match=words):
        verl_sft.build_sft_command(_sft(**changes), gpus=gpus, torchrun_bin=TORCHRUN)


def test_sft_cpu_smoke_passes_preflight_without_gpu() -> None:
    verl_sft.check_gpu_available(_sft(cpu_smoke=True, use_liger=False), gpus=0)
    # liger asked for on a CPU is not an error any more: it is off, and the decision says why
    kernels = verl_sft.sft_kernels(_sft(cpu_smoke=True, use_liger=True), gpus=0)
    assert not kernels.use_liger and "no CUDA GPU" in kernels.liger_reason
    assert kernels.attn_implementation == "sdpa"


def test_sft_on_a_gpu_without_flash_attn_uses_sdpa_and_refuses_sequence_parallelism() -> None:
    argv, _ = verl_sft.build_sft_command(
        _sft(ulysses_sequence_parallel_size=1), gpus=2, torchrun_bin=TORCHRUN, kernels=SDPA_NO_LIGER
    )
    assert "+model.override_config.attn_implementation=sdpa" in argv
    assert "model.use_remove_padding=False" in argv
    assert "model.use_liger=False" in argv  # asked for in conf, not importable: not passed on
    with pytest.raises(TrainingError, match="ulysses_sequence_parallel_size: 2 needs flash-attn"):
        verl_sft.build_sft_command(_sft(), gpus=2, torchrun_bin=TORCHRUN, kernels=SDPA_NO_LIGER)
    with pytest.raises(Exception, match="may not set"):  # the kernel keys have their own decision
        _sft(extra_overrides=["model.use_remove_padding=True"])


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"lora_rank": -1}, "lora_rank"),
        ({"lora_alpha": 0.5}, "lora_alpha"),
        ({"target_modules": []}, "target_modules"),
        ({"truncation": "delete"}, "truncation"),
        ({"ulysses_sequence_parallel_size": 3}, "ulysses_sequence_parallel_size"),
        ({"train_batch_size": 63, "ulysses_sequence_parallel_size": 1}, "train_batch_size"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"save_freq": 0}, "save_freq"),
        ({"logger": ["console", "nope"]}, "logger"),
        ({"total_training_steps": 0}, "total_training_steps"),
        ({"use_liger": "yes"}, "use_liger"),
        ({"extra_overrides": ["optim.lr=1"]}, "extra_overrides"),
        ({"extra_overrides": ["no_equals"]}, "extra_overrides"),
        ({"messages_key": ""}, "messages_key"),
    ],
)
def test_sft_invalid_settings_name_the_field(changes, field) -> None:
    with pytest.raises(ValueError, match=rf"setting {field}="):
        _sft(**changes)


def test_from_params_missing_and_unknown_keys() -> None:
    with pytest.raises(ValueError, match=r"lora_rank.*missing from conf"):
        verl_sft.VerlSFTConfig.from_params({k: v for k, v in SFT.items() if k != "lora_rank"})
    with pytest.raises(ValueError, match="unknown verl SFT setting.*bogus"):
        verl_sft.VerlSFTConfig.from_params({**SFT, "bogus": 1})
    with pytest.raises(ValueError, match=r"rollout_n.*missing from conf"):
        verl_grpo.VerlGRPOConfig.from_params({k: v for k, v in GRPO.items() if k != "rollout_n"})


def test_hydra_value_quotes_what_the_grammar_would_misread() -> None:
    assert verl_common.hydra_value("/a/b-c_d.parquet") == "/a/b-c_d.parquet"
    assert verl_common.hydra_value("/my data/x,y.parquet") == "'/my data/x,y.parquet'"
    assert verl_common.hydra_value("null") == "'null'"
    assert verl_common.hydra_value(None) == "null"
    assert verl_common.hydra_value(False) == "False"
    assert verl_common.hydra_value(1e-5) == "1e-05"
    assert verl_common.hydra_value(["a", "b c"]) == "[a,'b c']"


# ------------------------------------------------------------------------------------------------ GRPO


def _grpo_expected(rollout: str = "vllm") -> list[str]:
    return [
        PY, "-m", "verl.trainer.main_ppo",
        "algorithm.adv_estimator=grpo", "algorithm.use_kl_in_reward=False",
        "data.train_files=/data/rl/train.parquet", "data.val_files=/data/rl/test.parquet",
        "data.train_batch_size=64", "data.val_batch_size=32", "data.max_prompt_length=512",
        "data.max_response_length=1024", "data.filter_overlong_prompts=True", "data.truncation=error",
        "data.seed=42",
        "actor_rollout_ref.model.path=/models/qwen3-8b-sft", "actor_rollout_ref.model.lora_rank=32",
        "actor_rollout_ref.model.lora_alpha=64", "actor_rollout_ref.model.target_modules=all-linear",
        "actor_rollout_ref.model.use_liger=True",
        "+actor_rollout_ref.model.override_config.attn_implementation=flash_attention_2",
        "actor_rollout_ref.actor.optim.lr=1e-05", "actor_rollout_ref.actor.optim.lr_warmup_steps_ratio=0.15",
        "actor_rollout_ref.actor.ppo_mini_batch_size=64",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16",
        "actor_rollout_ref.actor.use_kl_loss=True", "actor_rollout_ref.actor.kl_loss_coef=0.001",
        "actor_rollout_ref.actor.kl_loss_type=low_var_kl", "actor_rollout_ref.actor.entropy_coeff=0",
        f"actor_rollout_ref.rollout.name={rollout}", "actor_rollout_ref.rollout.n=4",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        "actor_rollout_ref.rollout.gpu_memory_utilization=0.55",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=16",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=16",
    ]  # fmt: skip


_GRPO_TAIL = [
    "reward.custom_reward_function.path=/rewards/finance.py",
    "reward.custom_reward_function.name=compute_score",
    "trainer.critic_warmup=0", "trainer.total_epochs=1", "trainer.save_freq=200", "trainer.test_freq=50",
    "trainer.val_before_train=False", "trainer.nnodes=1", "trainer.n_gpus_per_node=1",
    "trainer.project_name=finrag", "trainer.experiment_name=qwen3-8b-grpo", "trainer.logger=[console]",
    "trainer.default_local_dir=/out/grpo/checkpoints", "trainer.resume_mode=auto",
    "hydra.run.dir=/out/grpo/hydra",
]  # fmt: skip


def test_grpo_command_exact() -> None:
    argv, env = verl_grpo.build_grpo_command(_grpo(), python=PY, kernels=GPU_KERNELS)
    assert argv == [*_grpo_expected(), *_GRPO_TAIL]
    assert env == {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    # without flash-attn and liger-kernel (this machine): sdpa, remove-padding off, liger not passed on
    plain, _ = verl_grpo.build_grpo_command(_grpo(), python=PY, kernels=SDPA_NO_LIGER)
    assert "+actor_rollout_ref.model.override_config.attn_implementation=sdpa" in plain
    assert "actor_rollout_ref.model.use_remove_padding=False" in plain
    assert "actor_rollout_ref.model.use_liger=False" in plain


def test_grpo_command_with_thinking_off_and_tools() -> None:
    config = _grpo(
        rollout_engine="sglang",
        enable_thinking=False,
        tool_config_path="/conf/tools.yaml",
        max_assistant_turns=2,
        extra_overrides=["actor_rollout_ref.rollout.enforce_eager=False"],
    )
    argv, _ = verl_grpo.build_grpo_command(config, python=PY, kernels=GPU_KERNELS)
    tools = [
        "actor_rollout_ref.rollout.multi_turn.enable=True",
        "actor_rollout_ref.rollout.multi_turn.tool_config_path=/conf/tools.yaml",
        "actor_rollout_ref.rollout.multi_turn.format=hermes",
        "actor_rollout_ref.rollout.multi_turn.max_assistant_turns=2",
        "actor_rollout_ref.rollout.agent.default_agent_loop=tool_agent",
    ]
    assert argv == [
        *_grpo_expected("sglang"),
        *tools,
        *_GRPO_TAIL,
        "+data.apply_chat_template_kwargs.enable_thinking=False",
        "actor_rollout_ref.rollout.enforce_eager=False",
    ]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"rollout_engine": "hf"}, "rollout_engine"),
        ({"rollout_n": 1}, "rollout_n"),
        ({"gpu_memory_utilization": 1.2}, "gpu_memory_utilization"),
        ({"reward_function_path": "/r/reward.txt"}, "reward_function_path"),
        ({"reward_function_name": "not a name"}, "reward_function_name"),
        ({"kl_loss_type": "nope"}, "kl_loss_type"),
        ({"ppo_mini_batch_size": 128}, "ppo_mini_batch_size"),
        ({"tensor_model_parallel_size": 2}, "tensor_model_parallel_size"),
        ({"enable_thinking": "no"}, "enable_thinking"),
        ({"multi_turn_format": "qwen"}, "multi_turn_format"),
        ({"extra_overrides": ["custom_reward_function.path=/x.py"]}, "extra_overrides"),
    ],
)
def test_grpo_invalid_settings_name_the_field(changes, field) -> None:
    with pytest.raises(ValueError, match=rf"setting {field}="):
        _grpo(**changes)


def _reward_file(tmp_path: Path) -> Path:
    path = tmp_path / "reward.py"
    path.write_text(
        "def compute_score(data_source, solution_str, ground_truth, extra_info=None):\n    return 0.0\n"
    )
    return path


def test_grpo_preflight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reward = _reward_file(tmp_path)
    config = _grpo(reward_function_path=str(reward))
    monkeypatch.setattr(verl_grpo, "_module_available", lambda name: True)
    verl_grpo.check_grpo_preflight(config, gpus=1)
    with pytest.raises(TrainingError, match="no CUDA GPU is visible"):
        verl_grpo.check_grpo_preflight(config, gpus=0)
    with pytest.raises(TrainingError, match="n_gpus_per_node: 2 but only 1"):
        verl_grpo.check_grpo_preflight(config.replace(n_gpus_per_node=2), gpus=1)
    with pytest.raises(TrainingError, match="reward_function_name: score_it is not a function"):
        verl_grpo.check_grpo_preflight(config.replace(reward_function_name="score_it"), gpus=1)
    with pytest.raises(TrainingError, match="tool_config_path: .* does not exist"):
        verl_grpo.check_grpo_preflight(config.replace(tool_config_path=str(tmp_path / "no.yaml")), gpus=1)
    monkeypatch.setattr(verl_grpo, "_module_available", lambda name: name != "vllm")
    with pytest.raises(TrainingError, match="`vllm` package is not importable"):
        verl_grpo.check_grpo_preflight(config, gpus=1)


# ------------------------------------------------------------- composing against verl's real Hydra configs


def _compose(config_name: str, overrides: list[str]):
    pytest.importorskip("verl")
    import verl.trainer
    from hydra import compose, initialize_config_dir

    config_dir = str(Path(verl.trainer.__file__).parent / "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return compose(config_name=config_name, overrides=overrides)


def test_sft_overrides_exist_in_verl_sft_config() -> None:
    from omegaconf import OmegaConf

    config = _sft(
        cpu_smoke=True, use_liger=False, target_modules=["q_proj", "v_proj"],
        extra_overrides=["model.enable_gradient_checkpointing=False"],
    )  # fmt: skip
    argv, _ = verl_sft.build_sft_command(config, gpus=0, torchrun_bin=TORCHRUN)
    composed = _compose("sft_trainer_engine", argv[6:])

    def select(key: str) -> Any:
        return OmegaConf.select(composed, key)

    assert select("data.messages_key") == "messages"
    assert select("data.truncation") == "right" and select("data.max_length") == 2048
    assert select("model.lora_rank") == 32 and select("model.lora_alpha") == 64
    assert list(select("model.target_modules")) == ["q_proj", "v_proj"]
    assert select("engine.ulysses_sequence_parallel_size") == 2
    assert select("optim.lr") == pytest.approx(1e-4)
    assert list(select("trainer.logger")) == ["console"]
    assert select("trainer.total_training_steps") is None
    assert select("model.override_config.attn_implementation") == "sdpa"
    assert select("engine.strategy") == "fsdp2" and select("trainer.device") == "cpu"
    with pytest.raises(Exception, match="not_a_key"):  # the composition really is strict
        _compose("sft_trainer_engine", ["data.not_a_key=1"])


def test_grpo_overrides_exist_in_verl_ppo_config() -> None:
    from omegaconf import OmegaConf

    config = _grpo(enable_thinking=False, tool_config_path="/conf/tools.yaml", max_assistant_turns=2)
    argv, _ = verl_grpo.build_grpo_command(config, python=PY)
    composed = _compose("ppo_trainer", argv[3:])

    def select(key: str) -> Any:
        return OmegaConf.select(composed, key)

    assert select("algorithm.adv_estimator") == "grpo"
    assert select("reward.custom_reward_function.path") == "/rewards/finance.py"
    assert select("reward.custom_reward_function.name") == "compute_score"
    assert select("actor_rollout_ref.actor.use_kl_loss") is True
    assert select("actor_rollout_ref.actor.kl_loss_coef") == pytest.approx(0.001)
    assert select("actor_rollout_ref.actor.optim.lr") == pytest.approx(1e-5)
    assert select("actor_rollout_ref.rollout.n") == 4
    assert select("actor_rollout_ref.rollout.name") == "vllm"
    assert select("actor_rollout_ref.rollout.multi_turn.enable") is True
    assert select("actor_rollout_ref.rollout.multi_turn.format") == "hermes"
    assert select("actor_rollout_ref.rollout.agent.default_agent_loop") == "tool_agent"
    assert select("data.apply_chat_template_kwargs.enable_thinking") is False
    assert select("data.max_prompt_length") == 512 and select("data.max_response_length") == 1024


# ------------------------------------------------------------------------------ checkpoints, logs, skip


def _fake_step(root: Path, step: int) -> Path:
    folder = root / f"global_step_{step}"
    folder.mkdir(parents=True)
    (folder / "fsdp_config.json").write_text('{"FSDP_version": 2, "world_size": 1}')
    return folder


def test_find_last_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no verl checkpoint"):
        checkpoints.find_last_verl_checkpoint(tmp_path)
    _fake_step(tmp_path, 5)
    ten = _fake_step(tmp_path, 10)
    (tmp_path / "global_step_20").mkdir()  # incomplete save
    assert checkpoints.find_last_verl_checkpoint(tmp_path) == ten
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("5")
    assert checkpoints.find_last_verl_checkpoint(tmp_path).name == "global_step_5"


def test_parse_step_metrics_and_root_cause(tmp_path: Path) -> None:
    line = "Epoch 1/1:  50%|█| 2/4 [00:02<00:02]step:3 - train/loss:8.31 - train/lr:0.001 - train/mfu:0.0"
    expected = {"step": 3, "train/loss": 8.31, "train/lr": 0.001, "train/mfu": 0.0}
    assert verl_common.parse_step_metrics(line) == expected
    assert verl_common.parse_step_metrics("no metrics here") is None
    log = tmp_path / "train.log"
    log.write_text(
        "x.py:32: UserWarning: torchtitan engine is not available\n"
        "step:2 - train/loss:9.0\nstep:3 - train/loss:8.5\nstep:3 - val/loss:8.4\n"
        "RuntimeError: Cannot access accelerator device when none is available.\n"
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
    )
    assert verl_common.last_step_metrics(log) == {"step": 3, "train/loss": 8.5, "val/loss": 8.4}
    cause = "RuntimeError: Cannot access accelerator device when none is available."
    assert verl_common.root_cause(log) == cause


def test_run_verl_names_the_worker_error(tmp_path: Path) -> None:
    import sys

    script = "import sys; print('ValueError: bad batch size'); print('boiler\\n' * 40); sys.exit(3)"
    with pytest.raises(TrainingError, match="verl failed: ValueError: bad batch size") as info:
        verl_common.run_verl([sys.executable, "-c", script], {}, tmp_path / "log.txt", progress=False)
    assert info.value.returncode == 3


def _fake_model(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "qwen3"}')
    (folder / "model.safetensors").write_bytes(b"weights")
    return folder


def test_train_sft_skips_up_to_date_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = _fake_model(tmp_path / "base")
    train = tmp_path / "train.parquet"
    train.write_bytes(b"rows")
    calls: list[list[str]] = []

    def fake_run(argv, env, log_path, **kwargs):
        calls.append(list(argv))
        ckpt_root = Path(next(a for a in argv if a.startswith("trainer.default_local_dir=")).split("=", 1)[1])
        _fake_step(ckpt_root, 3)

    def fake_merge(checkpoint, out_dir, **kwargs):
        return _fake_model(Path(out_dir))

    monkeypatch.setattr(verl_common, "run_verl", fake_run)
    monkeypatch.setattr(verl_common, "merge_verl_checkpoint", fake_merge)
    config = _sft(
        model_path=str(base), train_files=str(train), val_files=None, output_dir=str(tmp_path / "work"),
        cpu_smoke=True, use_liger=False, nproc_per_node=1, ulysses_sequence_parallel_size=1,
    )  # fmt: skip
    merged = tmp_path / "merged"
    assert verl_sft.train_sft(config, merged, entry=SHIM, progress=False) == merged
    manifest = json.loads((tmp_path / "work" / runs.MANIFEST_NAME).read_text())
    assert manifest["status"] == "finished" and manifest["checkpoint"].endswith("global_step_3")
    assert manifest["versions"]["verl"] and set(manifest["versions"]) >= {"torch", "transformers"}
    assert (merged / "training_manifest.json").is_file()
    verl_sft.train_sft(config, merged, entry=SHIM, progress=False)
    assert len(calls) == 1  # up to date: not retrained
    verl_sft.train_sft(config.replace(learning_rate=5e-4), merged, entry=SHIM, progress=False)
    assert len(calls) == 2  # new config: new checkpoints folder
    assert calls[0] != calls[1]
    train.write_bytes(b"other rows")
    verl_sft.train_sft(config, merged, entry=SHIM, progress=False)
    assert len(calls) == 3  # new data


def test_find_last_checkpoint_grpo_actor_layout(tmp_path: Path) -> None:
    step = tmp_path / "global_step_4"
    _fake_step(step, 0).rename(step / "actor")
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("4")
    assert checkpoints.find_last_verl_checkpoint(tmp_path, role="actor") == step / "actor"
    with pytest.raises(FileNotFoundError, match="global_step_<N>/fsdp_config.json"):
        checkpoints.find_last_verl_checkpoint(tmp_path)


def test_train_grpo_fails_fast_without_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(*args, **kwargs):
        raise AssertionError("main_ppo must not start without a GPU")

    monkeypatch.setattr(verl_common, "run_verl", must_not_run)
    config = _grpo(reward_function_path=str(_reward_file(tmp_path)), output_dir=str(tmp_path / "work"))
    with pytest.raises(TrainingError, match="no CUDA GPU is visible"):
        verl_grpo.train_grpo(config, tmp_path / "merged", gpus=0, progress=False)
    assert not (tmp_path / "work").exists()


def test_train_grpo_runs_merges_actor_and_skips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = _fake_model(tmp_path / "base")
    files = {}
    for name in ("train", "test"):
        files[name] = tmp_path / f"{name}.parquet"
        files[name].write_bytes(name.encode())
    calls: list[list[str]] = []
    merged_from: list[Path] = []

    def fake_run(argv, env, log_path, **kwargs):
        calls.append(list(argv))
        root = Path(next(a for a in argv if a.startswith("trainer.default_local_dir=")).split("=", 1)[1])
        step = root / "global_step_2"
        _fake_step(step, 0).rename(step / "actor")
        Path(log_path).write_text("step:2 - actor/pg_loss:0.5 - critic/score/mean:1.25\n")

    def fake_merge(checkpoint, out_dir, **kwargs):
        merged_from.append(Path(checkpoint))
        return _fake_model(Path(out_dir))

    monkeypatch.setattr(verl_grpo, "_module_available", lambda name: True)
    monkeypatch.setattr(verl_common, "run_verl", fake_run)
    monkeypatch.setattr(verl_common, "merge_verl_checkpoint", fake_merge)
    config = _grpo(
        model_path=str(base), train_files=str(files["train"]), val_files=str(files["test"]),
        output_dir=str(tmp_path / "work"), reward_function_path=str(_reward_file(tmp_path)),
    )  # fmt: skip
    merged = tmp_path / "merged"
    verl_grpo.train_grpo(config, merged, gpus=1, progress=False)
    assert calls[0][:4] == [calls[0][0], "-m", "verl.trainer.main_ppo", "algorithm.adv_estimator=grpo"]
    assert merged_from[0].name == "actor" and merged_from[0].parent.name == "global_step_2"
    manifest = json.loads((tmp_path / "work" / runs.MANIFEST_NAME).read_text())
    assert manifest["trainer"] == "VerlGRPOConfig" and manifest["metrics"]["critic/score/mean"] == 1.25
    verl_grpo.train_grpo(config, merged, gpus=1, progress=False)
    assert len(calls) == 1
    Path(config.reward_function_path).write_text("def compute_score(**kw):\n    return 1.0\n")
    verl_grpo.train_grpo(config, merged, gpus=1, progress=False)
    assert len(calls) == 2  # the reward function's content is part of the config hash


# ------------------------------------------------------------------------------- real CPU run (slow)


def _causal_lm_copy(tiny_dir: Path, out: Path) -> Path:
    """The tiny fixture model saved as a Qwen3ForCausalLM folder (verl picks the class by architecture)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_dir), local_files_only=True)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(tiny_dir), local_files_only=True).save_pretrained(str(out))
    return out


def _messages_parquet(corpus: list[tuple[str, str]], path: Path, n: int) -> Path:
    import pandas as pd

    lines = [line.strip() for _, text in corpus for line in text.splitlines() if len(line.strip()) > 10]
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"请概括：{lines[i][:40]}"},
                {"role": "assistant", "content": lines[i + 1][:60]},
            ]
        }
        for i in range(n)
    ]
    pd.DataFrame(rows).to_parquet(path)
    return path


@pytest.mark.slow
def test_real_verl_lora_sft_on_cpu_then_merge(
    tiny_qwen3_dir: Path, disc_corpus: list[tuple[str, str]], tmp_path: Path
) -> None:
    pytest.importorskip("verl")
    import torch
    from transformers import AutoModelForCausalLM

    base = _causal_lm_copy(tiny_qwen3_dir, tmp_path / "base")
    config = verl_sft.VerlSFTConfig.from_params(
        {
            **SFT,
            "model_path": str(base),
            "train_files": str(_messages_parquet(disc_corpus, tmp_path / "train.parquet", 16)),
            "val_files": str(_messages_parquet(disc_corpus, tmp_path / "val.parquet", 4)),
            "output_dir": str(tmp_path / "work"),
            "lora_rank": 8,
            "lora_alpha": 16,
            "use_liger": False,
            "ulysses_sequence_parallel_size": 1,
            "learning_rate": 1e-3,
            "lr_warmup_steps_ratio": 0.0,
            "lr_scheduler_type": "constant",
            "total_epochs": 1,
            "total_training_steps": 3,
            "train_batch_size": 4,
            "micro_batch_size_per_gpu": 2,
            "max_length": 128,
            "nproc_per_node": 1,
            "save_freq": -1,
            "test_freq": -1,
            "dataloader_num_workers": 0,
            "cpu_smoke": True,
        }
    )
    merged = verl_sft.train_sft(config, tmp_path / "merged", entry=SHIM, progress=False)

    manifest = json.loads((tmp_path / "work" / runs.MANIFEST_NAME).read_text())
    assert manifest["status"] == "finished" and manifest["metrics"]["step"] == 3
    assert "train/loss" in manifest["metrics"] and "val/loss" in manifest["metrics"]
    checkpoint = Path(manifest["checkpoint"])
    assert checkpoint.name == "global_step_3"
    assert (checkpoint / "model_world_size_1_rank_0.pt").is_file()
    assert json.loads((checkpoint / "lora_train_meta.json").read_text())["r"] == 8
    assert (merged / "lora_adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "work" / "hydra" / ".hydra" / "config.yaml").is_file()  # not ./outputs/

    tuned = AutoModelForCausalLM.from_pretrained(str(merged), local_files_only=True)
    original = AutoModelForCausalLM.from_pretrained(str(base), local_files_only=True)
    assert tuned.dtype == torch.float32  # the base model's dtype, not the merger's bfloat16
    assert not any("lora" in key for key in tuned.state_dict())
    # merged = the exact base weights + the trained LoRA delta B @ A * alpha / r
    from safetensors.torch import load_file

    adapter = load_file(str(merged / "lora_adapter" / "adapter_model.safetensors"))
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    delta = adapter[f"{prefix}.lora_B.weight"].float() @ adapter[f"{prefix}.lora_A.weight"].float() * 16 / 8
    assert delta.abs().max() > 1e-6  # the adapter was trained
    tuned_q = tuned.state_dict()["model.layers.0.self_attn.q_proj.weight"]
    original_q = original.state_dict()["model.layers.0.self_attn.q_proj.weight"]
    torch.testing.assert_close(tuned_q, original_q + delta, atol=1e-6, rtol=1e-5)
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.isfinite(tuned(input_ids=ids).logits).all()

    shutil.rmtree(checkpoint.parent)  # a finished, up-to-date run is skipped: no checkpoint needed
    assert verl_sft.train_sft(config, merged, entry=SHIM, progress=False) == merged


def test_train_sft_in_a_project_records_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    base = _fake_model(project / "models" / "base")
    train = project / "data" / "train.parquet"
    train.parent.mkdir(parents=True)
    train.write_bytes(b"rows")

    def fake_run(argv, env, log_path, **kwargs):
        ckpt_root = Path(next(a for a in argv if a.startswith("trainer.default_local_dir=")).split("=", 1)[1])
        _fake_step(ckpt_root, 3)

    monkeypatch.setattr(verl_common, "run_verl", fake_run)
    monkeypatch.setattr(verl_common, "merge_verl_checkpoint", lambda ckpt, out, **kw: _fake_model(Path(out)))
    monkeypatch.chdir(project)
    config = _sft(
        model_path=str(base), train_files=str(train), val_files=None, output_dir=str(project / "work"),
        cpu_smoke=True, use_liger=False, nproc_per_node=1, ulysses_sequence_parallel_size=1,
    )  # fmt: skip
    verl_sft.train_sft(config, project / "merged", entry=SHIM, progress=False)
    text = (project / "work" / runs.MANIFEST_NAME).read_text(encoding="utf-8")
    assert str(tmp_path) not in text
    manifest = json.loads(text)
    assert manifest["config"]["model_path"] == "models/base" and manifest["output"] == "merged"
    argv = manifest["argv"]
    assert "model.path=models/base" in argv and "data.train_files=data/train.parquet" in argv
    assert manifest["argv"][0] == "torchrun" and manifest["checkpoint"].startswith("work/checkpoints/")
