"""ResponseJournal: round trip, torn last line, corrupt middle line, and survival of kill -9."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from finrag_pipelines.llm.journal import JournalCorruptError, ResponseJournal, cache_key

_SRC = Path(__file__).resolve().parents[2] / "src"


def _record(text: str) -> dict:
    return {"model": "m", "text": text, "reasoning": None, "finish_reason": "stop"}


def test_cache_key_is_canonical_and_sensitive() -> None:
    messages = [{"role": "user", "content": "你好"}]
    sampling = {"temperature": 0.1, "max_tokens": 8, "extra_body": {"a": 1, "b": 2}}
    key = cache_key("m", messages, sampling)
    assert key == cache_key(
        "m", messages, {"extra_body": {"b": 2, "a": 1}, "max_tokens": 8, "temperature": 0.1}
    )
    assert len(key) == 64
    assert key != cache_key("m", messages, sampling, attempt=1)
    assert key != cache_key("other", messages, sampling)
    assert key != cache_key("m", [{"role": "user", "content": "您好"}], sampling)
    assert key != cache_key("m", messages, {**sampling, "temperature": 0.2})


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "journal.jsonl"
    with ResponseJournal(path) as journal:
        journal.put("k1", _record("一"))
        journal.put("k2", _record("二"))
        journal.put("k1", _record("一（新）"))  # later lines win
        assert len(journal) == 2
    reopened = ResponseJournal(path)
    assert len(reopened) == 2
    record = reopened.get("k1")
    assert record is not None
    assert record["text"] == "一（新）" and record["key"] == "k1"
    assert {"key", "model", "text", "reasoning", "finish_reason", "created_at"} <= set(record)
    assert reopened.get("missing") is None
    assert "一" in path.read_text(encoding="utf-8")  # UTF-8, not \\u escapes
    reopened.close()
    with pytest.raises(ValueError, match="closed"):
        reopened.put("k3", _record("x"))


def test_torn_last_line_is_dropped_and_truncated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "journal.jsonl"
    with ResponseJournal(path) as journal:
        for i in range(3):
            journal.put(f"k{i}", _record(str(i)))
    good_size = path.stat().st_size
    with path.open("ab") as handle:
        handle.write(b'{"key": "k3", "model": "m", "te')  # a crash mid-write
    with caplog.at_level(logging.WARNING, logger="finrag_pipelines.llm.journal"):
        journal = ResponseJournal(path)
    assert len(journal) == 3
    assert "torn last line" in caplog.text and f"{path}:4" in caplog.text
    assert path.stat().st_size == good_size
    journal.put("k3", _record("3"))
    journal.close()
    assert len(ResponseJournal(path)) == 4
    assert all(json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())


def test_corrupt_middle_line_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    lines = [
        json.dumps({"key": "a", **_record("a")}),
        "this is not json",
        json.dumps({"key": "b", **_record("b")}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(JournalCorruptError, match=rf"{path}:2: not valid JSON"):
        ResponseJournal(path)


_WRITER = textwrap.dedent(
    """
    import sys
    from finrag_pipelines.llm.journal import ResponseJournal

    journal = ResponseJournal(sys.argv[1])
    i = 0
    while True:
        journal.put(f"key-{i}", {"model": "m", "text": "回答 " + str(i) * 50, "reasoning": None,
                                 "finish_reason": "stop"})
        sys.stdout.write(f"{i}\\n")
        sys.stdout.flush()
        i += 1
    """
)


def test_records_survive_kill_9(tmp_path: Path) -> None:
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
            if len(reported) >= 300:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    journal = ResponseJournal(path)
    missing = [i for i in reported if journal.get(f"key-{i}") is None]
    assert not missing, f"records reported as written but lost after kill -9: {missing[:10]}"
    assert len(journal) >= len(reported)
    journal.close()
