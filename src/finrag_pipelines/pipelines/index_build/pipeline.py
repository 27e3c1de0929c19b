"""index_build pipeline: ``corpus`` → ``bm25_index``, ``bm25_plain_index`` (baseline), ``bm25_lucene_index``
(optional Lucene twin of ``bm25_index``), ``dense_index`` (base encoder),
``dense_finetuned_index`` and ``dense_pretrained_index`` (the fine-tuned model and its starting checkpoint)."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import nodes

P = "params:index_build."


def create_pipeline(**kwargs) -> Pipeline:  # noqa: D103
    return Pipeline(
        [
            Node(
                nodes.build_bm25_index,
                ["corpus", P + "bm25", P + "lucene"],
                "bm25_index",
                name="build_bm25_index",
            ),
            Node(
                nodes.build_bm25_index,
                ["corpus", P + "bm25_plain", P + "lucene"],
                "bm25_plain_index",
                name="build_bm25_plain_index",
            ),
            # index_build.bm25 in Lucene (pyserini), evaluated next to bm25 with index_build.lucene.compare
            Node(
                nodes.build_bm25_lucene_index,
                ["corpus", P + "bm25", P + "lucene"],
                "bm25_lucene_index",
                name="build_bm25_lucene_index",
            ),
            Node(
                nodes.build_dense_index,
                ["corpus", "base_encoder", "embedding_store", P + "dense", P + "execution"],
                "dense_index",
                name="build_dense_index",
            ),
            # the fine-tuned encoder (embedding_finetune's merged model) and the checkpoint it started from,
            # so evaluation can show what fine-tuning changed; either may be absent (reported, not fatal)
            Node(
                nodes.build_dense_index,
                ["corpus", "finetuned_model@encoder", "embedding_store", P + "dense", P + "execution"],
                "dense_finetuned_index",
                name="build_dense_finetuned_index",
            ),
            Node(
                nodes.build_dense_index,
                ["corpus", "finetune_base_model@encoder", "embedding_store", P + "dense", P + "execution"],
                "dense_pretrained_index",
                name="build_dense_pretrained_index",
            ),
        ],
        namespace="index_build",
        prefix_datasets_with_namespace=False,
    )
