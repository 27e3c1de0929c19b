"""Kedro-free launcher for ms-swift 4.x embedding training (InfoNCE, ``qwen3_emb``).

The pieces, each usable on its own:

* :class:`SwiftTrainConfig`: the knobs every ``swift sft`` run shares; :class:`SwiftEmbeddingConfig` adds
  InfoNCE's (the reranker's are in :mod:`~finrag_pipelines.training.swift_reranker`). Read from conf (no
  defaults hidden here).
* :func:`swift_sft_argv`, :func:`build_sft_command`: the exact ``swift sft`` argv and the environment knobs;
  :func:`swift_kernels`: flash-attn 2 or sdpa (``--attn_impl``) and Liger (``--use_liger_kernel``) for a run.
* :func:`run_swift`: :func:`~finrag_pipelines.training.runs.run_logged` reading swift's step lines
  (``{'loss': …, 'global_step/max_steps': '3/5'}``) for the log and the progress bar.
* :func:`train_swift` (:func:`train_embedding`): command, run, checkpoint, merge and manifest in order, with
  resume and skip
  (run bookkeeping in :mod:`~finrag_pipelines.training.runs`, checkpoints and merging in
  :mod:`~finrag_pipelines.training.checkpoints`).

Checked against ms-swift 4.6.0: ``--tuner_type`` (``--train_type`` is rejected), ``--val_dataset``,
``--lora_rank/--lora_alpha/--lora_dropout/--target_modules``, ``--torch_dtype`` (bfloat16|float16|float32;
omitted for "auto"), ``--deepspeed zero2|zero3`` (names mapped to bundled JSON configs),
``--truncation_strategy delete|left|right`` (swift's default, delete, silently drops every row longer
than ``max_length``), ``swift export --adapters <ckpt> --merge_lora true --output_dir <dir>``.
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Protocol, get_args

from pydantic import BeforeValidator, StrictBool, StrictInt, StrictStr, model_validator

from finrag_pipelines.kernels import KernelChoice, choose_kernels
from finrag_pipelines.training.checkpoints import find_last_swift_checkpoint, merge_swift_checkpoint
from finrag_pipelines.training.machine import gpu_count, swift_executable
from finrag_pipelines.training.runs import LogFormat, TrainingError, TrainingRun, copy_manifest, run_logged
from finrag_pipelines.training.trainer_config import Names, Number, TrainerConfig, setting

logger = logging.getLogger(__name__)

TunerType = Literal["lora", "full"]
TorchDtype = Literal["float32", "bfloat16", "auto"]
DeepspeedStage = Literal["zero2", "zero3"]
TruncationStrategy = Literal["delete", "left", "right"]
TUNER_TYPES = get_args(TunerType)
TORCH_DTYPES = get_args(TorchDtype)
DEEPSPEED_STAGES = (None, *get_args(DeepspeedStage))
TRUNCATION_STRATEGIES = get_args(TruncationStrategy)

# arguments build_sft_command sets itself; extra_args may not override them
_MANAGED_ARGS = frozenset(
    {
        "model",
        "model_type",
        "task_type",
        "loss_type",
        "tuner_type",
        "train_type",
        "check_model",
        "lora_rank",
        "lora_alpha",
        "lora_dropout",
        "target_modules",
        "dataset",
        "val_dataset",
        "split_dataset_ratio",
        "dataloader_drop_last",
        "label_names",
        "report_to",
        "output_dir",
        "learning_rate",
        "num_train_epochs",
        "max_steps",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "warmup_ratio",
        "max_length",
        "truncation_strategy",
        "save_steps",
        "logging_steps",
        "torch_dtype",
        "deepspeed",
        "dataloader_num_workers",
        "seed",
        "resume_from_checkpoint",
        "attn_impl",
        "use_liger_kernel",
    }
)


def _none_for_minus_one(value: Any) -> Any:
    return None if value == -1 and not isinstance(value, bool) else value


def _empty_mapping_if_none(value: Any) -> Any:
    return {} if value is None else value


_POSITIVE = "must be an int >= 1"
_BOOL = "must be true or false"


class SwiftTrainConfig(TrainerConfig):
    """The settings every ``swift sft`` run of this project shares (embedding, reranker); see the subclasses.

    Every field except ``extra_args`` is required: the defaults live in ``conf/``, not here.
    ``max_steps`` None or -1 means "train ``num_train_epochs`` epochs". ``extra_args`` holds more
    ``--key value`` pairs for ``swift sft`` (keys without the dashes; lists become several values,
    booleans ``true``/``false``). The LoRA settings are checked only when ``tuner_type`` is lora.
    """

    what: ClassVar[str] = "swift training"
    packages: ClassVar[tuple[str, ...]] = ("torch", "transformers", "ms-swift", "peft", "deepspeed")

    tuner_type: TunerType = setting(f"must be one of {TUNER_TYPES}")
    lora_rank: StrictInt = setting("must be an int >= 1 for LoRA")
    lora_alpha: Number = setting("must be a number > 0")
    lora_dropout: Number = setting("must be in [0, 1)")
    target_modules: Names = setting("must be a non-empty list of module names, e.g. [q_proj, v_proj]")
    learning_rate: Number = setting("must be a number > 0", gt=0)
    num_train_epochs: Number = setting("must be > 0", gt=0)
    max_steps: Annotated[StrictInt | None, BeforeValidator(_none_for_minus_one)] = setting(
        "must be an int >= 1, or -1/null to train num_train_epochs epochs", ge=1
    )
    per_device_train_batch_size: StrictInt = setting(_POSITIVE, ge=1)
    gradient_accumulation_steps: StrictInt = setting(_POSITIVE, ge=1)
    warmup_ratio: Number = setting("must be in [0, 1)", ge=0, lt=1)
    max_length: StrictInt = setting("must be an int >= 8", ge=8)
    truncation_strategy: TruncationStrategy = setting(
        f"must be one of {TRUNCATION_STRATEGIES} ('delete' drops rows longer than max_length)"
    )
    save_steps: StrictInt = setting(_POSITIVE, ge=1)
    logging_steps: StrictInt = setting(_POSITIVE, ge=1)
    torch_dtype: TorchDtype = setting(f"must be one of {TORCH_DTYPES}")
    nproc_per_node: StrictInt = setting(_POSITIVE, ge=1)
    deepspeed: DeepspeedStage | None = setting(f"must be one of {DEEPSPEED_STAGES}")
    use_liger_kernel: StrictBool = setting(_BOOL)
    dataloader_num_workers: StrictInt = setting("must be an int >= 0", ge=0)
    seed: StrictInt = setting("must be an int")
    extra_args: Annotated[dict[StrictStr, Any], BeforeValidator(_empty_mapping_if_none)] = setting(
        "must be a mapping of argument names (without leading dashes) to values", default={}
    )

    @model_validator(mode="after")
    def _check_lora_and_extra_args(self) -> SwiftTrainConfig:
        need = self.need
        if self.tuner_type == "lora":
            need(self.lora_rank >= 1, "lora_rank", "must be an int >= 1 for LoRA")
            need(self.lora_alpha > 0, "lora_alpha", "must be a number > 0")
            need(0 <= self.lora_dropout < 1, "lora_dropout", "must be in [0, 1)")
            need(
                bool(self.target_modules) and all(self.target_modules),
                "target_modules",
                "must be a non-empty list of module names, e.g. [q_proj, v_proj]",
            )
        managed = sorted(set(self.extra_args) & self.managed_args())
        need(not managed, "extra_args", f"may not set {managed}: they have their own settings")
        need(
            all(k and not k.startswith("-") for k in self.extra_args),
            "extra_args",
            "keys must be argument names without leading dashes",
        )
        return self

    @classmethod
    def managed_args(cls) -> frozenset[str]:
        """``swift sft`` arguments the launcher sets itself, which ``extra_args`` may not override."""
        return _MANAGED_ARGS


class SwiftEmbeddingConfig(SwiftTrainConfig):
    """ms-swift embedding training settings (InfoNCE); build it from conf with :meth:`from_params`."""

    infonce_temperature: Number = setting("must be a number > 0", gt=0)
    infonce_use_batch: StrictBool = setting(_BOOL)
    infonce_mask_fake_negative: StrictBool = setting(_BOOL)


# ---------------------------------------------------------------------------------------------- hardware


def check_hardware(config: SwiftTrainConfig, gpus: int | None = None) -> None:
    """Fail fast when conf asks for something this machine cannot do.

    Args:
        config: The training settings.
        gpus: GPUs available; ``None`` asks torch.

    Raises:
        TrainingError: bfloat16, ``nproc_per_node > 1`` or deepspeed without a GPU; more processes than GPUs.
    """
    gpus = gpu_count() if gpus is None else gpus
    problems = []
    if gpus == 0:
        if config.torch_dtype == "bfloat16":
            problems.append("torch_dtype: bfloat16 (use float32 or auto on CPU)")
        if config.nproc_per_node > 1:
            problems.append(f"nproc_per_node: {config.nproc_per_node} (use 1 on CPU)")
        if config.deepspeed:
            problems.append(f"deepspeed: {config.deepspeed} (use null on CPU)")
        if problems:
            raise TrainingError(
                "these swift training settings need a GPU, but none is visible on this machine: "
                + "; ".join(problems)
                + ". Change them in conf (e.g. a cpu/demo environment) or run on a GPU machine."
            )
    elif config.nproc_per_node > gpus:
        raise TrainingError(
            f"nproc_per_node: {config.nproc_per_node} but only {gpus} GPU(s) are visible; lower it in conf."
        )


# ------------------------------------------------------------------------------------------------ command
def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def swift_kernels(
    config: SwiftTrainConfig, gpus: int | None = None, *, what: str = "ms-swift"
) -> KernelChoice:
    """flash-attn 2 / sdpa and Liger on / off for this ``swift sft`` run (embedding or reranker;
    :func:`~finrag_pipelines.kernels.choose_kernels`; ``torch_dtype: auto`` leaves the dtype to swift)."""
    gpus = gpu_count() if gpus is None else gpus
    dtype = None if config.torch_dtype == "auto" else config.torch_dtype
    return choose_kernels(what, gpu=gpus > 0, dtype=dtype, liger=config.use_liger_kernel)


def swift_sft_argv(
    config: SwiftTrainConfig,
    model_dir: str | Path,
    task_args: Sequence[str],
    train_file: str | Path,
    dev_file: str | Path | None,
    output_dir: str | Path,
    *,
    kernels: KernelChoice,
    resume_from: str | Path | None = None,
    swift_bin: str | None = None,
) -> list[str]:
    """The ``swift sft`` argv of any task: model, ``task_args`` (model type, task, loss, ...), the shared
    settings of ``config``, the attention kernel (``--attn_impl``) and Liger (``--use_liger_kernel true`` only
    when on) of ``kernels``, and ``extra_args``."""
    argv = [swift_bin or swift_executable(), "sft", "--model", str(model_dir), *task_args,
            "--tuner_type", config.tuner_type]  # fmt: skip
    if config.tuner_type == "lora":
        argv += [
            "--lora_rank", _fmt(config.lora_rank),
            "--lora_alpha", _fmt(config.lora_alpha),
            "--lora_dropout", _fmt(config.lora_dropout),
            "--target_modules", *config.target_modules,
        ]  # fmt: skip
    argv += ["--dataset", str(train_file)]
    if dev_file is not None:
        argv += ["--val_dataset", str(dev_file)]
    argv += [
        "--split_dataset_ratio", "0",
        "--dataloader_drop_last", "true",
        "--label_names", "labels",
        "--report_to", "none",
        "--check_model", "false",  # else the trainer asks ModelScope if the local model is the latest (~7 s)
        "--output_dir", str(output_dir),
        "--learning_rate", _fmt(config.learning_rate),
        "--num_train_epochs", _fmt(config.num_train_epochs),
    ]  # fmt: skip
    if config.max_steps is not None:
        argv += ["--max_steps", _fmt(config.max_steps)]
    argv += [
        "--per_device_train_batch_size", _fmt(config.per_device_train_batch_size),
        "--gradient_accumulation_steps", _fmt(config.gradient_accumulation_steps),
        "--warmup_ratio", _fmt(config.warmup_ratio),
        "--max_length", _fmt(config.max_length),
        "--truncation_strategy", config.truncation_strategy,
        "--save_steps", _fmt(config.save_steps),
        "--logging_steps", _fmt(config.logging_steps),
    ]  # fmt: skip
    if config.torch_dtype != "auto":  # swift picks the model's dtype when the flag is absent
        argv += ["--torch_dtype", config.torch_dtype]
    if config.deepspeed:
        argv += ["--deepspeed", config.deepspeed]
    argv += ["--attn_impl", kernels.attn_implementation]
    if kernels.use_liger:
        argv += ["--use_liger_kernel", "true"]
    argv += [
        "--dataloader_num_workers", _fmt(config.dataloader_num_workers),
        "--seed", _fmt(config.seed),
    ]  # fmt: skip
    if resume_from is not None:
        argv += ["--resume_from_checkpoint", str(resume_from)]
    for key, value in config.extra_args.items():
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        argv += [f"--{key}", *(_fmt(v) for v in values)]
    return argv


def device_env(config: SwiftTrainConfig, gpus: int) -> dict[str, str]:
    """Environment for processes and devices: offline hub, ``NPROC_PER_NODE``, no CUDA on a CPU machine."""
    env = {"HF_HUB_OFFLINE": "1"}
    if config.nproc_per_node > 1:
        env["NPROC_PER_NODE"] = str(config.nproc_per_node)
    if gpus == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def build_sft_command(
    config: SwiftEmbeddingConfig,
    model_dir: str | Path,
    train_file: str | Path,
    dev_file: str | Path | None,
    output_dir: str | Path,
    *,
    resume_from: str | Path | None = None,
    gpus: int | None = None,
    swift_bin: str | None = None,
    kernels: KernelChoice | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Build the ``swift sft`` command for InfoNCE embedding training.

    Args:
        config: Training settings.
        model_dir: Local base model folder (Qwen3-Embedding layout).
        train_file: Training JSONL in the ms-swift embedding format.
        dev_file: Validation JSONL, or ``None`` for none.
        output_dir: Where swift writes ``v<N>-<timestamp>/checkpoint-<step>``.
        resume_from: A checkpoint to resume from (``--resume_from_checkpoint``).
        gpus: GPUs available (``None``: ask torch). With 0, ``CUDA_VISIBLE_DEVICES`` is set to ''.
        swift_bin: The ``swift`` executable (default: :func:`swift_executable`).
        kernels: Attention kernel and Liger; default: :func:`swift_kernels` on this machine.

    Returns:
        ``(argv, env)``: env holds only the variables to add to the current environment.

    Raises:
        TrainingError: If a setting needs a GPU this machine lacks.
    """
    gpus = gpu_count() if gpus is None else gpus
    check_hardware(config, gpus)
    kernels = swift_kernels(config, gpus, what="ms-swift embedding") if kernels is None else kernels
    task = ["--model_type", "qwen3_emb", "--task_type", "embedding", "--loss_type", "infonce"]
    argv = swift_sft_argv(
        config, model_dir, task, train_file, dev_file, output_dir,
        kernels=kernels, resume_from=resume_from, swift_bin=swift_bin,
    )  # fmt: skip
    env = {
        "INFONCE_TEMPERATURE": _fmt(config.infonce_temperature),
        "INFONCE_USE_BATCH": _fmt(config.infonce_use_batch),
        "INFONCE_MASK_FAKE_NEGATIVE": _fmt(config.infonce_mask_fake_negative),
        **device_env(config, gpus),
    }
    return argv, env


