"""Retrieval speed benchmark: tokenisation throughput and BM25 queries per second, in one process.

Usage::

    .venv/bin/python benchmarks/retrieval_speed.py [--corpus-dir DIR] [--repeats N] [--k K]

``DIR`` is a BEIR folder (corpus.jsonl, queries.jsonl); the default is the project's
``data/01_raw/retrieval/fintruthqa``, else ``../shared/data/retrieval/fintruthqa``.

Measured:

* ``tokenize_mb_per_s``: :meth:`FinanceTokenizer.tokenize_many` over the corpus (UTF-8 MB per second,
  tokenizer settings of ``conf/base/parameters_index_build.yml``'s ``bm25``, dictionary loading excluded),
  and ``jieba_single_mb_per_s``, plain ``jieba.Tokenizer().lcut`` in this process, as the reference.
* ``ours_bm25_qps``: :meth:`BM25Index.search_tokens` (tf cap and domain-term weight on) against
  ``plain_bm25s_qps``: stock ``bm25s.BM25(...).index`` + ``.retrieve`` on the *same* tokens; all queries,
  top-k, after a warm-up, best of ``--repeats`` (median reported too).
* optionally, with the ``lucene`` extra, Lucene BM25 over the same tokens through the project's Lucene
  backend (``lucene_qps`` one query at a time, ``lucene_batched_2_threads_qps``).
* ``ngram_bm25_qps``: the character n-gram BM25 index (``index_build.bm25_ngram`` settings) on its own query
  n-grams, and ``ngram_bm25_text_qps`` with tokenising included; ``ngram_vs_ours_bm25`` and
  ``ngram_vs_ours_bm25_text`` compare them with our word BM25.
* ``fusion_*``: evaluation's first-stage fusion (``data/07_model_output/<set>/fusion_settings.json``, skipped
  when it does not exist): ``fusion_weighted_fuse_qps`` / ``fusion_learned_fuse_qps`` fuse precomputed runs
  of its retrievers (features included), ``fusion_end_to_end_qps`` searches each retriever and fuses with the
  winning method.

Prints human-readable lines, then a final line holding one JSON object with every number (``results``);
other measurements (e.g. dense ``dense_batched_qps``) add their keys to the same dict.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT / "src") not in sys.path:
    sys.path.insert(0, str(_ROOT / "src"))

os.environ.setdefault("DISABLE_TQDM", "1")

import bm25s  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from finrag_pipelines.provenance.versions import latest_path, versions  # noqa: E402
from finrag_pipelines.retrieval.bm25.index import BM25Index  # noqa: E402
from finrag_pipelines.retrieval.bm25.scoring import BM25Config  # noqa: E402
from finrag_pipelines.text.corpus import SourceRow, indexable, parse_documents, parse_queries  # noqa: E402
from finrag_pipelines.text.tokenize import FinanceTokenizer  # noqa: E402

logger = logging.getLogger("retrieval_speed")


def _bm25_settings(key: str = "bm25") -> tuple[dict[str, Any], BM25Config]:
    """An index's settings in conf/base/parameters_index_build.yml (defined once, read here)."""
    conf = yaml.safe_load((_ROOT / "conf/base/parameters_index_build.yml").read_text(encoding="utf-8"))
    bm25 = conf["index_build"][key]
    extra = {"segmenter": "auto"} if key == "bm25" else {}
    return {**bm25["tokenizer"], **extra}, BM25Config(**bm25["scoring"])


TOKENIZER_SETTINGS, SCORING = _bm25_settings()
NGRAM_SETTINGS, NGRAM_SCORING = _bm25_settings("bm25_ngram")
PLAIN_SETTINGS, PLAIN_SCORING = _bm25_settings("bm25_plain")


def default_corpus_dir() -> Path:
    """The project's bundled FinTruthQA folder, else the shared copy next to the project."""
    bundled = _ROOT / "data" / "01_raw" / "retrieval" / "fintruthqa"
    return (
        bundled
        if (bundled / "corpus.jsonl").is_file()
        else _ROOT.parent / "shared" / "data" / "retrieval" / "fintruthqa"
    )


def _rows(path: Path) -> list[SourceRow]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if line.strip():
                rows.append(SourceRow(str(path), lineno, json.loads(line)))
    return rows


