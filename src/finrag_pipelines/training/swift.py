"""Kedro-free launcher for ms-swift 4.x embedding training (InfoNCE, ``qwen3_emb``).

The pieces, each usable on its own:

* :class:`SwiftEmbeddingConfig`: every training knob, read from conf (no defaults hidden here).
* :func:`build_sft_command`: the exact ``swift sft`` argv and the environment knobs it needs.
* :func:`run_logged`: run it, stream its output into a log file and the Python logger, show progress,
  raise :class:`TrainingError` with the last log lines when it fails.
* :func:`find_last_checkpoint`, :func:`merge_lora`: locate the result, turn it into a plain model folder.
* :func:`write_manifest`, :func:`is_up_to_date`: record what was trained from what; skip finished runs.
* :func:`train_embedding`: all of the above in order, with resume and skip.

Checked against ms-swift 4.6.0: ``--tuner_type`` (``--train_type`` is rejected), ``--val_dataset``,
``--lora_rank/--lora_alpha/--lora_dropout/--target_modules``, ``--torch_dtype`` (bfloat16|float16|float32;
omitted for "auto"), ``--deepspeed zero2|zero3`` (names mapped to bundled JSON configs),
``--truncation_strategy delete|left|right`` (swift's default, delete, silently drops every row longer
than ``max_length``), ``swift export --adapters <ckpt> --merge_lora true --output_dir <dir>``.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import datetime as _dt
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TUNER_TYPES = ("lora", "full")
TORCH_DTYPES = ("float32", "bfloat16", "auto")
DEEPSPEED_STAGES = (None, "zero2", "zero3")
TRUNCATION_STRATEGIES = ("delete", "left", "right")
MANIFEST_NAME = "manifest.json"
_TAIL_LINES = 30

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
    }
)

# checkpoint files that are training state, not model
_STATE_FILES = ("optimizer.pt", "scheduler.pt", "training_args.bin", "trainer_state.json", "zero_to_fp32.py")


class TrainingError(RuntimeError):
    """A training or export subprocess failed, or the run cannot start on this machine."""

    def __init__(
        self,
        message: str,
        *,
        returncode: int | None = None,
        argv: Sequence[str] = (),
        tail: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.argv = list(argv)
        self.tail = list(tail)


@dataclass(frozen=True)
class SwiftEmbeddingConfig:
    """ms-swift embedding training settings; build it from conf with :meth:`from_params`.

    Every field except ``extra_args`` is required: the defaults live in ``conf/``, not here.
    ``max_steps`` None or -1 means "train ``num_train_epochs`` epochs". ``extra_args`` holds more
    ``--key value`` pairs for ``swift sft`` (keys without the dashes; lists become several values,
    booleans ``true``/``false``).
    """

    tuner_type: str
    lora_rank: int
    lora_alpha: float
    lora_dropout: float
    target_modules: tuple[str, ...]
    learning_rate: float
    num_train_epochs: float
    max_steps: int | None
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    warmup_ratio: float
    max_length: int
    truncation_strategy: str
    save_steps: int
    logging_steps: int
    torch_dtype: str
    nproc_per_node: int
    deepspeed: str | None
    infonce_temperature: float
    infonce_use_batch: bool
    infonce_mask_fake_negative: bool
    dataloader_num_workers: int
    seed: int
    extra_args: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # normalise containers so the frozen object is comparable and JSON-able
        object.__setattr__(self, "target_modules", tuple(self.target_modules or ()))
        object.__setattr__(self, "extra_args", dict(self.extra_args or {}))
        if self.max_steps == -1:
            object.__setattr__(self, "max_steps", None)
        self._validate()

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> SwiftEmbeddingConfig:
        """Build from a conf mapping; unknown or missing keys raise ``ValueError`` naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - names)
        if unknown:
            raise ValueError(f"unknown swift training setting(s) {unknown}; allowed: {sorted(names)}.")
        missing = sorted(n for n in names - set(params) if n != "extra_args")
        if missing:
            raise ValueError(f"swift training setting(s) {missing} missing from conf; set them explicitly.")
        return cls(**dict(params))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (what :func:`config_hash` hashes)."""
        data = dataclasses.asdict(self)
        data["target_modules"] = list(self.target_modules)
        data["extra_args"] = dict(self.extra_args)
        return data

    def _validate(self) -> None:
        def need(cond: bool, name: str, rule: str) -> None:
            if not cond:
                raise ValueError(f"swift training setting {name}={getattr(self, name)!r}: {rule}.")

        def is_int(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        def is_num(value: Any) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool)

        need(self.tuner_type in TUNER_TYPES, "tuner_type", f"must be one of {TUNER_TYPES}")
        if self.tuner_type == "lora":
            need(is_int(self.lora_rank) and self.lora_rank >= 1, "lora_rank", "must be an int >= 1 for LoRA")
            need(is_num(self.lora_alpha) and self.lora_alpha > 0, "lora_alpha", "must be a number > 0")
            need(
                is_num(self.lora_dropout) and 0 <= self.lora_dropout < 1, "lora_dropout", "must be in [0, 1)"
            )
            need(
                bool(self.target_modules) and all(isinstance(m, str) and m for m in self.target_modules),
                "target_modules",
                "must be a non-empty list of module names, e.g. [q_proj, v_proj]",
            )
        need(is_num(self.learning_rate) and self.learning_rate > 0, "learning_rate", "must be a number > 0")
        need(is_num(self.num_train_epochs) and self.num_train_epochs > 0, "num_train_epochs", "must be > 0")
        need(
            self.max_steps is None or (is_int(self.max_steps) and self.max_steps >= 1),
            "max_steps",
            "must be an int >= 1, or -1/null to train num_train_epochs epochs",
        )
        for name in (
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "save_steps",
            "logging_steps",
            "nproc_per_node",
        ):
            need(is_int(getattr(self, name)) and getattr(self, name) >= 1, name, "must be an int >= 1")
        need(is_int(self.max_length) and self.max_length >= 8, "max_length", "must be an int >= 8")
        need(
            self.truncation_strategy in TRUNCATION_STRATEGIES,
            "truncation_strategy",
            f"must be one of {TRUNCATION_STRATEGIES} ('delete' drops rows longer than max_length)",
        )
        need(is_num(self.warmup_ratio) and 0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
        need(self.torch_dtype in TORCH_DTYPES, "torch_dtype", f"must be one of {TORCH_DTYPES}")
        need(self.deepspeed in DEEPSPEED_STAGES, "deepspeed", f"must be one of {DEEPSPEED_STAGES}")
        need(
            is_num(self.infonce_temperature) and self.infonce_temperature > 0,
            "infonce_temperature",
            "must be a number > 0",
        )
        need(isinstance(self.infonce_use_batch, bool), "infonce_use_batch", "must be true or false")
        need(
            isinstance(self.infonce_mask_fake_negative, bool),
            "infonce_mask_fake_negative",
            "must be true or false",
        )
        need(
            is_int(self.dataloader_num_workers) and self.dataloader_num_workers >= 0,
            "dataloader_num_workers",
            "must be an int >= 0",
        )
        need(is_int(self.seed), "seed", "must be an int")
        managed = sorted(set(self.extra_args) & _MANAGED_ARGS)
        need(not managed, "extra_args", f"may not set {managed}: they have their own settings")
        need(
            all(isinstance(k, str) and k and not k.startswith("-") for k in self.extra_args),
            "extra_args",
            "keys must be argument names without leading dashes",
        )


# ---------------------------------------------------------------------------------------------- hardware


def gpu_count() -> int:
    """Number of CUDA devices torch sees (0 without torch/CUDA, or with ``CUDA_VISIBLE_DEVICES=''``)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def cpu_available_only() -> bool:
    """True when no GPU is visible: training then runs on CPU."""
    return gpu_count() == 0


