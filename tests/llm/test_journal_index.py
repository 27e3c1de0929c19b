"""ResponseJournal at scale: key index, resume without replaying records, compaction, kill -9 mid-index."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest

from finrag_pipelines.llm import journal as journal_module
from finrag_pipelines.llm.journal import JournalBusyError, JournalCorruptError, ResponseJournal
from finrag_pipelines.llm.journal_index import index_path

_SRC = Path(__file__).resolve().parents[2] / "src"


def _record(text: str) -> dict:
    return {"model": "m", "text": text, "reasoning": None, "finish_reason": "stop"}


def _lines_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the journal lines an open parses (through the module's ``parse_record``)."""
    calls: list[int] = []
    real = journal_module.parse_record

    def counting(raw: bytes):
        calls.append(1)
        return real(raw)

    monkeypatch.setattr(journal_module, "parse_record", counting)
    return calls


def test_reopen_reads_the_index_not_the_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "journal.jsonl"
    with ResponseJournal(path) as journal:
        for i in range(500):
            journal.put(f"k{i}", _record(f"回答{i}"))
    assert index_path(path).is_file()
    parsed = _lines_read(monkeypatch)
    reopened = ResponseJournal(path)
    assert parsed == []  # nothing replayed
    assert len(reopened) == 500 and "k499" in reopened and "k500" not in reopened
    record = reopened.get("k123")
    assert record is not None and record["text"] == "回答123" and record["key"] == "k123"
    assert len(parsed) == 1  # the one record asked for
    reopened.close()


