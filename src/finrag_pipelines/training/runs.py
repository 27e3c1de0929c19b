"""Run bookkeeping shared by every trainer (ms-swift, verl SFT, verl GRPO).

* :class:`TrainingError`: a trainer or export subprocess failed, or a run cannot start on this machine.
* :func:`run_logged`: run a command, stream its output into a log file and the Python logger (read with a
  trainer's :class:`LogFormat`), show progress, raise with the last log lines when it fails.
* :func:`file_sha256`, :func:`data_hash`, :func:`base_model_fingerprint`, :func:`config_hash`,
  :func:`package_versions`: what a run was trained from.
* :func:`write_manifest`, :func:`read_manifest`, :func:`is_up_to_date`: the run's ``manifest.json``; paths
  in it are written relative to the project root (:mod:`finrag_pipelines.project_paths`), so it carries
  no absolute paths of the machine that wrote it.
* :class:`TrainingRun`: all of it for one run in a work folder (start, finish, skip when up to date).
"""

from __future__ import annotations

import collections
import datetime as _dt
import hashlib
import importlib.metadata
import json
import logging
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finrag_pipelines.project_paths import is_inside, portable_argv, portable_values
from finrag_pipelines.training.staging import write_bytes_if_changed
from finrag_pipelines.training.trainer_config import TrainerConfig

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
TRAIN_LOG_NAME = "train.log"
COPIED_MANIFEST_NAME = "training_manifest.json"
_TAIL_LINES = 30


