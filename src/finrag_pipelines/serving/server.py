"""Running the app with uvicorn: in the foreground (CLI) or in a background thread (tests, benchmarks).

Kedro-free library module.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Self

import uvicorn
from fastapi import FastAPI


class ServerThread:
    """A real uvicorn server on a local port, in a background thread.

    The socket is bound before the thread starts (``port=0`` picks a free port), so ``url`` is valid at
    once and no other process can take the port in between.

    Example::

        with ServerThread(app) as server:
            httpx.post(f"{server.url}/retrieve", json={...})

    Args:
        app: The ASGI app.
        host: Bind address.
        port: TCP port; 0 = a free one.
        log_level: uvicorn's log level.
    """

    def __init__(
        self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
    ) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host = host
        self.port = int(self._sock.getsockname()[1])
        config = uvicorn.Config(app, log_level=log_level, lifespan="on", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name=f"uvicorn-{self.port}",
            daemon=True,
        )

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8123``."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerThread:
        """Start and wait until uvicorn has run the app's startup (lifespan) and listens.

        Raises:
            RuntimeError: If the server does not start within ``timeout`` seconds or its thread dies.
        """
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server thread exited during startup; see the log above")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not start within {timeout:.0f}s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Ask uvicorn to shut down (runs the lifespan shutdown) and wait for the thread."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve(app: FastAPI, host: str, port: int, log_level: str = "info") -> None:
    """Run the app in the foreground until interrupted (Ctrl-C / SIGTERM)."""
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