def test_lines_after_the_index_are_scanned_and_later_lines_win(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with ResponseJournal(path) as journal:
        journal.put("a", _record("old"))
        journal.put("b", _record("b"))
    with path.open("ab") as handle:  # another writer that never updated the index
        for key, text in (("a", "new"), ("c", "c")):
            handle.write((json.dumps({"key": key, **_record(text)}, ensure_ascii=False) + "\n").encode())
    reopened = ResponseJournal(path)
    assert len(reopened) == 3
    assert reopened.get("a")["text"] == "new"
    reopened.put("a", _record("newest"))
    assert len(reopened) == 3 and reopened.get("a")["text"] == "newest"
    reopened.close()
    again = ResponseJournal(path)
    assert again.get("a")["text"] == "newest" and again.get("c")["text"] == "c" and len(again) == 3


def test_a_missing_or_stale_index_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "journal.jsonl"
    with ResponseJournal(path) as journal:
        for i in range(20):
            journal.put(f"k{i}", _record(str(i)))
    index_path(path).unlink()
    assert len(ResponseJournal(path)) == 20 and index_path(path).is_file()
    # the journal replaced by another one: the old index must not be trusted
    stale = index_path(path).read_bytes()
    path.write_text(json.dumps({"key": "other", **_record("x")}) + "\n", encoding="utf-8")
    index_path(path).write_bytes(stale)
    with caplog.at_level(logging.WARNING, logger="finrag_pipelines.llm.journal_index"):
        journal = ResponseJournal(path)
    assert "does not match" in caplog.text
    assert len(journal) == 1 and journal.get("other") is not None and journal.get("k3") is None
    index_path(path).write_bytes(b"not an index")
    with caplog.at_level(logging.WARNING, logger="finrag_pipelines.llm.journal_index"):
        assert len(ResponseJournal(path)) == 1
    assert "unreadable" in caplog.text


def test_an_edited_indexed_line_is_reported_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with ResponseJournal(path) as journal:
        for key in ("a", "b", "c"):
            journal.put(key, _record(key * 10))
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"key": "b"', b'"key": "x"')
    path.write_bytes(b"\n".join(lines))
    journal = ResponseJournal(path)
    assert journal.get("a")["text"] == "a" * 10
    with pytest.raises(JournalCorruptError, match=rf"{path}:2: holds key x"):
        journal.get("b")


def test_records_are_not_held_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    text = "长回答" * 700  # ~6 KB a record, ~12 MB in all
    with ResponseJournal(path) as journal:
        for i in range(2000):
            journal.put(f"key-{i}", _record(text + str(i)))
    index_path(path).unlink()  # the worst case: a full scan that rebuilds the index
    tracemalloc.start()
    try:
        reopened = ResponseJournal(path)
        _, peak = tracemalloc.get_traced_memory()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(reopened) == 2000 and reopened.get("key-1999")["text"].endswith("1999")
    assert held < 1_000_000, f"{held} bytes held after open for a {path.stat().st_size}-byte journal"
    assert peak < 4_000_000, f"peak {peak} bytes while scanning a {path.stat().st_size}-byte journal"


def test_two_journals_on_one_file_see_all_records_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    first, second = ResponseJournal(path), ResponseJournal(path)
    first.put("a", _record("a"))
    second.put("b", _record("b"))
    first.put("c", _record("c"))  # not contiguous with what `first` has read: folded in at close
    first.close()
    second.put("d", _record("d"))
    second.close()
    reopened = ResponseJournal(path)
    assert len(reopened) == 4
    assert [reopened.get(k)["text"] for k in "abcd"] == list("abcd")


def test_compact_keeps_the_latest_record_of_each_key(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = ResponseJournal(path)
    for round_no in range(3):
        for key in ("a", "b"):
            journal.put(key, _record(f"{key}{round_no}"))
    journal.put("c", _record("c"))
    other = ResponseJournal(path)
    with pytest.raises(JournalBusyError, match="close it"):
        journal.compact()
    other.close()
    journal.compact()
    assert [json.loads(line)["text"] for line in path.read_text("utf-8").splitlines()] == ["a2", "b2", "c"]
    assert len(journal) == 3 and journal.get("b")["text"] == "b2"
    journal.put("d", _record("d"))  # appends to the compacted file
    journal.close()
    reopened = ResponseJournal(path)
    assert len(reopened) == 4 and reopened.get("a")["text"] == "a2" and reopened.get("d")["text"] == "d"
    reopened.close()
    with pytest.raises(ValueError, match="closed"):
        reopened.compact()


def test_open_compacts_a_mostly_superseded_journal_when_alone(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with ResponseJournal(path) as journal:
        for i in range(30):
            journal.put("same", _record(str(i)))
    assert len(path.read_text("utf-8").splitlines()) == 30
    held = ResponseJournal(path, compact_min_dead=None)  # never compacts; the next open is not alone
    ResponseJournal(path, compact_min_dead=5).close()
    assert len(path.read_text("utf-8").splitlines()) == 30
    held.close()
    journal = ResponseJournal(path, compact_min_dead=5)
    assert path.read_text("utf-8").count("\n") == 1 and journal.get("same")["text"] == "29"
    assert len(ResponseJournal(path, compact_min_dead=None)) == 1


def test_checkpoints_bound_the_lines_an_open_scans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "journal.jsonl"
    journal = ResponseJournal(path, checkpoint_every=100)
    for i in range(1050):
        journal.put(f"k{i}", _record(str(i)))
    parsed = _lines_read(monkeypatch)
    reopened = ResponseJournal(path)  # `journal` was never closed: only what followed the last checkpoint
    assert len(reopened) == 1050 and len(parsed) <= 100
    journal.close()


_WRITER = textwrap.dedent(
    """
    import sys
    from finrag_pipelines.llm.journal import ResponseJournal

    journal = ResponseJournal(sys.argv[1], checkpoint_every=37)
    i = 0
    while True:
        journal.put(f"key-{i}", {"model": "m", "text": "回答 " + str(i) * 50, "reasoning": None,
                                 "finish_reason": "stop"})
        if i % 3 == 0:
            journal.put(f"key-{i // 2}", {"model": "m", "text": "again", "reasoning": None,
                                          "finish_reason": "stop"})
        sys.stdout.write(f"{i}\\n")
        sys.stdout.flush()
        i += 1
    """
)


def test_records_survive_kill_9_while_the_index_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    reported: list[int] = []
    try:
        for line in proc.stdout:
            reported.append(int(line))
            if len(reported) >= 400:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert index_path(path).is_file()  # checkpoints happened before the kill
    journal = ResponseJournal(path)
    missing = [i for i in reported if journal.get(f"key-{i}") is None]
    assert not missing, f"records reported as written but lost after kill -9: {missing[:10]}"
    assert len(journal) >= len(reported)
    rescanned = ResponseJournal(path)  # the same answers from a full scan
    index_path(path).unlink()
    full = ResponseJournal(path)
    for i in reported:
        assert rescanned.get(f"key-{i}") == full.get(f"key-{i}") == journal.get(f"key-{i}")
    journal.close()