def load_beir(corpus_dir: Path) -> tuple[list[str], list[str], str, list[str]]:
    """Doc ids, indexed texts (as the pipelines index them), corpus hash and query texts of a BEIR folder."""
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not (corpus_dir / name).is_file():
            raise SystemExit(
                f"{corpus_dir / name} not found; pass --corpus-dir with a BEIR folder (corpus.jsonl, "
                "queries.jsonl)."
            )
    docs = parse_documents(_rows(corpus_dir / "corpus.jsonl"))
    ids, texts, digest = indexable([d.doc_id for d in docs], [d.title for d in docs], [d.text for d in docs])
    queries = [text for _, text in parse_queries(_rows(corpus_dir / "queries.jsonl"))]
    return ids, texts, digest, queries


def _mb(texts: Sequence[str]) -> float:
    return sum(len(t.encode("utf-8")) for t in texts) / 1e6


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Run ``fn`` once as warm-up, then ``repeats`` times; return the timings and the last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return times, out


def measure_tokenize(texts: Sequence[str], repeats: int) -> dict[str, Any]:
    """``tokenize_mb_per_s`` of our tokenizer (fresh tokenizer per repeat, dictionary load excluded)."""
    mb = _mb(texts)
    rates = []
    tokens: list[list[str]] = []
    segmenter = ""
    for _ in range(repeats):
        tokenizer = FinanceTokenizer(**TOKENIZER_SETTINGS)
        tokenizer.tokenize("预热")  # loads the dictionaries
        segmenter = tokenizer.segmenter_name
        started = time.perf_counter()
        tokens = tokenizer.tokenize_many(texts)
        rates.append(mb / (time.perf_counter() - started))
    print(
        f"tokenize_many ({segmenter}, n_jobs={TOKENIZER_SETTINGS['n_jobs']}): {max(rates):.2f} MB/s best, "
        f"{statistics.median(rates):.2f} median over {mb:.2f} MB, {sum(map(len, tokens))} tokens"
    )
    return {
        "tokenize_mb_per_s": round(max(rates), 3),
        "tokenize_mb_per_s_median": round(statistics.median(rates), 3),
        "segmenter": segmenter,
        "tokenize_n_jobs": TOKENIZER_SETTINGS["n_jobs"],
        "corpus_mb": round(mb, 3),
    }


def measure_jieba_single(texts: Sequence[str], repeats: int) -> dict[str, Any]:
    """``jieba_single_mb_per_s``: stock jieba (private Tokenizer, HMM on), one process, no post-processing."""
    import jieba

    seg = jieba.Tokenizer()
    seg.initialize()
    mb = _mb(texts)
    times, _ = _timed(lambda: [seg.lcut(t) for t in texts], max(1, repeats - 1))
    rate = mb / min(times)
    print(f"plain jieba {jieba.__version__}, single process: {rate:.2f} MB/s")
    return {"jieba_single_mb_per_s": round(rate, 3)}


def build_indexes(
    doc_ids: list[str], corpus_tokens: list[list[str]], corpus_hash: str
) -> tuple[BM25Index, bm25s.BM25]:
    """Our index (seed ideas on) and stock bm25s, over the same tokens."""
    tokenizer = FinanceTokenizer(**TOKENIZER_SETTINGS)
    started = time.perf_counter()
    ours = BM25Index.build_from_tokens(doc_ids, corpus_tokens, tokenizer, SCORING, corpus_hash)
    ours_s = time.perf_counter() - started
    plain = bm25s.BM25(k1=SCORING.k1, b=SCORING.b, method=SCORING.method)
    started = time.perf_counter()
    plain.index(corpus_tokens, show_progress=False)
    plain_s = time.perf_counter() - started
    print(
        f"build from tokens: ours {ours_s:.2f}s (tf_cap={SCORING.tf_cap}, "
        f"domain_term_weight={SCORING.domain_term_weight}), "
        f"bm25s {plain_s:.2f}s; {len(doc_ids)} docs, {ours.vocab_size} terms"
    )
    return ours, plain


