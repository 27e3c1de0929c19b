"""The real HTTP server (uvicorn on a free local port): schema, equality, limits, auth, health, batching."""

from __future__ import annotations

import asyncio
import http.client
import json

import httpx
import pytest

from finrag_pipelines.serving.app import create_app

TOKEN = "s3cret-token"


def post(server, body, **kwargs):  # type: ignore[no-untyped-def]
    return httpx.post(f"{server.url}/retrieve", json=body, timeout=30, **kwargs)


def ids(result):  # type: ignore[no-untyped-def]
    return [[hit["document"]["id"] for hit in hits] for hits in result]


def test_search_r1_schema_order_and_topk(server, backend, queries) -> None:  # type: ignore[no-untyped-def]
    response = post(server, {"queries": queries[:4], "topk": 4, "return_scores": True})
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert len(result) == 4
    for hits in result:
        assert len(hits) == 4
        for hit in hits:
            assert set(hit) == {"document", "score"}
            assert set(hit["document"]) == {"id", "contents"}
            assert isinstance(hit["score"], float)
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    # query order: each list equals that query searched alone, and the reversed request reverses them
    alone = [
        post(server, {"queries": [q], "topk": 4, "return_scores": True}).json()["result"][0]
        for q in queries[:4]
    ]
    assert ids(result) == ids(alone)
    reversed_result = post(server, {"queries": queries[:4][::-1], "topk": 4, "return_scores": True}).json()[
        "result"
    ]
    assert ids(reversed_result) == ids(result)[::-1]


def test_results_equal_the_backend(server, backend, queries) -> None:  # type: ignore[no-untyped-def]
    for method in ("dense", "bm25", "hybrid"):
        served = post(server, {"queries": queries, "topk": 5, "return_scores": True, "method": method}).json()
        offline = backend.search(queries, 5, method)
        assert ids(served["result"]) == [[p.doc_id for p in hits] for hits in offline]
        assert [h["document"]["contents"] for hits in served["result"] for h in hits] == [
            p.contents for hits in offline for p in hits
        ]


def test_method_and_alpha(server, queries) -> None:  # type: ignore[no-untyped-def]
    def run(**options):  # type: ignore[no-untyped-def]
        body = {"queries": queries, "topk": 5, "return_scores": True, **options}
        response = post(server, body)
        assert response.status_code == 200, response.text
        return ids(response.json()["result"])

    dense, bm25 = run(method="dense"), run(method="bm25")
    assert dense != bm25
    assert run(method="hybrid", alpha=1.0) == dense
    assert run(method="hybrid", alpha=0) == bm25
    assert run(alpha=1) == dense  # the default method is hybrid
    assert run() == run(method="hybrid", alpha=0.4)  # the backend's default alpha


def test_without_scores_and_default_topk(server, settings, queries) -> None:  # type: ignore[no-untyped-def]
    response = post(server, {"queries": queries[:2], "extra_field": "ignored"})
    assert response.status_code == 200
    result = response.json()["result"]
    assert [len(hits) for hits in result] == [settings.default_topk] * 2
    assert all(set(hit) == {"id", "contents"} for hits in result for hit in hits)


