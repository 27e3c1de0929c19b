"""read_source_rows (what SourceLinesDataset loads): encodings, byte order marks and JSON failures end in
file:line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest

from finrag_pipelines.text.corpus import CorpusFormatError, parse_documents, parse_qrels
from finrag_pipelines.text.source import check_encoding, read_source_rows

BOM = b"\xef\xbb\xbf"


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_rows_keep_file_and_line_and_skip_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "c.jsonl", b'{"_id": "a", "text": "x"}\r\n\n   \n{"_id": "b", "text": "y"}')
    rows = read_source_rows(path, "jsonl")
    assert [(r.line, r.data["_id"]) for r in rows] == [(1, "a"), (4, "b")]
    assert rows[0].where == f"{path}:1"


def test_a_bom_at_the_start_of_the_file_is_dropped(tmp_path: Path) -> None:
    corpus = write(tmp_path, "c.jsonl", BOM + json.dumps({"_id": "a", "text": "公司"}).encode() + b"\n")
    assert [d.doc_id for d in parse_documents(read_source_rows(corpus, "jsonl"))] == ["a"]
    qrels = write(tmp_path, "qrels.tsv", BOM + b"query-id\tcorpus-id\tscore\nq1\ta\t1\n")
    # the header is still recognised (a BOM kept in it would make "score" a grade error)
    assert parse_qrels(read_source_rows(qrels, "lines")) == [("q1", "a", 1, f"{qrels}:2")]


@pytest.mark.parametrize("fmt", ["jsonl", "lines"])
def test_a_bom_later_in_the_file_is_an_error(tmp_path: Path, fmt: Literal["jsonl", "lines"]) -> None:
    path = write(tmp_path, "f", b'{"_id": "a", "text": "x"}\n\n' + BOM + b'{"_id": "b", "text": "y"}\n')
    with pytest.raises(CorpusFormatError, match=r"f:3: the line starts with a byte order mark.*appended"):
        read_source_rows(path, fmt)


def test_invalid_utf8_names_line_and_byte_offsets(tmp_path: Path) -> None:
    gbk_line = '{"_id": "b", "text": "公司"}'.encode("gbk")
    path = write(tmp_path, "c.jsonl", b'{"_id": "a", "text": "x"}\n' + gbk_line + b"\n")
    first_bad = gbk_line.index("公".encode("gbk"))
    with pytest.raises(CorpusFormatError) as err:
        read_source_rows(path, "jsonl")
    message = str(err.value)
    assert message.startswith(f"{path}:2: not valid utf-8: byte 0x{gbk_line[first_bad]:02x}")
    assert f"at byte {first_bad} of the line (offset {26 + first_bad} in the file)" in message
    assert "iconv" in message


def test_another_ascii_compatible_encoding_can_be_declared(tmp_path: Path) -> None:
    path = write(tmp_path, "c.jsonl", '{"_id": "b", "text": "公司"}\n'.encode("gb18030"))
    assert read_source_rows(path, "jsonl", encoding="GB18030")[0].data["text"] == "公司"
    with pytest.raises(ValueError, match="not ASCII-compatible"):
        check_encoding("utf-16")
    with pytest.raises(LookupError):
        check_encoding("no-such-codec")


def test_a_utf16_file_is_named_as_such(tmp_path: Path) -> None:
    path = write(tmp_path, "q.jsonl", '{"_id": "q", "text": "问"}\n'.encode("utf-16"))
    with pytest.raises(
        CorpusFormatError, match=r"q.jsonl:1: the file starts with a UTF-16 LE byte order mark"
    ):
        read_source_rows(path, "jsonl")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"_id": "a", "text": ', "invalid JSON"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"_id": 1' + b"0" * 5000 + b', "text": "x"}', "invalid JSON"),
        (b'{"_id": "a", "text": "x\\ud800y"}', r"lone surrogate \(\\ud800\)"),
        (b'{"_id": "a", "text": "\\ude00"}', r"lone surrogate \(\\ude00\)"),
    ],
)
def test_json_failures_name_file_and_line(tmp_path: Path, line: bytes, message: str) -> None:
    path = write(tmp_path, "c.jsonl", b'{"_id": "ok", "text": "x"}\n' + line + b"\n")
    with pytest.raises(CorpusFormatError, match=message) as err:
        read_source_rows(path, "jsonl")
    assert str(err.value).startswith(f"{path}:2: ")


def test_a_surrogate_pair_escape_is_text(tmp_path: Path) -> None:
    path = write(tmp_path, "c.jsonl", b'{"_id": "a", "text": "\\ud83d\\ude00 \\\\ud800"}\n')
    assert read_source_rows(path, "jsonl")[0].data["text"] == "\U0001f600 \\ud800"