class TrainingError(RuntimeError):
    """A training or export subprocess failed, or the run cannot start on this machine."""

    def __init__(
        self,
        message: str,
        *,
        returncode: int | None = None,
        argv: Sequence[str] = (),
        tail: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.argv = list(argv)
        self.tail = list(tail)


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (manifest timestamps)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def shell_join(argv: Sequence[Any]) -> str:
    """A command as one shell-quoted line (for logs and error messages)."""
    return shlex.join(str(a) for a in argv)


# ------------------------------------------------------------------------------------------------ running


def _no_steps(line: str) -> dict[str, Any] | None:
    return None


def _describe_any_step(metrics: Mapping[str, Any]) -> str:
    total = f"/{metrics['max_steps']}" if "max_steps" in metrics else ""
    return f"step {metrics['step']}{total}"


@dataclass(frozen=True)
class LogFormat:
    """How :func:`run_logged` reads one trainer's console output.

    Attributes:
        label: Prefix of the trainer's lines in the Python log, and the progress bar's name.
        parse_step: A training-metrics line → a dict with ``step`` (and ``max_steps`` when known);
            None for any other line.
        describe_step: Such a dict → the one-line INFO message logged for it.
        redraw_prefixes: Progress-bar redraws to leave out of the log tail (tqdm ``it/s]`` always are).
        hints: Line substring → why it matters; such lines are logged at WARNING with the hint.
        notable: Line substrings logged at INFO (the rest goes to DEBUG; errors to WARNING).
    """

    label: str
    parse_step: Callable[[str], dict[str, Any] | None] = _no_steps
    describe_step: Callable[[Mapping[str, Any]], str] = _describe_any_step
    redraw_prefixes: tuple[str, ...] = ()
    hints: Mapping[str, str] = field(default_factory=dict)
    notable: tuple[str, ...] = ()


PLAIN_LOG = LogFormat(label="trainer")


def run_logged(
    argv: Sequence[str],
    env: Mapping[str, str],
    log_path: str | Path,
    *,
    cwd: str | Path | None = None,
    progress: bool = True,
    log_format: LogFormat = PLAIN_LOG,
) -> None:
    """Run a command, streaming its output line by line into ``log_path`` and the logger.

    Training metrics lines (``log_format.parse_step``) become INFO messages and move a tqdm bar; errors
    are logged at WARNING, the format's notable lines at INFO, the rest at DEBUG.

    Args:
        argv: The command.
        env: Variables added to the current environment.
        log_path: Log file (appended to; its folder is created).
        cwd: Working folder.
        progress: Show a tqdm bar for training steps (when the step lines say how many there are).
        log_format: How to read the trainer's output.

    Raises:
        TrainingError: On a non-zero exit, with the exit code, the command and the last log lines.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    reader = _LineReader(log_format, tail, progress)
    logger.info("running: %s", shell_join(argv))
    started = time.monotonic()
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"# {utc_now()} env {json.dumps(dict(env), ensure_ascii=False)}\n# $ {shell_join(argv)}\n")
        log.flush()
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=full_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
            )
        except OSError as exc:
            raise TrainingError(f"could not start {argv[0]!r}: {exc}", argv=argv) from exc
        assert proc.stdout is not None
        try:
            for raw in proc.stdout:
                log.write(raw)
                log.flush()
                reader.feed(raw)
        finally:
            returncode = proc.wait()
            reader.close()
        log.write(f"# {utc_now()} exit {returncode} after {time.monotonic() - started:.1f}s\n")
    if returncode != 0:
        last = "\n".join(tail)
        raise TrainingError(
            f"command failed with exit code {returncode}: {shell_join(argv)}\n"
            f"full log: {log_path}\nlast {len(tail)} lines:\n{last}",
            returncode=returncode,
            argv=argv,
            tail=list(tail),
        )
    logger.info("finished in %.1fs: %s", time.monotonic() - started, argv[:2])


class _LineReader:
    """Sorts a trainer's output lines into the log tail, the Python log and the progress bar."""

    def __init__(self, log_format: LogFormat, tail: collections.deque[str], progress: bool) -> None:
        self.format, self.tail, self.progress = log_format, tail, progress
        self.bar: Any = None

    def feed(self, raw: str) -> None:
        label = self.format.label
        # tqdm redraws with \r: keep the last non-empty segment of each redraw run
        for segment in raw.rstrip("\n").split("\r"):
            text = segment.strip()
            if not text:
                continue
            metrics = self.format.parse_step(text)
            if metrics is not None:
                self.tail.append(text)
                logger.info("%s", self.format.describe_step(metrics))
                self._advance(metrics)
                continue
            if text.startswith(self.format.redraw_prefixes) or "it/s]" in text or "s/it]" in text:
                continue  # tqdm redraws
            self.tail.append(text)
            hint = next((why for marker, why in self.format.hints.items() if marker in text), None)
            if "Error" in text or "Traceback" in text or "[ERROR" in text:
                logger.warning("%s: %s", label, text)
            elif hint is not None:
                logger.warning("%s: %s (%s)", label, text, hint)
            elif any(marker in text for marker in self.format.notable):
                logger.info("%s: %s", label, text)
            else:
                logger.debug("%s: %s", label, text)

    def _advance(self, metrics: Mapping[str, Any]) -> None:
        if not self.progress or "max_steps" not in metrics:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=metrics["max_steps"], desc=self.format.label, unit="step")
        self.bar.update(max(0, metrics["step"] - self.bar.n))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------------------------------------------- hashes


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's full content."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def data_hash(data_files: Mapping[str, str | Path | None]) -> str:
    """One hash over named data files (e.g. ``{"train": ..., "dev": None}``) by content."""
    parts = {name: (file_sha256(p) if p is not None else None) for name, p in sorted(data_files.items())}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def base_model_fingerprint(model_dir: str | Path) -> str:
    """Content hash of a model folder (config, tokenizer, weights), as encoders use it."""
    from finrag_pipelines.embedding.fingerprint import hash_model_folder

    return hash_model_folder(Path(model_dir))


