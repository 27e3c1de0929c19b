"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from finrag_pipelines.pipelines import corpus_prep, evaluation, mcq_prep

# the order of the full chain; `__default__` is what `kedro run` (and `make demo`) runs
DEFAULT_CHAIN = (
    "corpus_prep", "persona_index", "index_build", "query_distill", "negative_mining", "embedding_finetune", "evaluation",
    "rag_answer",
)
# pipelines that read corpus_prep's outputs run it first (it takes seconds), so that
# `kedro run --pipelines index_build,evaluation --params retrieval_dataset=<folder>` works on a new folder
NEEDS_CORPUS_PREP = ("index_build", "evaluation", "sft_distill", "rag_answer")
# rag_answer asks evaluation's report questions: it runs evaluation's own split node (same seed, same split)
NEEDS_EVALUATION_SPLIT = ("rag_answer",)
EVALUATION_SPLIT_NODE = "evaluation.split_queries"
# likewise sft, rl and mcq_evaluation start from the one deduplicated, split MCQ table (seconds), so each runs on its own
NEEDS_MCQ_PREP = ("sft", "rl", "mcq_evaluation", "sft_distill")


def register_pipelines() -> dict[str, Pipeline]:
    """Register every pipeline folder under ``pipelines/`` and the default chain.

    Kedro 1.x loads only the pipelines a run asks for; the default chain is assembled when it is loaded too.
    """
    pipelines = find_pipelines(raise_errors=True)
    for name in NEEDS_EVALUATION_SPLIT:
        if name in pipelines:
            pipelines[name] = evaluation.create_pipeline().only_nodes(EVALUATION_SPLIT_NODE) + pipelines[name]
    for name in NEEDS_CORPUS_PREP:
        if name in pipelines:
            pipelines[name] = corpus_prep.create_pipeline() + pipelines[name]
    for name in NEEDS_MCQ_PREP:
        if name in pipelines:
            pipelines[name] = mcq_prep.create_pipeline() + pipelines[name]
    if all(name in pipelines for name in DEFAULT_CHAIN):
        pipelines["__default__"] = sum((pipelines[name] for name in DEFAULT_CHAIN), Pipeline([]))
    return pipelines
