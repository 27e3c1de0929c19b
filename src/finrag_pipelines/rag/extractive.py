"""The offline extractive reader: no LLM, the passage sentences that best cover the question, cited.

It lets ``single_shot`` run on a CPU without an endpoint (the demo). Its answers are labelled
:data:`~finrag_pipelines.rag.records.EXTRACTIVE_MODEL`: they measure what the retrieved passages hold, not
what a model makes of them.

Kedro-free library module.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from finrag_pipelines.rag.grounding import Hit
from finrag_pipelines.rag.settings import ExtractiveSettings

_SENTENCE_END = re.compile(r"(?<=[。！？!?；;])|\n+")


def _bigrams(text: str) -> set[str]:
    chars = "".join(ch for ch in unicodedata.normalize("NFKC", text).lower() if ch.isalnum())
    return {chars[i : i + 2] for i in range(len(chars) - 1)} or ({chars} if chars else set())


def sentences(text: str) -> list[str]:
    """``text`` split after 。！？!?；; and at line breaks, blanks dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def extract_answer(question: str, hits: Sequence[Hit], settings: ExtractiveSettings, abstention: str) -> str:
    """The sentences of ``hits`` that share the most character bigrams with the question, each cited.

    Each sentence is scored by the share of the question's character bigrams it contains; ties go to the
    better-ranked passage, then the earlier sentence. The best ``max_sentences`` (in score order) are
    joined, each followed by ``[doc_id]``.

    Args:
        question: The question.
        hits: The retrieved passages, best first.
        settings: Sentence count, coverage floor, sentence length cap.
        abstention: Returned when no sentence reaches ``min_coverage`` (or nothing was retrieved).

    Returns:
        The answer text.
    """
    wanted = _bigrams(question)
    scored = []
    for rank, hit in enumerate(hits):
        for position, sentence in enumerate(sentences(f"{hit.title}\n{hit.text}" if hit.title else hit.text)):
            coverage = len(wanted & _bigrams(sentence)) / len(wanted) if wanted else 0.0
            scored.append((-coverage, rank, position, sentence, hit.doc_id))
    scored.sort(key=lambda row: row[:3])
    chosen = [row for row in scored if -row[0] >= settings.min_coverage and -row[0] > 0][
        : settings.max_sentences
    ]
    if not chosen:
        return abstention
    parts = []
    for _, _, _, sentence, doc_id in chosen:
        text = (
            sentence
            if len(sentence) <= settings.max_sentence_chars
            else sentence[: settings.max_sentence_chars]
        )
        parts.append(f"{text}[{doc_id}]")
    return "".join(parts)
