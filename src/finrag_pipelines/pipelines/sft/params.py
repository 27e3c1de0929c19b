"""Typed parameters of sft (validated by Kedro from ``parameters_sft.yml``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from finrag_pipelines.config import StrictModel


class SftDataParams(StrictModel):
    """How items become SFT chats, and the validation slice (taken from sft_train, never from eval)."""

    target_style: Literal["think", "plain"]
    missing_explanation: Literal["answer_only", "exclude"]
    val_size: int = Field(ge=0, description="items of sft_train held out as sft_val (seeded hash of the question)")
    seed: int


class LengthParams(StrictModel):
    """Length policy; ``tokenizer_path: null`` counts characters instead of tokens (and says so)."""

    tokenizer_path: str | None
    max_length: int = Field(ge=16)
    truncation: Literal["right", "drop"]


class SftLaunchParams(StrictModel):
    """The verl SFT launch: ``train`` runs it (GPU, or ``verl.cpu_smoke`` with a CPU entry script), ``plan`` only
    validates the settings and records the exact command (for machines that cannot train, e.g. the offline demo)."""

    mode: Literal["train", "plan"]
    base_model_path: str = Field(description="the local HF checkpoint to fine-tune (no hub downloads)")
    work_dir: str = Field(description="staged data, checkpoints, train.log and manifest.json")
    merged_dir: str = Field(description="the merged HF model folder written after training")
    entry: str = Field(description="verl.trainer.sft_trainer, or a script path (a CPU shim in tests)")
    progress: bool
    verl: dict[str, Any] = Field(description="every VerlSFTConfig setting except the paths (training/verl_sft.py)")