def measure_bm25_search(
    ours: BM25Index, plain: bm25s.BM25, query_tokens: list[list[str]], k: int, repeats: int
) -> dict[str, Any]:
    """``ours_bm25_qps`` vs ``plain_bm25s_qps`` on the same query tokens.

    The two alternate, one round each at a time (the order flips every round), so load from other
    processes on a shared machine hits both alike; the ratio reported is the median of the per-round
    ratios (ours / plain), with the lowest and highest round, not a ratio of two separately chosen bests.
    """
    n = len(query_tokens)

    def run_ours() -> Any:
        return ours.search_tokens(query_tokens, k)

    def run_plain() -> Any:
        return plain.retrieve(query_tokens, k=k, show_progress=False, n_threads=0, backend_selection="numpy")

    run, _ = run_ours(), run_plain()  # warm-up
    ours_times: list[float] = []
    plain_times: list[float] = []
    for round_no in range(max(repeats, 3)):
        pair = ((run_ours, ours_times), (run_plain, plain_times))
        for fn, times in pair if round_no % 2 == 0 else pair[::-1]:
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
    ratios = sorted(p / o for o, p in zip(ours_times, plain_times, strict=True))
    ratio = statistics.median(ratios)
    weighted = sum(1 for q in query_tokens if any(ours.tokenizer.is_domain_term(t) for t in q))
    ours_qps, plain_qps = n / statistics.median(ours_times), n / statistics.median(plain_times)
    print(
        f"BM25 top-{k} over {n} queries ({weighted} with a weighted domain term), {len(ratios)} interleaved "
        f"rounds: ours {ours_qps:.0f} q/s, plain bm25s {plain_qps:.0f} q/s (medians); ours / plain "
        f"{ratio:.2f} (median of rounds, range {ratios[0]:.2f}-{ratios[-1]:.2f})"
    )
    return {
        "ours_bm25_qps": round(ours_qps, 1),
        "plain_bm25s_qps": round(plain_qps, 1),
        "ours_vs_plain_ratio": round(ratio, 3),
        "ours_vs_plain_ratio_range": [round(ratios[0], 3), round(ratios[-1], 3)],
        "ours_bm25_qps_best": round(n / min(ours_times), 1),
        "plain_bm25s_qps_best": round(n / min(plain_times), 1),
        "queries_with_domain_terms": weighted,
        "queries_without_hits": sum(1 for hits in run if not hits),
    }


def measure_search_with_tokenizing(
    ours: BM25Index, queries: list[str], k: int, repeats: int
) -> dict[str, Any]:
    """``ours_bm25_text_qps``: :meth:`BM25Index.search` on raw query texts (tokenisation included)."""
    times, _ = _timed(lambda: ours.search(queries, k), repeats)
    qps = len(queries) / min(times)
    print(f"BM25 search on query texts (tokenising included): {qps:.0f} q/s")
    return {"ours_bm25_text_qps": round(qps, 1)}


def measure_lucene(
    doc_ids: list[str],
    corpus_tokens: list[list[str]],
    query_tokens: list[list[str]],
    tokenizer: FinanceTokenizer,
    corpus_hash: str,
    k: int,
) -> dict[str, Any]:
    """Lucene BM25 over the same tokens, through the project's Lucene backend
    (:class:`~finrag_pipelines.retrieval.lucene.index.LuceneBM25Index`: pyserini's Anserini, whitespace
    analyzer, same k1/b); skipped when the ``lucene`` extra is absent or Java cannot start."""
    from finrag_pipelines.retrieval.lucene.index import LuceneBM25Index, LuceneConfig
    from finrag_pipelines.retrieval.lucene.runtime import LuceneUnavailableError

    results: dict[str, Any] = {"lucene_qps": None}
    for threads in (1, 2):
        config = LuceneConfig(k1=None, b=None, rm3=None, index_threads=2, search_threads=threads)
        try:
            started = time.perf_counter()
            index = LuceneBM25Index.build_from_tokens(
                doc_ids, corpus_tokens, tokenizer, SCORING, corpus_hash, lucene=config
            )
        except LuceneUnavailableError as exc:
            print(f"lucene comparison skipped: {exc}")
            return results
        build_s = time.perf_counter() - started
        queries = [q for q in query_tokens if q]
        times, _ = _timed(lambda index=index, queries=queries: index.search_tokens(queries, k), 1)
        qps = len(queries) / min(times)
        key = "lucene_qps" if threads == 1 else "lucene_batched_2_threads_qps"
        results[key] = round(qps, 1)
        results["lucene_build_s"] = round(build_s, 2)
        print(f"lucene (pyserini) BM25, {threads} search thread(s): {qps:.0f} q/s (built in {build_s:.1f}s)")
        index.close()
    return results


