"""A durable, append-only cache of raw LLM responses, so an interrupted or repeated run resumes.

Every response is appended to a JSON-lines file the moment it arrives (before it is parsed or
validated). A rerun looks each request up by :func:`cache_key` and only calls the endpoint for what is
missing.

Durability, precisely:

* ``put`` hands the whole line to the kernel in one ``write`` call before it returns, so a record
  survives the *process* dying at any moment after that (``kill -9``, OOM killer, a crash).
* Power loss or a kernel crash can lose what the kernel had not yet written to disk. ``put`` calls
  ``fsync`` when ``fsync_interval_s`` (0.5 s) has passed since the last one, or after ``fsync_every``
  records (256), and ``close`` always does; so at most about half a second of responses (or the
  responses since the last ``put``, if the writer then sat idle) is lost. Losing them only costs
  re-asking the LLM; an fsync per record would cap throughput at the disk's sync rate instead.
* A crash in the middle of a write can leave a torn last line. Opening the journal drops it with a
  warning and truncates the file to the last complete record; a bad line anywhere else is an error
  (the file was edited or two writers interleaved), reported with its file and line number.

Scale: records are not held in memory. A key index next to the journal (``<journal>.idx``,
:mod:`.journal_index`: 128-bit key digest, byte offset, length and line number per key, about 36 bytes a
key) is rewritten atomically on :meth:`ResponseJournal.close` and every ``checkpoint_every`` records, so
opening a journal reads the index and only the lines written after it; :meth:`ResponseJournal.get` reads
the record from the file (``pread``). Lines the index covers are checked when they are read, not at open.
A missing or stale index (the file was truncated, replaced or edited before the index's end) is rebuilt
by one streaming scan. The journal file alone stays the source of truth: deleting the index loses nothing.

Compaction rewrites the journal with only the latest record of each key (superseded lines and blanks
dropped) into a temporary file, fsyncs it and renames it into place. It needs the journal to itself: every
open ``ResponseJournal`` holds a shared ``flock`` on ``<journal>.lock``, and compaction runs only under an
exclusive one (at open when at least ``compact_min_dead`` lines and ``compact_dead_share`` of all records
are superseded, or on :meth:`ResponseJournal.compact`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import time
import weakref
from array import array
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np

from .journal_index import (
    IndexMeta,
    KeyTable,
    drop_index,
    iter_lines,
    key_digest,
    line_sha,
    load_index,
    parse_record,
    write_index,
)

logger = logging.getLogger(__name__)

RECORD_FIELDS: tuple[str, ...] = ("key", "model", "text", "reasoning", "finish_reason", "created_at")
"""Fields every journal record holds (more are allowed, e.g. ``id``, ``attempt``, ``usage``)."""


class JournalCorruptError(ValueError):
    """A journal line other than the last one cannot be read."""


class JournalBusyError(RuntimeError):
    """Compaction was asked for while another ``ResponseJournal`` has the file open."""


def canonical_json(value: Any) -> str:
    """Serialise ``value`` deterministically (sorted keys, no spaces, UTF-8 kept) for hashing.

    Args:
        value: Any JSON-serialisable value.

    Returns:
        The canonical JSON text.
    """
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def cache_key(model: str, messages: list[dict[str, Any]], sampling: dict[str, Any], attempt: int = 0) -> str:
    """The cache key of one generation: everything that changes the model's output.

    Args:
        model: Model name.
        messages: Chat messages exactly as sent.
        sampling: Output-changing parameters (:meth:`LLMConfig.sampling`).
        attempt: 0 for the first generation; ``n`` for the n-th regeneration after invalid outputs,
            so each retry gets (and caches) a fresh sample instead of the same bad one.

    Returns:
        A sha256 hex digest of the canonical JSON of all four.
    """
    payload = {"model": model, "messages": messages, "sampling": sampling, "attempt": attempt}
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def utc_now_iso() -> str:
    """The current UTC time as an ISO-8601 string (second precision), for ``created_at``."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class _Handles:
    """One journal's file descriptors, closed by :meth:`ResponseJournal.close` or at garbage collection."""

    write: int | None
    read: int | None
    lock: int | None


def _close_handles(handles: _Handles) -> None:
    """``fsync`` and close the write descriptor; close the read and lock descriptors."""
    try:
        if handles.write is not None:
            fd, handles.write = handles.write, None
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    finally:
        for name in ("read", "lock"):
            fd = getattr(handles, name)
            if fd is not None:
                setattr(handles, name, None)
                os.close(fd)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _Columns:
    """Growing ``(hi, lo, off, length, line)`` columns of scanned records (compact: 40 bytes a record)."""

    def __init__(self) -> None:
        self.columns = tuple(array("Q") for _ in range(5))

    def append(self, key: str, off: int, length: int, line: int) -> None:
        hi, lo = key_digest(key)
        for column, value in zip(self.columns, (hi, lo, off, length, line)):
            column.append(value)

    def __len__(self) -> int:
        return len(self.columns[0])

    def into(self, table: KeyTable) -> KeyTable:
        arrays = [
            np.frombuffer(column, dtype=np.uint64) if len(column) else np.zeros(0, np.uint64)
            for column in self.columns
        ]
        return table.merged(*arrays)


