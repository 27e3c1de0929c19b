"""``python -m finrag_pipelines.retention``: delete old versions of versioned datasets (dry run by default).

Usage::

    python -m finrag_pipelines.retention --env demo                  # what would be deleted
    python -m finrag_pipelines.retention --env demo --apply          # delete it
    python -m finrag_pipelines.retention --env demo --keep-last 1 --keep-run 2026-12-03T11.31.49.123Z

The rule (``provenance/retention.py``): the newest ``keep_last`` versions of every versioned dataset
(``conf/<env>/runs.yml`` ``retention.keep_last``; ``--keep-last`` overrides it) are kept, and so is every
version that a kept run read (recursively), so nothing a kept result came from is deleted. Run records of
runs that are neither kept nor recent are deleted with them. The versioned datasets are those of the
catalog (``versioned: true``) and every versioned path the run records name (other retrieval sets too).
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from finrag_pipelines.catalog import storage_path
from finrag_pipelines.lineage import project_config, runs_settings
from finrag_pipelines.provenance.records import RecordStore
from finrag_pipelines.provenance.retention import apply_retention, plan_retention, recorded_roots

logger = logging.getLogger(__name__)
_PATTERN = re.compile(r"\{[^}]*\}")


def catalog_roots(catalog: Mapping[str, Any], root: Path) -> set[Path]:
    """The version roots of the catalog's versioned entries (a factory pattern's ``{x}`` globbed)."""
    roots: set[Path] = set()
    for config in catalog.values():
        where = storage_path(config) if isinstance(config, Mapping) else None
        if where is None:
            continue
        path = Path(where) if Path(where).is_absolute() else root / where
        if _PATTERN.search(str(path)):
            relative = path.relative_to(root) if path.is_relative_to(root) else path
            roots.update(root.glob(_PATTERN.sub("*", str(relative))))
        else:
            roots.add(path)
    return roots


def main(argv: Sequence[str] | None = None) -> int:
    """Print (and with --apply, carry out) the retention plan; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m finrag_pipelines.retention", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--env", default=None, help="Kedro environment (its catalog and runs.yml)")
    parser.add_argument("--project-dir", type=Path, default=Path.cwd())
    parser.add_argument(
        "--keep-last", type=int, default=None, help="versions kept per dataset (runs.yml default)"
    )
    parser.add_argument("--keep-run", action="append", default=[], help="a run id whose versions are kept")
    parser.add_argument("--apply", action="store_true", help="delete (default: only print the plan)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root, loader = project_config(args.project_dir, args.env)
    settings = runs_settings(loader)
    store = RecordStore(root / settings.lineage.folder)
    records = store.all()
    roots = catalog_roots(loader["catalog"], root) | recorded_roots(records, root)
    keep_last = args.keep_last if args.keep_last is not None else settings.retention.keep_last
    plan = plan_retention(roots, records, keep_last=keep_last, project=root, keep_runs=args.keep_run)
    for line in plan.summary():
        print(line)
    if not args.apply:
        print("dry run: nothing deleted (add --apply to delete)")
        return 0
    apply_retention(plan, store)
    print(
        f"deleted {sum(len(v) for v in plan.delete.values())} versions "
        f"and {len(plan.delete_records)} run records"
    )
    return 0
