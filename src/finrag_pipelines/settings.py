"""Kedro project settings."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePath
from typing import Any

from finrag_pipelines.catalog import ProjectDataCatalog
from finrag_pipelines.config_loader import LayeredConfigLoader
from finrag_pipelines.hooks import RunStopHooks
from finrag_pipelines.lineage_hooks import LineageHooks
from finrag_pipelines.managed_llm import ManagedLLMServerHooks

# A third-party warning about kedro-viz's own internals, printed by every `kedro` command (`kedro viz build`
# included): kedro-viz 12.5 still imports FastAPI's ORJSONResponse.
warnings.filterwarnings("ignore", message=r"ORJSONResponse is deprecated")
# MLflow's "Add type hints to the `predict` method" about kedro-mlflow's own PythonModel, printed when
# kedro_mlflow is imported (tracking.py). MLflow resets the warning filters around it (simplefilter "once"),
# so it is dropped where it is shown, for this one import only.
_MLFLOW_NOTICE = "Add type hints to the `predict` method"


@contextmanager
def _without_mlflow_notice() -> Iterator[None]:
    shown = warnings.showwarning

    def show(message: Any, category: Any, filename: str, lineno: int, *args: Any, **kwargs: Any) -> None:
        if _MLFLOW_NOTICE not in str(message):
            shown(message, category, filename, lineno, *args, **kwargs)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


try:
    with _without_mlflow_notice():
        from finrag_pipelines.tracking import TrackingHook
    _TRACKING: Any = TrackingHook()
except ImportError as _missing:  # a slim worker environment (deploy/airflow) without kedro-mlflow
    from finrag_pipelines.tracking_unavailable import TrackingUnavailableHook

    _TRACKING = TrackingUnavailableHook(str(_missing))

# a run whose upstream artefacts are missing, or that is misconfigured, stops in one line (hooks.py); its
# upstream check runs before any other hook (tryfirst), so a run that cannot start starts no managed server
# and opens no lineage record or MLflow run. llm.server: managed — the run starts its LLM server, routes
# params:llm to it and stops it (managed_llm.py); every run writes a lineage record (lineage_hooks.py) and
# is tracked in MLflow (tracking.py, off in conf/test; without kedro-mlflow installed, a run with tracking on
# stops naming it: tracking_unavailable.py)
HOOKS = (RunStopHooks(), ManagedLLMServerHooks(), LineageHooks(), _TRACKING)
# kedro-mlflow registers its hook itself when installed; the project's TrackingHook replaces it
DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow", "kedro-mlflow")

# Kedro's catalog, with a --load-versions pin applied to every view of one versioned artefact (catalog.py)
DATA_CATALOG_CLASS = ProjectDataCatalog

# OmegaConfigLoader, plus `extends: <env>` in conf/<env>/env.yml (test and milvus extend demo; conf/README.md)
CONFIG_LOADER_CLASS = LayeredConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # an environment changes single keys (demo: the encoder roles, a few training sizes), not whole groups;
    # catalog and credentials entries are replaced whole
    "merge_strategy": {"parameters": "soft", "globals": "soft", "runs": "soft", "mlflow": "soft"},
    "custom_resolvers": {
        # ${basename:some/folder} -> "folder": used to keep artefacts of different BEIR sets apart
        "basename": lambda path: PurePath(str(path).rstrip("/")).name,
    },
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        # what every run records about itself: lineage, retention, tracking switch (runs.yml); kedro-mlflow
        "runs": ["runs*"],
        "mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"],
    },
}
