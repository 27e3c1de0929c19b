"""A saved tokenizer folder: ``tokenizer.json`` (settings, describe, fingerprint) and copies of the exact
dictionary and stopword texts, each checked against its recorded sha256 when read back.

Kedro-free library module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finrag_pipelines.text.dictionaries import TextResource, TokenizerConfigError

FORMAT_VERSION = 1
SETTINGS_FILE = "tokenizer.json"
FINANCE_DICT_FILE = "finance_dict.txt"
STOPWORDS_FILE = "stopwords.txt"


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _file_entry(name: str, res: TextResource) -> dict[str, str]:
    return {"file": name, "source": res.source, "sha256": res.sha256}


def write_tokenizer_folder(
    target: Path,
    *,
    finance: TextResource | None,
    user_dicts: Sequence[TextResource],
    stopwords: TextResource | None,
    settings: dict[str, Any],
    describe: dict[str, Any],
    fingerprint: str,
) -> None:
    """Write the dictionary / stopword copies and ``tokenizer.json`` (last) into ``target`` (created).

    Args:
        target: The folder.
        finance: The finance dictionary, if used.
        user_dicts: The user dictionaries, in order.
        stopwords: The stopword list, if any.
        settings: The tokenizer's settings (restored by :func:`read_tokenizer_folder`).
        describe: The tokenizer's ``describe()`` (informative).
        fingerprint: The tokenizer's fingerprint (checked after loading).
    """
    target.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {"finance_dict": None, "user_dicts": [], "stopwords": None}
    if finance is not None:
        _write_text(target / FINANCE_DICT_FILE, finance.text)
        files["finance_dict"] = _file_entry(FINANCE_DICT_FILE, finance)
    for i, res in enumerate(user_dicts):
        name = f"user_dict_{i}.txt"
        _write_text(target / name, res.text)
        files["user_dicts"].append(_file_entry(name, res))
    if stopwords is not None:
        _write_text(target / STOPWORDS_FILE, stopwords.text)
        files["stopwords"] = _file_entry(STOPWORDS_FILE, stopwords)
    saved = {
        "format_version": FORMAT_VERSION,
        "settings": settings,
        "files": files,
        "describe": describe,
        "fingerprint": fingerprint,
    }
    _write_text(target / SETTINGS_FILE, json.dumps(saved, ensure_ascii=False, indent=1))


@dataclass(frozen=True)
class SavedTokenizer:
    """What a tokenizer folder holds.

    Attributes:
        settings_path: Its ``tokenizer.json`` (named in errors).
        parts: The restored texts and settings, as keyword arguments of the tokenizer's set-up.
        fingerprint: The fingerprint recorded at save time (``None`` if absent).
    """

    settings_path: Path
    parts: dict[str, Any]
    fingerprint: str | None


def read_tokenizer_folder(source: Path) -> SavedTokenizer:
    """Read a folder written by :func:`write_tokenizer_folder`, checking every copied file's sha256.

    Raises:
        TokenizerConfigError: On a missing or unreadable file, a sha256 mismatch or an unknown format.
    """
    settings_path = source / SETTINGS_FILE
    if not settings_path.is_file():
        raise TokenizerConfigError(
            f"{source} has no {SETTINGS_FILE}: not a saved tokenizer folder; save one with "
            "FinanceTokenizer.save()."
        )
    try:
        saved = json.loads(settings_path.read_text(encoding="utf-8"))
        if saved.get("format_version") != FORMAT_VERSION:
            raise TokenizerConfigError(
                f"{settings_path}: format_version {saved.get('format_version')!r}, this code reads "
                f"{FORMAT_VERSION}; "
                "rebuild the index that holds this tokenizer."
            )
        opts = saved["settings"]
        files = saved["files"]

        def restore(entry: dict[str, Any] | None) -> TextResource | None:
            if entry is None:
                return None
            path = source / entry["file"]
            if not path.is_file():
                raise TokenizerConfigError(
                    f"{path} is missing (listed in {settings_path}); the saved tokenizer is incomplete, "
                    "save it again."
                )
            res = TextResource(source=str(entry["source"]), text=path.read_text(encoding="utf-8"))
            if res.sha256 != entry["sha256"]:
                raise TokenizerConfigError(
                    f"{path} was changed after saving (sha256 {res.sha256[:12]} != recorded "
                    f"{str(entry['sha256'])[:12]}); "
                    "restore it or rebuild the index."
                )
            return res

        user_dicts = [restore(entry) for entry in files["user_dicts"]]
        parts = {
            "finance": restore(files["finance_dict"]),
            "user_dicts": [res for res in user_dicts if res is not None],
            "extra_words": list(opts["extra_words"]),
            "stopwords_setting": opts["stopwords"],
            "stopwords_res": restore(files["stopwords"]),
            "extra_stopwords": list(opts["extra_stopwords"]),
            "lowercase": bool(opts["lowercase"]),
            "hmm": bool(opts["hmm"]),
            "search_mode": bool(opts.get("search_mode", False)),
            "n_jobs": int(opts["n_jobs"]),
            "segmenter": str(opts["segmenter"]),
        }
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, TokenizerConfigError):
            raise
        raise malformed(settings_path, exc) from exc
    return SavedTokenizer(settings_path, parts, saved.get("fingerprint") or None)


def malformed(settings_path: Path, exc: Exception) -> TokenizerConfigError:
    """The error for a ``tokenizer.json`` whose contents cannot be used."""
    return TokenizerConfigError(
        f"{settings_path} is malformed ({type(exc).__name__}: {exc}); save the tokenizer again."
    )
