"""A read-only dataset of raw input lines that keeps their provenance (file and line) for error messages."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from finrag_pipelines.text.corpus import CorpusFormatError, SourceRow


class SourceLinesDataset(AbstractDataset[None, list[SourceRow]]):
    """Loads a JSON-lines (``format: jsonl``) or plain text (``format: lines``) file as ``SourceRow`` s.

    Malformed JSON is reported with file and line; blank lines are skipped. Saving is not supported:
    raw inputs are never rewritten by a pipeline.

    Example::

        corpus_raw:
          type: finrag_pipelines.datasets.SourceLinesDataset
          filepath: data/01_raw/retrieval/fintruthqa/corpus.jsonl
    """

    def __init__(self, filepath: str, format: str = "jsonl", encoding: str = "utf-8") -> None:  # noqa: A002
        if format not in ("jsonl", "lines"):
            raise DatasetError(f"SourceLinesDataset format must be 'jsonl' or 'lines', got {format!r}")
        self._filepath = PurePosixPath(filepath)
        self._format = format
        self._encoding = encoding

    def load(self) -> list[SourceRow]:
        path = Path(self._filepath)
        if not path.is_file():
            raise DatasetError(f"Input file not found: {path}. Check the path (or --params retrieval_dataset=<folder>).")
        rows: list[SourceRow] = []
        with path.open(encoding=self._encoding) as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                if self._format == "lines":
                    rows.append(SourceRow(str(path), lineno, line.rstrip("\r\n")))
                    continue
                try:
                    data: Any = json.loads(line.rstrip("\r\n"))
                except json.JSONDecodeError as exc:
                    raise CorpusFormatError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
                rows.append(SourceRow(str(path), lineno, data))
        return rows

    def save(self, data: None) -> None:
        raise DatasetError(f"{self._filepath} is a raw input and is read-only")

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "format": self._format}
