"""A model server the run starts itself: ``python -m sglang.launch_server`` for as long as the run needs it.

``llm.server: managed`` makes the run start the server (the Kedro hook in
:mod:`finrag_pipelines.managed_llm`); this module is the lifecycle, Kedro-free:

* :class:`ManagedServerConfig`: what to launch (``llm_server`` in conf): the interpreter of sglang's own
  environment and the module to run, model path, tensor-parallel size, memory fraction, reasoning and
  tool-call parsers, port, health timeout, where the log goes.
* :func:`preflight`: seconds, before anything else starts: the interpreter runs, the module is importable
  there and (``require_gpus``) it sees ``tp_size`` CUDA GPUs; otherwise :class:`ManagedServerError` says what
  to fix.
* :class:`ManagedServer`: ``start`` (kill what an earlier, killed run left behind; launch in its own process
  group; wait for ``GET /health``, then check ``/v1/models`` serves the model name), ``base_url``, ``stop``
  (SIGTERM to the whole group, SIGKILL after ``stop_timeout_s``, then check that no process it started is
  left). It also stops on interpreter exit (``atexit``) and on SIGTERM, and on Linux the server gets SIGTERM
  if this process dies (``PR_SET_PDEATHSIG``). Every process it starts carries the environment variable
  :data:`MARKER` with a per-launch token, which is how leftovers are found (``/proc``), never by name.

The server's output goes to ``<log_dir>/<run id>.log`` and a record of the launch (command, pid, URL, times,
how it ended) to ``<log_dir>/<run id>.json``; ``<log_dir>/server.pid.json`` exists while a server runs.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import httpx
from pydantic import Field

from finrag_pipelines.config import StrictModel
from finrag_pipelines.errors import ConfigurationError

logger = logging.getLogger(__name__)

MARKER = "FINRAG_MANAGED_LLM_SERVER"
"""Environment variable set (to a per-launch token) in every process a :class:`ManagedServer` starts."""
PID_FILE = "server.pid.json"
_TAIL_LINES = 25
_PR_SET_PDEATHSIG = 1

# runs in the configured interpreter: is the module there, and how many CUDA GPUs does torch see?
_PROBE = """
import importlib.util, json, sys
out = {"python": sys.version.split()[0], "module": importlib.util.find_spec(sys.argv[1]) is not None}
try:
    import torch
    out["gpus"] = torch.cuda.device_count() if torch.cuda.is_available() else 0
except Exception as exc:
    out["gpus"], out["gpu_error"] = 0, f"{type(exc).__name__}: {exc}"
