"""Typed parameters of rl (validated by Kedro from ``parameters_rl.yml``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

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


class SearchQAWeights(StrictModel):
    """Weights of the search-QA reward components (finrag_pipelines.search_qa.reward)."""

    outcome: float = Field(ge=0.0)
    retrieval: float = Field(ge=0.0)
    citation: float = Field(ge=0.0)
    format: float = Field(ge=0.0)


class SearchQAPenalties(StrictModel):
    """Per-occurrence penalties of the search-QA reward."""

    over_search: float = Field(ge=0.0)
    repeated_search: float = Field(ge=0.0)
    invalid_citation: float = Field(ge=0.0)
    forged_tool_response: float = Field(ge=0.0)


class SearchQARewardParams(StrictModel):
    """The reward of search_qa rows (rl.tasks.search_qa); outcome: judge uses rl.reward.judge's llm."""

    weights: SearchQAWeights
    outcome: Literal["f1", "judge"]
    max_searches: int = Field(ge=1)
    max_citations: int = Field(ge=1)
    min_answer_chars: int = Field(ge=1)
    penalties: SearchQAPenalties
    max_penalty: float = Field(ge=0.0)
    max_judge_chars: int = Field(ge=100)


class RewardParams(StrictModel):
    """The reward config written to rl_reward_config.json (read by finrag_pipelines.mcq.reward)."""

    weights: dict[str, float]
    partial_credit: float = Field(ge=0.0, lt=1.0)
    allow_fallback: bool
    judge: JudgeParams
    search_qa: SearchQARewardParams


class RlLaunchParams(StrictModel):
    """The verl GRPO launch: ``train`` runs it (GPUs and a rollout engine), ``plan`` only validates the
    settings and records the exact command (machines that cannot train, e.g. the offline demo)."""

    mode: Literal["train", "plan"]
    base_model_path: str = Field(description="the policy to start from, e.g. the merged SFT model")
    work_dir: str
    merged_dir: str
    reward_function_path: str | None = Field(description="null = the project's reward (mcq/verl_reward.py)")
    progress: bool
    verl: dict[str, Any] = Field(
        description="every VerlGRPOConfig setting but the paths and max_prompt_length"
    )


class TaskRows(StrictModel):
    """Train rows kept per task (a seeded sample); null = all."""

    mcq: int | None = Field(ge=1)
    search_qa: int | None = Field(ge=1)


class RlTasksParams(StrictModel):
    """Which tasks the GRPO rows come from, and how they are mixed (train only; val keeps every row)."""

    mcq: bool
    search_qa: bool
    max_train_rows: TaskRows
    search_qa_share: float | None = Field(gt=0.0, lt=1.0, description="null = no rebalancing")
    seed: int

    @model_validator(mode="after")
    def _one_task(self) -> RlTasksParams:
        if not (self.mcq or self.search_qa):
            raise ValueError("rl.tasks: switch on mcq, search_qa or both")
        if self.search_qa_share is not None and not (self.mcq and self.search_qa):
            raise ValueError("rl.tasks.search_qa_share needs both mcq and search_qa on; set it to null")
        return self