def check_hardware(config: SwiftEmbeddingConfig, gpus: int | None = None) -> None:
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


def swift_executable() -> str:
    """The ``swift`` console script of this interpreter's environment (else the one on PATH)."""
    local = Path(sys.executable).parent / "swift"
    if local.is_file():
        return str(local)
    found = shutil.which("swift")
    if found is None:
        raise TrainingError(
            "the `swift` command (ms-swift) is not installed; install it with pip install -e '.[swift]'."
        )
    return found


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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

    Returns:
        ``(argv, env)``: env holds only the variables to add to the current environment.

    Raises:
        TrainingError: If a setting needs a GPU this machine lacks.
    """
    gpus = gpu_count() if gpus is None else gpus
    check_hardware(config, gpus)
    argv = [
        swift_bin or swift_executable(), "sft",
        "--model", str(model_dir),
        "--model_type", "qwen3_emb",
        "--task_type", "embedding",
        "--loss_type", "infonce",
        "--tuner_type", config.tuner_type,
    ]  # fmt: skip
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

    env = {
        "INFONCE_TEMPERATURE": _fmt(config.infonce_temperature),
        "INFONCE_USE_BATCH": _fmt(config.infonce_use_batch),
        "INFONCE_MASK_FAKE_NEGATIVE": _fmt(config.infonce_mask_fake_negative),
        "HF_HUB_OFFLINE": "1",
    }
    if config.nproc_per_node > 1:
        env["NPROC_PER_NODE"] = str(config.nproc_per_node)
    if gpus == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""
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


def run_logged(
    argv: Sequence[str],
    env: Mapping[str, str],
    log_path: str | Path,
    *,
    cwd: str | Path | None = None,
    progress: bool = True,
) -> None:
    """Run a command, streaming its output line by line into ``log_path`` and the logger.

    Training metrics lines become INFO "step 3/5 loss …" messages and move a tqdm bar; warnings,
    errors and swift's checkpoint messages are logged at INFO/WARNING, the rest at DEBUG.

    Args:
        argv: The command.
        env: Variables added to the current environment.
        log_path: Log file (appended to; its folder is created).
        cwd: Working folder.
        progress: Show a tqdm bar for training steps.

    Raises:
        TrainingError: On a non-zero exit, with the exit code, the command and the last log lines.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    bar = None
    logger.info("running: %s", _shell_join(argv))
    started = time.monotonic()
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"# {_now()} env {json.dumps(dict(env), ensure_ascii=False)}\n# $ {_shell_join(argv)}\n")
        log.flush()
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=full_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
            )
        except OSError as exc:
            raise TrainingError(f"could not start {argv[0]!r}: {exc}", argv=argv) from exc
        assert proc.stdout is not None
        try:
            for raw in proc.stdout:
                log.write(raw)
                log.flush()
                # tqdm redraws with \r: keep the last non-empty segment of each redraw run
                for segment in raw.rstrip("\n").split("\r"):
                    text = segment.strip()
                    if not text:
                        continue
                    metrics = parse_progress(text)
                    if metrics is not None:
                        tail.append(text)
                        logger.info("%s", _describe_step(metrics))
                        if progress:
                            if bar is None:
                                from tqdm.auto import tqdm

                                bar = tqdm(total=metrics["max_steps"], desc="swift", unit="step")
                            bar.update(max(0, metrics["step"] - bar.n))
                        continue
                    if text.startswith(("Train:", "Val:")) or "it/s]" in text or "s/it]" in text:
                        continue  # tqdm redraws
                    tail.append(text)
                    if "Error" in text or "Traceback" in text or "[ERROR" in text:
                        logger.warning("swift: %s", text)
                    elif "filtered dataset length: 0" in text:
                        logger.warning(
                            "swift: %s (rows longer than max_length are dropped under "
                            "truncation_strategy: delete)",
                            text,
                        )
                    elif "last_model_checkpoint" in text or "Dataset filtered" in text:
                        logger.info("swift: %s", text)
                    else:
                        logger.debug("swift: %s", text)
        finally:
            returncode = proc.wait()
            if bar is not None:
                bar.close()
        log.write(f"# {_now()} exit {returncode} after {time.monotonic() - started:.1f}s\n")
    if returncode != 0:
        last = "\n".join(tail)
        raise TrainingError(
            f"command failed with exit code {returncode}: {_shell_join(argv)}\n"
            f"full log: {log_path}\nlast {len(tail)} lines:\n{last}",
            returncode=returncode,
            argv=argv,
            tail=list(tail),
        )
    logger.info("finished in %.1fs: %s", time.monotonic() - started, argv[:2])


