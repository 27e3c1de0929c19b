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
from kedro.io import AbstractDataset, DatasetError

from finrag_pipelines.retrieval.types import Unavailable


class OptionalParquetDataset(AbstractDataset[None, "pd.DataFrame | Unavailable"]):
    """Loads a parquet file as a DataFrame, or an :class:`Unavailable` when it does not exist (read-only).

    Args:
        filepath: The parquet file (the same path as the writing view's).
        producer: The pipeline that writes it, named in the stand-in's reason.
    """

    optional = True  # the upstream check (hooks) does not require it before a run

    def __init__(self, filepath: str, producer: str) -> None:
        self._filepath = PurePosixPath(filepath)
        self._producer = producer

    def load(self) -> pd.DataFrame | Unavailable:
        path = Path(self._filepath)
        if not path.is_file():
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
        return Path(self._filepath).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "producer": self._producer}
