"""sft_distill pipeline: calculation questions (+ checked rewrites), teacher reasoning (k samples → rejection
rule → shortest correct), grounded QA (write → judge → dedup against evaluation queries) → sft_distill_items
and a report.

Every LLM stage saves its raw table before the failure ceiling is checked, and the journal makes a killed run
resume where it stopped.
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import nodes, report

P = "params:sft_distill."
LLM = ["params:llm", "llm_credentials", "llm_journal"]


def create_pipeline(**kwargs) -> Pipeline:
    calc = [
        Node(
            nodes.generate_calc_questions,
            P + "calc",
            "calc_questions_generated",
            name="generate_calc_questions",
        ),
        Node(
            nodes.rewrite_calc_stems,
            ["calc_questions_generated", *LLM, "prompt_sft_distill_rewrite", P + "rewrite"],
            "calc_questions",
            name="rewrite_calc_stems",
        ),
        Node(
            nodes.check_rewrite_failures,
            ["calc_questions", "params:llm"],
            "calc_rewrite_failure_check",
            name="check_rewrite_failures",
        ),
    ]
    reasoning = [
        Node(
            nodes.sample_teacher_reasoning,
            ["mcq_splits", *LLM, "prompt_sft_distill_reasoning", P + "reasoning"],
            "reasoning_samples",
            name="sample_teacher_reasoning",
        ),
        Node(
            nodes.check_reasoning_failures,
            ["reasoning_samples", "params:llm"],
            "reasoning_failure_check",
            name="check_reasoning_failures",
        ),
        Node(
            nodes.judge_reasoning_samples,
            ["reasoning_samples", "mcq_splits", "reasoning_failure_check"],
            "reasoning_verdicts",
            name="judge_reasoning_samples",
        ),
        Node(
            nodes.select_verified_reasoning,
            ["reasoning_verdicts", "mcq_splits"],
            ["reasoning_items", "distilled_reasoning", "reasoning_never_correct"],
            name="select_verified_reasoning",
        ),
    ]
    grounded = [
        Node(
            nodes.select_grounded_documents,
            ["corpus", P + "grounded"],
            "grounded_documents",
            name="select_grounded_documents",
        ),
        Node(
            nodes.write_grounded_qa,
            ["grounded_documents", *LLM, "prompt_sft_distill_grounded_write", P + "grounded"],
            "grounded_qa_candidates",
            name="write_grounded_qa",
        ),
        Node(
            nodes.judge_grounded_qa,
            [
                "grounded_qa_candidates",
                "grounded_documents",
                *LLM,
                "prompt_sft_distill_grounded_judge",
                P + "grounded",
            ],
            "grounded_qa_judged",
            name="judge_grounded_qa",
        ),
        Node(
            nodes.check_grounded_failures,
            ["grounded_qa_judged", "params:llm"],
            "grounded_failure_check",
            name="check_grounded_failures",
        ),
        Node(
            nodes.select_grounded_qa,
            ["grounded_qa_judged", "eval_queries", "grounded_failure_check", P + "grounded"],
            "grounded_qa_audit",
            name="select_grounded_qa",
        ),
    ]
    output = [
        Node(
            nodes.assemble_sft_distill_items,
            ["calc_questions", "distilled_reasoning", "grounded_qa_audit", "calc_rewrite_failure_check"],
            "sft_distill_items",
            name="assemble_sft_distill_items",
        ),
        Node(
            report.summarise_sft_distill,
            [
                "calc_questions",
                "reasoning_items",
                "reasoning_verdicts",
                "grounded_qa_audit",
                "sft_distill_items",
                "params:llm",
                P + "calc",
                P + "rewrite",
                P + "reasoning",
                P + "grounded",
            ],
            "sft_distill_report",
            name="summarise_sft_distill",
        ),
    ]
    return Pipeline(
        calc + reasoning + grounded + output, namespace="sft_distill", prefix_datasets_with_namespace=False
    )
