"""What a loaded or saved dataset was, in a few hashes: the lineage record's ``fingerprint`` of it.

Only what is cheap is computed: the files' content hash (large files sampled, as for encoder fingerprints),
the corpus hash of a prepared corpus (the one index ``meta.json`` files record), the corpus hash and encoder
fingerprint an index folder's ``meta.json`` names, an encoder's fingerprint, the prompt hash distilled rows
are stamped with, and the data/config hashes of the training run behind a model folder.

Kedro-free library module.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from finrag_pipelines.embedding.fingerprint import hash_file

logger = logging.getLogger(__name__)

# at most this many distinct prompt hashes are listed for one table (a table of mixed prompts names a few)
MAX_PROMPT_HASHES = 5
# a folder with more files than this (a cache) gets no content hash
MAX_FILES = 2000
_CORPUS_COLUMNS = ("doc_id", "title", "text")
_TRAINING_MANIFEST = "training_manifest.json"


def content_hash(path: str | Path) -> str | None:
    """A sha256 over a file, or over a folder's files (relative names and contents), or None.

    Files over 64 MB are sampled (:func:`finrag_pipelines.embedding.fingerprint.hash_file`).
    """
    path = Path(path)
    if path.is_file():
        return hash_file(path)
    if not path.is_dir():
        return None
    files = sorted(p for p in path.rglob("*") if p.is_file())
    if len(files) > MAX_FILES:
        logger.info("lineage: %s holds %d files (> %d): no content hash", path, len(files), MAX_FILES)
        return None
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.relative_to(path).as_posix()}={hash_file(file)};".encode())
    return digest.hexdigest()


def _frame_fingerprint(frame: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": len(frame)}
    columns = set(frame.columns)
    if set(_CORPUS_COLUMNS) <= columns:
        from finrag_pipelines.text.corpus import indexable

        out["corpus_hash"] = indexable(frame["doc_id"], frame["title"].fillna(""), frame["text"].fillna(""))[
            2
        ]
    if "prompt_hash" in columns:
        hashes = sorted({str(h) for h in frame["prompt_hash"].dropna().unique()})
        out["prompt_hash"] = hashes[:MAX_PROMPT_HASHES]
    return out


def _index_meta(folder: Path) -> dict[str, Any]:
    meta_file = folder / "meta.json"
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(meta, Mapping):
        return {}
    out: dict[str, Any] = {}
    if meta.get("status") == "unavailable":
        out["unavailable"] = str(meta.get("reason", ""))
    if meta.get("corpus_hash"):
        out["corpus_hash"] = str(meta["corpus_hash"])
    encoder = meta.get("encoder")
    if isinstance(encoder, Mapping) and encoder.get("fingerprint"):
        out["encoder_fingerprint"] = str(encoder["fingerprint"])
    return out


def _training(folder: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((folder / _TRAINING_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    keys = ("data_hash", "config_hash", "status")
    return {"training": {k: manifest.get(k) for k in keys if manifest.get(k) is not None}}


def fingerprint(data: Any, path: str | Path | None = None) -> dict[str, Any]:
    """The hashes that say what ``data`` (stored at ``path``, if it is stored) is.

    Args:
        data: What a node loaded or saved (a DataFrame, a dict, an index, an encoder, a model folder path).
        path: The file or folder the dataset read or wrote (its version's), or None (not on disk).

    Returns:
        Some of ``data_hash``, ``rows``, ``corpus_hash``, ``prompt_hash`` (list), ``encoder_fingerprint``,
        ``training`` and ``unavailable`` (the reason of a stand-in); empty when nothing applies.
    """
    out: dict[str, Any] = {}
    folder = Path(path) if path is not None else None
    if folder is not None:
        digest = content_hash(folder)
        if digest:
            out["data_hash"] = digest
        if folder.is_dir():
            out.update(_index_meta(folder))
            out.update(_training(folder))
    if hasattr(data, "columns") and hasattr(data, "__len__"):
        out.update(_frame_fingerprint(data))
    elif isinstance(data, Mapping):
        for key in ("corpus_hash", "prompt_hash"):
            if isinstance(data.get(key), str):
                out[key] = data[key] if key == "corpus_hash" else [data[key]]
    reason = getattr(data, "reason", None)
    if type(data).__name__ == "Unavailable" and isinstance(reason, str):
        out["unavailable"] = reason
    if callable(getattr(type(data), "encode_queries", None)):  # an encoder (a lazy reranker is not asked)
        out["encoder_fingerprint"] = str(data.fingerprint)
    return out
