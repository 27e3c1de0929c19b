"""Typed parameters of mcq_prep (validated by Kedro from ``parameters_mcq_prep.yml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from finrag_pipelines.mcq.loaders import SOURCE_KINDS
from finrag_pipelines.mcq.split import SPLITS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ColumnsParams(_Strict):
    """The column mapping of a ``kind: generic`` source (CSV, JSONL or parquet; ``mcq/generic_loader.py``)."""

    files: str = Field(description="glob of the files under a folder path, e.g. '*.csv'")
    question: str
    options: list[str] | str = Field(description="option columns, or one column of lists / {letter: text}")
    answer: str
    answer_format: Literal["letters", "text", "index"]
    id: str | None = Field(description="id column; null = the line number")
    explanation: str | None
    subject: str | None = Field(description="subject column; null = the file name")


class SourceParams(_Strict):
    """One MCQ source: ``name`` becomes the ``source`` column; ``path`` is a file or folder."""

    name: str = Field(min_length=1)
    kind: str = Field(description=f"one of {list(SOURCE_KINDS)}")
    path: str
    columns: ColumnsParams | None = Field(default=None, description="kind generic only: its column mapping")

    @model_validator(mode="after")
    def _kind(self) -> SourceParams:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(
                f"mcq_prep.load.sources[{self.name}].kind {self.kind!r} is not one of {list(SOURCE_KINDS)}"
            )
        if (self.kind == "generic") != (self.columns is not None):
            raise ValueError(
                f"mcq_prep.load.sources[{self.name}]: a columns mapping goes with kind generic, "
                f"and only with it (kind is {self.kind!r})"
            )
        return self


class LoadParams(_Strict):
    """The sources to read (raw files; the loaders report every unusable row)."""

    sources: list[SourceParams] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> LoadParams:
        names = [s.name for s in self.sources]
        if len(names) != len(set(names)):
            raise ValueError(f"mcq_prep.load.sources: names must be unique, got {names}")
        return self


class DedupParams(_Strict):
    """Precedence among duplicates: with explanation first, then this source order, then file order."""

    source_order: list[str] = Field(min_length=1)


class SplitParams(_Strict):
    """One seeded split by hash of the normalised question; evaluation-only sources always go to ``eval``."""

    seed: int
    fractions: dict[str, float]
    eval_only_sources: list[str] = Field(
        default_factory=list, description="sources (and items sharing a question with them) never trained on"
    )

    @model_validator(mode="after")
    def _fractions(self) -> SplitParams:
        if set(self.fractions) != set(SPLITS) or abs(sum(self.fractions.values()) - 1) > 1e-9:
            raise ValueError(
                f"mcq_prep.split.fractions must give {list(SPLITS)} summing to 1, got {self.fractions}"
            )
        return self
