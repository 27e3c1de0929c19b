"""The ``runs`` settings (``conf/<env>/runs.yml``): run records, retention and experiment tracking.

Kedro-free library module.
"""

from __future__ import annotations

from pydantic import Field

from finrag_pipelines.config import StrictModel


class LineageSettings(StrictModel):
    """Where the run records go."""

    folder: str = Field(description="one <run id>.json per kedro run, relative to the project root")


class RetentionSettings(StrictModel):
    """The retention rule (``python -m finrag_pipelines.retention``)."""

    keep_last: int = Field(ge=1, description="versions kept per versioned dataset (and recent run records)")


class TrackingSettings(StrictModel):
    """Experiment tracking with kedro-mlflow (its own settings: ``mlflow.yml``)."""

    enabled: bool = Field(description="false: no MLflow run is started (mlflow.yml is not read)")
    local_store: str = Field(
        description=(
            "the tracking store when neither mlflow.yml (server.mlflow_tracking_uri) nor "
            "$MLFLOW_TRACKING_URI names one: a SQLite file, relative to the project root"
        )
    )
    local_artifacts: str = Field(
        description="the artefact folder of that local store, relative to the project root"
    )


class RunsSettings(StrictModel):
    """Everything a ``kedro run`` records about itself."""

    lineage: LineageSettings
    retention: RetentionSettings
    tracking: TrackingSettings
