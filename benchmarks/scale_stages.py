"""The stages of ``benchmarks/scale.py``: each runs in its own process and returns a dict of numbers.

Every stage reads what earlier stages wrote under ``<workdir>/<size>/`` (the corpus, the kept corpus, the
indexes, the vectors) and goes through the project's own code: corpus_prep's nodes, ``BM25Index``,
``encode_with_store`` + ``EmbeddingStore``, ``DenseIndex``, negative_mining's nodes, ``ResponseJournal``,
the serving backend and app. Timings exclude imports; peak memory is measured by the parent.
"""

from __future__ import annotations

import asyncio
import json
import mmap
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import scale_corpus

K = 10


def _conf(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / f"conf/base/parameters_{name}.yml").read_text(encoding="utf-8"))[name]


def _du(path: Path) -> float:
    """Size on disk in MB (a file or a folder)."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return round(sum(p.stat().st_size for p in files) / 1e6, 1)


class Stage:
    """What a stage needs: the size folder, the options, and small helpers."""

    def __init__(self, folder: Path, options: dict[str, Any]) -> None:
        self.folder = folder
        self.options = options

    def corpus(self) -> pd.DataFrame:
        return pd.read_parquet(self.folder / "corpus.parquet")

    def indexable(self) -> tuple[list[str], list[str], str]:
        from finrag_pipelines.text.corpus import indexable

        corpus = self.corpus()
        return indexable(corpus["doc_id"], corpus["title"], corpus["text"])

    def queries(self) -> pd.DataFrame:
        return pd.read_parquet(self.folder / "queries.parquet")

    def encoder(self) -> scale_corpus.StandInEncoder:
        return scale_corpus.StandInEncoder(int(self.options["dim"]))


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


# ---------------------------------------------------------------------------------------------- corpus


def generate(stage: Stage) -> dict[str, Any]:
    """The corpus (BEIR ``corpus.jsonl``) of this size."""
    size = int(stage.options["size"])
    seconds, counts = _timed(
        lambda: scale_corpus.write_corpus(stage.folder, size, seed=size, exact_share=0.02, near_share=0.02)
    )
    return {"seconds": round(seconds, 2), **counts, "corpus_mb": _du(stage.folder / "corpus.jsonl")}


def corpus_prep(stage: Stage) -> dict[str, Any]:
    """corpus_prep's nodes: parse + normalise, too-short filter, exact and near-duplicate removal."""
    from finrag_pipelines.pipelines.corpus_prep.nodes import normalise_corpus, screen_documents, select_corpus
    from finrag_pipelines.pipelines.corpus_prep.params import DedupParams, FilterParams
    from finrag_pipelines.text.source import read_source_rows

    conf = _conf("corpus_prep")
    started = time.perf_counter()
    rows = read_source_rows(stage.folder / "corpus.jsonl", "jsonl")
    read_s = time.perf_counter() - started
    frame = normalise_corpus(rows)
    del rows
    normalise_s = time.perf_counter() - started - read_s
    status = screen_documents(frame, FilterParams(**conf["filter"]), DedupParams(**conf["dedup"]))
    screen_s = time.perf_counter() - started - read_s - normalise_s
    kept = select_corpus(frame, status)
    seconds = time.perf_counter() - started
    kept[["doc_id", "title", "text"]].to_parquet(stage.folder / "corpus.parquet")
    counts = status["status"].value_counts().to_dict()
    ids, texts = kept["doc_id"].tolist(), kept["text"].tolist()
    queries = scale_corpus.make_queries(ids, texts, int(stage.options["mining_queries"]), seed=1)
    pd.DataFrame(queries, columns=["query_id", "doc_id", "query"]).to_parquet(
        stage.folder / "queries.parquet"
    )
    return {
        "seconds": round(seconds, 2),
        "read_s": round(read_s, 2),
        "normalise_s": round(normalise_s, 2),
        "screen_s": round(screen_s, 2),
        "documents_in": len(status),
        "kept": int(counts.get("kept", 0)),
        "exact_duplicate": int(counts.get("exact_duplicate", 0)),
        "near_duplicate": int(counts.get("near_duplicate", 0)),
        "too_short": int(counts.get("too_short", 0)),
    }


