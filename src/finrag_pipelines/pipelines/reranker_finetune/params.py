"""Typed parameters of reranker_finetune (validated by Kedro from ``parameters_reranker_finetune.yml``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from finrag_pipelines.config import StrictModel


class RerankerSettings(StrictModel):
    """The reranker being trained, as it is later used (``${globals:rerankers.finetuned}``): the kind decides
    the ms-swift task and the row format, the instruction goes into every generative row."""

    kind: Literal["qwen3", "cross_encoder"]
    model_path: str
    instruction: str | None = None
    max_length: int = Field(ge=8)
    batch_size: int = Field(ge=1)
    dtype: str
    device: str
    name: str | None = None
    progress: bool | None = None


class BaseModelParams(StrictModel):
    """Which reranker is fine-tuned.

    ``local``: a reranker folder already on disk (``model_path``, the same folder the catalog's
    ``reranker_base_model`` points at, so nothing is copied). ``tiny``: a tiny random reranker of the trained
    kind (a Qwen3 causal LM or a BERT cross-encoder) built from the corpus (offline demo/test).
    """

    kind: Literal["local", "tiny"]
    model_path: str | None = Field(description="the local model folder (kind local)")
    tiny_lines: int = Field(ge=1, description="corpus lines the tiny tokenizer is trained on (kind tiny)")
    seed: int

    @model_validator(mode="after")
    def _path_for_local(self) -> BaseModelParams:
        if self.kind == "local" and not self.model_path:
            raise ValueError("reranker_finetune.base_model: kind local needs model_path")
        return self


class RowParams(StrictModel):
    """The ms-swift rows built from negative_mining's mined examples (``infonce_row_ids``)."""

    max_negatives: int = Field(ge=1, description="mined negatives per row, in mining order")


class TrainParams(StrictModel):
    """Where the run lives and the ms-swift settings (every SwiftRerankerConfig field, checked there)."""

    work_dir: str = Field(description="swift runs, train.log, manifest.json and the training JSONL files")
    merged_dir: str = Field(description="the merged model folder; the catalog's reranker_finetuned path")
    progress: bool = True
    swift: dict[str, Any]
