"""Kedro-free launcher for verl 0.9 generator training: SFT (torchrun) and GRPO (``main_ppo``).

The pieces, each usable on its own:

* :class:`VerlSFTConfig`, :class:`VerlGRPOConfig`: every knob, read from conf (no defaults hidden here).
* :func:`build_sft_command`: ``torchrun --standalone --nnodes=1 --nproc_per_node=N -m
  verl.trainer.sft_trainer key=value ...`` and its environment; :func:`build_grpo_command`:
  ``python -m verl.trainer.main_ppo algorithm.adv_estimator=grpo key=value ...``.
* :func:`check_gpu_available`, :func:`check_grpo_preflight`: fail fast, before torchrun or ray start,
  on a machine that cannot run the job (verl has no CPU platform; ``main_ppo`` waits forever for GPUs).
* :func:`find_last_checkpoint`, :func:`merge_checkpoint`: locate ``global_step_<N>``, turn it into a
  plain Hugging Face model folder (``verl.model_merger``, then a PEFT merge of the LoRA adapter).
* :func:`write_manifest`, :func:`train_sft`, :func:`train_grpo`: record what was trained from what;
  skip finished runs.

Checked against the installed verl 0.9.1 sources:

* SFT config ``verl/trainer/config/sft_trainer_engine.yaml`` (+ ``model/hf_model.yaml``,
  ``engine/fsdp.yaml``, ``optim/fsdp.yaml``): ``data.messages_key`` (rows hold a ``messages`` chat list),
  ``data.train_batch_size`` (global), ``data.micro_batch_size_per_gpu``, ``data.max_length``,
  ``data.truncation`` (error|left|right), ``model.lora_rank/lora_alpha/target_modules/use_liger``,
  ``engine.ulysses_sequence_parallel_size``, ``optim.lr``, ``trainer.logger`` (a list),
  ``trainer.resume_mode`` (auto resumes from the newest ``global_step_<N>`` in ``default_local_dir``).
* Checkpoints: ``<default_local_dir>/global_step_<N>/`` with ``model_world_size_<W>_rank_<R>.pt``,
  ``fsdp_config.json``, ``huggingface/`` (config + tokenizer) and, for LoRA, ``lora_train_meta.json``;
  ``<default_local_dir>/latest_checkpointed_iteration.txt`` names the newest step.
* ``python -m verl.model_merger merge --backend fsdp --local_dir <global_step_N> --target_dir <dir>``
  writes the *base* weights (LoRA not folded in, saved in bfloat16) plus ``<dir>/lora_adapter/``
  (a PEFT adapter); :func:`merge_checkpoint` folds it in with ``merge_and_unload``.
* PPO config ``ppo_trainer.yaml``: the reward function is ``reward.custom_reward_function.path/name``
  (the top-level ``custom_reward_function`` is the legacy spelling verl migrates); multi-turn tools are
  ``actor_rollout_ref.rollout.multi_turn.{enable,tool_config_path,format}``; tools only run under the
  ``tool_agent`` agent loop (``actor_rollout_ref.rollout.agent.default_agent_loop``);
  ``data.apply_chat_template_kwargs`` is an empty dict, so ``enable_thinking`` is added with ``+``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finrag_pipelines.training.swift import (
    TrainingError,
    base_model_fingerprint,
    data_hash,
    file_sha256,
    gpu_count,
    has_model,
    is_up_to_date,
    run_logged,
)

logger = logging.getLogger(__name__)

SFT_ENTRY = "verl.trainer.sft_trainer"
GRPO_ENTRY = "verl.trainer.main_ppo"
TRUNCATIONS = ("error", "left", "right")
ROLLOUT_ENGINES = ("vllm", "sglang")
LR_SCHEDULERS = ("constant", "cosine")
KL_LOSS_TYPES = ("kl", "abs", "mse", "low_var_kl", "full")
LOGGERS = (
    "console",
    "wandb",
    "swanlab",
    "mlflow",
    "tensorboard",
    "vemlp_wandb",
    "clearml",
    "trackio",
    "file",
)
MULTI_TURN_FORMATS = ("hermes", "gpt-oss")
MANIFEST_NAME = "manifest.json"
# overrides that make verl SFT run on CPU with the test shim (tests/training/verl_cpu_shim.py)
CPU_SMOKE_OVERRIDES = (
    "+model.override_config.attn_implementation=sdpa",
    "engine.strategy=fsdp2",
    "engine.use_torch_compile=False",
    "trainer.device=cpu",
)
_STEP_DIR_RE = re.compile(r"^global_step_(\d+)$")
_SAFE_VALUE_RE = re.compile(r"^[\w./~:@+\-]+$")


# ------------------------------------------------------------------------------------------ validation


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _from_params(cls: type, params: Mapping[str, Any], what: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ValueError(f"unknown {what} setting(s) {unknown}; allowed: {sorted(fields)}.")
    optional = {
        n
        for n, f in fields.items()
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }
    missing = sorted(set(fields) - set(params) - optional)
    if missing:
        raise ValueError(f"{what} setting(s) {missing} missing from conf; set them explicitly.")
    return cls(**dict(params))


class _Checker:
    def __init__(self, obj: Any, what: str) -> None:
        self.obj, self.what = obj, what

    def __call__(self, cond: bool, name: str, rule: str) -> None:
        if not cond:
            raise ValueError(f"{self.what} setting {name}={getattr(self.obj, name)!r}: {rule}.")

    def positive_int(self, *names: str) -> None:
        for name in names:
            self(
                _is_int(getattr(self.obj, name)) and getattr(self.obj, name) >= 1, name, "must be an int >= 1"
            )

    def freq(self, *names: str) -> None:
        for name in names:
            value = getattr(self.obj, name)
            self(
                (_is_int(value) and (value >= 1 or value == -1)) or value == "after_each_epoch",
                name,
                "must be an int >= 1, -1 (never) or 'after_each_epoch'",
            )

    def text(self, *names: str) -> None:
        for name in names:
            value = getattr(self.obj, name)
            self(isinstance(value, str) and bool(value.strip()), name, "must be a non-empty string")

    def path(self, *names: str, optional: bool = False) -> None:
        for name in names:
            value = getattr(self.obj, name)
            if optional and value is None:
                continue
            self(
                isinstance(value, (str, Path)) and bool(str(value).strip()),
                name,
                "must be a path" + (" or null" if optional else ""),
            )

    def lora(self) -> None:
        obj = self.obj
        self(
            _is_int(obj.lora_rank) and obj.lora_rank >= 0,
            "lora_rank",
            "must be an int >= 0 (0 = full tuning)",
        )
        if obj.lora_rank > 0:
            self(
                _is_int(obj.lora_alpha) and obj.lora_alpha > 0,
                "lora_alpha",
                "must be an int > 0 (verl stores it as an int)",
            )
            self(
                obj.target_modules == "all-linear"
                or (
                    isinstance(obj.target_modules, tuple)
                    and bool(obj.target_modules)
                    and all(isinstance(m, str) and m for m in obj.target_modules)
                ),
                "target_modules",
                "must be 'all-linear' or a non-empty list of module names, e.g. [q_proj, v_proj]",
            )

    def loggers(self) -> None:
        obj = self.obj
        self(
            bool(obj.logger) and all(name in LOGGERS for name in obj.logger),
            "logger",
            f"must be a non-empty list drawn from {LOGGERS}",
        )

    def overrides(self, managed: frozenset[str]) -> None:
        obj = self.obj
        for item in obj.extra_overrides:
            self(
                isinstance(item, str) and "=" in item and not item.startswith("-"),
                "extra_overrides",
                f"each item must be a Hydra override 'key=value', got {item!r}",
            )
            key = item.split("=", 1)[0].lstrip("+~")
            self(
                key not in managed,
                "extra_overrides",
                f"may not set {key!r}: it has its own setting",
            )


def _modules(value: Any) -> Any:
    if isinstance(value, str):
        return value
    return tuple(value or ())


# ------------------------------------------------------------------------------------------------ SFT


@dataclass(frozen=True)
class VerlSFTConfig:
    """verl SFT settings; build it from conf with :meth:`from_params`.

    Every field except ``val_files`` and ``extra_overrides`` is required: defaults live in ``conf/``.
    ``total_training_steps`` null trains ``total_epochs`` epochs. ``lora_rank`` 0 is full tuning.
    ``cpu_smoke`` true adds :data:`CPU_SMOKE_OVERRIDES` and hides GPUs: only for tests/demo runs with
    an entry script that gives verl a CPU platform (verl 0.9 has none). ``extra_overrides`` holds more
    Hydra overrides (``key=value``) for keys without a setting here.
    """

    model_path: str
    train_files: str
    output_dir: str
    messages_key: str
    lora_rank: int
    lora_alpha: int
    target_modules: Any
    use_liger: bool
    ulysses_sequence_parallel_size: int
    learning_rate: float
    lr_warmup_steps_ratio: float
    lr_scheduler_type: str
    total_epochs: int
    total_training_steps: int | None
    train_batch_size: int
    micro_batch_size_per_gpu: int
    max_length: int
    truncation: str
    nproc_per_node: int
    save_freq: Any
    test_freq: Any
    project_name: str
    experiment_name: str
    logger: tuple[str, ...]
    dataloader_num_workers: int
    seed: int
    cpu_smoke: bool
    val_files: str | None = None
    extra_overrides: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_modules", _modules(self.target_modules))
        object.__setattr__(self, "logger", tuple(self.logger or ()))
        object.__setattr__(self, "extra_overrides", tuple(self.extra_overrides or ()))
        for name in ("model_path", "train_files", "output_dir", "val_files"):
            if isinstance(getattr(self, name), Path):
                object.__setattr__(self, name, str(getattr(self, name)))
        self._validate()

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> VerlSFTConfig:
        """Build from a conf mapping; unknown or missing keys raise ``ValueError`` naming them."""
        return _from_params(cls, params, "verl SFT")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        data = dataclasses.asdict(self)
        for key in ("target_modules", "logger", "extra_overrides"):
            value = getattr(self, key)
            data[key] = value if isinstance(value, str) else list(value)
        return data

    def _validate(self) -> None:
        need = _Checker(self, "verl SFT")
        need.path("model_path", "train_files", "output_dir")
        need.path("val_files", optional=True)
        need.text("messages_key", "project_name", "experiment_name")
        need.lora()
        need(isinstance(self.use_liger, bool), "use_liger", "must be true or false")
        need.positive_int(
            "ulysses_sequence_parallel_size",
            "total_epochs",
            "train_batch_size",
            "micro_batch_size_per_gpu",
            "nproc_per_node",
        )
        need(_is_num(self.learning_rate) and self.learning_rate > 0, "learning_rate", "must be a number > 0")
        need(
            _is_num(self.lr_warmup_steps_ratio) and 0 <= self.lr_warmup_steps_ratio < 1,
            "lr_warmup_steps_ratio",
            "must be in [0, 1)",
        )
        need(self.lr_scheduler_type in LR_SCHEDULERS, "lr_scheduler_type", f"must be one of {LR_SCHEDULERS}")
        need(
            self.total_training_steps is None
            or (_is_int(self.total_training_steps) and self.total_training_steps >= 1),
            "total_training_steps",
            "must be an int >= 1, or null to train total_epochs epochs",
        )
        need(_is_int(self.max_length) and self.max_length >= 8, "max_length", "must be an int >= 8")
        need(
            self.truncation in TRUNCATIONS,
            "truncation",
            f"must be one of {TRUNCATIONS} ('error' aborts on the first row longer than max_length)",
        )
        need.freq("save_freq", "test_freq")
        need.loggers()
        need(
            _is_int(self.dataloader_num_workers) and self.dataloader_num_workers >= 0,
            "dataloader_num_workers",
            "must be an int >= 0",
        )
        need(_is_int(self.seed), "seed", "must be an int")
        need(isinstance(self.cpu_smoke, bool), "cpu_smoke", "must be true or false")
        need(
            self.nproc_per_node % self.ulysses_sequence_parallel_size == 0,
            "ulysses_sequence_parallel_size",
            f"must divide nproc_per_node ({self.nproc_per_node})",
        )
        dp_size = self.nproc_per_node // self.ulysses_sequence_parallel_size
        need(
            self.train_batch_size % dp_size == 0,
            "train_batch_size",
            f"must be a multiple of the data-parallel size {dp_size} (nproc_per_node / ulysses size)",
        )
        need.overrides(_SFT_MANAGED)


_SFT_MANAGED = frozenset(
    {
        "data.train_files", "data.val_files", "data.messages_key", "data.train_batch_size",
        "data.micro_batch_size_per_gpu", "data.max_length", "data.truncation", "data.num_workers",
        "model.path", "model.lora_rank", "model.lora_alpha", "model.target_modules", "model.use_liger",
        "engine.ulysses_sequence_parallel_size", "engine.strategy", "engine.use_torch_compile",
        "optim.lr", "optim.lr_warmup_steps_ratio", "optim.lr_scheduler_type",
        "trainer.default_local_dir", "trainer.project_name", "trainer.experiment_name", "trainer.logger",
        "trainer.total_epochs", "trainer.total_training_steps", "trainer.save_freq", "trainer.test_freq",
        "trainer.seed", "trainer.resume_mode", "trainer.nnodes", "trainer.n_gpus_per_node", "trainer.device",
        "hydra.run.dir",
    }
)  # fmt: skip


def check_gpu_available(config: VerlSFTConfig, gpus: int | None = None) -> None:
    """Fail fast when this machine cannot run the SFT job as configured.

    Args:
        config: The SFT settings.
        gpus: GPUs available; ``None`` asks torch.

    Raises:
        TrainingError: No GPU and not ``cpu_smoke``; liger kernels without a GPU; more processes than GPUs.
    """
    gpus = gpu_count() if gpus is None else gpus
    if config.cpu_smoke:
        if config.use_liger:
            raise TrainingError(
                "verl SFT settings cpu_smoke: true and use_liger: true clash: liger kernels need a GPU. "
                "Set use_liger: false for CPU smoke runs."
            )
        return
    if gpus == 0:
        raise TrainingError(
            "verl SFT needs a CUDA GPU, but none is visible on this machine (torch.cuda.is_available() is "
            "False or CUDA_VISIBLE_DEVICES hides them). Run it on a GPU machine, or set cpu_smoke: true "
            "in conf for a tiny test run with a CPU entry script."
        )
    if config.nproc_per_node > gpus:
        raise TrainingError(
            f"verl SFT setting nproc_per_node: {config.nproc_per_node} but only {gpus} GPU(s) are visible; "
            "lower it in conf."
        )


def torchrun_executable() -> str:
    """The ``torchrun`` console script of this interpreter's environment (else the one on PATH)."""
    local = Path(sys.executable).parent / "torchrun"
    if local.is_file():
        return str(local)
    found = shutil.which("torchrun")
    if found is None:
        raise TrainingError("the `torchrun` command (torch) is not installed in this environment.")
    return found


