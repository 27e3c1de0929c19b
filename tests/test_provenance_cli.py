"""The lineage and retention commands on a project copy whose versions and run records are written here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from finrag_pipelines.lineage import cli as lineage
from finrag_pipelines.provenance.records import RecordStore, RunRecorder
from finrag_pipelines.provenance.versions import version_path, versions
from finrag_pipelines.retention import cli as retention

ROOT = Path(__file__).resolve().parents[1]
R1, R2, R3 = (f"2026-01-0{i}T00.00.00.000Z" for i in range(1, 4))
BM25 = "data/06_models/disc_finllm/bm25"
QUERIES = "data/05_model_input/disc_finllm/distilled_queries.parquet"
METRICS = "data/08_reporting/retrieval_metrics.json"
RUN = "data/07_model_output/disc_finllm/runs/bm25.parquet"  # a factory entry: run_{retriever}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three recorded runs: R1 builds the index and distils queries (prompt p1), R2 and R3 evaluate."""
    for name in ("conf", "pyproject.toml", ".telemetry"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    (tmp_path / "src").mkdir()
    monkeypatch.chdir(tmp_path)
    store = RecordStore(tmp_path / "data/09_tracking/lineage")
    for run_id, saves in ((R1, (BM25, QUERIES, METRICS, RUN)), (R2, (METRICS, RUN)), (R3, (METRICS, RUN))):
        recorder = RunRecorder(run_id, tmp_path)
        for path in saves:
            target = tmp_path / version_path(path, run_id)
            target.parent.mkdir(parents=True)
            target.write_text("x")
        if run_id == R1:
            recorder.node_started("index_build.build", ["corpus"], ["bm25_index"])
            recorder.node_started("query_distill.distil", ["corpus", "bm25_index"], ["distilled_queries"])
            recorder.dataset(
                "saved",
                "bm25_index",
                version=R1,
                path=version_path(BM25, R1),
                fingerprint={"corpus_hash": "c0ffee"},
            )
            recorder.dataset(
                "saved",
                "distilled_queries",
                version=R1,
                path=version_path(QUERIES, R1),
                fingerprint={"prompt_hash": ["p1"]},
            )
        recorder.node_started("evaluation.score", ["bm25_index"], ["retrieval_metrics"])
        recorder.dataset("loaded", "bm25_index", version=R1, path=version_path(BM25, R1), fingerprint={})
        recorder.dataset(
            "saved", "retrieval_metrics", version=run_id, path=version_path(METRICS, run_id), fingerprint={}
        )
        store.write(recorder.finish())
    return tmp_path


def test_the_lineage_command_names_the_run_node_and_the_hashes_upstream(project, capsys):
    assert lineage.main(["distilled_queries", "--env", "test"]) == 0
    out = capsys.readouterr().out
    assert f"distilled_queries @ {R1}  made by query_distill.distil in run {R1}" in out
    assert "corpus_hash c0ffee: bm25_index" in out and "prompt_hash p1: distilled_queries" in out
    assert lineage.main(["retrieval_metrics", "--version", R2, "--env", "test", "--json"]) == 0
    trace = json.loads(capsys.readouterr().out)
    assert trace["trace"]["run_id"] == R2 and trace["upstream"]["corpus_hash"] == {
        "c0ffee": [f"bm25_index@{R1}"]
    }
    assert lineage.main(["--runs", "--env", "test"]) == 0
    assert capsys.readouterr().out.count("finished") == 3
    assert lineage.main(["nothing", "--env", "test"]) == 1


def test_the_retention_command_is_a_dry_run_until_asked(project, capsys):
    assert retention.main(["--env", "test", "--keep-last", "1"]) == 0
    out = capsys.readouterr().out
    assert "dry run: nothing deleted" in out and f"{METRICS}: keep 1, delete 2" in out
    assert versions(project / METRICS) == [R1, R2, R3]
    assert retention.main(["--env", "test", "--keep-last", "1", "--apply"]) == 0
    # the newest metrics and run; the index R3 read is kept although it is older than anything else
    assert versions(project / METRICS) == [R3] and versions(project / RUN) == [R3]
    assert versions(project / BM25) == [R1] and versions(project / QUERIES) == [R1]
    assert RecordStore(project / "data/09_tracking/lineage").run_ids() == [R1, R3]
    # the default rule (runs.yml retention.keep_last: 3) deletes nothing more
    assert retention.main(["--env", "test", "--apply"]) == 0 and versions(project / METRICS) == [R3]
