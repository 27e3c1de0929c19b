"""Typed parameters of sft (validated by Kedro from ``parameters_sft.yml``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from finrag_pipelines.config import StrictModel


class SftDataParams(StrictModel):
    """How items become SFT chats, and the validation slice (taken from sft_train, never from eval)."""

    target_style: Literal["think", "plain"]
    missing_explanation: Literal["answer_only", "exclude"]
    val_size: int = Field(
        ge=0, description="items of sft_train held out as sft_val (seeded hash of the question)"
    )
    seed: int


class LengthParams(StrictModel):
    """Length policy; ``tokenizer_path: null`` counts characters instead of tokens (and says so)."""

    tokenizer_path: str | None
    max_length: int = Field(ge=16)
    truncation: Literal["right", "drop"]


class SftLaunchParams(StrictModel):
    """The verl SFT launch: ``train`` runs it (GPU, or ``verl.cpu_smoke`` with a CPU entry script), ``plan``
    only validates the settings and records the exact command (for machines that cannot train, e.g. the
    offline demo)."""

    mode: Literal["train", "plan"]
    base_model_path: str = Field(description="the local HF checkpoint to fine-tune (no hub downloads)")
    work_dir: str = Field(description="staged data, checkpoints, train.log and manifest.json")
    merged_dir: str = Field(description="the merged HF model folder written after training")
    entry: str = Field(description="verl.trainer.sft_trainer, or a script path (a CPU shim in tests)")
    progress: bool
    verl: dict[str, Any] = Field(
        description="every VerlSFTConfig setting except the paths (training/verl_sft.py)"
    )


class MixSourceParams(StrictModel):
    """One source of the SFT mix and its cap (``null``: every row that survives the dedup)."""

    name: Literal["original", "distilled_reasoning", "calc", "grounded_qa"]
    max_rows: int | None = Field(ge=0)


class MixParams(StrictModel):
    """The SFT mix: sources in precedence order (an item in several sources is kept from the first listed)."""

    sources: list[MixSourceParams] = Field(min_length=1)
    seed: int = Field(description="seeds the sample drawn when a source is capped")

    @model_validator(mode="after")
    def _unique(self) -> MixParams:
        names = [s.name for s in self.sources]
        if len(names) != len(set(names)):
            raise ValueError(f"sft.mix.sources: each source once, got {names}")
        return self
