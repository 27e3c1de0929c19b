"""Datasets for the LLM plumbing: credentials from Kedro's credentials config, the response journal."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro.io import AbstractDataset, DatasetError

if TYPE_CHECKING:
    from finrag_pipelines.llm.journal import ResponseJournal


class CredentialsDataset(AbstractDataset[None, dict[str, Any]]):
    """Hands a node the credentials Kedro resolved for this entry (``credentials: llm``); read-only.

    Its description never includes the secret, so logs and kedro-viz show only which keys are set.
    """

    def __init__(self, credentials: dict[str, Any] | None = None) -> None:
        self._credentials = dict(credentials or {})

    def load(self) -> dict[str, Any]:
        return dict(self._credentials)

    def save(self, data: dict[str, Any]) -> None:
        raise DatasetError("credentials are configured in conf/*/credentials.yml, not saved by pipelines")

    def _describe(self) -> dict[str, Any]:
        return {"keys": sorted(self._credentials)}


class ResponseJournalDataset(AbstractDataset[None, "ResponseJournal"]):
    """Opens the append-only LLM response journal that makes LLM stages resumable; nodes write through it."""

    def __init__(self, filepath: str) -> None:
        self._filepath = filepath

    def load(self) -> ResponseJournal:
        from finrag_pipelines.llm.journal import ResponseJournal

        Path(self._filepath).parent.mkdir(parents=True, exist_ok=True)
        return ResponseJournal(self._filepath)

    def save(self, data: ResponseJournal) -> None:
        raise DatasetError("the LLM journal is appended to by the nodes that call the LLM, not saved to")

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath}
