"""Checks of LLM outputs at the boundary: a ``ValueError`` marks an output invalid (asked again, then
quarantined).

A teacher's reasoning is never judged here: any non-empty text is a sample, and the rejection rule
(``mcq/rejection.py``) decides afterwards, so wrong answers are counted rather than silently re-asked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from finrag_pipelines.llm.parsing import clean_text_output, extract_json_object, pick

_HAN = re.compile(r"[\u4e00-\u9fff]")
_STEM_LABEL = re.compile(
    r"^\s*\**\s*(?:改写后的?题干|改写后的?题目|改写结果|改写|新题干|题干)\s*\**\s*[:：]\s*\**\s*"
)
_YES = {"true", "yes", "supported", "是", "支持", "有依据", "1"}
_NO = {"false", "no", "unsupported", "not supported", "否", "不支持", "无依据", "0"}


def non_empty(text: str) -> str:
    """The text itself; an empty response is invalid."""
    if not (text or "").strip():
        raise ValueError("empty response")
    return text


def rewritten_stem(text: str) -> str:
    """A rewritten stem: cleaned of labels/quotes/fences, Chinese, one paragraph."""
    stem = _STEM_LABEL.sub("", clean_text_output(text, keys=("stem", "question", "题干")), count=1).strip()
    if not stem:
        raise ValueError("empty rewrite")
    if not _HAN.search(stem):
        raise ValueError(f"the rewrite is not Chinese: {stem[:40]!r}")
    return " ".join(stem.split())


def grounded_pair(question_chars: tuple[int, int], answer_max_chars: int) -> Callable[[str], dict[str, str]]:
    """``{"question", "answer"}`` from a JSON answer, with length and language checks."""
    low, high = question_chars

    def validate(text: str) -> dict[str, str]:
        obj = extract_json_object(text)
        question = pick(obj, ["question", "问题", "query"], "question")
        answer = pick(obj, ["answer", "答案", "reference_answer"], "answer")
        if not isinstance(question, str) or not isinstance(answer, str):
            raise ValueError("question and answer must be strings")  # noqa: TRY004 - an invalid output
        question, answer = question.strip(), answer.strip()
        if not _HAN.search(question):
            raise ValueError(f"the question is not Chinese: {question[:40]!r}")
        if not low <= len(question) <= high:
            raise ValueError(f"question of {len(question)} characters, expected {low}..{high}")
        if not answer or len(answer) > answer_max_chars:
            raise ValueError(f"answer of {len(answer)} characters, expected 1..{answer_max_chars}")
        return {"question": question, "answer": answer}

    return validate


def support_verdict(text: str) -> dict[str, Any]:
    """``{"supported": bool, "reason": str}`` from the judge's JSON answer."""
    obj = extract_json_object(text)
    raw = pick(obj, ["supported", "is_supported", "支持", "结论"], "supported")
    if isinstance(raw, bool):
        supported = raw
    elif str(raw).strip().lower() in _YES:
        supported = True
    elif str(raw).strip().lower() in _NO:
        supported = False
    else:
        raise ValueError(f"supported must be true or false, got {raw!r:.40}")
    reason = obj.get("reason", obj.get("理由", ""))
    return {"supported": supported, "reason": str(reason)[:300]}
