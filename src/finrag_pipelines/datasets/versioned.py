"""Folder artefacts (index folders, model folders) with Kedro's dataset versioning.

Unversioned, a folder dataset reads and writes ``path`` itself. With ``versioned: true`` in the catalog it
follows Kedro's ``AbstractVersionedDataset`` layout, as ``pandas.ParquetDataset`` does for a file: each save
goes to ``path/<version>/<name>`` (the version is the run's id), a load reads the newest *complete* version
(one whose marker file, e.g. ``meta.json``, exists) unless ``kedro run --load-versions <dataset>:<version>``
pins one. A save writes a temporary sibling and renames it into place, so a crash never leaves a
half-written folder that a later run would read as the latest.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import DatasetError
from kedro.io.core import AbstractVersionedDataset, Version

from finrag_pipelines.provenance.versions import versions

logger = logging.getLogger(__name__)


class VersionedFolderDataset(AbstractVersionedDataset[Any, Any]):
    """A folder at ``path`` (unversioned) or ``path/<version>/<name>`` (``versioned: true``).

    Subclasses implement :meth:`_read` and :meth:`_write`, and set ``_marker``, the file a complete folder
    holds.

    Args:
        path: The folder (unversioned) or the root of its versions.
        version: Set by Kedro from ``versioned: true`` (and ``--load-versions``).
        metadata: Kedro dataset metadata.
    """

    _marker = "meta.json"

    def __init__(
        self, path: str, version: Version | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        super().__init__(PurePosixPath(path), version, exists_function=self._is_complete)
        self.metadata = metadata

    def _is_complete(self, path: str) -> bool:
        return (Path(path) / self._marker).is_file()

    @property
    def root(self) -> Path:
        """``path`` as configured: the folder, or the root of its versions."""
        return Path(self._filepath)

    @property
    def is_versioned(self) -> bool:
        """Whether the catalog entry says ``versioned: true``."""
        return bool(self._version)

    def folder(self) -> Path:
        """The folder a load reads: ``path``, or its pinned / newest complete version.

        Raises:
            VersionNotFoundError: When versioned and no complete version exists yet.
            DatasetError: When a pinned version does not exist, naming the versions that do.
        """
        if not self._version:
            return self.root
        version = self.resolve_load_version()
        folder = Path(self._get_versioned_path(str(version)))
        if self._version.load and not self._is_complete(str(folder)):
            raise DatasetError(
                f"version {version} of {self.root} does not exist or is incomplete (no {self._marker}); "
                f"versions there: {versions(self.root)[-10:] or 'none'}; pin one of them with "
                "--load-versions <dataset>:<version>"
            )
        return folder

    def _read(self, folder: Path) -> Any:
        raise NotImplementedError

    def _write(self, data: Any, folder: Path) -> None:
        raise NotImplementedError

    def _in_place(self, data: Any) -> bool:
        """True when ``data`` already is the folder (nothing to write); subclasses also validate here."""
        return False

    def load(self) -> Any:
        return self._read(self.folder())

    def save(self, data: Any) -> None:
        if self._in_place(data):
            return
        target = Path(self._get_save_path())
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        self._write(data, tmp)
        if target.exists():  # unversioned: the previous folder is replaced whole
            shutil.rmtree(target)
        tmp.rename(target)
        if self._version:
            logger.info("saved %s", target)

    def _exists(self) -> bool:
        return self._is_complete(str(self.folder()))

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._filepath), "version": self._version, "kind": type(self).__name__}