# ------------------------------------------------------------------------------------------------ running

_METRICS_RE = re.compile(r"\{[^{}]*'global_step/max_steps'[^{}]*\}")


def parse_progress(line: str) -> dict[str, Any] | None:
    """Parse a swift trainer log dict (``{'loss': '1.9', 'global_step/max_steps': '3/5', ...}``).

    Returns:
        The dict with ``step`` and ``max_steps`` added as ints, or ``None`` when the line holds none.
    """
    matches = _METRICS_RE.findall(line)
    if not matches:
        return None
    try:
        metrics = ast.literal_eval(matches[-1])
        step, total = str(metrics["global_step/max_steps"]).split("/")
        metrics["step"], metrics["max_steps"] = int(step), int(total)
    except (ValueError, SyntaxError, KeyError):
        return None
    return metrics


def _describe_step(metrics: Mapping[str, Any]) -> str:
    parts = [f"step {metrics['step']}/{metrics['max_steps']}"]
    for key in ("loss", "train_loss", "eval_loss", "learning_rate", "grad_norm", "elapsed_time"):
        if key in metrics:
            parts.append(f"{key} {metrics[key]}")
    return " ".join(parts)


SWIFT_LOG = LogFormat(
    label="swift",
    parse_step=parse_progress,
    describe_step=_describe_step,
    redraw_prefixes=("Train:", "Val:"),
    hints={
        "filtered dataset length: 0": (
            "rows longer than max_length are dropped under truncation_strategy: delete"
        )
    },
    notable=("last_model_checkpoint", "Dataset filtered"),
)


