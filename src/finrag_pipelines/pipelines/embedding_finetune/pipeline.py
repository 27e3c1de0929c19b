"""embedding_finetune pipeline: InfoNCE rows + a base model → ms-swift LoRA fine-tune
→ merged model folder."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import nodes

P = "params:embedding_finetune."


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.prepare_base_model,
                ["corpus", P + "base_model"],
                "finetune_base_model@dir",
                name="prepare_base_model",
            ),
            Node(
                nodes.train_embedding_model,
                ["infonce_train", "infonce_dev", "finetune_base_model@dir", P + "train"],
                "finetuned_model@dir",
                name="train_embedding_model",
            ),
            Node(
                nodes.summarise_finetune,
                ["finetuned_model@dir", "infonce_train", "infonce_dev", P + "train"],
                "finetune_report",
                name="summarise_finetune",
            ),
        ],
        namespace="embedding_finetune",
        prefix_datasets_with_namespace=False,
    )
