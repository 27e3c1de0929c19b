"""persona_index pipeline: ``personas_raw`` → ``finance_personas`` (+ dedup audit) → ``persona_index``
(+ report)."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import nodes

P = "params:persona_index."


def create_pipeline(**kwargs) -> Pipeline:
    """The persona_index nodes, namespaced; datasets keep their catalog names."""
    return Pipeline(
        [
            Node(nodes.load_personas, "personas_raw", "persona_table", name="load_personas"),
            Node(
                nodes.filter_personas,
                ["persona_table", P + "filter"],
                "persona_matches",
                name="filter_personas",
            ),
            Node(
                nodes.sample_personas,
                ["persona_matches", P + "sample"],
                "persona_sample",
                name="sample_personas",
            ),
            Node(
                nodes.translate_personas,
                [
                    "persona_sample",
                    "params:llm",
                    "llm_credentials",
                    "llm_journal",
                    "prompt_persona_translate",
                    P + "translate",
                ],
                "persona_candidates",
                name="translate_personas",
            ),
            Node(
                nodes.deduplicate_personas,
                [
                    "persona_candidates",
                    "persona_encoder",
                    "embedding_store",
                    P + "dedup",
                    P + "encode",
                    P + "execution",
                ],
                "persona_dedup_audit",
                name="deduplicate_personas",
            ),
            Node(
                nodes.select_personas,
                ["persona_candidates", "persona_dedup_audit"],
                "finance_personas",
                name="select_personas",
            ),
            Node(
                nodes.build_persona_index,
                ["finance_personas", "persona_encoder", "embedding_store", P + "index", P + "encode"],
                "persona_index",
                name="build_persona_index",
            ),
            Node(
                nodes.summarise_persona_index,
                ["personas_raw", "persona_table", "persona_matches", "persona_dedup_audit", "persona_index"],
                "persona_index_report",
                name="summarise_persona_index",
            ),
        ],
        namespace="persona_index",
        prefix_datasets_with_namespace=False,
    )
