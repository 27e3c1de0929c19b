"""Reading a project's run records without a Kedro session: its config loader and ``runs`` settings.

The commands that use it: ``python -m finrag_pipelines.lineage`` (:mod:`.cli`) and
``python -m finrag_pipelines.retention``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finrag_pipelines.provenance.records import RecordStore
from finrag_pipelines.provenance.settings import RunsSettings


def project_config(project_dir: Path, env: str | None) -> tuple[Path, Any]:
    """The project root and its config loader for ``env`` (no session: no hook runs, no store is opened)."""
    from kedro.framework.project import settings
    from kedro.framework.startup import bootstrap_project

    root = project_dir.resolve()
    bootstrap_project(root)
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(root / settings.CONF_SOURCE), env=env, **settings.CONFIG_LOADER_ARGS
    )
    return root, loader


def runs_settings(loader: Any) -> RunsSettings:
    """The environment's ``runs`` settings (``conf/<env>/runs.yml``)."""
    from finrag_pipelines.lineage_hooks import load_runs_settings

    return load_runs_settings(loader)


def runs_table(store: RecordStore) -> list[str]:
    """One line per recorded run: id, status, env, pipelines, git commit and how many versions it saved."""
    lines = []
    for record in store.all():
        git = record.get("git") or {}
        commit = (git.get("commit") or "")[:10] + ("+dirty" if git.get("dirty") else "") if git else "no git"
        saved = sum(1 for e in record.get("datasets", {}).values() if (e.get("saved") or {}).get("version"))
        lines.append(
            f"{record['run_id']}  {record.get('status', '?'):8s} env={record.get('env')} "
            f"pipelines={','.join(record.get('pipelines') or [])} {commit} versions_saved={saved}"
        )
    return lines or [f"no run records in {store.folder}"]
