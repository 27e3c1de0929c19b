"""The ``name`` and ``meta`` every lexical index backend exposes, kept in its ``meta.json`` dict."""

from __future__ import annotations

import json
from typing import Any


class NamedMeta:
    """Mixin: ``name`` (read/write, stored as ``meta["name"]``) and a deep copy of ``meta``.

    The class sets ``self._meta`` (the contents of ``meta.json``); ``DEFAULT_NAME`` is the name reported
    when the meta has none (an index created before names were recorded).
    """

    _meta: dict[str, Any]
    DEFAULT_NAME: str | None = None

    @property
    def name(self) -> str:
        """Retriever name used in runs, logs and reports (recorded in ``meta.json`` on save)."""
        name = self._meta.get("name") or self.DEFAULT_NAME
        if name is None:
            raise KeyError("meta.json has no name")
        return str(name)

    @name.setter
    def name(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise ValueError(f"name must be a non-empty string, got {value!r}.")
        self._meta["name"] = value

    @property
    def meta(self) -> dict[str, Any]:
        """A copy of the build metadata (the contents of ``meta.json``)."""
        return json.loads(json.dumps(self._meta))
