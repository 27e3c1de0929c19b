"""SourceLinesDataset: a thin catalog wrapper of read_source_rows; its errors keep file:line."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.io import DatasetError

from finrag_pipelines.datasets.source_lines import SourceLinesDataset
from finrag_pipelines.text.corpus import CorpusFormatError


def test_loads_rows_and_reports_bad_bytes_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "qrels.tsv"
    path.write_bytes(b"\xef\xbb\xbfquery-id\tcorpus-id\tscore\nq1\td1\t1\n")
    assert [(r.line, r.data) for r in SourceLinesDataset(str(path), format="lines").load()] == [
        (1, "query-id\tcorpus-id\tscore"),
        (2, "q1\td1\t1"),
    ]
    path.write_bytes(b"q1\td1\t1\nq2\td\xff\t1\n")
    with pytest.raises(DatasetError, match=rf"{path}:2: not valid utf-8: byte 0xff at byte 4") as err:
        SourceLinesDataset(str(path), format="lines").load()
    assert isinstance(err.value.__cause__, CorpusFormatError)


def test_bad_settings_are_refused_when_the_catalog_is_built(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not ASCII-compatible"):
        SourceLinesDataset(str(tmp_path / "c.jsonl"), encoding="utf-16")
    with pytest.raises(DatasetError, match="format must be"):
        SourceLinesDataset(str(tmp_path / "c.jsonl"), format="csv")
    with pytest.raises(DatasetError, match="Input file not found"):
        SourceLinesDataset(str(tmp_path / "missing.jsonl")).load()