# ---------------------------------------------------------------------------------------------- BM25


def _bm25_settings(key: str = "bm25") -> tuple[dict[str, Any], Any]:
    from finrag_pipelines.retrieval.bm25.scoring import BM25Config

    bm25 = _conf("index_build")[key]
    return bm25["tokenizer"], BM25Config(**bm25["scoring"])


def bm25_build(stage: Stage) -> dict[str, Any]:
    """Word BM25 (jieba + finance dictionary, conf settings): tokenise, build, save."""
    from finrag_pipelines.retrieval.bm25.index import BM25Index
    from finrag_pipelines.text.tokenize import FinanceTokenizer

    ids, texts, digest = stage.indexable()
    tokenizer_conf, config = _bm25_settings()
    tokenizer = FinanceTokenizer(**tokenizer_conf)
    tokenize_s, tokens = _timed(lambda: tokenizer.tokenize_many(texts))
    build_s, index = _timed(lambda: BM25Index.build_from_tokens(ids, tokens, tokenizer, config, digest))
    target = stage.folder / "bm25"
    shutil.rmtree(target, ignore_errors=True)
    save_s, _ = _timed(lambda: index.save(target))
    return {
        "seconds": round(tokenize_s + build_s + save_s, 2),
        "tokenize_s": round(tokenize_s, 2),
        "build_s": round(build_s, 2),
        "save_s": round(save_s, 2),
        "vocab": index.vocab_size,
        "disk_mb": _du(target),
    }


def _bm25_search(stage: Stage, mmap: bool, folder: str = "bm25") -> dict[str, Any]:
    from finrag_pipelines.retrieval.bm25.index import BM25Index

    load_s, index = _timed(lambda: BM25Index.load(stage.folder / folder, mmap=mmap))
    queries = stage.queries()["query"].tolist()[: int(stage.options["search_queries"])]
    tokens = index.tokenizer.tokenize_many(queries)
    index.search_tokens(tokens[:5], K)
    search_s, _ = _timed(lambda: index.search_tokens(tokens, K))
    return {
        "seconds": round(load_s + search_s, 2),
        "load_s": round(load_s, 2),
        "qps": round(len(tokens) / search_s, 1),
    }


def bm25_search(stage: Stage) -> dict[str, Any]:
    """Load the word BM25 index into memory, then search."""
    return _bm25_search(stage, mmap=False)


def bm25_search_mmap(stage: Stage) -> dict[str, Any]:
    """Load the word BM25 index memory-mapped, then search."""
    return _bm25_search(stage, mmap=True)


def ngram_build(stage: Stage) -> dict[str, Any]:
    """Character n-gram BM25 (``index_build.bm25_ngram``: bigrams cut at punctuation): tokenise, build,
    save."""
    from finrag_pipelines.retrieval.bm25.index import BM25Index
    from finrag_pipelines.text.ngram import CharNgramTokenizer

    ids, texts, digest = stage.indexable()
    tokenizer_conf, config = _bm25_settings("bm25_ngram")
    tokenizer = CharNgramTokenizer(**tokenizer_conf)
    tokenize_s, tokens = _timed(lambda: tokenizer.tokenize_many(texts))
    build_s, index = _timed(
        lambda: BM25Index.build_from_tokens(ids, tokens, tokenizer, config, digest, name="bm25_ngram")
    )
    target = stage.folder / "bm25_ngram"
    shutil.rmtree(target, ignore_errors=True)
    save_s, _ = _timed(lambda: index.save(target))
    return {
        "seconds": round(tokenize_s + build_s + save_s, 2),
        "tokenize_s": round(tokenize_s, 2),
        "build_s": round(build_s, 2),
        "save_s": round(save_s, 2),
        "vocab": index.vocab_size,
        "disk_mb": _du(target),
    }


