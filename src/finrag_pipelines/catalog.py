"""The project's data catalog: Kedro's, with ``--load-versions`` applied to one artefact as a whole.

Several catalog entries can be views of one versioned artefact: the transcoded views of a model folder
(``finetuned_model@dir``, ``finetuned_model@encoder``), or an index folder and the view that reads only its
``meta.json`` (``dense_finetuned_index``, ``dense_finetuned_index_meta``). Kedro pins a version per entry,
so ``--load-versions finetuned_model@dir:<v>`` alone would load the old folder through one view and the
newest through the other. Here a pin applies to every versioned entry stored under the same path, and a
transcoded dataset may be pinned by its base name (``--load-versions finetuned_model:<v>``). A pin of a
dataset that is not versioned is refused: Kedro would silently load its only copy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from kedro.framework.context.catalog_mixins import CatalogCommandsMixin
from kedro.io import DataCatalog, DatasetError

# the keys a versioned catalog entry names its storage with (the first one present is used)
_PATH_KEYS = ("filepath", "path", "model_path")
# settings blocks that carry the model folder (EncoderDataset `encoder`, RerankerDataset `reranker`)
_NESTED = ("encoder", "reranker")


def storage_root(config: Mapping[str, Any]) -> str | None:
    """Where a catalog entry keeps its versions (an absolute path), or None when it is not versioned.

    Kedro makes ``path``/``filepath`` absolute against the project; ``model_path``/``meta_path`` stay as
    written and, like the datasets that read them, are taken relative to the working folder.

    Args:
        config: A resolved catalog entry.
    """
    found = storage_path(config)
    return os.path.abspath(found) if found is not None else None


def storage_path(config: Mapping[str, Any]) -> str | None:
    """The path a versioned catalog entry keeps its versions under, as configured (None: not versioned)."""
    if not isinstance(config, Mapping) or not config.get("versioned"):
        return None
    found = next((config[k] for k in _PATH_KEYS if config.get(k)), None)
    if found is None and config.get("meta_path"):  # Milvus datasets: the folder of their meta.json
        found = PurePosixPath(str(config["meta_path"])).parent
    for key in _NESTED:
        nested = config.get(key)
        if found is None and isinstance(nested, Mapping) and nested.get("model_path"):
            found = nested["model_path"]
    return str(found) if found is not None else None


def expand_load_versions(catalog: Mapping[str, Any], load_versions: Mapping[str, str]) -> dict[str, str]:
    """``load_versions`` with each pin applied to every view of the same artefact.

    Args:
        catalog: The resolved catalog configuration (entry name -> entry).
        load_versions: ``--load-versions`` as given (dataset name -> version).

    Raises:
        DatasetError: When a pinned dataset is not versioned, or one artefact is pinned to two versions.
    """
    expanded: dict[str, str] = {}
    for name, version in load_versions.items():
        views = [n for n in catalog if n == name or n.split("@", 1)[0] == name]
        if not views:
            expanded[name] = version  # Kedro reports an unknown name (or resolves a factory pattern)
            continue
        roots = {storage_root(catalog[view]) for view in views}
        if None in roots:
            raise DatasetError(
                f"--load-versions {name}:{version}: {name} is not versioned (its catalog entry has no "
                "`versioned: true`), so it has only one copy to load; drop the pin"
            )
        for other, config in catalog.items():
            if storage_root(config) in roots:
                previous = expanded.setdefault(other, version)
                if previous != version:
                    raise DatasetError(
                        f"--load-versions pins {other} to both {previous} and {version} "
                        "(views of one artefact)"
                    )
    return expanded


class ProjectDataCatalog(DataCatalog, CatalogCommandsMixin):
    """Kedro's ``DataCatalog`` (with the ``kedro catalog`` commands), pins expanded as the module says."""

    @classmethod
    def from_config(  # type: ignore[override]
        cls,
        catalog: dict[str, dict[str, Any]] | None,
        credentials: dict[str, dict[str, Any]] | None = None,
        load_versions: dict[str, str] | None = None,
        save_version: str | None = None,
        validation_enabled: bool = True,
    ) -> ProjectDataCatalog:
        expanded = expand_load_versions(catalog or {}, load_versions or {})
        return super().from_config(catalog, credentials, expanded, save_version, validation_enabled)
