"""Where an artefact came from: Kedro's versioned layout, run records, fingerprints, lineage and retention.

Kedro-free library package: the Kedro side (hooks, the catalog, the commands) lives in
``lineage_hooks.py``, ``catalog.py`` and the ``lineage`` and ``retention`` commands.
"""
