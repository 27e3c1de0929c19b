"""Run records, tracing a dataset version back through runs, and the retention rule (no Kedro)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from finrag_pipelines.provenance.fingerprints import fingerprint
from finrag_pipelines.provenance.records import RecordStore, RunRecorder, stable_hash
from finrag_pipelines.provenance.retention import apply_retention, plan_retention, recorded_roots
from finrag_pipelines.provenance.trace import Lineage, LineageError, render, upstream
from finrag_pipelines.provenance.versions import is_version, latest_path, version_path, versions

R1, R2, R3, R4 = (f"2026-01-0{i}T00.00.00.000Z" for i in range(1, 5))
MODEL = "data/06_models/finetuned/merged"
METRICS = "data/08_reporting/retrieval_metrics.json"
QUERIES = "data/05_model_input/distilled_queries.parquet"


def _vpath(root: str, version: str) -> str:
    return str(version_path(root, version))


def _record(run_id: str, nodes: dict, loaded: dict, saved: dict) -> dict:
    recorder = RunRecorder(run_id, "/proj")
    for name, (inputs, outputs) in nodes.items():
        recorder.node_started(name, inputs, outputs)
        recorder.node_finished(name)
    for kind, entries in (("loaded", loaded), ("saved", saved)):
        for name, (version, path, found) in entries.items():
            recorder.dataset(kind, name, version=version, path=path, fingerprint=found)
    return recorder.finish()


def _chain() -> list[dict]:
    """R1 distils queries (prompt p1) and fine-tunes; R2 evaluates R1's model on the corpus R1 made."""
    corpus = {"corpus_hash": "c0ffee", "data_hash": "d1"}
    r1 = _record(
        R1,
        {
            "corpus_prep.clean": (["corpus_raw"], ["corpus"]),
            "query_distill.distil": (["corpus", "params:query_distill"], ["distilled_queries"]),
            "embedding_finetune.train": (["distilled_queries"], ["finetuned_model@dir"]),
        },
        {"corpus_raw": (None, "raw/corpus.jsonl", {"data_hash": "raw1"})},
        {
            "corpus": (None, "data/03_primary/corpus.parquet", corpus),
            "distilled_queries": (R1, _vpath(QUERIES, R1), {"prompt_hash": ["p1"]}),
            "finetuned_model@dir": (R1, _vpath(MODEL, R1), {"training": {"data_hash": "t1"}}),
        },
    )
    r2 = _record(
        R2,
        {
            "evaluation.retrieve": (
                ["finetuned_model@encoder", "corpus", "params:evaluation"],
                ["run_dense"],
            ),
            "evaluation.summarise": (["run_dense"], ["retrieval_metrics"]),
        },
        {
            "finetuned_model@encoder": (R1, _vpath(MODEL, R1), {"encoder_fingerprint": "e1"}),
            "corpus": (None, "data/03_primary/corpus.parquet", corpus),
        },
        {"retrieval_metrics": (R2, _vpath(METRICS, R2), {"data_hash": "m2"})},
    )
    return [r1, r2]


def test_a_metric_is_traced_back_to_the_prompt_hash_and_the_corpus_hash():
    lineage = Lineage(_chain())
    step = lineage.trace("retrieval_metrics")
    assert (step.version, step.run_id, step.node) == (R2, R2, "evaluation.summarise")
    found = upstream(step)
    assert found["prompt_hash"] == {"p1": [f"distilled_queries@{R1}"]}
    assert set(found["corpus_hash"]) == {"c0ffee"} and found["encoder_fingerprint"] == {
        "e1": [f"finetuned_model@encoder@{R1}"]
    }
    text = "\n".join(render(step))
    # the model R2 read is followed to run R1 and the node that trained it, then to the distilled queries
    assert f"finetuned_model@encoder @ {R1}  made by embedding_finetune.train in run {R1}" in text
    assert "<- distilled_queries" in text and "prompt_hash=p1" in text
    # R2 read the unversioned corpus: it is matched to the run that saved the same content (R1)
    assert "corpus  made by corpus_prep.clean in run " + R1 in text
    read_by_r2 = next(s for s in step.inputs[0].inputs if s.dataset == "corpus")
    assert read_by_r2.run_id == R1 and read_by_r2.note == "unversioned; matched by content hash"
    assert lineage.trace("finetuned_model@dir", R1).node == "embedding_finetune.train"
    with pytest.raises(LineageError, match="recorded versions"):
        lineage.trace("retrieval_metrics", R4)
    with pytest.raises(LineageError, match="no recorded run saved"):
        lineage.trace("nothing")


