"""Kedro project settings."""

from __future__ import annotations

from pathlib import PurePath

from finrag_pipelines.config_loader import LayeredConfigLoader
from finrag_pipelines.hooks import RunStopHooks
from finrag_pipelines.managed_llm import ManagedLLMServerHooks

# a run whose upstream artefacts are missing, or that is misconfigured, stops in one line (hooks.py); its
# upstream check runs before any other hook (tryfirst), so a run that cannot start starts no managed server.
# llm.server: managed — the run starts its LLM server, routes params:llm to it and stops it (managed_llm.py)
HOOKS = (RunStopHooks(), ManagedLLMServerHooks())

# OmegaConfigLoader, plus `extends: <env>` in conf/<env>/env.yml (test and milvus extend demo; conf/README.md)
CONFIG_LOADER_CLASS = LayeredConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # an environment changes single keys (demo: the encoder roles, a few training sizes), not whole groups;
    # catalog and credentials entries are replaced whole
    "merge_strategy": {"parameters": "soft", "globals": "soft"},
    "custom_resolvers": {
        # ${basename:some/folder} -> "folder": used to keep artefacts of different BEIR sets apart
        "basename": lambda path: PurePath(str(path).rstrip("/")).name,
    },
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
    },
}
