"""index_build pipeline: ``corpus`` → ``bm25_index``, ``bm25_plain_index`` (baseline), ``bm25_ngram_index``
(character n-grams), ``bm25_lucene_index`` (optional Lucene twin of ``bm25_index``), ``dense_index`` (base
encoder), ``dense_finetuned_index`` and ``dense_pretrained_index`` (the fine-tuned model and its starting
checkpoint).

``bm25_index`` (and ``bm25_lucene_index``) take the mined vocabulary (statistical new words, LLM entities) the
ablation on the evaluation queries' tune split kept, if any (``vocabulary.py``)."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import nodes, vocabulary

P = "params:index_build."


def _vocabulary_nodes() -> list[Node]:
    return [
        Node(
            vocabulary.mine_statistical_terms,
            ["corpus", P + "vocabulary"],
            "mined_terms_statistical",
            name="mine_statistical_terms",
        ),
        Node(
            vocabulary.extract_llm_terms,
            [
                "corpus",
                "prompt_vocabulary_entities",
                "params:llm",
                "llm_credentials",
                "llm_journal",
                P + "vocabulary",
            ],
            "mined_terms_llm",
            name="extract_llm_terms",
        ),
        Node(
            vocabulary.merge_mined_vocabulary,
            ["mined_terms_statistical", "mined_terms_llm", P + "bm25", P + "vocabulary"],
            "mined_vocabulary",
            name="merge_mined_vocabulary",
        ),
        Node(
            vocabulary.ablate_mined_vocabulary,
            ["corpus", "mined_vocabulary", "eval_queries", "eval_qrels", P + "bm25", P + "vocabulary"],
            "vocabulary_ablation",
            name="ablate_mined_vocabulary",
        ),
    ]


# The fine-tuned encoder's index and its starting checkpoint's run after embedding_finetune, which itself
# runs after index_build's other indexes (negative_mining reads them): in their own namespace, so the
# default chain never interrupts the `index_build` namespace (kedro viz draws each namespace as one group).
FINETUNED_NAMESPACE = "index_build_finetuned"


def _finetuned_index_nodes() -> list[Node]:
    # the fine-tuned encoder (embedding_finetune's merged model) and the checkpoint it started from,
    # so evaluation can show what fine-tuning changed; either may be absent (reported, not fatal)
    return [
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
    ]


def create_pipeline(**kwargs) -> Pipeline:  # noqa: D103
    own = Pipeline(
        [
            *_vocabulary_nodes(),
            Node(
                vocabulary.build_bm25_index_with_vocabulary,
                ["corpus", "mined_vocabulary", "vocabulary_ablation", P + "bm25", P + "lucene"],
                "bm25_index",
                name="build_bm25_index",
            ),
            Node(
                nodes.build_ngram_index,
                ["corpus", P + "bm25_ngram"],
                "bm25_ngram_index",
                name="build_ngram_index",
            ),
            Node(
                nodes.build_bm25_index,
                ["corpus", P + "bm25_plain", P + "lucene"],
                "bm25_plain_index",
                name="build_bm25_plain_index",
            ),
            # index_build.bm25 in Lucene (pyserini), evaluated next to bm25 with index_build.lucene.compare
            Node(
                vocabulary.build_bm25_lucene_index,
                ["corpus", "mined_vocabulary", "vocabulary_ablation", P + "bm25", P + "lucene"],
                "bm25_lucene_index",
                name="build_bm25_lucene_index",
            ),
            Node(
                nodes.build_dense_index,
                ["corpus", "base_encoder", "embedding_store", P + "dense", P + "execution"],
                "dense_index",
                name="build_dense_index",
            ),
        ],
        namespace="index_build",
        prefix_datasets_with_namespace=False,
    )
    finetuned = Pipeline(
        _finetuned_index_nodes(), namespace=FINETUNED_NAMESPACE, prefix_datasets_with_namespace=False
    )
    return own + finetuned