def hydra_value(value: Any) -> str:
    """Format a Python value as a Hydra override value (quoting strings with special characters)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    text = str(value)
    if _SAFE_VALUE_RE.match(text) and text.lower() not in {"null", "true", "false"}:
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _entry_argv(entry: str | Path) -> list[str]:
    text = str(entry)
    if text.endswith(".py") or "/" in text or isinstance(entry, Path):
        return [text]
    return ["-m", text]


def build_sft_command(
    config: VerlSFTConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    entry: str | Path = SFT_ENTRY,
    gpus: int | None = None,
    torchrun_bin: str | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Build the ``torchrun ... verl.trainer.sft_trainer key=value ...`` command.

    Args:
        config: SFT settings.
        checkpoint_dir: ``trainer.default_local_dir`` (default ``<output_dir>/checkpoints``); verl
            resumes from the newest ``global_step_<N>`` found there.
        entry: A module (run with ``-m``) or a script path (e.g. a CPU shim for tests).
        gpus: GPUs available (``None``: ask torch); checked by :func:`check_gpu_available`.
        torchrun_bin: The ``torchrun`` executable (default: :func:`torchrun_executable`).

    Returns:
        ``(argv, env)``: env holds only the variables to add to the current environment.

    Raises:
        TrainingError: If the machine cannot run the job (see :func:`check_gpu_available`).
    """
    check_gpu_available(config, gpus)
    ckpt_dir = Path(config.output_dir) / "checkpoints" if checkpoint_dir is None else Path(checkpoint_dir)
    overrides = {
        "data.train_files": config.train_files,
        "data.val_files": config.val_files,
        "data.messages_key": config.messages_key,
        "data.train_batch_size": config.train_batch_size,
        "data.micro_batch_size_per_gpu": config.micro_batch_size_per_gpu,
        "data.max_length": config.max_length,
        "data.truncation": config.truncation,
        "data.num_workers": config.dataloader_num_workers,
        "model.path": config.model_path,
        "model.lora_rank": config.lora_rank,
    }
    if config.lora_rank > 0:
        overrides["model.lora_alpha"] = config.lora_alpha
        overrides["model.target_modules"] = config.target_modules
    overrides.update(
        {
            "model.use_liger": config.use_liger,
            "engine.ulysses_sequence_parallel_size": config.ulysses_sequence_parallel_size,
            "optim.lr": config.learning_rate,
            "optim.lr_warmup_steps_ratio": config.lr_warmup_steps_ratio,
            "optim.lr_scheduler_type": config.lr_scheduler_type,
            "trainer.default_local_dir": str(ckpt_dir),
            "trainer.project_name": config.project_name,
            "trainer.experiment_name": config.experiment_name,
            "trainer.logger": list(config.logger),
            "trainer.total_epochs": config.total_epochs,
            "trainer.total_training_steps": config.total_training_steps,
            "trainer.save_freq": config.save_freq,
            "trainer.test_freq": config.test_freq,
            "trainer.seed": config.seed,
            "trainer.resume_mode": "auto",
            "trainer.nnodes": 1,
            "trainer.n_gpus_per_node": config.nproc_per_node,
            "hydra.run.dir": str(Path(config.output_dir) / "hydra"),
        }
    )
    argv = [
        torchrun_bin or torchrun_executable(),
        "--standalone",
        "--nnodes=1",
        f"--nproc_per_node={config.nproc_per_node}",
        *_entry_argv(entry),
        *(f"{key}={hydra_value(value)}" for key, value in overrides.items()),
    ]
    if config.cpu_smoke:
        argv += list(CPU_SMOKE_OVERRIDES)
    argv += list(config.extra_overrides)
    env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if config.cpu_smoke:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return argv, env


