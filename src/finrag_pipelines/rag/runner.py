"""Answer many questions with several systems concurrently, resumably, never crashing on one question.

:func:`answer_questions` runs every (system, question) pair on a pool of workers: ``llm.max_concurrency``
LLM requests in flight at most (the chat's semaphore), and twice as many questions under way, so requests
keep flowing while other questions search. A question whose LLM request or search fails for good gets a
failed record (listed, never scored); anything else that raises is a bug and stops the run (turns already
journaled are kept, so a rerun resumes).

Kedro-free library module.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sys
import time
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from finrag_pipelines.llm.client import LLMRequestError
from finrag_pipelines.rag.chat import JournaledChat
from finrag_pipelines.rag.records import AnswerRecord, Question, failed_record
from finrag_pipelines.rag.search import SearchError
from finrag_pipelines.rag.systems import AnswerSystem

logger = logging.getLogger(__name__)

T = TypeVar("T")
PROGRESS_MIN_JOBS = 20


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion from synchronous code (in a worker thread if a loop is running)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag") as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _answer_one(system: AnswerSystem, question: Question) -> AnswerRecord:
    try:
        return await system.answer(question)
    except (LLMRequestError, SearchError) as exc:
        reason = exc.reason if isinstance(exc, LLMRequestError) else str(exc)
        what = "LLM request failed" if isinstance(exc, LLMRequestError) else "search failed"
        return failed_record(
            question,
            system.name,
            system.kind,
            f"{what}: {reason}",
            model=system.model,
            prompt_hash=system.prompt_hash,
            retriever=system.retriever,
            protocol=system.protocol,
        )


async def answer_questions_async(
    systems: Sequence[AnswerSystem],
    questions: Sequence[Question],
    *,
    concurrency: int,
    chat: JournaledChat | None,
    desc: str = "rag",
) -> list[AnswerRecord]:
    """Answer every question with every system; one record per pair, systems in order, then questions.

    Args:
        systems: The systems.
        questions: The questions (unique ids).
        concurrency: ``llm.max_concurrency``: twice as many pairs are worked on at once.
        chat: The shared chat (closed at the end), or ``None``.
        desc: Label for the progress bar and logs.

    Raises:
        ValueError: On duplicate question ids.
    """
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        raise ValueError(
            f"{desc}: duplicate question ids, e.g. {sorted({i for i in ids if ids.count(i) > 1})[:3]}"
        )
    from tqdm.auto import tqdm

    started = time.monotonic()
    jobs = [(s, i, q) for s, system in enumerate(systems) for i, q in enumerate(questions)]
    results: list[AnswerRecord | None] = [None] * len(jobs)
    progress = tqdm(
        total=len(jobs),
        desc=desc,
        unit="q",
        dynamic_ncols=True,
        file=sys.stderr,
        disable=True if len(jobs) < PROGRESS_MIN_JOBS else None,
    )
    searchers = {id(s.searcher): s.searcher for s in systems if s.searcher is not None}
    try:
        for system in systems:
            await system.prepare(questions)
        queue = iter(enumerate(jobs))

        async def worker() -> None:
            for slot, (s, _, question) in queue:
                results[slot] = await _answer_one(systems[s], question)
                progress.update(1)

        workers = [asyncio.ensure_future(worker()) for _ in range(min(2 * concurrency, len(jobs)))]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
    finally:
        progress.close()
        if chat is not None:
            await chat.aclose()
        for searcher in searchers.values():
            await searcher.aclose()
    records = [r for r in results if r is not None]
    if len(records) != len(jobs):
        raise RuntimeError(f"{desc}: {len(jobs) - len(records)} questions got no record; a bug.")
    _log(records, systems, chat, time.monotonic() - started, desc)
    return records


def answer_questions(
    systems: Sequence[AnswerSystem],
    questions: Sequence[Question],
    *,
    concurrency: int,
    chat: JournaledChat | None,
    desc: str = "rag",
) -> list[AnswerRecord]:
    """Synchronous :func:`answer_questions_async` (for nodes, scripts and notebooks)."""
    return run_sync(answer_questions_async(systems, questions, concurrency=concurrency, chat=chat, desc=desc))


def _log(
    records: list[AnswerRecord],
    systems: Sequence[AnswerSystem],
    chat: JournaledChat | None,
    elapsed: float,
    desc: str,
) -> None:
    for system in systems:
        mine = [r for r in records if r.system == system.name]
        failed = [r for r in mine if r.failed]
        counters: dict[str, int] = {}
        for record in mine:
            for key, value in vars(record.counters).items():
                counters[key] = counters.get(key, 0) + int(value)
        shown = ", ".join(f"{k} {v}" for k, v in counters.items() if v) or "nothing went wrong"
        logger.info(
            "%s: %s answered %d questions (%d failed, %d abstained); counted: %s",
            desc,
            system.name,
            len(mine),
            len(failed),
            sum(r.abstained for r in mine),
            shown,
        )
        if failed:
            logger.warning("%s: %s first failure: %s", desc, system.name, failed[0].error)
    if chat is not None:
        logger.info(
            "%s: %d records in %.1fs; LLM turns: %d from the journal, %d sent (%d HTTP requests)",
            desc,
            len(records),
            elapsed,
            chat.stats.cached,
            chat.stats.sent,
            chat.stats.http_requests,
        )
