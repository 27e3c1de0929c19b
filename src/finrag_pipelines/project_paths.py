"""Paths in reports and manifests: relative to the project root, never the absolute paths of the machine
that wrote them.

The project root is the folder Kedro runs from (the current folder) unless a ``root`` is given. A path
outside it (a shared model store named in conf) is kept as given.

Kedro-free library module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _root_forms(root: str | Path | None) -> list[str]:
    root = Path.cwd() if root is None else Path(root)
    return sorted({str(root.absolute()), str(root.resolve())}, key=len, reverse=True)


def portable_text(text: str, root: str | Path | None = None) -> str:
    """``text`` with every path under the project root written relative to it.

    A path starts at the beginning of ``text`` or after a space, ``=``, ``,``, ``:``, a quote or a bracket
    (so ``model.path=/proj/data/m`` becomes ``model.path=data/m``); the root itself becomes ``.``.

    Args:
        text: A path, a command-line argument or a Hydra override.
        root: The project root (default: the current folder, where Kedro runs).
    """
    for prefix in _root_forms(root):
        pattern = re.compile(r"(?:^|(?<=[\s=,:'\"\[(]))" + re.escape(prefix) + r"(/|(?=[\s,'\"\])]|$))")
        text = pattern.sub(lambda m: "" if m.group(1) == "/" else ".", text)
    return text


def portable_path(path: str | Path, root: str | Path | None = None) -> str:
    """A path for a report or manifest: relative to the project root when under it, else as given."""
    return portable_text(str(path), root)


def portable_argv(argv: Sequence[Any], root: str | Path | None = None) -> list[str]:
    """A command for a report or manifest: paths under the project root made relative, and an executable
    outside it (a virtualenv's ``bin/torchrun``) reduced to its name."""
    items = [portable_text(str(a), root) for a in argv]
    if items and Path(items[0]).is_absolute():
        items[0] = Path(items[0]).name
    return items


def portable_values(value: Any, root: str | Path | None = None) -> Any:
    """``value`` with :func:`portable_text` applied to every string in it (mappings and lists walked)."""
    if isinstance(value, str):
        return portable_text(value, root)
    if isinstance(value, Mapping):
        return {k: portable_values(v, root) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable_values(v, root) for v in value]
    return value


def is_inside(path: str | Path, root: str | Path | None = None) -> bool:
    """True when ``path`` is the project root or lies under it."""
    root = Path.cwd() if root is None else Path(root)
    return Path(path).resolve().is_relative_to(root.resolve())