# ----------------------------------------------------------------------------------------------- GRPO


@dataclass(frozen=True)
class VerlGRPOConfig:
    """verl GRPO settings (``main_ppo``, ``algorithm.adv_estimator=grpo``); build with :meth:`from_params`.

    Every field except the optional ones at the end is required. ``enable_thinking`` null leaves the
    chat template alone; false adds ``+data.apply_chat_template_kwargs.enable_thinking=False`` (Qwen3).
    ``tool_config_path`` set turns on multi-turn tool rollouts (``multi_turn.enable``, the tool
    config, ``multi_turn_format``) with the ``tool_agent`` agent loop as the default.
    """

    model_path: str
    train_files: str
    val_files: str
    output_dir: str
    reward_function_path: str
    reward_function_name: str
    rollout_engine: str
    rollout_n: int
    tensor_model_parallel_size: int
    gpu_memory_utilization: float
    max_prompt_length: int
    max_response_length: int
    filter_overlong_prompts: bool
    truncation: str
    train_batch_size: int
    val_batch_size: int
    ppo_mini_batch_size: int
    ppo_micro_batch_size_per_gpu: int
    log_prob_micro_batch_size_per_gpu: int
    learning_rate: float
    lr_warmup_steps_ratio: float
    use_kl_loss: bool
    kl_loss_coef: float
    kl_loss_type: str
    entropy_coeff: float
    lora_rank: int
    lora_alpha: int
    target_modules: Any
    total_epochs: int
    save_freq: int
    test_freq: int
    val_before_train: bool
    n_gpus_per_node: int
    project_name: str
    experiment_name: str
    logger: tuple[str, ...]
    seed: int
    enable_thinking: bool | None = None
    tool_config_path: str | None = None
    multi_turn_format: str = "hermes"
    max_assistant_turns: int | None = None
    extra_overrides: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_modules", _modules(self.target_modules))
        object.__setattr__(self, "logger", tuple(self.logger or ()))
        object.__setattr__(self, "extra_overrides", tuple(self.extra_overrides or ()))
        for name in (
            "model_path",
            "train_files",
            "val_files",
            "output_dir",
            "reward_function_path",
            "tool_config_path",
        ):
            if isinstance(getattr(self, name), Path):
                object.__setattr__(self, name, str(getattr(self, name)))
        self._validate()

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> VerlGRPOConfig:
        """Build from a conf mapping; unknown or missing keys raise ``ValueError`` naming them."""
        return _from_params(cls, params, "verl GRPO")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        data = dataclasses.asdict(self)
        for key in ("target_modules", "logger", "extra_overrides"):
            value = getattr(self, key)
            data[key] = value if isinstance(value, str) else list(value)
        return data

    def _validate(self) -> None:
        need = _Checker(self, "verl GRPO")
        need.path("model_path", "train_files", "val_files", "output_dir", "reward_function_path")
        need.path("tool_config_path", optional=True)
        need(
            str(self.reward_function_path).endswith(".py"),
            "reward_function_path",
            "must be a .py file defining the reward function",
        )
        need(
            isinstance(self.reward_function_name, str) and self.reward_function_name.isidentifier(),
            "reward_function_name",
            "must be the name of a function in reward_function_path, e.g. compute_score",
        )
        need(self.rollout_engine in ROLLOUT_ENGINES, "rollout_engine", f"must be one of {ROLLOUT_ENGINES}")
        need.positive_int(
            "rollout_n", "tensor_model_parallel_size", "max_prompt_length", "max_response_length",
            "train_batch_size", "val_batch_size", "ppo_mini_batch_size", "ppo_micro_batch_size_per_gpu",
            "log_prob_micro_batch_size_per_gpu", "total_epochs", "n_gpus_per_node",
        )  # fmt: skip
        need(self.rollout_n >= 2, "rollout_n", "must be >= 2: GRPO compares responses within a group")
        need(
            _is_num(self.gpu_memory_utilization) and 0 < self.gpu_memory_utilization < 1,
            "gpu_memory_utilization",
            "must be in (0, 1)",
        )
        need(
            isinstance(self.filter_overlong_prompts, bool), "filter_overlong_prompts", "must be true or false"
        )
        need(self.truncation in TRUNCATIONS, "truncation", f"must be one of {TRUNCATIONS}")
        need(
            self.ppo_mini_batch_size <= self.train_batch_size,
            "ppo_mini_batch_size",
            f"must be <= train_batch_size ({self.train_batch_size})",
        )
        need(_is_num(self.learning_rate) and self.learning_rate > 0, "learning_rate", "must be a number > 0")
        need(
            _is_num(self.lr_warmup_steps_ratio) and 0 <= self.lr_warmup_steps_ratio < 1,
            "lr_warmup_steps_ratio",
            "must be in [0, 1)",
        )
        need(isinstance(self.use_kl_loss, bool), "use_kl_loss", "must be true or false")
        need(_is_num(self.kl_loss_coef) and self.kl_loss_coef >= 0, "kl_loss_coef", "must be a number >= 0")
        need(self.kl_loss_type in KL_LOSS_TYPES, "kl_loss_type", f"must be one of {KL_LOSS_TYPES}")
        need(
            _is_num(self.entropy_coeff) and self.entropy_coeff >= 0, "entropy_coeff", "must be a number >= 0"
        )
        need.lora()
        need.freq("save_freq", "test_freq")
        need(isinstance(self.val_before_train, bool), "val_before_train", "must be true or false")
        need.text("project_name", "experiment_name")
        need.loggers()
        need(_is_int(self.seed), "seed", "must be an int")
        need(
            self.enable_thinking is None or isinstance(self.enable_thinking, bool),
            "enable_thinking",
            "must be true, false or null (leave the chat template's default)",
        )
        need(
            self.multi_turn_format in MULTI_TURN_FORMATS,
            "multi_turn_format",
            f"must be one of {MULTI_TURN_FORMATS} (Qwen models use hermes)",
        )
        need(
            self.max_assistant_turns is None
            or (_is_int(self.max_assistant_turns) and self.max_assistant_turns >= 1),
            "max_assistant_turns",
            "must be an int >= 1 or null",
        )
        need(
            self.n_gpus_per_node % self.tensor_model_parallel_size == 0,
            "tensor_model_parallel_size",
            f"must divide n_gpus_per_node ({self.n_gpus_per_node}); use 1 on one GPU",
        )
        need.overrides(_GRPO_MANAGED)


