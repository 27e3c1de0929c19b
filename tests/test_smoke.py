"""End-to-end runs of whole Kedro sessions, as a user runs them (slow: real encoders and indexes)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io.core import Version, generate_timestamp

from finrag_pipelines.datasets.models import ModelDirectoryDataset
from finrag_pipelines.hooks import RunStopped
from finrag_pipelines.lineage_hooks import PinnedVersionMismatch
from finrag_pipelines.provenance.records import RecordStore
from finrag_pipelines.provenance.trace import Lineage, upstream
from finrag_pipelines.provenance.versions import latest_path, version_path, versions

ROOT = Path(__file__).resolve().parents[1]
BASE_RETRIEVERS = {"bm25", "bm25_plain", "dense", "hybrid_rrf", "hybrid_weighted"}
BASE_RETRIEVERS |= {"bm25_ngram", "fusion_weighted", "fusion_learned", "fusion"}  # n-grams, fusion
FINETUNED_RETRIEVERS = {
    "dense_pretrained",
    "dense_finetuned",
    "hybrid_rrf_finetuned",
    "hybrid_weighted_finetuned",
}
RETRIEVERS = BASE_RETRIEVERS | FINETUNED_RETRIEVERS
RERANK_RETRIEVERS = {f"{r}_rerank{s}" for r in ("bm25", "hybrid_weighted") for s in ("", "_finetuned")}
METRIC_KEYS = {"top1", "top3", "top5", "top10", "mrr@10", "recall@10", "ndcg@10", "n_queries"}


def _read(project: Path, path: str) -> str:
    """The text of an artefact, its latest version when it is versioned (as the catalog reads it)."""
    return latest_path(project / path).read_text(encoding="utf-8")


def _json(project: Path, path: str):
    """A JSON artefact (latest version); an index folder's path reads its ``meta.json``."""
    found = latest_path(project / path)
    return json.loads((found / "meta.json" if found.is_dir() else found).read_text(encoding="utf-8"))


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A copy of the project's configuration and the small bundled BEIR set in a scratch folder."""
    for name in ("conf", "pyproject.toml", ".telemetry"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    shutil.copytree(
        ROOT / "data/01_raw/retrieval/disc_finllm", tmp_path / "data/01_raw/retrieval/disc_finllm"
    )
    shutil.copytree(ROOT / "data/01_raw/personas", tmp_path / "data/01_raw/personas")
    (tmp_path / "src").mkdir()  # the package itself is installed; Kedro only wants the source folder to exist
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "1")
    return tmp_path


