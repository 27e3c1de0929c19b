"""kedro viz build: the static site of the demo's pipelines builds, with no namespace the chain interrupts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what third-party packages print regardless of the project (README, "Pipeline graph"): kedro-viz has no run
# to overlay before the first `kedro run` (a build after a demo run prints no warning at all)
KNOWN = ("Run events file",)


@pytest.mark.slow
def test_kedro_viz_build_writes_the_demo_graph_without_project_warnings(tmp_path: Path):
    for name in ("conf", "pyproject.toml", ".telemetry"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    (tmp_path / "src").mkdir()
    env = {**os.environ, "KEDRO_ENV": "demo", "KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "400"}
    kedro = Path(sys.executable).with_name("kedro")
    result = subprocess.run(
        [str(kedro), "viz", "build"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Namespace" not in output, output[-3000:]
    # COLUMNS=400: one line per log record
    warnings = [
        line for line in output.splitlines() if "WARNING" in line and not any(k in line for k in KNOWN)
    ]
    assert not warnings, warnings
    graph = json.loads((tmp_path / "build/api/main").read_text(encoding="utf-8"))
    assert {"__default__", "index_build", "evaluation", "embedding_finetune"} <= {
        p["id"] for p in graph["pipelines"]
    }
    namespaces = {
        n["modular_pipelines"][0]
        for n in graph["nodes"]
        if n.get("type") == "task" and n["modular_pipelines"]
    }
    assert {"index_build", "index_build_finetuned", "embedding_finetune", "evaluation"} <= namespaces
