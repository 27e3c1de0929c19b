"""evaluation pipeline: indexes + eval queries/qrels → runs → fused runs → metrics, comparisons, report.

Dense retrievers: ``dense`` (the configured base encoder), ``dense_pretrained`` (the checkpoint
embedding_finetune starts from) and ``dense_finetuned`` (after fine-tuning). Hybrids fuse ``bm25`` with
``dense`` and with ``dense_finetuned``. A fine-tuned model that does not exist yet makes its retrievers "not
evaluated".
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import first_stage, nodes, rerank

P = "params:evaluation."

# dense retriever → (index, encoder) datasets
DENSE = {
    "dense": ("dense_index", "base_encoder"),
    "dense_pretrained": ("dense_pretrained_index", "finetune_base_model@encoder"),
    "dense_finetuned": ("dense_finetuned_index", "finetuned_model@encoder"),
}
# hybrid suffix → the dense retriever fused with bm25
HYBRID = {"": "dense", "_finetuned": "dense_finetuned"}
# each first-stage run in rerank.RERANKABLE gets `<name>_rerank` (the configured reranker) and
# `<name>_rerank_finetuned` (reranker_finetune's model)
RERANKABLE = rerank.RERANKABLE
RERANKERS = {"": "reranker", "_finetuned": "reranker_finetuned@reranker"}
# bm25_lucene: index_build.bm25 in Lucene (pyserini), "not evaluated" unless index_build.lucene.compare is on
RETRIEVERS = [
    "bm25", "bm25_plain", "bm25_lucene", *DENSE,
    *(f"hybrid_{k}{s}" for s in HYBRID for k in ("rrf", "weighted")),
    *(f"{first}_rerank{suffix}" for first in RERANKABLE for suffix in RERANKERS),
]  # fmt: skip
# lexical retriever → its index dataset
LEXICAL = {"bm25": "bm25_index", "bm25_plain": "bm25_plain_index", "bm25_ngram": "bm25_ngram_index"}
RETRIEVERS += ["bm25_ngram", *first_stage.FUSED]  # n-gram BM25, the first-stage fusion of several retrievers


def _dense_nodes() -> list[Node]:
    return [
        Node(
            nodes.retrieve_dense,
            [index, encoder, "embedding_store", "corpus", "eval_queries", P + "retrieve"],
            f"run_{name}",
            name=f"retrieve_{name}",
        )
        for name, (index, encoder) in DENSE.items()
    ]


def _hybrid_nodes(suffix: str, dense: str) -> list[Node]:
    weight = f"fusion_weight{suffix}"
    return [
        Node(
            nodes.fuse_rrf,
            [f"run_{dense}", "run_bm25", "eval_queries", P + "fusion"],
            f"run_hybrid_rrf{suffix}",
            name=f"fuse_rrf{suffix}",
        ),
        Node(
            nodes.tune_fusion_weight,
            [
                f"run_{dense}",
                "run_bm25",
                "eval_queries",
                "eval_qrels",
                "query_splits",
                P + "fusion",
                P + "metrics",
                "corpus",
            ],
            weight,
            name=f"tune_fusion_weight{suffix}",
        ),
        Node(
            nodes.fuse_weighted,
            [f"run_{dense}", "run_bm25", "eval_queries", weight, P + "fusion"],
            f"run_hybrid_weighted{suffix}",
            name=f"fuse_weighted{suffix}",
        ),
    ]


def _rerank_nodes() -> list[Node]:
    out = []
    for first in RERANKABLE:
        for suffix, reranker in RERANKERS.items():
            out.append(
                Node(
                    rerank.node_for(first),
                    [f"run_{first}", reranker, "corpus", "eval_queries", P + "rerank"],
                    f"run_{first}_rerank{suffix}",
                    name=f"rerank_{first}{suffix}",
                )
            )
    out.append(
        Node(
            rerank.describe_rerank,
            [*RERANKERS.values(), P + "rerank"],
            "rerank_settings",
            name="describe_rerank",
        )
    )
    return out


def _first_stage_fusion_nodes() -> list[Node]:
    """``fusion_settings`` (tuned on tune, or fixed), then ``fusion_weighted``, ``_learned``, ``fusion``."""
    runs = {name: f"run_{name}" for name in first_stage.FUSABLE}
    indexes = {f"{name}_index": index for name, index in LEXICAL.items()}
    common = {"eval_queries": "eval_queries", "corpus": "corpus", **indexes, **runs}
    fuse = {
        "weighted": first_stage.fuse_first_stage_weighted,
        "learned": first_stage.fuse_first_stage_learned,
        "": first_stage.fuse_first_stage,
    }
    return [
        Node(
            first_stage.tune_first_stage_fusion,
            {
                **common,
                "eval_qrels": "eval_qrels",
                "query_splits": "query_splits",
                "fusion_settings_fixed": "fusion_settings_fixed",
                "params": P + "first_stage_fusion",
                "metrics": P + "metrics",
            },
            "fusion_settings",
            name="tune_first_stage_fusion",
        ),
        *(
            Node(
                func,
                {**common, "fusion_settings": "fusion_settings"},
                f"run_fusion{'_' + key if key else ''}",
                name=f"fuse_first_stage{'_' + key if key else ''}",
            )
            for key, func in fuse.items()
        ),
    ]


def create_pipeline(**kwargs) -> Pipeline:  # noqa: D103
    runs = {name: f"run_{name}" for name in RETRIEVERS}
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
                nodes.retrieve_bm25,
                ["bm25_ngram_index", "corpus", "eval_queries", P + "retrieve"],
                "run_bm25_ngram",
                name="retrieve_bm25_ngram",
            ),
            Node(
                nodes.retrieve_bm25,
                ["bm25_lucene_index", "corpus", "eval_queries", P + "retrieve"],
                "run_bm25_lucene",
                name="retrieve_bm25_lucene",
            ),
            *_dense_nodes(),
            *_first_stage_fusion_nodes(),
            *(node for suffix, dense in HYBRID.items() for node in _hybrid_nodes(suffix, dense)),
            *_rerank_nodes(),
            Node(
                nodes.score_runs,
                {
                    "eval_queries": "eval_queries",
                    "eval_qrels": "eval_qrels",
                    "query_splits": "query_splits",
                    "metrics": P + "metrics",
                    "corpus": "corpus",
                    **runs,
                },
                "per_query_metrics",
                name="score_runs",
            ),
            Node(nodes.record_retriever_status, runs, "retriever_status", name="record_retriever_status"),
            Node(
                nodes.summarise_metrics,
                ["per_query_metrics", P + "metrics"],
                "retrieval_metrics",
                name="summarise_metrics",
            ),
            Node(
                nodes.compare_retrievers,
                ["per_query_metrics", "retriever_status", P + "bootstrap"],
                "retrieval_comparisons",
                name="compare_retrievers",
            ),
            Node(
                nodes.write_report,
                [
                    "retrieval_metrics",
                    "retrieval_comparisons",
                    "retriever_status",
                    "fusion_weight",
                    "fusion_weight_finetuned",
                    "query_splits",
                    "corpus_prep_report",
                    "bm25_index_meta",
                    "bm25_plain_index_meta",
                    "dense_index_meta",
                    "dense_pretrained_index_meta",
                    "dense_finetuned_index_meta",
                    P + "dataset_name",
                    "rerank_settings",
                    "fusion_settings",
                    "vocabulary_ablation",
                    "bm25_ngram_index_meta",
                    "bm25_lucene_index_meta",
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
