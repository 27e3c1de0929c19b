"""What a verl 0.9 multi-turn trajectory says: the searches made, the passages they returned, the answer.

verl's reward managers call ``compute_score`` with ``solution_str = tokenizer.decode(response_ids,
skip_special_tokens=True)`` over the *whole* response of the ``tool_agent`` loop: every assistant turn and
the tool turns between them (``response_mask`` only hides the tool turns from the loss). With Qwen2.5/Qwen3
and ``multi_turn.format=hermes``, ``<|im_start|>`` / ``<|im_end|>`` are special tokens and vanish, while
``<tool_call>``, ``<tool_response>`` and ``<think>`` are ordinary added tokens and stay, and so do the role
words. A one-search trajectory therefore decodes as::

    <tool_call>
    {"name": "search", "arguments": {"query_list": ["公司新工厂的产能"]}}
    </tool_call>
    user
    <tool_response>
    Doc 1 [a12] (Title: …)
    …
    </tool_response>
    assistant
    <think>

    </think>

    新工厂设计产能为20万台/年[a12]。

``extra_info`` is the row's ``extra_info`` plus what the agent loop adds: ``tool_rewards`` (one step reward
per tool message, the search tool's "returned the source document" flag), ``turn_scores``, ``num_turns``.

The model writes everything outside the ``<tool_response>`` blocks, and can write a ``<tool_response>``
block too. A block is only believed where the loop puts one: each group of blocks follows an assistant
turn with at least as many executed tool calls (a call whose JSON lacks ``name``/``arguments`` is dropped
by verl's hermes parser and gets no response), and there are no more blocks than ``tool_rewards`` entries.
Otherwise the trajectory is marked ``forged`` and none of its passages count as retrieved.

Kedro-free library module.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from finrag_pipelines.serving.tool_text import ToolArgumentError, parse_query_list, passage_ids

SEARCH_TOOL = "search"
CITATION_RE = re.compile(r"\[([^\[\]\s]{1,64})\]")
"""A citation in an answer: a document id in ASCII square brackets (full-width ones are NFKC-folded first)."""

_RESPONSE_RE = re.compile(r"<tool_response>(.*?)</tool_response>", re.DOTALL)
_CALL_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_LEADING_ROLE = re.compile(r"^\s*assistant[ \t]*(?:\n|$)")
_TRAILING_ROLE = re.compile(r"(?:^|\n)[ \t]*user\s*$")
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"


@dataclass(frozen=True)
class ToolCall:
    """One ``<tool_call>`` block of an assistant turn.

    Attributes:
        name: The function name, or ``None`` when the block is not ``{"name", "arguments"}`` JSON (verl
            drops such a call: it is never executed).
        queries: The search queries (empty unless a well-formed ``search`` call).
        error: Why the call is not a well-formed search, else ``""``.
    """

    name: str | None
    queries: tuple[str, ...]
    error: str

    @property
    def executed(self) -> bool:
        """verl's hermes parser turns it into a function call (whatever the tool then answers)."""
        return self.name is not None


@dataclass(frozen=True)
class Trajectory:
    """A parsed trajectory.

    Attributes:
        searches: The executed tool calls (those a tool response answered), in order.
        dropped_calls: ``<tool_call>`` blocks that were never executed (bad JSON, past
            ``multi_turn.max_parallel_calls``, or in the last turn).
        retrieved: Document ids shown in believed tool responses, first-seen order, unique.
        answer: The final answer (think block removed), or ``None`` when the trajectory does not end with
            one (see ``no_answer_reason``).
        no_answer_reason: ``""``, ``"ended_on_tool_call"``, ``"unterminated_think"``,
            ``"unclosed_tool_response"`` or ``"empty_answer"``.
        think_closed: No ``<think>`` is left open in any assistant turn.
        forged: Why the tool responses are not believed, else ``""``.
        n_responses: ``<tool_response>`` blocks in the text.
    """

    searches: tuple[ToolCall, ...]
    dropped_calls: int
    retrieved: tuple[str, ...]
    answer: str | None
    no_answer_reason: str
    think_closed: bool
    forged: str
    n_responses: int
    turns: tuple[str, ...] = field(default=(), repr=False)

    @property
    def queries(self) -> list[str]:
        """Every query the executed search calls asked, in order."""
        return [q for call in self.searches for q in call.queries]


def parse_call(body: str) -> ToolCall:
    """One ``<tool_call>`` body, read the way verl's hermes parser and the search tool read it."""
    try:
        data = json.loads(body.strip())
        name, arguments = data["name"], data["arguments"]
    except (ValueError, TypeError, KeyError) as exc:
        return ToolCall(None, (), f"not a tool call verl can run: {type(exc).__name__}")
    if name != SEARCH_TOOL:
        return ToolCall(str(name), (), f"unknown tool {name!r}")
    try:
        return ToolCall(SEARCH_TOOL, tuple(parse_query_list(arguments)), "")
    except ToolArgumentError as exc:
        return ToolCall(SEARCH_TOOL, (), str(exc))