def measure_dense(
    doc_ids: list[str], texts: list[str], corpus_hash: str, queries: list[str], k: int
) -> dict[str, Any]:
    """``dense_batched_qps`` vs ``dense_one_by_one_qps`` with the demo encoder (USE) over a flat FAISS index.

    Document vectors come from the project's embedding cache (``data/04_feature/embedding_cache``, filled
    by ``make demo``; computed and stored on the first run); both timings include encoding the queries.
    """
    from finrag_pipelines.embedding.store import EmbeddingStore, encode_with_store
    from finrag_pipelines.embedding.use_encoder import USEEncoder
    from finrag_pipelines.retrieval.dense import DenseIndex, measure_dense_qps

    encoder = USEEncoder(threads=2)
    store = EmbeddingStore(_ROOT / "data/04_feature/embedding_cache")
    vectors = encode_with_store(encoder, texts, "document", store)
    meta = {**encoder.describe(), "fingerprint": encoder.fingerprint}
    index = DenseIndex.build(doc_ids, vectors, meta, corpus_hash)
    out = measure_dense_qps(encoder, index, queries, k=k, batch_size=64)
    ratio = out["dense_batched_qps"] / out["dense_one_by_one_qps"]
    print(
        f"dense (USE, flat, top-{k}): batched {out['dense_batched_qps']:.0f} q/s, one by one "
        f"{out['dense_one_by_one_qps']:.0f} q/s; ratio {ratio:.2f}"
    )
    return {
        "dense_batched_qps": round(out["dense_batched_qps"], 1),
        "dense_one_by_one_qps": round(out["dense_one_by_one_qps"], 1),
        "dense_batched_vs_one_by_one": round(ratio, 2),
    }


def measure_ngram(
    doc_ids: list[str], texts: list[str], corpus_hash: str, queries: list[str], k: int, repeats: int
) -> tuple[BM25Index, dict[str, Any]]:
    """``ngram_bm25_qps`` (query n-grams given) and ``ngram_bm25_text_qps`` (tokenising included)."""
    from finrag_pipelines.text.ngram import CharNgramTokenizer

    tokenizer = CharNgramTokenizer(**NGRAM_SETTINGS)
    started = time.perf_counter()
    index = BM25Index.build(doc_ids, texts, tokenizer, NGRAM_SCORING, corpus_hash, name="bm25_ngram")
    build_s = time.perf_counter() - started
    query_tokens = tokenizer.tokenize_many(queries)
    token_times, _ = _timed(lambda: index.search_tokens(query_tokens, k), repeats)
    text_times, _ = _timed(lambda: index.search(queries, k), repeats)
    qps, text_qps = len(queries) / min(token_times), len(queries) / min(text_times)
    print(
        f"n-gram BM25 ({tokenizer!r}, {index.vocab_size} terms, built in {build_s:.2f}s): {qps:.0f} q/s on "
        f"query n-grams, {text_qps:.0f} q/s on texts"
    )
    return index, {
        "ngram_bm25_qps": round(qps, 1),
        "ngram_bm25_text_qps": round(text_qps, 1),
        "ngram_build_s": round(build_s, 2),
        "ngram_vocab_size": index.vocab_size,
    }