def config_hash(config: TrainerConfig, base_model_fingerprint: str | None = None) -> str:
    """Hash of what a trainer config says shapes the run (:meth:`TrainerConfig.hash_fields`) and of the
    base model."""
    payload = {**config.hash_fields(), "base_model": base_model_fingerprint}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def package_versions(names: Sequence[str]) -> dict[str, str | None]:
    """Installed versions of the named packages (None when one is not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


# ---------------------------------------------------------------------------------------------- manifests


def write_manifest(
    path: str | Path,
    *,
    argv: Sequence[str],
    env_knobs: Mapping[str, str],
    data_files: Mapping[str, str | Path | None],
    base_model: str | Path,
    started: str,
    finished: str | None,
    output: str | Path | None,
    config: TrainerConfig | None = None,
    checkpoint: str | Path | None = None,
    status: str = "finished",
    metrics: Mapping[str, Any] | None = None,
    fingerprint: str | None = None,
    root: str | Path | None = None,
    kernels: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a JSON manifest of a training run (atomically) and return it.

    Records the trainer, the command, env knobs, package versions (``config.packages``), data file sha256s
    and their combined ``data_hash``, the base model fingerprint, ``config_hash``, timestamps, checkpoint,
    output and the last logged metrics. When the manifest lies under the project root ``root`` (default:
    the current folder), every path under it is written relative to it and ``project_root`` says where
    the root is, seen from the manifest's folder; otherwise ``project_root`` is null and paths stay as given.

    Args:
        fingerprint: The base model's :func:`base_model_fingerprint`, when already computed.
        kernels: The attention kernel and Liger setting the run uses, with reasons
            (:meth:`~finrag_pipelines.kernels.KernelChoice.to_dict`), or ``None`` when not decided here.
    """
    path = Path(path)
    fingerprint = fingerprint or base_model_fingerprint(base_model)
    manifest: dict[str, Any] = {
        "status": status,
        "trainer": type(config).__name__ if config is not None else None,
        "argv": [str(a) for a in argv],
        "env_knobs": dict(env_knobs),
        "versions": package_versions(config.packages if config is not None else TrainerConfig.packages),
        "data_files": {
            name: ({"path": str(p), "sha256": file_sha256(p)} if p is not None else None)
            for name, p in sorted(data_files.items())
        },
        "data_hash": data_hash(data_files),
        "base_model": {"path": str(base_model), "fingerprint": fingerprint},
        "config": config.to_dict() if config is not None else None,
        "config_hash": config_hash(config, fingerprint) if config is not None else None,
        "started": started,
        "finished": finished,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "output": str(output) if output is not None else None,
        "metrics": dict(metrics or {}),
        "kernels": dict(kernels) if kernels is not None else None,
        "project_root": None,
    }
    project = Path.cwd() if root is None else Path(root)
    if is_inside(path.parent, project):
        manifest = portable_values(manifest, project)
        manifest["argv"] = portable_argv(manifest["argv"], project)
        manifest["project_root"] = os.path.relpath(project.resolve(), path.parent.resolve())
    _write_json(manifest, path)
    return manifest


