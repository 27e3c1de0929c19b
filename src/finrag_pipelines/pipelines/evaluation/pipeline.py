"""evaluation pipeline: indexes + eval queries/qrels → runs → fused runs → metrics, comparisons, report."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import nodes

P = "params:evaluation."


def create_pipeline(**kwargs) -> Pipeline:  # noqa: D103
    return Pipeline(
        [
            Node(nodes.split_queries, ["eval_queries", P + "split"], "query_splits", name="split_queries"),
            Node(
                nodes.retrieve_bm25,
                ["bm25_index", "corpus", "eval_queries", P + "retrieve"],
                "run_bm25",
                name="retrieve_bm25",
            ),
            Node(
                nodes.retrieve_bm25,
                ["bm25_plain_index", "corpus", "eval_queries", P + "retrieve"],
                "run_bm25_plain",
                name="retrieve_bm25_plain",
            ),
            Node(
                nodes.retrieve_dense,
                ["dense_index", "base_encoder", "embedding_store", "corpus", "eval_queries", P + "retrieve"],
                "run_dense",
                name="retrieve_dense",
            ),
            Node(nodes.fuse_rrf, ["run_dense", "run_bm25", "eval_queries", P + "fusion"], "run_hybrid_rrf", name="fuse_rrf"),
            Node(
                nodes.tune_fusion_weight,
                ["run_dense", "run_bm25", "eval_queries", "eval_qrels", "query_splits", P + "fusion", P + "metrics"],
                "fusion_weight",
                name="tune_fusion_weight",
            ),
            Node(
                nodes.fuse_weighted,
                ["run_dense", "run_bm25", "eval_queries", "fusion_weight", P + "fusion"],
                "run_hybrid_weighted",
                name="fuse_weighted",
            ),
            Node(
                nodes.score_runs,
                {
                    "eval_queries": "eval_queries",
                    "eval_qrels": "eval_qrels",
                    "query_splits": "query_splits",
                    "metrics": P + "metrics",
                    "bm25": "run_bm25",
                    "bm25_plain": "run_bm25_plain",
                    "dense": "run_dense",
                    "hybrid_rrf": "run_hybrid_rrf",
                    "hybrid_weighted": "run_hybrid_weighted",
                },
                "per_query_metrics",
                name="score_runs",
            ),
            Node(nodes.summarise_metrics, ["per_query_metrics", P + "metrics"], "retrieval_metrics", name="summarise_metrics"),
            Node(
                nodes.compare_retrievers,
                ["per_query_metrics", P + "bootstrap"],
                "retrieval_comparisons",
                name="compare_retrievers",
            ),
            Node(
                nodes.write_report,
                [
                    "retrieval_metrics",
                    "retrieval_comparisons",
                    "fusion_weight",
                    "query_splits",
                    "corpus_prep_report",
                    "bm25_index_meta",
                    "bm25_plain_index_meta",
                    "dense_index_meta",
                    P + "dataset_name",
                ],
                "retrieval_report",
                name="write_report",
            ),
            Node(
                nodes.plot_retrieval_metrics,
                ["retrieval_metrics", P + "dataset_name"],
                "retrieval_metrics_plot",
                name="plot_retrieval_metrics",
            ),
        ],
        namespace="evaluation",
        prefix_datasets_with_namespace=False,
    )