def measure_fusion(
    corpus_dir: Path,
    doc_ids: list[str],
    texts: list[str],
    corpus_hash: str,
    queries: list[str],
    lexical: dict[str, BM25Index],
    repeats: int,
    skip_dense: bool,
) -> dict[str, Any]:
    """Evaluation's fusion settings applied here: fusing precomputed runs, and search + fuse end to end."""
    from finrag_pipelines.retrieval.first_stage import FusionSettings
    from finrag_pipelines.retrieval.learned_fusion import FeatureBuilder

    path = _ROOT / "data/07_model_output" / corpus_dir.name / "fusion_settings.json"
    path = latest_path(path) if versions(path) else path  # the newest version evaluation saved
    if not path.is_file():
        print(f"fusion skipped: no {path} (run `kedro run --env demo --pipelines index_build,evaluation`)")
        return {"fusion_settings": None}
    settings = FusionSettings.from_dict(json.loads(path.read_text(encoding="utf-8")), str(path))
    retrievers: dict[str, Any] = dict(lexical)
    if "bm25_plain" in settings.retrievers:
        plain = FinanceTokenizer(**PLAIN_SETTINGS)
        retrievers["bm25_plain"] = BM25Index.build(
            doc_ids, texts, plain, PLAIN_SCORING, corpus_hash, name="bm25_plain"
        )
    if "dense" in settings.retrievers:
        if skip_dense:
            print("fusion skipped: its settings fuse dense, and --skip-dense is set")
            return {"fusion_settings": str(path)}
        from finrag_pipelines.embedding.store import EmbeddingStore, encode_with_store
        from finrag_pipelines.embedding.use_encoder import USEEncoder
        from finrag_pipelines.retrieval.dense import DenseIndex, DenseRetriever

        encoder = USEEncoder(threads=2)
        store = EmbeddingStore(_ROOT / "data/04_feature/embedding_cache")
        vectors = encode_with_store(encoder, texts, "document", store)
        meta = {**encoder.describe(), "fingerprint": encoder.fingerprint}
        retrievers["dense"] = DenseRetriever(DenseIndex.build(doc_ids, vectors, meta, corpus_hash), encoder)
    if "dense_finetuned" in settings.retrievers and not skip_dense:
        retriever = _finetuned_dense(corpus_dir.name)
        if retriever is not None:
            retrievers["dense_finetuned"] = retriever
    missing = [name for name in settings.retrievers if name not in retrievers]
    if missing:
        print(f"fusion skipped: its settings fuse {missing}, which this benchmark does not build")
        return {"fusion_settings": str(path)}
    builder = FeatureBuilder(dict(zip(doc_ids, texts)), {v: retrievers[v].tokenizer for v in settings.views})
    runs = {name: retrievers[name].search(queries, settings.depth) for name in settings.retrievers}
    out: dict[str, Any] = {
        "fusion_settings": str(path),
        "fusion_method": settings.method,
        "fusion_retrievers": list(settings.retrievers),
    }
    for method in ("weighted", "learned"):
        if method == "learned" and settings.learned is None:
            continue
        times, _ = _timed(partial(settings.fuse, runs, queries, builder, method), max(1, repeats - 2))
        out[f"fusion_{method}_fuse_qps"] = round(len(queries) / min(times), 1)

    def end_to_end() -> Any:
        fresh = {name: retrievers[name].search(queries, settings.depth) for name in settings.retrievers}
        return settings.fuse(fresh, queries, builder)

    times, _ = _timed(end_to_end, max(1, repeats - 2))
    out["fusion_end_to_end_qps"] = round(len(queries) / min(times), 1)
    print(
        f"fusion over {list(settings.retrievers)} (depth {settings.depth}): fuse only "
        + ", ".join(
            f"{m} {out[f'fusion_{m}_fuse_qps']:.0f} q/s"
            for m in ("weighted", "learned")
            if f"fusion_{m}_fuse_qps" in out
        )
        + f"; search + fuse ({settings.method}) {out['fusion_end_to_end_qps']:.0f} q/s"
    )
    return out


def _finetuned_dense(set_name: str) -> Any:
    """The demo's fine-tuned dense retriever as evaluation used it: the newest versions of the merged model
    (``encoders.finetuned``, demo settings) and of its index; ``None`` when either is missing."""
    from finrag_pipelines.embedding.hf_encoder import HFEncoder
    from finrag_pipelines.retrieval.dense import DenseIndex, DenseRetriever

    model = _ROOT / "data/06_models/embedding_finetuned/merged"
    folder = _ROOT / "data/06_models" / set_name / "dense_finetuned"
    if not (versions(model) and versions(folder)):
        print(f"no fine-tuned model or index under {model} / {folder} (run `make demo`)")
        return None
    conf = {}
    for env in ("base", "demo"):  # the demo environment overrides single keys (max_length)
        globals_ = yaml.safe_load((_ROOT / f"conf/{env}/globals.yml").read_text(encoding="utf-8"))
        conf.update({k: v for k, v in globals_["encoders"].get("finetuned", {}).items() if k != "<<"})
    base = yaml.safe_load((_ROOT / "conf/base/globals.yml").read_text(encoding="utf-8"))["encoders"]["qwen3"]
    conf = {**base, **conf}
    encoder = HFEncoder(
        latest_path(model), query_task=conf["query_task"], max_length=conf["max_length"],
        batch_size=conf["batch_size"],
    )  # fmt: skip
    return DenseRetriever(DenseIndex.load(latest_path(folder)), encoder, name="dense_finetuned")


