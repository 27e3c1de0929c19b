"""Micro-batching: queries of concurrent requests are searched (and encoded) together, off the event loop.

A request puts its job on an asyncio queue and awaits a future. One collector task takes the first
waiting job, gathers more until ``max_batch`` queries are collected or ``max_wait_ms`` has passed, and
runs the whole batch in a single worker thread; jobs that arrive while a batch runs form the next one.
The event loop only queues and wakes requests, so it never blocks on encoding or search.

No web imports; Kedro-free library module.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

J = TypeVar("J")
R = TypeVar("R")


@dataclass
class BatcherStats:
    """Counters of a :class:`MicroBatcher` (reported by ``GET /info``)."""

    batches: int = 0
    jobs: int = 0
    queries: int = 0
    max_batch_jobs: int = 0
    max_batch_queries: int = 0
    failed_batches: int = 0
    busy_seconds: float = 0.0
    batch_sizes: dict[int, int] = field(default_factory=dict)  # queries per batch -> count

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counters."""
        return {
            "batches": self.batches,
            "jobs": self.jobs,
            "queries": self.queries,
            "max_batch_jobs": self.max_batch_jobs,
            "max_batch_queries": self.max_batch_queries,
            "mean_batch_queries": self.queries / self.batches if self.batches else 0.0,
            "failed_batches": self.failed_batches,
            "busy_seconds": round(self.busy_seconds, 4),
        }


class BatcherClosedError(RuntimeError):
    """The batcher is not running (not started yet, or stopped)."""


class MicroBatcher(Generic[J, R]):
    """Gathers jobs from concurrent callers and runs them as one batch in a worker thread.

    Args:
        run_batch: Answers a list of jobs with one result per job, in order (runs in the worker thread).
        size_of: Number of queries in a job (the unit of ``max_batch``).
        max_batch: Queries per batch; a larger single job runs alone.
        max_wait_ms: How long the first job of a batch waits for more.
        name: Name of the worker thread.
    """

    def __init__(
        self,
        run_batch: Callable[[list[J]], Sequence[R]],
        size_of: Callable[[J], int],
        max_batch: int,
        max_wait_ms: float,
        name: str = "search-batcher",
    ) -> None:
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_ms >= 0, got {max_batch}, {max_wait_ms}.")
        self._run_batch = run_batch
        self._size_of = size_of
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait_ms) / 1000.0
        self._name = name
        self._queue: asyncio.Queue[tuple[J, asyncio.Future[R]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._carry: tuple[J, asyncio.Future[R]] | None = None
        self.stats = BatcherStats()

    @property
    def running(self) -> bool:
        """Whether the collector task runs."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the collector task and the worker thread (call inside the serving event loop)."""
        if self.running:
            return
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
        self._task = asyncio.get_running_loop().create_task(self._collect(), name=self._name)

    async def stop(self) -> None:
        """Stop collecting, fail waiting jobs with :class:`BatcherClosedError` and end the worker thread."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        pending = [self._carry] if self._carry else []
        self._carry = None
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for _, future in pending:
            if not future.done():
                future.set_exception(BatcherClosedError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def run_in_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in the batch worker thread (e.g. a warm-up), in turn with the batches."""
        if self._executor is None:
            raise BatcherClosedError("the batcher is not started")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def submit(self, job: J) -> R:
        """Queue a job and wait for its result.

        Raises:
            BatcherClosedError: If the batcher is not running.
            Exception: Whatever ``run_batch`` raised for this job.
        """
        if not self.running or self._queue is None:
            raise BatcherClosedError("the batcher is not running")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await self._queue.put((job, future))
        return await future

    async def _next(self, timeout: float | None) -> tuple[J, asyncio.Future[R]] | None:
        assert self._queue is not None
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            return self._queue.get_nowait() if not self._queue.empty() else None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._next(None)
            assert first is not None
            batch = [first]
            size = self._size_of(first[0])
            deadline = loop.time() + self.max_wait
            while size < self.max_batch:
                item = await self._next(deadline - loop.time())
                if item is None:
                    break
                item_size = self._size_of(item[0])
                if size + item_size > self.max_batch:
                    self._carry = item  # starts the next batch
                    break
                batch.append(item)
                size += item_size
            live = [(job, fut) for job, fut in batch if not fut.done()]  # a cancelled request drops out
            if live:
                await self._run(live, size)

    async def _run(self, batch: list[tuple[J, asyncio.Future[R]]], size: int) -> None:
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        jobs = [job for job, _ in batch]
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self._run_batch, jobs)
            if len(results) != len(jobs):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(jobs)} jobs")
            outcome: list[tuple[bool, Any]] = [(True, r) for r in results]
        except Exception as exc:  # noqa: BLE001 -- handed to the callers' futures; one bad job must not fail its batch-mates: retry them one by one
            self.stats.failed_batches += 1
            if len(jobs) == 1:
                outcome = [(False, exc)]
            else:
                logger.warning("batch of %d jobs failed (%s); retrying them one by one", len(jobs), exc)
                outcome = []
                for job in jobs:
                    try:
                        outcome.append(
                            (True, (await loop.run_in_executor(self._executor, self._run_batch, [job]))[0])
                        )
                    except Exception as single:  # noqa: BLE001 -- handed to this job's future
                        outcome.append((False, single))
        elapsed = time.perf_counter() - started
        stats = self.stats
        stats.batches += 1
        stats.jobs += len(jobs)
        stats.queries += size
        stats.max_batch_jobs = max(stats.max_batch_jobs, len(jobs))
        stats.max_batch_queries = max(stats.max_batch_queries, size)
        stats.busy_seconds += elapsed
        stats.batch_sizes[size] = stats.batch_sizes.get(size, 0) + 1
        logger.debug("batch: %d jobs, %d queries in %.1f ms", len(jobs), size, elapsed * 1000)
        for (_, future), (ok, value) in zip(batch, outcome, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