def run_swift(
    argv: Sequence[str], env: Mapping[str, str], log_path: str | Path, *, progress: bool = True
) -> None:
    """:func:`~finrag_pipelines.training.runs.run_logged` with swift's step lines read (:data:`SWIFT_LOG`)."""
    run_logged(argv, env, log_path, progress=progress, log_format=SWIFT_LOG)


# ------------------------------------------------------------------------------------------- orchestrator


class CommandBuilder(Protocol):
    """Builds ``(argv, env)`` of one ``swift sft`` run (e.g. :func:`build_sft_command`)."""

    def __call__(
        self,
        config: Any,
        model_dir: str | Path,
        train_file: str | Path,
        dev_file: str | Path | None,
        output_dir: str | Path,
        *,
        resume_from: str | Path | None = None,
        kernels: KernelChoice | None = None,
    ) -> tuple[list[str], dict[str, str]]: ...


def train_swift(
    config: SwiftTrainConfig,
    build_command: CommandBuilder,
    model_dir: str | Path,
    train_file: str | Path,
    dev_file: str | Path | None,
    work_dir: str | Path,
    merged_dir: str | Path,
    *,
    what: str,
    progress: bool = True,
) -> Path:
    """Train, resume or skip, then merge: one ms-swift fine-tuning step (embedding, reranker).

    ``work_dir`` holds swift's runs (``runs/<data hash>-<config hash>/``), ``train.log`` and
    ``manifest.json`` (also copied into ``merged_dir`` as ``training_manifest.json``). A finished run with
    the same data, config and base model is not retrained (only re-merged if ``merged_dir`` is gone); an
    unfinished one with the same hashes resumes from its last checkpoint (``--resume_from_checkpoint``).

    Args:
        what: What is trained, for the log (e.g. "embedding model").

    Returns:
        ``merged_dir``, a plain model folder.
    """
    work_dir, merged_dir = Path(work_dir), Path(merged_dir)
    run = TrainingRun(
        work_dir, config=config, data_files={"train": train_file, "dev": dev_file}, base_model=model_dir
    )
    runs_dir = work_dir / "runs" / run.key
    if run.is_up_to_date(merged_dir):
        logger.info("%s in %s is up to date (%s); not retraining", what, merged_dir, run.manifest_path)
        return merged_dir
    previous = run.previous()
    finished = (
        run.recorded_path(previous, "checkpoint")
        if previous and previous.get("status") == "finished"
        else None
    )
    if finished is not None and finished.is_dir():
        logger.info("training already finished (%s); merging its checkpoint again", finished)
        merge_swift_checkpoint(finished, merged_dir, log_path=run.log_path)
        copy_manifest(run.manifest_path, merged_dir)
        return merged_dir
    try:
        resume_from: Path | None = find_last_swift_checkpoint(runs_dir)
        logger.info("resuming an unfinished run of the same data and config from %s", resume_from)
    except FileNotFoundError:
        resume_from = None
    kernels = swift_kernels(config, what=f"ms-swift {what}")
    argv, env = build_command(
        config, model_dir, train_file, dev_file, runs_dir, resume_from=resume_from, kernels=kernels
    )
    run.start(argv, env, kernels=kernels.to_dict())
    run_swift(argv, env, run.log_path, progress=progress)
    checkpoint = find_last_swift_checkpoint(runs_dir)
    merge_swift_checkpoint(checkpoint, merged_dir, log_path=run.log_path)
    run.finish(merged_dir, checkpoint=checkpoint)
    return merged_dir


def train_embedding(
    config: SwiftEmbeddingConfig,
    model_dir: str | Path,
    train_file: str | Path,
    dev_file: str | Path | None,
    work_dir: str | Path,
    merged_dir: str | Path,
    *,
    progress: bool = True,
) -> Path:
    """The whole embedding fine-tuning step (:func:`train_swift` with :func:`build_sft_command`).

    Returns:
        ``merged_dir``, a plain model folder loadable by ``HFEncoder``.
    """
    return train_swift(
        config, build_sft_command, model_dir, train_file, dev_file, work_dir, merged_dir,
        what="embedding model", progress=progress,
    )  # fmt: skip
