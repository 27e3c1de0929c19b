"""Airflow deployment: generate a DAG with kedro-airflow and run it with ``airflow dags test``.

What it needs beyond ``make test``'s install: PyPI access the first time it runs. Airflow never enters the
project's environment; ``deploy/airflow/make_dag.py`` builds its own venv (``$FINRAG_AIRFLOW_VENV``, default
``~/.cache/finrag/airflow-venv``) from ``deploy/airflow/requirements.txt`` with the exact versions of
``deploy/airflow/constraints-py3.11.txt`` (a clean CI machine builds the environment this test last passed
with), and reuses it while those files and the Python version are unchanged. See deploy/airflow/README.md for
the sizes and times. Marked ``airflow``: ``pytest -m "not airflow"`` (or ``FINRAG_SKIP_AIRFLOW=1``) leaves it
out on a machine without PyPI access.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = "test"
PIPELINE = "corpus_prep"

pytestmark = [pytest.mark.slow, pytest.mark.airflow]


def _make_dag_module():
    spec = importlib.util.spec_from_file_location("finrag_make_dag", ROOT / "deploy/airflow/make_dag.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's configuration and the small bundled BEIR set in a scratch folder."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("conf", "pyproject.toml"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, project / name)
    shutil.copytree(ROOT / "data/01_raw/retrieval/disc_finllm", project / "data/01_raw/retrieval/disc_finllm")
    (project / "src").mkdir()  # the package comes from PYTHONPATH=<repo>/src; Kedro only wants the folder
    return project


def test_corpus_prep_dag_runs_in_airflow(project: Path, tmp_path: Path) -> None:
    if os.environ.get("FINRAG_SKIP_AIRFLOW") == "1":
        pytest.skip("FINRAG_SKIP_AIRFLOW=1: not installing Airflow into its own venv for this run")
    make_dag = _make_dag_module()
    venv = make_dag.ensure_venv()

    # the project path is baked into the DAG, so Airflow may run from any folder
    dags = tmp_path / "dags"
    dag_file = make_dag.make_dag(
        project, ENV, PIPELINE, dags, project_path=str(project), params="retries=0", venv=venv
    )
    dag_id = make_dag.dag_id(ENV, PIPELINE)
    assert f'dag_id="{dag_id}"' in dag_file.read_text()

    airflow_home = tmp_path / "airflow"
    env = make_dag.airflow_environ(
        venv,
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{airflow_home / 'airflow.db'}",
    )
    airflow = str(venv / "bin" / "airflow")
    for cmd in ([airflow, "db", "migrate"], [airflow, "dags", "test", dag_id, "2024-01-01"]):
        result = subprocess.run(
            cmd, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, (
            f"{' '.join(cmd[1:])}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )

    with sqlite3.connect(airflow_home / "airflow.db") as db:
        runs = db.execute("SELECT state FROM dag_run WHERE dag_id = ?", (dag_id,)).fetchall()
        states = dict(
            db.execute("SELECT task_id, state FROM task_instance WHERE dag_id = ?", (dag_id,)).fetchall()
        )
    assert runs == [("success",)]
    # --group-by memory: the three nodes joined by the in-memory `corpus_normalised` are one task
    assert len(states) == 4 and set(states.values()) == {"success"}, states
    assert any("normalise-corpus" in task and "select-corpus" in task for task in states), states

    for name in (
        "02_intermediate/disc_finllm/corpus_doc_status.parquet",
        "03_primary/disc_finllm/corpus.parquet",
        "03_primary/disc_finllm/eval_queries.parquet",
        "03_primary/disc_finllm/eval_qrels.parquet",
    ):
        assert (project / "data" / name).stat().st_size > 0, name
    report = json.loads((project / "data/08_reporting/disc_finllm/corpus_prep_report.json").read_text())
    assert report["documents_in"] == 139 and report["queries"] > 0 and report["judgements"] > 0
