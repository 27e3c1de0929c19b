"""Report sections for the first-stage fusion (weighted vs learned, the winner) and the mined vocabulary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _weights(weights: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {w:.2f}" for name, w in weights.items())


def first_stage_fusion_lines(settings: Mapping[str, Any] | None) -> list[str]:
    """The ``## First-stage fusion`` section: retrievers, weights, model, the cross-validated choice."""
    if not settings:
        return []
    selection = settings.get("selection") or {}
    metric = selection.get("metric", "the tune metric")
    fused = ", ".join(f"`{r}`" for r in settings["retrievers"])
    lines = [
        "## First-stage fusion",
        "",
        f"- Fused: {fused} (top {settings['depth']} of each); settings {settings.get('source') or 'tuned'}.",
    ]
    for name, reason in (selection.get("left_out") or {}).items():
        lines.append(f"- `{name}` left out: {reason}.")
    lines.append(f"- `fusion_weighted`: min-max weighted sum, weights {_weights(settings['weights'])}.")
    learned = settings.get("learned")
    if learned:
        trained = learned.get("trained_on") or {}
        lines.append(
            f"- `fusion_learned`: LightGBM lambdarank over {len(learned.get('feature_names', []))} features "
            "per candidate (each retriever's score, rank, 1/rank, min-max score; query-term coverage and "
            f"dictionary terms of {', '.join(learned.get('views', []))}; lengths), trained on "
            f"{trained.get('queries_with_a_positive', '?')} tune queries with a relevant candidate."
        )
    else:
        lines.append("- `fusion_learned`: not trained (first_stage_fusion.learned.enabled is false).")
    cv = selection.get("cv") or {}
    fixed = str(settings.get("source", "")).startswith("fixed")
    if cv:
        scores = ", ".join(f"{method} {value:.4f}" for method, value in cv.items())
        where = "the dev set's" if fixed else ""
        lines.append(
            f"- `fusion` = **{settings['method']}**: {selection.get('cv_folds')}-fold cross-validation "
            f"(repeated {selection.get('cv_repeats', 1)}×) on {where or 'the'} "
            f"{selection.get('n_tune_queries')} tune queries ({metric}, each fold scored by a fit on the "
            f"others): {scores}. "
            + ("Nothing is fitted on this set." if fixed else "Nothing here is fitted on `report`.")
        )
    else:
        lines.append(f"- `fusion` = **{settings['method']}**, as the fixed settings say (not tuned here).")
    return [*lines, ""]


def vocabulary_lines(ablation: Mapping[str, Any] | None) -> list[str]:
    """The ``## Mined vocabulary`` section: candidates per source, the tune-split ablation, the decision."""
    if not ablation:
        return []
    metric = ablation["metric"]
    lines = [
        "## Mined vocabulary (word BM25's user dictionary)",
        "",
        f"- Candidates after filtering: {dict(ablation.get('candidates') or {}) or 'none'}.",
    ]
    for source, reason in (ablation.get("not_run") or {}).items():
        lines.append(f"- `{source}` not run: {reason}.")
    if not ablation["variants"]:
        kept = f"`{ablation['decision']}` ({ablation['terms_kept']} terms)"
        return [*lines, f"- Decision {kept}: {ablation.get('source', 'fixed')}.", ""]
    lines += [
        f"- Ablation on {ablation['n_tune_queries']} tune queries (word BM25, {metric}):",
        "",
        f"| variant | terms | {metric} on tune |",
        "|---|---|---|",
    ]
    for name, row in ablation["variants"].items():
        lines.append(f"| {name} | {row['terms']} | {row[metric]:.4f} |")
    kept = ablation["decision"]
    verdict = (
        f"kept `{kept}` ({ablation['terms_kept']} terms) in `bm25`'s tokenizer"
        if kept != "none"
        else f"no variant beat the baseline by more than {ablation['min_gain']}; `bm25` uses no mined terms"
    )
    return [*lines, "", f"- Decision: {verdict}.", ""]
