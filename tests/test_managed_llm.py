"""``llm.server: managed`` in Kedro runs: the hooks start the server before the first node, route
``params:llm`` to it, and stop it when the run ends, fails or is interrupted (CPU: the project's scripted
OpenAI server is the launched module)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro.runner import SequentialRunner

from finrag_pipelines.llm.client import client_factory
from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.llm.managed_server import ManagedServer, ManagedServerError, marked_processes
from finrag_pipelines.managed_llm import ManagedLLMServerHooks
from finrag_pipelines.provenance.versions import latest_path

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="process checks read /proc (Linux)")

ROOT = Path(__file__).resolve().parents[1]
ANSWER = "一位关注股票投资的金融分析师"


def llm_settings(**changes: Any) -> LLMConfig:
    values: dict[str, Any] = {
        "backend": "openai", "server": "managed", "base_url": "http://127.0.0.1:9/v1", "model": "qwen3",
        "max_concurrency": 2, "timeout_s": 10, "max_retries": 0, "temperature": 0.0, "backoff_base_s": 0.1,
        "backoff_max_s": 0.1, "max_failure_rate": 0.0, "max_invalid_retries": 0,
    }  # fmt: skip
    values.update(changes)
    return LLMConfig(**values)


def server_settings(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "python": sys.executable, "module": "finrag_pipelines.llm.stub_server", "model_path": "/models/qwen3",
        "served_model_name": None, "host": "127.0.0.1", "port": 0, "tp_size": 1, "mem_fraction_static": 0.85,
        "reasoning_parser": "qwen3", "tool_call_parser": None, "extra_args": ["--content", ANSWER], "env": {},
        "require_gpus": False, "preflight_timeout_s": 60, "health_path": "/health", "health_timeout_s": 60,
        "poll_interval_s": 0.1, "stop_timeout_s": 5, "log_dir": str(tmp_path / "llm_server"),
    }  # fmt: skip
    values.update(changes)
    return values


def ask(llm: LLMConfig) -> str:
    """An LLM node: one request through the project's client, built from the ``llm`` settings it is given."""

    async def one() -> str:
        async with client_factory(llm, None)() as client:
            return (await client.complete([{"role": "user", "content": "谁?"}])).text

    return asyncio.run(one())


def fail(answer: str) -> str:
    raise RuntimeError(f"a node after the LLM failed (it had {answer!r})")


def catalog_for(tmp_path: Path, llm: LLMConfig, **server: Any) -> DataCatalog:
    catalog = DataCatalog({"answer": MemoryDataset(), "after": MemoryDataset()})
    settings = server_settings(tmp_path, **server)
    catalog["params:llm"] = llm
    catalog["params:llm.base_url"] = llm.base_url
    catalog["params:llm_server"] = settings
    catalog["parameters"] = {"llm": dataclasses.asdict(llm), "llm_server": settings}
    return catalog


def run(hooks: ManagedLLMServerHooks, pipeline: Pipeline, catalog: DataCatalog) -> None:
    """What ``KedroSession.run`` does around the runner (hooks, then the runner, then the closing hooks)."""
    params = {"run_id": "2026-01-01T00.00.00.000Z"}
    hooks.before_pipeline_run(params, pipeline, catalog)
    try:
        SequentialRunner().run(pipeline, catalog)
    except Exception as error:
        hooks.on_pipeline_error(error, params, pipeline, catalog)
        raise
    hooks.after_pipeline_run(params, pipeline, catalog)


class Recording:
    """A server factory that keeps what it built."""

    def __init__(self) -> None:
        self.built: list[ManagedServer] = []

    def __call__(self, *args: Any) -> ManagedServer:
        self.built.append(ManagedServer(*args))
        return self.built[-1]


ASK = Node(ask, "params:llm", "answer", name="ask")


def test_the_llm_nodes_of_a_managed_run_use_the_server_it_starts_and_stop_it_after(tmp_path):
    factory = Recording()
    hooks, catalog = ManagedLLMServerHooks(factory), catalog_for(tmp_path, llm_settings())
    run(hooks, Pipeline([ASK]), catalog)
    server = factory.built[0]
    assert catalog.load("answer") == ANSWER  # the node's client reached the managed server
    routed = catalog.load("params:llm")
    assert isinstance(routed, LLMConfig) and routed.base_url == server.base_url != "http://127.0.0.1:9/v1"
    assert catalog.load("params:llm.base_url") == server.base_url
    assert catalog.load("parameters")["llm"]["base_url"] == server.base_url
    assert routed.model == "qwen3" and server.served_model_name == "qwen3"
    assert not server.running and marked_processes(server.token) == []
    record = json.loads(server.record_path.read_text())
    assert record["stop_reason"] == "run finished" and record["left_behind"] == []
    assert server.log_path.parent == tmp_path / "llm_server" and hooks.server is None


