"""corpus_prep pipeline: raw BEIR folder → ``corpus``, ``eval_queries``, ``eval_qrels``
(+ audit and report)."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import nodes


def create_pipeline(**kwargs) -> Pipeline:  # noqa: D103
    return Pipeline(
        [
            Node(nodes.normalise_corpus, "corpus_raw", "corpus_normalised", name="normalise_corpus"),
            Node(
                nodes.screen_documents,
                ["corpus_normalised", "params:corpus_prep.filter", "params:corpus_prep.dedup"],
                "corpus_doc_status",
                name="screen_documents",
            ),
            Node(
                nodes.select_corpus,
                ["corpus_normalised", "corpus_doc_status"],
                "corpus_documents",
                name="select_corpus",
            ),
            Node(
                nodes.split_passages,
                ["corpus_documents", "params:corpus_prep.passages"],
                ["corpus", "corpus_passage_stats"],
                name="split_passages",
            ),
            Node(nodes.prepare_queries, "queries_raw", "eval_queries", name="prepare_queries"),
            Node(
                nodes.prepare_qrels,
                ["qrels_raw", "eval_queries", "corpus_doc_status"],
                "eval_qrels",
                name="prepare_qrels",
            ),
            Node(
                nodes.summarise_corpus_prep,
                ["corpus_doc_status", "eval_queries", "eval_qrels"],
                "corpus_prep_report",
                name="summarise_corpus_prep",
            ),
        ],
        namespace="corpus_prep",
        prefix_datasets_with_namespace=False,
    )
