"""rag_answer pipeline: evaluation's report questions → every system's answers → judge → metrics, report.

Reads the corpus and the judgements of corpus_prep, evaluation's query split (the registry runs both first)
and index_build's indexes and encoders (run index_build first on a new folder).
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import nodes

P = "params:rag_answer."
LLM = {"llm": "params:llm", "llm_credentials": "llm_credentials", "llm_journal": "llm_journal"}


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.select_questions,
                ["eval_queries", "eval_qrels", "query_splits", P + "questions"],
                "rag_questions",
                name="select_questions",
            ),
            Node(
                nodes.answer_questions,
                {
                    "rag_questions": "rag_questions",
                    "corpus": "corpus",
                    "bm25_index": "bm25_index",
                    "dense_index": "dense_index",
                    "base_encoder": "base_encoder",
                    "dense_finetuned_index": "dense_finetuned_index",
                    "finetuned_encoder": "finetuned_model@encoder",
                    **LLM,
                    "prompt_closed_book": "prompt_rag_closed_book",
                    "prompt_single_shot": "prompt_rag_single_shot",
                    "prompt_agent": "prompt_rag_agent",
                    "prompt_agent_text": "prompt_rag_agent_text",
                    "search_tool": "rag_search_tool",
                    "systems": P + "systems",
                    "answer": P + "answer",
                    "extractive": P + "extractive",
                    "search": P + "search",
                    "dataset": P + "dataset_name",
                },
                "rag_answers",
                name="answer_questions",
            ),
            Node(
                nodes.judge_answers,
                {
                    "rag_answers": "rag_answers",
                    "rag_questions": "rag_questions",
                    "corpus": "corpus",
                    **LLM,
                    "judge_prompt": "prompt_rag_judge",
                    "judge": P + "judge",
                },
                "rag_judgements",
                name="judge_answers",
            ),
            Node(
                nodes.score_answers,
                ["rag_answers", "rag_questions", "corpus", "rag_judgements"],
                "rag_per_question",
                name="score_answers",
            ),
            Node(
                nodes.summarise_answers,
                ["rag_per_question", "rag_answers", "rag_judgements", P + "floor"],
                "rag_summary",
                name="summarise_answers",
            ),
            # the failure ceiling and the floor are checked on the saved summary; the metrics come after
            Node(
                nodes.check_answers, ["rag_summary", "params:llm"], "rag_answer_check", name="check_answers"
            ),
            Node(
                nodes.write_answer_metrics,
                ["rag_summary", "rag_answer_check"],
                "answer_metrics",
                name="write_answer_metrics",
            ),
            Node(
                nodes.compare_systems,
                ["rag_per_question", "rag_summary", P + "bootstrap"],
                "rag_comparisons",
                name="compare_systems",
            ),
            Node(
                nodes.write_answer_report,
                ["rag_summary", "rag_comparisons", "answer_metrics", "rag_answers", P + "bootstrap"],
                "rag_report",
                name="write_answer_report",
            ),
            Node(
                nodes.plot_answer_metrics,
                ["answer_metrics", "rag_summary"],
                "rag_metrics_plot",
                name="plot_answer_metrics",
            ),
        ],
        namespace="rag_answer",
        prefix_datasets_with_namespace=False,
    )
