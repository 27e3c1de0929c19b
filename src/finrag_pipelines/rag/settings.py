"""Typed settings of the answering systems (the ``rag_answer`` parameters; ``finrag-ask`` reads the same).

Kedro-free library module.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, RootModel, model_validator

from finrag_pipelines.config import StrictModel

RETRIEVERS: dict[str, tuple[str, str]] = {
    "bm25": ("base", "bm25"),
    "dense": ("base", "dense"),
    "hybrid": ("base", "hybrid"),
    "dense_finetuned": ("finetuned", "dense"),
    "hybrid_finetuned": ("finetuned", "hybrid"),
}
"""Retriever name → (which dense index and encoder: the base or the fine-tuned one, backend method)."""

Retriever = Literal["bm25", "dense", "hybrid", "dense_finetuned", "hybrid_finetuned"]


class FeedbackTexts(StrictModel):
    """What the agent is told when a step goes wrong (``$name`` placeholders; part of the prompt hash)."""

    unknown_tool: str = Field(description="a call of a tool other than search; slot $name")
    bad_arguments: str = Field(description="arguments that are not a usable query list; slot $reason")
    search_limit: str = Field(description="a search past max_searches; slot $max_searches")
    text_format: str = Field(description="text protocol: an unclosed or empty <search> tag")


class AnswerSettings(StrictModel):
    """How every system reads passages, searches and answers.

    Attributes:
        top_k: Passages per search (and per ``single_shot`` question).
        passage_max_chars: Each passage text shown is cut to this many characters.
        max_searches: Queries an agent may search per question.
        max_turns: LLM calls an agent may make per question (its final answer included).
        protocol: The agent protocol: ``function_calling`` (a ``search`` tool, OpenAI tool calls) or ``text``
            (Search-R1's ``<search>``/``<answer>`` tags, for endpoints without a tool-call parser).
        abstention_phrase: What an answer says when the passages do not answer the question.
        keep_messages: Keep each question's full conversation in its answer record.
        feedback: The agent's protocol messages.
    """

    top_k: int = Field(ge=1, le=50)
    passage_max_chars: int = Field(ge=50)
    max_searches: int = Field(ge=1)
    max_turns: int = Field(ge=2)
    protocol: Literal["function_calling", "text"]
    abstention_phrase: str = Field(min_length=2)
    keep_messages: bool
    feedback: FeedbackTexts


class ExtractiveSettings(StrictModel):
    """The offline extractive reader (no LLM): the passage sentences that best cover the question.

    Attributes:
        max_sentences: Sentences in an answer.
        min_coverage: Least share of the question's character bigrams a sentence must contain; below it
            the reader abstains.
        max_sentence_chars: Longer sentences are cut.
    """

    max_sentences: int = Field(ge=1)
    min_coverage: float = Field(ge=0.0, le=1.0)
    max_sentence_chars: int = Field(ge=20)


class SystemSpec(StrictModel):
    """One configured system: its kind and, for retrieval systems, the retriever it searches."""

    kind: Literal["closed_book", "single_shot", "agent"]
    retriever: Retriever | None = Field(
        default=None, description="required for single_shot and agent; absent for closed_book"
    )

    @model_validator(mode="after")
    def _retriever_matches_kind(self) -> SystemSpec:
        if self.kind == "closed_book" and self.retriever is not None:
            raise ValueError("a closed_book system searches nothing; remove its retriever")
        if self.kind != "closed_book" and self.retriever is None:
            raise ValueError(f"a {self.kind} system needs a retriever, one of {sorted(RETRIEVERS)}")
        return self


class SearchSettings(StrictModel):
    """Where searches run: in process over the built indexes (``url`` null), or a running finrag-serve.

    Attributes:
        url: ``POST /retrieve`` of a running ``finrag-serve``, or null for the in-process backend.
        alpha: Dense weight of the in-process ``hybrid`` retrievers (``alpha·dense + (1−alpha)·bm25`` over
            min-max normalised scores; the server uses its own).
        fusion_depth: Candidates per retriever fused by ``hybrid``.
        encode_batch_size: Queries per encoder call in process (the most one micro-batch gathers).
        batch_wait_ms: How long the first in-process search waits for others to batch with it.
        timeout_s: Seconds per HTTP attempt (url mode).
        max_retries: Attempts per search (url mode).
        token_env: Environment variable holding the server's bearer token, or null.
    """

    url: str | None = Field(description="null: in process")
    alpha: float = Field(ge=0.0, le=1.0)
    fusion_depth: int = Field(ge=1)
    encode_batch_size: int = Field(ge=1)
    batch_wait_ms: float = Field(ge=0)
    timeout_s: float = Field(gt=0)
    max_retries: int = Field(ge=1)
    token_env: str | None


class SystemsParams(RootModel[dict[str, SystemSpec]]):
    """The configured systems: name → :class:`SystemSpec`, in report order (at least one)."""

    @model_validator(mode="after")
    def _some(self) -> SystemsParams:
        if not self.root:
            raise ValueError("configure at least one system under rag_answer.systems")
        return self


class AskSettings(StrictModel):
    """``finrag-ask``: which configured system answers when ``--system`` is not given."""

    system: str = Field(min_length=1)
