"""Rendering of the evaluation report (markdown) and chart (matplotlib), kept apart from the nodes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from finrag_pipelines.pipelines.evaluation.report_fusion import (  # noqa: E402
    first_stage_fusion_lines,
    vocabulary_lines,
)


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
        if c.get("status") == "skipped":
            lines.append(f"| {c['a']} − {c['b']} | — | skipped: {c['reason']} | | | | |")
            continue
        lines.append(
            f"| {c['a']} − {c['b']} | {c['metric']} | {c['mean_diff']:+.4f} | {c['low']:+.4f} | "
            f"{c['high']:+.4f} | {c['p_value']:.3f} | {c['n_queries']} |"
        )
    return lines


def _index_lines(name: str, meta: Mapping[str, Any]) -> list[str]:
    if meta.get("status") == "unavailable":
        return [f"- **{name}**: not built — {meta.get('reason')}"]
    lines = [
        f"- **{name}**: built {meta.get('built_at', '?')}, {meta.get('num_docs', '?')} docs, "
        f"corpus hash `{str(meta.get('corpus_hash', '?'))[:12]}`"
    ]
    if "bm25" in meta:
        lines.append(f"  - scoring: `{meta['bm25']}`")
        if meta.get("backend") == "lucene":
            lucene = meta.get("lucene", {})
            lines.append(
                f"  - backend: Lucene (pyserini {lucene.get('versions', {}).get('pyserini')}), "
                f"k1 {lucene.get('k1')}, b {lucene.get('b')}, RM3 `{lucene.get('rm3')}`; "
                f"not applied: `{lucene.get('not_applied')}`"
            )
        tok = meta.get("tokenizer", {})
        shown = {
            k: v for k, v in tok.items() if not k.endswith("sha256") and k not in ("kind", "format_version")
        }
        lines.append(f"  - tokenizer: `{shown}`")
    if "encoder" in meta:
        enc = meta["encoder"]
        lines.append(
            f"  - encoder: `{enc.get('kind')}` {enc.get('model_path') or enc.get('model_name') or ''} "
            f"(fingerprint `{str(enc.get('fingerprint', '?'))[:12]}`), dim {meta.get('dim')}, "
            f"index `{meta.get('index_type')}`"
        )
        lines.append(
            f"  - query instruction: `{meta.get('query_task')!r}` "
            f"in template `{meta.get('instruction_template')!r}`"
        )
    return lines


def _verdict(c: Mapping[str, Any]) -> str:
    return "better than" if c["low"] > 0 else "worse than" if c["high"] < 0 else "not distinguishable from"


def _diff_text(c: Mapping[str, Any]) -> str:
    return f"{c['mean_diff']:+.4f} ({int(c['confidence'] * 100)}% CI {c['low']:+.4f} … {c['high']:+.4f})"


def _fusion_lines(name: str, dense: str, weight: Mapping[str, Any]) -> list[str]:
    if weight.get("dense_weight") is None:
        return [f"- `{name}`: {weight.get('source', 'not evaluated')}."]
    grid = ", ".join(f"{row['dense_weight']:.2f}→{row[weight['metric']]:.4f}" for row in weight["grid"])
    how = (
        f"chosen by {weight['metric']} on {weight['n_tune_queries']} tune queries. Grid: {grid}."
        if weight["grid"]
        else f"{weight.get('source', 'fixed in conf')}, not tuned on this set."
    )
    return [
        f"- `{name}`: `w·{dense} + (1−w)·bm25` over per-query normalised scores; "
        f"w = **{weight['dense_weight']:.2f}**, {how}"
    ]


def _finetune_lines(
    comparisons: Sequence[Mapping[str, Any]], index_meta: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    def model(name: str) -> str:
        meta = index_meta.get(name, {})
        if meta.get("status") == "unavailable":
            return f"not available ({meta.get('reason')})"
        enc = meta.get("encoder", {})
        return f"`{enc.get('model_path') or enc.get('model_name') or enc.get('kind', '?')}`"

    lines = [
        "## Fine-tuned encoder",
        "",
        f"- `dense_pretrained`: the checkpoint embedding_finetune started from, {model('dense_pretrained')}.",
        (
            "- `dense_finetuned`: that checkpoint after fine-tuning on the mined InfoNCE rows, "
            f"{model('dense_finetuned')}."
        ),
        f"- `dense`: the configured base encoder, {model('dense')}. "
        "In the base setup it is the same model as `dense_pretrained`; "
        "in the offline demo it is USE, while the fine-tune starts from a tiny Qwen3 built from the corpus, "
        "so there `dense_finetuned − dense_pretrained` is what fine-tuning did "
        "and `dense_finetuned − dense` compares two different models.",
    ]
    by_pair = {(c["a"], c["b"], c.get("metric")): c for c in comparisons}
    for a, b in (
        ("dense_finetuned", "dense_pretrained"),
        ("dense_finetuned", "dense"),
        ("hybrid_weighted_finetuned", "hybrid_weighted"),
    ):
        c = by_pair.get((a, b, "mrr@10"))
        if c:
            lines.append(f"- `{a}` is **{_verdict(c)}** `{b}` on mrr@10: {_diff_text(c)}.")
    skipped = [c for c in comparisons if c.get("status") == "skipped" and "finetuned" in c["a"] + c["b"]]
    for c in skipped[:1]:
        lines.append(f"- Comparisons with the fine-tuned encoder were skipped: {c['reason']}.")
    return lines + [""]


def _rerank_lines(
    rerank: Mapping[str, Any], comparisons: Sequence[Mapping[str, Any]], status: Mapping[str, str]
) -> list[str]:
    lines = [
        "## Rerank stage",
        "",
        (
            f"`<retriever>_rerank` reorders the top {rerank.get('top_n')} hits of each of "
            f"{', '.join(f'`{r}`' for r in rerank.get('retrievers', [])) or 'no retriever'} by a "
            "cross-encoder's relevance probability; `_rerank_finetuned` uses the reranker "
            "`reranker_finetune` trained on the mined rows."
        ),
    ]
    for suffix, about in rerank.get("rerankers", {}).items():
        if about.get("status") == "unavailable":
            lines.append(f"- `{suffix}`: not evaluated — {about.get('reason')}.")
        else:
            shown = ", ".join(f"{k} `{v}`" for k, v in about.items() if k != "status")
            lines.append(f"- `{suffix}`: {shown}.")
    by_pair = {(c["a"], c["b"], c.get("metric")): c for c in comparisons}
    for (a, b, metric), c in by_pair.items():
        if metric == "mrr@10" and "_rerank" in a and status.get(a) == "evaluated":
            lines.append(f"- `{a}` is **{_verdict(c)}** `{b}` on mrr@10: {_diff_text(c)}.")
    return lines + [""]


def render_markdown(
    dataset: str,
    metrics: Mapping[str, Mapping[str, float]],
    comparisons: Sequence[Mapping[str, Any]],
    fusion_weights: Mapping[str, Mapping[str, Any]],
    split_counts: Mapping[str, int],
    prep: Mapping[str, Any],
    index_meta: Mapping[str, Mapping[str, Any]],
    retriever_status: Mapping[str, str] | None = None,
    rerank: Mapping[str, Any] | None = None,
    first_stage_fusion: Mapping[str, Any] | None = None,
    vocabulary: Mapping[str, Any] | None = None,
) -> str:
    """The whole markdown report.

    Args:
        fusion_weights: The tuned (or fixed) weight of each weighted hybrid, keyed by the hybrid's name.
        retriever_status: ``"evaluated"`` or ``"not evaluated: <reason>"`` per retriever.
        rerank: The rerank stage's settings (evaluation's ``rerank_settings``), or ``None`` for none.
        first_stage_fusion: The ``fusion_settings`` artefact (weights, model, cross-validation), if any.
        vocabulary: index_build's ``vocabulary_ablation``, if any.
    """
    tuned = any(w.get("grid") for w in fusion_weights.values())
    not_evaluated = {k: v for k, v in (retriever_status or {}).items() if v != "evaluated"}
    lines = [
        f"# Retrieval evaluation — `{dataset}`",
        "",
        f"Corpus: {prep.get('documents_in')} documents in, status counts {prep.get('documents_by_status')}; "
        f"{prep.get('queries')} queries, {prep.get('judgements')} judgements.",
        "Queries without any relevant document (not scored): "
        f"{len(prep.get('queries_without_relevant_documents', []))}.",
        f"Query split (seeded hash of the id): {dict(split_counts)}. "
        + (
            "The weighted hybrids' dense weights are tuned on `tune` only; "
            if tuned
            else "The weighted hybrids' dense weights are fixed in conf (not tuned on this set); "
        )
        + "every number below is on `report` only.",
        "",
        "## Metrics (report split)",
        "",
        *metrics_table(metrics),
        "",
    ]
    if not_evaluated:
        lines += ["Not evaluated (no score recorded):", ""]
        lines += [
            f"- `{name}`: {status.removeprefix('not evaluated: ')}" for name, status in not_evaluated.items()
        ]
        lines.append("")
    lines += [
        "## Paired differences (bootstrap over report queries)",
        "",
        *comparisons_table(comparisons),
        "",
    ]
    by_pair = {(c["a"], c["b"], c.get("metric")): c for c in comparisons}
    for metric in ("mrr@10", "ndcg@10"):
        c = by_pair.get(("bm25", "bm25_plain", metric))
        if c:
            lines.append(
                "Our BM25 (finance dictionary, search-mode sub-words, stopwords, tf cap, domain-term weight) "
                "is "
                f"**{_verdict(c)}** plain jieba+bm25s on {metric}: {_diff_text(c)}."
            )
    for metric in ("mrr@10", "ndcg@10"):
        c = by_pair.get(("bm25_lucene", "bm25", metric))
        if c:
            lines.append(
                f"The same BM25 tokens in Lucene (pyserini; without the tf cap and the domain-term weight) "
                "are "
                f"**{_verdict(c)}** `bm25` on {metric}: {_diff_text(c)}."
            )
    lines += ["", *_finetune_lines(comparisons, index_meta), "## Hybrid fusion", ""]
    lines.append(
        "- `hybrid_rrf` / `hybrid_rrf_finetuned`: reciprocal rank fusion of `dense` / `dense_finetuned` "
        "and `bm25` (no tuning)."
    )
    for name, weight in fusion_weights.items():
        lines += _fusion_lines(name, "dense_finetuned" if name.endswith("_finetuned") else "dense", weight)
    if rerank is not None:
        lines += ["", *_rerank_lines(rerank, comparisons, retriever_status or {})]
    lines += ["", *first_stage_fusion_lines(first_stage_fusion), *vocabulary_lines(vocabulary)]
    lines += ["## Indexes", ""]
    for name, meta in index_meta.items():
        lines += _index_lines(name, meta)
    lines += [
        "",
        "Metrics: `topk` = share of queries with a relevant document in the first k; MRR@10; "
        "Recall@10 (share of the relevant documents in the first 10); nDCG@10 with gain 2^grade−1. "
        "A retrieval failure aborts the run; it is never scored as a miss.",
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
