"""Generate an Airflow DAG for one Kedro pipeline with ``kedro airflow create``, in a separate Airflow venv.

Airflow is never installed into the project's own ``.venv``: it lives in its own virtual environment,
created on demand and reused while ``deploy/airflow/requirements.txt`` and the Python version are unchanged.

    python deploy/airflow/make_dag.py --env test --pipeline corpus_prep --out airflow_dags
    python deploy/airflow/make_dag.py --env prod --pipeline index_build --out /opt/airflow/dags \\
        --project-path /opt/finrag --params retries=2,schedule=@daily
    python deploy/airflow/make_dag.py --venv-only      # create/reuse the venv and print its path

The venv is ``$FINRAG_AIRFLOW_VENV``, default ``${XDG_CACHE_HOME:-~/.cache}/finrag/airflow-venv``. It holds
Airflow, kedro-airflow and the project's light runtime dependencies, not the project itself: commands run
with ``PYTHONPATH=<repo>/src``, so the venv never goes stale when the code changes. It is installed from PyPI
with ``constraints-py<X.Y>.txt`` (the exact versions last tested on that Python), so every machine builds the
same environment.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
REQUIREMENTS = HERE / "requirements.txt"
# exact versions per Python minor version (pip freeze of a venv the test passed with)
CONSTRAINTS = "constraints-py{version}.txt"
TEMPLATE = HERE / "dag_template.j2"
PACKAGE_NAME = "finrag_pipelines"
DEFAULT_KEDRO_ENV = "local"  # kedro-airflow leaves the env out of the file name for this one
DEFAULT_PIPELINE = "__default__"
_STAMP = ".finrag-airflow-stamp"  # written after a complete install
_OWNED = ".finrag-airflow-venv"  # written when the venv is created: an unfinished install may be replaced


class AirflowEnvError(RuntimeError):
    """The Airflow venv could not be created, or a command inside it failed."""


def venv_dir() -> Path:
    """Where the Airflow venv lives: ``$FINRAG_AIRFLOW_VENV`` or the user cache folder."""
    if os.environ.get("FINRAG_AIRFLOW_VENV"):
        return Path(os.environ["FINRAG_AIRFLOW_VENV"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "finrag" / "airflow-venv"


def _python_version(python: str, spec: str = "sys.version") -> str:
    return subprocess.run(
        [python, "-c", f"import sys; print({spec})"], capture_output=True, text=True, check=True
    ).stdout.strip()


def constraints_file(python: str = sys.executable) -> Path | None:
    """The pinned versions for ``python``'s minor version, or ``None`` when none were recorded for it."""
    path = HERE / CONSTRAINTS.format(version=_python_version(python, "'%d.%d' % sys.version_info[:2]"))
    return path if path.is_file() else None


def _stamp(python: str) -> str:
    constraints = constraints_file(python)
    pinned = constraints.read_bytes() if constraints else b""
    return hashlib.sha256(REQUIREMENTS.read_bytes() + pinned + _python_version(python).encode()).hexdigest()


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise AirflowEnvError(
            f"command failed with exit code {result.returncode}: {' '.join(map(str, cmd))}\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def ensure_venv(python: str = sys.executable, venv: Path | None = None) -> Path:
    """Create the Airflow venv, or reuse it when its stamp (requirements + Python version) matches.

    A file lock next to the venv makes concurrent callers (two test sessions) wait for one install.

    Returns:
        The venv folder; its ``bin/`` holds ``kedro`` and ``airflow``.
    """
    venv = venv or venv_dir()
    venv.parent.mkdir(parents=True, exist_ok=True)
    stamp = _stamp(python)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp_file = venv / _STAMP
        if stamp_file.is_file() and stamp_file.read_text().strip() == stamp:
            logger.info("reusing the Airflow venv %s", venv)
            return venv
        if venv.exists() and any(venv.iterdir()) and not (venv / _OWNED).is_file():
            raise AirflowEnvError(
                f"{venv} exists and is not an Airflow venv made by {Path(__file__).name}; "
                "point FINRAG_AIRFLOW_VENV at a new or empty folder"
            )
        logger.info("creating the Airflow venv %s from %s (a minute or two)", venv, REQUIREMENTS)
        shutil.rmtree(venv, ignore_errors=True)
        _run([python, "-m", "venv", str(venv)])
        (venv / _OWNED).touch()
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        _run([*pip, "--upgrade", "pip"])
        constraints = constraints_file(python)
        if constraints is None:
            logger.warning(
                "no %s for this Python: Airflow's dependencies resolve to today's PyPI versions (untested)",
                CONSTRAINTS.format(version=_python_version(python, "'%d.%d' % sys.version_info[:2]")),
            )
        pinned = ["-c", str(constraints)] if constraints else []
        _run([*pip, "-r", str(REQUIREMENTS), *pinned], timeout=1800)
        stamp_file.write_text(stamp + "\n")
        return venv


def airflow_environ(venv: Path, **extra: str) -> dict[str, str]:
    """The environment for commands in the Airflow venv: the repo's ``src`` importable, no telemetry."""
    pythonpath = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ,
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(venv),
        "PYTHONPATH": pythonpath,
        "KEDRO_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "1",
        **extra,
    }


