"""The agent's two protocols: OpenAI function calling with a ``search`` tool, and Search-R1's text tags.

A protocol starts the conversation (``start``), says which tool schemas to offer (``tools``) and reads one
reply (``step``): it appends the assistant turn and the search results to the conversation and returns the
final answer text, or ``None`` to continue. Everything the model gets wrong is answered with a message the
model can act on and counted in :class:`~finrag_pipelines.rag.records.Counters`:

* **function calling** (default): an assistant message with ``tool_calls``, then one ``role: tool`` message
  per call quoting its ``tool_call_id`` (the OpenAI protocol exactly). Arguments that are not a JSON object
  with ``query_list`` (or ``query``), and calls of unknown tools, get an error as the tool's answer. A server
  without a tool-call parser leaves Qwen's ``<tool_call>{…}</tool_call>`` in the text: it is read as a call.
  A call without an id gets ``call_<turn>_<i>``, so a replayed conversation is identical.
* **text**: ``<search>query</search>`` is answered with ``<information>…</information>`` in a user message
  (whatever the model wrote after ``</search>`` is dropped, so it cannot forge results);
  ``<answer>…</answer>``
  ends the run; a reply with neither tag is taken as the answer.

Searches past ``max_searches`` queries are refused with the configured message (``hit_search_limit``).

Kedro-free library module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Protocol

from finrag_pipelines.llm.client import ChatResponse
from finrag_pipelines.llm.parsing import strip_thinking
from finrag_pipelines.llm.prompts import PromptTemplate
from finrag_pipelines.rag.grounding import format_results, render_feedback
from finrag_pipelines.rag.records import Counters, SearchCall
from finrag_pipelines.rag.search import Searcher
from finrag_pipelines.rag.settings import AnswerSettings
from finrag_pipelines.serving.tool_text import ToolArgumentError, parse_query_list

SEARCH_TOOL = "search"
_HERMES_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)
_SEARCH_TAG = re.compile(r"<search>(.*?)</search>", re.DOTALL | re.IGNORECASE)
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_SEARCH_OPEN = re.compile(r"<search>", re.IGNORECASE)


class AgentRun:
    """One question's agent state: the conversation, the searches made, the counters.

    Args:
        messages: The opening messages.
        settings: Limits and passage formatting.
        searcher: Where searches go.
    """

    def __init__(self, messages: list[dict[str, Any]], settings: AnswerSettings, searcher: Searcher) -> None:
        self.messages = messages
        self.settings = settings
        self.searcher = searcher
        self.searches: list[SearchCall] = []
        self.counters = Counters()

    async def search(self, queries: Sequence[str]) -> str:
        """Search ``queries`` within the remaining ``max_searches`` and return the text shown to the model.

        Raises:
            SearchError: When the search fails for good.
        """
        limit = render_feedback(self.settings.feedback.search_limit, max_searches=self.settings.max_searches)
        remaining = self.settings.max_searches - len(self.searches)
        if remaining <= 0:
            self.counters.hit_search_limit += 1
            return limit
        taken = list(queries[:remaining])
        results = await self.searcher.search(taken, self.settings.top_k)
        for query, hits in zip(taken, results, strict=True):
            self.searches.append(
                SearchCall(query, [h.doc_id for h in hits], [round(float(h.score), 6) for h in hits])
            )
        text = format_results(taken, results, self.settings.passage_max_chars)
        if len(taken) < len(queries):
            self.counters.hit_search_limit += 1
            text += "\n\n" + limit
        return text


class AgentProtocol(Protocol):
    """How an agent talks to the model (see the module docstring)."""

    name: str
    tools: list[dict[str, Any]] | None

    def start(self, question: str) -> list[dict[str, Any]]:
        """The opening messages."""
        ...

    async def step(self, response: ChatResponse, run: AgentRun, turn: int) -> str | None:
        """Read one reply: extend ``run.messages``; return the final answer text or ``None`` to go on."""
        ...


def tool_schema_from_config(config: Any, name: str = SEARCH_TOOL) -> dict[str, Any]:
    """The ``tool_schema`` of tool ``name`` in a verl tools config (``conf/base/verl/search_tool.yaml``).

    Raises:
        ValueError: When the config has no such tool.
    """
    tools = config.get("tools") if isinstance(config, dict) else None
    for tool in tools if isinstance(tools, list) else []:
        schema = tool.get("tool_schema") if isinstance(tool, dict) else None
        function = schema.get("function") if isinstance(schema, dict) else None
        if isinstance(function, dict) and function.get("name") == name:
            return json.loads(json.dumps(schema))
    raise ValueError(
        f"the verl tools config has no tool_schema with function.name {name!r}; expected "
        "tools: [{tool_schema: {type: function, function: {name: search, ...}}}] as in "
        "conf/base/verl/search_tool.yaml."
    )


class FunctionCalling:
    """OpenAI function calling with the project's ``search`` tool.

    Args:
        prompt: The agent prompt (slots ``question``, ``abstention``, ``max_searches``).
        tool_schema: The ``search`` tool schema (``{"type": "function", "function": {...}}``).
        settings: The answer settings (abstention phrase, limits, feedback texts).
    """

    name = "function_calling"

    def __init__(self, prompt: PromptTemplate, tool_schema: dict[str, Any], settings: AnswerSettings) -> None:
        self.prompt = prompt
        self.tools: list[dict[str, Any]] | None = [tool_schema]
        self.settings = settings

    def start(self, question: str) -> list[dict[str, Any]]:
        """See :class:`AgentProtocol`."""
        return self.prompt.render(
            question=question,
            abstention=self.settings.abstention_phrase,
            max_searches=self.settings.max_searches,
        )

    async def step(self, response: ChatResponse, run: AgentRun, turn: int) -> str | None:
        """See :class:`AgentProtocol`."""
        calls, content = response.tool_calls, response.text
        if not calls:
            calls, content = _calls_in_text(response.text)
        if not calls:
            run.messages.append({"role": "assistant", "content": response.text})
            return response.text
        used = {c.get("id") for m in run.messages for c in m.get("tool_calls") or []}
        named = []
        for i, call in enumerate(calls):
            call_id = call.get("id")
            if not call_id or call_id in used:
                call_id = f"call_{turn}_{i}"
            used.add(call_id)
            named.append({"id": call_id, "type": "function", "function": dict(call["function"])})
        run.messages.append({"role": "assistant", "content": content or None, "tool_calls": named})
        for call in named:
            text = await self._execute(call["function"], run)
            run.messages.append({"role": "tool", "tool_call_id": call["id"], "content": text})
        return None

    async def _execute(self, function: dict[str, Any], run: AgentRun) -> str:
        feedback = self.settings.feedback
        if function.get("name") != SEARCH_TOOL:
            run.counters.unknown_tools += 1
            return render_feedback(feedback.unknown_tool, name=function.get("name"))
        try:
            arguments = json.loads(function.get("arguments") or "")
        except ValueError as exc:
            run.counters.malformed_tool_calls += 1
            return render_feedback(feedback.bad_arguments, reason=f"the arguments are not valid JSON ({exc})")
        try:
            queries = parse_query_list(arguments)
        except ToolArgumentError as exc:
            run.counters.malformed_tool_calls += 1
            return render_feedback(feedback.bad_arguments, reason=str(exc))
        return await run.search(queries)


def _calls_in_text(text: str) -> tuple[list[dict[str, Any]], str]:
    """Qwen/hermes ``<tool_call>{"name", "arguments"}</tool_call>`` blocks left in the text, as tool calls.

    A block that is not such JSON becomes a ``search`` call with the block as its (invalid) arguments, so the
    model is told what was wrong. Returns the calls and the text without the blocks.
    """
    body = strip_thinking(text or "")
    blocks = _HERMES_CALL.findall(body)
    calls = []
    for block in blocks:
        try:
            data = json.loads(block)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            arguments = data.get("arguments")
            raw = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
            calls.append(
                {"id": None, "type": "function", "function": {"name": data["name"], "arguments": raw}}
            )
        else:
            calls.append(
                {"id": None, "type": "function", "function": {"name": SEARCH_TOOL, "arguments": block}}
            )
    return calls, _HERMES_CALL.sub("", body).strip() if calls else text


class TextTags:
    """Search-R1's text protocol: ``<search>…</search>`` / ``<information>…</information>`` / ``<answer>``.

    Args:
        prompt: The agent prompt (slots ``question``, ``abstention``, ``max_searches``).
        settings: The answer settings.
    """

    name = "text"

    def __init__(self, prompt: PromptTemplate, settings: AnswerSettings) -> None:
        self.prompt = prompt
        self.tools: list[dict[str, Any]] | None = None
        self.settings = settings

    def start(self, question: str) -> list[dict[str, Any]]:
        """See :class:`AgentProtocol`."""
        return self.prompt.render(
            question=question,
            abstention=self.settings.abstention_phrase,
            max_searches=self.settings.max_searches,
        )

    async def step(self, response: ChatResponse, run: AgentRun, turn: int) -> str | None:
        """See :class:`AgentProtocol`."""
        body = strip_thinking(response.text)
        search = _SEARCH_TAG.search(body)
        answer_at = _ANSWER_OPEN.search(body)
        if search and (answer_at is None or search.start() < answer_at.start()):
            run.messages.append({"role": "assistant", "content": body[: search.end()]})
            query = " ".join(search.group(1).split())
            if query:
                information = await run.search([query])
            else:
                run.counters.malformed_tool_calls += 1
                information = self.settings.feedback.text_format
            run.messages.append({"role": "user", "content": f"<information>{information}</information>"})
            return None
        if answer_at is None and _SEARCH_OPEN.search(body):
            run.counters.malformed_tool_calls += 1
            run.messages.append({"role": "assistant", "content": body})
            run.messages.append({"role": "user", "content": self.settings.feedback.text_format})
            return None
        run.messages.append({"role": "assistant", "content": response.text})
        return response.text
