"""Keep disk bounded: the last N versions of every versioned dataset, and every version a kept run read.

The rule, applied to every versioned root (a versioned dataset's folder of versions):

1. the newest ``keep_last`` versions of each root are kept, and every version saved by a run named with
   ``keep_runs`` (a run's save version is its id);
2. the run that saved a kept version (its version is that run's id) is a *kept run*: every version it
   loaded (its run record says which) is kept too, and the runs that saved those are kept runs in turn,
   until nothing changes, so nothing a kept version was made from is deleted;
3. everything else is deleted; run records are deleted when their run is not kept and is not one of the
   newest ``keep_last`` records.

A version folder whose name is not a Kedro timestamp is never touched (reported). Kedro-free library module.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finrag_pipelines.provenance.records import RecordStore
from finrag_pipelines.provenance.versions import is_version

logger = logging.getLogger(__name__)


@dataclass
class RetentionPlan:
    """What a retention pass keeps and deletes.

    Attributes:
        keep: ``{root: [versions kept]}``.
        delete: ``{root: [versions deleted]}``.
        kept_runs: The run ids whose outputs and inputs are protected.
        delete_records: Run records to delete.
        foreign: ``{root: [folder names that are not Kedro versions, left alone]}``.
        sizes: Bytes of each version folder to delete, by ``(root, version)``.
    """

    keep: dict[Path, list[str]] = field(default_factory=dict)
    delete: dict[Path, list[str]] = field(default_factory=dict)
    kept_runs: set[str] = field(default_factory=set)
    delete_records: list[str] = field(default_factory=list)
    foreign: dict[Path, list[str]] = field(default_factory=dict)
    sizes: dict[tuple[Path, str], int] = field(default_factory=dict)

    @property
    def bytes_to_delete(self) -> int:
        """Bytes the deleted versions take (hard-linked model weights counted as if they were not)."""
        return sum(self.sizes.values())

    def summary(self) -> list[str]:
        """One line per root with deletions, then the totals."""
        lines = []
        for root in sorted(self.delete, key=str):
            if self.delete[root]:
                mb = sum(self.sizes.get((root, v), 0) for v in self.delete[root]) / 1e6
                lines.append(
                    f"{root}: keep {len(self.keep.get(root, []))}, delete {len(self.delete[root])} "
                    f"({mb:.1f} MB): {', '.join(self.delete[root])}"
                )
        for root in sorted(self.foreign, key=str):
            lines.append(f"{root}: left alone (not Kedro versions): {', '.join(self.foreign[root])}")
        versions = sum(len(v) for v in self.delete.values())
        kept = sum(len(v) for v in self.keep.values())
        lines.append(
            f"total: {len(self.keep)} versioned datasets, keep {kept} versions, delete {versions} versions "
            f"({self.bytes_to_delete / 1e6:.1f} MB) and {len(self.delete_records)} run records; "
            f"{len(self.kept_runs)} kept runs"
        )
        return lines


def _folder_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _version_dirs(root: Path) -> tuple[list[str], list[str]]:
    if not root.is_dir():
        return [], []
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and (p / root.name).exists())
    return [n for n in names if is_version(n)], [n for n in names if not is_version(n)]


def _root_of(path: str, project: Path) -> tuple[Path, str] | None:
    """``(root, version)`` of a recorded version path ``<root>/<version>/<root name>``."""
    entry = project / path
    version, root = entry.parent.name, entry.parent.parent
    if is_version(version) and entry.name == root.name:
        return root, version
    return None


def recorded_roots(records: Iterable[Mapping[str, Any]], project: str | Path) -> set[Path]:
    """The versioned roots named by the run records (also those of other retrieval sets than today's)."""
    roots = set()
    for record in records:
        for entry in record.get("datasets", {}).values():
            for kind in ("loaded", "saved"):
                path = (entry.get(kind) or {}).get("path")
                found = (
                    _root_of(path, Path(project)) if path and (entry.get(kind) or {}).get("version") else None
                )
                if found:
                    roots.add(found[0])
    return roots


def plan_retention(
    roots: Iterable[str | Path],
    records: Iterable[Mapping[str, Any]],
    *,
    keep_last: int,
    project: str | Path,
    keep_runs: Iterable[str] = (),
) -> RetentionPlan:
    """Work out what to keep and delete (nothing is touched; see the module for the rule).

    Args:
        roots: Versioned roots (paths relative to ``project`` or absolute).
        records: Every run record.
        keep_last: Versions kept per root (>= 1).
        project: The project root recorded paths are relative to.
        keep_runs: Run ids to keep whatever their age.

    Raises:
        ValueError: When ``keep_last`` < 1.
    """
    if keep_last < 1:
        raise ValueError(
            f"retention.keep_last must be >= 1 (the latest version is always kept), got {keep_last}"
        )
    project = Path(project)
    records = list(records)
    plan = RetentionPlan()
    found: dict[Path, list[str]] = {}
    for root in {project / Path(r) for r in roots}:
        versions, foreign = _version_dirs(root)
        found[root] = versions
        if foreign:
            plan.foreign[root] = foreign
    kept = {(root, v) for root, versions in found.items() for v in versions[-keep_last:]}
    loads: dict[str, list[tuple[Path, str]]] = {}
    for record in records:
        for entry in record.get("datasets", {}).values():
            loaded = entry.get("loaded") or {}
            located = (
                _root_of(loaded["path"], project) if loaded.get("path") and loaded.get("version") else None
            )
            if located:
                loads.setdefault(str(record["run_id"]), []).append(located)
    kept |= {(root, run) for run in keep_runs for root, versions in found.items() if run in versions}
    todo = [v for _, v in kept] + list(keep_runs)
    while todo:
        run_id = todo.pop()
        if run_id in plan.kept_runs:
            continue
        plan.kept_runs.add(run_id)
        for root, version in loads.get(run_id, []):  # what the run that made a kept version read
            kept.add((root, version))
            todo.append(version)
    for root, versions in found.items():
        plan.keep[root] = [v for v in versions if (root, v) in kept]
        plan.delete[root] = [v for v in versions if (root, v) not in kept]
        for version in plan.delete[root]:
            plan.sizes[(root, version)] = _folder_size(root / version)
    run_ids = sorted(str(r["run_id"]) for r in records)
    recent = set(run_ids[-keep_last:])
    plan.delete_records = [r for r in run_ids if r not in plan.kept_runs and r not in recent]
    return plan


def apply_retention(plan: RetentionPlan, store: RecordStore) -> None:
    """Delete what ``plan`` says (version folders, then run records), logging each deletion."""
    for root, versions in plan.delete.items():
        for version in versions:
            logger.info("retention: deleting %s", root / version)
            shutil.rmtree(root / version)
    for run_id in plan.delete_records:
        logger.info("retention: deleting run record %s", store.path(run_id))
        store.delete(run_id)