def dag_filename(env: str, pipeline: str) -> str:
    """The file name ``kedro airflow create`` gives the DAG (its own rule, kedro-airflow 0.11)."""
    name = PACKAGE_NAME
    if env != DEFAULT_KEDRO_ENV:
        name += f"_{env}"
    if pipeline != DEFAULT_PIPELINE:
        name += f"_{pipeline}"
    return name + "_dag.py"


def dag_id(env: str, pipeline: str) -> str:
    """The DAG id set by ``dag_template.j2``."""
    return f"{PACKAGE_NAME}_{env}_{pipeline}"


def make_dag(
    project: Path,
    env: str,
    pipeline: str,
    out: Path,
    *,
    project_path: str | None = None,
    params: str = "",
    venv: Path | None = None,
) -> Path:
    """Run ``kedro airflow create --group-by memory`` for one pipeline of the project at ``project``.

    Nodes joined by MemoryDatasets (not persisted) land in one Airflow task; every other edge between
    tasks goes through a catalog dataset, so each task can run on another worker.

    Args:
        project: the Kedro project folder (``pyproject.toml`` + ``conf/``) holding the pipeline and catalog.
        env: the Kedro environment the DAG runs with.
        pipeline: a registered pipeline name.
        out: folder the DAG file is written to (created if missing).
        project_path: project folder on the Airflow worker, baked into the DAG
            (``FINRAG_PROJECT_PATH`` on the worker wins; neither set: the worker's cwd).
        params: extra template values for kedro-airflow, ``k=v,k=v`` (e.g. ``retries=0,schedule=@daily``).
        venv: the Airflow venv; created or reused by :func:`ensure_venv` when not given.

    Returns:
        The generated DAG file.
    """
    venv = venv or ensure_venv()
    out = Path(out).resolve()
    template_params = ",".join(
        p for p in (f"project_path={project_path}" if project_path else "", params) if p
    )
    cmd = [
        str(venv / "bin" / "kedro"),
        "airflow",
        "create",
        "--env",
        env,
        "--pipelines",
        pipeline,
        "--group-by",
        "memory",
        "--jinja-file",
        str(TEMPLATE),
        "--target-dir",
        str(out),
    ]
    if template_params:
        cmd += ["--params", template_params]
    _run(cmd, cwd=project, env=airflow_environ(venv), timeout=600)
    dag_file = out / dag_filename(env, pipeline)
    if not dag_file.is_file():
        raise AirflowEnvError(f"kedro airflow create did not write {dag_file}; see its output above")
    return dag_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="local", help="Kedro environment the DAG runs with (default: local)")
    parser.add_argument(
        "--pipeline", default=DEFAULT_PIPELINE, help="registered pipeline (default: __default__)"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "airflow_dags", help="DAG folder (default: airflow_dags/)"
    )
    parser.add_argument(
        "--project", type=Path, default=REPO, help="Kedro project folder (default: this repo)"
    )
    parser.add_argument("--project-path", help="project folder on the Airflow worker, baked into the DAG")
    parser.add_argument(
        "--params", default="", help="kedro-airflow template values, e.g. retries=2,schedule=@daily"
    )
    parser.add_argument(
        "--venv-only", action="store_true", help="only create/reuse the Airflow venv, print its path"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    venv = ensure_venv()
    if args.venv_only:
        print(venv)
        return 0
    dag_file = make_dag(
        args.project,
        args.env,
        args.pipeline,
        args.out,
        project_path=args.project_path,
        params=args.params,
        venv=venv,
    )
    logger.info("DAG id %s written to %s", dag_id(args.env, args.pipeline), dag_file)
    print(dag_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
