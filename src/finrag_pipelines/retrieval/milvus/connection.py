"""Where a Milvus collection lives (a Milvus Lite ``*.db`` file or a server URL, with credentials) and the
shared ``pymilvus.MilvusClient`` per connection.

Kedro-free library module.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finrag_pipelines.retrieval.types import RetrievalError

logger = logging.getLogger(__name__)

_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class MilvusUnavailableError(RuntimeError):
    """pymilvus (and, for a local path, milvus-lite) is not installed."""


@dataclass(frozen=True)
class MilvusTarget:
    """Where a collection lives.

    Attributes:
        uri: A local file path ending in ``.db`` (Milvus Lite, embedded in this process) or a server URL
            such as ``http://host:19530``.
        collection: Collection name (letters, digits, underscores).
        token: Server token (``user:password`` or an API key), if the server needs one.
        user: Server user name (with ``password``), if the server needs one.
        password: Server password.
        db_name: Server database; empty = the default one.
    """

    uri: str
    collection: str
    token: str = field(default="", repr=False)
    user: str = ""
    password: str = field(default="", repr=False)
    db_name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.uri, str) or not self.uri:
            raise ValueError(f"milvus uri must be a non-empty string, got {self.uri!r}.")
        if not self.embedded and not self.uri.lower().startswith(
            ("http://", "https://", "tcp://", "grpc://")
        ):
            raise ValueError(
                f"milvus uri {self.uri!r} is neither a local '*.db' path (Milvus Lite) nor an "
                "http(s)://host:port server URL."
            )
        if self.embedded and not self.uri.endswith(".db"):
            raise ValueError(
                f"milvus uri {self.uri!r}: a local Milvus Lite database must be a file path ending in '.db' "
                "(e.g. data/06_models/fintruthqa/milvus.db); for a server use http://host:19530."
            )
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,254}", self.collection or ""):
            raise ValueError(
                f"milvus collection name {self.collection!r} must start with a letter or underscore and hold "
                "only letters, digits and underscores."
            )
        if self.password and not self.user:
            raise ValueError("milvus credentials: a password needs a user; or give a token instead.")

    @property
    def embedded(self) -> bool:
        """Whether ``uri`` is a local Milvus Lite file (not a server URL)."""
        return not _URL.match(self.uri)

    def describe(self) -> dict[str, Any]:
        """What ``meta.json`` records about the target (never the secrets)."""
        described: dict[str, Any] = {
            "uri": self.uri,
            "collection": self.collection,
            "mode": "lite" if self.embedded else "server",
        }
        if self.db_name:
            described["db_name"] = self.db_name
        return described

    def __str__(self) -> str:
        return f"milvus collection {self.collection!r} at {self.uri}"


_CLIENTS: dict[tuple[str, str, str, str, str], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def connect(target: MilvusTarget) -> Any:
    """A ``pymilvus.MilvusClient`` for ``target``, shared by every index on the same connection.

    One client per database file matters for Milvus Lite: the file is opened once per process.

    Raises:
        MilvusUnavailableError: If pymilvus / milvus-lite is not installed.
        RetrievalError: If the server cannot be reached.
    """
    try:
        from pymilvus import MilvusClient
    except ImportError as exc:
        raise MilvusUnavailableError(
            "the Milvus backend needs pymilvus (and milvus-lite for a local .db file): "
            "pip install 'finrag_pipelines[milvus]'."
        ) from exc
    uri = str(Path(target.uri).expanduser().resolve()) if target.embedded else target.uri
    key = (uri, target.token, target.user, target.password, target.db_name)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            if target.embedded:
                Path(uri).parent.mkdir(parents=True, exist_ok=True)
            try:
                client = MilvusClient(
                    uri=uri,
                    token=target.token,
                    user=target.user,
                    password=target.password,
                    db_name=target.db_name,
                )
            except Exception as exc:  # pymilvus raises MilvusException or grpc errors
                raise RetrievalError(f"cannot connect to {target}: {exc}") from exc
            _CLIENTS[key] = client
    return client


def close_clients() -> None:
    """Close every shared client (tests, and before handing a Lite file to another process)."""
    with _CLIENTS_LOCK:
        for client in _CLIENTS.values():
            try:
                client.close()
            except Exception:
                logger.debug("milvus: closing a client failed", exc_info=True)
        _CLIENTS.clear()
