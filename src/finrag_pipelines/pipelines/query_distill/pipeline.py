"""query_distill pipeline: corpus + persona index → two-stage LLM (or keyword baseline) → cleaned queries."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import nodes

P = "params:query_distill."
LLM = ["params:llm", "llm_credentials", "llm_journal"]


def create_pipeline(**kwargs) -> Pipeline:  # noqa: D103
    return Pipeline(
        [
            Node(
                nodes.select_documents, ["corpus", P + "select"], "distill_documents", name="select_documents"
            ),
            Node(
                nodes.retrieve_personas,
                [
                    "distill_documents",
                    "persona_index",
                    "finance_personas",
                    "persona_encoder",
                    "embedding_store",
                    P + "personas",
                ],
                "document_personas",
                name="retrieve_personas",
            ),
            Node(
                nodes.plan_queries,
                [
                    "distill_documents",
                    "document_personas",
                    "finance_personas",
                    *LLM,
                    "prompt_query_distill_stage1",
                    P + "spec",
                    P + "keyword_backend",
                    P + "select",
                    P + "answers",
                    P + "execution",
                ],
                "query_plans",
                name="plan_queries",
            ),
            Node(
                nodes.write_queries,
                [
                    "distill_documents",
                    "query_plans",
                    "finance_personas",
                    *LLM,
                    "prompt_query_distill_stage2",
                    P + "spec",
                    P + "keyword_backend",
                    P + "select",
                    P + "clean",
                    P + "answers",
                    P + "execution",
                ],
                "generated_queries",
                name="write_queries",
            ),
            Node(nodes.collect_failures, "generated_queries", "distill_failures", name="collect_failures"),
            Node(
                nodes.check_failure_rate,
                ["distill_failures", "generated_queries", "params:llm"],
                "distill_failure_summary",
                name="check_failure_rate",
            ),
            Node(
                nodes.clean_queries,
                [
                    "generated_queries",
                    "distill_documents",
                    "finance_personas",
                    "bm25_index",
                    "distill_failure_summary",
                    "params:llm",
                    "prompt_query_distill_stage1",
                    "prompt_query_distill_stage2",
                    P + "keyword_backend",
                    P + "clean",
                ],
                "distilled_query_audit",
                name="clean_queries",
            ),
            Node(
                nodes.summarise_distillation,
                [
                    "distilled_query_audit",
                    "distill_failures",
                    "distill_failure_summary",
                    "params:llm",
                    P + "floor",
                ],
                "distill_report",
                name="summarise_distillation",
            ),
            # the floor is checked on the saved report; the queries downstream stages read come after it
            Node(
                nodes.check_distill_floor, "distill_report", "distill_floor_check", name="check_distill_floor"
            ),
            Node(
                nodes.select_kept_queries,
                ["distilled_query_audit", "distill_floor_check"],
                "distilled_queries",
                name="select_kept_queries",
            ),
        ],
        namespace="query_distill",
        prefix_datasets_with_namespace=False,
    )