def ngram_search_mmap(stage: Stage) -> dict[str, Any]:
    """Load the n-gram BM25 index memory-mapped, then search."""
    return _bm25_search(stage, mmap=True, folder="bm25_ngram")


# ---------------------------------------------------------------------------------------------- dense


def _vectors_path(stage: Stage) -> Path:
    return stage.folder / "vectors.npy"


def dense_encode(stage: Stage) -> dict[str, Any]:
    """Document vectors through the embedding store (cold: every shard written), into a memmap."""
    from finrag_pipelines.embedding.store import EmbeddingStore, encode_with_store

    _, texts, _ = stage.indexable()
    encoder = stage.encoder()
    store_dir = stage.folder / "embedding_cache"
    shutil.rmtree(store_dir, ignore_errors=True)
    store = EmbeddingStore(store_dir)
    chunk = int(_conf("index_build")["dense"]["chunk_size"])
    out = np.lib.format.open_memmap(
        _vectors_path(stage), mode="w+", dtype=np.float32, shape=(len(texts), encoder.dim)
    )
    started = time.perf_counter()
    encode_with_store(encoder, texts, "document", store, chunk_size=chunk, out=out)
    cold_s = time.perf_counter() - started
    out.flush()
    del out
    again = np.lib.format.open_memmap(_vectors_path(stage), mode="r+")
    started = time.perf_counter()
    encode_with_store(encoder, texts, "document", store, chunk_size=chunk, out=again)
    warm_s = time.perf_counter() - started
    return {
        "seconds": round(cold_s, 2),
        "warm_s": round(warm_s, 2),
        "docs_per_s": round(len(texts) / cold_s, 1),
        "store_mb": _du(store_dir),
        "dim": encoder.dim,
    }


def _dense_index(stage: Stage, index_type: str, **kwargs: Any) -> tuple[Any, float]:
    from finrag_pipelines.retrieval.dense import DenseIndex

    ids, _, digest = stage.indexable()
    encoder = stage.encoder()
    vectors = np.load(_vectors_path(stage), mmap_mode="r")
    meta = {**encoder.describe(), "fingerprint": encoder.fingerprint}
    return _timed(lambda: DenseIndex.build(ids, vectors, meta, digest, index_type=index_type, **kwargs))[::-1]


def _query_vectors(stage: Stage) -> np.ndarray:
    queries = stage.queries()["query"].tolist()[: int(stage.options["search_queries"])]
    return stage.encoder().encode_queries(queries)


def _search(index: Any, qvecs: np.ndarray) -> tuple[np.ndarray, float]:
    index.search_vectors(qvecs[:4], K)
    seconds, run = _timed(lambda: index.search_vectors(qvecs, K))
    rows = {doc_id: i for i, doc_id in enumerate(index.doc_ids)}
    found = np.full((len(run), K), -1, dtype=np.int64)
    for q, hits in enumerate(run):
        found[q, : len(hits)] = [rows[h.doc_id] for h in hits]
    return found, len(run) / seconds


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found.tolist(), truth.tolist())]))


def dense_flat(stage: Stage) -> dict[str, Any]:
    """FAISS flat (exact): build, save, search; its top-10 is the ground truth for the ANN stages."""
    index, build_s = _dense_index(stage, "flat")
    target = stage.folder / "dense_flat"
    save_s, _ = _timed(lambda: index.save(target))
    found, qps = _search(index, _query_vectors(stage))
    np.save(stage.folder / "truth.npy", found)
    return {
        "seconds": round(build_s, 2),
        "save_s": round(save_s, 2),
        "qps": round(qps, 1),
        "disk_mb": _du(target),
    }


