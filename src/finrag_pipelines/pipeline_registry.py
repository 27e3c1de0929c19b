"""Project pipelines."""

from __future__ import annotations

import importlib
import pkgutil

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# the order of the full chain; `__default__` is what `kedro run` (and `make demo`) runs
DEFAULT_CHAIN = (
    "corpus_prep",
    "persona_index",
    "index_build",
    "query_distill",
    "negative_mining",
    "embedding_finetune",
    "evaluation",
    "rag_answer",
)
# Upstream pipelines a pipeline runs first because they take seconds, so that it runs on its own on a new
# folder (`kedro run --pipelines index_build --params retrieval_dataset=<folder>`); `pipeline.node` is one
# node of a pipeline. Expensive upstreams (indexes, personas, LLM distillation, training) are never composed
# in: a run whose inputs they produce stops before it starts and names them (hooks.RunStopHooks).
COMPOSED_UPSTREAMS = {
    "index_build": ("corpus_prep",),
    "evaluation": ("corpus_prep",),
    # sft, rl and mcq_evaluation start from the one deduplicated, split MCQ table
    "sft": ("mcq_prep",),
    "rl": ("mcq_prep",),
    "mcq_evaluation": ("mcq_prep",),
    # sft_distill grounds QA in the corpus and rewrites MCQ items
    "sft_distill": ("corpus_prep", "mcq_prep"),
    # rag_answer asks evaluation's report questions: it runs evaluation's own split node
    # (same seed, same split)
    "rag_answer": ("corpus_prep", "evaluation.split_queries"),
}
_PIPELINES_PACKAGE = "finrag_pipelines.pipelines"


def _own_pipeline(name: str) -> Pipeline:
    return importlib.import_module(f"{_PIPELINES_PACKAGE}.{name}").create_pipeline()


def _upstream(item: str) -> Pipeline:
    """A whole pipeline (``corpus_prep``) or one node of one (``evaluation.split_queries``)."""
    pipeline = _own_pipeline(item.split(".", 1)[0])
    return pipeline.only_nodes(item) if "." in item else pipeline


def _compose(own: dict[str, Pipeline], *, default: bool = True) -> dict[str, Pipeline]:
    pipelines = dict(own)
    for name, upstreams in COMPOSED_UPSTREAMS.items():
        if name in pipelines:
            pipelines[name] = sum((_upstream(up) for up in upstreams), Pipeline([])) + pipelines[name]
    if default and all(name in own for name in DEFAULT_CHAIN):
        pipelines["__default__"] = sum((own[name] for name in DEFAULT_CHAIN), Pipeline([]))
    return pipelines


def register_pipelines() -> dict[str, Pipeline]:
    """Register every pipeline folder under ``pipelines/`` and the default chain.

    Kedro 1.x loads only the pipelines a run asks for; the default chain is assembled when it is loaded too.
    """
    own = {name: p for name, p in find_pipelines(raise_errors=True).items() if name != "__default__"}
    return _compose(own)


def pipeline_names() -> list[str]:
    """Every pipeline folder under ``pipelines/`` (without ``__default__``)."""
    package = importlib.import_module(_PIPELINES_PACKAGE)
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.ispkg)


def own_pipelines() -> dict[str, Pipeline]:
    """Every pipeline folder's own nodes, without the upstreams composed in
    (what the pipeline itself does)."""
    return {name: _own_pipeline(name) for name in pipeline_names()}


def all_pipelines() -> dict[str, Pipeline]:
    """Every registered pipeline but ``__default__``, whatever ``kedro run --pipelines`` asked Kedro to load.

    ``register_pipelines`` builds only the requested pipelines; the upstream check needs all of them to
    name the pipelines that produce a missing input.
    """
    return _compose(own_pipelines(), default=False)
