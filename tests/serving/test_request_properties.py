"""``POST /retrieve`` never answers 5xx to a body a client sends: property-based (hypothesis) and regressions.

The server is the real uvicorn app over the test indexes (hash encoder, real BM25 and FAISS), with the
project's request limits (256 KiB bodies), so a deeply nested body reaches the JSON parser.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finrag_pipelines.serving.app import create_app
from finrag_pipelines.serving.server import ServerThread

PROPERTY = settings(
    max_examples=120,
    deadline=timedelta(seconds=5),  # one local HTTP request; generous for a loaded 2-core machine
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
)


@pytest.fixture(scope="module")
def client(backend_factory, settings_factory) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    """A client of a real server with the project's default limits (only the batch wait is shorter)."""
    app = create_app(backend_factory(), settings_factory(batcher={"max_batch": 64, "max_wait_ms": 1}))
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def post(client: httpx.Client, body: bytes) -> httpx.Response:
    return client.post("/retrieve", content=body, headers={"Content-Type": "application/json"})


def assert_answered(response: httpx.Response, body: Any = None) -> None:
    """2xx with one result list per query, or 4xx whose ``detail`` names the problem; never 5xx."""
    assert response.status_code < 500, (response.status_code, response.text[:500])
    payload = response.json()
    if response.status_code == 200:
        assert isinstance(body, dict)
        assert len(payload["result"]) == len(body["queries"])
    else:
        assert 400 <= response.status_code < 500
        assert payload["detail"]
        assert payload["errors"][0]["field"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (b"[" * 200_000, "body", "nested too deeply"),
        (b'{"queries": ' + b"[" * 100_000, "body", "nested too deeply"),
        (
            b'{"queries": ["a"], "x": ' + b'{"a": ' * 20_000 + b"1" + b"}" * 20_000 + b"}",
            "body",
            "nested too deeply",
        ),
        (b'{"queries": ["a"], "topk": 1' + b"0" * 5000 + b"}", "body", "not valid JSON"),
        (b'{"queries": ["a\\ud800b"]}', "queries", "lone surrogate \\ud800 at character 1"),
    ],
)
def test_unparsable_bodies_get_a_4xx_naming_the_problem(
    client: httpx.Client, body: bytes, field: str, message: str
) -> None:
    response = post(client, body)
    assert 400 <= response.status_code < 500, response.text[:300]
    assert response.json()["errors"][0]["field"].startswith(field)
    assert message in response.json()["detail"]


@PROPERTY
@given(body=st.binary(max_size=2048))
def test_any_bytes_get_2xx_or_4xx(client: httpx.Client, body: bytes) -> None:
    assert_answered(post(client, body))


# any character, and often one that has tripped servers: lone surrogates (sent as JSON \u escapes),
# NUL, zero-width and full-width spaces, a BOM, newlines
TRICKY = ["\ud800", "\udfff", "\x00", "\u200b", "\ufeff", "\u3000", "\n", "\t", "公", "司", "a", "1"]
# (a list joined, not st.text: st.text merges the alphabets and the tricky ones become rare)
CHAR = st.one_of(st.characters(codec=None, exclude_categories=()), st.sampled_from(TRICKY))
TEXT = st.lists(CHAR, max_size=40).map("".join)
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
# mostly well-typed requests, so that the search itself runs on odd queries and options
REQUEST = st.fixed_dictionaries(
    {"queries": st.one_of(st.lists(TEXT, min_size=1, max_size=5), JSON_VALUE)},
    optional={
        "topk": st.one_of(st.integers(-3, 60), JSON_VALUE),
        "return_scores": st.booleans(),
        "method": st.sampled_from(["dense", "bm25", "hybrid", "sparse"]),
        "alpha": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2, 2)),
        "extra": JSON_VALUE,
    },
)


@PROPERTY
@given(body=st.one_of(REQUEST, JSON_VALUE))
def test_any_json_gets_2xx_or_4xx(client: httpx.Client, body: Any) -> None:
    # json.dumps writes NaN/Infinity (accepted by Python's parser) and escapes lone surrogates
    assert_answered(post(client, json.dumps(body).encode()), body)