def test_a_failed_run_stops_its_server_and_keeps_its_own_error(tmp_path):
    factory = Recording()
    hooks = ManagedLLMServerHooks(factory)
    pipeline = Pipeline([ASK, Node(fail, "answer", "after", name="fail")])
    with pytest.raises(Exception, match="a node after the LLM failed"):
        run(
            hooks,
            pipeline,
            catalog_for(tmp_path, llm_settings(), extra_args=["--content", ANSWER, "--spawn-child"]),
        )
    server = factory.built[0]
    assert marked_processes(server.token) == [] and not server.running
    assert json.loads(server.record_path.read_text())["stop_reason"] == "run failed: RuntimeError"


@pytest.mark.parametrize(
    ("llm", "pipeline", "why"),
    [
        (llm_settings(server="external"), Pipeline([ASK]), None),
        (llm_settings(backend="keyword"), Pipeline([ASK]), "llm.backend is not openai"),
        (llm_settings(), Pipeline([Node(fail, "answer", "after", name="fail")]), "no node of this run calls"),
    ],
)
def test_no_server_is_started_unless_a_managed_run_calls_the_llm(tmp_path, caplog, llm, pipeline, why):
    factory = Recording()
    catalog = catalog_for(tmp_path, llm)
    with caplog.at_level("INFO", logger="finrag_pipelines.managed_llm"):
        ManagedLLMServerHooks(factory).before_pipeline_run({"run_id": "r"}, pipeline, catalog)
    assert factory.built == [] and catalog.load("params:llm") == llm
    if why:
        assert why in caplog.text


def test_a_failed_preflight_or_bad_settings_stop_the_run_before_anything_starts(tmp_path):
    factory = Recording()
    hooks, pipeline = ManagedLLMServerHooks(factory), Pipeline([ASK])
    missing = catalog_for(tmp_path, llm_settings(), module="sglang_is_not_installed_here")
    with pytest.raises(ManagedServerError, match="sglang_is_not_installed_here' is not importable"):
        hooks.before_pipeline_run({"run_id": "r"}, pipeline, missing)
    bad = catalog_for(tmp_path, llm_settings(), tp_size=0, typo=1)
    with pytest.raises(ManagedServerError, match=r"llm_server.tp_size: .*llm_server.typo: Extra inputs"):
        hooks.before_pipeline_run({"run_id": "r"}, pipeline, bad)
    absent = catalog_for(tmp_path, llm_settings())
    absent["params:llm_server"] = None
    with pytest.raises(ManagedServerError, match="no llm_server block"):
        hooks.before_pipeline_run({"run_id": "r"}, pipeline, absent)
    assert factory.built == [] and not (tmp_path / "llm_server").exists()


# ------------------------------------------------ next to RunStopHooks, in either order of settings.HOOKS


class FakeServer:
    """What the managed hooks use of a server, recording start and stop."""

    base_url = "http://127.0.0.1:1/v1"

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def start(self) -> FakeServer:
        self.events.append("start")
        return self

    def stop(self, reason: str) -> None:
        self.events.append(f"stop: {reason}")


def _copy(x: Any) -> Any:
    return x


def hook_manager(tmp_path: Path, order: str, events: list[str], check: Any = None) -> Any:
    """A Kedro hook manager with the project's two hooks registered as ``settings.HOOKS`` lists them (or
    reversed); a missing ``corpus`` is made by the registered ``prep`` pipeline."""
    from kedro.framework.hooks.manager import _create_hook_manager, _register_hooks

    from finrag_pipelines import settings
    from finrag_pipelines.hooks import RunStopHooks

    # the lineage record and the MLflow run (settings.py) come after these two
    names = [type(h).__name__ for h in settings.HOOKS]
    assert names == ["RunStopHooks", "ManagedLLMServerHooks", "LineageHooks", "TrackingHook"]
    registry = {"prep": Pipeline([Node(_copy, "raw", "corpus", name="prep")])}
    managed = ManagedLLMServerHooks(lambda *args: FakeServer(events), check=check or (lambda config: None))
    hooks = [RunStopHooks(registry=lambda: registry), managed]
    manager = _create_hook_manager()
    _register_hooks(manager, hooks if order == "settings" else hooks[::-1])
    return manager


USES_CORPUS = Pipeline([Node(lambda corpus, llm: corpus, ["corpus", "params:llm"], "answer", name="ask")])


@pytest.mark.parametrize("order", ["settings", "reversed"])
def test_a_run_missing_upstream_artefacts_stops_before_its_managed_server_starts(tmp_path, order):
    from finrag_pipelines.hooks import RunStopped

    events: list[str] = []
    manager = hook_manager(tmp_path, order, events)
    catalog = catalog_for(tmp_path, llm_settings())
    catalog["corpus"] = MemoryDataset()  # empty: not made yet
    with pytest.raises(RunStopped, match=r"needs corpus \(made by prep\)"):
        manager.hook.before_pipeline_run(run_params={}, pipeline=USES_CORPUS, catalog=catalog)
    assert events == []
    catalog["corpus"] = "made"
    manager.hook.before_pipeline_run(run_params={}, pipeline=USES_CORPUS, catalog=catalog)
    assert events == ["start"] and catalog.load("params:llm").base_url == FakeServer.base_url


