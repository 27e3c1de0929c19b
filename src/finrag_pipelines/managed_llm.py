"""Kedro hooks for ``llm.server: managed``: the run starts its own model server and every LLM node uses it.

Every pipeline that calls an LLM (query_distill, persona_index's translation, mcq_evaluation, sft_distill,
rag_answer, the RL judge's reward config) reads the one ``params:llm`` group. With ``llm.server: managed`` and
``llm.backend: openai``, :class:`ManagedLLMServerHooks` acts before the first node runs, and only when the run
contains a node taking ``params:llm``:

1. preflight (seconds): ``llm_server.python`` imports ``llm_server.module`` and sees ``tp_size`` GPUs, else
   the run stops with :class:`~finrag_pipelines.llm.managed_server.ManagedServerError` before anything starts;
2. the server starts (:class:`~finrag_pipelines.llm.managed_server.ManagedServer`: its own process group, log
   and launch record in ``llm_server.log_dir``) and is waited for (``/health``, then the model name);
3. ``params:llm`` (and ``params:llm.base_url``, ``parameters``) in the run's catalog is replaced by the same
   settings with ``base_url`` pointing at it, so every node builds its client against the managed server;
4. the server stops after the run, when a node fails (``on_pipeline_error``) and, for an interrupted run
   (Ctrl-C, SIGTERM), when the interpreter exits.

``llm.server: external`` (the default) changes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline
from pydantic import ValidationError

from finrag_pipelines.llm.managed_server import (
    ManagedServer,
    ManagedServerConfig,
    ManagedServerError,
    preflight,
)

logger = logging.getLogger(__name__)

LLM_PARAMS = "params:llm"
SERVER_PARAMS = "params:llm_server"


def _field(settings: Any, name: str) -> Any:
    return settings.get(name) if isinstance(settings, Mapping) else getattr(settings, name, None)


def _with_base_url(settings: Any, url: str) -> Any:
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        return dataclasses.replace(settings, base_url=url)
    if isinstance(settings, Mapping):
        return {**settings, "base_url": url}
    raise ManagedServerError(
        f"params:llm is a {type(settings).__name__}; cannot route it to the managed server."
    )


def _load(catalog: Any, name: str) -> Any:
    return catalog.load(name) if name in catalog else None


def llm_callers(pipeline: Pipeline) -> list[str]:
    """Names of the nodes of ``pipeline`` that read the ``llm`` settings (and so may call the LLM)."""
    return sorted(node.name for node in pipeline.nodes if LLM_PARAMS in node.inputs)


def route_to(catalog: Any, url: str) -> None:
    """Point ``params:llm`` (and ``params:llm.base_url``, ``parameters["llm"]``) of ``catalog`` at ``url``."""
    catalog[LLM_PARAMS] = _with_base_url(catalog.load(LLM_PARAMS), url)
    if f"{LLM_PARAMS}.base_url" in catalog:
        catalog[f"{LLM_PARAMS}.base_url"] = url
    if "parameters" in catalog:
        parameters = dict(catalog.load("parameters"))
        if "llm" in parameters:
            parameters["llm"] = _with_base_url(parameters["llm"], url)
            catalog["parameters"] = parameters


class ManagedLLMServerHooks:
    """Starts, routes to and stops the managed LLM server of a run (see the module docstring).

    Args:
        server_factory: Builds the server (default :class:`ManagedServer`); tests may wrap it.
        check: The preflight (default :func:`~finrag_pipelines.llm.managed_server.preflight`).
    """

    def __init__(
        self,
        server_factory: Callable[..., ManagedServer] = ManagedServer,
        check: Callable[[ManagedServerConfig], Any] = preflight,
    ) -> None:
        self._factory = server_factory
        self._check = check
        self.server: ManagedServer | None = None

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        """Preflight, start and route, when this run is managed and calls the LLM."""
        llm = _load(catalog, LLM_PARAMS)
        if llm is None or _field(llm, "server") != "managed":
            return
        callers = llm_callers(pipeline)
        if _field(llm, "backend") != "openai" or not callers:
            why = "llm.backend is not openai" if callers else "no node of this run calls the LLM"
            logger.info("llm.server is managed, but no server is started: %s", why)
            return
        raw = _load(catalog, SERVER_PARAMS)
        if not isinstance(raw, Mapping):
            raise ManagedServerError(
                "llm.server is managed but the parameters have no llm_server block; add it (see "
                "conf/base/parameters.yml) or set llm.server: external."
            )
        try:
            config = ManagedServerConfig.model_validate(dict(raw))
        except ValidationError as exc:
            problems = "; ".join(
                f"llm_server.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise ManagedServerError(f"bad llm_server settings: {problems}.") from exc
        self._check(config)
        served = config.served_model_name or str(_field(llm, "model"))
        server = self._factory(config, served, str(run_params.get("run_id") or "run"))
        server.start()
        self.server = server
        route_to(catalog, server.base_url)
        logger.info(
            "llm.server managed: %s serves %r at %s for %d node(s): %s",
            config.module, served, server.base_url, len(callers), ", ".join(callers),
        )  # fmt: skip

    def _stop(self, reason: str) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            server.stop(reason)

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        """Stop the server after a finished run."""
        self._stop("run finished")

    @hook_impl
    def on_pipeline_error(
        self, error: Exception, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any
    ) -> None:
        """Stop the server after a failed run (a failure to stop is logged; the run's own error stands)."""
        try:
            self._stop(f"run failed: {type(error).__name__}")
        except ManagedServerError as exc:
            logger.error("%s", exc)
