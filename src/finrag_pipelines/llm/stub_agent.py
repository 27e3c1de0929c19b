"""Scripted search agents for :class:`~finrag_pipelines.llm.stub_server.ScriptedOpenAIServer`.

:func:`search_agent` plays a model that follows the project's grounded-answer prompts, in whichever protocol
the request uses:

* a request offering ``tools`` (function calling): it calls ``search`` with the question until it has seen
  ``searches`` tool results, then answers with the first passage's opening words and cites its id;
* a request whose prompt mentions ``<search>`` (the text protocol): ``<search>question</search>`` until it has
  seen ``searches`` ``<information>`` blocks, then ``<answer>…[id]</answer>``;
* anything else: it answers from the passages in the prompt (``single_shot``), citing the first, or, without
  passages (``closed_book``), with a sentence of its own.

The question is read after the last ``问题：`` of the first user message (where the prompts put it).
"""

from __future__ import annotations

import re
from typing import Any

from .stub_server import Behaviour, Reply, tool_call

PASSAGE_HEADER = re.compile(r"^Doc \d+ \[([^\[\]\s]+)\][^\n]*\n([^\n]*)", re.MULTILINE)


def question_of(body: dict[str, Any], marker: str = "问题：") -> str:
    """The question in a request: the text after the last ``marker`` of the first user message."""
    for message in body.get("messages") or []:
        if isinstance(message, dict) and message.get("role") == "user":
            content = str(message.get("content") or "")
            return content.rsplit(marker, 1)[-1].strip() if marker in content else content.strip()
    return ""


def passages_in(text: str) -> list[tuple[str, str]]:
    """``(doc id, first text line)`` of every ``Doc i [id]`` passage in ``text``."""
    return [(m.group(1), m.group(2).strip()) for m in PASSAGE_HEADER.finditer(text or "")]


def _answer(passages: list[tuple[str, str]], question: str) -> str:
    if not passages:
        return f"关于“{question[:12]}”，我没有找到依据。"
    doc_id, line = passages[0]
    return f"{line[:60]}[{doc_id}]"


def search_agent(*, searches: int = 1, delay_s: float = 0.0, marker: str = "问题：") -> Behaviour:
    """A scripted model for both agent protocols, single_shot and closed_book (see the module docstring).

    Args:
        searches: Searches an agent makes before answering.
        delay_s: Delay before every reply.
        marker: What precedes the question in the user message.

    Returns:
        A behaviour.
    """

    def behaviour(body: dict[str, Any], n: int) -> Reply:
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        question = question_of(body, marker)
        prompt = " ".join(str(m.get("content") or "") for m in messages[:2])
        if body.get("tools"):
            results = [str(m.get("content") or "") for m in messages if m.get("role") == "tool"]
            if len(results) < searches:
                call = tool_call("search", {"query_list": [question]}, f"call_{n}")
                return Reply(tool_calls=[call], delay_s=delay_s)
            found = [p for text in results for p in passages_in(text)]
            return Reply(content=_answer(found, question), delay_s=delay_s)
        if "<search>" in prompt:
            infos = [
                str(m.get("content") or "")
                for m in messages
                if m.get("role") == "user" and str(m.get("content") or "").startswith("<information>")
            ]
            if len(infos) < searches:
                return Reply(content=f"<think>先检索。</think><search>{question}</search>", delay_s=delay_s)
            found = [p for text in infos for p in passages_in(text)]
            return Reply(content=f"<answer>{_answer(found, question)}</answer>", delay_s=delay_s)
        found = passages_in(str(messages[-1].get("content") or "")) if messages else []
        if found:
            return Reply(content=f"答案：{_answer(found, question)}", delay_s=delay_s)
        return Reply(content=f"据我所知，{question[:20]}需要结合公司公告判断。", delay_s=delay_s)

    return behaviour
