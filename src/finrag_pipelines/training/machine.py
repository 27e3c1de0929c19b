"""What this machine offers a trainer: visible GPUs and the console scripts of this environment."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from finrag_pipelines.training.runs import TrainingError


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


def console_script(name: str, missing: str) -> str:
    """The console script ``name`` of this interpreter's environment, else the one on PATH.

    Raises:
        TrainingError: ``missing`` (what to install) when there is neither.
    """
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise TrainingError(missing)
    return found


def swift_executable() -> str:
    """The ``swift`` command of ms-swift."""
    return console_script(
        "swift", "the `swift` command (ms-swift) is not installed; install it with pip install -e '.[swift]'."
    )


def torchrun_executable() -> str:
    """The ``torchrun`` command of torch."""
    return console_script("torchrun", "the `torchrun` command (torch) is not installed in this environment.")