def test_the_record_store_writes_reads_and_lists(tmp_path):
    store = RecordStore(tmp_path / "lineage")
    for record in _chain():
        store.write(record)
    assert (
        store.run_ids() == [R1, R2]
        and store.read(R2)["datasets"]["retrieval_metrics"]["saved"]["version"] == R2
    )
    assert stable_hash({"a": 1, "b": [2]}) == stable_hash({"b": [2], "a": 1})
    store.delete(R1)
    with pytest.raises(FileNotFoundError, match="no run record"):
        store.read(R1)


def test_fingerprints_name_the_corpus_prompt_and_index_hashes(tmp_path):
    corpus = pd.DataFrame({"doc_id": ["d1"], "title": ["t"], "text": ["x"]})
    found = fingerprint(corpus)
    assert found["rows"] == 1 and len(found["corpus_hash"]) == 64
    assert fingerprint(pd.DataFrame({"prompt_hash": ["b", "a", "a"]}))["prompt_hash"] == ["a", "b"]
    index = tmp_path / "index"
    index.mkdir()
    (index / "meta.json").write_text(json.dumps({"corpus_hash": "c", "encoder": {"fingerprint": "e"}}))
    found = fingerprint(object(), index)
    assert (found["corpus_hash"], found["encoder_fingerprint"]) == ("c", "e") and found["data_hash"]


def _versions_on_disk(project: Path, root: str, ids: list[str]) -> None:
    for version in ids:
        path = project / version_path(root, version)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(version)


def test_retention_keeps_the_last_versions_and_everything_a_kept_run_read(tmp_path):
    model, metrics = "data/models/merged", "data/reports/metrics.json"
    _versions_on_disk(tmp_path, model, [R1, R2])
    _versions_on_disk(tmp_path, metrics, [R1, R2, R3, R4])
    (tmp_path / model / "manual").mkdir()  # not a Kedro version: left alone
    (tmp_path / model / "manual" / "merged").write_text("x")
    records = [
        _record(R1, {}, {}, {"m": (R1, _vpath(model, R1), {})}),
        _record(R2, {}, {}, {"m": (R2, _vpath(model, R2), {})}),
        _record(R3, {}, {"m": (R1, _vpath(model, R1), {})}, {"x": (R3, _vpath(metrics, R3), {})}),
        _record(R4, {}, {"m": (R2, _vpath(model, R2), {})}, {"x": (R4, _vpath(metrics, R4), {})}),
    ]
    assert recorded_roots(records, tmp_path) == {tmp_path / model, tmp_path / metrics}
    plan = plan_retention([model, metrics], records, keep_last=1, project=tmp_path)
    # metrics keep R4 only; R4 read model R2 (the newest anyway); R1's model goes with R1..R3's metrics
    assert plan.keep[tmp_path / metrics] == [R4] and plan.delete[tmp_path / metrics] == [R1, R2, R3]
    assert plan.keep[tmp_path / model] == [R2] and plan.delete[tmp_path / model] == [R1]
    assert plan.foreign == {tmp_path / model: ["manual"]}
    assert plan.kept_runs == {R2, R4} and plan.delete_records == [R1, R3]
    # keeping run R3 keeps its metrics and the older model it read (and the record of R1, which made it)
    plan = plan_retention([model, metrics], records, keep_last=1, project=tmp_path, keep_runs=[R3])
    assert plan.keep[tmp_path / model] == [R1, R2] and plan.keep[tmp_path / metrics] == [R3, R4]
    assert (
        plan.delete_records == [] and plan.bytes_to_delete > 0 and "delete 2 versions" in plan.summary()[-1]
    )
    store = RecordStore(tmp_path / "lineage")
    for record in records:
        store.write(record)
    apply_retention(plan, store)
    assert versions(tmp_path / metrics) == [R3, R4] and versions(tmp_path / model) == [R1, R2]
    assert store.run_ids() == [R1, R2, R3, R4] and (tmp_path / model / "manual" / "merged").exists()
    with pytest.raises(ValueError, match="keep_last must be >= 1"):
        plan_retention([model], records, keep_last=0, project=tmp_path)


def test_versions_helpers(tmp_path):
    assert is_version(R1) and not is_version("manual") and not is_version("2026-01-01")
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    assert latest_path(plain) == plain
    _versions_on_disk(tmp_path, "v.json", [R2, R1])
    assert latest_path(tmp_path / "v.json") == tmp_path / version_path("v.json", R2)
    with pytest.raises(FileNotFoundError, match="run the pipeline that writes it"):
        latest_path(tmp_path / "missing.json")
