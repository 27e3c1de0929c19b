"""The managed LLM server's lifecycle on a CPU: the launch command runs the project's scripted OpenAI server
(``finrag_pipelines.llm.stub_server``, which takes sglang's launch flags) instead of sglang."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from finrag_pipelines.llm.client import client_factory
from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.llm.managed_server import (
    MARKER,
    PID_FILE,
    ManagedServer,
    ManagedServerConfig,
    ManagedServerError,
    marked_processes,
    preflight,
)

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="process checks read /proc (Linux)")

STUB = "finrag_pipelines.llm.stub_server"


def server_config(tmp_path: Path, **changes: Any) -> ManagedServerConfig:
    values: dict[str, Any] = {
        "python": sys.executable,
        "module": STUB,
        "model_path": "/models/qwen3-stub",
        "served_model_name": None,
        "host": "127.0.0.1",
        "port": 0,
        "tp_size": 2,
        "mem_fraction_static": 0.8,
        "reasoning_parser": "qwen3",
        "tool_call_parser": "qwen25",
        "extra_args": ["--content", "答案：\\boxed{A}"],
        "env": {},
        "require_gpus": False,
        "preflight_timeout_s": 60,
        "health_path": "/health",
        "health_timeout_s": 60,
        "poll_interval_s": 0.1,
        "stop_timeout_s": 5,
        "log_dir": str(tmp_path / "llm_server"),
    }
    values.update(changes)
    return ManagedServerConfig(**values)


def alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        state = (
            Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1]
            if Path(f"/proc/{pid}").exists()
            else "X"
        )
        if state not in ("Z", "X"):
            out.append(pid)
    return out


def wait_until(condition: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def ask(base_url: str, model: str) -> str:
    """One chat completion through the project's client, as the LLM nodes make it."""
    import asyncio

    config = LLMConfig(
        backend="openai", base_url=base_url, model=model, max_concurrency=1, timeout_s=10, max_retries=0,
        temperature=0.0, backoff_base_s=0.1, backoff_max_s=0.1, max_failure_rate=0.0, max_invalid_retries=0,
    )  # fmt: skip

    async def one() -> str:
        async with client_factory(config, None)() as client:
            return (await client.complete([{"role": "user", "content": "1+1?"}])).text

    return asyncio.run(one())


def test_the_launch_command_carries_sglangs_flags(tmp_path):
    config = server_config(tmp_path, python="/opt/sglang/bin/python", module="sglang.launch_server")
    assert config.command("qwen3", 30000) == [
        "/opt/sglang/bin/python", "-m", "sglang.launch_server", "--model-path", "/models/qwen3-stub",
        "--served-model-name", "qwen3", "--host", "127.0.0.1", "--port", "30000", "--tp-size", "2",
        "--mem-fraction-static", "0.8", "--reasoning-parser", "qwen3", "--tool-call-parser", "qwen25",
        "--content", "答案：\\boxed{A}",
    ]  # fmt: skip
    plain = server_config(tmp_path, reasoning_parser=None, tool_call_parser=None, extra_args=[])
    assert "--reasoning-parser" not in plain.command("m", 1) and plain.command("m", 1)[-1] == "0.8"
    with pytest.raises(ValueError, match="mem_fraction_static"):
        server_config(tmp_path, mem_fraction_static=1.5)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"python": "/no/such/python"}, "does not exist; set it to the interpreter"),
        ({"module": "sglang_is_not_installed_here"}, "is not importable by"),
        ({"require_gpus": True, "tp_size": 64}, r"needs llm_server.tp_size=64 CUDA GPU\(s\)"),
    ],
)
def test_preflight_stops_in_seconds_naming_what_is_missing(tmp_path, changes, words):
    started = time.monotonic()
    with pytest.raises(ManagedServerError, match=words):
        preflight(server_config(tmp_path, **changes))
    assert time.monotonic() - started < 30
    assert not (tmp_path / "llm_server").exists()  # nothing was started


