"""What every index folder shares: ``meta.json`` + ``doc_ids.json``,
read with checks and written atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from finrag_pipelines.retrieval.types import IndexMismatchError

META_FILE = "meta.json"
DOC_IDS_FILE = "doc_ids.json"
REBUILD_HINT = "rebuild the index with `kedro run --pipelines index_build`"


def write_json(path: Path, obj: Any) -> None:
    """Write JSON via a temp file and an atomic rename."""
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def read_meta_and_ids(
    source: Path, kind: str, format_version: int, label: str, required: Sequence[str] = ()
) -> tuple[dict[str, Any], list[str]]:
    """Validate an index folder's common files and return its meta and doc ids.

    Args:
        source: the index folder.
        kind: the ``meta.json`` ``kind`` it must have (``"bm25"``, ``"dense"``).
        format_version: the ``format_version`` this code reads.
        label: how errors name the index (``"BM25"``, ``"dense"``).
        required: further files (relative paths) that must exist.

    Raises:
        IndexMismatchError: naming the folder and what is wrong, with the rebuild command.
    """
    if not source.is_dir():
        raise IndexMismatchError(f"{label} index folder {source} does not exist; {REBUILD_HINT}.")
    missing = [rel for rel in (META_FILE, DOC_IDS_FILE, *required) if not (source / rel).is_file()]
    if missing:
        raise IndexMismatchError(f"{label} index folder {source} lacks {', '.join(missing)}; {REBUILD_HINT}.")
    try:
        meta = json.loads((source / META_FILE).read_text(encoding="utf-8"))
        doc_ids = json.loads((source / DOC_IDS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexMismatchError(
            f"{label} index folder {source} has unreadable JSON ({exc}); {REBUILD_HINT}."
        ) from exc
    if not isinstance(meta, dict) or meta.get("kind") != kind:
        found = meta.get("kind") if isinstance(meta, dict) else None
        raise IndexMismatchError(
            f"{source / META_FILE} is not a {label} index (kind {found!r}, expected {kind!r}); "
            f"{REBUILD_HINT}."
        )
    if meta.get("format_version") != format_version:
        raise IndexMismatchError(
            f"{label} index in {source} has format_version {meta.get('format_version')!r}, this code reads "
            f"{format_version}; {REBUILD_HINT}."
        )
    if not isinstance(doc_ids, list) or not all(isinstance(doc_id, str) for doc_id in doc_ids):
        raise IndexMismatchError(f"{source / DOC_IDS_FILE} must be a JSON list of strings; {REBUILD_HINT}.")
    return meta, doc_ids