def _write_json(data: Mapping[str, Any], path: Path) -> None:
    write_bytes_if_changed((json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode("utf-8"), path)


def read_manifest(path: str | Path) -> dict[str, Any] | None:
    """A manifest, or None when the file is missing or not JSON."""
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def recorded_path(manifest_path: str | Path, manifest: Mapping[str, Any], value: str) -> Path:
    """A path as a manifest recorded it, made usable from here: relative paths are read against the
    manifest's ``project_root`` (older manifests: against the manifest's folder)."""
    path = Path(value)
    if path.is_absolute():
        return path
    return Path(manifest_path).parent / (manifest.get("project_root") or ".") / path


def copy_manifest(manifest_path: str | Path, folder: str | Path) -> Path:
    """Put a run's manifest inside its model folder as ``training_manifest.json`` (not hashed into encoder
    fingerprints), with ``project_root`` re-pointed from there."""
    manifest_path, folder = Path(manifest_path), Path(folder)
    manifest = read_manifest(manifest_path)
    if manifest is None:
        raise FileNotFoundError(f"{manifest_path} is missing or not JSON; the run did not record itself.")
    if manifest.get("project_root"):
        root = (manifest_path.parent / manifest["project_root"]).resolve()
        manifest["project_root"] = os.path.relpath(root, folder.resolve())
    target = folder / COPIED_MANIFEST_NAME
    _write_json(manifest, target)
    return target


def has_model(folder: Path) -> bool:
    """A finished HF model folder: ``config.json`` and safetensors weights."""
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def is_up_to_date(manifest_path: str | Path, data_hash: str, config_hash: str) -> bool:
    """True when a finished run with the same data and config hashes left an existing model."""
    manifest = read_manifest(manifest_path)
    if manifest is None or manifest.get("status") != "finished" or not manifest.get("output"):
        return False
    if manifest.get("data_hash") != data_hash or manifest.get("config_hash") != config_hash:
        return False
    return has_model(recorded_path(manifest_path, manifest, manifest["output"]))


# ------------------------------------------------------------------------------------------------ one run


class TrainingRun:
    """The bookkeeping of one training run in ``work_dir``: ``manifest.json``, ``train.log``, the data and
    config hashes (the base model is fingerprinted once), and whether an identical run already finished.

    Args:
        work_dir: The run's folder (manifest and log; trainers keep their checkpoints below it).
        config: The trainer settings.
        data_files: Named data files, hashed by content (``None`` for an absent one).
        base_model: The model folder training starts from.
        root: The project root manifest paths are written relative to (default: the current folder).
    """

    def __init__(
        self,
        work_dir: str | Path,
        *,
        config: TrainerConfig,
        data_files: Mapping[str, str | Path | None],
        base_model: str | Path,
        root: str | Path | None = None,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.config = config
        self.data_files = dict(data_files)
        self.base_model = base_model
        self.root = root
        self.manifest_path = self.work_dir / MANIFEST_NAME
        self.log_path = self.work_dir / TRAIN_LOG_NAME
        self.fingerprint = base_model_fingerprint(base_model)
        self.data_hash = data_hash(self.data_files)
        self.config_hash = config_hash(config, self.fingerprint)
        self._argv: list[str] = []
        self._env: dict[str, str] = {}
        self._started: str | None = None
        self._kernels: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        """``<data hash>-<config hash>`` (10 characters each): the name of this run's checkpoint folder, so
        a resume only ever picks up a checkpoint of the same data and config."""
        return f"{self.data_hash[:10]}-{self.config_hash[:10]}"

    def is_up_to_date(self, model_dir: str | Path) -> bool:
        """A finished run of the same data, config and base model left ``model_dir``."""
        return is_up_to_date(self.manifest_path, self.data_hash, self.config_hash) and has_model(
            Path(model_dir)
        )

    def previous(self) -> dict[str, Any] | None:
        """The manifest on disk when it records this same data and config (finished or not)."""
        manifest = read_manifest(self.manifest_path)
        if (
            manifest
            and manifest.get("data_hash") == self.data_hash
            and manifest.get("config_hash") == self.config_hash
        ):
            return manifest
        return None

    def recorded_path(self, manifest: Mapping[str, Any], key: str) -> Path | None:
        """The path a manifest recorded under ``key`` (e.g. ``checkpoint``), or None."""
        value = manifest.get(key)
        return recorded_path(self.manifest_path, manifest, value) if value else None

    def start(
        self, argv: Sequence[str], env: Mapping[str, str], *, kernels: Mapping[str, Any] | None = None
    ) -> None:
        """Record the run as running, with its command (and the kernels it runs with, when decided)."""
        self._argv, self._env, self._started = [str(a) for a in argv], dict(env), utc_now()
        self._kernels = dict(kernels) if kernels is not None else None
        self._write(status="running", finished=None, output=None)

    def finish(
        self, output: str | Path, *, checkpoint: str | Path, metrics: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Record the run as finished and copy the manifest into the model folder ``output``."""
        manifest = self._write(
            status="finished",
            finished=utc_now(),
            output=Path(output).resolve(),
            checkpoint=Path(checkpoint).resolve(),
            metrics=metrics,
        )
        copy_manifest(self.manifest_path, output)
        return manifest

    def _write(self, **fields: Any) -> dict[str, Any]:
        if self._started is None:
            raise RuntimeError("TrainingRun.start() must come before finish()")
        return write_manifest(
            self.manifest_path,
            argv=self._argv,
            env_knobs=self._env,
            data_files=self.data_files,
            base_model=self.base_model,
            started=self._started,
            config=self.config,
            fingerprint=self.fingerprint,
            root=self.root,
            kernels=self._kernels,
            **fields,
        )
