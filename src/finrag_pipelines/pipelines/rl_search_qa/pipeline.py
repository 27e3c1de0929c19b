"""rl_search_qa pipeline: distilled_queries + corpus + eval_qrels → search_qa_items (read by rl), a report."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.select_search_qa_items,
                ["distilled_queries", "corpus", "eval_qrels", "params:rl_search_qa.select"],
                ["search_qa_items@parquet", "search_qa_report"],
                name="select_search_qa_items",
            ),
        ],
        namespace="rl_search_qa",
        prefix_datasets_with_namespace=False,
    )
