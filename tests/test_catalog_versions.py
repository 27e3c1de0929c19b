"""--load-versions applies to every view of one versioned artefact; which catalog entries are versioned."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kedro.io import DatasetError

from finrag_pipelines.catalog import ProjectDataCatalog, expand_load_versions, storage_root
from finrag_pipelines.lineage_hooks import pinned_input_hint

ROOT = Path(__file__).resolve().parents[1]
V1, V2 = "2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"
MODEL = "data/06_models/embedding_finetuned/merged"

CATALOG = {
    "finetuned_model@dir": {"type": "x.ModelDirectoryDataset", "path": MODEL, "versioned": True},
    "finetuned_model@encoder": {
        "type": "x.EncoderDataset", "encoder": {"kind": "hf", "model_path": MODEL}, "versioned": True,
    },
    "dense_finetuned_index": {"type": "x.FaissIndexDataset", "path": "data/06_models/s/dense_finetuned",
                              "versioned": True},
    "dense_finetuned_index_meta": {"type": "x.IndexMetaDataset", "path": "data/06_models/s/dense_finetuned",
                                   "versioned": True},
    "milvus_index": {"type": "x.Milvus", "meta_path": "data/06_models/s/milvus/meta.json", "versioned": True},
    "corpus": {"type": "pandas.ParquetDataset", "filepath": "data/03_primary/corpus.parquet"},
}  # fmt: skip


def test_a_pin_applies_to_every_view_stored_under_the_same_path():
    assert expand_load_versions(CATALOG, {"finetuned_model@dir": V1}) == {
        "finetuned_model@dir": V1,
        "finetuned_model@encoder": V1,
    }
    # a transcoded dataset by its base name; an index pins its meta.json view too
    pins = expand_load_versions(CATALOG, {"finetuned_model": V1, "dense_finetuned_index": V2})
    assert pins == {
        "finetuned_model@dir": V1, "finetuned_model@encoder": V1,
        "dense_finetuned_index": V2, "dense_finetuned_index_meta": V2,
    }  # fmt: skip
    assert storage_root(CATALOG["milvus_index"]).endswith("data/06_models/s/milvus")
    assert storage_root(CATALOG["corpus"]) is None
    assert expand_load_versions(CATALOG, {"run_{x}": V1}) == {"run_{x}": V1}  # left to Kedro


def test_pins_that_cannot_mean_anything_are_refused():
    with pytest.raises(DatasetError, match="corpus is not versioned"):
        expand_load_versions(CATALOG, {"corpus": V1})
    with pytest.raises(DatasetError, match="both"):
        expand_load_versions(CATALOG, {"finetuned_model@dir": V1, "finetuned_model@encoder": V2})


def test_the_catalog_class_loads_the_pinned_version_through_every_view(tmp_path):
    config = {
        "m@dir": {"type": "finrag_pipelines.datasets.ModelDirectoryDataset", "path": str(tmp_path / "m"),
                  "versioned": True},
        "m@encoder": {"type": "finrag_pipelines.datasets.EncoderDataset", "optional": True, "versioned": True,
                      "encoder": {"kind": "hf", "model_path": str(tmp_path / "m")}},
    }  # fmt: skip
    catalog = ProjectDataCatalog.from_config(config, load_versions={"m@dir": V1})
    assert catalog.get("m@encoder")._version.load == V1 and catalog.get("m@dir")._version.load == V1


def test_result_artefacts_are_versioned_and_caches_are_not():
    entries = {}
    for path in (ROOT / "conf/base").glob("catalog*.yml"):
        entries.update(
            {k: v for k, v in yaml.safe_load(path.read_text(encoding="utf-8")).items() if k[0] != "_"}
        )
    results = (
        "distilled_queries", "distilled_query_audit", "infonce_train", "infonce_dev", "finetuned_model@dir",
        "finetuned_model@encoder", "reranker_finetuned@dir", "reranker_finetuned@reranker", "bm25_index",
        "dense_index", "dense_finetuned_index", "bm25_ngram_index", "bm25_index_meta", "retrieval_metrics",
        "retrieval_report", "run_{retriever}", "mcq_splits", "sft_train_parquet", "sft_launch_report",
        "rl_train_parquet", "rl_launch_report", "answer_metrics", "rag_report", "mcq_metrics",
        "persona_index",
    )  # fmt: skip
    assert [name for name in results if not entries[name].get("versioned")] == []
    # every index and its meta view (bm25_lucene too: an index added later cannot be left out)
    indexes = [name for name in entries if name.endswith(("_index", "_index_meta"))]
    assert "bm25_lucene_index_meta" in indexes
    assert [name for name in indexes if not entries[name].get("versioned")] == []
    for cache in ("embedding_store", "llm_journal"):
        assert not entries[cache].get("versioned")
    # every metric the issue asks to track is marked for MLflow
    marked = {n for n, e in entries.items() if "metrics" in str((e.get("metadata") or {}).get("mlflow"))}
    assert {"retrieval_metrics", "mcq_metrics", "answer_metrics", "mining_stats", "finetune_report"} <= marked


def test_a_mismatch_under_a_pin_names_the_index_version_built_from_the_pinned_model():
    records = [
        {"run_id": V1, "datasets": {
            "finetuned_model@dir": {"saved": {"version": V1}},
            "dense_finetuned_index": {"saved": {"version": V1}},
            "corpus": {"saved": {"version": None}}}},
        {"run_id": V2, "datasets": {
            "finetuned_model@dir": {"saved": {"version": V2}},
            "dense_finetuned_index": {"saved": {"version": V2}}}},
    ]  # fmt: skip
    inputs = ["dense_finetuned_index", "finetuned_model@encoder", "corpus", "params:evaluation.retrieve"]
    hint = pinned_input_hint(inputs, {"finetuned_model@dir": V1}, records)
    assert f"add --load-versions finetuned_model@dir:{V1},dense_finetuned_index:{V1}" in hint
    hint = pinned_input_hint(inputs, {"finetuned_model@dir": V1}, records[1:])
    assert "no recorded run built dense_finetuned_index from it" in hint and "index_build" in hint
    assert pinned_input_hint(["corpus"], {"finetuned_model@dir": V1}, records) == ""