@pytest.mark.slow
def test_default_pipeline_runs_end_to_end_and_resumes(project):
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="test") as session:
        session.run()
    metrics = _json(project, "data/08_reporting/retrieval_metrics.json")
    assert set(metrics) == RETRIEVERS
    for retriever, row in metrics.items():
        assert set(row) == METRIC_KEYS, retriever
        assert 0.0 <= row["mrr@10"] <= 1.0 and row["n_queries"] > 0
        assert row["top1"] <= row["top3"] <= row["top5"] <= row["top10"]
    # the bundled DISC set is easy for BM25: a pipeline that silently broke retrieval would score ~0
    assert metrics["bm25"]["top10"] > 0.5 and metrics["dense"]["top10"] > 0.3
    report = _read(project, "data/08_reporting/retrieval_report.md")
    assert "# Retrieval evaluation — `disc_finllm`" in report and "hybrid_weighted" in report
    assert latest_path(project / "data/08_reporting/retrieval_metrics.png").stat().st_size > 1000
    distill = _json(project, "data/08_reporting/disc_finllm/distill_report.json")
    assert distill["backend"] == "keyword" and distill["kept"] > 50 and distill["failed_documents"] == 0
    assert _json(project, "data/08_reporting/personas/persona_index_report.json")
    for index in ("bm25", "bm25_plain", "bm25_ngram", "dense_base", "dense_pretrained", "dense_finetuned"):
        assert _json(project, f"data/06_models/disc_finllm/{index}")["corpus_hash"]
    fusion = _json(project, "data/07_model_output/disc_finllm/fusion_settings.json")
    assert fusion["method"] in ("weighted", "learned") and fusion["selection"]["n_tune_queries"] > 0
    vocabulary = _json(project, "data/08_reporting/disc_finllm/vocabulary_ablation.json")
    assert vocabulary["decision"] in vocabulary["variants"] and "## First-stage fusion" in report
    # the chain went corpus → queries → negatives → fine-tune → index → evaluation
    finetune = _json(project, "data/08_reporting/embedding_finetune/finetune_report.json")
    assert finetune["steps"] == 3 and finetune["status"] == "finished"
    comparisons = _json(project, "data/08_reporting/disc_finllm/retrieval_comparisons.json")
    assert {("dense_finetuned", "dense_pretrained"), ("dense_finetuned", "dense")} <= {
        (c["a"], c["b"]) for c in comparisons
    }
    # reranker_finetune is not in the default chain: the rerank stage has no model yet and says so
    reranked = [c for c in comparisons if "_rerank" in c["a"] + c["b"]]
    assert reranked and all(c["status"] == "skipped" and "reranker" in c["reason"] for c in reranked)
    # the Lucene twin is off (index_build.lucene.compare: false): its comparison is skipped with the reason
    lucene = [c for c in comparisons if "bm25_lucene" in (c["a"], c["b"])]
    assert lucene and all(c["status"] == "skipped" and "lucene.compare" in c["reason"] for c in lucene)
    assert all("mean_diff" in c for c in comparisons if c not in reranked and c not in lucene)
    # then the evaluation questions were answered offline: extractive single_shot, LLM systems not evaluated
    answers = _json(project, "data/08_reporting/rag/answer_metrics.json")
    assert "single_shot" in answers and "agent" not in answers
    assert answers["single_shot"]["search_recall"] > 0.5 and answers["single_shot"]["failed"] == 0
    assert "not evaluated" in _read(project, "data/08_reporting/rag/answer_report.md")
    # reports, index meta.json files and the embedding cache name paths relative to the project, never the
    # machine's
    written = [
        *(project / "data/08_reporting").rglob("*.json"),
        *(project / "data/08_reporting").rglob("*.md"),
        *(project / "data/06_models").rglob("meta.json"),
        *(project / "data/04_feature/embedding_cache").glob("*/encoder.json"),
        *(project / "data/09_tracking/lineage").glob("*.json"),
    ]
    written = [p for p in written if p.is_file()]
    assert len(written) > 15
    roots = {str(project), str(project.resolve())}
    leaks = [str(p) for p in written if any(r in p.read_text(encoding="utf-8") for r in roots)]
    assert not leaks, f"absolute project paths in {leaks}"
    assert "data/06_models/embedding_finetuned/merged" in report

    # a second run finds every document vector in the embedding cache: no new shard is written
    cache = project / "data/04_feature/embedding_cache"
    shards = sorted(p for p in cache.rglob("*") if p.is_file())
    assert shards
    with KedroSession.create(project_path=project, env="test") as session:
        session.run(pipeline_names=["index_build"])
    assert sorted(p for p in cache.rglob("*") if p.is_file()) == shards

    # the rerank stage: reranker_finetune builds a tiny base reranker and trains it on the mined rows;
    # evaluation then reranks bm25 and hybrid_weighted with both and compares them
    with KedroSession.create(project_path=project, env="test") as session:
        session.run(pipeline_names=["reranker_finetune", "evaluation"])
    metrics = _json(project, "data/08_reporting/retrieval_metrics.json")
    assert set(metrics) == RETRIEVERS | RERANK_RETRIEVERS
    reports = project / "data/08_reporting"
    comparisons = json.loads(latest_path(reports / "disc_finllm/retrieval_comparisons.json").read_text())
    assert all("mean_diff" in c for c in comparisons if "bm25_lucene" not in (c["a"], c["b"]))
    report = json.loads(latest_path(reports / "reranker_finetune/reranker_finetune_report.json").read_text())
    assert report["steps"] == 3 and report["rows"]["dropped_query_too_long"] == 0
    _versions_lineage_and_an_older_model(project)


