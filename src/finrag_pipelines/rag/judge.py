"""The optional LLM judge of answers: a rubric in conf, scored through the one client, failures marked.

The judge sees the question, the gold document, the passages the answer cites and the answer, and rates each
rubric criterion (e.g. correct, faithful to the cited passages, complete) on ``0..scale_max`` in a JSON
object. The question's judge score is the mean rating over ``scale_max`` (in [0, 1]). A reply that cannot be
read is asked again (``llm.max_invalid_retries``), then the judgement is marked failed: ``None`` with the
reason, never a score of 0.

Kedro-free library module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import Field

from finrag_pipelines.config import StrictModel
from finrag_pipelines.llm.parsing import extract_json_object, pick


class JudgeSettings(StrictModel):
    """The judge: on or off, the rubric's criteria (each described in the judge prompt) and their scale."""

    enabled: bool
    criteria: list[str] = Field(min_length=1, description="JSON keys the judge rates, e.g. correct, faithful")
    scale_max: int = Field(ge=1, description="each criterion is rated 0..scale_max")
    max_passage_chars: int = Field(ge=50, description="each cited passage shown to the judge is cut to this")


def judge_validator(settings: JudgeSettings) -> Callable[[str], float]:
    """``reply -> score in [0, 1]``; raises ``ValueError`` (an invalid output) when a criterion is missing
    or out of range."""

    def validate(text: str) -> float:
        obj = extract_json_object(text)
        ratings = []
        for criterion in settings.criteria:
            value = pick(obj, [criterion], criterion)
            if isinstance(value, str):
                try:
                    value = float(value.strip())
                except ValueError:
                    raise ValueError(f"judge rating {criterion!r} is not a number: {value!r}") from None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"judge rating {criterion!r} is not a number: {value!r}")
            if not 0 <= value <= settings.scale_max:
                raise ValueError(f"judge rating {criterion!r}={value} is outside 0..{settings.scale_max}")
            ratings.append(float(value))
        return round(sum(ratings) / (len(ratings) * settings.scale_max), 6)

    return validate


def judge_slots(
    question: str, reference: str, answer: str, cited: Sequence[tuple[str, str]], settings: JudgeSettings
) -> dict[str, Any]:
    """The judge prompt's slots: ``question``, ``reference``, ``passages`` (the cited ones, ``[id] text``;
    empty when nothing is cited),
    ``answer``, ``criteria`` and ``scale_max``."""
    passages = "\n\n".join(f"[{doc_id}] {text[: settings.max_passage_chars]}" for doc_id, text in cited)
    return {
        "question": question,
        "reference": reference,
        "passages": passages,
        "answer": answer,
        "criteria": ", ".join(settings.criteria),
        "scale_max": settings.scale_max,
    }
