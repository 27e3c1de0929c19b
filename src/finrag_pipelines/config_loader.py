"""Kedro's ``OmegaConfigLoader``, plus environments that extend another environment.

Kedro loads ``conf/base`` and one environment. An environment that is another one plus a few changes
(``test`` = ``demo`` on a small set; ``milvus`` = ``demo`` with the indexes in Milvus) names it in
``conf/<env>/env.yml``::

    extends: demo

and is loaded as ``base``, then ``demo``, then itself: each layer is read and resolved on its own, exactly as
Kedro reads an environment, and merged onto the layers below it with the project's merge strategy
(``settings.py``). An environment without ``env.yml`` loads exactly as with ``OmegaConfigLoader``.
"""

from __future__ import annotations

from typing import Any

import yaml
from kedro.config import MissingConfigException, OmegaConfigLoader
from omegaconf import OmegaConf

ENV_FILE = "env.yml"
_ENV_KEYS = {"extends"}


class LayeredConfigLoader(OmegaConfigLoader):
    """``OmegaConfigLoader`` where ``conf/<env>/env.yml`` may say ``extends: <other env>`` (see module)."""

    def _declared_parent(self, env: str) -> str | None:
        path = f"{self._get_conf_env_path(env)}/{ENV_FILE}"
        if not self._fs.exists(path):
            return None
        with self._fs.open(path) as handle:
            declared = yaml.safe_load(handle.read().decode("utf8")) or {}
        if not isinstance(declared, dict) or set(declared) - _ENV_KEYS:
            raise ValueError(
                f"{path}: expected only the key(s) {sorted(_ENV_KEYS)}, e.g. `extends: demo`; "
                f"got {declared!r}"
            )
        parent = declared.get("extends")
        if parent is None:
            return None
        if not isinstance(parent, str) or not parent:
            raise ValueError(f"{path}: `extends` must name an environment folder under conf/, got {parent!r}")
        if parent == self.base_env:
            raise ValueError(f"{path}: every environment extends {self.base_env!r} already; remove `extends`")
        if not self._fs.isdir(self._get_conf_env_path(parent)):
            # a ValueError: OmegaConfigLoader.__init__ swallows MissingConfigException while it reads globals
            raise ValueError(
                f"{path}: extends {parent!r}, but {self._get_conf_env_path(parent)} does not exist"
            )
        return parent

    def env_layers(self) -> list[str]:
        """The environments loaded after ``base``, the one furthest down first (``["demo", "milvus"]``)."""
        env = self.env or self.default_run_env
        chain: list[str] = []
        while env and env != self.base_env:
            if env in chain:
                raise ValueError(
                    f"{ENV_FILE} files extend each other in a cycle: {' -> '.join([*chain, env])}"
                )
            chain.append(env)
            env = self._declared_parent(env)
        return chain[::-1]

    def __getitem__(self, key: str) -> dict[str, Any]:
        layers = self.env_layers()
        if len(layers) < 2 or key in self or key not in self.config_patterns:
            return super().__getitem__(key)
        self._register_runtime_params_resolver()
        if key == "globals":  # as in OmegaConfigLoader: runtime_params are not allowed in globals
            OmegaConf.clear_resolver("runtime_params")
        patterns = [*self.config_patterns[key]]
        with_env_vars = key == "credentials"
        processed: set = set()
        config: dict[str, Any] = {}
        for env in [self.base_env, *layers]:
            path = self._get_conf_env_path(env)
            layer = self._merge_and_resolve(
                key, self._read_dir_configs(path, patterns, key, processed, with_env_vars)
            )
            config = layer if env == self.base_env else self._merge_configs(config, layer, key, path)
        if not processed and key != "globals":
            raise MissingConfigException(
                f"No files of YAML or JSON format found in the layers {[self.base_env, *layers]} matching "
                f"the glob pattern(s): {patterns}"
            )
        return config