_GRPO_MANAGED = frozenset(
    {
        "algorithm.adv_estimator", "algorithm.use_kl_in_reward",
        "data.train_files", "data.val_files", "data.max_prompt_length", "data.max_response_length",
        "data.train_batch_size", "data.val_batch_size", "data.filter_overlong_prompts", "data.truncation",
        "data.seed", "data.apply_chat_template_kwargs.enable_thinking",
        "actor_rollout_ref.model.path", "actor_rollout_ref.model.lora_rank", "actor_rollout_ref.model.lora_alpha",
        "actor_rollout_ref.model.target_modules",
        "actor_rollout_ref.actor.optim.lr", "actor_rollout_ref.actor.optim.lr_warmup_steps_ratio",
        "actor_rollout_ref.actor.ppo_mini_batch_size", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu",
        "actor_rollout_ref.actor.use_kl_loss", "actor_rollout_ref.actor.kl_loss_coef",
        "actor_rollout_ref.actor.kl_loss_type", "actor_rollout_ref.actor.entropy_coeff",
        "actor_rollout_ref.rollout.name", "actor_rollout_ref.rollout.n",
        "actor_rollout_ref.rollout.tensor_model_parallel_size", "actor_rollout_ref.rollout.gpu_memory_utilization",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu",
        "actor_rollout_ref.rollout.multi_turn.enable", "actor_rollout_ref.rollout.multi_turn.tool_config_path",
        "actor_rollout_ref.rollout.multi_turn.format", "actor_rollout_ref.rollout.multi_turn.max_assistant_turns",
        "actor_rollout_ref.rollout.agent.default_agent_loop",
        "reward.custom_reward_function.path", "reward.custom_reward_function.name",
        "custom_reward_function.path", "custom_reward_function.name",
        "trainer.total_epochs", "trainer.save_freq", "trainer.test_freq", "trainer.val_before_train",
        "trainer.n_gpus_per_node", "trainer.nnodes", "trainer.project_name", "trainer.experiment_name",
        "trainer.logger", "trainer.default_local_dir", "trainer.critic_warmup", "trainer.resume_mode",
        "hydra.run.dir",
    }
)  # fmt: skip


