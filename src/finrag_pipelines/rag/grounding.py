"""The grounding contract: passages carry their ids in square brackets, answers cite them as ``[id]``.

Passages are shown by the search tool's own formatter (:mod:`finrag_pipelines.serving.tool_text`: ``Doc i
[<id>] (Title: …)`` then the text), so a model trained with the search tool reads the same thing at
evaluation time, and the search-QA reward reads the ids back the same way. Answers are parsed leniently:
thinking removed, an ``<answer>`` block or a JSON ``{"answer": ...}`` taken, a leading label ("答案：")
dropped.

Kedro-free library module.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from finrag_pipelines.llm.parsing import clean_text_output, strip_thinking
from finrag_pipelines.serving import tool_text

NO_RESULTS = "No results found."
"""What the search tool shows for a query that found nothing."""

_BRACKETED = re.compile(r"\[([^\[\]\n]{1,200})\](?!\()")  # not a markdown link "[text](url)"
_ID_SPLIT = re.compile(r"[,，;；、\s]+")
_ID = re.compile(r"^[^\s\[\]]{1,64}$")
_ANSWER_BLOCK = re.compile(r"<answer>(.*?)(?:</answer>|\Z)", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class Hit:
    """One retrieved passage as shown to the model.

    Attributes:
        doc_id: The corpus document id.
        title: Its title (may be empty).
        text: Its text.
        score: The retriever's score.
    """

    doc_id: str
    title: str
    text: str
    score: float


def _served(hit: Hit) -> dict[str, Any]:
    """``hit`` as ``POST /retrieve`` returns it (``contents`` = title line, then text)."""
    return {"document": {"id": hit.doc_id, "contents": f"{hit.title}\n{hit.text}"}, "score": hit.score}


def format_passages(hits: Sequence[Hit], max_chars: int) -> str:
    """One query's passages exactly as the search tool shows them (:func:`tool_text.format_passages`):
    ``Doc i [<id>] (Title: <title>)`` (no title part when empty), then the text cut to ``max_chars``.

    Raises:
        ValueError: When an id holds whitespace or square brackets (it could not be cited as ``[id]``).
    """
    return tool_text.format_passages([_served(h) for h in hits], max_chars)


def format_results(queries: Sequence[str], results: Sequence[Sequence[Hit]], max_chars: int) -> str:
    """The passages of one search call: one query's blocks, or ``Results for: <query>`` sections."""
    payload = {"result": [[_served(h) for h in hits] for hits in results]}
    return tool_text.format_response(payload, queries, max_chars)


def cited_ids(text: str) -> list[str]:
    """Ids cited in ``text`` as ``[id]``, ``[id1, id2]`` or ``【id】``, first-seen order, unique.

    Full-width brackets and characters are NFKC-folded first. A bracketed part that cannot be an id (holds
    whitespace only, or is longer than 64 characters) is ignored; a markdown link ``[text](url)`` is not a
    citation.
    """
    folded = unicodedata.normalize("NFKC", text or "").replace("【", "[").replace("】", "]")
    ids: list[str] = []
    for match in _BRACKETED.finditer(folded):
        for part in _ID_SPLIT.split(match.group(1)):
            if part and _ID.match(part) and part not in ids:
                ids.append(part)
    return ids


def strip_citations(text: str) -> str:
    """``text`` without its ``[id]`` citations (what answer F1 and ROUGE-L compare)."""
    folded = unicodedata.normalize("NFKC", text or "").replace("【", "[").replace("】", "]")
    return _BRACKETED.sub("", folded)


def answer_body(text: str) -> str:
    """The answer in a reply, read leniently.

    Thinking is removed; the last ``<answer>…</answer>`` block (or an unclosed trailing one) is taken when
    there is one; then code fences, quotes, a JSON ``{"answer": ...}`` and a leading label ("答案：",
    "Answer:") are removed.
    """
    body = strip_thinking(text or "")
    blocks = _ANSWER_BLOCK.findall(body)
    if blocks:
        body = blocks[-1]
    return clean_text_output(body, keys=("answer", "答案", "final_answer"))


def _squash(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).lower() if ch.isalnum())


def is_abstention(answer: str, phrase: str) -> bool:
    """Whether ``answer`` says the abstention phrase (compared without punctuation, spaces or case)."""
    squashed = _squash(phrase)
    return bool(squashed) and squashed in _squash(answer)


def render_feedback(template: str, **slots: object) -> str:
    """A protocol message from conf (``$name`` placeholders, as in the prompt files).

    Raises:
        KeyError: Naming the placeholder that has no value.
    """
    return string.Template(template).substitute({k: str(v) for k, v in slots.items()})
