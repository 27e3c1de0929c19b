"""Rendering of the evaluation report (markdown) and chart (matplotlib), kept apart from the nodes."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def _fmt(value: float) -> str:
    return f"{value:.4f}"


def metrics_table(metrics: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Markdown table: one row per retriever, one column per metric."""
    names = [k for k in next(iter(metrics.values())) if k != "n_queries"]
    lines = ["| retriever | " + " | ".join(names) + " | n_queries |", "|---" * (len(names) + 2) + "|"]
    for retriever, row in metrics.items():
        cells = " | ".join(_fmt(row[n]) for n in names)
        lines.append(f"| {retriever} | {cells} | {int(row['n_queries'])} |")
    return lines


def comparisons_table(comparisons: Sequence[Mapping[str, Any]]) -> list[str]:
    """Markdown table of paired differences with bootstrap intervals."""
    lines = ["| a − b | metric | mean diff | CI low | CI high | p | n |", "|---|---|---|---|---|---|---|"]
    for c in comparisons:
        lines.append(
            f"| {c['a']} − {c['b']} | {c['metric']} | {c['mean_diff']:+.4f} | {c['low']:+.4f} | "
            f"{c['high']:+.4f} | {c['p_value']:.3f} | {c['n_queries']} |"
        )
    return lines


def _index_lines(name: str, meta: Mapping[str, Any]) -> list[str]:
    lines = [f"- **{name}**: built {meta.get('built_at', '?')}, {meta.get('num_docs', '?')} docs, "
             f"corpus hash `{str(meta.get('corpus_hash', '?'))[:12]}`"]
    if "bm25" in meta:
        lines.append(f"  - scoring: `{meta['bm25']}`")
        tok = meta.get("tokenizer", {})
        shown = {k: v for k, v in tok.items() if not k.endswith("sha256") and k not in ("kind", "format_version")}
        lines.append(f"  - tokenizer: `{shown}`")
    if "encoder" in meta:
        enc = meta["encoder"]
        lines.append(
            f"  - encoder: `{enc.get('kind')}` {enc.get('model_path') or enc.get('model_name') or ''} "
            f"(fingerprint `{str(enc.get('fingerprint', '?'))[:12]}`), dim {meta.get('dim')}, "
            f"index `{meta.get('index_type')}`"
        )
        lines.append(f"  - query instruction: `{meta.get('query_task')!r}` in template `{meta.get('instruction_template')!r}`")
    return lines


def render_markdown(
    dataset: str,
    metrics: Mapping[str, Mapping[str, float]],
    comparisons: Sequence[Mapping[str, Any]],
    fusion_weight: Mapping[str, Any],
    split_counts: Mapping[str, int],
    prep: Mapping[str, Any],
    index_meta: Mapping[str, Mapping[str, Any]],
) -> str:
    """The whole markdown report."""
    lines = [
        f"# Retrieval evaluation — `{dataset}`",
        "",
        f"Corpus: {prep.get('documents_in')} documents in, status counts {prep.get('documents_by_status')}; "
        f"{prep.get('queries')} queries, {prep.get('judgements')} judgements.",
        f"Queries without any relevant document (not scored): {len(prep.get('queries_without_relevant_documents', []))}.",
        f"Query split (seeded hash of the id): {dict(split_counts)}. "
        + ("The weighted hybrid's dense weight is tuned on `tune` only; " if fusion_weight["grid"]
           else "The weighted hybrid's dense weight is fixed in conf (not tuned on this set); ")
        + "every number below is on `report` only.",
        "",
        "## Metrics (report split)",
        "",
        *metrics_table(metrics),
        "",
        "## Paired differences (bootstrap over report queries)",
        "",
        *comparisons_table(comparisons),
        "",
    ]
    by_pair = {(c["a"], c["b"], c["metric"]): c for c in comparisons}
    for metric in ("mrr@10", "ndcg@10"):
        c = by_pair.get(("bm25", "bm25_plain", metric))
        if c:
            verdict = "better than" if c["low"] > 0 else "worse than" if c["high"] < 0 else "not distinguishable from"
            lines.append(
                f"Our BM25 (finance dictionary, search-mode sub-words, stopwords, tf cap, domain-term weight) is **{verdict}** "
                f"plain jieba+bm25s on "
                f"{metric}: {c['mean_diff']:+.4f} ({int(c['confidence'] * 100)}% CI {c['low']:+.4f} … {c['high']:+.4f})."
            )
    grid = ", ".join(f"{row['dense_weight']:.2f}→{row[fusion_weight['metric']]:.4f}" for row in fusion_weight["grid"])
    lines += [
        "",
        "## Hybrid fusion",
        "",
        "- `hybrid_rrf`: reciprocal rank fusion of `dense` and `bm25` (no tuning).",
        f"- `hybrid_weighted`: `w·dense + (1−w)·bm25` over per-query normalised scores; "
        f"w = **{fusion_weight['dense_weight']:.2f}**, "
        + (f"chosen by {fusion_weight['metric']} on {fusion_weight['n_tune_queries']} tune queries. Grid: {grid}."
           if fusion_weight["grid"] else f"{fusion_weight.get('source', 'fixed in conf')}, not tuned on this set."),
        "",
        "## Indexes",
        "",
    ]
    for name, meta in index_meta.items():
        lines += _index_lines(name, meta)
    lines += [
        "",
        "Metrics: `topk` = share of queries with a relevant document in the first k; MRR@10; Recall@10 (share of the "
        "relevant documents in the first 10); nDCG@10 with gain 2^grade−1. A retrieval failure aborts the run; "
        "it is never scored as a miss.",
        "",
    ]
    return "\n".join(lines)


def plot_metrics(metrics: Mapping[str, Mapping[str, float]], title: str) -> Figure:
    """Grouped bar chart: metrics on the x axis, one bar per retriever."""
    names = [k for k in next(iter(metrics.values())) if k != "n_queries"]
    retrievers = list(metrics)
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(names)), 4.5))
    width = 0.8 / max(1, len(retrievers))
    for i, retriever in enumerate(retrievers):
        xs = [j + (i - (len(retrievers) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, [metrics[retriever][n] for n in names], width=width, label=retriever)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score (report split)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small", ncols=min(3, len(retrievers)))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
