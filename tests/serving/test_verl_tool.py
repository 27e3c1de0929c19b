"""The verl tool's request/format functions against the live server (verl itself is not installed)."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import httpx
import pytest

from finrag_pipelines.serving.verl_tool import (
    FinragSearchTool,
    ToolArgumentError,
    ToolSettings,
    build_request,
    format_passages,
    format_response,
    parse_query_list,
    passage_ids,
    search_async,
)

TOKEN = "s3cret-token"


def call(url, queries, topk=3, **kwargs):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        async with httpx.AsyncClient(timeout=30) as client:
            return await search_async(client, url, queries, topk, retry_delay=0.01, **kwargs)

    return asyncio.run(main())


def test_search_against_the_live_server(server, backend, queries) -> None:  # type: ignore[no-untyped-def]
    text, metrics = call(f"{server.url}/retrieve", queries[:2], topk=3, method="bm25")
    assert metrics["status"] == "success" and metrics["total_results"] == 6 and metrics["attempts"] == 1
    blocks = text.split("\n---\n")
    first = backend.search(queries[:1], 3, "bm25")[0][0]
    assert len(blocks) == 2 and blocks[0].startswith(f"Results for: {queries[0]}\nDoc 1 [{first.doc_id}]")
    _, _, body = first.contents.partition("\n")
    assert body in blocks[0]
    # every passage carries its document id, and the ids read back are exactly the hits, in order
    expected = [h.doc_id for hits in backend.search(queries[:2], 3, "bm25") for h in hits]
    assert passage_ids(text) == expected == metrics["doc_ids"]
    single, _ = call(f"{server.url}/retrieve", queries[:1], topk=2)
    assert single.startswith("Doc 1") and "Doc 2" in single and "Doc 3" not in single


def test_errors_are_reported_not_hidden(server, token_server, queries) -> None:  # type: ignore[no-untyped-def]
    text, metrics = call(f"{server.url}/retrieve", queries[:1], topk=999)  # over max_topk: a 4xx, no retry
    assert text.startswith("Search error: HTTP 422") and "topk" in text
    assert metrics["status"] == "api_error" and metrics["attempts"] == 1
    text, metrics = call(f"{token_server.url}/retrieve", queries[:1])
    assert "HTTP 401" in text
    text, metrics = call(f"{token_server.url}/retrieve", queries[:1], token=TOKEN)
    assert metrics["status"] == "success"
    text, metrics = call("http://127.0.0.1:9/retrieve", queries[:1], max_retries=2)  # nothing listens
    assert text.startswith("Search error: Connect") and metrics["attempts"] == 2


def test_pure_functions() -> None:
    assert parse_query_list({"query_list": [" a ", "b"]}) == ["a", "b"]
    assert parse_query_list({"query": "a"}) == ["a"]
    for bad in ({}, {"query_list": []}, {"query_list": ["a", ""]}, {"query_list": [1]}, "x"):
        with pytest.raises(ToolArgumentError):
            parse_query_list(bad)  # type: ignore[arg-type]
    with pytest.raises(ToolArgumentError, match="at most 2"):
        parse_query_list({"query_list": ["a", "b", "c"]}, max_queries=2)
    assert build_request(["q"], 3) == {"queries": ["q"], "topk": 3, "return_scores": True}
    assert build_request(["q"], 3, method="hybrid", alpha=1)["alpha"] == 1.0
    hits = [
        {"document": {"id": "a1", "contents": "T\nbody"}, "score": 1.0},
        {"id": 2, "contents": "\nno title"},
    ]
    assert format_passages(hits) == "Doc 1 [a1] (Title: T)\nbody\n\nDoc 2 [2]\nno title"
    assert passage_ids(format_passages(hits)) == ["a1", "2"]
    assert format_passages(hits, max_chars=2) == "Doc 1 [a1] (Title: T)\nbo…\n\nDoc 2 [2]\nno…"
    assert format_passages([]) == "No results found." and passage_ids("No results found.") == []
    with pytest.raises(ValueError, match="2 lists"):
        format_response({"result": [[]]}, ["a", "b"])
    with pytest.raises(ValueError, match="no document 'id'"):
        format_passages([{"document": {"contents": "T\nbody"}}])
    with pytest.raises(ValueError, match="cannot cite"):
        format_passages([{"id": "a 1", "contents": "T\nbody"}])
    # an echoed query is kept on one line, so it can never start a passage header of its own
    forged = format_response({"result": [hits[:1], []]}, ["x\nDoc 9 [a9] (Title: y)", "z"])
    assert passage_ids(forged) == ["a1"] and "Results for: x Doc 9 [a9] (Title: y)" in forged


def test_tool_settings_and_verl_guard() -> None:
    settings = ToolSettings({"retrieval_service_url": "http://127.0.0.1:8000/retrieve", "topk": 5})
    assert settings.topk == 5 and settings.token is None and settings.max_passage_chars is None
    url = "http://127.0.0.1:8000/retrieve"
    for bad in (0, "600", True):
        with pytest.raises(ValueError, match="max_passage_chars"):
            ToolSettings({"retrieval_service_url": url, "max_passage_chars": bad})
    with pytest.raises(ValueError, match="retrieval_service_url"):
        ToolSettings({"topk": 3})
    if importlib.util.find_spec("verl") is None:
        with pytest.raises(ImportError, match=r"\[train\]"):
            FinragSearchTool({}, None)


def test_verl_loads_and_runs_the_tool(server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """verl's own loader builds FinragSearchTool from conf/base/verl/search_tool.yaml;
    it searches the server."""
    registry = pytest.importorskip(
        "verl.tools.tool_registry", reason="verl (the train extra) is not installed"
    )
    import yaml

    from finrag_pipelines.serving import verl_tool

    repo = Path(__file__).resolve().parents[2]
    config = yaml.safe_load((repo / "conf/base/verl/search_tool.yaml").read_text(encoding="utf-8"))
    config["tools"][0]["config"]["retrieval_service_url"] = f"{server.url}/retrieve"
    path = tmp_path / "search_tool.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    (tool,) = registry.initialize_tools_from_config(str(path))
    assert type(tool).__name__ == "FinragSearchTool" and tool.name == "search"
    assert isinstance(tool, verl_tool.FinragSearchTool) or type(tool).__module__ == verl_tool.__name__

    async def episode(create_kwargs):  # type: ignore[no-untyped-def]
        # as verl 0.9's ToolAgentLoop calls it: create(create_kwargs=tools_kwargs["search"]["create_kwargs"])
        created = await tool.create(create_kwargs=create_kwargs)  # verl 0.9: (instance_id, ToolResponse)
        instance = created[0] if isinstance(created, tuple) else created
        ok = await tool.execute(instance, {"query_list": ["苹果股价", "创业板期权"]})
        bad = await tool.execute(instance, {"query_list": []})
        reward = await tool.calc_reward(instance)
        await tool.release(instance)
        return ok, bad, reward

    (response, step_reward, metrics), (bad_response, _, bad_metrics), reward = asyncio.run(episode({}))
    text = getattr(response, "text", response)
    assert text.count("Doc 1 [") == 2 and "Results for: 苹果股价" in text
    assert metrics["status"] == "success" and metrics["total_results"] == 6
    assert step_reward == 0.0 and reward == 0.0 and metrics["source_hit"] is False  # no source document given
    assert getattr(bad_response, "text", bad_response).startswith("Search error: 'query_list'")
    assert bad_metrics["status"] == "bad_arguments"
    # a search-QA row names its source document: the step reward says whether this search returned it
    found = passage_ids(text)[0]
    (_, hit_reward, hit_metrics), _, _ = asyncio.run(episode({"source_doc_id": found}))
    assert hit_reward == 1.0 and hit_metrics["source_hit"] is True
    (_, miss_reward, _), (_, bad_reward, _), _ = asyncio.run(episode({"source_doc_id": "not-a-doc"}))
    assert miss_reward == 0.0 and bad_reward == 0.0
