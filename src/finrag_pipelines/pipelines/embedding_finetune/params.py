"""Typed parameters of embedding_finetune (validated by Kedro from ``parameters_embedding_finetune.yml``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from finrag_pipelines.config import StrictModel


class BaseModelParams(StrictModel):
    """Which model is fine-tuned.

    ``local``: a Qwen3-Embedding folder already on disk (``model_path``, the same path as the catalog's
    ``finetune_base_model``, so nothing is copied). ``tiny``: a tiny random Qwen3 built from the corpus
    (offline demo/test; no model download).
    """

    kind: Literal["local", "tiny"]
    model_path: str | None = Field(description="the local model folder (kind local)")
    tiny_lines: int = Field(ge=1, description="corpus lines the tiny tokenizer is trained on (kind tiny)")
    seed: int

    @model_validator(mode="after")
    def _path_for_local(self) -> BaseModelParams:
        if self.kind == "local" and not self.model_path:
            raise ValueError("embedding_finetune.base_model: kind local needs model_path")
        return self


class TrainParams(StrictModel):
    """Where the run lives and the ms-swift settings (every SwiftEmbeddingConfig field, checked there)."""

    work_dir: str = Field(description="swift runs, train.log, manifest.json and the training JSONL files")
    merged_dir: str = Field(description="the merged model's working copy; finetuned_model versions it")
    progress: bool = True
    swift: dict[str, Any]
