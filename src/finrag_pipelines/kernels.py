"""Which attention kernel and whether Liger kernels run: one decision for encoders, rerankers and trainers.

* Attention: ``flash_attention_2`` when a CUDA GPU is used, flash-attn imports, and the weights are fp16/bf16
  (flash-attn computes in nothing else); otherwise ``sdpa`` (PyTorch's scaled-dot-product attention, every
  device). The reason is returned with the choice.
* Liger: on only when it was asked for, a CUDA GPU is used and ``liger_kernel`` imports (it imports on a CPU
  too, but its Triton kernels fail there); otherwise off, with the reason.

Nothing falls back silently: :func:`choose_kernels` logs the choice and its reason (a warning when a GPU
run loses flash-attn or Liger), and :meth:`KernelChoice.to_dict` is what manifests and ``meta.json`` record.
The import probe is injectable (``probe``) so the decision is unit-tested without the packages.

Kedro-free library module.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

logger = logging.getLogger(__name__)

FLASH_ATTENTION_2 = "flash_attention_2"
SDPA = "sdpa"
FLASH_DTYPES = frozenset({"bfloat16", "float16", "bf16", "fp16", "half"})

Probe = Callable[[str], "str | None"]
"""``probe(module) -> None`` when the module imports, else why not (``"ModuleNotFoundError: ..."``)."""


@functools.cache
def import_problem(module: str) -> str | None:
    """``None`` when ``module`` imports in this environment, else the error as one line (cached)."""
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - ImportError, or a CUDA/ABI mismatch raised while importing
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


@dataclass(frozen=True)
class KernelChoice:
    """The kernels a model runs with, and why.

    Attributes:
        attn_implementation: ``"flash_attention_2"`` or ``"sdpa"`` (transformers' ``attn_implementation``).
        attn_reason: Why that one.
        use_liger: Whether Liger kernels are applied.
        liger_reason: Why (not).
    """

    attn_implementation: str
    attn_reason: str
    use_liger: bool
    liger_reason: str

    @property
    def flash(self) -> bool:
        """True when flash-attn runs."""
        return self.attn_implementation == FLASH_ATTENTION_2

    def to_dict(self) -> dict[str, object]:
        """The record for a manifest or ``meta.json``."""
        return asdict(self)


def choose_attention(
    *, gpu: bool, dtype: str | None = None, probe: Probe = import_problem
) -> tuple[str, str]:
    """``(attn_implementation, reason)``: flash-attn 2 on a GPU with fp16/bf16 weights when it imports, else
    sdpa.

    Args:
        gpu: The model runs on a CUDA GPU.
        dtype: The weights' dtype (``"bfloat16"``, ``"float32"``, ...); ``None`` when the trainer decides
            (verl and ms-swift train in bf16 mixed precision on a GPU).
        probe: The import check (default: really import ``flash_attn``).
    """
    if not gpu:
        return SDPA, "no CUDA GPU in use (flash-attn runs on CUDA only)"
    if dtype is not None and str(dtype).removeprefix("torch.") not in FLASH_DTYPES:
        return SDPA, f"weights are {dtype} (flash-attn needs float16 or bfloat16)"
    problem = probe("flash_attn")
    if problem is not None:
        return (
            SDPA,
            f"flash-attn is not importable ({problem}); install the gpu extra (pip install -e '.[gpu]')",
        )
    return FLASH_ATTENTION_2, "flash-attn is importable and a CUDA GPU is in use"


def choose_liger(requested: bool, *, gpu: bool, probe: Probe = import_problem) -> tuple[bool, str]:
    """``(use_liger, reason)``: on only when asked for, on a CUDA GPU, with ``liger_kernel`` importable."""
    if not requested:
        return False, "off in conf"
    if not gpu:
        return False, "no CUDA GPU in use (Liger's Triton kernels need one)"
    problem = probe("liger_kernel")
    if problem is not None:
        return (
            False,
            f"liger-kernel is not importable ({problem}); install the gpu extra (pip install -e '.[gpu]')",
        )
    return True, "liger-kernel is importable and a CUDA GPU is in use"


def choose_kernels(
    what: str,
    *,
    gpu: bool,
    dtype: str | None = None,
    liger: bool = False,
    probe: Probe = import_problem,
) -> KernelChoice:
    """Decide attention and Liger for one model, log the choice with its reason, and return it.

    Args:
        what: The model's role for the log (``"encoder"``, ``"reranker"``, ``"verl SFT"``, ...).
        gpu: It runs on a CUDA GPU.
        dtype: Its weights' dtype, or ``None`` when the trainer decides (see :func:`choose_attention`).
        liger: Liger kernels were asked for (conf).
        probe: The import check.

    Returns:
        The choice, with reasons; record ``to_dict()`` next to the model or run.
    """
    attn, attn_reason = choose_attention(gpu=gpu, dtype=dtype, probe=probe)
    use_liger, liger_reason = choose_liger(liger, gpu=gpu, probe=probe)
    choice = KernelChoice(attn, attn_reason, use_liger, liger_reason)
    lost = "not importable" in attn_reason or "not importable" in liger_reason  # a GPU run without them
    logger.log(
        logging.WARNING if lost else logging.INFO,
        "%s kernels: attention %s (%s); liger %s (%s)",
        what, attn, attn_reason, "on" if use_liger else "off", liger_reason,
    )  # fmt: skip
    return choice


def planned_kernels(what: str, *, liger: bool = False) -> KernelChoice:
    """The kernels a command planned here (``launch.mode: plan``) names for the GPU machine it is meant for:
    flash-attn 2, and Liger when asked for. Nothing is probed here; the launch decides again on its
    machine."""
    reason = "planned for a GPU machine with the gpu extra; decided again when launched there"
    choice = KernelChoice(FLASH_ATTENTION_2, reason, bool(liger), reason if liger else "off in conf")
    logger.info(
        "%s kernels (plan): attention %s; liger %s",
        what,
        choice.attn_implementation,
        "on" if choice.use_liger else "off",
    )
    return choice
