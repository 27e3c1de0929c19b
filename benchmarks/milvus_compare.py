"""Milvus backend vs the in-process references: FAISS flat vs Milvus Lite (FLAT, HNSW), bm25s vs Milvus BM25.

Usage::

    .venv/bin/python benchmarks/milvus_compare.py [--set fintruthqa] [--k 10] [--repeats 3] \
        [--uri PATH_OR_URL]

Works on the prepared demo artefacts of ``--set`` (``kedro run --env demo`` writes them):
``data/03_primary/<set>/{corpus,eval_queries,eval_qrels}.parquet``; document vectors are read back from the
FAISS index ``data/06_models/<set>/dense_base`` (query vectors come from the demo environment's base encoder,
``globals.yml`` ``encoder_roles.base``, through the embedding cache ``data/04_feature/embedding_cache``),
and the BM25 index is rebuilt with ``conf/base/parameters_index_build.yml``'s ``bm25`` settings (so it
carries its tokens).

Measured, in one process, against the reference run of the same process:

* ``recall@k vs ref``: mean share of the reference top-k (FAISS flat / our bm25s) that the Milvus run returns;
* ``mrr@10``: against the set's qrels;
* ``qps``: all queries, best of ``--repeats`` (vectors precomputed for dense; tokenisation included for BM25,
  as in ``search``), after the index is built (``write`` waits for Milvus Lite's background index build).

Prints one line per run with ratios to the reference, then one JSON line with every number.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT / "src") not in sys.path:
    sys.path.insert(0, str(_ROOT / "src"))

os.environ.setdefault("DISABLE_TQDM", "1")

import numpy as np
import pandas as pd
import yaml

from finrag_pipelines.embedding.factory import build_encoder
from finrag_pipelines.embedding.store import EmbeddingStore, encode_with_store
from finrag_pipelines.provenance.versions import latest_path
from finrag_pipelines.retrieval.bm25.index import BM25Index
from finrag_pipelines.retrieval.bm25.scoring import BM25Config
from finrag_pipelines.retrieval.dense import DenseIndex
from finrag_pipelines.retrieval.milvus.bm25 import MilvusBM25Index
from finrag_pipelines.retrieval.milvus.connection import MilvusTarget
from finrag_pipelines.retrieval.milvus.dense import MilvusDenseConfig, MilvusDenseIndex
from finrag_pipelines.retrieval.types import Run
from finrag_pipelines.text.corpus import indexable
from finrag_pipelines.text.tokenize import FinanceTokenizer

logger = logging.getLogger("milvus_compare")


def _demo_globals() -> dict[str, Any]:
    """conf/base + conf/demo ``globals.yml``, merged by the project's config loader (settings.py)."""
    from finrag_pipelines.settings import CONFIG_LOADER_ARGS, CONFIG_LOADER_CLASS

    return CONFIG_LOADER_CLASS(str(_ROOT / "conf"), env="demo", **CONFIG_LOADER_ARGS)["globals"]


def _timed(search: Callable[[], Run], repeats: int) -> tuple[Run, float]:
    search()  # warm-up
    best = float("inf")
    run: Run = []
    for _ in range(repeats):
        started = time.perf_counter()
        run = search()
        best = min(best, time.perf_counter() - started)
    return run, best


def _overlap(run: Run, reference: Run, k: int) -> float:
    shares = [
        len({h.doc_id for h in got[:k]} & {h.doc_id for h in ref[:k]}) / len(ref[:k])
        for got, ref in zip(run, reference, strict=True)
        if ref
    ]
    return float(np.mean(shares))


