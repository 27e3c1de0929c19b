"""mcq_evaluation pipeline: ``mcq_splits`` (eval) → endpoint answers → scores → metrics and report."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import nodes

P = "params:mcq_evaluation."


def create_pipeline(**kwargs) -> Pipeline:  # noqa: D103
    return Pipeline(
        [
            Node(
                nodes.select_eval_items,
                ["mcq_splits", P + "select"],
                "mcq_eval_items",
                name="select_eval_items",
            ),
            Node(
                nodes.ask_eval_items,
                ["mcq_eval_items", "params:llm", "llm_credentials", "llm_journal", P + "ask"],
                "mcq_answers",
                name="ask_eval_items",
            ),
            Node(
                nodes.score_answers,
                ["mcq_eval_items", "mcq_answers", P + "score"],
                "mcq_scores",
                name="score_answers",
            ),
            Node(
                nodes.summarise_mcq,
                ["mcq_scores", "mcq_answers", "params:llm"],
                "mcq_metrics",
                name="summarise_mcq",
            ),
            Node(nodes.render_mcq_report, "mcq_metrics", "mcq_report", name="render_mcq_report"),
        ],
        namespace="mcq_evaluation",
        prefix_datasets_with_namespace=False,
    )
