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
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import weakref
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

logger = logging.getLogger(__name__)

RECORD_FIELDS: tuple[str, ...] = ("key", "model", "text", "reasoning", "finish_reason", "created_at")
"""Fields every journal record holds (more are allowed, e.g. ``id``, ``attempt``, ``usage``)."""


class JournalCorruptError(ValueError):
    """A journal line other than the last one cannot be read."""


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


def _sync_and_close(fd: int) -> None:
    """``fsync`` and close a journal's file descriptor."""
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ResponseJournal:
    """An append-only JSON-lines store ``key -> record`` that survives crashes.

    All records are held in memory (about the size of the file) for O(1) lookups; later lines win over
    earlier lines with the same key. Thread-safe. Use as a context manager or call :meth:`close`.

    Args:
        path: The ``.jsonl`` file; created with its parent folders if missing.
        fsync_interval_s: Seconds between ``fsync`` calls while records are being written.
        fsync_every: Also ``fsync`` after this many records since the last one.

    Raises:
        JournalCorruptError: When a line before the last one is not a JSON object with a ``key``.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, fsync_interval_s: float = 0.5, fsync_every: int = 256
    ) -> None:
        self.path = Path(path)
        self._fsync_interval_s = fsync_interval_s
        self._fsync_every = fsync_every
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, Any]] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        good_bytes = self._load()
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if good_bytes is not None:
            os.ftruncate(self._fd, good_bytes)
            os.fsync(self._fd)
        self._unsynced = 0
        self._last_sync = time.monotonic()
        # A journal dropped without close() (e.g. a Kedro dataset's value) still gets fsynced and closed
        # when it is garbage-collected or the interpreter exits.
        self._finalizer = weakref.finalize(self, _sync_and_close, self._fd)

    def _load(self) -> int | None:
        """Read existing records.

        Returns:
            The byte length to truncate the file to when its last line is torn, else ``None``.
        """
        if not self.path.exists():
            return None
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        # ``data`` ending in "\n" yields a final empty chunk; any other final chunk is an unterminated line.
        offset = 0
        for number, raw in enumerate(lines, start=1):
            is_last = number == len(lines)
            if is_last and raw == b"":
                break
            record = self._parse_line(raw, terminated=not is_last)
            if record is None:  # blank line
                offset += len(raw) + 1
                continue
            if isinstance(record, str):
                later = b"".join(lines[number:]).strip()
                if later:
                    raise JournalCorruptError(
                        f"{self.path}:{number}: {record}. Only the last line may be damaged (a crash "
                        f"mid-write); this one is followed by more records, so the file was edited or "
                        f"damaged. Remove or fix that line, or delete the journal to "
                        f"re-ask the LLM."
                    )
                logger.warning(
                    "%s:%d: ignoring a torn last line (%s), probably from a crash mid-write; "
                    "truncating the journal to its %d complete records",
                    self.path,
                    number,
                    record,
                    len(self._records),
                )
                return offset
            self._records[record["key"]] = record
            offset += len(raw) + 1
        logger.info("journal %s: %d cached responses", self.path, len(self._records))
        return None

    @staticmethod
    def _parse_line(raw: bytes, *, terminated: bool) -> dict[str, Any] | str | None:
        """Parse one line: the record, ``None`` for a blank line, or a short reason it is bad."""
        if not raw.strip():
            return None if terminated else "a partial line of blanks"
        if not terminated:
            return "the line has no final newline"
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return f"not valid JSON ({exc})"
        if not isinstance(record, dict) or not isinstance(record.get("key"), str):
            return "not a JSON object with a string 'key'"
        return record

    def __len__(self) -> int:
        """Number of distinct keys held."""
        with self._lock:
            return len(self._records)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` has a record."""
        with self._lock:
            return key in self._records

    def get(self, key: str) -> dict[str, Any] | None:
        """The record stored under ``key`` (a copy), or ``None``."""
        with self._lock:
            record = self._records.get(key)
        return dict(record) if record is not None else None

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
            if self._fd is None:
                raise ValueError(f"journal {self.path} is closed; open a new ResponseJournal to write to it.")
            view = memoryview(line)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            self._records[key] = stored
            self._unsynced += 1
            now = time.monotonic()
            if self._unsynced >= self._fsync_every or now - self._last_sync >= self._fsync_interval_s:
                os.fsync(self._fd)
                self._unsynced = 0
                self._last_sync = now

    def sync(self) -> None:
        """Force the records written so far to disk (``fsync``)."""
        with self._lock:
            if self._fd is not None and self._unsynced:
                os.fsync(self._fd)
                self._unsynced = 0
                self._last_sync = time.monotonic()

    def close(self) -> None:
        """``fsync`` and close the file; idempotent. Lookups keep working after close."""
        with self._lock:
            if self._fd is None:
                return
            self._fd = None
            self._unsynced = 0
            self._finalizer()

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