def _shell_join(argv: Sequence[str]) -> str:
    import shlex

    return shlex.join(str(a) for a in argv)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# -------------------------------------------------------------------------------------------- checkpoints

_RUN_RE = re.compile(r"^v(\d+)-(\d{8}-\d{6})$")
_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")


def find_last_checkpoint(output_dir: str | Path) -> Path:
    """Return the highest-step checkpoint of the newest swift run under ``output_dir``.

    swift writes ``<output_dir>/v<N>-<YYYYMMDD-HHMMSS>/checkpoint-<step>``. Runs are ordered by
    version number then timestamp; a newest run without any checkpoint (crashed early) is skipped
    with a warning. ``checkpoint-<step>-merged`` folders are ignored.

    Raises:
        FileNotFoundError: If there is no checkpoint at all.
    """
    root = Path(output_dir)
    runs = []
    if root.is_dir():
        for child in root.iterdir():
            match = _RUN_RE.match(child.name)
            if match and child.is_dir():
                runs.append(((int(match.group(1)), match.group(2)), child))
    for _, run in sorted(runs, reverse=True):
        steps = [
            (int(m.group(1)), c)
            for c in run.iterdir()
            if c.is_dir() and not c.is_symlink() and (m := _CKPT_RE.match(c.name))
            and ((c / "adapter_config.json").is_file() or (c / "config.json").is_file())
        ]  # fmt: skip
        if steps:
            return max(steps)[1]
        logger.warning("swift run %s holds no checkpoint; looking at older runs", run)
    raise FileNotFoundError(
        f"no swift checkpoint under {root} (expected v<N>-<timestamp>/checkpoint-<step>); "
        "did training run, and is save_steps <= the number of steps?"
    )


