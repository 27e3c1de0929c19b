"""Encoder fingerprints: a sha256 over an encoder's settings (minus where it lives) and its model files.

Kedro-free library module.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# describe() keys that say where a model lives rather than what it computes (path, folder name): they
# are reported, but left out of the fingerprint so a copy of the same model elsewhere keeps its fingerprint.
_LOCATION_KEYS = frozenset({"model_path", "model_name"})

# Files of a HF model folder that change its vectors.
_HF_CONFIG_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
_HF_WEIGHT_SUFFIXES = (".safetensors", ".bin")

# Files larger than this are hashed by sampling (size, head, tail and evenly spaced blocks).
_FULL_HASH_LIMIT = 64 * 1024 * 1024
_HEAD_TAIL_BYTES = 4 * 1024 * 1024
_SAMPLE_BLOCKS = 16
_SAMPLE_BYTES = 256 * 1024

# (resolved path, size, mtime_ns) -> digest; hashing a multi-GB model once per process is enough.
_FILE_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def _json_digest(obj: Any) -> str:
    """Return the sha256 of a canonical JSON rendering of ``obj``."""
    payload = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def make_fingerprint(description: Mapping[str, Any], content_hash: str) -> str:
    """Combine an encoder description (minus location keys) and a model-content hash into a fingerprint."""
    portable = {key: value for key, value in description.items() if key not in _LOCATION_KEYS}
    return _json_digest({"describe": portable, "content": content_hash})


def hash_file(path: Path) -> str:
    """Hash one file's content; large files are sampled (size, head, tail, evenly spaced blocks).

    Results are cached per (path, size, mtime) for the life of the process.

    Args:
        path: The file to hash.

    Returns:
        A sha256 hex digest.
    """
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    cached = _FILE_HASH_CACHE.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    size = stat.st_size
    digest.update(f"size={size};".encode())
    with path.open("rb") as handle:
        if size <= _FULL_HASH_LIMIT:
            for block in iter(lambda: handle.read(1024 * 1024), b""):
                digest.update(block)
        else:
            digest.update(b"sampled;")
            digest.update(handle.read(_HEAD_TAIL_BYTES))
            step = (size - 2 * _HEAD_TAIL_BYTES) // (_SAMPLE_BLOCKS + 1)
            for i in range(1, _SAMPLE_BLOCKS + 1):
                handle.seek(_HEAD_TAIL_BYTES + i * step)
                digest.update(handle.read(_SAMPLE_BYTES))
            handle.seek(size - _HEAD_TAIL_BYTES)
            digest.update(handle.read(_HEAD_TAIL_BYTES))
    result = digest.hexdigest()
    _FILE_HASH_CACHE[key] = result
    return result


def hash_model_folder(folder: Path) -> str:
    """Hash the files of a HF model folder that change its vectors (config, tokenizer, weights).

    Args:
        folder: A local transformers model folder.

    Returns:
        A sha256 hex digest over the sorted (file name, file hash) pairs.

    Raises:
        ValueError: If the folder holds no weight file.
    """
    files = [folder / name for name in _HF_CONFIG_FILES if (folder / name).is_file()]
    weights = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(_HF_WEIGHT_SUFFIXES))
    if not weights:
        raise ValueError(
            f"{folder} holds no weight file (*.safetensors or *.bin); put the complete model there "
            "(see README, section on models)."
        )
    digest = hashlib.sha256()
    for path in sorted(files + weights, key=lambda p: p.name):
        digest.update(f"{path.name}={hash_file(path)};".encode())
    return digest.hexdigest()
