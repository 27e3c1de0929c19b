"""Kedro project settings."""

from __future__ import annotations

import warnings
from pathlib import PurePath

from finrag_pipelines.catalog import ProjectDataCatalog
from finrag_pipelines.config_loader import LayeredConfigLoader
from finrag_pipelines.hooks import RunStopHooks
from finrag_pipelines.lineage_hooks import LineageHooks
from finrag_pipelines.managed_llm import ManagedLLMServerHooks
from finrag_pipelines.tracking import TrackingHook

# A third-party warning about kedro-viz's own internals, printed by `kedro viz build`: kedro-viz 12.5 still
# imports FastAPI's ORJSONResponse. (MLflow's "Add type hints to the `predict` method" about kedro-mlflow's
# own class cannot be filtered: MLflow resets the filters around it; README, "Experiment tracking".)
warnings.filterwarnings("ignore", message=r"ORJSONResponse is deprecated")

# a run whose upstream artefacts are missing, or that is misconfigured, stops in one line (hooks.py); its
# upstream check runs before any other hook (tryfirst), so a run that cannot start starts no managed server
# and opens no lineage record or MLflow run. llm.server: managed — the run starts its LLM server, routes
# params:llm to it and stops it (managed_llm.py); every run writes a lineage record (lineage_hooks.py) and
# is tracked in MLflow (tracking.py, off in conf/test)
HOOKS = (RunStopHooks(), ManagedLLMServerHooks(), LineageHooks(), TrackingHook())
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
