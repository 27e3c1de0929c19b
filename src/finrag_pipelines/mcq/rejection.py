"""The rejection rule for teacher reasoning: a sample is kept only if the shared extractor reads the gold.

A sample is *correct* when :func:`~finrag_pipelines.mcq.extract.extract_answer` (the reader the RL reward and
MCQ evaluation use) finds, after any think block,

* exactly one answer statement in the stated format (``答案：\\boxed{…}``; a repeated statement is refused,
  even with the same letters),
* non-empty reasoning before it (or in the think block),
* letters equal to the gold letters.

Among an item's correct samples the shortest reasoning is kept (ties: the earliest sample); the SFT target is
that reasoning followed by the canonical answer line, written by ``format.render_target``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from finrag_pipelines.mcq.extract import extract_answer

VERDICTS: tuple[str, ...] = ("correct", "wrong_answer", "no_reasoning", "format_invalid", "request_failed")


@dataclass(frozen=True)
class SampleVerdict:
    """The rule applied to one sample.

    Attributes:
        verdict: One of :data:`VERDICTS`.
        detail: The extractor's reason (``ok``, ``duplicated_answers``, ``no_answer`` …) or the request error.
        letters: What the extractor read (``None`` when nothing usable).
        reasoning: The reasoning text (before the answer statement, or the think content).
    """

    verdict: str
    detail: str
    letters: str | None
    reasoning: str

    @property
    def correct(self) -> bool:
        return self.verdict == "correct"


def judge_sample(
    text: str | None, gold: str, valid_letters: Iterable[str], error: str | None = None
) -> SampleVerdict:
    """Apply the rejection rule to one teacher sample.

    Args:
        text: The teacher's response (``None`` when the request failed).
        gold: The gold letters, sorted (``"AC"``).
        valid_letters: The item's option letters.
        error: The request error, if the request failed after retries.
    """
    if error is not None or text is None:
        return SampleVerdict("request_failed", error or "no response", None, "")
    got = extract_answer(text, valid_letters)
    if not got.format_ok:
        return SampleVerdict("format_invalid", got.reason, got.letters, got.reasoning)
    if got.letters != gold:
        return SampleVerdict("wrong_answer", got.reason, got.letters, got.reasoning)
    if not got.reasoning_ok:
        return SampleVerdict("no_reasoning", got.reason, got.letters, got.reasoning)
    return SampleVerdict("correct", got.reason, got.letters, got.reasoning.strip())


def choose_shortest(verdicts: Sequence[SampleVerdict]) -> int | None:
    """Index of the correct sample with the shortest reasoning (the earliest among equals), or ``None``."""
    correct = [(len(v.reasoning), i) for i, v in enumerate(verdicts) if v.correct]
    return min(correct)[1] if correct else None