json.dump(out, sys.stdout)
"""


class ManagedServerError(ConfigurationError):
    """The managed LLM server cannot start, did not become healthy, or left processes behind.

    A :class:`~finrag_pipelines.errors.ConfigurationError`: ``kedro run`` stops with its message in one line.
    """


class ManagedServerConfig(StrictModel):
    """``llm_server`` in conf: how the run launches its model server (used when ``llm.server: managed``)."""

    python: str = Field(description="interpreter of the environment sglang is installed in (its own venv)")
    module: str = Field(description="run as `python -m <module>`: sglang.launch_server")
    model_path: str = Field(description="the model folder (or hub id) the server loads")
    served_model_name: str | None = Field(description="name the server answers to; null = llm.model")
    host: str = Field(description="address it binds; the client connects there")
    port: int = Field(ge=0, le=65535, description="0 = a free port")
    tp_size: int = Field(ge=1, description="tensor-parallel size = GPUs used")
    mem_fraction_static: float = Field(gt=0, lt=1, description="GPU memory share for weights and KV cache")
    reasoning_parser: str | None = Field(description="e.g. qwen3; null = off")
    tool_call_parser: str | None = Field(description="e.g. qwen25; null = off")
    extra_args: list[str] = Field(description="more command-line arguments, passed as given")
    env: dict[str, str] = Field(description="extra environment variables for the server")
    require_gpus: bool = Field(description="preflight: the interpreter must see tp_size CUDA GPUs")
    preflight_timeout_s: float = Field(gt=0)
    health_path: str = Field(pattern=r"^/", description="GET until 200")
    health_timeout_s: float = Field(gt=0, description="stop and fail when the server is not healthy by then")
    poll_interval_s: float = Field(gt=0)
    stop_timeout_s: float = Field(gt=0, description="SIGTERM, then SIGKILL after this long")
    log_dir: str = Field(description="<run id>.log and .json go here")

    def command(self, served_model_name: str, port: int) -> list[str]:
        """The launch command (sglang's ``launch_server`` flags)."""
        argv = [
            self.python, "-m", self.module,
            "--model-path", self.model_path,
            "--served-model-name", served_model_name,
            "--host", self.host,
            "--port", str(port),
            "--tp-size", str(self.tp_size),
            "--mem-fraction-static", str(self.mem_fraction_static),
        ]  # fmt: skip
        if self.reasoning_parser:
            argv += ["--reasoning-parser", self.reasoning_parser]
        if self.tool_call_parser:
            argv += ["--tool-call-parser", self.tool_call_parser]
        return argv + list(self.extra_args)


def preflight(config: ManagedServerConfig) -> dict[str, Any]:
    """Check, in seconds, that the configured interpreter can launch the server on this machine.

    Returns:
        What the probe found (``python``, ``module``, ``gpus``).

    Raises:
        ManagedServerError: The interpreter does not run, the module is not importable there, or fewer than
            ``tp_size`` GPUs are visible (with ``require_gpus``).
    """
    try:
        done = subprocess.run(
            [config.python, "-c", _PROBE, config.module],
            capture_output=True,
            text=True,
            timeout=config.preflight_timeout_s,
            env={**os.environ, **config.env},
            check=False,
        )
    except FileNotFoundError as exc:
        raise ManagedServerError(
            f"llm_server.python: {config.python!r} does not exist; set it to the interpreter of the "
            "environment sglang is installed in (e.g. /opt/sglang/.venv/bin/python)."
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise ManagedServerError(
            f"llm_server.python {config.python!r} did not answer the preflight probe within "
            f"{config.preflight_timeout_s}s (llm_server.preflight_timeout_s)."
        ) from exc
    try:
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as exc:
        raise ManagedServerError(
            f"llm_server.python {config.python!r} failed the preflight probe (exit {done.returncode}): "
            f"{done.stderr.strip()[-500:]}"
        ) from exc
    if not found["module"]:
        raise ManagedServerError(
            f"llm_server.module {config.module!r} is not importable by {config.python} (Python "
            f"{found['python']}); install sglang in that environment (pip install 'sglang[all]') or point "
            "llm_server.python at the environment that has it."
        )
    if config.require_gpus and found["gpus"] < config.tp_size:
        why = f" ({found['gpu_error']})" if found.get("gpu_error") else ""
        raise ManagedServerError(
            f"the managed LLM server needs llm_server.tp_size={config.tp_size} CUDA GPU(s), but "
            f"{config.python} sees {found['gpus']}{why}. Run on a GPU machine, lower tp_size, or use an "
            "external endpoint (llm.server: external, llm.base_url)."
        )
    logger.info("llm server preflight: %s has %s, %s GPU(s)", config.python, config.module, found["gpus"])
    return found


def free_port(host: str) -> int:
    """A port nobody listens on at ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def marked_processes(token: str | None = None) -> list[int]:
    """Pids of live processes carrying :data:`MARKER` (with ``token``, or any token), from ``/proc``."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    wanted = f"{MARKER}={token}".encode() if token else f"{MARKER}=".encode()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone, or not ours to read
            continue
        if any(item == wanted if token else item.startswith(wanted) for item in environ):
            found.append(int(entry.name))
    return sorted(found)


def _kill(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _tail(path: Path, lines: int = _TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ManagedServer:
    """One launch of the model server, stopped on :meth:`stop`, at interpreter exit, or on SIGTERM.

    Args:
        config: What to launch.
        served_model_name: The model name the client sends (``llm.model`` unless conf names another).
        run_id: Names the log and record files.
    """

    def __init__(self, config: ManagedServerConfig, served_model_name: str, run_id: str) -> None:
        self.config = config
        self.served_model_name = served_model_name
        self.run_id = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id) or "run"
        self.log_dir = Path(config.log_dir)
        self.log_path = self.log_dir / f"{self.run_id}.log"
        self.record_path = self.log_dir / f"{self.run_id}.json"
        self.token = uuid.uuid4().hex
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.record: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._previous_sigterm: Any = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible root the client uses (``http://host:port/v1``)."""
        if self.port is None:
            raise ManagedServerError("the managed LLM server has not been started.")
        return f"http://{self.config.host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        """True while the launched process runs."""
        return self.process is not None and self.process.poll() is None

    # ------------------------------------------------------------------ start

    def kill_leftovers(self) -> list[int]:
        """Kill the processes of a server an earlier run started and could not stop (it was killed itself).

        Found by the token in ``<log_dir>/server.pid.json``; the file goes once nothing of it is left.
        """
        pid_file = self.log_dir / PID_FILE
        if not pid_file.is_file():
            return []
        try:
            earlier = json.loads(pid_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            earlier = {}
        token = str(earlier.get("token") or "")
        pids = [pid for pid in marked_processes(token) if _alive(pid)] if token else []
        if pids:
            logger.warning(
                "llm server: %d process(es) %s of a server started by run %s (%s) are still running; "
                "an earlier run was killed before it could stop them. Stopping them now.",
                len(pids), pids, earlier.get("run_id"), earlier.get("url"),
            )  # fmt: skip
            self._terminate(token)
        left = [pid for pid in marked_processes(token) if _alive(pid)] if token else []
        if left:
            raise ManagedServerError(
                f"processes {left} of the managed LLM server of run {earlier.get('run_id')} survive SIGKILL; "
                "stop them by hand before starting another."
            )
        pid_file.unlink(missing_ok=True)
        return pids

    def start(self) -> ManagedServer:
        """Launch the server and wait until it is healthy and serves the model name.

        Raises:
            ManagedServerError: It exited, or was not healthy within ``health_timeout_s`` (then it is
                stopped); or it does not list the served model name. The message ends with the log's tail.
        """
        if self.process is not None:
            raise ManagedServerError("this managed LLM server was already started.")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.kill_leftovers()
        self.port = self.config.port or free_port(self.config.host)
        argv = self.config.command(self.served_model_name, self.port)
        env = {**os.environ, **self.config.env, MARKER: self.token}
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # its own process group: Ctrl-C on the terminal does not reach it,
                # and stop() signals the whole group; prctl only (no locks), safe between fork and exec
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )
        self.record = {
            "run_id": self.run_id, "command": argv, "pid": self.process.pid, "url": self.base_url,
            "token": self.token, "log": str(self.log_path), "started": _now(), "healthy_after_s": None,
            "stopped": None, "stop_reason": None, "exit_code": None, "left_behind": None,
        }  # fmt: skip
        (self.log_dir / PID_FILE).write_text(json.dumps(self.record, indent=1), encoding="utf-8")
        self._write_record()
        atexit.register(self.stop, "interpreter exit")
        self._install_sigterm()
        logger.info(
            "llm server: started %s (pid %d), log %s", " ".join(argv[:3]), self.process.pid, self.log_path
        )
        try:
            self._wait_healthy(started)
            self._check_model()
        except BaseException:
            self.stop("failed to start")
            raise
        self.record["healthy_after_s"] = round(time.monotonic() - started, 1)
        self._write_record()
        logger.info("llm server: healthy after %.1fs at %s", self.record["healthy_after_s"], self.base_url)
        return self

    def _wait_healthy(self, started: float) -> None:
        url = f"http://{self.config.host}:{self.port}{self.config.health_path}"
        deadline = started + self.config.health_timeout_s
        while True:
            code = self.process.poll() if self.process is not None else None
            if code is not None:
                raise ManagedServerError(
                    f"the managed LLM server exited with code {code} before it was healthy; "
                    f"{self.log_path} ends with:\n{_tail(self.log_path)}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=self.config.poll_interval_s + 1).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise ManagedServerError(
                    f"the managed LLM server was not healthy ({url}) within llm_server.health_timeout_s="
                    f"{self.config.health_timeout_s}s; stopped. {self.log_path} ends with:\n"
                    f"{_tail(self.log_path)}"
                )
            time.sleep(self.config.poll_interval_s)

    def _check_model(self) -> None:
        try:
            listed = httpx.get(f"{self.base_url}/models", timeout=10).json()
            names = [str(m.get("id")) for m in listed.get("data", [])]
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise ManagedServerError(
                f"the managed LLM server's {self.base_url}/models is unreadable: {exc}"
            ) from exc
        if self.served_model_name not in names:
            raise ManagedServerError(
                f"the managed LLM server serves {names}, not {self.served_model_name!r} (llm.model or "
                "llm_server.served_model_name); requests would fail."
            )

    # ------------------------------------------------------------------ stop

    def _terminate(self, token: str, group: int | None = None) -> None:
        """SIGTERM the group and every process carrying ``token``; SIGKILL the rest after the timeout."""

        def live() -> list[int]:
            # the leader counts until it is reaped: while it exits, /proc no longer shows its token
            leader = [self.process.pid] if self.process is not None and self.process.poll() is None else []
            return sorted({*leader, *(pid for pid in marked_processes(token) if _alive(pid))})

        for sig in (signal.SIGTERM, signal.SIGKILL):
            if group is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, sig)
            _kill(live(), sig)
            deadline = time.monotonic() + (self.config.stop_timeout_s if sig == signal.SIGTERM else 5.0)
            while live() and time.monotonic() < deadline:
                time.sleep(0.1)
            if not live():
                return
            if sig == signal.SIGTERM:
                logger.warning(
                    "llm server: %s still running %.0fs after SIGTERM; sending SIGKILL",
                    live(), self.config.stop_timeout_s,
                )  # fmt: skip

    def stop(self, reason: str = "run finished") -> dict[str, Any]:
        """Stop the server and everything it started; idempotent.

        Returns:
            The launch record (``exit_code``; ``left_behind``: pids still carrying the token, normally
            ``[]``).

        Raises:
            ManagedServerError: If processes it started survive SIGKILL (after recording them), unless the
                interpreter is exiting.
        """
        with self._lock:
            if self.process is None or self.record.get("stopped"):
                return self.record
            self._restore_sigterm()
            with contextlib.suppress(Exception):
                atexit.unregister(self.stop)
            # start_new_session: the group id is the leader's pid
            self._terminate(self.token, group=self.process.pid)
            left = [pid for pid in marked_processes(self.token) if _alive(pid)]
            self.record.update(
                stopped=_now(), stop_reason=reason, exit_code=self.process.poll(), left_behind=left
            )
            self._write_record()
            if not left:
                (self.log_dir / PID_FILE).unlink(missing_ok=True)
                logger.info("llm server: stopped (%s), exit code %s", reason, self.record["exit_code"])
                return self.record
        message = (
            f"processes {left} of the managed LLM server survive SIGKILL ({reason}); they may hold GPU "
            "memory. "
            f"{self.log_dir / PID_FILE} names them; the next managed run tries again."
        )
        logger.error(message)
        if reason != "interpreter exit":
            raise ManagedServerError(message)
        return self.record

    def _write_record(self) -> None:
        tmp = self.record_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.record, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, self.record_path)

    def _install_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # SIGTERM would end the run without atexit

            def on_sigterm(signum: int, frame: Any) -> None:
                raise SystemExit(128 + signum)  # unwinds: hooks and atexit stop the server

            self._previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)

    def _restore_sigterm(self) -> None:
        if self._previous_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop("failed" if exc[0] is not None else "run finished")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie holds nothing; it only waits to be reaped
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
            return False
    return True
