"""What both HF rerankers share: settings checks, device and dtype, folder check, tokenizer, batching.

Kedro-free library module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from finrag_pipelines.kernels import KernelChoice, choose_kernels

logger = logging.getLogger(__name__)

T = TypeVar("T")

DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")


def resolve_device_dtype(device: str, dtype: str) -> tuple[str, str]:
    """``(device, dtype)`` as used: ``auto`` device is CUDA when torch sees one; ``auto`` dtype is bfloat16
    on CUDA and float32 on CPU.

    Raises:
        ValueError: On an unknown setting, or ``cuda`` without a CUDA device.
    """
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {DTYPES}.")
    if device not in DEVICES:
        raise ValueError(f"device {device!r} is not one of {DEVICES}.")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device 'cuda' was requested but torch sees no CUDA device; set device: auto or cpu."
        )
    resolved = "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"
    return resolved, (dtype if dtype != "auto" else ("bfloat16" if resolved == "cuda" else "float32"))


def check_sizes(max_length: int, batch_size: int) -> None:
    """Raise ``ValueError`` unless both are ints of a usable size."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 8:
        raise ValueError(f"max_length must be an int >= 8, got {max_length!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")


def check_model_folder(folder: Path) -> None:
    """Raise a helpful error unless ``folder`` looks like a local transformers model."""
    if not folder.exists():
        raise FileNotFoundError(
            f"reranker model folder {folder} does not exist; put the model there (for example "
            "Qwen3-Reranker-0.6B or bge-reranker-v2-m3 copied from a machine with hub access, or a tiny test "
            "model from "
            "finrag_pipelines.rerank.tiny_models); see README."
        )
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise ValueError(
            f"{folder} is not a transformers model folder (no config.json); put the reranker there with its "
            "config, tokenizer and weight files; see README."
        )


def load_tokenizer(folder: Path, padding_side: str) -> Any:
    """The folder's tokenizer with ``padding_side`` and a pad token (eos when it has none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(folder), local_files_only=True, padding_side=padding_side
        )
    except Exception as exc:  # transformers raises many types for broken folders
        raise ValueError(
            f"could not load a tokenizer from {folder} ({type(exc).__name__}: {exc}); the folder must hold a "
            "complete transformers model with its tokenizer files (see README)."
        ) from exc
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(
                f"the tokenizer in {folder} has neither a pad nor an eos token; add pad_token to it."
            )
        logger.warning("tokenizer in %s has no pad token; using eos %r", folder, tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def choose_reranker_kernels(name: str, device: str, dtype: str) -> KernelChoice:
    """The attention kernel a reranker loads with: flash-attn 2 on CUDA with bf16/fp16 weights when it
    imports, else sdpa (:func:`~finrag_pipelines.kernels.choose_kernels`, logged with the reason)."""
    return choose_kernels(f"reranker {name}", gpu=device == "cuda", dtype=dtype)


def load_model(folder: Path, auto_class: Any, dtype: str, device: str, attn_implementation: str) -> Any:
    """``auto_class.from_pretrained(folder)`` in ``dtype`` with ``attn_implementation`` on ``device``, in eval
    mode."""
    import torch

    try:
        model = auto_class.from_pretrained(
            str(folder),
            local_files_only=True,
            dtype=getattr(torch, dtype),
            attn_implementation=attn_implementation,
        )
    except Exception as exc:
        raise ValueError(
            f"could not load a {auto_class.__name__} from {folder} ({type(exc).__name__}: {exc}); put a "
            "complete transformers model there (see README)."
        ) from exc
    return model.to(device).eval()


def score_in_batches(
    items: Sequence[T],
    batch_size: int,
    forward: Callable[[list[T]], np.ndarray],
    *,
    length: Callable[[T], int],
    progress: bool,
    desc: str,
) -> np.ndarray:
    """Run ``forward`` over length-sorted batches (longest first) and return the scores in input order."""
    from tqdm.auto import tqdm

    out = np.empty(len(items), dtype=np.float32)
    order = sorted(range(len(items)), key=lambda i: -length(items[i]))
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=not progress):
        rows = order[start : start + batch_size]
        out[rows] = forward([items[i] for i in rows])
    return out


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int, side: str) -> tuple[Any, Any]:
    """Pad token id lists on ``side`` into ``(input_ids, attention_mask)`` long tensors."""
    import torch

    width = max(len(seq) for seq in sequences)
    input_ids = torch.full((len(sequences), width), int(pad_id), dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if not seq:
            continue
        cols = slice(width - len(seq), width) if side == "left" else slice(0, len(seq))
        input_ids[row, cols] = torch.tensor(list(seq), dtype=torch.long)
        attention_mask[row, cols] = 1
    return input_ids, attention_mask
