"""Kedro's versioned layout on disk, read without Kedro.

A dataset with ``versioned: true`` keeps each save under its root as ``<root>/<version>/<root name>``, the
version being the run's id, a UTC timestamp such as ``2026-12-03T11.31.49.123Z`` (Kedro's
``generate_timestamp``). Reading "the latest" means the newest version folder whose entry exists. Scripts,
benchmarks and tests that read an artefact by path go through :func:`latest_path`, so they follow the latest
version exactly as the catalog does.
"""

from __future__ import annotations

import re
from pathlib import Path

# Kedro's save versions (kedro.io.core.generate_timestamp); a version of another form is left alone
VERSION_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}\.\d{2}\.\d{2}\.\d{3}Z$")


def is_version(name: str) -> bool:
    """True when ``name`` is a Kedro timestamp version (what ``kedro run`` saves with)."""
    return bool(VERSION_PATTERN.match(name))


def version_path(root: str | Path, version: str) -> Path:
    """Where version ``version`` of the artefact at ``root`` lives: ``<root>/<version>/<root name>``."""
    root = Path(root)
    return root / version / root.name


def versions(root: str | Path) -> list[str]:
    """The versions stored under ``root`` (oldest first): folders named like a version holding the entry.

    Args:
        root: A versioned dataset's path as the catalog gives it (``data/08_reporting/x.json``).

    Returns:
        Version strings, sorted (Kedro timestamps sort chronologically); ``[]`` when there are none.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    found = [
        child.name
        for child in root.iterdir()
        if child.is_dir() and is_version(child.name) and (child / root.name).exists()
    ]
    return sorted(found)


def is_versioned_root(path: str | Path) -> bool:
    """True when ``path`` is a folder of versions (rather than a file or an unversioned folder)."""
    return bool(versions(path))


def latest_path(path: str | Path) -> Path:
    """The file or folder to read for ``path``: its newest version when it is versioned, else ``path``.

    Args:
        path: A catalog path (``data/06_models/fintruthqa/bm25``, ``data/08_reporting/x.json``).

    Raises:
        FileNotFoundError: When neither a version nor ``path`` itself exists.
    """
    path = Path(path)
    found = versions(path)
    if found:
        return version_path(path, found[-1])
    if path.exists():
        return path
    raise FileNotFoundError(
        f"{path} does not exist (no version {path}/<version>/{path.name} and no unversioned file); "
        "run the pipeline that writes it"
    )
