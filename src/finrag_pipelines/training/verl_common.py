"""What verl 0.9 SFT (:mod:`.verl_sft`) and GRPO (:mod:`.verl_grpo`) share.

* :class:`VerlConfig`: the settings both trainers have (paths, LoRA, schedule, logging, extra Hydra
  overrides) and their rules; its config hash leaves out file locations (data is hashed by content)
  and hashes the content of the reward function and tool config instead.
* :func:`hydra_value`: a Python value as a Hydra override value.
* :func:`run_verl`, :func:`parse_step_metrics`, :func:`last_step_metrics`, :func:`root_cause`: run verl
  with its ``step:3 - train/loss:1.9 …`` console lines read, and name the worker's exception on failure.
* :func:`train_and_merge`: the shared tail of both trainers: record, run, find the checkpoint, merge.

Checked against the installed verl 0.9.1 sources: checkpoints and the model merger as described in
:mod:`~finrag_pipelines.training.checkpoints`; ``trainer.logger`` is a list; ``trainer.resume_mode=auto``
resumes from the newest ``global_step_<N>`` in ``trainer.default_local_dir``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, StrictInt, StrictStr, model_validator

from finrag_pipelines.kernels import KernelChoice
from finrag_pipelines.training.checkpoints import find_last_verl_checkpoint, merge_verl_checkpoint
from finrag_pipelines.training.runs import LogFormat, TrainingError, TrainingRun, file_sha256, run_logged
from finrag_pipelines.training.trainer_config import (
    NOT_BLANK,
    Names,
    Number,
    PathText,
    TrainerConfig,
    setting,
)

logger = logging.getLogger(__name__)

Truncation = Literal["error", "left", "right"]
LoggerName = Literal[
    "console", "wandb", "swanlab", "mlflow", "tensorboard", "vemlp_wandb", "clearml", "trackio", "file"
]
TRUNCATIONS = get_args(Truncation)
LOGGERS = get_args(LoggerName)
_SAFE_VALUE_RE = re.compile(r"^[\w./~:@+\-]+$")
# file locations: not hashed (data is hashed by content, the reward and tool config below)
_PATH_FIELDS = (
    "model_path",
    "train_files",
    "val_files",
    "output_dir",
    "reward_function_path",
    "tool_config_path",
)


def _check_freq(value: Any) -> Any:
    if isinstance(value, int) and not (value >= 1 or value == -1):
        raise ValueError("out of range")
    return value


def _empty_if_none(value: Any) -> Any:
    return () if value is None else value


PATH_RULE = "must be a path"
TEXT_RULE = "must be a non-empty string"
POSITIVE_RULE = "must be an int >= 1"
BOOL_RULE = "must be true or false"
Freq = Annotated[StrictInt | Literal["after_each_epoch"], AfterValidator(_check_freq)]
FREQ_RULE = "must be an int >= 1, -1 (never) or 'after_each_epoch'"
Overrides = Annotated[tuple[StrictStr, ...], BeforeValidator(_empty_if_none)]


class VerlConfig(TrainerConfig):
    """Settings of both verl trainers. ``lora_rank`` 0 is full tuning (LoRA settings then unchecked);
    ``extra_overrides`` holds more Hydra overrides (``key=value``) for keys without a setting here."""

    packages: ClassVar[tuple[str, ...]] = (
        "verl", "torch", "transformers", "peft", "ray", "vllm", "sglang", "liger-kernel", "flash-attn",
    )  # fmt: skip
    managed: ClassVar[frozenset[str]] = frozenset()
    """Hydra keys the command sets from a setting; ``extra_overrides`` may not set them."""

    model_path: PathText = setting(PATH_RULE, pattern=NOT_BLANK)
    train_files: PathText = setting(PATH_RULE, pattern=NOT_BLANK)
    output_dir: PathText = setting(PATH_RULE, pattern=NOT_BLANK)
    lora_rank: StrictInt = setting("must be an int >= 0 (0 = full tuning)", ge=0)
    lora_alpha: StrictInt = setting("must be an int > 0 (verl stores it as an int)")
    target_modules: Literal["all-linear"] | Names = setting(
        "must be 'all-linear' or a non-empty list of module names, e.g. [q_proj, v_proj]"
    )
    learning_rate: Number = setting("must be a number > 0", gt=0)
    lr_warmup_steps_ratio: Number = setting("must be in [0, 1)", ge=0, lt=1)
    total_epochs: StrictInt = setting(POSITIVE_RULE, ge=1)
    save_freq: Freq = setting(FREQ_RULE)
    test_freq: Freq = setting(FREQ_RULE)
    project_name: StrictStr = setting(TEXT_RULE, pattern=NOT_BLANK)
    experiment_name: StrictStr = setting(TEXT_RULE, pattern=NOT_BLANK)
    logger: Annotated[tuple[LoggerName, ...], BeforeValidator(_empty_if_none)] = setting(
        f"must be a non-empty list drawn from {LOGGERS}", min_length=1
    )
    seed: StrictInt = setting("must be an int")
    extra_overrides: Overrides = setting("must be a list of Hydra overrides 'key=value'", default=())

    @model_validator(mode="after")
    def _check_lora_and_overrides(self) -> VerlConfig:
        if self.lora_rank > 0:
            self.need(self.lora_alpha > 0, "lora_alpha", "must be an int > 0 (verl stores it as an int)")
            self.need(
                self.target_modules == "all-linear"
                or (bool(self.target_modules) and all(self.target_modules)),
                "target_modules",
                "must be 'all-linear' or a non-empty list of module names, e.g. [q_proj, v_proj]",
            )
        for item in self.extra_overrides:
            self.need(
                "=" in item and not item.startswith("-"),
                "extra_overrides",
                f"each item must be a Hydra override 'key=value', got {item!r}",
            )
            key = item.split("=", 1)[0].lstrip("+~")
            self.need(
                key not in self.managed, "extra_overrides", f"may not set {key!r}: it has its own setting"
            )
        return self

    def data_files(self) -> dict[str, str | None]:
        """The data files this config trains on, named for the data hash."""
        return {"train": self.train_files, "val": getattr(self, "val_files", None)}

    def hash_fields(self) -> dict[str, Any]:
        """The settings without file locations, plus the content of the reward function and tool config."""
        settings = {k: v for k, v in self.to_dict().items() if k not in _PATH_FIELDS}
        files = {}
        for name in ("reward_function_path", "tool_config_path"):  # their content shapes the run
            path = getattr(self, name, None)
            if path is not None and Path(path).is_file():
                files[name] = file_sha256(path)
        return {"kind": type(self).__name__, "config": settings, "files": files}


def kernel_overrides(model: str, kernels: KernelChoice) -> dict[str, Any]:
    """The Hydra overrides that make verl run ``kernels`` for the HF model under ``model`` (``"model"`` in
    SFT, ``"actor_rollout_ref.model"`` in GRPO).

    verl loads the model with ``flash_attention_2`` unless ``override_config.attn_implementation`` says
    otherwise, and its remove-padding path packs sequences relying on flash-attn's varlen masking: without
    flash-attn both are switched (sdpa, ``use_remove_padding`` false). ``use_liger`` follows the decision,
    never the request alone.
    """
    overrides: dict[str, Any] = {
        f"{model}.use_liger": kernels.use_liger,
        f"+{model}.override_config.attn_implementation": kernels.attn_implementation,
    }
    if not kernels.flash:
        overrides[f"{model}.use_remove_padding"] = False
    return overrides


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


def check_base_model(path: str | Path) -> None:
    """Fail fast when the model to train from is not a local model folder."""
    if not (Path(path) / "config.json").is_file():
        raise TrainingError(
            f"model_path {path} is not a model folder (no config.json); put a local HF checkpoint there "
            "(nothing is downloaded) or point the launch's base_model_path at one."
        )


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


def _describe_step(metrics: Mapping[str, Any]) -> str:
    shown = [f"{key} {value}" for key, value in metrics.items() if key.endswith(("loss", "score/mean"))]
    return " ".join([f"step {metrics['step']}", *shown])


VERL_LOG = LogFormat(label="verl", parse_step=parse_step_metrics, describe_step=_describe_step)


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
    """:func:`~finrag_pipelines.training.runs.run_logged`, with verl's root cause put first on failure.

    torchrun ends a failed run with ~25 lines of its own traceback, which would fill the log tail;
    the worker's exception is looked up in the log and named in the error message.
    """
    try:
        run_logged(argv, env, log_path, progress=progress, log_format=VERL_LOG)
    except TrainingError as exc:
        cause = root_cause(log_path)
        if cause is None or exc.returncode is None:
            raise
        raise TrainingError(
            f"verl failed: {cause}\n{exc}", returncode=exc.returncode, argv=exc.argv, tail=exc.tail
        ) from exc


# ----------------------------------------------------------------------------------------- orchestration


def training_run(config: VerlConfig) -> TrainingRun:
    """The bookkeeping of a verl run in ``config.output_dir`` (hashes the data and the base model)."""
    return TrainingRun(
        config.output_dir, config=config, data_files=config.data_files(), base_model=config.model_path
    )


def train_and_merge(
    run: TrainingRun,
    argv: Sequence[str],
    env: Mapping[str, str],
    checkpoint_dir: Path,
    merged_dir: Path,
    *,
    role: str | None = None,
    progress: bool = True,
    merge_env: Mapping[str, str] | None = None,
    kernels: KernelChoice | None = None,
) -> Path:
    """Record the run (with the ``kernels`` it uses), run verl, merge its last checkpoint
    (``global_step_<N>[/<role>]``) into ``merged_dir`` and record the run as finished with its last logged
    metrics."""
    run.start(argv, env, kernels=kernels.to_dict() if kernels is not None else None)
    run_verl(argv, env, run.log_path, progress=progress)
    metrics = last_step_metrics(run.log_path)
    logger.info("verl %s finished: %s", type(run.config).__name__, metrics)
    checkpoint = find_last_verl_checkpoint(checkpoint_dir, role=role)
    merge_verl_checkpoint(
        checkpoint, merged_dir, log_path=run.log_path, base_model=run.base_model, env=merge_env
    )
    run.finish(merged_dir, checkpoint=checkpoint, metrics=metrics)
    return merged_dir
