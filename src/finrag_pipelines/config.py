"""The project's one strict settings base: pipeline params and trainer configs derive from it.

Kedro-free library module (pipelines' ``params.py`` and ``training/`` both import it).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A settings group that refuses keys it does not know (a typo in conf fails instead of being ignored)."""

    model_config = ConfigDict(extra="forbid")
