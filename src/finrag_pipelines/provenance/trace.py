"""Where did this come from: a dataset version, the run and node that made it, what they read, recursively.

Within one run the record's nodes say which node wrote a dataset and what it read; a dataset the run loaded
rather than made is followed to the run that saved that version (a versioned dataset's version is the id of
the run that saved it), or, for an unversioned one, to the latest earlier run that saved the same content
(same ``data_hash``). The walk ends at raw inputs, parameters and datasets no recorded run made.

Kedro-free library module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from finrag_pipelines.provenance.records import base_name

# the fingerprints a trace collects from everything upstream
ROOT_KEYS = ("corpus_hash", "prompt_hash", "encoder_fingerprint")


@dataclass
class Step:
    """One dataset in a trace.

    Attributes:
        dataset: Its catalog name as the reading node named it.
        version: The version read (or written), None for an unversioned dataset.
        run_id: The run that made it (None when no recorded run did).
        node: The node of that run that made it.
        fingerprint: Its hashes (``fingerprints.fingerprint``).
        note: Why the walk stops here, or how the producer was found.
        inputs: What the producing node read.
        repeated: True when this step was already shown higher up (its inputs are not repeated).
    """

    dataset: str
    version: str | None = None
    run_id: str | None = None
    node: str | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    inputs: list[Step] = field(default_factory=list)
    repeated: bool = False


class LineageError(LookupError):
    """No record says anything about the dataset or version asked for."""


def _is_param(name: str) -> bool:
    return name == "parameters" or name.startswith("params:")


class Lineage:
    """The run records, indexed for tracing.

    Args:
        records: Run records (``RecordStore.all()``), any order.
    """

    def __init__(self, records: Iterable[Mapping[str, Any]]) -> None:
        self.runs = {str(r["run_id"]): r for r in records}
        self.order = sorted(self.runs)
        # (dataset base name, version) -> (run id, saved name); (base name, run id) of unversioned saves
        self.saved_by: dict[tuple[str, str], tuple[str, str]] = {}
        self.unversioned_saves: set[tuple[str, str]] = set()
        for run_id in self.order:
            for name, entry in self.runs[run_id].get("datasets", {}).items():
                saved = entry.get("saved")
                if saved and saved.get("version"):
                    self.saved_by[(base_name(name), str(saved["version"]))] = (run_id, name)
                elif saved:
                    self.unversioned_saves.add((base_name(name), run_id))

    def latest(self, dataset: str) -> tuple[str, str, str | None]:
        """``(run id, saved name, version)`` of the latest recorded save of ``dataset``.

        Raises:
            LineageError: When no recorded run saved it.
        """
        base = base_name(dataset)
        for run_id in reversed(self.order):
            for name, entry in self.runs[run_id].get("datasets", {}).items():
                if base_name(name) == base and entry.get("saved"):
                    return run_id, name, entry["saved"].get("version")
        raise LineageError(
            f"no recorded run saved {dataset!r} ({len(self.order)} run records); check the name "
            "(`kedro catalog list`) or run the pipeline that makes it"
        )

    def trace(self, dataset: str, version: str | None = None) -> Step:
        """The lineage of ``dataset`` (at ``version``; default: the latest recorded save).

        Raises:
            LineageError: When no record saved that dataset (version).
        """
        if version is None:
            run_id, name, _ = self.latest(dataset)
        else:
            found = self.saved_by.get((base_name(dataset), version))
            if found is None:
                known = sorted(v for (b, v) in self.saved_by if b == base_name(dataset))
                raise LineageError(
                    f"no recorded run saved {dataset!r} version {version!r}; recorded versions: {known[-10:]}"
                )
            run_id, name = found
        return _Walk(self).made(run_id, name)


class _Walk:
    def __init__(self, lineage: Lineage) -> None:
        self.lineage = lineage
        self.seen: set[tuple[str, str]] = set()

    def _producer(self, record: Mapping[str, Any], dataset: str) -> tuple[str, Mapping[str, Any]] | None:
        base = base_name(dataset)
        for node, info in record.get("nodes", {}).items():
            if base in {base_name(o) for o in info.get("outputs", [])}:
                return node, info
        return None

    def made(self, run_id: str, dataset: str) -> Step:
        """``dataset`` as run ``run_id`` made it (or, if the run only read it, as it read it)."""
        record = self.lineage.runs[run_id]
        found = self._producer(record, dataset)
        if found is None:
            return self.read(run_id, dataset)
        node, info = found
        saved = _entry(record, dataset, "saved")
        step = Step(
            dataset=dataset, version=(saved or {}).get("version"), run_id=run_id, node=node,
            fingerprint=dict((saved or {}).get("fingerprint") or {}),
        )  # fmt: skip
        key = (run_id, base_name(dataset))
        if key in self.seen:
            step.repeated = True
            return step
        self.seen.add(key)
        for name in info.get("inputs", []):
            if not _is_param(name):
                step.inputs.append(
                    self.made(run_id, name) if self._producer(record, name) else self.read(run_id, name)
                )
        return step

    def read(self, run_id: str, dataset: str) -> Step:
        """``dataset`` as run ``run_id`` loaded it, followed to the run that made that version/content."""
        loaded = _entry(self.lineage.runs[run_id], dataset, "loaded")
        if loaded is None:
            return Step(dataset=dataset, note="not recorded (an in-memory value or a raw input)")
        version = loaded.get("version")
        fingerprint = dict(loaded.get("fingerprint") or {})
        if version:
            found = self.lineage.saved_by.get((base_name(dataset), str(version)))
            if found is None:
                return Step(
                    dataset, version, fingerprint=fingerprint, note="no record of the run that saved it"
                )
            step = self.made(*found)
            step.dataset, step.fingerprint = dataset, {**step.fingerprint, **fingerprint}
            return step
        producer = self._same_content(run_id, dataset, fingerprint)
        if producer is None:
            return Step(
                dataset, fingerprint=fingerprint, note="unversioned; no recorded run saved this content"
            )
        step = self.made(producer, dataset)
        step.note = "unversioned; matched by content hash"
        step.fingerprint = {**step.fingerprint, **fingerprint}
        return step

    def _same_content(self, run_id: str, dataset: str, fingerprint: Mapping[str, Any]) -> str | None:
        digest = fingerprint.get("data_hash")
        if not digest:
            return None
        for other in reversed(self.lineage.order):
            if other > run_id:
                continue
            saved = _entry(self.lineage.runs[other], dataset, "saved")
            if saved and (saved.get("fingerprint") or {}).get("data_hash") == digest:
                return other
        return None


def _entry(record: Mapping[str, Any], dataset: str, kind: str) -> Mapping[str, Any] | None:
    datasets = record.get("datasets", {})
    if dataset in datasets and datasets[dataset].get(kind):
        return datasets[dataset][kind]
    base = base_name(dataset)
    for name, entry in datasets.items():  # another transcoded view of the same dataset
        if base_name(name) == base and entry.get(kind):
            return entry[kind]
    return None


def walk(step: Step) -> Iterable[Step]:
    """Every step of a trace, depth first (repeated steps included once more, without their inputs)."""
    yield step
    for child in step.inputs:
        yield from walk(child)


def upstream(step: Step, keys: Sequence[str] = ROOT_KEYS) -> dict[str, dict[str, list[str]]]:
    """For each fingerprint key, each value found anywhere in the trace and the datasets that carry it.

    Returns:
        ``{"corpus_hash": {"ab12…": ["corpus", "dense_index@2026-…"]}, "prompt_hash": {...}, ...}``.
    """
    found: dict[str, dict[str, list[str]]] = {key: {} for key in keys}
    for item in walk(step):
        label = item.dataset + (f"@{item.version}" if item.version else "")
        for key in keys:
            values = item.fingerprint.get(key)
            for value in values if isinstance(values, list) else [values] if values else []:
                holders = found[key].setdefault(str(value), [])
                if label not in holders:
                    holders.append(label)
    return found


def render(step: Step, *, short: int = 12) -> list[str]:
    """The trace as indented lines: ``dataset [version] <- node (run) {hashes}``."""
    lines: list[str] = []

    def line(item: Step, depth: int) -> None:
        text = "  " * depth + ("<- " if depth else "") + item.dataset
        if item.version:
            text += f" @ {item.version}"
        if item.repeated:  # its run, node, hashes and inputs are on the line where it first appears
            lines.append(text + "  (see above)")
            return
        if item.node:
            text += f"  made by {item.node} in run {item.run_id}"
        hashes = [
            f"{k}={','.join(str(x)[:short] for x in v) if isinstance(v, list) else str(v)[:short]}"
            for k, v in item.fingerprint.items()
            if k in (*ROOT_KEYS, "data_hash", "unavailable")
        ]
        if hashes:
            text += "  {" + " ".join(hashes) + "}"
        if item.note:
            text += f"  ({item.note})"
        lines.append(text)
        for child in item.inputs:
            line(child, depth + 1)

    line(step, 0)
    return lines