def merge_lora(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    log_path: str | Path,
    env: Mapping[str, str] | None = None,
    swift_bin: str | None = None,
) -> Path:
    """Turn a swift checkpoint into a plain model folder at ``out_dir`` (replaced if present).

    LoRA checkpoints (``adapter_config.json``) are merged with
    ``swift export --adapters <ckpt> --merge_lora true --output_dir <tmp>`` (the base model path is
    read from the checkpoint's ``args.json``); full checkpoints are copied without optimizer state.

    Returns:
        ``out_dir``.

    Raises:
        FileNotFoundError: If ``checkpoint`` is not a swift checkpoint.
        TrainingError: If the export fails.
    """
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.staging-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    if (checkpoint / "adapter_config.json").is_file():
        merge_env = {"HF_HUB_OFFLINE": "1", **(env or {})}
        if cpu_available_only():
            merge_env.setdefault("CUDA_VISIBLE_DEVICES", "")
        argv = [
            swift_bin or swift_executable(), "export",
            "--adapters", str(checkpoint),
            "--merge_lora", "true",
            "--output_dir", str(staging),
        ]  # fmt: skip
        run_logged(argv, merge_env, log_path, progress=False)
        if not (staging / "config.json").is_file():
            raise TrainingError(f"swift export finished but {staging} holds no config.json", argv=argv)
    elif (checkpoint / "config.json").is_file():
        shutil.copytree(
            checkpoint,
            staging,
            ignore=shutil.ignore_patterns(*_STATE_FILES, "rng_state*.pth", "global_step*"),
        )
    else:
        raise FileNotFoundError(
            f"{checkpoint} is not a swift checkpoint (no adapter_config.json/config.json)."
        )
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    logger.info("model from %s written to %s", checkpoint, out_dir)
    return out_dir


