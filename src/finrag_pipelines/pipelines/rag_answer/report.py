"""Rendering of the rag_answer report (markdown) and chart (matplotlib), kept apart from the nodes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from finrag_pipelines.rag.records import EXTRACTIVE_MODEL

EVALUATED = "evaluated"
CHART_METRICS = (
    "search_recall",
    "citation_precision",
    "citation_recall",
    "answer_f1",
    "rouge_l",
    "judge_score",
)
HEADLINE = ("answer_f1", "citation_recall", "search_recall")
EXAMPLES = 3
FAILURES_SHOWN = 10

DEFINITIONS = [
    "- **search_recall**: a gold document was among the passages any of the system's searches returned.",
    (
        "- **citation_precision / citation_recall**: cited ids that are gold documents / gold documents "
        "cited (precision only over answers that cite something)."
    ),
    (
        "- **answer_f1**: character-level F1 of the answer (citations removed) against the gold document "
        "text; **rouge_l**: ROUGE-L F1 (longest common character subsequence). An abstention scores 0."
    ),
    "- **judge_score**: the optional LLM judge's rubric mean in [0, 1] (a failed judgement is not scored).",
    (
        "- Failed questions (a request or a search that failed for good) are listed, never scored; — means "
        "the metric does not apply (closed_book searches nothing)."
    ),
]


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _systems_table(systems: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = ["| system | kind | retriever | protocol | model | prompt hash | status |", "|---" * 7 + "|"]
    for name, s in systems.items():
        if s["status"] != EVALUATED:
            lines.append(f"| {name} | | | | | | {s['status']} |")
            continue
        lines.append(
            f"| {name} | {s['kind']} | {_cell(s['retriever'])} | {_cell(s['protocol'])} | {s['model']} | "
            f"`{str(s['prompt_hash'])[:12]}` | evaluated |"
        )
    return lines


def _metrics_table(
    metrics: Mapping[str, Mapping[str, Any]], systems: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    head = ["n", "answered", "abstained", "failed", *CHART_METRICS, "mean_searches", "mean_turns"]
    lines = ["| system | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name, row in metrics.items():
        values = [
            row["n_questions"],
            row["answered"],
            row["abstained"],
            row["failed"],
            *(row[m] for m in CHART_METRICS),
            row["mean_searches"],
            systems[name]["mean_turns"],
        ]
        lines.append(f"| {name} | " + " | ".join(_cell(v) for v in values) + " |")
    return lines


def _verdict(c: Mapping[str, Any]) -> str:
    return "better than" if c["low"] > 0 else "worse than" if c["high"] < 0 else "not distinguishable from"


def _adds_lines(comparisons: Sequence[Mapping[str, Any]], pairs: Sequence[tuple[str, str]]) -> list[str]:
    lines = []
    for a, b in pairs:
        mine = [c for c in comparisons if c["a"] == a and c["b"] == b]
        skipped = next((c for c in mine if c["status"] == "skipped"), None)
        if skipped is not None:
            lines.append(f"- `{a} − {b}`: not measured ({skipped['reason']}; see Not evaluated).")
            continue
        parts = []
        for metric in HEADLINE:
            c = next((c for c in mine if c.get("metric") == metric and c["status"] == EVALUATED), None)
            if c is not None:
                parts.append(
                    f"{metric} {c['mean_diff']:+.4f} ({int(c['confidence'] * 100)}% CI {c['low']:+.4f} … "
                    f"{c['high']:+.4f}; {a} {_verdict(c)} {b})"
                )
        lines.append(f"- `{a} − {b}`: " + ("; ".join(parts) if parts else "no shared metric") + ".")
    return lines


def _bootstrap_table(comparisons: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["| a − b | metric | mean diff | CI low | CI high | p | n |", "|---|---|---|---|---|---|---|"]
    for c in comparisons:
        if c["status"] == EVALUATED:
            lines.append(
                f"| {c['a']} − {c['b']} | {c['metric']} | {c['mean_diff']:+.4f} | {c['low']:+.4f} | "
                f"{c['high']:+.4f} | {c['p_value']:.3f} | {c['n_questions']} |"
            )
        elif c["status"] == "skipped":
            lines.append(f"| {c['a']} − {c['b']} | — | skipped: {c['reason']} | | | | |")
    return lines


def _counter_table(systems: Mapping[str, Mapping[str, Any]]) -> list[str]:
    names = [
        "malformed_tool_calls",
        "unknown_tools",
        "hit_search_limit",
        "hit_turn_limit",
        "invalid_citations",
        "empty_answers",
    ]
    lines = ["| system | " + " | ".join(names) + " | judge failures |", "|---" * (len(names) + 2) + "|"]
    for name, s in systems.items():
        if s["status"] == EVALUATED:
            cells = [f"{s['counters'][n]} ({s['questions_with'][n]} q)" for n in names]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {s['judge_failures']} |")
    return lines


def _examples(rag_answers: Mapping[str, Any], systems: Mapping[str, Mapping[str, Any]]) -> list[str]:
    evaluated = [n for n, s in systems.items() if s["status"] == EVALUATED]
    questions = list(dict.fromkeys(r["question_id"] for r in rag_answers["records"]))[:EXAMPLES]
    lines = []
    for qid in questions:
        lines.append(f"**{qid}**")
        for record in rag_answers["records"]:
            if record["question_id"] != qid or record["system"] not in evaluated:
                continue
            if record["error"]:
                lines.append(f"- `{record['system']}`: failed — {record['error']}")
                continue
            answer = " ".join(record["answer"].split())
            answer = answer if len(answer) <= 200 else answer[:200] + "…"
            queries = "; ".join(s["query"][:40] for s in record["searches"]) or "none"
            lines.append(
                f"- `{record['system']}`: {answer or '(empty)'} — cites {record['citations'] or 'nothing'}; "
                f"searched: {queries}"
            )
        lines.append("")
    return lines


def render_markdown(
    summary: Mapping[str, Any],
    comparisons: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, Any],
    rag_answers: Mapping[str, Any],
    pairs: Sequence[tuple[str, str]],
) -> str:
    """The full report."""
    systems = summary["systems"]
    out = [f"# Grounded answers — `{summary['dataset']}`", ""]
    models = sorted({s["model"] for s in systems.values() if s["status"] == EVALUATED})
    if summary["llm_backend"] == "keyword":
        note = (
            f"Offline run (`llm.backend: keyword`): `single_shot` answers come from the extractive reader — "
            f"**{EXTRACTIVE_MODEL}**: the sentences of the retrieved passages that best cover the question, "
            "each with its citation. It measures what retrieval finds, not what a model makes of it. Systems "
            "that need an LLM are not evaluated (never scored)."
        )
        out += [note, ""]
    else:
        out += [
            f"Answers by `{', '.join(models)}` through the project's LLM client (every turn journaled).",
            "",
        ]
    n = max((m["n_questions"] for m in metrics.values()), default=0)
    out += [
        "## Systems",
        "",
        *_systems_table(systems),
        "",
        f"## Answer metrics ({n} questions of evaluation's split; judge: {summary['judge']})",
        "",
    ]
    out += [*_metrics_table(metrics, systems), ""] if metrics else ["No system was evaluated.", ""]
    out += [
        *DEFINITIONS,
        "",
        "## What retrieval adds",
        "",
        *_adds_lines(comparisons, pairs),
        "",
        "## Paired bootstrap intervals",
        "",
        *_bootstrap_table(comparisons),
        "",
        "## Handled and counted (totals, and questions affected)",
        "",
        *_counter_table(systems),
        "",
    ]
    failures = [(n, s["failures"]) for n, s in systems.items() if s["status"] == EVALUATED and s["failures"]]
    out += ["## Failures (listed, not scored)", ""]
    out += [
        f"- `{name}`: {len(f)} — "
        + "; ".join(f"{x['question_id']}: {x['error']}" for x in f[:FAILURES_SHOWN])
        for name, f in failures
    ] or ["None."]
    skipped = [f"- `{n}`: {s['status']}" for n, s in systems.items() if s["status"] != EVALUATED]
    out += [
        "",
        "## Not evaluated",
        "",
        *(skipped or ["None: every configured system was evaluated."]),
        "",
        "## Yield floor",
        "",
        summary["floor"]["message"],
        "",
        "## Example answers",
        "",
        *_examples(rag_answers, systems),
    ]
    return "\n".join(out).rstrip() + "\n"


def plot_metrics(metrics: Mapping[str, Mapping[str, Any]], title: str) -> Figure:
    """Grouped bars: one group per metric, one bar per evaluated system (metrics not applying left out)."""
    figure, axis = plt.subplots(figsize=(10, 4.5))
    systems = list(metrics)
    shown = [m for m in CHART_METRICS if any(metrics[s][m] is not None for s in systems)]
    width = 0.8 / max(1, len(systems))
    for i, system in enumerate(systems):
        xs = [j + i * width for j, m in enumerate(shown) if metrics[system][m] is not None]
        ys = [metrics[system][m] for m in shown if metrics[system][m] is not None]
        axis.bar(xs, ys, width=width, label=system)
    axis.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(shown))])
    axis.set_xticklabels(shown)
    axis.set_ylim(0, 1)
    axis.set_title(title)
    if systems:
        axis.legend(fontsize=8)
    else:
        axis.text(0.5, 0.5, "no system evaluated", ha="center", transform=axis.transAxes)
    figure.tight_layout()
    return figure
