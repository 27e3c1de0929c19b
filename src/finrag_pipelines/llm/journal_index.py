"""The on-disk key index of a :class:`~finrag_pipelines.llm.journal.ResponseJournal`, and line scanning.

The journal file stays the single source of truth; the index (``<journal>.idx``) only says where the
latest record of each key starts, for the lines in the journal's first ``covered`` bytes. Opening a
journal loads the index (about 36 bytes per key, not the records) and reads only the lines written after
it, instead of parsing every record into memory.

Keys are held as 128-bit BLAKE2b digests in two ``uint64`` columns sorted together, so a lookup is a binary
search; the record read from disk is checked to carry the very key asked for.

The index is written to a temporary file, fsync'ed and renamed into place, so a crash leaves either the
old index or the new one; one that does not match the journal (the journal was truncated, replaced or
edited before the index's end) is detected by the length and the checksum of the last line it covers,
and is rebuilt by a full scan.

Index file (an ``.npz``): ``hi``, ``lo`` (the digest halves, sorted), ``off`` (byte offset of the line),
``length`` (bytes, without the newline), ``line`` (1-based line number), ``meta`` (JSON as bytes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

INDEX_VERSION = 1
_READ_CHUNK = 1 << 20


def key_digest(key: str) -> tuple[int, int]:
    """The two 64-bit halves of the 128-bit BLAKE2b digest of ``key``."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest()
    return int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:], "little")


@dataclass
class KeyTable:
    """Where the latest record of each key is: columns sorted by ``(hi, lo)``, one row per key."""

    hi: np.ndarray
    lo: np.ndarray
    off: np.ndarray
    length: np.ndarray
    line: np.ndarray

    @classmethod
    def empty(cls) -> KeyTable:
        return cls(*(np.zeros(0, dtype=dtype) for dtype in ("<u8", "<u8", "<u8", "<u4", "<u8")))

    def __len__(self) -> int:
        return int(self.hi.size)

    def find(self, hi: int, lo: int) -> int:
        """Row of the key with digest ``(hi, lo)``, or -1."""
        his, los = self._views()
        start = bisect_left(his, hi)
        while start < len(his) and his[start] == hi:
            if los[start] == lo:
                return start
            start += 1
        return -1

    def _views(self) -> tuple[memoryview, memoryview]:
        """The digest columns as sequences of Python ints (C bisection, without numpy's call overhead)."""
        views = self.__dict__.get("_digest_views")
        if views is None:
            views = tuple(
                memoryview(np.ascontiguousarray(column, dtype=np.uint64).view(np.uint8)).cast("Q")
                for column in (self.hi, self.lo)
            )
            self.__dict__["_digest_views"] = views
        return views

    def location(self, row: int) -> tuple[int, int, int]:
        """``(offset, length, line)`` of ``row``."""
        return int(self.off[row]), int(self.length[row]), int(self.line[row])

    def merged(
        self, hi: np.ndarray, lo: np.ndarray, off: np.ndarray, length: np.ndarray, line: np.ndarray
    ) -> KeyTable:
        """A new table holding this one's rows and the given ones; per key the row with the largest offset
        (the latest line) wins."""
        if not len(hi):
            return self
        hi = np.concatenate([self.hi, np.asarray(hi, dtype="<u8")])
        lo = np.concatenate([self.lo, np.asarray(lo, dtype="<u8")])
        off = np.concatenate([self.off, np.asarray(off, dtype="<u8")])
        length = np.concatenate([self.length, np.asarray(length).astype("<u4")])
        line = np.concatenate([self.line, np.asarray(line, dtype="<u8")])
        order = np.lexsort((off, lo, hi))  # by key, then offset: the last row of each key is the latest
        hi, lo = hi[order], lo[order]
        last = np.ones(hi.size, dtype=bool)
        last[:-1] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
        keep = order[last]
        return KeyTable(hi[last], lo[last], off[keep], length[keep], line[keep])


