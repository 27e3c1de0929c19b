"""Staging files for an external trainer: written atomically, and left untouched when the content is the same.

An unchanged file keeps its bytes and mtime, so the data hash in a run manifest is stable and an up-to-date
training run is recognised and not repeated.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def write_bytes_if_changed(data: bytes, path: str | Path) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling and a rename,
    unless the file already holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.read_bytes() == data:
        return path
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def write_jsonl_if_changed(records: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """One JSON object per line (Chinese unescaped)."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return write_bytes_if_changed(text.encode("utf-8"), path)


def write_json_if_changed(data: Any, path: str | Path) -> Path:
    """A JSON document with sorted keys (so equal content gives equal bytes)."""
    text = json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True)
    return write_bytes_if_changed(text.encode("utf-8"), path)


def write_parquet_if_changed(frame: Any, path: str | Path) -> Path:
    """A pandas frame as parquet (no index)."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return write_bytes_if_changed(buffer.getvalue(), path)