class ResponseJournal:
    """An append-only JSON-lines store ``key -> record`` that survives crashes.

    Later lines win over earlier lines with the same key. Lookups read the record from the file through a
    key index (see the module docstring), so memory does not grow with the records' size. Thread-safe. Use
    as a context manager or call :meth:`close`.

    Args:
        path: The ``.jsonl`` file; created with its parent folders if missing.
        fsync_interval_s: Seconds between ``fsync`` calls while records are being written.
        fsync_every: Also ``fsync`` after this many records since the last one.
        checkpoint_every: Rewrite the key index after this many new records (and at :meth:`close`), so a
            writer killed without ``close`` leaves at most this many lines for the next open to scan.
        compact_dead_share: Compact at open when at least this share of the records is superseded ...
        compact_min_dead: ... and at least this many are (``None``: never compact at open).

    Raises:
        JournalCorruptError: When a line before the last one is not a JSON object with a ``key``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync_interval_s: float = 0.5,
        fsync_every: int = 256,
        checkpoint_every: int = 100_000,
        compact_dead_share: float = 0.5,
        compact_min_dead: int | None = 10_000,
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}.")
        self.path = Path(path)
        self._fsync_interval_s = fsync_interval_s
        self._fsync_every = fsync_every
        self._checkpoint_every = checkpoint_every
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        self._handles = _Handles(None, None, lock_fd)
        # A journal dropped without close() (e.g. a Kedro dataset's value) still gets fsynced and closed
        # when it is garbage-collected or the interpreter exits.
        self._finalizer = weakref.finalize(self, _close_handles, self._handles)
        alone = self._try_flock(fcntl.LOCK_EX)
        if not alone:
            fcntl.flock(lock_fd, fcntl.LOCK_SH)
        self._handles.write = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._handles.read = os.open(self.path, os.O_RDONLY)
        self._reset(KeyTable.empty(), None)
        self._open_scan()
        dead = self._records - self._count
        if (
            alone
            and compact_min_dead is not None
            and dead >= max(compact_min_dead, 1)
            and dead >= compact_dead_share * self._records
        ):
            self._compact_locked()
        if alone:
            fcntl.flock(lock_fd, fcntl.LOCK_SH)  # downgrade: others may open it now
        self._unsynced = 0
        self._last_sync = time.monotonic()

    # ------------------------------------------------------------------ state

    def _reset(self, table: KeyTable, meta: IndexMeta | None) -> None:
        """Start from ``table`` describing the journal's first ``meta.covered`` bytes (or nothing)."""
        self._table = table
        self._recent: dict[str, tuple[int, int, int]] = {}  # own puts not yet in the table
        self._indexed_end = meta.covered if meta else 0  # what the index file on disk covers
        self._scanned_end = self._indexed_end  # every line before this byte is in table or _recent
        self._lines = meta.lines if meta else 0
        self._records = meta.records if meta else 0
        self._last_line = (meta.last_off, meta.covered - meta.last_off - 1) if meta and meta.covered else None
        self._count = len(table)

    def _try_flock(self, mode: int) -> bool:
        assert self._handles.lock is not None
        try:
            fcntl.flock(self._handles.lock, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _fd(self, name: str) -> int:
        fd = getattr(self._handles, name)
        assert fd is not None
        return fd

    def _locate(self, key: str) -> tuple[int, int, int] | None:
        """``(offset, length, line)`` of the latest record of ``key``, or ``None``."""
        recent = self._recent.get(key)
        row = self._table.find(*key_digest(key))
        if row < 0:
            return recent
        found = self._table.location(row)
        return recent if recent is not None and recent[0] > found[0] else found

    # ------------------------------------------------------------------ scanning

    def _open_scan(self) -> None:
        """Load the index (if it matches), scan the lines after it, drop a torn last line."""
        size = os.fstat(self._fd("read")).st_size
        loaded = load_index(self.path, self._fd("read"), size)
        if loaded is not None:
            self._reset(*loaded)
        started = time.perf_counter()
        scanned = self._scan(size, at_open=True)
        if scanned:
            self._checkpoint_locked(catch_up=False)
        logger.info(
            "journal %s: %d cached responses (%d lines read%s in %.2fs)",
            self.path,
            self._count,
            scanned,
            ", no index" if loaded is None else " after the index",
            time.perf_counter() - started,
        )

    def _scan(self, end: int, *, at_open: bool) -> int:
        """Read the lines in ``[scanned_end, end)`` into the table; return how many lines were read.

        At open, a torn or unreadable last line is dropped and the file truncated before it; otherwise an
        unterminated last line (another writer mid-write) is left for later.
        """
        found = _Columns()
        read = 0
        line = self._lines
        for offset, raw, terminated in iter_lines(self._fd("read"), self._scanned_end, end):
            line += 1
            problem: str | None = None
            record: dict[str, Any] | str | None = None
            if not terminated:
                if not at_open:
                    break
                problem = "a partial line of blanks" if not raw.strip() else "the line has no final newline"
            elif raw.strip():
                record = parse_record(raw)
                if isinstance(record, str):
                    problem = record
            if problem is not None:
                self._table = found.into(self._table)
                self._bad_line(line, offset, len(raw) + int(terminated), end, problem, at_open)
                return read
            if isinstance(record, dict):
                found.append(record["key"], offset, len(raw), line)
                self._records += 1
            self._lines = line
            self._scanned_end = offset + len(raw) + 1
            self._last_line = (offset, len(raw))
            read += 1
        self._table = found.into(self._table)
        self._count = len(self._table) + sum(
            1 for key in self._recent if self._table.find(*key_digest(key)) < 0
        )
        return read

    def _bad_line(self, line: int, offset: int, size: int, end: int, problem: str, at_open: bool) -> None:
        """A torn last line is dropped (file truncated at ``offset``); anything else is an error."""
        later = os.pread(self._fd("read"), max(0, end - offset - size), offset + size)
        if later.strip() or not at_open:
            raise JournalCorruptError(
                f"{self.path}:{line}: {problem}. Only the last line may be damaged (a crash "
                f"mid-write); this one is followed by more records, so the file was edited or "
                f"damaged. Remove or fix that line, or delete the journal to "
                f"re-ask the LLM."
            )
        self._count = len(self._table)
        logger.warning(
            "%s:%d: ignoring a torn last line (%s), probably from a crash mid-write; "
            "truncating the journal to its %d complete records",
            self.path,
            line,
            problem,
            self._count,
        )
        os.ftruncate(self._fd("write"), offset)
        os.fsync(self._fd("write"))

    def _checkpoint_locked(self, *, catch_up: bool = True) -> None:
        """Read what other writers appended, fold own records into the table, rewrite the index."""
        if catch_up:
            self._scan(os.fstat(self._fd("read")).st_size, at_open=False)
        done = [(k, v) for k, v in self._recent.items() if v[0] < self._scanned_end]
        if done:
            folded = _Columns()
            for key, (off, length, line) in done:
                folded.append(key, off, length, line)
                del self._recent[key]
            self._table = folded.into(self._table)
        if self._scanned_end == self._indexed_end or self._last_line is None:
            return
        last_off, last_len = self._last_line
        meta = IndexMeta(
            covered=self._scanned_end,
            lines=self._lines,
            records=self._records,
            last_off=last_off,
            last_sha=line_sha(os.pread(self._fd("read"), last_len, last_off)),
        )
        write_index(self.path, self._table, meta)
        self._indexed_end = self._scanned_end

    # ------------------------------------------------------------------ compaction

    def compact(self) -> None:
        """Rewrite the journal with only the latest record of each key (atomic: temp file, fsync, rename).

        Raises:
            JournalBusyError: When another ``ResponseJournal`` (in any process) has the file open.
            ValueError: When this journal is closed.
        """
        with self._lock:
            if self._handles.write is None:
                raise ValueError(f"journal {self.path} is closed; open a new ResponseJournal to compact it.")
            if not self._try_flock(fcntl.LOCK_EX):
                raise JournalBusyError(
                    f"another ResponseJournal has {self.path} open (in this or another process); close it "
                    f"(or let that run finish), then compact."
                )
            try:
                self._compact_locked()
            finally:
                fcntl.flock(self._fd("lock"), fcntl.LOCK_SH)

    def _compact_locked(self) -> None:
        """Compaction proper; the caller holds the exclusive file lock."""
        started = time.perf_counter()
        self._checkpoint_locked()
        table, lines_before = self._table, self._lines
        order = np.argsort(table.off, kind="stable")
        tmp = self.path.with_name(f".{self.path.name}.compact-{os.getpid()}")
        new_off = np.zeros(len(table), dtype=np.uint64)
        position = 0
        read_fd = self._fd("read")
        with tmp.open("wb", buffering=1 << 20) as out:
            for rank, row in enumerate(order.tolist()):
                length = int(table.length[row])
                raw = os.pread(read_fd, length, int(table.off[row]))
                if len(raw) != length:
                    raise JournalCorruptError(
                        f"{self.path}: short read while compacting; nothing was changed."
                    )
                out.write(raw + b"\n")
                new_off[rank] = position
                position += length + 1
            out.flush()
            os.fsync(out.fileno())
        rows = np.empty(len(table), dtype=np.uint64)
        rows[order] = np.arange(len(table), dtype=np.uint64)  # row -> rank in file order
        compacted = KeyTable(table.hi, table.lo, new_off[rows], table.length, rows + np.uint64(1))
        drop_index(self.path)
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        old = (self._handles.write, self._handles.read)
        self._handles.write = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._handles.read = os.open(self.path, os.O_RDONLY)
        for fd in old:
            if fd is not None:
                os.close(fd)
        n = len(compacted)
        if n:
            last_off, last_len = int(new_off[-1]), int(table.length[int(order[-1])])
            last_sha = line_sha(os.pread(self._fd("read"), last_len, last_off))
            meta = IndexMeta(position, n, n, last_off, last_sha)
            write_index(self.path, compacted, meta)
            self._reset(compacted, meta)
        else:
            self._reset(KeyTable.empty(), None)
        logger.info(
            "journal %s compacted: %d lines -> %d records in %.2fs",
            self.path,
            lines_before,
            n,
            time.perf_counter() - started,
        )

    # ------------------------------------------------------------------ mapping API

    def __len__(self) -> int:
        """Number of distinct keys held."""
        with self._lock:
            return self._count

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` has a record."""
        if not isinstance(key, str):
            return False
        with self._lock:
            return self._locate(key) is not None

    def get(self, key: str) -> dict[str, Any] | None:
        """The record stored under ``key`` (a fresh copy read from the file), or ``None``.

        Raises:
            JournalCorruptError: When the indexed line is not that key's record (the file was edited).
        """
        with self._lock:
            location = self._locate(key)
            if location is None:
                return None
            off, length, line = location
            raw = os.pread(self._fd("read"), length, off)
        record = parse_record(raw) if len(raw) == length else "the file is shorter than the index says"
        if isinstance(record, str) or record["key"] != key:
            where = f"{self.path}:{line}" if line else f"{self.path} (byte {off})"
            problem = (
                record if isinstance(record, str) else f"holds key {record['key'][:12]}…, not {key[:12]}…"
            )
            raise JournalCorruptError(
                f"{where}: {problem}. The journal was edited after it was indexed; delete "
                f"{self.path.name}.idx to re-index it, or delete the journal to re-ask the LLM."
            )
        return record

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Append ``record`` under ``key`` and hand it to the kernel before returning.

        Args:
            key: The cache key (stored as ``record["key"]``).
            record: JSON-serialisable fields; should hold at least ``model``, ``text``, ``reasoning``,
                ``finish_reason``; ``created_at`` is filled in when absent.

        Raises:
            ValueError: If the journal is closed or the record is not JSON-serialisable.
        """
        stored = {**record, "key": key}
        stored.setdefault("created_at", utc_now_iso())
        try:
            line = (json.dumps(stored, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"journal record for key {key[:12]}… is not JSON-serialisable: {exc}") from exc
        with self._lock:
            fd = self._handles.write
            if fd is None:
                raise ValueError(f"journal {self.path} is closed; open a new ResponseJournal to write to it.")
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            end = os.lseek(fd, 0, os.SEEK_CUR)  # O_APPEND: just past this line, whoever else appends
            start = end - len(line)
            contiguous = start == self._scanned_end
            if self._locate(key) is None:
                self._count += 1
            self._recent[key] = (start, len(line) - 1, self._lines + 1 if contiguous else 0)
            if contiguous:
                self._scanned_end, self._lines, self._last_line = end, self._lines + 1, (start, len(line) - 1)
                self._records += 1
            self._unsynced += 1
            now = time.monotonic()
            if self._unsynced >= self._fsync_every or now - self._last_sync >= self._fsync_interval_s:
                os.fsync(fd)
                self._unsynced = 0
                self._last_sync = now
            if len(self._recent) >= self._checkpoint_every:
                self._checkpoint_locked()

    def sync(self) -> None:
        """Force the records written so far to disk (``fsync``)."""
        with self._lock:
            if self._handles.write is not None and self._unsynced:
                os.fsync(self._handles.write)
                self._unsynced = 0
                self._last_sync = time.monotonic()

    def close(self) -> None:
        """Write the index, ``fsync`` and close the file; idempotent. Lookups keep working after close."""
        with self._lock:
            if self._handles.write is None:
                return
            try:
                self._checkpoint_locked()
            except JournalCorruptError as exc:  # another writer's line; the next open reports it
                logger.warning("journal %s: index not updated at close (%s)", self.path, exc)
            fd, self._handles.write = self._handles.write, None
            self._unsynced = 0
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
                lock, self._handles.lock = self._handles.lock, None
                if lock is not None:
                    os.close(lock)  # releases the shared lock

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResponseJournal({str(self.path)!r}, records={len(self)})"
