"""What one answering system did for one question: the answer record (a trajectory, in plain data).

An :class:`AnswerRecord` is the one result shape of every system (``closed_book``, ``single_shot``,
``agent``) and of both agent protocols. It is what the ``rag_answer`` pipeline saves per question, what its
metrics read, what ``finrag-ask --json`` prints, and the trajectory notion the search-QA reward shares: the
searches made (query, returned doc ids and scores, in order), the ids shown to the model, the answer and the
ids it cites, and counters of everything that went wrong without stopping the run.

Kedro-free library module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

SYSTEM_KINDS: tuple[str, ...] = ("closed_book", "single_shot", "agent")
"""``closed_book``: no retrieval; ``single_shot``: retrieve the question, read once; ``agent``: multi-turn
search with a ``search`` tool (function calling) or ``<search>`` tags (text protocol)."""

EXTRACTIVE_MODEL = "extractive (not an LLM)"
"""The ``model`` of answers written by the offline extractive reader."""


@dataclass(frozen=True)
class Question:
    """One question to answer.

    Attributes:
        id: The question id (an evaluation query id, or ``"ask"`` for an ad-hoc question).
        text: The question text.
    """

    id: str
    text: str


@dataclass
class SearchCall:
    """One search the system ran: a query and what came back, best first.

    Attributes:
        query: The query text as searched.
        doc_ids: Returned document ids, in rank order.
        scores: Their scores (the retriever's scale), aligned with ``doc_ids``.
    """

    query: str
    doc_ids: list[str]
    scores: list[float]


@dataclass
class Counters:
    """Things that went wrong in one question's run, handled and counted (never a crash).

    Attributes:
        malformed_tool_calls: Tool calls whose arguments were not a JSON object with a usable
            ``query_list``/``query`` (function calling), or ``<search>`` tags that were empty or never
            closed (text protocol). The model was told and could try again.
        unknown_tools: Calls of a tool other than ``search``.
        hit_search_limit: Search requests refused (or cut) because ``max_searches`` queries were used.
        hit_turn_limit: 1 when the model was still searching at ``max_turns`` (no final answer).
        invalid_citations: Cited ids that were never shown to the model.
        empty_answers: Replies with no text and no tool call (each one was asked again, up to
            ``llm.max_invalid_retries`` times).
    """

    malformed_tool_calls: int = 0
    unknown_tools: int = 0
    hit_search_limit: int = 0
    hit_turn_limit: int = 0
    invalid_citations: int = 0
    empty_answers: int = 0


@dataclass
class AnswerRecord:
    """The result of one system on one question.

    Attributes:
        question_id: The question's id.
        system: The configured system name (e.g. ``agent_finetuned``).
        kind: ``closed_book``, ``single_shot`` or ``agent``.
        answer: The final answer as parsed (thinking, tags and labels removed; citations kept), ``""`` when
            the system gave none.
        citations: Ids cited in the answer as ``[id]``, first-seen order, unique (valid or not).
        abstained: The answer says the configured abstention phrase.
        searches: Every search run, in order (``single_shot``: one, the question itself).
        turns: LLM calls made for this question, regenerations of empty replies included (0 for the
            extractive reader).
        counters: What went wrong and was handled.
        error: ``None``, or why the question failed (an LLM request or a search that failed for good);
            a failed question is listed, never scored.
        model: The model that answered (``llm.model``, or :data:`EXTRACTIVE_MODEL`).
        prompt_hash: Hash of the prompt (template, tool schema, protocol messages) that produced it.
        retriever: The retriever searched (``bm25``, ``hybrid_finetuned``, ``url:hybrid``...), ``None``
            for ``closed_book``.
        protocol: The agent protocol (``function_calling`` or ``text``), ``None`` for other kinds.
        messages: The full conversation (the trajectory) when kept, else ``None``.
    """

    question_id: str
    system: str
    kind: str
    answer: str
    citations: list[str]
    abstained: bool
    searches: list[SearchCall]
    turns: int
    counters: Counters
    error: str | None
    model: str
    prompt_hash: str | None
    retriever: str | None = None
    protocol: str | None = None
    messages: list[dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def failed(self) -> bool:
        """Whether the question failed (listed, not scored)."""
        return self.error is not None

    @property
    def shown_doc_ids(self) -> list[str]:
        """Every document id the searches returned (shown to the model), first-seen order, unique."""
        return list(dict.fromkeys(doc for search in self.searches for doc in search.doc_ids))

    @property
    def invalid_citation_ids(self) -> list[str]:
        """Cited ids that no search returned."""
        shown = set(self.shown_doc_ids)
        return [doc for doc in self.citations if doc not in shown]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (nested dataclasses as dicts)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnswerRecord:
        """Rebuild a record from :meth:`to_dict`'s output.

        Raises:
            ValueError: Naming the unknown or missing keys.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"answer record has unknown keys {unknown}; expected {sorted(known)}")
        values = dict(data)
        try:
            values["searches"] = [SearchCall(**s) for s in data.get("searches") or []]
            values["counters"] = Counters(**(data.get("counters") or {}))
            return cls(**values)
        except TypeError as exc:
            raise ValueError(f"answer record {data.get('question_id')!r} is malformed: {exc}") from exc


def failed_record(
    question: Question,
    system: str,
    kind: str,
    error: str,
    *,
    model: str,
    prompt_hash: str | None,
    retriever: str | None,
    protocol: str | None,
) -> AnswerRecord:
    """The record of a question that failed for good (an LLM request or a search): listed, never scored."""
    return AnswerRecord(
        question_id=question.id,
        system=system,
        kind=kind,
        answer="",
        citations=[],
        abstained=False,
        searches=[],
        turns=0,
        counters=Counters(),
        error=error,
        model=model,
        prompt_hash=prompt_hash,
        retriever=retriever,
        protocol=protocol,
    )