def dense_hnsw(stage: Stage) -> dict[str, Any]:
    """FAISS HNSW (the project's index_build settings): build, save, search; recall@10 against flat."""
    dense = _conf("index_build")["dense"]
    m, ef_c = int(dense["hnsw_m"]), int(stage.options["ef_construction"])
    index, build_s = _dense_index(
        stage, "hnsw", hnsw_m=m, ef_search=int(dense["ef_search"]), ef_construction=ef_c
    )
    target = stage.folder / "dense_hnsw"
    save_s, _ = _timed(lambda: index.save(target))
    found, qps = _search(index, _query_vectors(stage))
    return {
        "seconds": round(build_s, 2),
        "save_s": round(save_s, 2),
        "qps": round(qps, 1),
        "recall_at_10": round(_recall(found, np.load(stage.folder / "truth.npy")), 4),
        "disk_mb": _du(target),
        "m": m,
        "ef_construction": ef_c,
        "ef_search": int(dense["ef_search"]),
    }


def dense_hnsw_load(stage: Stage) -> dict[str, Any]:
    """Load the HNSW index memory-mapped (``DenseIndex.load(mmap=True)``) and search."""
    from finrag_pipelines.retrieval.dense import DenseIndex

    load_s, index = _timed(lambda: DenseIndex.load(stage.folder / "dense_hnsw", mmap=True))
    found, qps = _search(index, _query_vectors(stage))
    return {
        "seconds": round(load_s, 2),
        "qps": round(qps, 1),
        "recall_at_10": round(_recall(found, np.load(stage.folder / "truth.npy")), 4),
    }


