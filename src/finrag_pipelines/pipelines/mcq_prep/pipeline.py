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
            Node(
                nodes.split_mcq_items, ["mcq_unique", P + "split"], "mcq_split_draft", name="split_mcq_items"
            ),
            Node(
                nodes.summarise_mcq_prep,
                ["mcq_items", "mcq_rejects", "mcq_duplicates", "mcq_split_draft", P + "floor"],
                "mcq_prep_stats",
                name="summarise_mcq_prep",
            ),
            # the floor is checked on the saved stats; the table sft, rl, mcq_evaluation read comes after it
            Node(
                nodes.check_mcq_prep_floor,
                "mcq_prep_stats",
                "mcq_prep_floor_check",
                name="check_mcq_prep_floor",
            ),
            Node(
                nodes.publish_mcq_splits,
                ["mcq_split_draft", "mcq_prep_floor_check"],
                "mcq_splits",
                name="publish_mcq_splits",
            ),
        ],
        namespace="mcq_prep",
        prefix_datasets_with_namespace=False,
    )
