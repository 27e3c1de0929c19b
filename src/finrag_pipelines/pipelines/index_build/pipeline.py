"""index_build pipeline: ``corpus`` → ``bm25_index``, ``bm25_plain_index`` (baseline), ``dense_index``."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import nodes

P = "params:index_build."


def create_pipeline(**kwargs) -> Pipeline:  # noqa: D103
    return Pipeline(
        [
            Node(nodes.build_bm25_index, ["corpus", P + "bm25"], "bm25_index", name="build_bm25_index"),
            Node(nodes.build_bm25_index, ["corpus", P + "bm25_plain"], "bm25_plain_index", name="build_bm25_plain_index"),
            Node(
                nodes.build_dense_index,
                ["corpus", "base_encoder", "embedding_store", P + "dense"],
                "dense_index",
                name="build_dense_index",
            ),
        ],
        namespace="index_build",
        prefix_datasets_with_namespace=False,
    )