def dense_ivfpq(stage: Stage) -> dict[str, Any]:
    """FAISS IVF-PQ (nlist ~ sqrt(n), 64 sub-quantizers of 8 bits, nprobe 16): train, add, search.

    Training uses a sample of ``max(39 nlist, 10k)`` vectors and 10 k-means iterations for the coarse and the
    product quantizer (faiss's minimum sample sizes; its default 25 PQ iterations take minutes on 2 cores).
    """
    import faiss

    from finrag_pipelines.retrieval.dense import iter_row_chunks

    vectors = np.load(_vectors_path(stage), mmap_mode="r")
    n, dim = vectors.shape
    nlist = int(min(max(16, np.sqrt(n)), n // 39))
    sub = 64 if dim % 64 == 0 else 16
    rng = np.random.default_rng(0)
    picks = np.sort(rng.choice(n, size=min(n, max(39 * nlist, 10_000)), replace=False))
    sample = np.ascontiguousarray(vectors[picks])
    vectors._mmap.madvise(mmap.MADV_DONTNEED)  # scattered reads mapped (read-ahead) most of the file
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, nlist, sub, 8, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = 10
    index.pq.cp.niter = 10
    index.pq.cp.max_points_per_centroid = 64
    started = time.perf_counter()
    index.train(sample)
    train_s = time.perf_counter() - started
    del sample

    def add() -> None:
        for _, chunk in iter_row_chunks(vectors):
            index.add(chunk)

    add_s, _ = _timed(add)
    index.nprobe = 16
    qvecs = _query_vectors(stage)
    index.search(qvecs[:4], K)
    search_s, (_, found) = _timed(lambda: index.search(qvecs, K))
    return {
        "seconds": round(train_s + add_s, 2),
        "train_s": round(train_s, 2),
        "add_s": round(add_s, 2),
        "qps": round(len(qvecs) / search_s, 1),
        "recall_at_10": round(_recall(found, np.load(stage.folder / "truth.npy")), 4),
        "nlist": nlist,
        "memory_mb": round(index.sa_code_size() * n / 1e6, 1),
    }


# ---------------------------------------------------------------------------------------------- mining


def mining(stage: Stage) -> dict[str, Any]:
    """negative_mining's nodes over the mining queries: dense (HNSW) + BM25 candidates, then the rules."""
    from finrag_pipelines.embedding.store import EmbeddingStore
    from finrag_pipelines.pipelines.negative_mining.nodes import mine_candidates, select_negatives
    from finrag_pipelines.pipelines.negative_mining.params import CandidateParams, RuleParams
    from finrag_pipelines.retrieval.bm25.index import BM25Index
    from finrag_pipelines.retrieval.dense import DenseIndex

    conf = _conf("negative_mining")
    candidates_params = CandidateParams(**conf["candidates"])
    rules = RuleParams(**conf["rules"])
    corpus, queries = stage.corpus(), stage.queries()
    dense = DenseIndex.load(stage.folder / "dense_hnsw", mmap=True)
    bm25 = BM25Index.load(stage.folder / "bm25", mmap=True)
    store = EmbeddingStore(stage.folder / "embedding_cache")
    mine_s, table = _timed(
        lambda: mine_candidates(queries, corpus, dense, stage.encoder(), store, bm25, candidates_params)
    )
    select_s, selection = _timed(lambda: select_negatives(table, corpus, rules, candidates_params))
    kept = selection[(selection["status"] == "kept") & (selection["source"] != "random")]
    return {
        "seconds": round(mine_s + select_s, 2),
        "candidates_s": round(mine_s, 2),
        "select_s": round(select_s, 2),
        "queries": len(queries),
        "candidates": len(table),
        "hard_negatives": len(kept),
    }


# ---------------------------------------------------------------------------------------------- journal


def _journal_path(stage: Stage) -> Path:
    return stage.folder / "journal" / "llm_journal.jsonl"


def _journal_keys(n: int) -> list[str]:
    from finrag_pipelines.llm.journal import cache_key

    return [cache_key("m", [{"role": "user", "content": f"问题{i}"}], {"temperature": 0.0}) for i in range(n)]


def journal_write(stage: Stage) -> dict[str, Any]:
    """A journal of ``size`` records as the LLM stages write them (~1 KB a line)."""
    from finrag_pipelines.llm.journal import ResponseJournal

    path = _journal_path(stage)
    shutil.rmtree(path.parent, ignore_errors=True)
    keys = _journal_keys(int(stage.options["size"]))
    rng = np.random.default_rng(0)
    body = "根据公司公告，营业收入同比增长，毛利率保持稳定，现金流充裕。" * 12

    def write() -> None:
        with ResponseJournal(path) as journal:
            for i, key in enumerate(keys):
                text = body[: int(rng.integers(60, len(body)))] + str(i)
                journal.put(
                    key,
                    {
                        "id": f"r{i}",
                        "attempt": 0,
                        "model": "m",
                        "text": text,
                        "reasoning": None,
                        "finish_reason": "stop",
                        "usage": {"prompt_tokens": 400, "completion_tokens": 90},
                    },
                )

    seconds, _ = _timed(write)
    return {
        "seconds": round(seconds, 2),
        "records_per_s": round(len(keys) / seconds, 1),
        "disk_mb": _du(path),
    }


def _journal_resume(stage: Stage, drop_index: bool) -> dict[str, Any]:
    from finrag_pipelines.llm.journal import ResponseJournal

    path = _journal_path(stage)
    index = path.with_name(path.name + ".idx")
    if drop_index and index.exists():
        index.unlink()
    keys = _journal_keys(int(stage.options["size"]))
    open_s, journal = _timed(lambda: ResponseJournal(path))
    lookup_s, hits = _timed(lambda: sum(journal.get(key) is not None for key in keys))
    journal.close()
    if hits != len(keys):
        raise RuntimeError(f"journal resume found {hits} of {len(keys)} records")
    return {
        "seconds": round(open_s + lookup_s, 2),
        "open_s": round(open_s, 2),
        "lookup_s": round(lookup_s, 2),
        "records": hits,
    }


def journal_resume(stage: Stage) -> dict[str, Any]:
    """Reopen the journal (index present) and look every record up, as a resumed run does."""
    return _journal_resume(stage, drop_index=False)


def journal_rebuild(stage: Stage) -> dict[str, Any]:
    """Reopen the journal without its index (a full streaming scan rebuilds it), then look every record up."""
    return _journal_resume(stage, drop_index=True)


# ---------------------------------------------------------------------------------------------- server


def server(stage: Stage) -> dict[str, Any]:
    """The real app (uvicorn, micro-batching) over BM25 + HNSW (memory-mapped), hybrid, 16 clients."""
    import server_load

    from finrag_pipelines.retrieval.bm25.index import BM25Index
    from finrag_pipelines.retrieval.dense import DenseIndex
    from finrag_pipelines.serving.app import create_app
    from finrag_pipelines.serving.backend import SearchBackend
    from finrag_pipelines.serving.server import ServerThread
    from finrag_pipelines.serving.settings import load_settings

    settings = load_settings(_conf("serving"))
    corpus = stage.corpus()
    started = time.perf_counter()
    backend = SearchBackend(
        doc_ids=corpus["doc_id"].tolist(),
        titles=corpus["title"].tolist(),
        texts=corpus["text"].tolist(),
        bm25=BM25Index.load(stage.folder / "bm25", mmap=True),
        dense=DenseIndex.load(stage.folder / "dense_hnsw", mmap=True),
        encoder=stage.encoder(),
        default_method="hybrid",
        alpha=0.5,
        alpha_source="scale benchmark",
        fusion_depth=settings.fusion_depth,
        encode_batch_size=settings.encode_batch_size,
    )
    load_s = time.perf_counter() - started
    del corpus
    queries = stage.queries()["query"].tolist()
    rng = np.random.default_rng(0)
    clients, requests = 16, int(stage.options["server_requests"])
    bodies = [
        {"queries": [queries[int(i)]], "topk": 3, "method": "hybrid", "return_scores": True}
        for i in rng.integers(0, len(queries), size=requests + 2 * clients)
    ]
    with ServerThread(create_app(backend, settings), log_level="error") as running:
        asyncio.run(server_load.drive(running.url, bodies[: 2 * clients], clients))  # warm-up
        stats = asyncio.run(server_load.drive(running.url, bodies[2 * clients :], clients))
    if stats["errors"]:
        raise RuntimeError(f"server: {stats['errors']} errors, first: {stats['first_error']}")
    return {
        "seconds": round(load_s, 2),
        "load_s": round(load_s, 2),
        "clients": clients,
        "requests": stats["requests"],
        "rps": stats["rps"],
        "p50_ms": stats["p50_ms"],
        "p99_ms": stats["p99_ms"],
    }


STAGES: dict[str, Callable[[Stage], dict[str, Any]]] = {
    "generate": generate,
    "corpus_prep": corpus_prep,
    "bm25_build": bm25_build,
    "bm25_search": bm25_search,
    "bm25_search_mmap": bm25_search_mmap,
    "ngram_build": ngram_build,
    "ngram_search_mmap": ngram_search_mmap,
    "dense_encode": dense_encode,
    "dense_flat": dense_flat,
    "dense_hnsw": dense_hnsw,
    "dense_hnsw_load": dense_hnsw_load,
    "dense_ivfpq": dense_ivfpq,
    "mining": mining,
    "journal_write": journal_write,
    "journal_resume": journal_resume,
    "journal_rebuild": journal_rebuild,
    "server": server,
}


def run_stage(name: str, folder: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Run one stage in this process (the child side of ``scale.py``)."""
    os.environ.setdefault("DISABLE_TQDM", "1")
    return STAGES[name](Stage(folder, options))


if __name__ == "__main__":
    result = run_stage(sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]))
    Path(sys.argv[4]).write_text(json.dumps(result), encoding="utf-8")