def measure_dense_hf(
    doc_ids: list[str], texts: list[str], corpus_hash: str, queries: list[str], k: int, rounds: int = 5
) -> dict[str, Any]:
    """``dense_hf_batched_qps`` vs ``dense_hf_one_by_one_qps`` with the ``hf`` encoder (batching is ours).

    The encoder is a tiny random Qwen3 built locally as in the tests (``embedding/tiny_model.py``: tokenizer
    trained on 400 corpus lines, hidden size 64, 2 layers), wrapped in :class:`HFEncoder` with the base
    encoder's query instruction, ``max_length`` and ``batch_size`` from ``conf/base/globals.yml``; a flat
    FAISS index over the corpus. Batched: all queries through :class:`DenseRetriever` (256 per call);
    one by one: the first 200 queries, one call each. Both include query encoding. The two modes alternate
    for ``rounds`` rounds (load from other processes on a shared machine hits both alike); the ratio is
    the median of the per-round ratios.
    """
    from finrag_pipelines.embedding.hf_encoder import HFEncoder
    from finrag_pipelines.embedding.tiny_model import build_tiny_qwen3
    from finrag_pipelines.retrieval.dense import DenseIndex, DenseRetriever

    conf = yaml.safe_load((_ROOT / "conf/base/globals.yml").read_text(encoding="utf-8"))
    base = conf["encoders"][conf["encoder_roles"]["base"]]
    lines = [line.strip() for text in texts for line in text.splitlines() if line.strip()][:400]
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_qwen3(lines, Path(tmp) / "tiny_qwen3")
        encoder = HFEncoder(
            model, query_task=base["query_task"], max_length=base["max_length"], batch_size=base["batch_size"]
        )
        vectors = encoder.encode_documents(texts)
        meta = {**encoder.describe(), "fingerprint": encoder.fingerprint}
        index = DenseIndex.build(doc_ids, vectors, meta, corpus_hash)
        retriever = DenseRetriever(index, encoder, batch_size=256)
        single = queries[:200]
        retriever.search(queries[:8], k)  # warm-up (and the instruction's cache)
        ratios: list[float] = []
        batched_times: list[float] = []
        single_times: list[float] = []
        for _ in range(rounds):
            started = time.perf_counter()
            retriever.search(queries, k)
            batched_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            for query in single:
                retriever.search([query], k)
            single_times.append(time.perf_counter() - started)
            ratios.append((len(queries) / batched_times[-1]) / (len(single) / single_times[-1]))
    batched = len(queries) / statistics.median(batched_times)
    one_by_one = len(single) / statistics.median(single_times)
    ratio = statistics.median(ratios)
    print(
        f"dense (hf tiny Qwen3, flat, top-{k}): batched {batched:.0f} q/s, one by one {one_by_one:.0f} q/s "
        f"(medians); ratio {ratio:.2f} (median of {rounds} interleaved rounds, range "
        f"{min(ratios):.2f}-{max(ratios):.2f}; target >= 5)"
    )
    return {
        "dense_hf_batched_qps": round(batched, 1),
        "dense_hf_one_by_one_qps": round(one_by_one, 1),
        "dense_hf_batched_vs_one_by_one": round(ratio, 2),
        "dense_hf_target_5x_met": ratio >= 5.0,
    }


