"""Typed parameters of sft (validated by Kedro from ``parameters_sft.yml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SftDataParams(_Strict):
    """How items become SFT chats, and the validation slice (taken from sft_train, never from eval)."""

    target_style: Literal["think", "plain"]
    missing_explanation: Literal["answer_only", "exclude"]
    val_size: int = Field(ge=0, description="items of sft_train held out as sft_val (seeded hash of the question)")
    seed: int


class LengthParams(_Strict):
    """Length policy; ``tokenizer_path: null`` counts characters instead of tokens (and says so)."""

    tokenizer_path: str | None
    max_length: int = Field(ge=16)
    truncation: Literal["right", "drop"]