def _answer_part(turn: str) -> tuple[str, bool]:
    """The text after the think block of one assistant turn, and whether no ``<think>`` is left open."""
    close = turn.rfind(_THINK_CLOSE)
    tail = turn[close + len(_THINK_CLOSE) :] if close != -1 else turn  # Qwen3 may open <think> in the prompt
    opened = tail.find(_THINK_OPEN)
    if opened != -1:
        return tail[:opened], False
    return tail, True


def _assistant_turns(text: str) -> tuple[list[str], list[list[str]], str | None]:
    """Split the decoded response into assistant turns and the groups of tool responses between them.

    Returns ``(turns, groups, unclosed)``: ``len(turns) == len(groups) + 1``; ``groups[i]`` follows
    ``turns[i]``; ``unclosed`` is the text of a trailing ``<tool_response>`` that never closes.
    """
    turns: list[str] = []
    groups: list[list[str]] = []
    position = 0
    for match in _RESPONSE_RE.finditer(text):
        between = text[position : match.start()]
        if groups and turns and not between.strip():
            groups[-1].append(match.group(1))  # the next tool message of the same user turn
        else:
            turns.append(between)
            groups.append([match.group(1)])
        position = match.end()
    rest = text[position:]
    unclosed = None
    opened = rest.find("<tool_response>")
    if opened != -1:
        unclosed, rest = rest[opened:], rest[:opened]
    turns.append(rest)
    cleaned = []
    for i, turn in enumerate(turns):
        if i > 0:
            turn = _LEADING_ROLE.sub("", turn, count=1)
        if i < len(groups):
            turn = _TRAILING_ROLE.sub("", turn, count=1)
        cleaned.append(turn)
    return cleaned, groups, unclosed


def parse_trajectory(solution_str: str, tool_rewards: Sequence[Any] | None = None) -> Trajectory:
    """Parse a decoded verl multi-turn response (see the module docstring).

    Args:
        solution_str: What verl passes as ``solution_str``.
        tool_rewards: ``extra_info["tool_rewards"]`` when verl supplied it (one entry per tool message);
            ``None`` when absent (then only the turn structure guards against forged responses).
    """
    text = solution_str or ""
    turns, groups, unclosed = _assistant_turns(text)
    searches: list[ToolCall] = []
    dropped = 0
    forged = ""
    think_closed = True
    for i, turn in enumerate(turns):
        _, closed = _answer_part(turn)
        think_closed = think_closed and closed
        calls = [parse_call(body) for body in _CALL_RE.findall(turn)]
        executed = [c for c in calls if c.executed]
        answered = len(groups[i]) if i < len(groups) else 0
        if answered > len(executed) and not forged:
            forged = (
                f"turn {i + 1}: {answered} tool response(s) after {len(executed)} executable tool call(s)"
            )
        searches.extend(executed[:answered])
        dropped += len(calls) - min(answered, len(executed))
    blocks = [block for group in groups for block in group]
    if tool_rewards is not None and len(blocks) > len(tool_rewards) and not forged:
        forged = f"{len(blocks)} tool responses but verl ran {len(tool_rewards)} tool call(s)"
    retrieved: list[str] = []
    if not forged:
        for block in blocks:
            retrieved.extend(i for i in passage_ids(block) if i not in retrieved)
    answer, reason = _final_answer(turns[-1], unclosed)
    return Trajectory(
        searches=tuple(searches),
        dropped_calls=dropped,
        retrieved=tuple(retrieved),
        answer=answer,
        no_answer_reason=reason,
        think_closed=think_closed,
        forged=forged,
        n_responses=len(blocks),
        turns=tuple(turns),
    )


def _final_answer(turn: str, unclosed: str | None) -> tuple[str | None, str]:
    if unclosed is not None:
        return None, "unclosed_tool_response"
    part, closed = _answer_part(turn)
    if not closed:
        return None, "unterminated_think"
    if "<tool_call>" in part:
        return None, "ended_on_tool_call"  # the turn or length limit hit while the model still searched
    part = part.strip()
    return (part, "") if part else (None, "empty_answer")


def citations(answer: str | None) -> list[str]:
    """The ids an answer cites, ``[a123]`` (full-width brackets folded), unique, in order."""
    found: list[str] = []
    for doc_id in CITATION_RE.findall(unicodedata.normalize("NFKC", answer or "")):
        if doc_id not in found:
            found.append(doc_id)
    return found


def strip_citations(answer: str | None) -> str:
    """The answer without its citations (what the outcome is scored on)."""
    return CITATION_RE.sub("", unicodedata.normalize("NFKC", answer or "")).strip()


def source_doc_id(extra_info: Mapping[str, Any] | None) -> str | None:
    """The row's source document id: ``extra_info.source_doc_id`` (written by the rl_search_qa pipeline)."""
    value = (extra_info or {}).get("source_doc_id")
    return str(value) if value not in (None, "") else None
