"""LayeredConfigLoader: ``conf/<env>/env.yml`` with ``extends: <env>`` loads base, the parent,
then the env."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kedro.config import OmegaConfigLoader

from finrag_pipelines.config_loader import LayeredConfigLoader
from finrag_pipelines.settings import CONFIG_LOADER_ARGS

ROOT = Path(__file__).resolve().parents[1]


def _write(conf: Path, files: dict[str, object]) -> None:
    for name, content in files.items():
        path = conf / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(content, allow_unicode=True), encoding="utf-8")


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    conf = tmp_path / "conf"
    _write(
        conf,
        {
            "base/parameters.yml": {"train": {"lr": 1, "steps": 100, "dtype": "bf16"}},
            "base/globals.yml": {"encoders": {"big": {"kind": "hf", "max_length": 512}}, "role": "big"},
            "base/catalog.yml": {"corpus": {"type": "MemoryDataset"}, "index": {"type": "MemoryDataset"}},
            "base/credentials.yml": {"llm": {"api_key": "EMPTY"}},
            "offline/parameters.yml": {"train": {"dtype": "fp32", "steps": 80}},
            "offline/globals.yml": {"role": "small", "encoders": {"big": {"max_length": 128}}},
            "small/env.yml": {"extends": "offline"},
            "small/parameters_x.yml": {"train": {"steps": 3}},
            "small/catalog.yml": {
                "_dir": "${runtime_params:where,data}",
                "index": {"type": "pandas.ParquetDataset", "filepath": "${_dir}/index.parquet"},
            },
            "small/credentials.yml": {"milvus": {"token": "t"}},
        },
    )
    return conf


def _loader(conf: Path, env: str, cls=LayeredConfigLoader, **runtime):
    return cls(str(conf), env=env, runtime_params=runtime or None, **CONFIG_LOADER_ARGS)


def test_an_environment_that_extends_another_is_base_then_parent_then_itself(conf: Path):
    loader = _loader(conf, "small")
    assert loader.env_layers() == ["offline", "small"]
    assert loader["parameters"] == {"train": {"lr": 1, "steps": 3, "dtype": "fp32"}}  # key by key
    assert loader["globals"] == {"encoders": {"big": {"kind": "hf", "max_length": 128}}, "role": "small"}
    catalog = loader["catalog"]
    assert catalog["corpus"] == {"type": "MemoryDataset"}  # catalog entries are replaced whole
    assert catalog["index"] == {"type": "pandas.ParquetDataset", "filepath": "data/index.parquet"}
    assert loader["credentials"] == {"llm": {"api_key": "EMPTY"}, "milvus": {"token": "t"}}


def test_runtime_params_reach_every_layer(conf: Path):
    loader = _loader(conf, "small", train={"lr": 5}, where="elsewhere")
    assert loader["parameters"]["train"] == {"lr": 5, "steps": 3, "dtype": "fp32"}
    assert loader["catalog"]["index"]["filepath"] == "elsewhere/index.parquet"


def test_an_environment_without_env_yml_loads_exactly_as_omegaconfigloader(conf: Path):
    for env in ("offline", "base"):
        layered, plain = _loader(conf, env), _loader(conf, env, cls=OmegaConfigLoader)
        for key in ("parameters", "globals", "catalog", "credentials"):
            assert layered[key] == plain[key], (env, key)


@pytest.mark.parametrize(
    ("files", "error", "match"),
    [
        ({"small/env.yml": {"extends": "nowhere"}}, ValueError, "extends 'nowhere', but .*nowhere does not"),
        ({"small/env.yml": {"extends": "base"}}, ValueError, "extends 'base' already"),
        ({"small/env.yml": {"extend": "offline"}}, ValueError, "expected only the key"),
        ({"offline/env.yml": {"extends": "small"}}, ValueError, "cycle: small -> offline -> small"),
    ],
)
def test_a_wrong_env_yml_is_refused_naming_the_file(conf: Path, files, error, match):
    _write(conf, files)
    with pytest.raises(error, match=match):
        _loader(conf, "small")


def test_the_project_environments_extend_demo():
    """test = demo on the small set; milvus = demo with Milvus indexes (conf/README.md)."""
    for env, layers in (("test", ["demo", "test"]), ("milvus", ["demo", "milvus"]), ("demo", ["demo"])):
        loader = _loader(ROOT / "conf", env)
        assert loader.env_layers() == layers
        assert loader["parameters"]["llm"]["backend"] == "keyword"
        assert loader["globals"]["encoder_roles"] == {"base": "use", "persona": "use"}
    assert _loader(ROOT / "conf", "test")["globals"]["retrieval_dataset"].endswith("disc_finllm")
    milvus = _loader(ROOT / "conf", "milvus")
    assert milvus["catalog"]["bm25_index"]["type"].endswith("MilvusBM25IndexDataset")
    assert set(milvus["credentials"]) == {"llm", "milvus"}
