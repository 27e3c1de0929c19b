"""Errors shared across packages (Kedro-free)."""

from __future__ import annotations


class ConfigurationError(ValueError):
    """A run cannot go on with this configuration; the message says which setting to change and how.

    ``kedro run`` prints such an error as one line instead of a traceback (``hooks.RunStopHooks``).
    """
