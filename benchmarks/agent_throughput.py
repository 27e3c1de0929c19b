"""Agent throughput benchmark: how close many concurrent agent runs get to the endpoint's ideal request rate.

Usage::

    .venv/bin/python benchmarks/agent_throughput.py [--n 1000] [--concurrency 64] [--delay-ms 200]

A :class:`~finrag_pipelines.llm.stub_server.ScriptedOpenAIServer` runs in a *separate process* (``python -m
finrag_pipelines.llm.stub_server --agent``) and plays a function-calling model that answers every request
after a fixed delay: the first turn of a question calls ``search``, the second answers citing a passage. The
agents are the project's own (``rag_answer``'s conf, prompts and ``search`` tool schema), searching a real
BM25 index of the bundled FinTruthQA corpus in process (micro-batched), with every turn and search
journaled. With ``c`` requests in flight and a delay ``d`` no client can beat ``c / d`` requests per second
(``ideal_rps``); ``efficiency`` is measured / ideal, so everything else (HTTP, JSON, journal writes,
hashing, searches, parsing, the event loop) shows up as the gap.

Measured: ``requests_per_s`` over ``--n`` questions with an empty journal (two LLM requests each), and
``cached_questions_per_s``, the same questions again over the full journal (no network at all).

Prints human-readable lines, then a final line holding one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT / "src") not in sys.path:
    sys.path.insert(0, str(_ROOT / "src"))

from finrag_pipelines.llm.client import ChatClient
from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.llm.journal import ResponseJournal
from finrag_pipelines.pipelines.index_build.nodes import build_bm25_index
from finrag_pipelines.pipelines.index_build.params import BM25Params, LuceneParams
from finrag_pipelines.rag.chat import JournaledChat
from finrag_pipelines.rag.factory import PROMPT_NAMES, Indexes, PromptSet, build_searchers, build_systems
from finrag_pipelines.rag.protocols import tool_schema_from_config
from finrag_pipelines.rag.records import AnswerRecord, Question
from finrag_pipelines.rag.runner import answer_questions
from finrag_pipelines.rag.settings import AnswerSettings, ExtractiveSettings, SearchSettings, SystemSpec
from finrag_pipelines.retrieval.types import Unavailable

logger = logging.getLogger("agent_throughput")
DATA = _ROOT / "data/01_raw/retrieval/fintruthqa"


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build_indexes() -> Indexes:
    """The bundled FinTruthQA corpus and its BM25 index (the project's BM25 settings); no dense index."""
    rows = _jsonl(DATA / "corpus.jsonl")
    corpus = pd.DataFrame(
        {
            "doc_id": [r["_id"] for r in rows],
            "title": [r.get("title") or "" for r in rows],
            "text": [r["text"] for r in rows],
        }
    )
    conf = _yaml(_ROOT / "conf/base/parameters_index_build.yml")["index_build"]
    none = Unavailable(what="dense index", reason="not used by this benchmark")
    return Indexes(
        doc_ids=list(corpus["doc_id"]),
        titles=list(corpus["title"]),
        texts=list(corpus["text"]),
        bm25=build_bm25_index(corpus, BM25Params(**conf["bm25"]), LuceneParams(**conf["lucene"])),
        dense=none,
        encoder=none,
        dense_finetuned=none,
        encoder_finetuned=none,
    )


def questions(n: int) -> list[Question]:
    """``n`` FinTruthQA questions (cycled, each id and text distinct)."""
    rows = _jsonl(DATA / "queries.jsonl")
    return [Question(f"q{i}", f"{rows[i % len(rows)]['text']}（{i}）") for i in range(n)]


def start_server(delay_ms: float) -> tuple[subprocess.Popen[str], str]:
    """The scripted search agent in its own process; returns it and its base URL."""
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
        "--agent",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError(f"the stub server exited before printing its address: {' '.join(cmd)}")
    return proc, json.loads(line)["base_url"]


def run_once(
    indexes: Indexes, qs: list[Question], config: LLMConfig, journal_path: Path
) -> tuple[float, list[AnswerRecord], int]:
    """One run of the agent over ``qs`` (searches journaled, as in rag_answer); returns (seconds, records,
    LLM requests sent)."""
    rag = _yaml(_ROOT / "conf/base/parameters_rag_answer.yml")["rag_answer"]
    prompts = PromptSet.from_mappings(
        {n: _yaml(_ROOT / f"conf/base/prompts/rag_{n}.yml") for n in PROMPT_NAMES}
    )
    tool = tool_schema_from_config(_yaml(_ROOT / "conf/base/verl/search_tool.yaml"))
    with ResponseJournal(journal_path) as journal:
        chat = JournaledChat(config, journal, lambda: ChatClient(config, "EMPTY"))
        systems = build_systems(
            {"agent": SystemSpec(kind="agent", retriever="bm25")},
            {"agent": "evaluated"},
            settings=AnswerSettings(**rag["answer"]),
            extractive=ExtractiveSettings(**rag["extractive"]),
            chat=chat,
            prompts=prompts,
            tool_schema=tool,
            searchers=build_searchers({"bm25"}, SearchSettings(**rag["search"]), indexes, journal),
        )
        started = time.perf_counter()
        records = answer_questions(systems, qs, concurrency=config.max_concurrency, chat=chat, desc="bench")
        return time.perf_counter() - started, records, chat.stats.sent


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its numbers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="questions (two LLM requests each)")
    parser.add_argument("--concurrency", type=int, default=64, help="llm.max_concurrency")
    parser.add_argument("--delay-ms", type=float, default=200.0, help="server answer delay")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    delay_s = args.delay_ms / 1000.0
    indexes = build_indexes()
    qs = questions(args.n)
    proc, base_url = start_server(args.delay_ms)
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
        with tempfile.TemporaryDirectory(prefix="agent_bench_") as tmp:
            # warm-up: imports, the server's first connections, the search thread (not timed)
            run_once(indexes, questions(args.concurrency), config, Path(tmp) / "warmup.jsonl")
            client_cpu_before = time.process_time()
            seconds, records, sent = run_once(indexes, qs, config, Path(tmp) / "journal.jsonl")
            client_cpu = time.process_time() - client_cpu_before
            cached_seconds, _, cached_sent = run_once(indexes, qs, config, Path(tmp) / "journal.jsonl")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()

    failed = sum(r.failed for r in records)
    searched = sum(len(r.searches) for r in records)
    cited = sum(bool(r.citations) and not r.counters.invalid_citations for r in records)
    rps = sent / seconds
    ideal = args.concurrency / delay_s
    out = {
        "n_questions": args.n,
        "concurrency": args.concurrency,
        "delay_ms": args.delay_ms,
        "seconds": round(seconds, 3),
        "llm_requests": sent,
        "searches": searched,
        "requests_per_s": round(rps, 1),
        "questions_per_s": round(args.n / seconds, 1),
        "ideal_rps": round(ideal, 1),
        "efficiency": round(rps / ideal, 3),
        "failed": failed,
        "answers_citing_shown_passages": cited,
        "cached_questions_per_s": round(args.n / cached_seconds, 1),
        "cached_llm_requests": cached_sent,
        "client_cpu_ms_per_request": round(1000 * client_cpu / max(1, sent), 3),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(
        f"network run: {args.n} agent questions ({sent} LLM requests, {searched} searches) in "
        f"{seconds:.2f}s = {rps:.1f} req/s (ideal {ideal:.0f} req/s at concurrency {args.concurrency} x "
        f"{args.delay_ms:.0f} ms; efficiency {rps / ideal:.1%}); failed: {failed}"
    )
    print(
        f"cached rerun: {args.n} questions in {cached_seconds:.2f}s, {cached_sent} LLM requests (0 expected)"
    )
    print(json.dumps(out))
    return 0 if failed == 0 and cached_sent == 0 and sent == 2 * args.n else 1


if __name__ == "__main__":
    sys.exit(main())