def measure_faiss_scale(n_docs: int, dim: int, n_queries: int, k: int, seed: int = 0) -> dict[str, Any]:
    """FAISS search alone at a realistic scale (random unit vectors, e.g. 100k x 1024 as Qwen3-Embedding-0.6B
    gives): batched search of all queries vs one ``search`` call per query, same index, same queries."""
    import faiss

    rng = np.random.default_rng(seed)
    docs = rng.standard_normal((n_docs, dim), dtype=np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    queries = rng.standard_normal((n_queries, dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(dim)
    index.add(docs)
    index.search(queries[:1], k)
    started = time.perf_counter()
    index.search(queries, k)
    batched = n_queries / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(n_queries):
        index.search(queries[i : i + 1], k)
    single = n_queries / (time.perf_counter() - started)
    print(
        f"FAISS flat search only, {n_docs} x {dim}: batched {batched:.0f} q/s, one by one {single:.0f} q/s; "
        f"ratio {batched / single:.2f}"
    )
    return {
        "faiss_scale_docs": n_docs,
        "faiss_scale_dim": dim,
        "faiss_scale_batched_qps": round(batched, 1),
        "faiss_scale_one_by_one_qps": round(single, 1),
        "faiss_scale_batched_vs_one_by_one": round(batched / single, 2),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run every measurement and print the final JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--corpus-dir", type=Path, default=None, help="BEIR folder (default: bundled FinTruthQA)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats after the warm-up")
    parser.add_argument("--k", type=int, default=10, help="hits per query")
    parser.add_argument(
        "--segmenter",
        choices=["auto", "jieba", "jieba_next"],
        default="auto",
        help="jieba implementation behind FinanceTokenizer (auto: jieba_next if installed)",
    )
    parser.add_argument(
        "--skip-dense", action="store_true", help="skip the dense (USE, hf tiny Qwen3, FAISS) measurements"
    )
    parser.add_argument(
        "--faiss-docs", type=int, default=100_000, help="size of the synthetic FAISS-only index"
    )
    args = parser.parse_args(argv)
    TOKENIZER_SETTINGS["segmenter"] = args.segmenter
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import jieba  # noqa: F401  (imported first: it sets DEBUG on its logger at import time)

    for chatty in ("jieba", "bm25s"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    corpus_dir = args.corpus_dir or default_corpus_dir()

    results: dict[str, Any] = {
        "corpus_dir": str(corpus_dir),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "bm25s": bm25s.__version__,
    }
    doc_ids, texts, corpus_hash, queries = load_beir(corpus_dir)
    results.update(num_docs=len(doc_ids), num_queries=len(queries), k=args.k)
    print(f"corpus {corpus_dir}: {len(doc_ids)} docs, {len(queries)} queries, {os.cpu_count()} cores")

    results.update(measure_tokenize(texts, args.repeats))
    results.update(measure_jieba_single(texts, args.repeats))
    results["tokenize_vs_jieba_single"] = round(
        results["tokenize_mb_per_s"] / results["jieba_single_mb_per_s"], 2
    )

    tokenizer = FinanceTokenizer(**TOKENIZER_SETTINGS)
    corpus_tokens = tokenizer.tokenize_many(texts)
    query_tokens = tokenizer.tokenize_many(queries)
    ours, plain = build_indexes(doc_ids, corpus_tokens, corpus_hash)
    results.update(measure_bm25_search(ours, plain, query_tokens, args.k, args.repeats))
    results.update(measure_search_with_tokenizing(ours, queries, args.k, args.repeats))
    results.update(measure_lucene(doc_ids, corpus_tokens, query_tokens, tokenizer, corpus_hash, args.k))
    if results["lucene_qps"]:
        results["ours_vs_lucene_ratio"] = round(results["ours_bm25_qps"] / results["lucene_qps"], 2)
    ngram, ngram_results = measure_ngram(doc_ids, texts, corpus_hash, queries, args.k, args.repeats)
    results.update(ngram_results)
    results["ngram_vs_ours_bm25"] = round(results["ngram_bm25_qps"] / results["ours_bm25_qps"], 2)
    text_ratio = results["ngram_bm25_text_qps"] / results["ours_bm25_text_qps"]
    results["ngram_vs_ours_bm25_text"] = round(text_ratio, 2)
    results.update(
        measure_fusion(
            corpus_dir,
            doc_ids,
            texts,
            corpus_hash,
            queries,
            {"bm25": ours, "bm25_ngram": ngram},
            args.repeats,
            args.skip_dense,
        )
    )
    if not args.skip_dense:
        results.update(measure_dense(doc_ids, texts, corpus_hash, queries, args.k))
        results.update(measure_dense_hf(doc_ids, texts, corpus_hash, queries, args.k))
        results.update(measure_faiss_scale(args.faiss_docs, 1024, 200, args.k))

    print(json.dumps(results, ensure_ascii=False))
    return results


if __name__ == "__main__":
    main()
