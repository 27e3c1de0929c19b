"""Experiment tracking with kedro-mlflow: one MLflow run per ``kedro run``.

kedro-mlflow's hook (its configuration ``conf/<env>/mlflow.yml``, its run lifecycle, ``kedro mlflow ui``),
with the project's choices (``conf/<env>/runs.yml`` ``tracking``):

* **Switch.** ``tracking.enabled: false`` turns it off for an environment (the ``test`` environment): no
  MLflow run, no store is opened.
* **Store.** ``server.mlflow_tracking_uri`` in ``mlflow.yml`` wins, then ``$MLFLOW_TRACKING_URI`` (a team's
  shared server); otherwise a local SQLite store inside the project (``tracking.local_store``, artefacts in
  ``tracking.local_artifacts``): no server, works offline and in CI. (MLflow 3 refuses its old ``mlruns``
  folder store, kedro-mlflow's default.)
* **Parameters.** Every parameter the run's nodes read, logged once when the run starts (flattened with
  ``mlflow.yml`` ``tracking.params.dict_params``), instead of node by node.
* **Metrics and artefacts.** A catalog entry marked ``metadata: {mlflow: metrics}`` has the numbers of what
  is saved to it logged as metrics (nested keys joined with dots; a list of ``{step, ...}`` rows as a
  series); ``{mlflow: artifact}`` logs the saved report, figure or JSON as an artefact (both: a list).
* **Lineage.** The run is tagged with the Kedro run id (``kedro_run_id``), which is also the version of
  every versioned dataset it saved and the name of its lineage record.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node
from kedro_mlflow.config.kedro_mlflow_config import KedroMlflowConfig
from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook
from kedro_mlflow.framework.hooks.utils import _flatten_dict
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

from finrag_pipelines.lineage_hooks import load_runs_settings
from finrag_pipelines.provenance.records import plain

logger = logging.getLogger(__name__)

METADATA_KEY = "mlflow"
_BAD_KEY_CHARS = re.compile(r"[^\w\-. :/]")


def metric_key(*parts: str) -> str:
    """An MLflow metric or param name from ``parts`` (``mrr@10`` -> ``mrr_at_10``; odd characters ``_``)."""
    return _BAD_KEY_CHARS.sub("_", ".".join(parts).replace("@", "_at_"))


def numeric_leaves(data: Any, prefix: str) -> Iterator[tuple[str, float, int]]:
    """``(key, value, step)`` for every number in ``data`` (nested mappings; lists of ``{step, ...}`` rows).

    Booleans, strings, NaN and lists of anything else are left out.
    """
    if isinstance(data, Mapping):
        for key, value in data.items():
            yield from numeric_leaves(value, metric_key(prefix, str(key)))
    elif isinstance(data, list) and data and all(isinstance(r, Mapping) and "step" in r for r in data):
        for row in data:
            for key, value in row.items():
                if key != "step" and _is_number(value) and _is_number(row["step"]):
                    yield metric_key(prefix, str(key)), float(value), int(row["step"])
    elif _is_number(data):
        yield prefix, float(data), 0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class TrackingHook(MlflowHook):
    """kedro-mlflow's ``MlflowHook`` with the project's switch, store, parameters, metrics and artefacts.

    Registered in ``settings.py`` (the plugin's own auto-registered instance is disabled there).
    """

    def __init__(self) -> None:
        super().__init__()
        self._enabled = False
        self._client: MlflowClient | None = None
        self._catalog: Any = None
        self._context: Any = None

    # ------------------------------------------------------------------------------------------ configuration
    @hook_impl
    def after_context_created(self, context: Any) -> None:
        settings = load_runs_settings(context.config_loader).tracking
        self._enabled = settings.enabled
        self.run_id = None
        if not self._enabled:
            self._is_mlflow_enabled = False
            logger.info("tracking: off in this environment (runs.yml tracking.enabled)")
            return
        if "mlflow" not in context.config_loader.config_patterns:
            context.config_loader.config_patterns.update({"mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"]})
        try:
            conf = dict(context.config_loader["mlflow"])
        except MissingConfigException:
            conf = {}
        config = KedroMlflowConfig.model_validate(conf)
        root = Path(context.project_path)
        if config.server.mlflow_tracking_uri is None:
            local = f"sqlite:///{(root / settings.local_store).resolve()}"
            config.server.mlflow_tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or local
            if config.server.mlflow_tracking_uri == local:
                (root / settings.local_store).parent.mkdir(parents=True, exist_ok=True)
                kwargs = config.tracking.experiment.create_experiment_kwargs
                kwargs.artifact_location = kwargs.artifact_location or str(
                    (root / settings.local_artifacts).resolve()
                )
        context.__setattr__("mlflow", config)  # what `kedro mlflow ui` reads
        self.mlflow_config = config
        self._context = context

    def _open_store(self) -> None:
        """Connect to the store and pick the experiment: only when a pipeline runs, not for every session
        (the server, ``finrag-ask``, ``kedro viz`` open sessions too)."""
        config = self.mlflow_config
        self._already_active_mlflow = mlflow.active_run() is not None
        if self._already_active_mlflow:  # an orchestrator started the run: log into it, as kedro-mlflow does
            config.server.mlflow_tracking_uri = mlflow.get_tracking_uri()
            config.tracking.run.id = mlflow.active_run().info.run_id
        else:
            config.setup(self._context)
        self._client = MlflowClient(tracking_uri=config.server.mlflow_tracking_uri)

    @hook_impl
    def after_catalog_created(
        self,
        catalog: Any,
        conf_catalog: dict[str, Any],
        conf_creds: dict[str, Any],
        parameters: dict[str, Any],
        save_version: str,
        load_versions: dict[str, str],
    ) -> None:
        if self._enabled:
            super().after_catalog_created(
                catalog, conf_catalog, conf_creds, parameters, save_version, load_versions
            )

    # ------------------------------------------------------------------------------------------ run lifecycle
    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        if not self._enabled:
            return
        self._open_store()
        super().before_pipeline_run(run_params=run_params, pipeline=pipeline, catalog=catalog)
        self._catalog = catalog
        if self.run_id is None:  # tracking disabled for these pipelines in mlflow.yml
            return
        tags = [
            RunTag("kedro_run_id", str(run_params["run_id"])),
            RunTag("kedro_env", str(run_params.get("env"))),
        ]
        self._client.log_batch(self.run_id, tags=tags)
        self._log_params(pipeline, catalog)

    def _log_params(self, pipeline: Pipeline, catalog: Any) -> None:
        options = self.mlflow_config.tracking.params
        values: dict[str, Any] = {}
        for name in sorted({i for node in pipeline.nodes for i in node.inputs}):
            if name.startswith("params:"):  # read from the dataset: no "Loading data" line per group
                values[name[len("params:") :]] = plain(catalog.get(name).load())  # typed params: dicts
        if options.dict_params.flatten:
            values = _flatten_dict(
                values, recursive=options.dict_params.recursive, sep=options.dict_params.sep
            )
        params, tags = [], []
        for key, value in values.items():
            text, name = str(value), self.sanitize_param_name(key)
            if len(text) <= MAX_PARAM_VAL_LENGTH:
                params.append(Param(name, text))
            elif options.long_params_strategy == "tag":
                tags.append(RunTag(name, text))
            elif options.long_params_strategy == "truncate":
                params.append(Param(name, text[:MAX_PARAM_VAL_LENGTH]))
            else:
                raise ValueError(
                    f"parameter {key} is {len(text)} characters long (MLflow keeps {MAX_PARAM_VAL_LENGTH}); "
                    "set tracking.params.long_params_strategy to tag or truncate in mlflow.yml"
                )
        for chunk in _chunks(params, MAX_PARAMS_TAGS_PER_BATCH):
            self._client.log_batch(self.run_id, params=chunk)
        for chunk in _chunks(tags, MAX_PARAMS_TAGS_PER_BATCH):
            self._client.log_batch(self.run_id, tags=chunk)
        logger.info("tracking: %d parameters logged to MLflow run %s", len(params) + len(tags), self.run_id)

    @hook_impl
    def before_node_run(self, node: Node, catalog: Any, inputs: dict[str, Any], is_async: bool) -> None:
        """Nothing per node: parameters are logged once when the run starts."""

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        if self._enabled:
            super().after_pipeline_run(run_params=run_params, pipeline=pipeline, catalog=catalog)

    @hook_impl
    def on_pipeline_error(
        self, error: Exception, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any
    ) -> None:
        if self._enabled and self.run_id is not None:
            super().on_pipeline_error(error=error, run_params=run_params, pipeline=pipeline, catalog=catalog)

    # ------------------------------------------------------------------------------------ metrics, artefacts
    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Node) -> None:
        if not self._enabled or self.run_id is None or self._catalog is None:
            return
        dataset = self._catalog.get(dataset_name)
        marks = (getattr(dataset, "metadata", None) or {}).get(METADATA_KEY) or []
        marks = [marks] if isinstance(marks, str) else list(marks)
        if "metrics" in marks:
            self._log_metrics(dataset_name, data)
        if "artifact" in marks:
            self._log_artifact(dataset_name, data, dataset)

    def _log_metrics(self, name: str, data: Any) -> None:
        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value, step in numeric_leaves(data, name)]
        for chunk in _chunks(metrics, MAX_METRICS_PER_BATCH):
            self._client.log_batch(self.run_id, metrics=chunk)
        logger.info("tracking: %d metrics from %s", len(metrics), name)

    def _log_artifact(self, name: str, data: Any, dataset: Any) -> None:
        suffix = Path(str(getattr(dataset, "_filepath", "") or "")).suffix
        if hasattr(data, "savefig"):
            self._client.log_figure(self.run_id, data, f"{name}{suffix or '.png'}")
        elif isinstance(data, str):
            self._client.log_text(self.run_id, data, f"{name}{suffix or '.txt'}")
        elif isinstance(data, (Mapping, list)):
            self._client.log_dict(self.run_id, data, f"{name}.json")
        else:
            logger.warning(
                "tracking: %s (%s) is marked as an artefact but not a figure, text or JSON",
                name,
                type(data).__name__,
            )