def test_server_starts_is_healthy_serves_the_client_and_stops_with_everything_it_started(tmp_path):
    config = server_config(tmp_path, extra_args=["--content", "答案：\\boxed{A}", "--spawn-child"])
    assert preflight(config)["module"] is True
    server = ManagedServer(config, "qwen3-stub", "run 2026/01")
    with server:
        assert server.running and server.base_url.startswith("http://127.0.0.1:")
        assert ask(server.base_url, "qwen3-stub") == "答案：\\boxed{A}"
        pids = marked_processes(server.token)
        assert len(pids) >= 2  # the server and the worker it spawned, both carrying the launch token
        assert json.loads((tmp_path / "llm_server" / PID_FILE).read_text())["pid"] == server.process.pid
    assert not server.running and alive(pids) == []
    assert not (tmp_path / "llm_server" / PID_FILE).exists()
    record = json.loads(server.record_path.read_text())
    assert record["stop_reason"] == "run finished" and record["left_behind"] == []
    assert record["healthy_after_s"] is not None and record["command"][2] == STUB
    # the log holds the server's output: here the launch flags the stub read
    first = json.loads(server.log_path.read_text().splitlines()[0])
    assert (
        first["tp_size"] == 2
        and first["reasoning_parser"] == "qwen3"
        and first["model_path"] == "/models/qwen3-stub"
    )
    assert server.log_path.name == "run_2026_01.log"
    assert server.stop() is server.record  # idempotent


def test_a_server_never_healthy_is_stopped_after_the_timeout(tmp_path):
    server = ManagedServer(
        server_config(tmp_path, health_timeout_s=1.5, extra_args=["--startup-delay-s", "60"]), "m", "slow"
    )
    started = time.monotonic()
    with pytest.raises(
        ManagedServerError, match="not healthy .* within llm_server.health_timeout_s=1.5s; stopped"
    ):
        server.start()
    assert time.monotonic() - started < 20
    assert marked_processes(server.token) == [] and not server.running
    assert json.loads(server.record_path.read_text())["stop_reason"] == "failed to start"


def test_a_server_that_exits_while_starting_fails_with_its_log(tmp_path):
    server = ManagedServer(server_config(tmp_path, tp_size=2, extra_args=["--tp-size", "two"]), "m", "bad")
    with pytest.raises(
        ManagedServerError, match=r"exited with code 2 before it was healthy(.|\n)*invalid int"
    ):
        server.start()
    assert marked_processes(server.token) == []


def test_a_server_answering_to_another_model_name_is_refused(tmp_path):
    server = ManagedServer(server_config(tmp_path, extra_args=["--model-name", "other"]), "qwen3", "name")
    with pytest.raises(ManagedServerError, match=r"serves \['other'\], not 'qwen3'"):
        server.start()
    assert marked_processes(server.token) == []


SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from finrag_pipelines.llm.managed_server import ManagedServer, ManagedServerConfig

    server = ManagedServer(ManagedServerConfig(**json.loads(sys.argv[1])), "m", "child-run").start()
    print(json.dumps({"token": server.token, "pid": server.process.pid}), flush=True)
    time.sleep(120)
    """
)


def run_owner(tmp_path: Path, config: ManagedServerConfig) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """A separate Python process that starts a managed server and then idles (a run, seen from outside)."""
    owner = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, config.model_dump_json()], stdout=subprocess.PIPE, text=True
    )
    line = owner.stdout.readline() if owner.stdout else ""
    assert line, "the owning process did not start its server"
    return owner, json.loads(line)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_stops_its_server(tmp_path, sig):
    owner, started = run_owner(tmp_path, server_config(tmp_path, extra_args=["--spawn-child"]))
    pids = marked_processes(started["token"])
    assert started["pid"] in pids and len(pids) >= 2
    owner.send_signal(sig)
    assert owner.wait(timeout=30) != 0
    assert wait_until(lambda: alive(pids) == [], 10), f"left running: {alive(pids)}"
    record = json.loads((tmp_path / "llm_server" / "child-run.json").read_text())
    assert record["stop_reason"] == "interpreter exit" and record["left_behind"] == []


def test_after_a_kill_9_the_server_dies_with_its_owner_and_the_next_start_clears_what_is_left(tmp_path):
    config = server_config(tmp_path, extra_args=["--spawn-child"])
    owner, started = run_owner(tmp_path, config)
    pids = marked_processes(started["token"])
    owner.kill()  # SIGKILL: no hook, no atexit
    owner.wait(timeout=10)
    # the server itself gets SIGTERM from the kernel (PR_SET_PDEATHSIG); its worker, like sglang's when the
    # parent dies without stopping it, stays behind
    assert wait_until(lambda: started["pid"] not in alive(pids), 15)
    orphans = alive(pids)
    assert orphans and (tmp_path / "llm_server" / PID_FILE).is_file()
    env = Path(f"/proc/{orphans[0]}/environ").read_bytes()
    assert f"{MARKER}={started['token']}".encode() in env
    # the next managed run finds them by the token in the pid file and stops them before it starts
    nxt = ManagedServer(config, "m", "next-run")
    assert nxt.kill_leftovers() == orphans
    assert alive(orphans) == [] and not (tmp_path / "llm_server" / PID_FILE).exists()
