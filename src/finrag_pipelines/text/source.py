"""Reading raw input files line by line into :class:`SourceRow` s that keep file and line for errors.

:func:`read_source_rows` is what the catalog's ``SourceLinesDataset`` loads; every problem with the bytes,
the encoding or the JSON of a line is a :class:`~finrag_pipelines.text.corpus.CorpusFormatError` that
names ``file:line``. Kedro-free.
"""

from __future__ import annotations

import codecs
import json
import re
from pathlib import Path
from typing import Any, Literal

from finrag_pipelines.text.corpus import CorpusFormatError, SourceRow

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # \ud800..\udfff: lone, or half of a pair
_OTHER_BOMS = {codecs.BOM_UTF16_LE: "UTF-16 LE", codecs.BOM_UTF16_BE: "UTF-16 BE"}


def _parse_json_line(line: str, where: str) -> Any:
    """``json.loads`` of one line; every failure is a :class:`CorpusFormatError` naming ``where``."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CorpusFormatError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise CorpusFormatError(f"{where}: JSON nested too deeply to parse; flatten the row") from None
    except ValueError as exc:  # integers of over 4300 digits
        raise CorpusFormatError(f"{where}: invalid JSON ({exc})") from None
    if _SURROGATE_ESCAPE.search(line):
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except RecursionError:
            raise CorpusFormatError(f"{where}: JSON nested too deeply to parse; flatten the row") from None
        except UnicodeEncodeError as exc:
            raise CorpusFormatError(
                f"{where}: a \\u escape of a lone surrogate (\\u{ord(exc.object[exc.start]):04x}) is not "
                "text; escape characters outside the BMP as a surrogate pair, or write them as UTF-8."
            ) from None
    return data


def check_encoding(encoding: str) -> str:
    """The codec's canonical name, if lines of it can be split at the byte ``\\n``.

    Raises:
        LookupError: For an unknown codec.
        ValueError: For a codec that is not ASCII-compatible (UTF-16, UTF-32).
    """
    name = codecs.lookup(encoding).name
    if "\n".encode(name) != b"\n":
        raise ValueError(
            f"encoding {encoding!r} is not ASCII-compatible; lines are split at the byte \\n. "
            "Re-encode the file as UTF-8."
        )
    return name


def read_source_rows(path: Path, fmt: Literal["jsonl", "lines"], encoding: str = "utf-8") -> list[SourceRow]:
    """Read a JSON-lines (``jsonl``) or plain text (``lines``) file as one :class:`SourceRow` per line.

    Lines end at ``\\n`` (a trailing ``\\r`` is dropped) and are numbered from 1; blank lines are skipped.
    Every problem stops the read with a :class:`CorpusFormatError` naming ``file:line``:

    * bytes that are not valid in ``encoding``: the byte, its offset in the line and in the file, and
      how to re-encode;
    * a UTF-8 byte order mark is accepted at the start of the file only (it is dropped, as
      ``utf-8-sig`` does); one at the start of a later line means files were concatenated; a UTF-16 one
      is named as such;
    * malformed JSON, JSON nested too deeply to parse, integers of over 4300 digits, and ``\\ud800``-style
      escapes of a lone surrogate (not text: nothing downstream could encode it).

    Args:
        path: The file.
        fmt: ``jsonl`` (each line parsed as JSON) or ``lines`` (each line kept as a string).
        encoding: An ASCII-compatible codec (see :func:`check_encoding`).
    """
    codec = check_encoding(encoding)
    rows: list[SourceRow] = []
    offset = 0  # byte offset of the current line in the file
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            line = _decode(raw, codec, path, lineno, offset)
            offset += len(raw)
            if not line.strip():
                continue
            if fmt == "lines":
                rows.append(SourceRow(str(path), lineno, line))
            else:
                rows.append(SourceRow(str(path), lineno, _parse_json_line(line, f"{path}:{lineno}")))
    return rows


def _decode(raw: bytes, codec: str, path: Path, lineno: int, offset: int) -> str:
    """One line as text without its line break, or an error naming the bad byte."""
    start = 0
    if lineno == 1:
        if codec == "utf-8" and raw.startswith(codecs.BOM_UTF8):
            start = len(codecs.BOM_UTF8)
        for bom, name in _OTHER_BOMS.items():
            if raw.startswith(bom):
                raise CorpusFormatError(
                    f"{path}:1: the file starts with a {name} byte order mark; it is read as {codec}. "
                    "Re-encode it as UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8`)."
                )
    try:
        line = raw[start:].decode(codec)
    except UnicodeDecodeError as exc:
        at = start + exc.start
        raise CorpusFormatError(
            f"{path}:{lineno}: not valid {codec}: byte 0x{raw[at]:02x} at byte {at} of the line "
            f"(offset {offset + at} in the file), {exc.reason}. Re-encode the file as UTF-8 (e.g. "
            "`iconv -f GB18030 -t UTF-8`) or set the dataset's `encoding`."
        ) from None
    if lineno > 1 and line.startswith("\ufeff"):
        raise CorpusFormatError(
            f"{path}:{lineno}: the line starts with a byte order mark (U+FEFF); only the start of the "
            "file may hold one. Was another file appended here? Remove the mark."
        )
    return line.removesuffix("\n").removesuffix("\r")
