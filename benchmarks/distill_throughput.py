"""LLM batch throughput benchmark: how close ``run_chat_batch`` gets to the ideal request rate.

Usage::

    .venv/bin/python benchmarks/distill_throughput.py [--n 2000] [--concurrency 64] [--delay-ms 200]

A :class:`~finrag_pipelines.llm.stub_server.ScriptedOpenAIServer` runs in a *separate process*
(``python -m finrag_pipelines.llm.stub_server``), so its CPU time does not compete with our event loop
for the GIL, and answers every chat request after a fixed delay. With ``c`` requests in flight and a
delay ``d``, no client can beat ``c / d`` requests per second (``ideal_rps``); a client that sends one
request at a time gets ``1 / d`` (``sequential_bound_rps``, what the seed's per-document calls were
bounded by per thread). ``efficiency`` is measured / ideal; everything else in the client (HTTP,
JSON, journal writes, hashing, validation, the progress bar) shows up as the gap.

Measured:

* ``requests_per_s``: ``run_chat_batch`` over ``--n`` requests with an empty journal (every request goes
  to the server, every response is journaled and checked by query_distill's own stage-1 validator).
* ``cached_requests_per_s``: the same batch again over the now-full journal (no network at all).

Prints human-readable lines, then a final line holding one JSON object with every number.
``--profile FILE`` writes a cProfile of the client side of the network run.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT / "src") not in sys.path:
    sys.path.insert(0, str(_ROOT / "src"))

from finrag_pipelines.llm.batch import ChatRequest, ChatResult, run_chat_batch
from finrag_pipelines.llm.client import ChatClient
from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.llm.journal import ResponseJournal
from finrag_pipelines.llm.prompts import PromptTemplate
from finrag_pipelines.pipelines.query_distill.answers import PromptEcho, stage1_validator
from finrag_pipelines.pipelines.query_distill.params import AnswerParams, SpecParams

logger = logging.getLogger("distill_throughput")


# what a model answers to the stage-1 prompt: a short JSON object (the prompt itself is ~1-2 KB)
STAGE1_ANSWER = '{"character": 2, "question_type": "acquire_knowledge", "difficulty": "university"}'


def build_requests(n: int) -> list[ChatRequest]:
    """The benchmark's requests: query_distill's real stage-1 prompt (conf/base/prompts) over real passages.

    Passages come from the bundled FinTruthQA corpus (cycled, each request id distinct), candidates from the
    bundled personas, the question types and difficulties from conf/base/parameters_query_distill.yml. The
    stub answers every request with :data:`STAGE1_ANSWER`, checked by the real stage-1 validator (each request
    carries its own, which knows the request's candidates).

    Args:
        n: Number of requests.

    Returns:
        ``n`` requests with distinct ids and distinct messages.
    """
    prompt = PromptTemplate.from_yaml(_ROOT / "conf/base/prompts/query_distill_stage1.yml")
    conf = _conf("parameters_query_distill.yml")["query_distill"]
    spec, answers = SpecParams(**conf["spec"]), AnswerParams(**conf["answers"])
    echo = PromptEcho.of(prompt, answers.echo_min_chars)
    corpus = _ROOT / "data/01_raw/retrieval/fintruthqa/corpus.jsonl"
    passages = [
        json.loads(line)["text"] for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    personas_file = _ROOT / "data/01_raw/personas/persona_hub_tool.jsonl"
    personas = [
        json.loads(line)["persona"] for line in personas_file.read_text(encoding="utf-8").splitlines()[:50]
    ]
    choices = {
        "question_types": "\n".join(f"- {k}: {v}" for k, v in spec.question_types.items()),
        "difficulties": "\n".join(f"- {k}: {v}" for k, v in spec.difficulties.items()),
    }
    requests = []
    for i in range(n):
        shown = [personas[(i + j) % len(personas)] for j in range(1, 6)]
        candidates = "\n".join(f"{j}. {persona}" for j, persona in enumerate(shown, start=1))
        messages = prompt.render(
            passage=f"[{i}] {passages[i % len(passages)]}", characters=candidates, **choices
        )
        requests.append(
            ChatRequest(
                id=f"doc-{i}", messages=messages, validate=stage1_validator(shown, spec, answers, echo)
            )
        )
    return requests


def _conf(name: str) -> dict:
    return yaml.safe_load((_ROOT / "conf/base" / name).read_text(encoding="utf-8"))


def start_server(delay_ms: float, http: str, loop: str) -> tuple[subprocess.Popen[str], str]:
    """Start the stub server process and wait for its ``base_url`` line.

    Args:
        delay_ms: Fixed answer delay.
        http: uvicorn HTTP implementation for the server.
        loop: uvicorn event loop for the server.

    Returns:
        The process and its base URL.
    """
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(_ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [
        sys.executable,
        "-m",
        "finrag_pipelines.llm.stub_server",
        "--port",
        "0",
        "--delay-ms",
        str(delay_ms),
        "--content",
        STAGE1_ANSWER,
        "--http",
        http,
        "--loop",
        loop,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError(f"the stub server exited before printing its address: {' '.join(cmd)}")
    base_url = json.loads(line)["base_url"]
    return proc, base_url


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds used so far by process ``pid`` (Linux ``/proc``), else ``None``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def run_once(
    requests: list[ChatRequest], config: LLMConfig, journal_path: Path, profile: Path | None
) -> tuple[float, list[ChatResult]]:
    """One ``run_chat_batch`` over ``requests``; returns (seconds, results)."""
    with ResponseJournal(journal_path) as journal:
        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        results = run_chat_batch(
            requests,
            client_factory=lambda: ChatClient(config, api_key="EMPTY"),
            journal=journal,
            config=config,
            validate=None,  # each request carries query_distill's stage-1 validator
            desc="bench",
        )
        if profiler:
            profiler.disable()
            profiler.dump_stats(str(profile))
        return time.perf_counter() - started, results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its numbers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="number of requests")
    parser.add_argument("--concurrency", type=int, default=64, help="llm.max_concurrency")
    parser.add_argument("--delay-ms", type=float, default=200.0, help="server answer delay")
    parser.add_argument("--server-http", default="auto", choices=["auto", "h11", "httptools"])
    parser.add_argument("--server-loop", default="auto", choices=["auto", "asyncio", "uvloop"])
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile of the network run here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    delay_s = args.delay_ms / 1000.0
    requests = build_requests(args.n)
    proc, base_url = start_server(args.delay_ms, args.server_http, args.server_loop)
    try:
        config = LLMConfig(
            backend="openai",
            base_url=base_url,
            model="stub",
            max_concurrency=args.concurrency,
            timeout_s=30.0,
            max_retries=2,
            temperature=0.1,
            max_tokens=256,
            extra_body={"chat_template_kwargs": {"enable_thinking": False}},
            backoff_base_s=0.05,
            backoff_max_s=1.0,
            max_failure_rate=0.0,
            max_invalid_retries=0,
        )
        with tempfile.TemporaryDirectory(prefix="distill_bench_") as tmp:
            journal_path = Path(tmp) / "journal.jsonl"
            # Warm-up: imports, pydantic model building, the server's first requests (not timed).
            run_once(build_requests(args.concurrency), config, Path(tmp) / "warmup.jsonl", None)
            server_cpu_before = process_cpu_s(proc.pid)
            client_cpu_before = time.process_time()
            seconds, results = run_once(requests, config, journal_path, args.profile)
            client_cpu = time.process_time() - client_cpu_before
            server_cpu_after = process_cpu_s(proc.pid)
            server_cpu = (
                server_cpu_after - server_cpu_before
                if server_cpu_after is not None and server_cpu_before is not None
                else None
            )
            cached_seconds, cached_results = run_once(requests, config, journal_path, None)
            journal_mb = journal_path.stat().st_size / 1e6
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()

    errors = sum(1 for r in results if r.error is not None)
    rps = args.n / seconds
    ideal = args.concurrency / delay_s
    out = {
        "n_requests": args.n,
        "concurrency": args.concurrency,
        "delay_ms": args.delay_ms,
        "seconds": round(seconds, 3),
        "requests_per_s": round(rps, 1),
        "sequential_bound_rps": round(1.0 / delay_s, 2),
        "ideal_rps": round(ideal, 1),
        "efficiency": round(rps / ideal, 3),
        "errors": errors,
        "cached_requests_per_s": round(args.n / cached_seconds, 1),
        "cached_errors": sum(1 for r in cached_results if r.error is not None),
        "http_requests": sum(r.attempts for r in results),
        "journal_mb": round(journal_mb, 2),
        "client_cpu_ms_per_request": round(1000 * client_cpu / args.n, 3),
        "server_cpu_ms_per_request": round(1000 * server_cpu / args.n, 3) if server_cpu is not None else None,
        "server_http": args.server_http,
        "server_loop": args.server_loop,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(
        f"network run: {args.n} requests in {seconds:.2f}s = {rps:.1f} req/s "
        f"(ideal {ideal:.0f} req/s at concurrency {args.concurrency} x {args.delay_ms:.0f} ms; "
        f"efficiency {rps / ideal:.1%}; sequential bound {1 / delay_s:.1f} req/s); errors: {errors}"
    )
    print(
        f"CPU per request: client {1000 * client_cpu / args.n:.2f} ms, server "
        f"{(1000 * server_cpu / args.n) if server_cpu is not None else float('nan'):.2f} ms "
        f"(on {os.cpu_count()} cores)"
    )
    print(
        f"cached rerun: {args.n} requests in {cached_seconds:.2f}s = {args.n / cached_seconds:.0f} req/s, "
        f"0 network calls expected"
    )
    print(json.dumps(out))
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
