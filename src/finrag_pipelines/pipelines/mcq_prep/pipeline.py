"""mcq_prep pipeline: raw MCQ sources → mcq_items/mcq_rejects → dedup → mcq_splits (+ stats)."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import nodes

P = "params:mcq_prep."


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(nodes.load_mcq_items, P + "load", ["mcq_items", "mcq_rejects"], name="load_mcq_items"),
            Node(
                nodes.deduplicate_mcq_items,
                ["mcq_items", P + "dedup"],
                ["mcq_unique", "mcq_duplicates"],
                name="deduplicate_mcq_items",
            ),
            Node(nodes.split_mcq_items, ["mcq_unique", P + "split"], "mcq_splits", name="split_mcq_items"),
            Node(
                nodes.summarise_mcq_prep,
                ["mcq_items", "mcq_rejects", "mcq_duplicates", "mcq_splits"],
                "mcq_prep_stats",
                name="summarise_mcq_prep",
            ),
        ],
        namespace="mcq_prep",
        prefix_datasets_with_namespace=False,
    )
