"""The tracking hook of an environment where kedro-mlflow is not installed (a slim worker, e.g. Airflow's).

``settings.py`` registers it instead of :class:`~finrag_pipelines.tracking.TrackingHook` when that cannot be
imported. A run whose environment turns tracking off (``runs.yml`` ``tracking.enabled: false``) goes on; one
that turns it on stops before any node runs, saying what is missing and the two ways out. Nothing is
tracked silently nowhere.
"""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

from finrag_pipelines.errors import ConfigurationError
from finrag_pipelines.lineage_hooks import load_runs_settings

logger = logging.getLogger(__name__)


class TrackingUnavailableHook:
    """Stands in for the MLflow tracking hook when kedro-mlflow / mlflow cannot be imported."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self._enabled = False

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._enabled = load_runs_settings(context.config_loader).tracking.enabled
        if not self._enabled:
            logger.info("tracking: off in this environment (runs.yml tracking.enabled)")

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        if self._enabled:
            raise ConfigurationError(
                f"tracking is on for environment {run_params.get('env')!r} (conf runs.yml tracking.enabled) "
                f"but kedro-mlflow cannot be imported ({self.reason}); install the project's dependencies "
                "(pip install 'kedro-mlflow>=2.0.3,<3'), or set tracking: {enabled: false} in "
                "conf/<env>/runs.yml for this environment."
            )