LONG = "长" * 65


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b'{"queries": ["a"', 400, "body"),
        (b"\xff\xfe", 400, "body"),
        (b'["a", "b"]', 422, "body"),
        (b'{"topk": 3}', 422, "queries"),
        (b'{"queries": "just a string"}', 422, "queries"),
        (b'{"queries": [1, 2]}', 422, "queries.0"),
        (b'{"queries": []}', 422, "queries"),
        (b'{"queries": [""]}', 422, "queries"),
        (b'{"queries": ["ok", "   "]}', 422, "queries"),
        (b'{"queries": ["a"], "topk": 0}', 422, "topk"),
        (b'{"queries": ["a"], "topk": -3}', 422, "topk"),
        (b'{"queries": ["a"], "topk": 11}', 422, "topk"),
        (b'{"queries": ["a"], "topk": "3"}', 422, "topk"),
        (b'{"queries": ["a"], "topk": 2.5}', 422, "topk"),
        (b'{"queries": ["a"], "return_scores": "yes"}', 422, "return_scores"),
        (b'{"queries": ["a"], "method": "sparse"}', 422, "method"),
        (b'{"queries": ["a"], "alpha": 1.5}', 422, "alpha"),
        (b'{"queries": ["a"], "alpha": true}', 422, "alpha"),
        (b'{"queries": ["a"], "method": "bm25", "alpha": 0.5}', 422, "alpha"),
        (json.dumps({"queries": ["q"] * 9}).encode(), 422, "queries"),
        (json.dumps({"queries": [LONG]}, ensure_ascii=False).encode(), 422, "queries"),
        (json.dumps({"queries": ["a"], "pad": "x" * 5000}).encode(), 413, "body"),
    ],
)
def test_bad_requests_get_4xx_naming_the_field(server, body, status, field) -> None:  # type: ignore[no-untyped-def]
    response = httpx.post(
        f"{server.url}/retrieve", content=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert field in detail
    assert response.json()["errors"][0]["field"].startswith(field)


def test_body_limit_holds_without_content_length(server) -> None:  # type: ignore[no-untyped-def]
    def chunks():  # type: ignore[no-untyped-def]  # streamed: chunked transfer encoding, no Content-Length
        yield b'{"queries": ["a"], "pad": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    response = httpx.post(f"{server.url}/retrieve", content=chunks(), timeout=30)
    assert response.status_code == 413
    assert "body" in response.json()["detail"]
    # a declared Content-Length over the limit is refused before the body is read
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    conn.putrequest("POST", "/retrieve")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", "99999999")
    conn.endheaders(b'{"queries": ["a"]}')
    declared = conn.getresponse()
    assert declared.status == 413
    assert "99999999 bytes exceeds" in json.loads(declared.read())["detail"]
    conn.close()


def test_bearer_token(token_server, queries) -> None:  # type: ignore[no-untyped-def]
    body = {"queries": queries[:1], "topk": 2}
    missing = post(token_server, body)
    assert missing.status_code == 401
    assert "Authorization" in missing.json()["detail"]
    assert missing.headers["www-authenticate"] == "Bearer"
    assert post(token_server, body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert post(token_server, body, headers={"Authorization": TOKEN}).status_code == 401
    assert post(token_server, body, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert httpx.get(f"{token_server.url}/info").status_code == 401
    assert httpx.get(f"{token_server.url}/health").status_code == 200  # probes need no token


def test_health_and_info(server, settings) -> None:  # type: ignore[no-untyped-def]
    health = httpx.get(f"{server.url}/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    info = httpx.get(f"{server.url}/info").json()
    assert info["encoder"]["name"] == "hash-encoder"
    assert info["encoder"]["query_task"] == "检索回答问题的文档"
    assert info["encoder"]["dim"] == 64
    assert info["corpus"]["num_docs"] == 60
    assert info["methods"] == ["dense", "bm25", "hybrid"]
    assert info["limits"] == settings.limits.model_dump()
    assert info["indexes"]["dense"]["built_at"]


def test_health_is_503_until_started(backend, settings, queries) -> None:  # type: ignore[no-untyped-def]
    app = create_app(backend, settings)  # lifespan (warm-up, batcher) not run: not ready

    async def probe():  # type: ignore[no-untyped-def]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            health = await client.get("/health")
            retrieve = await client.post("/retrieve", json={"queries": queries[:1]})
        return health, retrieve

    health, retrieve = asyncio.run(probe())
    assert health.status_code == 503
    assert retrieve.status_code == 503


def test_concurrent_requests_share_batches(server, backend, queries) -> None:  # type: ignore[no-untyped-def]
    before = httpx.get(f"{server.url}/info").json()["batcher"]

    async def burst():  # type: ignore[no-untyped-def]
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            bodies = [{"queries": [q], "topk": 3, "return_scores": True} for q in queries * 3]
            responses = await asyncio.gather(*(client.post("/retrieve", json=b) for b in bodies))
        return bodies, responses

    bodies, responses = asyncio.run(burst())
    assert all(r.status_code == 200 for r in responses)
    for body, response in zip(bodies, responses):  # each answer belongs to its own request
        expected = backend.search(body["queries"], 3)
        assert ids(response.json()["result"]) == [[p.doc_id for p in hits] for hits in expected]
    after = httpx.get(f"{server.url}/info").json()["batcher"]
    batches = after["batches"] - before["batches"]
    assert after["jobs"] - before["jobs"] == len(bodies)
    assert batches < len(bodies)  # some requests were searched together
    assert after["max_batch_jobs"] > 1


class _Exploding:
    """The real backend, except that the query "boom" crashes and "fail" is a retriever failure."""

    def __init__(self, backend) -> None:  # type: ignore[no-untyped-def]
        self._backend = backend

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self._backend, name)

    def search_jobs(self, jobs):  # type: ignore[no-untyped-def]
        from finrag_pipelines.retrieval.types import RetrievalError

        queries = {q for job in jobs for q in job.queries}
        if "boom" in queries:
            raise RuntimeError("unexpected crash")
        if "fail" in queries:
            raise RetrievalError("encoder failed: out of memory")
        return self._backend.search_jobs(jobs)


def test_failures_are_500s_and_the_server_survives(backend, settings, queries) -> None:  # type: ignore[no-untyped-def]
    from finrag_pipelines.serving.server import ServerThread

    with ServerThread(create_app(_Exploding(backend), settings)) as server:  # type: ignore[arg-type]
        crash = post(server, {"queries": ["boom"]})
        assert crash.status_code == 500 and "internal error" in crash.json()["detail"]
        failed = post(server, {"queries": ["fail"]})
        assert failed.status_code == 500 and "out of memory" in failed.json()["detail"]
        assert post(server, {"queries": queries[:1]}).status_code == 200
