"""``python -m finrag_pipelines.lineage``: where did this dataset (version) come from?

Usage::

    python -m finrag_pipelines.lineage retrieval_metrics                # its latest version
    python -m finrag_pipelines.lineage retrieval_metrics --version 2026-12-03T11.31.49.123Z
    python -m finrag_pipelines.lineage retrieval_metrics --summary      # only the fingerprints upstream
    python -m finrag_pipelines.lineage --runs                           # the recorded runs

It reads the run records ``kedro run`` writes (``conf/<env>/runs.yml`` ``lineage.folder``;
``lineage_hooks.py``) and prints the run and node that made the dataset, what that node read (each input
followed to the run that made the version it read), recursively, then every corpus hash, prompt hash and
encoder fingerprint found upstream with the datasets that carry it. Nothing is loaded or run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from finrag_pipelines.lineage import project_config, runs_settings, runs_table
from finrag_pipelines.provenance.records import RecordStore
from finrag_pipelines.provenance.trace import Lineage, LineageError, render, upstream


def main(argv: Sequence[str] | None = None) -> int:
    """Print the lineage of a dataset version (or the recorded runs); returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m finrag_pipelines.lineage", description=__doc__.split("\n")[0]
    )
    parser.add_argument("dataset", nargs="?", help="a catalog dataset name (e.g. retrieval_metrics)")
    parser.add_argument("--version", help="the dataset version (default: the latest recorded save)")
    parser.add_argument("--env", default=None, help="Kedro environment (its runs.yml says where records are)")
    parser.add_argument("--project-dir", type=Path, default=Path.cwd())
    parser.add_argument("--summary", action="store_true", help="only the fingerprints found upstream")
    parser.add_argument("--json", action="store_true", help="the trace as JSON")
    parser.add_argument("--runs", action="store_true", help="list the recorded runs")
    args = parser.parse_args(argv)
    root, loader = project_config(args.project_dir, args.env)
    store = RecordStore(root / runs_settings(loader).lineage.folder)
    if args.runs or not args.dataset:
        print("\n".join(runs_table(store)))
        return 0
    try:
        step = Lineage(store.all()).trace(args.dataset, args.version)
    except LineageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    found = upstream(step)
    if args.json:
        print(json.dumps({"trace": asdict(step), "upstream": found}, ensure_ascii=False, indent=1))
        return 0
    if not args.summary:
        print("\n".join(render(step)))
        print()
    print(f"upstream of {step.dataset} @ {step.version or '(unversioned)'} (run {step.run_id}):")
    for key, values in found.items():
        for value, holders in values.items():
            more = f" (+{len(holders) - 4} more)" if len(holders) > 4 else ""
            print(f"  {key} {value}: {', '.join(holders[:4])}{more}")
        if not values:
            print(f"  {key}: none recorded")
    return 0
