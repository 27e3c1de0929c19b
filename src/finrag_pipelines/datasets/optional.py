"""A read-only, optional view of a parquet file another pipeline writes (Kedro transcoding ``name@optional``).

A pipeline that can use an artefact but does not always need it reads it through this view: when the file
does not exist yet, ``load`` returns an :class:`~finrag_pipelines.retrieval.types.Unavailable` naming the
pipeline that makes it, and the node decides (ignore it when its switch is off, stop with that one line when
it is on). The run therefore never requires an expensive upstream it will not use. Example::

    search_qa_items@parquet:     # what rl_search_qa writes
      type: pandas.ParquetDataset
      filepath: data/05_model_input/fintruthqa/search_qa_items.parquet
    search_qa_items@optional:    # what rl reads
      type: finrag_pipelines.datasets.optional.OptionalParquetDataset
      filepath: data/05_model_input/fintruthqa/search_qa_items.parquet
      producer: rl_search_qa
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from kedro.io import DatasetError
from kedro.io.core import AbstractVersionedDataset, Version, VersionNotFoundError

from finrag_pipelines.retrieval.types import Unavailable


class OptionalParquetDataset(AbstractVersionedDataset[None, "pd.DataFrame | Unavailable"]):
    """Loads a parquet file as a DataFrame, or an :class:`Unavailable` when it does not exist (read-only).

    Args:
        filepath: The parquet file (the same path as the writing view's).
        producer: The pipeline that writes it, named in the stand-in's reason.
        version: ``versioned: true`` when the writing view is versioned: the newest version is read (or the
            one ``--load-versions`` pins for either view).
        metadata: Kedro dataset metadata.
    """

    optional = True  # the upstream check (hooks) does not require it before a run

    def __init__(
        self,
        filepath: str,
        producer: str,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(PurePosixPath(filepath), version)
        self._producer = producer
        self.metadata = metadata

    def _path(self) -> Path | None:
        try:
            return Path(self._get_load_path())
        except VersionNotFoundError:
            return None

    def load(self) -> pd.DataFrame | Unavailable:
        path = self._path()
        if path is not None and not path.is_file() and self._version and self._version.load:
            raise DatasetError(f"{path} (the version --load-versions pins) does not exist")
        if path is None or not path.is_file():
            path = path or Path(self._filepath)
            return Unavailable(
                what=str(path),
                reason=(
                    f"{path} does not exist yet; run the {self._producer} pipeline first "
                    f"(`kedro run --pipelines {self._producer}` with this run's --env)"
                ),
            )
        return pd.read_parquet(path)

    def save(self, data: Any) -> None:
        raise DatasetError(
            f"{self._filepath} is read through an optional view here; the {self._producer} pipeline writes it"
        )

    def _exists(self) -> bool:
        path = self._path()
        return path is not None and path.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "producer": self._producer, "version": self._version}
