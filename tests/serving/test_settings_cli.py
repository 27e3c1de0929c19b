"""Serving settings validation, the verl tool config file, and the CLI's refusal paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from finrag_pipelines.provenance.versions import versions
from finrag_pipelines.serve import main, resolve_token
from finrag_pipelines.serving.settings import ServingConfigError, load_settings

_REPO = Path(__file__).resolve().parents[2]


def _conf() -> dict:
    return yaml.safe_load((_REPO / "conf/base/parameters_serving.yml").read_text(encoding="utf-8"))["serving"]


def test_project_settings_are_valid() -> None:
    settings = load_settings(_conf())
    # auto: fusion when evaluation wrote fusion settings, else hybrid (the default before fusion existed)
    assert settings.method == "auto" and settings.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"method": "sparse"}, "serving.method"),
        ({"alpha": 1.5}, "serving.alpha"),
        ({"alpha": "best"}, "serving.alpha"),
        ({"port": 70000}, "serving.port"),
        ({"typo_key": 1}, "serving.typo_key"),
        ({"default_topk": 500}, "default_topk"),
    ],
)
def test_bad_settings_name_the_key(change: dict, key: str) -> None:
    with pytest.raises(ServingConfigError, match=key.replace(".", r"\.")):
        load_settings({**_conf(), **change})


def test_missing_key_is_named() -> None:
    conf = _conf()
    del conf["limits"]
    with pytest.raises(ServingConfigError, match="serving.limits"):
        load_settings(conf)


def test_verl_tool_config_matches_the_tool() -> None:
    config = yaml.safe_load((_REPO / "conf/base/verl/search_tool.yaml").read_text(encoding="utf-8"))
    (tool,) = config["tools"]
    assert tool["class_name"] == "finrag_pipelines.serving.verl_tool.FinragSearchTool"
    assert tool["config"]["type"] == "native"
    assert tool["config"]["retrieval_service_url"].endswith(f":{_conf()['port']}/retrieve")
    function = tool["tool_schema"]["function"]
    assert function["name"] == "search"
    assert function["parameters"]["required"] == ["query_list"]
    assert function["parameters"]["properties"]["query_list"]["type"] == "array"


def test_token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_token(None) is None
    monkeypatch.setenv("FINRAG_TEST_TOKEN", "abc")
    assert resolve_token("FINRAG_TEST_TOKEN") == "abc"
    monkeypatch.delenv("FINRAG_TEST_TOKEN")
    with pytest.raises(SystemExit, match="FINRAG_TEST_TOKEN"):
        resolve_token("FINRAG_TEST_TOKEN")


def test_cli_refuses_bad_flags() -> None:
    with pytest.raises(SystemExit):
        main(["--method", "sparse"])
    with pytest.raises(SystemExit, match="alpha"):
        main(["--alpha", "lots", "--project-dir", str(_REPO)])


@pytest.mark.slow
def test_demo_project_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo artefacts load through the Kedro catalog (checked against corpus + encoder) and serve."""
    import httpx

    from finrag_pipelines.serve import load_from_project
    from finrag_pipelines.serving.app import create_app
    from finrag_pipelines.serving.server import ServerThread

    if not versions(_REPO / "data/06_models/fintruthqa/dense_base"):
        pytest.skip("demo artefacts missing; run `kedro run --env demo` first")
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "1")
    backend, settings = load_from_project(_REPO, "demo", {"method": "hybrid"})
    assert backend.methods[:3] == ("dense", "bm25", "hybrid")  # + bm25_ngram, fusion once built
    assert backend.alpha_source.startswith("tuned")
    with ServerThread(create_app(backend, settings)) as server:
        assert httpx.get(f"{server.url}/health").status_code == 200
        response = httpx.post(
            f"{server.url}/retrieve",
            json={"queries": ["公司的营业收入是多少"], "topk": 3, "return_scores": True},
            timeout=60,
        )
        assert response.status_code == 200
        assert len(response.json()["result"][0]) == 3
