"""A generic MCQ loader: any CSV, JSONL or parquet benchmark whose column mapping is given in conf.

C-Eval, CMMLU, FinanceIQ (CSV header ``,Question,A,B,C,D,Answer``, one file per exam) and similar sets load
without code::

    {name: financeiq, kind: generic, path: data/01_raw/mcq/financeiq,
     columns: {files: "*.csv", question: Question, options: [A, B, C, D], answer: Answer}}

Options are either several columns (their letters are the column names when those are single letters,
else A, B, C … in the listed order) or one column holding a list (``["…", "…"]``, lettered A, B, …) or a
``{letter: text}`` object (a JSON string in CSV). The answer is letters (``"AC"``, ``"A,C"``), the text of
the correct option(s), or 0-based option indexes. The subject is a column or, by default, the file name.
Every row becomes an item or a reject with file, line (CSV/JSONL line; parquet row number) and reason.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from finrag_pipelines.mcq.loaders import (
    OPTION_LETTERS,
    LoadResult,
    McqLoadError,
    _Collector,
    _csv_rows,
    _read_text,
)
from finrag_pipelines.mcq.split import normalise_text

FILE_FORMATS: dict[str, str] = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
ANSWER_FORMATS: tuple[str, ...] = ("letters", "text", "index")


@dataclass(frozen=True)
class ColumnMap:
    """Where each field lives in a generic source (the ``columns`` block of a ``kind: generic`` source).

    Attributes:
        files: Glob of the files to read when ``path`` is a folder (``"*.csv"``, ``"**/*.jsonl"``).
        question: The question column.
        options: Option columns (a list), or one column holding a list / ``{letter: text}`` object (a str).
        answer: The answer column.
        answer_format: ``letters``, ``text`` (the correct option's text) or ``index`` (0-based).
        id: A column with the row's id, or ``None`` for the line number.
        explanation: A column with a worked explanation, or ``None``.
        subject: A column with the subject, or ``None`` for the file name (without extension).
    """

    files: str
    question: str
    options: list[str] | str
    answer: str
    answer_format: str = "letters"
    id: str | None = None
    explanation: str | None = None
    subject: str | None = None

    def __post_init__(self) -> None:
        if self.answer_format not in ANSWER_FORMATS:
            raise McqLoadError(
                f"columns.answer_format must be one of {list(ANSWER_FORMATS)}, got {self.answer_format!r}"
            )
        if isinstance(self.options, list) and not 2 <= len(self.options) <= len(OPTION_LETTERS):
            raise McqLoadError(
                f"columns.options lists {len(self.options)} columns; expected 2 to {len(OPTION_LETTERS)}"
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ColumnMap:
        return cls(
            **{k: (list(v) if k == "options" and not isinstance(v, str) else v) for k, v in data.items()}
        )

    def required(self) -> list[str]:
        """The columns every file must have."""
        cols = [
            self.question,
            self.answer,
            *([self.options] if isinstance(self.options, str) else self.options),
        ]
        return cols + [c for c in (self.id, self.explanation, self.subject) if c is not None]


def _files(path: Path, pattern: str) -> list[Path]:
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.glob(pattern) if p.is_file())
        if not files:
            raise McqLoadError(f"{path}: no files match columns.files {pattern!r}")
    else:
        raise McqLoadError(
            f"{path}: no such file or folder; check the source path in parameters_mcq_prep.yml"
        )
    unknown = [f for f in files if f.suffix.lower() not in FILE_FORMATS]
    if unknown:
        raise McqLoadError(f"{unknown[0]}: unsupported file type; expected one of {sorted(FILE_FORMATS)}")
    return files


def _jsonl_rows(path: Path) -> tuple[list[str] | None, Iterator[tuple[int, dict[str, Any]]]]:
    lines = _read_text(path).splitlines()

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        for n, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise McqLoadError(
                    f"{path}: line {n}: invalid JSON ({exc.msg} at column {exc.colno})"
                ) from exc
            if not isinstance(record, dict):
                raise McqLoadError(f"{path}: line {n}: expected a JSON object, got {type(record).__name__}")
            yield n, record

    return None, rows()  # JSONL has no header: missing keys are checked row by row


def _parquet_rows(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise McqLoadError(f"{path}: cannot read as parquet: {exc}") from exc
    records = frame.to_dict("records")
    return [str(c) for c in frame.columns], ((i, r) for i, r in enumerate(records, 1))


def _value(raw: Any) -> Any:
    """A cell as Python: numpy arrays (parquet lists) as lists, NaN/None as None."""
    if hasattr(raw, "tolist") and not isinstance(raw, str):
        return raw.tolist()
    if raw is None or (isinstance(raw, float) and pd.isna(raw)):
        return None
    return raw


def _options(row: Mapping[str, Any], columns: ColumnMap) -> dict[str, Any]:
    """``letter -> text``; raises ``ValueError`` with a reason when the options cannot be read."""
    if isinstance(columns.options, list):
        names = columns.options
        single = all(len(n) == 1 and n.upper() in OPTION_LETTERS for n in names)
        letters = [n.upper() for n in names] if single else list(OPTION_LETTERS[: len(names)])
        return {letter: _value(row.get(name)) for letter, name in zip(letters, names)}
    value = _value(row.get(columns.options))
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"options column is not a JSON list or object ({exc.msg})") from exc
    if isinstance(value, list):
        if len(value) > len(OPTION_LETTERS):
            raise ValueError(f"{len(value)} options; at most {len(OPTION_LETTERS)} are supported")
        return dict(zip(OPTION_LETTERS, value))
    if isinstance(value, dict):
        return {unicodedata.normalize("NFKC", str(k)).strip().upper(): v for k, v in value.items()}
    raise ValueError(f"options column holds {type(value).__name__}, expected a list or an object")


def _answer_letters(raw: Any, options: Mapping[str, Any], answer_format: str) -> Any:
    """The answer as letters for the collector (which normalises and checks them); else ``ValueError``."""
    raw = _value(raw)
    if raw is None or answer_format == "letters":
        return raw
    if answer_format == "index":
        values = raw if isinstance(raw, list) else str(raw).replace("，", ",").split(",")
        try:
            indexes = [int(str(v).strip()) for v in values if str(v).strip()]
        except ValueError:
            raise ValueError(f"answer {raw!r} is not 0-based option indexes") from None
        if any(not 0 <= i < len(options) for i in indexes):
            raise ValueError(f"answer index {raw!r} outside 0..{len(options) - 1}")
        return "".join(sorted(list(options)[i] for i in indexes))
    texts = raw if isinstance(raw, list) else [raw]
    by_text = {normalise_text(str(v)): k for k, v in options.items() if v is not None}
    letters = [by_text.get(normalise_text(str(t))) for t in texts]
    if not letters or None in letters:
        raise ValueError(f"answer text {str(raw)[:40]!r} matches no option")
    return "".join(sorted(letters))


def read_generic(path: str | Path, source: str, columns: ColumnMap | Mapping[str, Any]) -> LoadResult:
    """Every row of the matching files as items (``ITEM_COLUMNS``) or rejects.

    Raises:
        McqLoadError: A missing file or column, an unreadable file or a bad mapping, naming file and line.
    """
    columns = columns if isinstance(columns, ColumnMap) else ColumnMap.from_mapping(columns)
    root = Path(path)
    parts = []
    for file in _files(root, columns.files):
        rel = file.relative_to(root).as_posix() if root.is_dir() else file.name
        kind = FILE_FORMATS[file.suffix.lower()]
        header, rows = (
            _csv_rows(file)
            if kind == "csv"
            else _jsonl_rows(file)
            if kind == "jsonl"
            else _parquet_rows(file)
        )
        if header is not None:
            missing = [c for c in columns.required() if c not in header]
            if missing:
                raise McqLoadError(
                    f"{file}: line 1: missing column(s) {missing} named in the source's columns mapping; "
                    f"the file has {header}"
                )
        out = _Collector(source, rel)
        stem = rel.rsplit(".", 1)[0]
        for line, row in rows:
            ident = _value(row.get(columns.id)) if columns.id else None
            item_id = f"{source}:{stem}:{ident if ident not in (None, '') else line}"
            absent = [c for c in columns.required() if c not in row]
            if absent:
                out.reject(line, item_id, "missing_field", f"no {absent} in this row")
                continue
            try:
                options = _options(row, columns)
                answer = _answer_letters(row.get(columns.answer), options, columns.answer_format)
            except ValueError as exc:
                out.reject(line, item_id, "unreadable_options_or_answer", str(exc)[:120])
                continue
            subject = _value(row.get(columns.subject)) if columns.subject else None
            out.add(
                line=line,
                item_id=item_id,
                subject=str(subject) if subject is not None else Path(stem).name,
                question=_value(row.get(columns.question)),
                options=options,
                answer=answer,
                explanation=_value(row.get(columns.explanation)) if columns.explanation else None,
            )
        parts.append(out.result())
    return LoadResult.concat(parts)
