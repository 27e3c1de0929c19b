"""The answering systems behind one interface: ``closed_book``, ``single_shot`` and ``agent``.

Every system is an :class:`AnswerSystem`: ``await prepare(questions)`` (optional batched work) then
``await answer(question) -> AnswerRecord``. LLM turns go through a
:class:`~finrag_pipelines.rag.chat.JournaledChat`; searches through a
:class:`~finrag_pipelines.rag.search.Searcher`. The agent's two protocols are strategy objects
(:mod:`.protocols`). A system never raises for something the model did (malformed calls, unknown tools, search
loops, empty replies, invented citations are counted in the record); only a request or a search that fails
for good raises, and the runner records that question as failed.

Kedro-free library module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from finrag_pipelines.llm.client import ChatResponse
from finrag_pipelines.llm.parsing import strip_thinking
from finrag_pipelines.llm.prompts import PromptTemplate
from finrag_pipelines.rag.chat import JournaledChat
from finrag_pipelines.rag.extractive import extract_answer
from finrag_pipelines.rag.grounding import Hit, answer_body, cited_ids, format_passages, is_abstention
from finrag_pipelines.rag.protocols import AgentProtocol, AgentRun
from finrag_pipelines.rag.records import EXTRACTIVE_MODEL, AnswerRecord, Counters, Question, SearchCall
from finrag_pipelines.rag.search import Searcher, SearchError
from finrag_pipelines.rag.settings import AnswerSettings, ExtractiveSettings

logger = logging.getLogger(__name__)

PREFETCH_BATCH = 64
"""Questions per batched search when ``single_shot`` prefetches its passages."""


class AnswerSystem:
    """What every system shares: settings, the LLM route, parsing the final answer into a record.

    Args:
        name: The configured system name.
        kind: ``closed_book``, ``single_shot`` or ``agent``.
        settings: Passages, limits, abstention phrase.
        chat: The journaled LLM route, or ``None`` (only the extractive ``single_shot`` works without one).
        prompt_hash: Hash of everything that shapes the prompt.
        searcher: Where searches go (``None`` for ``closed_book``).
        protocol: The agent protocol's name, or ``None``.
    """

    def __init__(
        self,
        name: str,
        kind: str,
        settings: AnswerSettings,
        chat: JournaledChat | None,
        prompt_hash: str | None,
        searcher: Searcher | None = None,
        protocol: str | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.settings = settings
        self.chat = chat
        self.prompt_hash = prompt_hash
        self.searcher = searcher
        self.protocol = protocol

    @property
    def model(self) -> str:
        """The model stamped on this system's answers."""
        return self.chat.model if self.chat is not None else EXTRACTIVE_MODEL

    @property
    def retriever(self) -> str | None:
        """The searcher's name, or ``None``."""
        return self.searcher.name if self.searcher is not None else None

    async def prepare(self, questions: Sequence[Question]) -> None:
        """Batched work before the questions are answered one by one (nothing by default)."""

    async def answer(self, question: Question) -> AnswerRecord:
        """Answer one question.

        Raises:
            LLMRequestError: When an LLM request fails for good.
            SearchError: When a search fails for good.
        """
        raise NotImplementedError

    async def _ask(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        record_id: str,
        counters: Counters,
        usable: Callable[[ChatResponse], bool],
    ) -> tuple[ChatResponse, int]:
        """One turn, asked again (a new journal key) while the reply is not usable, up to
        ``llm.max_invalid_retries`` times; returns the last reply and the calls made."""
        assert self.chat is not None
        retries = self.chat.config.max_invalid_retries
        for attempt in range(retries + 1):
            response = await self.chat.ask(messages, tools=tools, record_id=record_id, attempt=attempt)
            if usable(response) or attempt == retries:
                return response, attempt + 1
            counters.empty_answers += 1
        raise AssertionError("unreachable")

    def _record(
        self,
        question: Question,
        raw: str,
        searches: list[SearchCall],
        turns: int,
        counters: Counters,
        messages: list[dict[str, Any]] | None,
    ) -> AnswerRecord:
        body = answer_body(raw)
        if not body and not counters.hit_turn_limit:
            counters.empty_answers += 1
        citations = cited_ids(body)
        shown = {doc for search in searches for doc in search.doc_ids}
        counters.invalid_citations = sum(1 for doc in citations if doc not in shown)
        return AnswerRecord(
            question_id=question.id,
            system=self.name,
            kind=self.kind,
            answer=body,
            citations=citations,
            abstained=bool(body) and is_abstention(body, self.settings.abstention_phrase),
            searches=searches,
            turns=turns,
            counters=counters,
            error=None,
            model=self.model,
            prompt_hash=self.prompt_hash,
            retriever=self.retriever,
            protocol=self.protocol,
            messages=messages if self.settings.keep_messages else None,
        )


def _has_text(response: ChatResponse) -> bool:
    return bool(answer_body(response.text))


