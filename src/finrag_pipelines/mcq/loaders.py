"""Loaders for the bundled Chinese finance MCQ sets and for chat-format JSONL, normalised to one table.

Every row read ends up either in ``items`` (:data:`ITEM_COLUMNS`) or in ``rejects``
(:data:`REJECT_COLUMNS`, with file, line and reason): nothing is dropped silently. A file that cannot
be read at all (not UTF-8, broken CSV/JSON) raises :class:`McqLoadError` naming the file and line.

Sources (``kind``):

* ``fin_eva_ant``: Fin-Eva ``Ant/<category>/<task>.csv`` (id, [context,] question, A..E, answer). The
  unlabelled tail of each file is rejected as ``missing_answer``; ``安全合规/*`` files have no option
  columns (yes/no judgements of an unstated criterion) and are rejected as ``no_options``.
* ``fin_eva_sufe``: FinEval ``SUFE/{dev,val,test}/<subject>_<split>.csv``; dev rows carry an
  explanation; test files have no answer column (``no_answer_column``).
* ``cflue``: CFLUE ``knowledge.json`` (task 单项选择题/多项选择题/判断题, choices as a dict literal).
* ``generic``: any CSV/JSONL/parquet benchmark with a column mapping in conf (``generic_loader.py``).
* ``chat_jsonl``: Agentar-DeepFinance-style ``{"messages": [user, assistant]}`` lines; options are
  read from ``A. …``/``A：…`` lines of the user message, the answer from the assistant's text after
  ``</think>``, the explanation from the think block.
"""

from __future__ import annotations

import ast
import csv
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from finrag_pipelines.mcq.extract import extract_answer, normalise_letters
from finrag_pipelines.mcq.format import dump_options

ITEM_COLUMNS: tuple[str, ...] = (
    "item_id",
    "source",
    "subject",
    "question",
    "options",
    "answer",
    "kind",
    "explanation",
)
"""``options`` is a JSON object string (letter -> text); ``answer`` sorted letters;
``explanation`` may be None."""
REJECT_COLUMNS: tuple[str, ...] = ("source", "file", "line", "item_id", "reason", "detail")
SOURCE_KINDS: tuple[str, ...] = ("fin_eva_ant", "fin_eva_sufe", "cflue", "chat_jsonl", "generic")
OPTION_LETTERS = "ABCDEFGH"
NO_EXPLANATION = {"", "略", "略。", "无", "无。", "暂无", "none", "null", "nan"}
TRUE_FALSE_SETS = ({"对", "错"}, {"正确", "错误"}, {"是", "否"}, {"√", "×"})
CFLUE_KINDS = {"单项选择题": "single", "多项选择题": "multi", "判断题": "true_false"}

_OPTION_LINE = re.compile(r"^\s*[(（]?([A-Ha-hＡ-Ｈ])\s*[)）]?\s*[.．:：、\)]\s*(.*\S)\s*$")


