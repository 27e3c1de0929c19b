"""negative_mining pipeline: distilled queries + base indexes → hard negatives → ms-swift InfoNCE rows."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import nodes

P = "params:negative_mining."


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.split_queries_by_document,
                ["distilled_queries", P + "split"],
                "mining_query_split",
                name="split_queries_by_document",
            ),
            Node(
                nodes.mine_candidates,
                [
                    "distilled_queries",
                    "corpus",
                    "dense_index",
                    "base_encoder",
                    "embedding_store",
                    "bm25_index",
                    P + "candidates",
                    P + "execution",
                ],
                "mining_candidates",
                name="mine_candidates",
            ),
            Node(
                nodes.score_candidates_with_reranker,
                [
                    "mining_candidates",
                    "distilled_queries",
                    "corpus",
                    "reranker",
                    P + "rules",
                    P + "rerank_filter",
                ],
                "mining_rerank_scores",
                name="score_candidates_with_reranker",
            ),
            Node(
                nodes.select_negatives,
                [
                    "mining_candidates",
                    "corpus",
                    P + "rules",
                    P + "candidates",
                    "mining_rerank_scores",
                    P + "rerank_filter",
                ],
                "mining_selection",
                name="select_negatives",
            ),
            Node(
                nodes.summarise_mining,
                ["mining_candidates", "mining_selection", "mining_query_split", P + "rules", P + "floor"],
                "mining_stats",
                name="summarise_mining",
            ),
            # the floor is checked on the saved stats; the rows fine-tuning reads come after it
            Node(nodes.check_mining_floor, "mining_stats", "mining_floor_check", name="check_mining_floor"),
            Node(
                nodes.build_infonce_rows,
                [
                    "distilled_queries",
                    "mining_selection",
                    "mining_query_split",
                    "corpus",
                    P + "format",
                    "mining_floor_check",
                ],
                ["infonce_train", "infonce_dev"],
                name="build_infonce_rows",
            ),
            Node(
                nodes.list_infonce_row_ids,
                [
                    "distilled_queries",
                    "mining_selection",
                    "mining_query_split",
                    P + "format",
                    "mining_floor_check",
                ],
                "infonce_row_ids",
                name="list_infonce_row_ids",
            ),
            Node(nodes.plot_mining_scores, "mining_selection", "mining_histogram", name="plot_mining_scores"),
        ],
        namespace="negative_mining",
        prefix_datasets_with_namespace=False,
    )
