"""An LLM judge's 0–10 rating through the one client: ask, parse, retry unparsable replies.

Used by the GRPO rewards (the MCQ process judge and the search-QA outcome judge). A judge that fails is
reported as failed (``None`` and the reason), never as a score of 0.
"""

from __future__ import annotations

import re

from finrag_pipelines.llm.client import ChatClient, LLMRequestError
from finrag_pipelines.llm.config import LLMConfig, resolve_api_key
from finrag_pipelines.llm.parsing import strip_thinking

_SCORE_RE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)")


def parse_judge_score(text: str) -> float:
    """The 0–10 rating in a judge reply, as a fraction in [0, 1].

    Raises:
        ValueError: If no number in [0, 10] starts the reply (after any think block).
    """
    body = strip_thinking(text or "")
    match = _SCORE_RE.search(body)
    if match is None:
        raise ValueError(f"judge reply has no number: {body[:60]!r}")
    value = float(match.group(1))
    if not 0 <= value <= 10:
        raise ValueError(f"judge score {value} is outside 0-10")
    return value / 10.0


async def ask_judge(messages: list[dict[str, str]], llm: LLMConfig) -> tuple[float | None, str]:
    """Ask the judge; ``(fraction, "")`` or ``(None, why it failed)``. HTTP retries are the client's;
    an unparsable reply is asked again up to ``llm.max_invalid_retries`` times."""
    try:
        async with ChatClient(llm, resolve_api_key(None)) as client:
            error = ""
            for _ in range(1 + llm.max_invalid_retries):
                response = await client.complete(messages)
                try:
                    return parse_judge_score(response.text), ""
                except ValueError as exc:
                    error = f"unparsable judge reply: {exc}"
            return None, error
    except LLMRequestError as exc:
        return None, f"judge request failed: {exc.reason}"