# ---------------------------------------------------------------------------------------------- manifests


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's full content."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def data_hash(data_files: Mapping[str, str | Path | None]) -> str:
    """One hash over named data files (e.g. ``{"train": ..., "dev": None}``) by content."""
    parts = {name: (file_sha256(p) if p is not None else None) for name, p in sorted(data_files.items())}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def config_hash(config: SwiftEmbeddingConfig, base_model_fingerprint: str | None = None) -> str:
    """Hash of the training settings (and of the base model, when given)."""
    payload = {"config": config.to_dict(), "base_model": base_model_fingerprint}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape a training run."""
    versions: dict[str, str | None] = {}
    for name in ("torch", "transformers", "ms-swift", "peft", "deepspeed"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def base_model_fingerprint(model_dir: str | Path) -> str:
    """Content hash of a model folder (config, tokenizer, weights), as encoders use it."""
    from finrag_pipelines.embedding.fingerprint import hash_model_folder

    return hash_model_folder(Path(model_dir))


def write_manifest(
    path: str | Path,
    *,
    argv: Sequence[str],
    env_knobs: Mapping[str, str],
    data_files: Mapping[str, str | Path | None],
    base_model: str | Path,
    started: str,
    finished: str | None,
    output: str | Path | None,
    config: SwiftEmbeddingConfig | None = None,
    checkpoint: str | Path | None = None,
    status: str = "finished",
) -> dict[str, Any]:
    """Write a JSON manifest of a training run (atomically) and return it.

    Records the command, env knobs, package versions, data file sha256s and their combined
    ``data_hash``, the base model fingerprint, ``config_hash``, timestamps, checkpoint and output.
    """
    fingerprint = base_model_fingerprint(base_model)
    manifest: dict[str, Any] = {
        "status": status,
        "argv": [str(a) for a in argv],
        "env_knobs": dict(env_knobs),
        "versions": package_versions(),
        "data_files": {
            name: ({"path": str(p), "sha256": file_sha256(p)} if p is not None else None)
            for name, p in sorted(data_files.items())
        },
        "data_hash": data_hash(data_files),
        "base_model": {"path": str(base_model), "fingerprint": fingerprint},
        "config": config.to_dict() if config is not None else None,
        "config_hash": config_hash(config, fingerprint) if config is not None else None,
        "started": started,
        "finished": finished,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "output": str(output) if output is not None else None,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return manifest


def has_model(folder: Path) -> bool:
    """A finished HF model folder: ``config.json`` and safetensors weights."""
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def is_up_to_date(manifest_path: str | Path, data_hash: str, config_hash: str) -> bool:
    """True when a finished run with the same data and config hashes left an existing model."""
    path = Path(manifest_path)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if manifest.get("status") != "finished" or not manifest.get("output"):
        return False
    if manifest.get("data_hash") != data_hash or manifest.get("config_hash") != config_hash:
        return False
    output = Path(manifest["output"])
    if not output.is_absolute():
        output = path.parent / output
    return has_model(output)


# ------------------------------------------------------------------------------------------- orchestrator


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
    """Train, resume or skip, then merge: the whole embedding fine-tuning step.

    ``work_dir`` holds swift's runs (``runs/<data hash>-<config hash>/``), ``train.log`` and
    ``manifest.json`` (also copied into ``merged_dir`` as ``training_manifest.json``). A finished run with the same data, config and base
    model is not retrained (only re-merged if ``merged_dir`` is gone); an unfinished one with the same
    hashes resumes from its last checkpoint (``--resume_from_checkpoint``).

    Returns:
        ``merged_dir``, a plain model folder loadable by ``HFEncoder``.
    """
    work_dir, merged_dir = Path(work_dir), Path(merged_dir)
    files = {"train": train_file, "dev": dev_file}
    d_hash = data_hash(files)
    c_hash = config_hash(config, base_model_fingerprint(model_dir))
    manifest_path = work_dir / MANIFEST_NAME
    # one runs folder per (data, config): a resume can only ever pick up a checkpoint of the same run
    runs_dir = work_dir / "runs" / f"{d_hash[:10]}-{c_hash[:10]}"
    if is_up_to_date(manifest_path, d_hash, c_hash) and has_model(merged_dir):
        logger.info("embedding model in %s is up to date (%s); not retraining", merged_dir, manifest_path)
        return merged_dir
    try:
        previous = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = None
    same_run = (
        bool(previous) and previous.get("data_hash") == d_hash and previous.get("config_hash") == c_hash
    )
    if (
        same_run
        and previous.get("status") == "finished"
        and previous.get("checkpoint")
        and Path(previous["checkpoint"]).is_dir()
    ):
        logger.info("training already finished (%s); merging its checkpoint again", previous["checkpoint"])
        merge_lora(previous["checkpoint"], merged_dir, log_path=work_dir / "train.log")
        _copy_manifest(manifest_path, merged_dir)
        return merged_dir
    try:
        resume_from: Path | None = find_last_checkpoint(runs_dir)
        logger.info("resuming an unfinished run of the same data and config from %s", resume_from)
    except FileNotFoundError:
        resume_from = None
    argv, env = build_sft_command(config, model_dir, train_file, dev_file, runs_dir, resume_from=resume_from)
    started = _now()
    common: dict[str, Any] = {
        "argv": argv,
        "env_knobs": env,
        "data_files": files,
        "base_model": model_dir,
        "started": started,
        "config": config,
    }
    write_manifest(manifest_path, finished=None, output=None, status="running", **common)
    log_path = work_dir / "train.log"
    run_logged(argv, env, log_path, progress=progress)
    checkpoint = find_last_checkpoint(runs_dir)
    merge_lora(checkpoint, merged_dir, log_path=log_path)
    write_manifest(
        manifest_path, finished=_now(), output=merged_dir.resolve(), checkpoint=checkpoint.resolve(), **common
    )
    _copy_manifest(manifest_path, merged_dir)
    return merged_dir


def _copy_manifest(manifest_path: Path, merged_dir: Path) -> None:
    """Put the run's manifest inside the model folder too (not hashed into encoder fingerprints)."""
    shutil.copyfile(manifest_path, merged_dir / "training_manifest.json")
