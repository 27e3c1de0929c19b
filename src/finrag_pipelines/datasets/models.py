"""A dataset for a model directory (a HF-format folder produced by a training node)."""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError


class ModelDirectoryDataset(AbstractDataset[Path, Path]):
    """A folder holding a model (``config.json`` + weights + tokenizer).

    ``load`` returns the folder's path after checking it holds a model; ``save`` takes the path of a folder a node
    produced (e.g. a merged checkpoint) and copies it into place atomically (a temp sibling, then a rename), so a
    crash never leaves a half-copied model where readers expect a finished one.
    """

    def __init__(self, path: str) -> None:
        self._path = PurePosixPath(path)

    def load(self) -> Path:
        folder = Path(self._path)
        if not (folder / "config.json").is_file():
            raise DatasetError(
                f"model folder {folder} does not exist or has no config.json; produce it with "
                "`kedro run --pipelines embedding_finetune` (or put a model there)"
            )
        return folder

    def save(self, data: Path) -> None:
        source, target = Path(data), Path(self._path)
        if not (source / "config.json").is_file():
            raise DatasetError(f"{source} is not a model folder (no config.json); nothing was saved to {target}")
        if source.resolve() == target.resolve():
            return
        tmp = target.with_name(target.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)

    def _exists(self) -> bool:
        return (Path(self._path) / "config.json").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
