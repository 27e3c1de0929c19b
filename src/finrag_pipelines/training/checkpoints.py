"""Trainer checkpoints: find the last one, turn it into a plain Hugging Face model folder.

* ms-swift: ``<output_dir>/v<N>-<YYYYMMDD-HHMMSS>/checkpoint-<step>`` (:func:`find_last_swift_checkpoint`);
  LoRA merged with ``swift export --merge_lora``, full checkpoints copied without optimizer state
  (:func:`merge_swift_checkpoint`).
* verl: ``<default_local_dir>/global_step_<N>/`` (SFT) or ``global_step_<N>/actor/`` (PPO/GRPO), with
  ``model_world_size_<W>_rank_<R>.pt``, ``fsdp_config.json``, ``huggingface/`` and, for LoRA,
  ``lora_train_meta.json``; ``latest_checkpointed_iteration.txt`` names the newest step
  (:func:`find_last_verl_checkpoint`). ``python -m verl.model_merger merge --backend fsdp`` writes the
  *base* weights (bfloat16) plus ``lora_adapter/``, which :func:`merge_verl_checkpoint` folds in with PEFT.

Every merge writes a staging folder next to ``out_dir`` and renames it into place.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from finrag_pipelines.training.machine import cpu_available_only, swift_executable
from finrag_pipelines.training.runs import LogFormat, TrainingError, run_logged

logger = logging.getLogger(__name__)

# swift checkpoint files that are training state, not model
_STATE_FILES = ("optimizer.pt", "scheduler.pt", "training_args.bin", "trainer_state.json", "zero_to_fp32.py")
_STEP_DIR_RE = re.compile(r"^global_step_(\d+)$")


# -------------------------------------------------------------------------------------------------- swift

_RUN_RE = re.compile(r"^v(\d+)-(\d{8}-\d{6})$")
_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")


def find_last_swift_checkpoint(output_dir: str | Path) -> Path:
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


def merge_swift_checkpoint(
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
        run_logged(argv, merge_env, log_path, progress=False, log_format=LogFormat(label="swift export"))
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


# --------------------------------------------------------------------------------------------------- verl


def find_last_verl_checkpoint(checkpoint_dir: str | Path, *, role: str | None = None) -> Path:
    """The newest complete verl checkpoint under a ``default_local_dir``.

    SFT saves ``global_step_<N>/`` itself; PPO/GRPO saves the actor in ``global_step_<N>/actor/``
    (pass ``role="actor"``). Prefers the step named in ``latest_checkpointed_iteration.txt`` (verl
    writes it after a save completes); otherwise the highest step holding ``fsdp_config.json``.

    Returns:
        The folder to hand to :func:`merge_verl_checkpoint` (``global_step_<N>`` or
        ``global_step_<N>/<role>``).

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


def merge_verl_checkpoint(
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
    run_logged(argv, merge_env, log_path, progress=False, log_format=LogFormat(label="verl merger"))
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
