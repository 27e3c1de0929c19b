"""Kedro-free launcher for verl 0.9 SFT: ``torchrun --standalone --nnodes=1 --nproc_per_node=N -m
verl.trainer.sft_trainer key=value ...``.

* :class:`VerlSFTConfig`: every knob, read from conf (no defaults hidden here).
* :func:`check_gpu_available`: fail fast, before torchrun starts, on a machine that cannot run the job
  (verl has no CPU platform).
* :func:`build_sft_command`, :func:`train_sft` (train or resume or skip, then merge into a plain model).

Checked against verl 0.9.1's ``verl/trainer/config/sft_trainer_engine.yaml`` (+ ``model/hf_model.yaml``,
``engine/fsdp.yaml``, ``optim/fsdp.yaml``): ``data.messages_key`` (rows hold a ``messages`` chat list),
``data.train_batch_size`` (global), ``data.micro_batch_size_per_gpu``, ``data.max_length``,
``data.truncation`` (error|left|right), ``model.lora_rank/lora_alpha/target_modules/use_liger``,
``engine.ulysses_sequence_parallel_size``, ``optim.lr``, ``trainer.logger`` (a list),
``trainer.resume_mode`` (auto resumes from the newest ``global_step_<N>`` in ``default_local_dir``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from pydantic import StrictBool, StrictInt, StrictStr, model_validator

from finrag_pipelines.kernels import KernelChoice, choose_kernels
from finrag_pipelines.training.machine import gpu_count, torchrun_executable
from finrag_pipelines.training.runs import TrainingError
from finrag_pipelines.training.trainer_config import NOT_BLANK, PathText, setting
from finrag_pipelines.training.verl_common import (
    BOOL_RULE,
    POSITIVE_RULE,
    TEXT_RULE,
    TRUNCATIONS,
    Truncation,
    VerlConfig,
    check_base_model,
    hydra_value,
    kernel_overrides,
    train_and_merge,
    training_run,
)

logger = logging.getLogger(__name__)

SFT_ENTRY = "verl.trainer.sft_trainer"
LrScheduler = Literal["constant", "cosine"]
LR_SCHEDULERS = get_args(LrScheduler)
# overrides that make verl SFT run on CPU with the test shim (tests/training/verl_cpu_shim.py)
# (the attention kernel, sdpa on a CPU, comes from kernels.choose_kernels like on a GPU)
CPU_SMOKE_OVERRIDES = (
    "engine.strategy=fsdp2",
    "engine.use_torch_compile=False",
    "trainer.device=cpu",
)
_SFT_MANAGED = frozenset(
    {
        "data.train_files", "data.val_files", "data.messages_key", "data.train_batch_size",
        "data.micro_batch_size_per_gpu", "data.max_length", "data.truncation", "data.num_workers",
        "model.path", "model.lora_rank", "model.lora_alpha", "model.target_modules", "model.use_liger",
        "model.use_remove_padding", "model.override_config.attn_implementation",
        "engine.ulysses_sequence_parallel_size", "engine.strategy", "engine.use_torch_compile",
        "optim.lr", "optim.lr_warmup_steps_ratio", "optim.lr_scheduler_type",
        "trainer.default_local_dir", "trainer.project_name", "trainer.experiment_name", "trainer.logger",
        "trainer.total_epochs", "trainer.total_training_steps", "trainer.save_freq", "trainer.test_freq",
        "trainer.seed", "trainer.resume_mode", "trainer.nnodes", "trainer.n_gpus_per_node", "trainer.device",
        "hydra.run.dir",
    }
)  # fmt: skip


class VerlSFTConfig(VerlConfig):
    """verl SFT settings; build it from conf with :meth:`from_params`.

    Every field except ``val_files`` and ``extra_overrides`` is required: defaults live in ``conf/``.
    ``total_training_steps`` null trains ``total_epochs`` epochs. ``lora_rank`` 0 is full tuning.
    ``cpu_smoke`` true adds :data:`CPU_SMOKE_OVERRIDES` and hides GPUs: only for tests/demo runs with
    an entry script that gives verl a CPU platform (verl 0.9 has none). ``extra_overrides`` holds more
    Hydra overrides (``key=value``) for keys without a setting here.
    """

    what: ClassVar[str] = "verl SFT"
    managed: ClassVar[frozenset[str]] = _SFT_MANAGED

    val_files: PathText | None = setting("must be a path or null", default=None, pattern=NOT_BLANK)
    messages_key: StrictStr = setting(TEXT_RULE, pattern=NOT_BLANK)
    use_liger: StrictBool = setting(BOOL_RULE)
    ulysses_sequence_parallel_size: StrictInt = setting(POSITIVE_RULE, ge=1)
    lr_scheduler_type: LrScheduler = setting(f"must be one of {LR_SCHEDULERS}")
    total_training_steps: StrictInt | None = setting(
        "must be an int >= 1, or null to train total_epochs epochs", ge=1
    )
    train_batch_size: StrictInt = setting(POSITIVE_RULE, ge=1)
    micro_batch_size_per_gpu: StrictInt = setting(POSITIVE_RULE, ge=1)
    max_length: StrictInt = setting("must be an int >= 8", ge=8)
    truncation: Truncation = setting(
        f"must be one of {TRUNCATIONS} ('error' aborts on the first row longer than max_length)"
    )
    nproc_per_node: StrictInt = setting(POSITIVE_RULE, ge=1)
    dataloader_num_workers: StrictInt = setting("must be an int >= 0", ge=0)
    cpu_smoke: StrictBool = setting(BOOL_RULE)

    @model_validator(mode="after")
    def _check_parallel_sizes(self) -> VerlSFTConfig:
        self.need(
            self.nproc_per_node % self.ulysses_sequence_parallel_size == 0,
            "ulysses_sequence_parallel_size",
            f"must divide nproc_per_node ({self.nproc_per_node})",
        )
        dp_size = self.nproc_per_node // self.ulysses_sequence_parallel_size
        self.need(
            self.train_batch_size % dp_size == 0,
            "train_batch_size",
            f"must be a multiple of the data-parallel size {dp_size} (nproc_per_node / ulysses size)",
        )
        return self


def check_gpu_available(config: VerlSFTConfig, gpus: int | None = None) -> None:
    """Fail fast when this machine cannot run the SFT job as configured.

    Args:
        config: The SFT settings.
        gpus: GPUs available; ``None`` asks torch.

    Raises:
        TrainingError: No GPU and not ``cpu_smoke``; more processes than GPUs. (Liger without a GPU is not an
            error: :func:`sft_kernels` turns it off and says why.)
    """
    gpus = gpu_count() if gpus is None else gpus
    if config.cpu_smoke:
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


def _entry_argv(entry: str | Path) -> list[str]:
    text = str(entry)
    if text.endswith(".py") or "/" in text or isinstance(entry, Path):
        return [text]
    return ["-m", text]


def sft_kernels(config: VerlSFTConfig, gpus: int | None = None) -> KernelChoice:
    """flash-attn 2 / sdpa and Liger on / off for this SFT run
    (:func:`~finrag_pipelines.kernels.choose_kernels`; a ``cpu_smoke`` run uses no GPU)."""
    gpus = gpu_count() if gpus is None else gpus
    return choose_kernels("verl SFT", gpu=gpus > 0 and not config.cpu_smoke, liger=config.use_liger)


def build_sft_command(
    config: VerlSFTConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    entry: str | Path = SFT_ENTRY,
    gpus: int | None = None,
    torchrun_bin: str | None = None,
    kernels: KernelChoice | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Build the ``torchrun ... verl.trainer.sft_trainer key=value ...`` command.

    Args:
        config: SFT settings.
        checkpoint_dir: ``trainer.default_local_dir`` (default ``<output_dir>/checkpoints``); verl
            resumes from the newest ``global_step_<N>`` found there.
        entry: A module (run with ``-m``) or a script path (e.g. a CPU shim for tests).
        gpus: GPUs available (``None``: ask torch); checked by :func:`check_gpu_available`.
        torchrun_bin: The ``torchrun`` executable (default: :func:`torchrun_executable`).
        kernels: The attention kernel and Liger setting (default: :func:`sft_kernels` on this machine); set
            ``model.use_liger``, ``override_config.attn_implementation`` and, without flash-attn,
            ``use_remove_padding: false`` (:func:`~finrag_pipelines.training.verl_common.kernel_overrides`).

    Returns:
        ``(argv, env)``: env holds only the variables to add to the current environment.

    Raises:
        TrainingError: If the machine cannot run the job (see :func:`check_gpu_available`), or sequence
            parallelism is asked for without flash-attn (verl's Ulysses patch is flash-attn's).
    """
    check_gpu_available(config, gpus)
    kernels = sft_kernels(config, gpus) if kernels is None else kernels
    if not kernels.flash and config.ulysses_sequence_parallel_size > 1 and not config.cpu_smoke:
        raise TrainingError(
            f"verl SFT setting ulysses_sequence_parallel_size: {config.ulysses_sequence_parallel_size} needs "
            "flash-attn (verl's sequence parallelism patches flash-attn's attention), but this run would "
            f"use sdpa: {kernels.attn_reason}. Install flash-attn, or set ulysses_sequence_parallel_size: 1."
        )
    ckpt_dir = Path(config.output_dir) / "checkpoints" if checkpoint_dir is None else Path(checkpoint_dir)
    overrides: dict[str, Any] = {
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
    overrides.update(kernel_overrides("model", kernels))
    overrides.update(
        {
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
    check_base_model(config.model_path)
    merged_dir = Path(merged_dir)
    run = training_run(config)
    if run.is_up_to_date(merged_dir):
        logger.info("SFT model in %s is up to date (%s); not retraining", merged_dir, run.manifest_path)
        return merged_dir
    checkpoint_dir = run.work_dir / "checkpoints" / run.key
    kernels = sft_kernels(config, gpus)
    argv, env = build_sft_command(
        config, checkpoint_dir=checkpoint_dir, entry=entry, gpus=gpus, kernels=kernels
    )
    merge_env = {"CUDA_VISIBLE_DEVICES": ""} if config.cpu_smoke else None
    return train_and_merge(
        run, argv, env, checkpoint_dir, merged_dir, progress=progress, merge_env=merge_env, kernels=kernels
    )