def _search_call(query: str, hits: Sequence[Hit]) -> SearchCall:
    return SearchCall(query, [h.doc_id for h in hits], [round(float(h.score), 6) for h in hits])


class ClosedBook(AnswerSystem):
    """The model answers from its own knowledge: no search, one call."""

    def __init__(
        self,
        name: str,
        settings: AnswerSettings,
        chat: JournaledChat,
        prompt: PromptTemplate,
        prompt_hash: str,
    ) -> None:
        super().__init__(name, "closed_book", settings, chat, prompt_hash)
        self.prompt = prompt

    async def answer(self, question: Question) -> AnswerRecord:
        """See :meth:`AnswerSystem.answer`."""
        counters = Counters()
        messages = self.prompt.render(question=question.text, abstention=self.settings.abstention_phrase)
        response, turns = await self._ask(messages, None, f"{self.name}:{question.id}:0", counters, _has_text)
        trajectory = [*messages, {"role": "assistant", "content": response.text}]
        return self._record(question, response.text, [], turns, counters, trajectory)


class SingleShot(AnswerSystem):
    """Retrieve-then-read: the question's top-k passages in the prompt, one call (or the extractive reader).

    Args:
        prompt: The reader prompt, or ``None`` with ``chat=None`` (the extractive reader).
        extractive: The extractive reader's settings (used when ``chat`` is ``None``).
    """

    def __init__(
        self,
        name: str,
        settings: AnswerSettings,
        chat: JournaledChat | None,
        prompt: PromptTemplate | None,
        prompt_hash: str | None,
        searcher: Searcher,
        extractive: ExtractiveSettings,
    ) -> None:
        super().__init__(name, "single_shot", settings, chat, prompt_hash, searcher)
        if chat is not None and prompt is None:
            raise ValueError(f"system {name!r}: an LLM reader needs its prompt")
        self.prompt = prompt
        self.extractive = extractive
        self._prefetched: dict[str, list[Hit]] = {}

    async def prepare(self, questions: Sequence[Question]) -> None:
        """Search every question's passages in batches (one encoder pass per batch)."""
        assert self.searcher is not None
        for start in range(0, len(questions), PREFETCH_BATCH):
            batch = questions[start : start + PREFETCH_BATCH]
            try:
                results = await self.searcher.search([q.text for q in batch], self.settings.top_k)
            except SearchError as exc:  # each question then searches (and fails) on its own
                logger.warning(
                    "%s: batched search failed (%s); searching question by question", self.name, exc
                )
                return
            self._prefetched.update({q.id: hits for q, hits in zip(batch, results, strict=True)})

    async def answer(self, question: Question) -> AnswerRecord:
        """See :meth:`AnswerSystem.answer`."""
        assert self.searcher is not None
        hits = self._prefetched.pop(question.id, None)
        if hits is None:
            hits = (await self.searcher.search([question.text], self.settings.top_k))[0]
        searches = [_search_call(question.text, hits)]
        counters = Counters()
        if self.chat is None:
            raw = extract_answer(question.text, hits, self.extractive, self.settings.abstention_phrase)
            return self._record(question, raw, searches, 0, counters, None)
        assert self.prompt is not None
        messages = self.prompt.render(
            question=question.text,
            passages=format_passages(hits, self.settings.passage_max_chars),
            abstention=self.settings.abstention_phrase,
        )
        response, turns = await self._ask(messages, None, f"{self.name}:{question.id}:0", counters, _has_text)
        trajectory = [*messages, {"role": "assistant", "content": response.text}]
        return self._record(question, response.text, searches, turns, counters, trajectory)


class Agent(AnswerSystem):
    """Multi-turn: the model decides when and what to search, up to ``max_searches`` / ``max_turns``."""

    def __init__(
        self,
        name: str,
        settings: AnswerSettings,
        chat: JournaledChat,
        protocol: AgentProtocol,
        prompt_hash: str,
        searcher: Searcher,
    ) -> None:
        super().__init__(name, "agent", settings, chat, prompt_hash, searcher, protocol.name)
        self.strategy = protocol

    def _usable(self, response: ChatResponse) -> bool:
        return bool(response.tool_calls) or bool(strip_thinking(response.text))

    async def answer(self, question: Question) -> AnswerRecord:
        """See :meth:`AnswerSystem.answer`."""
        assert self.searcher is not None
        run = AgentRun(self.strategy.start(question.text), self.settings, self.searcher)
        turns, final = 0, None
        while turns < self.settings.max_turns:
            record_id = f"{self.name}:{question.id}:{turns}"
            response, calls = await self._ask(
                run.messages, self.strategy.tools, record_id, run.counters, self._usable
            )
            turns += calls
            final = await self.strategy.step(response, run, turns)
            if final is not None:
                break
        if final is None:
            run.counters.hit_turn_limit = 1
        return self._record(question, final or "", run.searches, turns, run.counters, run.messages)
