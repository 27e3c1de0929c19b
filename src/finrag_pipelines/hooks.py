"""Project hooks: a run stops in one line, before it starts, when upstream pipelines have not made its inputs.

``kedro run --pipelines query_distill`` on a new folder used to load ``corpus`` and die in a 40-line
traceback. Now the run checks, before any node runs, that every input another registered pipeline produces
exists, and otherwise stops with one line (click prints ``Error: <message>``; exit code 1) naming the missing
datasets, the pipelines that produce them and the command to run first. Producers are derived from the
registered pipelines, never listed by hand. Configuration errors raised by a node or by another hook before
the run (:class:`~finrag_pipelines.errors.ConfigurationError`, e.g. the managed LLM server's preflight) are
printed the same way. The hooks order themselves (``tryfirst`` / ``trylast`` / a wrapper), whatever
``settings.HOOKS`` lists first."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any

import click
from kedro.framework.hooks import hook_impl
from kedro.io import AbstractDataset
from kedro.pipeline import Pipeline

from finrag_pipelines.errors import ConfigurationError
from finrag_pipelines.pipeline_registry import DEFAULT_CHAIN, all_pipelines

DEFAULT = "__default__"
# kedro run options that run a slice of the pipelines (run_params keys)
_FILTERS = ("tags", "node_names", "from_nodes", "to_nodes", "from_inputs", "to_outputs", "namespaces")


class RunStopped(click.ClickException):
    """Stops ``kedro run`` with one line (``Error: <message>``, exit code 1) instead of a traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def _base(name: str) -> str:
    """The dataset behind a transcoded name (``finetuned_model@encoder`` -> ``finetuned_model``)."""
    return name.split("@", 1)[0]


def _outputs(pipeline: Pipeline) -> set[str]:
    return {_base(name) for name in pipeline.all_outputs()}


def _node_names(pipeline: Pipeline) -> set[str]:
    return {node.name for node in pipeline.nodes}


def absent_inputs(pipeline: Pipeline, catalog: Any) -> list[str]:
    """The free inputs of ``pipeline`` whose datasets say they do not exist (cheap: no pipeline is built).

    A dataset that cannot tell (no ``_exists``: encoders, credentials, the embedding store, raw source
    files) is left to its own ``load``, which reports its problems. A dataset declaring ``optional = True``
    (``EncoderDataset(optional=True)``) loads a stand-in when absent and is not required either.
    """
    absent = []
    for name in sorted(pipeline.inputs()):
        if name == "parameters" or name.startswith("params:"):
            continue
        dataset = catalog.get(name)
        if dataset is None:  # not in the catalog: a MemoryDataset, empty before the run
            absent.append(name)
        elif getattr(dataset, "optional", False) or type(dataset)._exists is AbstractDataset._exists:
            continue
        elif not dataset.exists():
            absent.append(name)
    return absent


def missing_upstream_inputs(absent: Iterable[str], registry: Mapping[str, Pipeline]) -> list[str]:
    """Those of ``absent`` that a registered pipeline produces (raw inputs and clients are never produced)."""
    produced = set().union(*(_outputs(p) for p in registry.values()))
    return [name for name in absent if _base(name) in produced]


def producers(dataset: str, registry: Mapping[str, Pipeline]) -> list[str]:
    """The smallest registered pipelines that write ``dataset`` (one that contains another is left out)."""
    names = [n for n, p in registry.items() if n != DEFAULT and _base(dataset) in _outputs(p)]
    nodes = {n: _node_names(registry[n]) for n in names}
    return sorted(n for n in names if not any(nodes[other] < nodes[n] for other in names))


def _chain_order(names: Iterable[str]) -> list[str]:
    rank = {name: i for i, name in enumerate(DEFAULT_CHAIN)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def upstream_plan(missing: Iterable[str], catalog: Any, registry: Mapping[str, Pipeline]) -> list[str]:
    """The pipelines to run first, in chain order: producers of ``missing``, then of what they lack, etc.

    A pipeline whose nodes all belong to the others (``corpus_prep`` next to ``index_build``) is left out.
    """
    chosen: list[str] = []
    todo, seen = list(missing), set()
    while todo:
        dataset = todo.pop(0)
        if dataset in seen:
            continue
        seen.add(dataset)
        for name in producers(dataset, registry):
            if name not in chosen:
                chosen.append(name)
                todo.extend(missing_upstream_inputs(absent_inputs(registry[name], catalog), registry))
    for name in list(chosen):
        others = set().union(*(_node_names(registry[o]) for o in chosen if o != name))
        if _node_names(registry[name]) <= others:
            chosen.remove(name)
    return _chain_order(chosen)


def _flatten(params: Mapping[str, Any], prefix: str = "") -> list[str]:
    items = []
    for key, value in params.items():
        if isinstance(value, Mapping):
            items.extend(_flatten(value, f"{prefix}{key}."))
        else:
            items.append(f"{prefix}{key}={value}")
    return items


def missing_upstream_message(
    run_params: Mapping[str, Any], missing: list[str], catalog: Any, registry: Mapping[str, Pipeline]
) -> str:
    """One line: what is missing, which pipelines make it, and the command that makes it."""
    by_producers: dict[tuple[str, ...], list[str]] = {}
    for name in missing:
        by_producers.setdefault(tuple(producers(name, registry)), []).append(name)
    needs = "; ".join(
        f"{', '.join(names)} (made by {' or '.join(makers)})" for makers, names in by_producers.items()
    )
    what = ",".join(run_params.get("pipeline_names") or [DEFAULT])
    filters = [f"--{key.replace('_', '-')}" for key in _FILTERS if run_params.get(key)]
    if filters:
        what += f" (filtered by {', '.join(filters)})"
    command = "kedro run"
    if run_params.get("env"):
        command += f" --env {run_params['env']}"
    command += f" --pipelines {','.join(upstream_plan(missing, catalog, registry))}"
    if run_params.get("runtime_params"):
        command += f" --params {','.join(_flatten(run_params['runtime_params']))}"
    return f"{what} needs {needs}, which do not exist yet; run first: {command}"


class RunStopHooks:
    """Stops a run in one line when it cannot start (missing upstream artefacts) or is misconfigured.

    Args:
        registry: Builds the registered pipelines (default: ``pipeline_registry.all_pipelines``).
    """

    def __init__(self, registry: Callable[[], Mapping[str, Pipeline]] | None = None) -> None:
        self._registry = registry

    # first: no lineage record or MLflow run is opened, and no managed LLM server started, for a run that
    # cannot start
    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        absent = absent_inputs(pipeline, catalog)
        if not absent:
            return
        registry = (self._registry or all_pipelines)()  # imports every pipeline's nodes: only when needed
        missing = missing_upstream_inputs(absent, registry)
        if missing:
            raise RunStopped(missing_upstream_message(run_params, missing, catalog, registry))

    @hook_impl(wrapper=True, specname="before_pipeline_run")
    def stop_misconfigured_start(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any
    ) -> Generator[None, None, None]:
        """A ConfigurationError of another hook before the run (the managed LLM server's) -> one line."""
        try:
            return (yield)
        except ConfigurationError as error:
            raise RunStopped(str(error)) from error

    @hook_impl(trylast=True)  # raising ends the hook call: the other hooks (stopping a server) go first
    def on_pipeline_error(
        self, error: Exception, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any
    ) -> None:
        if isinstance(error, ConfigurationError):
            raise RunStopped(str(error)) from error