class McqLoadError(ValueError):
    """A source file cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class SourceSpec:
    """One configured source: ``name`` (the ``source`` column), ``kind``, ``path`` (file or folder) and, for
    ``kind: generic`` only, the ``columns`` mapping (see ``generic_loader.ColumnMap``)."""

    name: str
    kind: str
    path: str
    columns: Mapping[str, Any] | None = None


@dataclass
class LoadResult:
    """Normalised items and the rows that could not be used."""

    items: pd.DataFrame
    rejects: pd.DataFrame

    @classmethod
    def from_rows(cls, items: Iterable[dict[str, Any]], rejects: Iterable[dict[str, Any]]) -> LoadResult:
        return cls(
            pd.DataFrame(list(items), columns=list(ITEM_COLUMNS)),
            pd.DataFrame(list(rejects), columns=list(REJECT_COLUMNS)).astype({"line": "Int64"}),
        )

    @classmethod
    def concat(cls, parts: Sequence[LoadResult]) -> LoadResult:
        empty = cls.from_rows([], [])
        items = pd.concat([empty.items] + [p.items for p in parts], ignore_index=True)
        rejects = pd.concat([empty.rejects] + [p.rejects for p in parts], ignore_index=True)
        return cls(items, rejects.astype({"line": "Int64"}))


def clean_explanation(text: Any) -> str | None:
    """Stripped explanation, or ``None`` for empty/placeholder text such as ``略``."""
    if text is None or (isinstance(text, float) and pd.isna(text)):
        return None
    value = str(text).strip()
    return None if value.lower() in NO_EXPLANATION else value


def classify(options: Mapping[str, str], answer: str, declared: str | None = None) -> str:
    """``single``, ``multi`` or ``true_false`` from the declared task, the options and the answer."""
    if declared:
        return declared
    if len(options) == 2 and any(set(options.values()) == s for s in TRUE_FALSE_SETS):
        return "true_false"
    return "multi" if len(answer) > 1 else "single"


class _Collector:
    """Builds item rows, or reject rows with the reason when a row is unusable."""

    def __init__(self, source: str, file: str) -> None:
        self.source, self.file = source, file
        self.items: list[dict[str, Any]] = []
        self.rejects: list[dict[str, Any]] = []

    def reject(self, line: int | None, item_id: str | None, reason: str, detail: str = "") -> None:
        self.rejects.append(
            {
                "source": self.source,
                "file": self.file,
                "line": line,
                "item_id": item_id,
                "reason": reason,
                "detail": detail,
            }
        )

    def add(
        self,
        *,
        line: int,
        item_id: str,
        subject: str,
        question: Any,
        options: Mapping[str, Any],
        answer: Any,
        explanation: Any = None,
        declared_kind: str | None = None,
    ) -> None:
        question_text = "" if question is None else str(question).strip()
        if not question_text:
            return self.reject(line, item_id, "empty_question")
        opts = {k: str(v).strip() for k, v in options.items() if v is not None and str(v).strip()}
        if len(opts) < 2:
            return self.reject(line, item_id, "too_few_options", f"{len(opts)} non-empty option(s)")
        raw = "" if answer is None else str(answer).strip()
        if not raw:
            return self.reject(line, item_id, "missing_answer")
        letters = normalise_letters(raw)
        if not letters:
            return self.reject(line, item_id, "answer_not_letters", f"answer {raw[:40]!r}")
        unknown = sorted(set(letters) - set(opts))
        if unknown:
            return self.reject(
                line, item_id, "answer_letter_not_in_options", f"answer {letters}, options {''.join(opts)}"
            )
        kind = classify(opts, letters, declared_kind)
        if kind in ("single", "true_false") and len(letters) != 1:
            return self.reject(line, item_id, "kind_answer_mismatch", f"{kind} item with answer {letters}")
        self.items.append(
            {
                "item_id": item_id,
                "source": self.source,
                "subject": subject,
                "question": question_text,
                "options": dump_options(opts),
                "answer": letters,
                "kind": kind,
                "explanation": clean_explanation(explanation),
            }
        )

    def result(self) -> LoadResult:
        return LoadResult.from_rows(self.items, self.rejects)


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise McqLoadError(f"{path}: cannot read: {exc}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise McqLoadError(
            f"{path}: line {line}: not UTF-8 ({exc.reason}); re-save the file as UTF-8."
        ) from exc


def _csv_rows(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """Header and ``(line, row)`` pairs; a row with the wrong number of fields raises with its line."""
    text = _read_text(path)
    reader = csv.reader(text.splitlines(keepends=True), strict=True)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise McqLoadError(f"{path}: line 1: empty file, expected a CSV header") from None
    except csv.Error as exc:
        raise McqLoadError(f"{path}: line {reader.line_num}: broken CSV header: {exc}") from exc

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        while True:
            start = reader.line_num + 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise McqLoadError(f"{path}: line {start}: broken CSV: {exc}") from exc
            if not values or not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                raise McqLoadError(
                    f"{path}: line {start}: {len(values)} fields, "
                    f"header has {len(header)} ({','.join(header)}); "
                    "fix the quoting of this row."
                )
            yield start, dict(zip(header, values))

    return header, rows()


def _fin_eva_csv(path: Path, root: Path, source: str, subject: str, explain: bool) -> LoadResult:
    rel = path.relative_to(root).as_posix()
    out = _Collector(source, rel)
    header, rows = _csv_rows(path)
    letters = [c for c in header if len(c) == 1 and c in OPTION_LETTERS]
    missing = [c for c in ("id", "question") if c not in header]
    if missing:
        raise McqLoadError(f"{path}: line 1: missing column(s) {missing}; header is {header}")
    for line, row in rows:
        item_id = f"{source}:{rel.rsplit('.', 1)[0]}:{row['id'].strip()}"
        if not letters:
            out.reject(
                line,
                item_id,
                "no_options",
                "file has no option columns (a judgement/generation task, not multiple choice)",
            )
            continue
        if "answer" not in header:
            out.reject(line, item_id, "no_answer_column", "unlabelled test file")
            continue
        question = row["question"]
        if row.get("context", "").strip():
            question = f"{row['context'].strip()}\n\n{question.strip()}"
        out.add(
            line=line,
            item_id=item_id,
            subject=subject,
            question=question,
            options={k: row[k] for k in letters},
            answer=row["answer"],
            explanation=row.get("explanation") if explain else None,
        )
    return out.result()


def _csv_files(root: Path, pattern: str) -> list[Path]:
    if not root.is_dir():
        raise McqLoadError(f"{root}: not a folder; check the source path in parameters_mcq_prep.yml")
    files = sorted(root.glob(pattern))
    if not files:
        raise McqLoadError(f"{root}: no files match {pattern!r}")
    return files


def read_fin_eva_ant(root: str | Path, source: str = "fin_eva_ant") -> LoadResult:
    """Fin-Eva ``Ant/<category>/<task>.csv`` files under ``root`` (subject = ``category/task``)."""
    root = Path(root)
    parts = [
        _fin_eva_csv(f, root, source, f"{f.parent.name}/{f.stem}", explain=False)
        for f in _csv_files(root, "*/*.csv")
    ]
    return LoadResult.concat(parts)


def read_fin_eva_sufe(root: str | Path, source: str = "fin_eva_sufe") -> LoadResult:
    """FinEval ``SUFE/<split>/<subject>_<split>.csv`` files under ``root`` (subject from the file name)."""
    root = Path(root)
    parts = []
    for f in _csv_files(root, "*/*.csv"):
        subject = f.stem.rsplit("_", 1)[0] if f.stem.endswith("_" + f.parent.name) else f.stem
        parts.append(_fin_eva_csv(f, root, source, subject, explain=True))
    return LoadResult.concat(parts)


def _parse_choices(raw: Any) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return dict(raw)
    if not isinstance(raw, str):
        raise ValueError(f"choices is {type(raw).__name__}, expected a dict literal string")  # noqa: TRY004
    value = ast.literal_eval(raw)
    if not isinstance(value, dict):
        raise ValueError("choices is not a dict literal")  # noqa: TRY004
    return value


def read_cflue(path: str | Path, source: str = "cflue") -> LoadResult:
    """CFLUE ``knowledge.json``: a JSON list; ``line`` in rejects is the 1-based list position."""
    path = Path(path)
    text = _read_text(path)
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise McqLoadError(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg}") from exc
    if not isinstance(records, list):
        raise McqLoadError(f"{path}: line 1: expected a JSON list of questions, got {type(records).__name__}")
    out = _Collector(source, path.name)
    for n, rec in enumerate(records, 1):
        item_id = f"{source}:{n}"
        if not isinstance(rec, dict):
            out.reject(n, item_id, "not_an_object", type(rec).__name__)
            continue
        declared = CFLUE_KINDS.get(str(rec.get("task", "")).strip())
        if declared is None:
            out.reject(n, item_id, "unknown_task", f"task {rec.get('task')!r}")
            continue
        try:
            choices = _parse_choices(rec.get("choices"))
        except (ValueError, SyntaxError) as exc:
            out.reject(n, item_id, "unparsable_choices", str(exc)[:80])
            continue
        out.add(
            line=n,
            item_id=item_id,
            subject=str(rec.get("名称") or ""),
            question=rec.get("question"),
            options={unicodedata.normalize("NFKC", str(k)).strip().upper(): v for k, v in choices.items()},
            answer=rec.get("answer"),
            explanation=rec.get("analysis"),
            declared_kind=declared,
        )
    return out.result()


def split_question_options(text: str) -> tuple[str, dict[str, str]]:
    """Question stem and ``letter -> text`` from a user message with one option per line."""
    stem: list[str] = []
    options: dict[str, str] = {}
    for line in text.splitlines():
        match = _OPTION_LINE.match(line)
        if match:
            letter = unicodedata.normalize("NFKC", match.group(1)).upper()
            if (
                letter not in options
                and (not options or letter == chr(ord(max(options)) + 1))
                and (options or letter == "A")
            ):
                options[letter] = match.group(2)
                continue
        if options:  # text after the options (e.g. an instruction) is not part of the stem
            continue
        stem.append(line)
    return "\n".join(stem).strip(), options


def read_chat_jsonl(path: str | Path, source: str) -> LoadResult:
    """Agentar-DeepFinance-style chat JSONL: the last user and last assistant message of each line."""
    path = Path(path)
    text = _read_text(path)
    out = _Collector(source, path.name)
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise McqLoadError(f"{path}: line {n}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
        item_id = f"{source}:{n}"
        messages = rec.get("messages") if isinstance(rec, dict) else None
        if not isinstance(messages, list):
            out.reject(n, item_id, "no_messages", "expected {'messages': [...]}")
            continue
        users = [
            m.get("content")
            for m in messages
            if isinstance(m, dict) and str(m.get("role", "")).lower() in ("user", "human")
        ]
        bots = [
            m.get("content")
            for m in messages
            if isinstance(m, dict) and str(m.get("role", "")).lower() == "assistant"
        ]
        if not users or not bots or not isinstance(users[-1], str) or not isinstance(bots[-1], str):
            out.reject(n, item_id, "missing_user_or_assistant")
            continue
        stem, options = split_question_options(users[-1])
        if len(options) < 2:
            out.reject(n, item_id, "no_options", "no 'A. …' option lines in the user message")
            continue
        found = extract_answer(bots[-1], options.keys(), allow_fallback=True)
        if found.letters is None:
            out.reject(n, item_id, "no_answer_in_assistant", found.reason)
            continue
        explanation = found.reasoning if found.think == "closed" else None
        out.add(
            line=n,
            item_id=item_id,
            subject=source,
            question=stem,
            options=options,
            answer=found.letters,
            explanation=explanation,
        )
    return out.result()


def load_source(spec: SourceSpec) -> LoadResult:
    """Dispatch one configured source to its reader.

    Raises:
        McqLoadError: On an unknown kind or an unreadable file.
    """
    if spec.kind == "fin_eva_ant":
        return read_fin_eva_ant(spec.path, spec.name)
    if spec.kind == "fin_eva_sufe":
        return read_fin_eva_sufe(spec.path, spec.name)
    if spec.kind == "cflue":
        return read_cflue(spec.path, spec.name)
    if spec.kind == "chat_jsonl":
        return read_chat_jsonl(spec.path, spec.name)
    if spec.kind == "generic":
        from finrag_pipelines.mcq.generic_loader import read_generic  # it builds on this module's collector

        if spec.columns is None:
            raise McqLoadError(
                f"source {spec.name!r}: kind generic needs a columns mapping (question, options, answer)"
            )
        return read_generic(spec.path, spec.name, spec.columns)
    raise McqLoadError(
        f"source {spec.name!r}: unknown kind {spec.kind!r}; expected one of {list(SOURCE_KINDS)}"
    )
