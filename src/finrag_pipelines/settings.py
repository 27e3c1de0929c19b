"""Kedro project settings."""

from __future__ import annotations

from pathlib import PurePath

from kedro.config import OmegaConfigLoader

from finrag_pipelines.managed_llm import ManagedLLMServerHooks

# llm.server: managed — the run starts its LLM server, routes params:llm to it and stops it (managed_llm.py)
HOOKS = (ManagedLLMServerHooks(),)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # environments override single keys (e.g. demo changes only the encoder), not whole pipeline groups
    # globals.yml replaces whole top-level keys per environment (an encoder is swapped, not merged)
    "merge_strategy": {"parameters": "soft"},
    "custom_resolvers": {
        # ${basename:some/folder} -> "folder": used to keep artefacts of different BEIR sets apart
        "basename": lambda path: PurePath(str(path).rstrip("/")).name,
    },
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
    },
}
