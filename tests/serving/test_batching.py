"""MicroBatcher: gathering across callers, size limit, error isolation, off-loop execution."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from finrag_pipelines.serving.batching import BatcherClosedError, MicroBatcher


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_concurrent_jobs_are_batched_and_answered_in_order() -> None:
    seen: list[list[list[str]]] = []
    threads: set[str] = set()

    def run_batch(jobs: list[list[str]]) -> list[list[str]]:
        seen.append(jobs)
        threads.add(threading.current_thread().name)
        time.sleep(0.02)  # blocking work must not block the loop
        return [[q.upper() for q in job] for job in jobs]

    async def main():  # type: ignore[no-untyped-def]
        batcher = MicroBatcher(run_batch, size_of=len, max_batch=8, max_wait_ms=20)
        await batcher.start()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            for _ in range(10):
                await asyncio.sleep(0.005)
                ticks += 1

        jobs = [[f"q{i}", f"r{i}"] for i in range(10)]
        results, _ = await asyncio.gather(asyncio.gather(*(batcher.submit(j) for j in jobs)), ticker())
        await batcher.stop()
        return jobs, results, ticks, batcher.stats

    jobs, results, ticks, stats = run(main())
    assert results == [[q.upper() for q in job] for job in jobs]
    assert all(sum(len(j) for j in batch) <= 8 for batch in seen)  # max_batch counts queries
    assert stats.max_batch_jobs > 1 and stats.jobs == 10 and stats.queries == 20
    assert stats.batches == len(seen) < 10
    assert ticks == 10  # the loop kept running while batches ran
    assert all(name.startswith("search-batcher") for name in threads)


def test_an_oversized_job_runs_alone() -> None:
    async def main():  # type: ignore[no-untyped-def]
        batcher = MicroBatcher(lambda jobs: [len(j) for j in jobs], size_of=len, max_batch=4, max_wait_ms=5)
        await batcher.start()
        result = await batcher.submit(list(range(10)))
        await batcher.stop()
        return result

    assert run(main()) == 10


def test_a_failing_job_does_not_fail_its_batch_mates() -> None:
    def run_batch(jobs: list[str]) -> list[str]:
        if "bad" in jobs:
            raise RuntimeError("boom on bad")
        return [j * 2 for j in jobs]

    async def main():  # type: ignore[no-untyped-def]
        batcher = MicroBatcher(run_batch, size_of=lambda _: 1, max_batch=8, max_wait_ms=20)
        await batcher.start()
        results = await asyncio.gather(
            *(batcher.submit(j) for j in ["a", "bad", "c"]), return_exceptions=True
        )
        await batcher.stop()
        return results

    good_a, bad, good_c = run(main())
    assert (good_a, good_c) == ("aa", "cc")
    assert isinstance(bad, RuntimeError) and "boom" in str(bad)


def test_submit_needs_a_started_batcher() -> None:
    batcher = MicroBatcher(lambda jobs: jobs, size_of=lambda _: 1, max_batch=2, max_wait_ms=1)
    with pytest.raises(BatcherClosedError):
        run(batcher.submit("x"))
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(lambda jobs: jobs, size_of=lambda _: 1, max_batch=0, max_wait_ms=1)
