"""Typed parameters of rl (validated by Kedro from ``parameters_rl.yml``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from finrag_pipelines.config import StrictModel


class RlDataParams(StrictModel):
    """Which items become GRPO train/val rows. Val never contains sft_train items."""

    val_source: Literal["eval", "rl_train_slice"]
    val_size: int = Field(ge=0, description="0 = the whole eval split (val_source: eval only)")
    seed: int


class RlLengthParams(StrictModel):
    """Prompt length policy (verl's data.max_prompt_length); null tokenizer = characters."""

    tokenizer_path: str | None
    max_prompt_length: int = Field(ge=16)
    truncation: Literal["right", "drop"]


class JudgeParams(StrictModel):
    """The optional LLM process judge: the shared ``llm`` block with these overrides."""

    enabled: bool
    max_reasoning_chars: int = Field(ge=100)
    llm_overrides: dict[str, Any]


class RewardParams(StrictModel):
    """The reward config written to rl_reward_config.json (read by finrag_pipelines.mcq.reward)."""

    weights: dict[str, float]
    partial_credit: float = Field(ge=0.0, lt=1.0)
    allow_fallback: bool
    judge: JudgeParams


class RlLaunchParams(StrictModel):
    """The verl GRPO launch: ``train`` runs it (GPUs and a rollout engine), ``plan`` only validates the settings
    and records the exact command (machines that cannot train, e.g. the offline demo)."""

    mode: Literal["train", "plan"]
    base_model_path: str = Field(description="the policy to start from, e.g. the merged SFT model")
    work_dir: str
    merged_dir: str
    reward_function_path: str | None = Field(description="null = the project's reward (mcq/verl_reward.py)")
    progress: bool
    verl: dict[str, Any] = Field(description="every VerlGRPOConfig setting but the paths and max_prompt_length")
