"""A local ``milvus-lite server`` (gRPC, the server URI path) for tests and trying the server setup.

Kedro-free. Example::

    with LocalMilvusServer(tmp_path / "milvus") as server:
        target = MilvusTarget(uri=server.uri, collection="docs")
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LocalMilvusServer:
    """Runs ``python -m milvus_lite server --data-dir DIR --port PORT`` until the ``with`` block ends.

    Args:
        data_dir: The server's data directory (created if missing).
        port: TCP port; a free one by default.
        host: Bind address.
        start_timeout_s: How long to wait for the server to accept connections.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int | None = None,
        host: str = "127.0.0.1",
        start_timeout_s: float = 60.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or free_port(host)
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log = self.data_dir.parent / f"{self.data_dir.name}.server.log"

    @property
    def uri(self) -> str:
        """The server URI for :class:`~finrag_pipelines.retrieval.milvus.connection.MilvusTarget`."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalMilvusServer:
        """Start the server and wait until a client can list collections.

        Raises:
            RuntimeError: If milvus-lite is not installed, the process exits, or it does not answer in time.
        """
        if shutil.which("milvus-lite") is None and not _has_module("milvus_lite"):
            raise RuntimeError("milvus-lite is not installed: pip install 'finrag_pipelines[milvus]'.")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "milvus_lite",
            "server",
            "--data-dir",
            str(self.data_dir),
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        log = self._log.open("wb")
        self._process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"milvus-lite server exited with {self._process.returncode}: {self._tail()}"
                )
            if self._answers():
                logger.info("milvus-lite server up at %s (data %s)", self.uri, self.data_dir)
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"milvus-lite server at {self.uri} did not answer within {self.start_timeout_s:.0f}s: "
            f"{self._tail()}"
        )

    def _answers(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                pass
        except OSError:
            return False
        from pymilvus import MilvusClient

        try:
            client = MilvusClient(uri=self.uri, timeout=5)
            client.list_collections()
            client.close()
        except Exception:  # noqa: BLE001 - not ready yet
            return False
        return True

    def _tail(self) -> str:
        try:
            return self._log.read_text(encoding="utf-8", errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the server (SIGTERM to its process group, then SIGKILL after 10 s)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def __enter__(self) -> LocalMilvusServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
