"""A dataset for a model directory (a HF-format folder produced by a training node)."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from kedro.io import DatasetError

from finrag_pipelines.datasets.versioned import VersionedFolderDataset

logger = logging.getLogger(__name__)

# weight files are hard-linked into a version (no second copy on disk); everything else is copied
_LINKED_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def _link_or_copy(source: str, target: str) -> str:
    if source.endswith(_LINKED_SUFFIXES):
        try:
            os.link(source, target)
            return target
        except OSError:  # another file system, or links not allowed: a plain copy
            pass
    return shutil.copy2(source, target)


class ModelDirectoryDataset(VersionedFolderDataset):
    """A folder holding a model (``config.json`` + weights + tokenizer).

    ``load`` returns the folder's path after checking it holds a model; ``save`` takes the path of a folder a
    node produced (e.g. a merged checkpoint) and copies it into place atomically (a temp sibling, then a
    rename). With ``versioned: true`` each run's model lands in ``path/<version>/<name>``; its weight files
    are hard links to the trainer's working copy, which the trainer replaces (never rewrites) on its next
    merge, so a version never changes and costs no second copy of the weights.
    """

    _marker = "config.json"

    def _read(self, folder: Path) -> Path:
        if not (folder / "config.json").is_file():
            raise DatasetError(
                f"model folder {folder} does not exist or has no config.json; produce it with "
                "`kedro run --pipelines embedding_finetune` (or put a model there)"
            )
        return folder

    def _in_place(self, data: Path) -> bool:
        source = Path(data)
        if not (source / "config.json").is_file():
            raise DatasetError(
                f"{source} is not a model folder (no config.json); nothing was saved to {self.root}"
            )
        # unversioned, a node may write straight into place (base env: the user's checkpoint)
        return not self.is_versioned and source.resolve() == self.root.resolve()

    def _write(self, data: Path, folder: Path) -> None:
        shutil.copytree(Path(data), folder, copy_function=_link_or_copy)

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._filepath), "version": self._version}