@dataclass(frozen=True)
class IndexMeta:
    """What an index covers: the journal's first ``covered`` bytes (``lines`` lines, ``records`` of them
    records, superseded ones included), and the checksum of the last line in that range."""

    covered: int
    lines: int
    records: int
    last_off: int
    last_sha: str

    def to_json(self) -> bytes:
        return json.dumps({"version": INDEX_VERSION, **self.__dict__}).encode("utf-8")


def index_path(journal: Path) -> Path:
    """``<journal>.idx`` next to the journal."""
    return journal.with_name(journal.name + ".idx")


def load_index(journal: Path, fd: int, size: int) -> tuple[KeyTable, IndexMeta] | None:
    """The journal's index if it exists and matches the journal file (read through ``fd``), else ``None``.

    A missing, unreadable or mismatched index is logged (except when missing) and ignored.
    """
    path = index_path(journal)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta_raw = json.loads(bytes(data["meta"]).decode("utf-8"))
            if meta_raw.pop("version", None) != INDEX_VERSION:
                raise ValueError(f"index version is not {INDEX_VERSION}")
            meta = IndexMeta(**meta_raw)
            table = KeyTable(
                *(np.ascontiguousarray(data[name]) for name in ("hi", "lo", "off", "length", "line"))
            )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("%s: unreadable (%s); rebuilding it from %s", path, exc, journal)
        return None
    problem = _mismatch(meta, table, fd, size)
    if problem:
        logger.warning("%s does not match %s (%s); rebuilding it with a full scan", path, journal, problem)
        return None
    return table, meta


def _mismatch(meta: IndexMeta, table: KeyTable, fd: int, size: int) -> str | None:
    """Why the index cannot describe the journal, or ``None``."""
    if not (len(table) <= meta.records and table.hi.size == table.off.size == table.line.size):
        return "inconsistent columns"
    if meta.covered > size:
        return f"it covers {meta.covered} bytes, the journal has {size}"
    if meta.covered == 0:
        return None
    tail = os.pread(fd, meta.covered - meta.last_off, meta.last_off)
    if not tail.endswith(b"\n") or hashlib.sha256(tail[:-1]).hexdigest() != meta.last_sha:
        return f"the line ending at byte {meta.covered} is not the one indexed"
    return None


def write_index(journal: Path, table: KeyTable, meta: IndexMeta) -> None:
    """Write the index atomically (temp file, fsync, rename); a failure is logged, never raised."""
    path = index_path(journal)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as handle:
            np.savez(
                handle,
                hi=table.hi,
                lo=table.lo,
                off=table.off,
                length=table.length,
                line=table.line,
                meta=np.frombuffer(meta.to_json(), dtype=np.uint8),
            )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        logger.warning("could not write the journal index %s (%s); the next open scans more lines", path, exc)
        try:
            tmp.unlink()
        except OSError:
            pass


def drop_index(journal: Path) -> None:
    """Remove the journal's index, if any."""
    try:
        index_path(journal).unlink()
    except FileNotFoundError:
        pass


def iter_lines(fd: int, start: int, end: int) -> Iterator[tuple[int, bytes, bool]]:
    """``(offset, line without newline, terminated)`` for each line in bytes ``[start, end)`` of ``fd``.

    Only the last line can be unterminated (no newline before ``end``).
    """
    offset = start
    pending = b""
    position = start
    while position < end:
        chunk = os.pread(fd, min(_READ_CHUNK, end - position), position)
        if not chunk:
            break
        position += len(chunk)
        data = pending + chunk
        begin = 0
        while True:
            newline = data.find(b"\n", begin)
            if newline < 0:
                break
            yield offset, data[begin:newline], True
            offset += newline - begin + 1
            begin = newline + 1
        pending = data[begin:]
    if pending:
        yield offset, pending, False


def parse_record(raw: bytes) -> dict[str, Any] | str:
    """One terminated, non-blank line: the record, or a short reason it is bad."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return f"not valid JSON ({exc})"
    if not isinstance(record, dict) or not isinstance(record.get("key"), str):
        return "not a JSON object with a string 'key'"
    return record


def line_sha(raw: bytes) -> str:
    """Checksum of a line's bytes (newline excluded), as :class:`IndexMeta` records it."""
    return hashlib.sha256(raw).hexdigest()
