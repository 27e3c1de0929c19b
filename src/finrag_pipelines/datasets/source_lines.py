"""A read-only dataset of raw input lines that keeps their provenance (file and line) for error messages."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from finrag_pipelines.text.corpus import SourceRow
from finrag_pipelines.text.source import check_encoding, read_source_rows


class SourceLinesDataset(AbstractDataset[None, list[SourceRow]]):
    """Loads a JSON-lines (``format: jsonl``) or plain text (``format: lines``) file as ``SourceRow`` s.

    Reading follows :func:`~finrag_pipelines.text.source.read_source_rows`: blank lines are skipped, a
    UTF-8 byte order mark is accepted at the start of the file only, and invalid bytes (with their
    offset), malformed JSON or a lone-surrogate escape stop the load with an error naming file and
    line. ``encoding`` must be ASCII-compatible (default UTF-8). Saving is not supported: raw inputs
    are never rewritten by a pipeline.

    Example::

        corpus_raw:
          type: finrag_pipelines.datasets.SourceLinesDataset
          filepath: data/01_raw/retrieval/fintruthqa/corpus.jsonl
    """

    def __init__(self, filepath: str, format: str = "jsonl", encoding: str = "utf-8") -> None:  # noqa: A002
        if format not in ("jsonl", "lines"):
            raise DatasetError(f"SourceLinesDataset format must be 'jsonl' or 'lines', got {format!r}")
        try:
            self._encoding = check_encoding(encoding)
        except (LookupError, ValueError) as exc:
            raise DatasetError(f"SourceLinesDataset {filepath}: {exc}") from None
        self._filepath = PurePosixPath(filepath)
        self._format = format

    def load(self) -> list[SourceRow]:
        path = Path(self._filepath)
        if not path.is_file():
            raise DatasetError(
                f"Input file not found: {path}. Check the path (or --params retrieval_dataset=<folder>)."
            )
        return read_source_rows(path, "jsonl" if self._format == "jsonl" else "lines", self._encoding)

    def save(self, data: None) -> None:
        raise DatasetError(f"{self._filepath} is a raw input and is read-only")

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "format": self._format}
