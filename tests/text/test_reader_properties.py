"""Property-based tests (hypothesis) of the corpus / queries / qrels readers.

Well-formed files round-trip (ids, normalised texts, grades, file:line provenance); anything else ends in a
:class:`CorpusFormatError` whose message starts with ``file:line:`` for a line of that file, never in
another exception type.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finrag_pipelines.text.corpus import (
    CorpusFormatError,
    normalise_text,
    parse_documents,
    parse_qrels,
    parse_queries,
)
from finrag_pipelines.text.source import read_source_rows

PROPERTY = settings(
    max_examples=150,
    deadline=1000,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
)

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)  # valid Unicode, any character
ID = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12).filter(
        lambda s: bool(s.strip())
    ),
    st.integers(-(10**9), 10**9),
)
# qrels ids are tab-separated fields: no whitespace (stripped) or control characters in them
TSV_ID = st.text(
    st.characters(exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=12
).filter(lambda s: s == s.strip() and s.lower() not in ("query-id", "query_id", "qid"))
LAYOUT = st.fixed_dictionaries(
    {
        "bom": st.booleans(),
        "newline": st.sampled_from(["\n", "\r\n"]),
        "ascii": st.booleans(),
        "blank": st.booleans(),
    }
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("readers")


def write_lines(path: Path, lines: list[str], layout: dict[str, Any]) -> list[int]:
    """Write lines (with blank lines between them when asked); returns each one's 1-based line number."""
    out: list[str] = []
    numbers = []
    for line in lines:
        if layout["blank"]:
            out.append("  ")
        out.append(line)
        numbers.append(len(out))
    data = layout["newline"].join(out).encode("utf-8")
    path.write_bytes((b"\xef\xbb\xbf" if layout["bom"] else b"") + data)
    return numbers


def dumps(value: Any, layout: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=layout["ascii"])


@PROPERTY
@given(
    docs=st.lists(
        st.tuples(ID, st.one_of(st.none(), TEXT), TEXT), max_size=8, unique_by=lambda d: str(d[0]).strip()
    ),
    layout=LAYOUT,
)
def test_corpus_rows_round_trip(
    folder: Path, docs: list[tuple[Any, str | None, str]], layout: dict[str, Any]
) -> None:
    path = folder / "corpus.jsonl"
    rows = [{"_id": i, "text": t} | ({} if title is None else {"title": title}) for i, title, t in docs]
    lines = write_lines(path, [dumps(r, layout) for r in rows], layout)

    parsed = parse_documents(read_source_rows(path, "jsonl"))

    assert [d.doc_id for d in parsed] == [str(i).strip() for i, _, _ in docs]
    assert [d.title for d in parsed] == [normalise_text(title or "") for _, title, _ in docs]
    assert [d.text for d in parsed] == [normalise_text(t) for _, _, t in docs]
    assert [d.where for d in parsed] == [f"{path}:{n}" for n in lines]


@PROPERTY
@given(
    queries=st.lists(
        st.tuples(ID, TEXT.filter(lambda t: bool(normalise_text(t)))),
        max_size=8,
        unique_by=lambda q: str(q[0]).strip(),
    ),
    layout=LAYOUT,
)
def test_query_rows_round_trip(folder: Path, queries: list[tuple[Any, str]], layout: dict[str, Any]) -> None:
    path = folder / "queries.jsonl"
    write_lines(path, [dumps({"_id": i, "text": t}, layout) for i, t in queries], layout)

    assert parse_queries(read_source_rows(path, "jsonl")) == [
        (str(i).strip(), normalise_text(t)) for i, t in queries
    ]


GRADE = st.integers(0, 100).flatmap(
    lambda g: st.sampled_from([str(g), f"{g}.0", f"0{g}"]).map(lambda s: (s, g))
)


@PROPERTY
@given(
    judgements=st.lists(st.tuples(TSV_ID, TSV_ID, GRADE), max_size=8, unique_by=lambda j: (j[0], j[1])),
    layout=LAYOUT,
)
def test_qrels_lines_round_trip(
    folder: Path, judgements: list[tuple[str, str, tuple[str, int]]], layout: dict[str, Any]
) -> None:
    path = folder / "qrels.tsv"
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{text}" for q, d, (text, _) in judgements]
    numbers = write_lines(path, lines, layout | {"blank": False})  # the header must be line 1

    parsed = parse_qrels(read_source_rows(path, "lines"))

    assert parsed == [(q, d, g, f"{path}:{n}") for (q, d, (_, g)), n in zip(judgements, numbers[1:])]


def assert_parses_or_names_a_line(path: Path, n_lines: int, fmt: str, parse: Any) -> None:
    """Reading and parsing succeeds, or fails with a CorpusFormatError starting ``file:line:``."""
    try:
        parse(read_source_rows(path, fmt))  # type: ignore[arg-type]
    except CorpusFormatError as exc:
        match = re.match(rf"{re.escape(str(path))}:(\d+): \S", str(exc))
        assert match, str(exc)
        assert 1 <= int(match.group(1)) <= n_lines, str(exc)


PARSERS = [("jsonl", parse_documents), ("jsonl", parse_queries), ("lines", parse_qrels)]


@PROPERTY
@given(data=st.binary(max_size=300))
def test_any_bytes_parse_or_name_file_and_line(folder: Path, data: bytes) -> None:
    path = folder / "bytes.txt"
    path.write_bytes(data)
    for fmt, parse in PARSERS:
        assert_parses_or_names_a_line(path, data.count(b"\n") + 1, fmt, parse)


JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
# rows that look like corpus / query rows, with any value in any field
ROW = st.one_of(
    JSON_VALUE,
    st.fixed_dictionaries({"_id": JSON_VALUE}, optional={"text": JSON_VALUE, "title": JSON_VALUE}),
    st.fixed_dictionaries({"id": JSON_VALUE, "contents": JSON_VALUE}, optional={"metadata": JSON_VALUE}),
)


@PROPERTY
@given(rows=st.lists(ROW, min_size=1, max_size=5))
def test_any_json_rows_parse_or_name_file_and_line(folder: Path, rows: list[Any]) -> None:
    path = folder / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    for fmt, parse in PARSERS:
        assert_parses_or_names_a_line(path, len(rows), fmt, parse)


FIELD = st.one_of(TSV_ID, TEXT, st.sampled_from(["inf", "nan", "0.5", "-1", "1e3", "1", "2.0", "", " "]))


@PROPERTY
@given(lines=st.lists(st.lists(FIELD, min_size=1, max_size=4).map("\t".join), min_size=1, max_size=5))
def test_any_qrels_lines_parse_or_name_file_and_line(folder: Path, lines: list[str]) -> None:
    path = folder / "fields.tsv"
    path.write_text("\n".join(line.replace("\n", " ").replace("\r", " ") for line in lines), encoding="utf-8")
    assert_parses_or_names_a_line(path, len(lines), "lines", parse_qrels)
