"""Experiment tracking (kedro-mlflow): real runs of a small pipeline, read back through the MLflow client."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow.tracking import MlflowClient

from finrag_pipelines.tracking import metric_key, numeric_leaves

ROOT = Path(__file__).resolve().parents[1]
KEPT = "corpus_prep_report.documents_by_status.kept"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project copy with the small DISC set and an environment ``tracked`` = ``test`` with tracking on."""
    for name in ("conf", "pyproject.toml", ".telemetry"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    shutil.copytree(
        ROOT / "data/01_raw/retrieval/disc_finllm", tmp_path / "data/01_raw/retrieval/disc_finllm"
    )
    (tmp_path / "src").mkdir()
    (tmp_path / "conf/tracked").mkdir()
    (tmp_path / "conf/tracked/env.yml").write_text("extends: test\n", encoding="utf-8")
    (tmp_path / "conf/tracked/runs.yml").write_text("tracking:\n  enabled: true\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def _run(project: Path, env: str, min_chars: int) -> None:
    bootstrap_project(project)
    params = {"corpus_prep": {"filter": {"min_chars": min_chars}}}
    with KedroSession.create(project_path=project, env=env, runtime_params=params) as session:
        session.run(pipeline_names=["corpus_prep"])


def test_two_runs_with_different_params_are_side_by_side_in_mlflow(project: Path):
    _run(project, "tracked", 10)
    _run(project, "tracked", 200)
    client = MlflowClient(f"sqlite:///{project / 'data/09_tracking/mlflow.db'}")
    experiment = client.get_experiment_by_name("finrag_pipelines")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    # every parameter the pipeline's nodes read, one per leaf, with this run's value
    assert [r.data.params["corpus_prep.filter.min_chars"] for r in runs] == ["10", "200"]
    assert runs[0].data.params["corpus_prep.dedup.max_hamming"] == "3"
    # the report's numbers as metrics: raising min_chars drops short documents
    kept = [r.data.metrics[KEPT] for r in runs]
    assert kept[0] == 139 and kept[1] < kept[0]
    # the report itself as an artefact, and the Kedro run id that names the lineage record and versions
    assert [a.path for a in client.list_artifacts(runs[1].info.run_id)] == ["corpus_prep_report.json"]
    records = sorted(p.stem for p in (project / "data/09_tracking/lineage").glob("*.json"))
    assert [r.data.tags["kedro_run_id"] for r in runs] == records
    assert (
        json.loads((project / "data/09_tracking/lineage" / f"{records[1]}.json").read_text())["params"][
            "corpus_prep"
        ]["filter"]["min_chars"]
        == 200
    )


def test_tracking_is_off_per_environment_and_mlflow_tracking_uri_points_it_elsewhere(project, monkeypatch):
    _run(project, "test", 10)  # conf/test/runs.yml: tracking.enabled false
    assert not (project / "data/09_tracking/mlflow.db").exists()
    shared = project / "team_server.db"  # stands for a team's server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{shared}")
    _run(project, "tracked", 10)
    assert not (project / "data/09_tracking/mlflow.db").exists()
    client = MlflowClient(f"sqlite:///{shared}")
    runs = client.search_runs([client.get_experiment_by_name("finrag_pipelines").experiment_id])
    assert len(runs) == 1 and runs[0].data.metrics[KEPT] == 139


def test_numbers_become_metric_keys_mlflow_accepts():
    data = {"bm25": {"mrr@10": 0.5, "n": 3, "ok": True, "name": "x"}, "curve": [{"step": 1, "loss": 2.0}]}
    assert sorted(numeric_leaves(data, "m")) == [
        ("m.bm25.mrr_at_10", 0.5, 0),
        ("m.bm25.n", 3.0, 0),
        ("m.curve.loss", 2.0, 1),
    ]
    assert metric_key("a", "b (c)") == "a.b _c_"


# ---------------------------------------------------------------- without kedro-mlflow (a slim worker env)


def _runs_conf(enabled: bool) -> dict:
    import yaml

    runs = yaml.safe_load((Path(__file__).parents[1] / "conf/base/runs.yml").read_text(encoding="utf-8"))
    runs["tracking"]["enabled"] = enabled
    return {"runs": runs}


def test_settings_fall_back_to_a_hook_that_names_the_missing_package() -> None:
    code = (
        "import sys; sys.modules['mlflow'] = None\n"  # an environment without mlflow (Airflow's)
        "from finrag_pipelines import settings\n"
        "print(type(settings.HOOKS[-1]).__name__, '|', settings.HOOKS[-1].reason)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    last = out.strip().splitlines()[-1]  # after what Kedro logs on import
    assert last.startswith("TrackingUnavailableHook |") and "mlflow" in last


def test_without_kedro_mlflow_a_run_with_tracking_on_stops_and_one_with_it_off_goes_on() -> None:
    from types import SimpleNamespace

    from finrag_pipelines.errors import ConfigurationError
    from finrag_pipelines.tracking_unavailable import TrackingUnavailableHook

    hook = TrackingUnavailableHook("No module named 'mlflow'")
    hook.after_context_created(SimpleNamespace(config_loader=_runs_conf(enabled=False)))
    hook.before_pipeline_run({"env": "test"}, None, None)  # tracking off: nothing to say
    hook.after_context_created(SimpleNamespace(config_loader=_runs_conf(enabled=True)))
    with pytest.raises(ConfigurationError, match=r"tracking is on for environment 'demo'.*No module named"):
        hook.before_pipeline_run({"env": "demo"}, None, None)