def _mrr(run: Run, qids: list[str], relevant: dict[str, set[str]], k: int = 10) -> float:
    total = 0.0
    for qid, hits in zip(qids, run, strict=True):
        for rank, hit in enumerate(hits[:k], 1):
            if hit.doc_id in relevant.get(qid, set()):
                total += 1.0 / rank
                break
    return total / len(qids)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--set", default="fintruthqa")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--uri", default=None, help="Milvus Lite file or server URL (default: a temp .db)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    primary = _ROOT / "data" / "03_primary" / args.set
    corpus = pd.read_parquet(primary / "corpus.parquet")
    queries = pd.read_parquet(primary / "eval_queries.parquet")
    qrels = pd.read_parquet(primary / "eval_qrels.parquet")
    relevant: dict[str, set[str]] = {}
    for qid, did, grade in zip(qrels["query_id"], qrels["doc_id"], qrels["score"]):
        if grade > 0:
            relevant.setdefault(str(qid), set()).add(str(did))
    qids = [str(q) for q in queries["query_id"]]
    texts = list(queries["text"])
    ids, doc_texts, digest = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    k = args.k
    results: dict[str, Any] = {"set": args.set, "docs": len(ids), "queries": len(qids), "k": k}
    workdir = tempfile.TemporaryDirectory(prefix="milvus_compare_")
    uri = args.uri or str(Path(workdir.name) / "bench.db")
    results["milvus_uri"] = "temp lite file" if args.uri is None else uri

    # ---------------------------------------------------------------- dense
    faiss_index = DenseIndex.load(latest_path(_ROOT / "data" / "06_models" / args.set / "dense_base"))
    faiss_index.check_compatible(corpus_hash=digest)
    demo = _demo_globals()
    encoder = build_encoder(demo["encoders"][demo["encoder_roles"]["base"]])
    faiss_index.check_compatible(encoder=encoder)
    qvecs = encode_with_store(
        encoder, texts, "query", EmbeddingStore(_ROOT / "data" / "04_feature" / "embedding_cache")
    )
    ref_run, ref_s = _timed(lambda: faiss_index.search_vectors(qvecs, k), args.repeats)
    results["faiss_flat"] = {
        "qps": len(qids) / ref_s,
        "mrr@10": _mrr(ref_run, qids, relevant),
        "recall@k_vs_ref": 1.0,
    }
    print(
        f"dense  faiss flat      : {results['faiss_flat']['qps']:9.1f} q/s  "
        f"mrr@10 {results['faiss_flat']['mrr@10']:.4f}  (reference)"
    )
    configs = {
        "milvus_flat": MilvusDenseConfig("FLAT"),
        "milvus_hnsw": MilvusDenseConfig("HNSW", {"M": 32, "efConstruction": 200}, {"ef": 128}),
    }
    for name, config in configs.items():
        started = time.perf_counter()
        milvus = MilvusDenseIndex.write(
            faiss_index, MilvusTarget(uri, f"bench_{name}"), config, show_progress=False
        )
        build_s = time.perf_counter() - started
        run, seconds = _timed(lambda m=milvus: m.search_vectors(qvecs, k), args.repeats)
        row = {
            "qps": len(qids) / seconds,
            "mrr@10": _mrr(run, qids, relevant),
            "recall@k_vs_ref": _overlap(run, ref_run, k),
            "build_s": build_s,
            "qps_ratio_vs_ref": ref_s / seconds,
        }
        results[name] = row
        print(
            f"dense  {name:15s}: {row['qps']:9.1f} q/s ({row['qps_ratio_vs_ref']:.2f}x faiss)  "
            f"mrr@10 {row['mrr@10']:.4f}  "
            f"recall@{k} vs faiss {row['recall@k_vs_ref']:.4f}  build+index {build_s:.1f}s"
        )

    # ---------------------------------------------------------------- BM25
    settings = yaml.safe_load(
        (_ROOT / "conf" / "base" / "parameters_index_build.yml").read_text(encoding="utf-8")
    )
    bm25_conf = settings["index_build"]["bm25"]
    bm25 = BM25Index.build(
        ids, doc_texts, FinanceTokenizer(**bm25_conf["tokenizer"]), BM25Config(**bm25_conf["scoring"]), digest
    )
    ref_run, ref_s = _timed(lambda: bm25.search(texts, k), args.repeats)
    results["bm25s"] = {
        "qps": len(qids) / ref_s,
        "mrr@10": _mrr(ref_run, qids, relevant),
        "recall@k_vs_ref": 1.0,
    }
    print(
        f"bm25   ours (bm25s)    : {results['bm25s']['qps']:9.1f} q/s  "
        f"mrr@10 {results['bm25s']['mrr@10']:.4f}  (reference)"
    )
    started = time.perf_counter()
    milvus_bm25 = MilvusBM25Index.write(bm25, MilvusTarget(uri, "bench_bm25"), show_progress=False)
    build_s = time.perf_counter() - started
    run, seconds = _timed(lambda: milvus_bm25.search(texts, k), args.repeats)
    row = {
        "qps": len(qids) / seconds,
        "mrr@10": _mrr(run, qids, relevant),
        "recall@k_vs_ref": _overlap(run, ref_run, k),
        "build_s": build_s,
        "qps_ratio_vs_ref": ref_s / seconds,
    }
    results["milvus_bm25"] = row
    print(
        f"bm25   milvus bm25     : {row['qps']:9.1f} q/s ({row['qps_ratio_vs_ref']:.3f}x bm25s)  "
        f"mrr@10 {row['mrr@10']:.4f}  "
        f"recall@{k} vs bm25s {row['recall@k_vs_ref']:.4f}  build+index {build_s:.1f}s"
    )
    print(json.dumps({"results": results}, ensure_ascii=False))
    workdir.cleanup()


if __name__ == "__main__":
    main()
