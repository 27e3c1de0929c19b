"""reranker_finetune pipeline: mined examples + a base reranker → ms-swift reranker fine-tune → merged model.

Evaluation compares the configured reranker (``<retriever>_rerank``) with this one
(``<retriever>_rerank_finetuned``) with paired bootstrap intervals, as it does for the fine-tuned encoder.
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import nodes

P = "params:reranker_finetune."


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.prepare_reranker_base_model,
                ["corpus", P + "base_model", P + "reranker"],
                "reranker_base_model@dir",
                name="prepare_reranker_base_model",
            ),
            Node(
                nodes.build_reranker_rows,
                [
                    "infonce_row_ids",
                    "distilled_queries",
                    "corpus",
                    "reranker_base_model@dir",
                    P + "rows",
                    P + "reranker",
                    P + "train",
                ],
                ["reranker_train", "reranker_dev", "reranker_rows_stats"],
                name="build_reranker_rows",
            ),
            Node(
                nodes.train_reranker_model,
                ["reranker_train", "reranker_dev", "reranker_base_model@dir", P + "train", P + "reranker"],
                "reranker_finetuned@dir",
                name="train_reranker_model",
            ),
            Node(
                nodes.summarise_reranker_finetune,
                ["reranker_finetuned@dir", "reranker_rows_stats", P + "train"],
                "reranker_finetune_report",
                name="summarise_reranker_finetune",
            ),
        ],
        namespace="reranker_finetune",
        prefix_datasets_with_namespace=False,
    )