@pytest.mark.parametrize("order", ["settings", "reversed"])
def test_a_failed_preflight_and_a_node_configuration_error_stop_in_one_line_after_the_server_stops(
    tmp_path, order
):
    from finrag_pipelines.errors import ConfigurationError
    from finrag_pipelines.hooks import RunStopped

    def no_sglang(config: Any) -> None:
        raise ManagedServerError("llm_server.python cannot import sglang;\n install it there")

    events: list[str] = []
    catalog = catalog_for(tmp_path, llm_settings())
    catalog["corpus"] = "made"
    manager = hook_manager(tmp_path, order, events, check=no_sglang)
    with pytest.raises(RunStopped) as stopped:
        manager.hook.before_pipeline_run(run_params={}, pipeline=USES_CORPUS, catalog=catalog)
    assert stopped.value.message == "llm_server.python cannot import sglang; install it there"
    assert isinstance(stopped.value.__cause__, ConfigurationError) and events == []

    manager = hook_manager(tmp_path, order, events)
    manager.hook.before_pipeline_run(run_params={}, pipeline=USES_CORPUS, catalog=catalog)
    error = ConfigurationError("a node's setting is wrong")
    with pytest.raises(RunStopped, match="a node's setting is wrong"):
        manager.hook.on_pipeline_error(error=error, run_params={}, pipeline=USES_CORPUS, catalog=catalog)
    assert events == ["start", "stop: run failed: ConfigurationError"]  # stopped before the one-line stop


# ------------------------------------------------------------------------------- a real `kedro run`

ENV = {
    **os.environ,
    "KEDRO_DISABLE_TELEMETRY": "1",
    "COLUMNS": "400",
    "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
}
RUN = [
    sys.executable, "-m", "kedro", "run", "--env", "test", "--pipelines", "persona_index", "--params",
    (
        "llm.backend=openai,llm.server=managed,llm.model=stub-qwen3,llm.max_concurrency=1,"
        "persona_index.translate.enabled=true"
    ),
]  # fmt: skip


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the conf and the bundled personas; llm_server launches the stub, slowly answering."""
    for name in ("conf", "pyproject.toml"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    shutil.copytree(ROOT / "data/01_raw/personas", tmp_path / "data/01_raw/personas")
    (tmp_path / "src").mkdir()
    managed = server_settings(
        tmp_path, extra_args=["--content", ANSWER, "--delay-ms", "300", "--spawn-child"]
    )
    managed["log_dir"] = "data/08_reporting/llm_server"
    text = yaml.safe_dump({"llm_server": managed}, allow_unicode=True)
    (tmp_path / "conf/test/parameters_llm_server.yml").write_text(text, encoding="utf-8")
    return tmp_path


def launch_record(project: Path, timeout: float = 120) -> dict[str, Any]:
    """The launch record, once the server is healthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in (project / "data/08_reporting/llm_server").glob("*.json"):
            if path.name != "server.pid.json":
                record = json.loads(path.read_text(encoding="utf-8"))
                if record.get("healthy_after_s") is not None:
                    return record
        time.sleep(0.2)
    raise AssertionError("the managed server never became healthy")


@pytest.mark.slow
def test_kedro_run_translates_through_its_managed_server_and_stops_it(project):
    done = subprocess.run(RUN, cwd=project, env=ENV, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = launch_record(project, timeout=1)
    assert record["stop_reason"] == "run finished" and record["left_behind"] == []
    assert marked_processes(record["token"]) == []
    report = latest_path(project / "data/08_reporting/personas/persona_index_report.json")  # versioned
    personas = json.loads(report.read_text())
    assert personas  # the run finished its pipeline; the translations came from the managed server:
    journal = (project / "data/02_intermediate/llm_journal.jsonl").read_text(encoding="utf-8")
    assert ANSWER in journal and '"stub-qwen3"' in journal


@pytest.mark.slow
def test_kedro_run_whose_managed_server_cannot_start_stops_in_one_line(project):
    argv = [*RUN[:-1], RUN[-1] + ",llm_server.module=sglang_is_not_installed_here"]
    done = subprocess.run(
        argv, cwd=project, env=ENV, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "sglang_is_not_installed_here' is not importable" in last
    assert not list((project / "data/08_reporting/llm_server").glob("*.log"))  # nothing was launched


@pytest.mark.slow
def test_ctrl_c_on_a_kedro_run_stops_its_managed_server(project):
    proc = subprocess.Popen(
        RUN, cwd=project, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        record = launch_record(project)
        time.sleep(2)  # translations are being asked (300 ms each, one at a time)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert len(marked_processes(record["token"])) >= 2
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    deadline = time.monotonic() + 15
    while marked_processes(record["token"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marked_processes(record["token"]) == [], err[-2000:]
    final = json.loads((project / "data/08_reporting/llm_server" / f"{record['run_id']}.json").read_text())
    assert final["stopped"] and final["left_behind"] == []
    assert not (project / "data/08_reporting/llm_server/server.pid.json").exists()
