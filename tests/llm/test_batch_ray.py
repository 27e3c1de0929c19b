"""run_chat_batch_ray on a local 2-CPU Ray against a real local OpenAI-protocol server: the same results,
journal, retries, quarantine and failures as run_chat_batch; a rerun makes zero requests; a crash resumes."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
pytest.importorskip("ray.data")
pytestmark = pytest.mark.slow  # starts a local Ray (a few seconds) and worker processes

from finrag_pipelines.execution import ExecutionConfig, start_local_ray  # noqa: E402 (after the importorskip)
from finrag_pipelines.llm.batch import ChatRequest, ChatResult, run_chat_batch  # noqa: E402 (after the importorskip)
from finrag_pipelines.llm.client import ChatClient  # noqa: E402 (after the importorskip)
from finrag_pipelines.llm.config import LLMConfig  # noqa: E402 (after the importorskip)
from finrag_pipelines.llm.distributed import ChatActor, run_chat_batch_ray  # noqa: E402 (after the importorskip)
from finrag_pipelines.llm.journal import ResponseJournal  # noqa: E402 (after the importorskip)
from finrag_pipelines.llm.parsing import extract_json_object, one_of, pick  # noqa: E402 (after the importorskip)
from finrag_pipelines.llm.stub_server import Reply, ScriptedOpenAIServer, echo, last_user_message  # noqa: E402 (after the importorskip)


def make_config(base_url: str, **overrides: Any) -> LLMConfig:
    values: dict[str, Any] = {
        "backend": "openai",
        "base_url": base_url,
        "model": "stub-model",
        "max_concurrency": 4,
        "timeout_s": 5.0,
        "max_retries": 2,
        "temperature": 0.1,
        "max_tokens": 64,
        "extra_body": {"chat_template_kwargs": {"enable_thinking": False}},
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "max_failure_rate": 0.05,
        "max_invalid_retries": 2,
    }
    return LLMConfig(**(values | overrides))


def execution(**overrides: Any) -> ExecutionConfig:
    values: dict[str, Any] = {
        "backend": "ray",
        "num_cpus": 2,
        "num_actors": 2,
        "batch_size": 4,
        "address": None,
        "cpus_per_actor": 0.5,
        "gpus_per_actor": 0,
    }
    return ExecutionConfig(**(values | overrides))


def make_requests(n: int) -> list[ChatRequest]:
    return [
        ChatRequest(
            id=f"doc-{i}",
            messages=[{"role": "system", "content": "只输出 JSON。"}, {"role": "user", "content": f"q{i}"}],
        )
        for i in range(n)
    ]


def outcome(results: list[ChatResult]) -> list[tuple[Any, ...]]:
    return [(r.id, r.text, r.value, r.error, r.attempts, r.cached) for r in results]


def journal_attempts(journal: ResponseJournal) -> list[tuple[str, int, str]]:
    records = map(json.loads, journal.path.read_text("utf-8").splitlines())
    return sorted((r["id"], r["attempt"], r["key"]) for r in records)


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """One local Ray for the module; the code under test finds it initialised and leaves it running."""
    start_local_ray(ray, num_cpus=2)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer() as srv:
        yield srv


def run_both(
    server: ScriptedOpenAIServer,
    tmp_path: Path,
    requests: list[ChatRequest],
    behaviour: Callable[[], Any],
    validate: Callable[[str], Any] | None = None,
) -> tuple[list[ChatResult], list[ChatResult], int, int, ResponseJournal, ResponseJournal]:
    """Run the local and the Ray path over fresh journals and a freshly scripted server each."""
    config = make_config(server.base_url)
    server.behaviour, _ = behaviour(), server.reset()
    local_journal = ResponseJournal(tmp_path / "local.jsonl")
    local = run_chat_batch(
        requests,
        client_factory=lambda: ChatClient(config, "EMPTY"),
        journal=local_journal,
        config=config,
        validate=validate,
    )
    local_count = server.count
    server.behaviour, _ = behaviour(), server.reset()
    ray_journal = ResponseJournal(tmp_path / "ray.jsonl")
    remote = run_chat_batch_ray(
        requests,
        llm_config=config,
        credentials=None,
        journal=ray_journal,
        execution=execution(),
        validate=validate,
    )
    return local, remote, local_count, server.count, local_journal, ray_journal


def test_same_results_as_local_and_rerun_makes_zero_requests(
    server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    requests = make_requests(30)
    local, remote, n_local, n_ray, local_journal, ray_journal = run_both(
        server, tmp_path, requests, lambda: echo(prefix="answer:")
    )
    assert outcome(remote) == outcome(local)
    assert [r.text for r in remote] == [f"answer:q{i}" for i in range(30)]
    assert n_local == n_ray == 30
    assert journal_attempts(ray_journal) == journal_attempts(local_journal)

    server.reset()
    reopened = ResponseJournal(ray_journal.path)
    again = run_chat_batch_ray(
        requests,
        llm_config=make_config(server.base_url),
        credentials=None,
        journal=reopened,
        execution=execution(),
    )
    assert server.count == 0
    assert all(r.cached and r.attempts == 0 for r in again)
    assert [r.text for r in again] == [r.text for r in local]


def test_invalid_outputs_and_failures_are_accounted_as_locally(
    server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    def scripted() -> Callable[[dict[str, Any], int], Reply]:
        seen: Counter[str] = Counter()
        lock = threading.Lock()

        def behaviour(body: dict[str, Any], n: int) -> Reply:
            q = last_user_message(body)
            with lock:
                seen[q] += 1
                k = seen[q]
            if q == "q1" and k == 1:  # wrong the first time only
                return Reply(content="Sure! {character: one}")
            if q == "q2":  # always wrong: quarantined
                return Reply(content='{"question_type": "opinion"}')
            if q == "q3":  # retried, then failed
                return Reply(status=500, error_message="CUDA out of memory")
            if q == "q5":  # not retried
                return Reply(status=400, error_message="prompt too long")
            return Reply(content=f'```json\n{{"Question_Type": "Yes_Or_No", "n": "{q}"}}\n```')

        return behaviour

    def validate(text: str) -> str:
        return one_of(
            pick(extract_json_object(text), ["question_type"], "question_type"),
            ["yes_or_no"],
            "question_type",
        )

    local, remote, n_local, n_ray, local_journal, ray_journal = run_both(
        server, tmp_path, make_requests(8), scripted, validate
    )
    assert outcome(remote) == outcome(local)
    by_id = {r.id: r for r in remote}
    assert by_id["doc-1"].ok and by_id["doc-1"].attempts == 2
    assert by_id["doc-2"].error == "invalid output: question_type must be one of ['yes_or_no'], got 'opinion'"
    assert by_id["doc-3"].error == "HTTP 500 after 3 attempts: CUDA out of memory"
    assert by_id["doc-5"].error == "HTTP 400 (not retried): prompt too long"
    assert n_ray == n_local
    assert journal_attempts(ray_journal) == journal_attempts(local_journal)


def test_crash_mid_run_resumes_with_only_the_missing_requests(
    server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    armed = tmp_path / "crash-armed"
    armed.touch()

    class CrashingActor(ChatActor):
        """Dies on its fourth batch while ``armed`` exists (a worker crash mid-run)."""

        def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            self.calls = getattr(self, "calls", 0) + 1
            if armed.exists() and self.calls == 4:
                time.sleep(1.0)  # let the batches done reach the driver and the journal
                raise RuntimeError("simulated worker crash")
            return super().__call__(batch)

    server.behaviour, _ = echo(prefix="answer:"), server.reset()
    requests = make_requests(30)
    config = make_config(server.base_url)
    settings = execution(num_actors=1, batch_size=5)
    journal = ResponseJournal(tmp_path / "journal.jsonl")
    with pytest.raises(Exception, match="simulated worker crash"):
        run_chat_batch_ray(
            requests,
            llm_config=config,
            credentials=None,
            journal=journal,
            execution=settings,
            actor_cls=CrashingActor,
        )
    journal.close()
    done = len(ResponseJournal(journal.path))  # the batches that reached the driver (timing-dependent)
    assert done < 30

    armed.unlink()
    # The failed dataset's actor may still be finishing batches queued on it before Ray Data tears the
    # pool down; those requests belong to the crashed run, so wait for the server to go quiet first.
    wait_until_quiet(server)
    server.reset()
    reopened = ResponseJournal(journal.path)
    results = run_chat_batch_ray(
        requests,
        llm_config=config,
        credentials=None,
        journal=reopened,
        execution=settings,
        actor_cls=CrashingActor,
    )
    assert [r.text for r in results] == [f"answer:q{i}" for i in range(30)]
    assert sum(r.cached for r in results) == done
    # nothing journaled is re-sent, and every missing request is sent exactly once
    resent = Counter(last_user_message(body) for body in server.requests)
    assert set(resent) == {f"q{i}" for i, r in enumerate(results) if not r.cached}
    assert server.count == 30 - done and max(resent.values()) == 1
    assert len(reopened) == 30


def wait_until_quiet(server: ScriptedOpenAIServer, quiet_s: float = 2.0, limit_s: float = 30.0) -> None:
    """Return once the server's request count has not moved for ``quiet_s`` (at most ``limit_s``)."""
    deadline = time.monotonic() + limit_s
    last, since = server.count, time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if server.count != last:
            last, since = server.count, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
    raise AssertionError(f"the stub server kept receiving requests for {limit_s:.0f} s")


class DyingJournal(ResponseJournal):
    """A journal whose driver "dies" (raises) after ``limit`` records: a deterministic driver crash."""

    limit = 12

    def put(self, key: str, record: dict[str, Any]) -> None:
        if len(self) >= self.limit:
            raise KeyboardInterrupt("driver killed")
        super().put(key, record)


def test_driver_crash_resumes_with_exactly_the_missing_requests(
    server: ScriptedOpenAIServer, tmp_path: Path
) -> None:
    server.behaviour, _ = echo(prefix="answer:"), server.reset()
    requests = make_requests(30)
    config = make_config(server.base_url)
    path = tmp_path / "journal.jsonl"
    with pytest.raises(KeyboardInterrupt), DyingJournal(path) as dying:
        run_chat_batch_ray(
            requests, llm_config=config, credentials=None, journal=dying, execution=execution()
        )
    server.reset()
    with ResponseJournal(path) as journal:
        assert len(journal) == 12
        results = run_chat_batch_ray(
            requests, llm_config=config, credentials=None, journal=journal, execution=execution()
        )
    assert server.count == 18
    assert [r.text for r in results] == [f"answer:q{i}" for i in range(30)]
    assert sum(r.cached for r in results) == 12
