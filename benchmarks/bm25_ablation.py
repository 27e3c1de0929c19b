"""BM25 ablation: what each of our tokenizer/scoring choices does, measured against plain jieba+bm25s.

Usage::

    .venv/bin/python benchmarks/bm25_ablation.py [--corpus-dir DIR] [--split tune|report|all]

Defaults are chosen on the ``tune`` split (the evaluation pipeline's seeded query split, same seed as
``conf/base/parameters_evaluation.yml``) and only *reported* on ``report``: run with ``--split tune`` to
choose, ``--split report`` once to confirm. Each variant changes one thing relative to ``ours`` (the conf/base
settings) or adds one thing to ``plain``. Prints a table and a final JSON line with MRR@10/nDCG@10 per variant
and the ratio to ``plain`` computed in the same process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT / "src") not in sys.path:
    sys.path.insert(0, str(_ROOT / "src"))

from finrag_pipelines.pipelines.evaluation.nodes import split_queries  # noqa: E402
from finrag_pipelines.pipelines.evaluation.params import SplitParams  # noqa: E402
from finrag_pipelines.retrieval.bm25.index import BM25Index  # noqa: E402
from finrag_pipelines.retrieval.bm25.scoring import BM25Config  # noqa: E402
from finrag_pipelines.retrieval.metrics import query_metrics  # noqa: E402
from finrag_pipelines.text.corpus import SourceRow, indexable, parse_documents, parse_qrels, parse_queries  # noqa: E402
from finrag_pipelines.text.tokenize import FinanceTokenizer  # noqa: E402


def _conf(name: str) -> dict[str, Any]:
    return yaml.safe_load((_ROOT / "conf" / "base" / name).read_text(encoding="utf-8"))


def _rows(path: Path, fmt: str = "jsonl") -> list[SourceRow]:
    with path.open(encoding="utf-8") as handle:
        return [
            SourceRow(str(path), i, json.loads(line) if fmt == "jsonl" else line.rstrip("\n"))
            for i, line in enumerate(handle, start=1)
            if line.strip()
        ]


def variants(
    ours_tok: dict[str, Any],
    ours_scoring: dict[str, Any],
    plain_tok: dict[str, Any],
    plain_scoring: dict[str, Any],
):
    """(name, tokenizer settings, scoring settings) for each variant."""
    out = [("plain", plain_tok, plain_scoring), ("ours", ours_tok, ours_scoring)]
    out += [
        ("plain+finance_dict", {**plain_tok, "use_finance_dict": True}, plain_scoring),
        ("plain+stopwords", {**plain_tok, "stopwords": "builtin"}, plain_scoring),
        ("plain+search_mode", {**plain_tok, "search_mode": True}, plain_scoring),
        ("plain+tf_cap", plain_tok, {**plain_scoring, "tf_cap": ours_scoring["tf_cap"] or 5}),
        (
            "plain+finance_dict+weight",
            {**plain_tok, "use_finance_dict": True},
            {**plain_scoring, "domain_term_weight": 1.2},
        ),
        ("ours-finance_dict", {**ours_tok, "use_finance_dict": False}, ours_scoring),
        ("ours-stopwords", {**ours_tok, "stopwords": None}, ours_scoring),
        ("ours-tf_cap", ours_tok, {**ours_scoring, "tf_cap": None}),
        ("ours-weight", ours_tok, {**ours_scoring, "domain_term_weight": 1.0}),
        ("ours-search_mode", {**ours_tok, "search_mode": not ours_tok["search_mode"]}, ours_scoring),
        ("ours,tf_cap=2", ours_tok, {**ours_scoring, "tf_cap": 2}),
        ("ours,tf_cap=3", ours_tok, {**ours_scoring, "tf_cap": 3}),
        ("ours,weight=1.5", ours_tok, {**ours_scoring, "domain_term_weight": 1.5}),
    ]
    for k1 in (0.9, 1.2, 1.5):
        out.append((f"ours,k1={k1}", ours_tok, {**ours_scoring, "k1": k1}))
    for b in (0.4, 0.6, 0.75, 0.9):
        out.append((f"ours,b={b}", ours_tok, {**ours_scoring, "b": b}))
    return out


def main() -> None:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus-dir", type=Path, default=_ROOT / "data/01_raw/retrieval/fintruthqa")
    parser.add_argument("--split", choices=["tune", "report", "all"], default="tune")
    args = parser.parse_args()

    docs = parse_documents(_rows(args.corpus_dir / "corpus.jsonl"))
    ids, texts, digest = indexable([d.doc_id for d in docs], [d.title for d in docs], [d.text for d in docs])
    queries = pd.DataFrame(
        parse_queries(_rows(args.corpus_dir / "queries.jsonl")), columns=["query_id", "text"]
    )
    relevance: dict[str, dict[str, int]] = {}
    for qid, did, grade, _ in parse_qrels(_rows(args.corpus_dir / "qrels.tsv", "lines")):
        if grade > 0:
            relevance.setdefault(qid, {})[did] = grade
    split_conf = _conf("parameters_evaluation.yml")["evaluation"]["split"]
    splits = split_queries(queries, SplitParams(**split_conf))
    chosen = (
        set(splits["query_id"])
        if args.split == "all"
        else set(splits.loc[splits["split"] == args.split, "query_id"])
    )
    queries = queries[queries["query_id"].isin(chosen) & queries["query_id"].isin(relevance)]

    params = _conf("parameters_index_build.yml")["index_build"]
    results: dict[str, dict[str, float]] = {}
    print(f"{len(ids)} documents, {len(queries)} {args.split} queries")
    print(f"{'variant':32s} {'mrr@10':>8s} {'ndcg@10':>8s} {'top1':>6s} {'top10':>6s}  build s")
    for name, tok, scoring in variants(
        params["bm25"]["tokenizer"],
        params["bm25"]["scoring"],
        params["bm25_plain"]["tokenizer"],
        params["bm25_plain"]["scoring"],
    ):
        start = time.perf_counter()
        index = BM25Index.build(ids, texts, FinanceTokenizer(**tok), BM25Config(**scoring), digest)
        built = time.perf_counter() - start
        run = index.search(list(queries["text"]), 10)
        per_query = [
            query_metrics([h.doc_id for h in hits], relevance[q]) for q, hits in zip(queries["query_id"], run)
        ]
        row = {m: float(np.mean([p[m] for p in per_query])) for m in ("mrr@10", "ndcg@10", "top1", "top10")}
        results[name] = row
        print(
            f"{name:32s} {row['mrr@10']:8.4f} {row['ndcg@10']:8.4f} "
            f"{row['top1']:6.3f} {row['top10']:6.3f}  {built:6.1f}"
        )
    plain = results["plain"]
    final = {
        "split": args.split,
        "n_queries": int(len(queries)),
        **{f"{name}_mrr@10": round(r["mrr@10"], 4) for name, r in results.items()},
        "ours_vs_plain_mrr_ratio": round(results["ours"]["mrr@10"] / plain["mrr@10"], 4),
        "ours_vs_plain_ndcg_ratio": round(results["ours"]["ndcg@10"] / plain["ndcg@10"], 4),
    }
    print(json.dumps(final, ensure_ascii=False))


if __name__ == "__main__":
    main()