def _module_available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _defines_function(path: Path, name: str) -> bool:
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return True
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            return True  # a thin entry file re-exporting the function (e.g. mcq/verl_reward.py)
    return False


def check_grpo_preflight(config: VerlGRPOConfig, gpus: int | None = None) -> None:
    """Fail fast, before ray starts, when the GRPO job cannot run here.

    ``verl.trainer.main_ppo`` waits forever for GPU resources on a machine without them, and fails
    deep inside a ray worker when the rollout engine is missing; this says why up front.

    Raises:
        TrainingError: No GPU, too few GPUs, verl or the rollout engine not importable, the reward
            file or function or the tool config missing.
    """
    gpus = gpu_count() if gpus is None else gpus
    problems = []
    if gpus == 0:
        problems.append(
            "no CUDA GPU is visible (verl GRPO needs GPUs for the actor and the rollout engine; "
            "main_ppo would wait forever for them)"
        )
    elif config.n_gpus_per_node > gpus:
        problems.append(f"n_gpus_per_node: {config.n_gpus_per_node} but only {gpus} GPU(s) are visible")
    if not _module_available("verl"):
        problems.append("verl is not installed (pip install -e '.[train]')")
    if not _module_available(config.rollout_engine):
        problems.append(
            f"rollout_engine: {config.rollout_engine} but the `{config.rollout_engine}` package is not "
            "importable here; install a build matching torch on the GPU machine, or pick the other engine"
        )
    reward = Path(config.reward_function_path)
    if not reward.is_file():
        problems.append(f"reward_function_path: {reward} does not exist")
    elif not _defines_function(reward, config.reward_function_name):
        problems.append(f"reward_function_name: {config.reward_function_name} is not a function in {reward}")
    if config.tool_config_path is not None and not Path(config.tool_config_path).is_file():
        problems.append(f"tool_config_path: {config.tool_config_path} does not exist")
    if problems:
        raise TrainingError(
            "verl GRPO cannot start on this machine: " + "; ".join(problems) + ". Fix conf or run it on a "
            "GPU machine with the rollout engine installed."
        )


