"""Fixed first-stage fusion settings: the ``fusion_settings.json`` of another (dev) set, read-only.

Evaluating a held-out test folder must tune nothing on it. Pass the dev set's settings at run time::

    kedro run --pipelines index_build,evaluation --params retrieval_dataset=<test folder>,\\
        fixed_fusion_settings=data/07_model_output/<dev>/fusion_settings.json

The catalog entry's ``filepath`` is ``${runtime_params:fixed_fusion_settings, null}``: without the runtime
parameter this dataset loads an :class:`~finrag_pipelines.retrieval.types.Unavailable` (evaluation then tunes
on its own ``tune`` split); with it, the file must exist.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from finrag_pipelines.retrieval.types import Unavailable

NOT_GIVEN = (
    "no fixed fusion settings given (--params fixed_fusion_settings=<path>); evaluation tunes them on this "
    "set's tune split"
)


class FixedFusionSettingsDataset(AbstractDataset[None, "dict[str, Any] | Unavailable"]):
    """Loads a fusion settings JSON file when a path is given, else an :class:`Unavailable` (read-only).

    Args:
        filepath: The ``fusion_settings.json`` to apply, or ``None`` / ``""`` when none is given.
    """

    optional = True  # nothing upstream produces it

    def __init__(self, filepath: str | None = None) -> None:
        self._filepath = PurePosixPath(filepath) if filepath not in (None, "", "null", "None") else None

    def load(self) -> dict[str, Any] | Unavailable:
        if self._filepath is None:
            return Unavailable(what="fixed fusion settings", reason=NOT_GIVEN)
        path = Path(self._filepath)
        if not path.is_file():
            raise DatasetError(
                f"fixed_fusion_settings names {path}, which does not exist; give the fusion_settings.json "
                "that an evaluation of the dev set wrote (data/07_model_output/<set>/fusion_settings.json)"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"fixed_fusion_settings {path} is not readable JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise DatasetError(
                f"fixed_fusion_settings {path} must hold a JSON object, got {type(data).__name__}"
            )
        data.setdefault("source", "")
        data["source"] = f"{data['source']} (from {path})".strip()
        return data

    def save(self, data: Any) -> None:
        raise DatasetError("fixed fusion settings are read-only; evaluation writes fusion_settings")

    def _exists(self) -> bool:
        return self._filepath is None or Path(self._filepath).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath) if self._filepath else None}
