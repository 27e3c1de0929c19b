"""The lineage hook: every ``kedro run`` writes one record of what it ran, read and wrote.

The record (``provenance/records.py``) lands in ``runs.yml`` ``lineage.folder`` as ``<run id>.json``, written
when the run starts (status ``running``) and again when it ends (``finished`` or ``failed``). For every
dataset a node loads or saves it holds the version (a versioned dataset's version is the run id of the run
that saved it) and a fingerprint (``provenance/fingerprints.py``); for every node its inputs, outputs and
duration. ``python -m finrag_pipelines.lineage`` walks these records back from any dataset.

When a node fails on an index that does not match its encoder or corpus while ``--load-versions`` pins an
input, the error also names the version of the index that was built from the pinned input (from the
records), or how to build one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import MemoryDataset
from kedro.io.core import AbstractVersionedDataset, VersionNotFoundError
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node
from pydantic import ValidationError

from finrag_pipelines.errors import ConfigurationError
from finrag_pipelines.provenance.fingerprints import fingerprint
from finrag_pipelines.provenance.records import RecordStore, RunRecorder, base_name
from finrag_pipelines.provenance.settings import RunsSettings
from finrag_pipelines.retrieval.types import IndexMismatchError

logger = logging.getLogger(__name__)

# run_params keys recorded as the command
_COMMAND_KEYS = (
    "runtime_params", "load_versions", "tags", "node_names", "from_nodes", "to_nodes", "from_inputs",
    "to_outputs", "namespaces", "only_missing_outputs", "runner",
)  # fmt: skip


def load_runs_settings(config_loader: Any) -> RunsSettings:
    """The ``runs`` settings of the environment (``conf/<env>/runs.yml``), validated.

    Raises:
        ConfigurationError: When the file is missing or a key is wrong, naming it.
    """
    try:
        return RunsSettings.model_validate(dict(config_loader["runs"]))
    except ValidationError as exc:
        raise ConfigurationError(f"conf runs.yml: {exc}; see conf/base/runs.yml") from exc
    except KeyError as exc:
        raise ConfigurationError(
            "no conf runs.yml (lineage, retention, tracking); see conf/base/runs.yml"
        ) from exc


def storage(dataset: Any, kind: str) -> tuple[str | None, Path | None]:
    """``(version, path)`` a dataset read (``kind`` ``loaded``) or wrote (``saved``); path None when unknown.

    A versioned dataset's path is its version's (``<root>/<version>/<name>``). Caches that are content
    addressed (``content_addressed = True``: the embedding store, the LLM journal) report no path.
    """
    if getattr(dataset, "content_addressed", False):
        return None, None
    if isinstance(dataset, AbstractVersionedDataset) and dataset._version:  # Kedro's own versioning
        try:
            version = dataset.resolve_load_version() if kind == "loaded" else dataset.resolve_save_version()
        except VersionNotFoundError:  # an optional view loaded its stand-in: nothing was read
            return None, None
        return version, Path(str(dataset._get_versioned_path(str(version))))
    location = getattr(dataset, "lineage_path", None)
    if callable(location):
        return None, location()
    path = getattr(dataset, "_filepath", None)
    if path is None or not Path(str(path)).is_file():
        return None, None
    return None, Path(str(path))


class PinnedVersionMismatch(IndexMismatchError, ConfigurationError):
    """An index that does not match its encoder or corpus under a ``--load-versions`` pin: the message says
    which versions to pin together. ``kedro run`` stops with it in one line (``hooks.RunStopHooks``)."""


class LineageHooks:
    """Writes one lineage record per run (see the module). Registered in ``settings.py``."""

    def __init__(self) -> None:
        self._context: Any = None
        self._store: RecordStore | None = None
        self._recorder: RunRecorder | None = None
        self._catalog: Any = None
        self._pins: dict[str, str] = {}

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._context = context

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        settings = load_runs_settings(self._context.config_loader)
        root = Path(self._context.project_path)
        self._store = RecordStore(root / settings.lineage.folder)
        self._catalog = catalog
        self._pins = dict(run_params.get("load_versions") or {})
        recorder = RunRecorder(str(run_params["run_id"]), root)
        recorder.start(
            env=run_params.get("env"),
            pipelines=run_params.get("pipeline_names") or ["__default__"],
            command={key: run_params.get(key) for key in _COMMAND_KEYS if key != "runner"}
            | {"runner": str(run_params.get("runner") or "").split(" object at")[0].lstrip("<")},
            params=self._context.params,
        )
        self._recorder = recorder
        self._store.write(recorder.record)

    def _dataset(self, kind: str, name: str, data: Any) -> None:
        if self._recorder is None or self._recorder.has(kind, name) or name.startswith("params:"):
            return
        dataset = self._catalog.get(name) if self._catalog is not None else None
        if dataset is None or isinstance(dataset, MemoryDataset):
            return  # a value passed between nodes in memory: the nodes' edges record it
        started = time.perf_counter()
        try:
            version, path = storage(dataset, kind)
            found = fingerprint(data, path if path is not None and path.exists() else None)
        except Exception as exc:  # noqa: BLE001 - a fingerprint never fails a run; the record says why
            logger.warning("lineage: no fingerprint for %s %s (%s)", kind, name, exc)
            version, path, found = None, None, {"error": f"{type(exc).__name__}: {exc}"[:300]}
        self._recorder.dataset(kind, name, version=version, path=path, fingerprint=found)
        self._recorder.record["lineage_seconds"] += time.perf_counter() - started

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any, node: Node) -> None:
        self._dataset("loaded", dataset_name, data)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Node) -> None:
        self._dataset("saved", dataset_name, data)

    @hook_impl
    def before_node_run(self, node: Node, catalog: Any, inputs: dict[str, Any], is_async: bool) -> None:
        if self._recorder is not None:
            self._recorder.node_started(node.name, node.inputs, node.outputs)

    @hook_impl
    def after_node_run(
        self, node: Node, catalog: Any, inputs: dict[str, Any], outputs: dict[str, Any]
    ) -> None:
        if self._recorder is not None:
            self._recorder.node_finished(node.name)

    @hook_impl
    def on_node_error(self, error: Exception, node: Node, catalog: Any, inputs: dict[str, Any]) -> None:
        if self._recorder is None:
            return
        self._recorder.node_finished(node.name, failed=True)
        if isinstance(error, IndexMismatchError) and self._pins:
            hint = pinned_input_hint(node.inputs, self._pins, self._store.all() if self._store else [])
            if hint:
                raise PinnedVersionMismatch(f"{error} {hint}") from error

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        self._close(None)

    @hook_impl
    def on_pipeline_error(
        self, error: Exception, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any
    ) -> None:
        self._close(error)

    def _close(self, error: Exception | None) -> None:
        if self._recorder is None or self._store is None:
            return
        path = self._store.write(self._recorder.finish(error))
        logger.info("lineage: run %s recorded in %s", self._recorder.record["run_id"], path)
        self._recorder = None


def pinned_input_hint(inputs: list[str], pins: Mapping[str, str], records: list[Mapping[str, Any]]) -> str:
    """What to add to ``--load-versions`` so a node's other versioned inputs match the pinned ones.

    For every input of the failing node that is not pinned, the newest version saved by a recorded run that
    also made (saved) or read a pinned dataset at its pinned version is named; when no such run exists, the
    command that would build one.

    Returns:
        The hint (empty when the records say nothing useful).
    """
    pinned = {(base_name(name), version) for name, version in pins.items()}
    related = []
    for record in records:
        for name, entry in record.get("datasets", {}).items():
            for kind in ("saved", "loaded"):
                if (base_name(name), (entry.get(kind) or {}).get("version")) in pinned:
                    related.append(record)
    pinned_bases = {base for base, _ in pinned}
    suggestions, missing = [], []
    for name in inputs:
        base = base_name(name)
        if base in pinned_bases or name.startswith("params:"):
            continue
        made = sorted(
            str(entry["saved"]["version"])
            for record in related
            for other, entry in record.get("datasets", {}).items()
            if base_name(other) == base and (entry.get("saved") or {}).get("version")
        )
        if made:
            suggestions.append(f"{base}:{made[-1]}")
        elif any(
            (entry.get("saved") or {}).get("version")
            for record in records
            for other, entry in record.get("datasets", {}).items()
            if base_name(other) == base
        ):
            missing.append(base)  # a versioned input no related run made
    pins_text = ",".join(f"{k}:{v}" for k, v in pins.items())
    if suggestions:
        return (
            f"--load-versions pins {pins_text}; the runs that made or read that version also made "
            f"{', '.join(suggestions)}: add --load-versions {pins_text},{','.join(suggestions)}"
        )
    if missing:
        return (
            f"--load-versions pins {pins_text}, and no recorded run built {', '.join(missing)} from it; "
            "build one "
            f"first with the pipeline that makes it and the same pin (e.g. kedro run --pipelines index_build "
            f"--load-versions {pins_text})"
        )
    return ""