def build_grpo_command(
    config: VerlGRPOConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    python: str | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Build ``python -m verl.trainer.main_ppo algorithm.adv_estimator=grpo key=value ...``.

    Pure: run :func:`check_grpo_preflight` before launching it.

    Args:
        config: GRPO settings.
        checkpoint_dir: ``trainer.default_local_dir`` (default ``<output_dir>/checkpoints``).
        python: The interpreter (default: this one).

    Returns:
        ``(argv, env)``: env holds only the variables to add to the current environment.
    """
    ckpt_dir = Path(config.output_dir) / "checkpoints" if checkpoint_dir is None else Path(checkpoint_dir)
    model = "actor_rollout_ref.model"
    actor = "actor_rollout_ref.actor"
    rollout = "actor_rollout_ref.rollout"
    ref = "actor_rollout_ref.ref"
    overrides: dict[str, Any] = {
        "algorithm.adv_estimator": "grpo",
        "algorithm.use_kl_in_reward": False,
        "data.train_files": config.train_files,
        "data.val_files": config.val_files,
        "data.train_batch_size": config.train_batch_size,
        "data.val_batch_size": config.val_batch_size,
        "data.max_prompt_length": config.max_prompt_length,
        "data.max_response_length": config.max_response_length,
        "data.filter_overlong_prompts": config.filter_overlong_prompts,
        "data.truncation": config.truncation,
        "data.seed": config.seed,
        f"{model}.path": config.model_path,
        f"{model}.lora_rank": config.lora_rank,
    }
    if config.lora_rank > 0:
        overrides[f"{model}.lora_alpha"] = config.lora_alpha
        overrides[f"{model}.target_modules"] = config.target_modules
    overrides.update(
        {
            f"{actor}.optim.lr": config.learning_rate,
            f"{actor}.optim.lr_warmup_steps_ratio": config.lr_warmup_steps_ratio,
            f"{actor}.ppo_mini_batch_size": config.ppo_mini_batch_size,
            f"{actor}.ppo_micro_batch_size_per_gpu": config.ppo_micro_batch_size_per_gpu,
            f"{actor}.use_kl_loss": config.use_kl_loss,
            f"{actor}.kl_loss_coef": config.kl_loss_coef,
            f"{actor}.kl_loss_type": config.kl_loss_type,
            f"{actor}.entropy_coeff": config.entropy_coeff,
            f"{rollout}.name": config.rollout_engine,
            f"{rollout}.n": config.rollout_n,
            f"{rollout}.tensor_model_parallel_size": config.tensor_model_parallel_size,
            f"{rollout}.gpu_memory_utilization": config.gpu_memory_utilization,
            f"{rollout}.log_prob_micro_batch_size_per_gpu": config.log_prob_micro_batch_size_per_gpu,
            f"{ref}.log_prob_micro_batch_size_per_gpu": config.log_prob_micro_batch_size_per_gpu,
        }
    )
    if config.tool_config_path is not None:
        overrides[f"{rollout}.multi_turn.enable"] = True
        overrides[f"{rollout}.multi_turn.tool_config_path"] = config.tool_config_path
        overrides[f"{rollout}.multi_turn.format"] = config.multi_turn_format
        if config.max_assistant_turns is not None:
            overrides[f"{rollout}.multi_turn.max_assistant_turns"] = config.max_assistant_turns
        overrides[f"{rollout}.agent.default_agent_loop"] = "tool_agent"
    overrides.update(
        {
            "reward.custom_reward_function.path": config.reward_function_path,
            "reward.custom_reward_function.name": config.reward_function_name,
            "trainer.critic_warmup": 0,
            "trainer.total_epochs": config.total_epochs,
            "trainer.save_freq": config.save_freq,
            "trainer.test_freq": config.test_freq,
            "trainer.val_before_train": config.val_before_train,
            "trainer.nnodes": 1,
            "trainer.n_gpus_per_node": config.n_gpus_per_node,
            "trainer.project_name": config.project_name,
            "trainer.experiment_name": config.experiment_name,
            "trainer.logger": list(config.logger),
            "trainer.default_local_dir": str(ckpt_dir),
            "trainer.resume_mode": "auto",
            "hydra.run.dir": str(Path(config.output_dir) / "hydra"),
        }
    )
    argv = [python or sys.executable, "-m", GRPO_ENTRY]
    argv += [f"{key}={hydra_value(value)}" for key, value in overrides.items()]
    if config.enable_thinking is not None:
        argv.append(f"+data.apply_chat_template_kwargs.enable_thinking={hydra_value(config.enable_thinking)}")
    argv += list(config.extra_overrides)
    return argv, {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


# ---------------------------------------------------------------------------------------- checkpoints


def find_last_checkpoint(checkpoint_dir: str | Path, *, role: str | None = None) -> Path:
    """The newest complete verl checkpoint under a ``default_local_dir``.

    SFT saves ``global_step_<N>/`` itself; PPO/GRPO saves the actor in ``global_step_<N>/actor/``
    (pass ``role="actor"``). Prefers the step named in ``latest_checkpointed_iteration.txt`` (verl
    writes it after a save completes); otherwise the highest step holding ``fsdp_config.json``.

    Returns:
        The folder to hand to :func:`merge_checkpoint` (``global_step_<N>`` or ``global_step_<N>/<role>``).

    Raises:
        FileNotFoundError: If there is no checkpoint.
    """
    root = Path(checkpoint_dir)

    def model_folder(step_dir: Path) -> Path:
        return step_dir / role if role else step_dir

    tracker = root / "latest_checkpointed_iteration.txt"
    if tracker.is_file():
        step = tracker.read_text(encoding="utf-8").strip()
        candidate = model_folder(root / f"global_step_{step}")
        if step.isdigit() and (candidate / "fsdp_config.json").is_file():
            return candidate
        logger.warning("%s names step %r but %s is incomplete; scanning", tracker, step, candidate)
    steps = []
    if root.is_dir():
        for child in root.iterdir():
            match = _STEP_DIR_RE.match(child.name)
            if match and (model_folder(child) / "fsdp_config.json").is_file():
                steps.append((int(match.group(1)), model_folder(child)))
    if not steps:
        layout = f"global_step_<N>/{role + '/' if role else ''}fsdp_config.json"
        raise FileNotFoundError(
            f"no verl checkpoint under {root} (expected {layout}); did training run, and does it save "
            "(save_freq, or the final step)?"
        )
    return max(steps)[1]


def _model_dtype(checkpoint: Path) -> str | None:
    try:
        config = json.loads((checkpoint / "huggingface" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config.get("dtype") or config.get("torch_dtype")


def merge_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    log_path: str | Path,
    base_model: str | Path | None = None,
    python: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Path:
    """Turn a verl FSDP ``global_step_<N>`` checkpoint into a plain HF model folder at ``out_dir``.

    Runs ``python -m verl.model_merger merge --backend fsdp --local_dir <ckpt> --target_dir <tmp>``.
    The merger always saves bfloat16 weights. For LoRA runs it leaves the frozen base weights plus
    ``lora_adapter/``; the adapter is then folded in with PEFT ``merge_and_unload`` in float32, into
    ``base_model`` when given (the exact weights training started from) or else into the merger's
    bfloat16 copy, and saved in the base model's dtype (``<ckpt>/huggingface/config.json``). The
    adapter is kept in ``out_dir/lora_adapter``. ``out_dir`` is replaced atomically.

    Returns:
        ``out_dir``.

    Raises:
        FileNotFoundError: If ``checkpoint`` is not a verl FSDP checkpoint.
        TrainingError: If the merger fails or leaves no model.
    """
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    if not (checkpoint / "fsdp_config.json").is_file():
        raise FileNotFoundError(f"{checkpoint} is not a verl FSDP checkpoint (no fsdp_config.json).")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    raw = out_dir.parent / f".{out_dir.name}.merger-{checkpoint.name}"
    staging = out_dir.parent / f".{out_dir.name}.staging-{checkpoint.name}"
    for folder in (raw, staging):
        if folder.exists():
            shutil.rmtree(folder)
    argv = [
        python or sys.executable, "-m", "verl.model_merger", "merge",
        "--backend", "fsdp",
        "--local_dir", str(checkpoint),
        "--target_dir", str(raw),
    ]  # fmt: skip
    merge_env = {"HF_HUB_OFFLINE": "1", **(env or {})}
    run_logged(argv, merge_env, log_path, progress=False)
    if not (raw / "config.json").is_file():
        raise TrainingError(f"verl.model_merger finished but {raw} holds no config.json", argv=argv)
    adapter = raw / "lora_adapter"
    if adapter.is_dir():
        _fold_lora(Path(base_model) if base_model else raw, raw, adapter, staging, _model_dtype(checkpoint))
        shutil.rmtree(raw)
    else:
        raw.rename(staging)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    logger.info("verl checkpoint %s merged into %s", checkpoint, out_dir)
    return out_dir


def _fold_lora(
    base_dir: Path, tokenizer_dir: Path, adapter_dir: Path, out_dir: Path, dtype: str | None
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32, local_files_only=True)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    if dtype and dtype != "float32":
        merged = merged.to(getattr(torch, dtype))
    merged.save_pretrained(str(out_dir))
    AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True).save_pretrained(str(out_dir))
    shutil.copytree(adapter_dir, out_dir / "lora_adapter")  # keep the adapter next to the merged model
    logger.info("LoRA adapter %s folded into %s (saved as %s)", adapter_dir, base_dir, dtype or "float32")


# ------------------------------------------------------------------------------------------- manifests


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape a verl run."""
    versions: dict[str, str | None] = {}
    for name in (
        "verl",
        "torch",
        "transformers",
        "peft",
        "ray",
        "vllm",
        "sglang",
        "liger-kernel",
        "flash-attn",
    ):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


_PATH_FIELDS = (
    "model_path",
    "train_files",
    "val_files",
    "output_dir",
    "reward_function_path",
    "tool_config_path",
)


def config_hash(config: VerlSFTConfig | VerlGRPOConfig, base_model_fingerprint: str | None = None) -> str:
    """Hash of the settings without file locations (data is hashed by content), plus the base model."""
    settings = {k: v for k, v in config.to_dict().items() if k not in _PATH_FIELDS}
    extra = {}
    for name in ("reward_function_path", "tool_config_path"):  # their content shapes the run
        path = getattr(config, name, None)
        if path is not None and Path(path).is_file():
            extra[name] = file_sha256(path)
    payload = {
        "kind": type(config).__name__,
        "config": settings,
        "files": extra,
        "base_model": base_model_fingerprint,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def data_files_of(config: VerlSFTConfig | VerlGRPOConfig) -> dict[str, str | None]:
    """The data files a config trains on, named for :func:`data_hash`."""
    return {"train": config.train_files, "val": config.val_files}


def write_manifest(
    path: str | Path,
    *,
    config: VerlSFTConfig | VerlGRPOConfig,
    argv: Sequence[str],
    env_knobs: Mapping[str, str],
    started: str,
    finished: str | None,
    output: str | Path | None,
    checkpoint: str | Path | None = None,
    status: str = "finished",
    metrics: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a JSON manifest of a verl run (atomically) and return it.

    Records the command, env knobs, package versions (verl, torch, transformers, ...), data file
    sha256s and their ``data_hash``, the base model fingerprint, ``config_hash``, timestamps,
    checkpoint, output and the last logged training metrics.
    """
    files = data_files_of(config)
    fingerprint = base_model_fingerprint(config.model_path)
    manifest: dict[str, Any] = {
        "status": status,
        "trainer": type(config).__name__,
        "argv": [str(a) for a in argv],
        "env_knobs": dict(env_knobs),
        "versions": package_versions(),
        "data_files": {
            name: ({"path": str(p), "sha256": file_sha256(p)} if p is not None else None)
            for name, p in sorted(files.items())
        },
        "data_hash": data_hash(files),
        "base_model": {"path": str(config.model_path), "fingerprint": fingerprint},
        "config": config.to_dict(),
        "config_hash": config_hash(config, fingerprint),
        "started": started,
        "finished": finished,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "output": str(output) if output is not None else None,
        "metrics": dict(metrics or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return manifest


# ------------------------------------------------------------------------------------------ log reading

_STEP_LINE_RE = re.compile(r"step:(\d+) - (.*)")
_ROOT_CAUSE_RE = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$")


def parse_step_metrics(line: str) -> dict[str, Any] | None:
    """Parse a verl console-logger line (``step:3 - train/loss:1.9 - train/lr:0.001 ...``)."""
    match = _STEP_LINE_RE.search(line)
    if not match:
        return None
    metrics: dict[str, Any] = {"step": int(match.group(1))}
    for part in match.group(2).split(" - "):
        key, sep, value = part.strip().rpartition(":")
        if not sep or not key:
            continue
        try:
            metrics[key] = float(value)
        except ValueError:
            metrics[key] = value
    return metrics


def last_step_metrics(log_path: str | Path) -> dict[str, Any]:
    """The last training-step metrics in a verl log, merged with later validation metrics of that step."""
    last: dict[str, Any] = {}
    try:
        text = Path(log_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return last
    for line in text.splitlines():
        for segment in line.split("\r"):
            metrics = parse_step_metrics(segment)
            if metrics is None:
                continue
            if metrics["step"] != last.get("step"):
                last = {}
            last.update(metrics)
    return last


def root_cause(log_path: str | Path) -> str | None:
    """The first worker exception in a torchrun/verl log (not torchrun's own ``ChildFailedError``)."""
    try:
        lines = Path(log_path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        match = _ROOT_CAUSE_RE.match(line.strip())
        if match and match.group(1) not in {"ChildFailedError", "UserWarning", "FutureWarning"}:
            return line.strip()
    return None


def run_verl(
    argv: Sequence[str], env: Mapping[str, str], log_path: str | Path, *, progress: bool = True
) -> None:
    """:func:`~finrag_pipelines.training.swift.run_logged`, with verl's root cause put first on failure.

    torchrun ends a failed run with ~25 lines of its own traceback, which would fill the log tail;
    the worker's exception is looked up in the log and named in the error message.
    """
    try:
        run_logged(argv, env, log_path, progress=progress)
    except TrainingError as exc:
        cause = root_cause(log_path)
        if cause is None or exc.returncode is None:
            raise
        raise TrainingError(
            f"verl failed: {cause}\n{exc}", returncode=exc.returncode, argv=exc.argv, tail=exc.tail
        ) from exc


# ----------------------------------------------------------------------------------------- orchestrator


def _now() -> str:
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _check_base_model(path: str | Path) -> None:
    if not (Path(path) / "config.json").is_file():
        raise TrainingError(
            f"model_path {path} is not a model folder (no config.json); put a local HF checkpoint there "
            "(nothing is downloaded) or point the launch's base_model_path at one."
        )


def train_sft(
    config: VerlSFTConfig,
    merged_dir: str | Path,
    *,
    entry: str | Path = SFT_ENTRY,
    gpus: int | None = None,
    progress: bool = True,
) -> Path:
    """Train (or resume, or skip), then merge: the whole verl SFT step.

    ``config.output_dir`` holds ``checkpoints/<data hash>-<config hash>/global_step_<N>`` (one folder
    per data and config, so verl's ``resume_mode=auto`` only ever resumes the same run), ``train.log``
    and ``manifest.json`` (copied into ``merged_dir`` as ``training_manifest.json``). A finished run
    with the same data, config and base model is not retrained.

    Returns:
        ``merged_dir``, a plain HF causal-LM folder.
    """
    check_gpu_available(config, gpus)  # before hashing gigabytes of weights
    _check_base_model(config.model_path)
    work_dir, merged_dir = Path(config.output_dir), Path(merged_dir)
    d_hash = data_hash(data_files_of(config))
    c_hash = config_hash(config, base_model_fingerprint(config.model_path))
    manifest_path = work_dir / MANIFEST_NAME
    if is_up_to_date(manifest_path, d_hash, c_hash) and has_model(merged_dir):
        logger.info("SFT model in %s is up to date (%s); not retraining", merged_dir, manifest_path)
        return merged_dir
    checkpoint_dir = work_dir / "checkpoints" / f"{d_hash[:10]}-{c_hash[:10]}"
    argv, env = build_sft_command(config, checkpoint_dir=checkpoint_dir, entry=entry, gpus=gpus)
    common: dict[str, Any] = {"config": config, "argv": argv, "env_knobs": env, "started": _now()}
    write_manifest(manifest_path, finished=None, output=None, status="running", **common)
    log_path = work_dir / "train.log"
    run_verl(argv, env, log_path, progress=progress)
    metrics = last_step_metrics(log_path)
    logger.info("verl SFT finished: %s", metrics)
    checkpoint = find_last_checkpoint(checkpoint_dir)
    merge_checkpoint(
        checkpoint,
        merged_dir,
        log_path=log_path,
        base_model=config.model_path,
        env={"CUDA_VISIBLE_DEVICES": ""} if config.cpu_smoke else None,
    )
    write_manifest(
        manifest_path,
        finished=_now(),
        output=merged_dir.resolve(),
        checkpoint=checkpoint.resolve(),
        metrics=metrics,
        **common,
    )
    shutil.copyfile(manifest_path, merged_dir / "training_manifest.json")
    return merged_dir


def train_grpo(
    config: VerlGRPOConfig,
    merged_dir: str | Path,
    *,
    gpus: int | None = None,
    progress: bool = True,
) -> Path:
    """Preflight, train (verl resumes an unfinished run of the same data and config) or skip, then merge.

    :func:`check_grpo_preflight` runs first, so a machine without GPUs or without the rollout engine
    fails in milliseconds instead of ray waiting forever. Layout as in :func:`train_sft`; the actor
    checkpoint ``global_step_<N>/actor`` is merged into ``merged_dir``.

    Returns:
        ``merged_dir``, a plain HF causal-LM folder.
    """
    check_grpo_preflight(config, gpus)
    _check_base_model(config.model_path)
    work_dir, merged_dir = Path(config.output_dir), Path(merged_dir)
    d_hash = data_hash(data_files_of(config))
    c_hash = config_hash(config, base_model_fingerprint(config.model_path))
    manifest_path = work_dir / MANIFEST_NAME
    if is_up_to_date(manifest_path, d_hash, c_hash) and has_model(merged_dir):
        logger.info("GRPO model in %s is up to date (%s); not retraining", merged_dir, manifest_path)
        return merged_dir
    checkpoint_dir = work_dir / "checkpoints" / f"{d_hash[:10]}-{c_hash[:10]}"
    argv, env = build_grpo_command(config, checkpoint_dir=checkpoint_dir)
    common: dict[str, Any] = {"config": config, "argv": argv, "env_knobs": env, "started": _now()}
    write_manifest(manifest_path, finished=None, output=None, status="running", **common)
    log_path = work_dir / "train.log"
    run_verl(argv, env, log_path, progress=progress)
    metrics = last_step_metrics(log_path)
    checkpoint = find_last_checkpoint(checkpoint_dir, role="actor")
    merge_checkpoint(checkpoint, merged_dir, log_path=log_path, base_model=config.model_path)
    write_manifest(
        manifest_path,
        finished=_now(),
        output=merged_dir.resolve(),
        checkpoint=checkpoint.resolve(),
        metrics=metrics,
        **common,
    )
    shutil.copyfile(manifest_path, merged_dir / "training_manifest.json")
    return merged_dir


def project_reward_file() -> Path:
    """The file verl loads as the reward (``finrag_pipelines/mcq/verl_reward.py``), found without importing it."""
    spec = importlib.util.find_spec("finrag_pipelines.mcq.verl_reward")
    if spec is None or spec.origin is None:
        raise TrainingError("finrag_pipelines.mcq.verl_reward is not importable; install the project (pip install -e .)")
    return Path(spec.origin)
