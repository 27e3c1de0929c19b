import pytest
from kedro.io import DatasetError

from finrag_pipelines.datasets.models import ModelDirectoryDataset


def test_model_directory_round_trip_and_errors(tmp_path):
    produced = tmp_path / "run" / "checkpoint-5-merged"
    produced.mkdir(parents=True)
    (produced / "config.json").write_text("{}")
    (produced / "model.safetensors").write_bytes(b"weights")
    dataset = ModelDirectoryDataset(str(tmp_path / "models" / "merged"))
    assert not dataset.exists()
    with pytest.raises(DatasetError, match="embedding_finetune"):
        dataset.load()
    dataset.save(produced)
    folder = dataset.load()
    assert (folder / "model.safetensors").read_bytes() == b"weights"
    (produced / "model.safetensors").write_bytes(b"newer")
    dataset.save(produced)  # replaces the previous model whole
    assert (dataset.load() / "model.safetensors").read_bytes() == b"newer"
    assert not (tmp_path / "models" / "merged.tmp").exists()
    with pytest.raises(DatasetError, match="not a model folder"):
        dataset.save(tmp_path)