def _session_run(project: Path, **kwargs) -> None:
    with KedroSession.create(project_path=project, env="test") as session:
        session.run(**kwargs)


def _retrained(model: Path, out: Path) -> Path:
    """A copy of ``model`` with other weights: what a second fine-tune with other settings leaves."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(model, out)
    tensors = load_file(out / "model.safetensors")
    first = min(tensors)
    tensors[first] = tensors[first] + 0.05
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    return out


def _versions_lineage_and_an_older_model(project: Path) -> None:
    """Three runs so far (default chain, index_build, reranker_finetune + evaluation)."""
    store = RecordStore(project / "data/09_tracking/lineage")
    first, second, third = store.run_ids()
    # every run saved its results as a new version named by its run id; a load reads the newest
    assert versions(project / "data/06_models/disc_finllm/bm25") == [first, second]
    assert versions(project / "data/08_reporting/retrieval_metrics.json") == [first, third]
    assert versions(project / "data/06_models/embedding_finetuned/merged") == [first]
    # where the metrics came from: the distilled queries' prompt hash and the corpus hash are upstream
    distilled = latest_path(project / "data/05_model_input/disc_finllm/distilled_queries.parquet")
    found = upstream(Lineage(store.all()).trace("retrieval_metrics"))
    assert set(pd.read_parquet(distilled)["prompt_hash"]) <= set(found["prompt_hash"])
    assert _json(project, "data/06_models/disc_finllm/bm25")["corpus_hash"] in found["corpus_hash"]

    # an older fine-tuned model: a newer one (other weights) is saved and indexed, then evaluation is asked
    # to use the first one against today's indexes
    model = project / "data/06_models/embedding_finetuned/merged"
    newer = _retrained(version_path(model, first), project / "retrained")
    ModelDirectoryDataset(str(model), version=Version(None, generate_timestamp())).save(newer)
    build = "index_build_finetuned.build_dense_finetuned_index"
    _session_run(project, pipeline_names=["index_build"], node_names=[build])
    evaluate = {"pipeline_names": ["evaluation"], "to_outputs": ["run_dense_finetuned"]}
    # a configuration error: the run stops in one line (hooks.RunStopHooks) with the pin's hint
    with pytest.raises(RunStopped, match="encoder fingerprint differs") as refused:
        _session_run(project, load_versions={"finetuned_model@dir": first}, **evaluate)
    assert isinstance(refused.value.__cause__, PinnedVersionMismatch)
    # the refusal names the index version built from the pinned model (runs 1 and 2 built one each)
    pins = re.search(r"add --load-versions (\S+)", str(refused.value)).group(1)
    index = dict(p.split(":", 1) for p in pins.split(","))["dense_finetuned_index"]
    assert index in (first, second)
    pinned = {"finetuned_model": first, "dense_finetuned_index": index}
    _session_run(project, load_versions=pinned, **evaluate)
    runs = project / "data/07_model_output/disc_finllm/runs/dense_finetuned.parquet"
    assert pd.read_parquet(latest_path(runs)).equals(pd.read_parquet(version_path(runs, first)))


@pytest.mark.slow
def test_cli_evaluates_any_beir_folder_given_at_run_time(project):
    other = project / "elsewhere/my_set"
    shutil.copytree(project / "data/01_raw/retrieval/disc_finllm", other)
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "400"}
    cmd = [
        sys.executable,
        "-m",
        "kedro",
        "run",
        "--env",
        "test",
        "--pipelines",
        "index_build,evaluation",
        "--params",
        f"retrieval_dataset={other},evaluation.fusion.rrf_k=30",
    ]
    result = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = _json(project, "data/08_reporting/my_set/corpus_prep_report.json")
    assert report["documents_in"] == 139 and report["queries"] == 61
    assert (latest_path(project / "data/06_models/my_set/bm25") / "meta.json").is_file()
    report_md = _read(project, "data/08_reporting/retrieval_report.md")
    assert "# Retrieval evaluation — `my_set`" in report_md
    # no fine-tuned model in this fresh project: those retrievers are reported as not evaluated, never scored
    metrics = _json(project, "data/08_reporting/retrieval_metrics.json")
    assert set(metrics) == BASE_RETRIEVERS
    status = _json(project, "data/08_reporting/my_set/retriever_status.json")
    # the fine-tuned model is versioned: no version of it exists in this project yet
    assert all(
        status[name].startswith("not evaluated: ") and "embedding_finetune" in status[name]
        for name in FINETUNED_RETRIEVERS
    ), {name: status[name] for name in FINETUNED_RETRIEVERS}
    assert "Not evaluated (no score recorded)" in report_md


@pytest.mark.slow
def test_bad_corpus_fails_with_file_and_line(project):
    bad = project / "bad_set"
    shutil.copytree(project / "data/01_raw/retrieval/disc_finllm", bad)
    lines = (bad / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    lines[4] = lines[2]  # a duplicate id on line 5
    (bad / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "400"}
    cmd = [
        sys.executable,
        "-m",
        "kedro",
        "run",
        "--env",
        "test",
        "--pipelines",
        "corpus_prep",
        "--params",
        f"retrieval_dataset={bad}",
    ]
    result = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "corpus.jsonl:5: duplicate document id 'd2' (first seen at" in result.stdout + result.stderr


def _distill_behaviour(body, n):
    """Stage 1: a valid plan; stage 2: a Chinese question built from the passage (unique per document)."""
    import re

    from finrag_pipelines.llm.stub_server import Reply

    user = body["messages"][-1]["content"]
    if "候选提问人" in user:
        return Reply(
            content='{"character": 1, "question_type": "keywords", "difficulty": "university"}', delay_s=0.05
        )
    passage = user.split("【文档】", 1)[1]
    han = "".join(re.findall(r"[\u4e00-\u9fff]", passage))[:10]
    return Reply(content=f"请问{han}是什么情况？", delay_s=0.05)


@pytest.mark.slow
def test_kill_9_during_distillation_resumes_without_repeating_calls(project):
    """A real `kedro run` against a real local endpoint, killed with SIGKILL mid-way, then run again."""
    import signal
    import time

    import pandas as pd

    from finrag_pipelines.llm.stub_server import ScriptedOpenAIServer

    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "COLUMNS": "400"}
    base = [sys.executable, "-m", "kedro", "run", "--env", "test"]
    prepared = subprocess.run(base, cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert prepared.returncode == 0, prepared.stdout[-2000:] + prepared.stderr[-2000:]
    docs = len(pd.read_parquet(project / "data/02_intermediate/disc_finllm/document_personas.parquet"))

    with ScriptedOpenAIServer(_distill_behaviour) as server:
        params = (
            f"llm.backend=openai,llm.base_url={server.base_url},llm.model=stub,llm.max_concurrency=4,"
            "query_distill.clean.round_trip.enabled=false"
        )
        cmd = base + ["--pipelines", "query_distill", "--params", params]
        proc = subprocess.Popen(
            cmd, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + 120
        while server.count < docs // 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        first = server.count
        assert 0 < first < 2 * docs  # killed part-way through

        rerun = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
        second = server.count - first
    # every answer received before the kill was replayed from the journal: only the rest (and at most the
    # requests that were in flight when the process died) went to the endpoint again
    assert first + second <= 2 * docs + 4 and second < 2 * docs
    distilled = latest_path(project / "data/05_model_input/disc_finllm/distilled_queries.parquet")
    queries = pd.read_parquet(distilled)
    assert queries["doc_id"].is_unique and set(queries["model"]) == {"stub"}
    assert len(queries) > docs * 0.8
