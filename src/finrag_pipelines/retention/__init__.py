"""Deleting old versions of versioned datasets: the command (:mod:`.cli`); the rule is in
:mod:`finrag_pipelines.provenance.retention`."""
