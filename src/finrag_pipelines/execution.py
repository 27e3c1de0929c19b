"""Where batch work runs: in this process (``local``) or on a Ray cluster (``ray``).

One typed settings group, :class:`ExecutionConfig`, read from a pipeline's ``execution`` parameters, and
:func:`ray_session`, which connects to a cluster (``address``) or starts a local Ray on ``num_cpus`` cores
and shuts down only what it started. The Ray paths themselves live next to the work they scale out:
:func:`finrag_pipelines.embedding.distributed.encode_with_store_ray` and
:func:`finrag_pipelines.llm.distributed.run_chat_batch_ray`.

Kedro-free library module; Ray is imported only when the ``ray`` backend is used.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

logger = logging.getLogger(__name__)


class ExecutionConfig(BaseModel):
    """How a batch job (encoding, LLM calls) runs.

    Attributes:
        backend: ``local`` (this process, the default everywhere) or ``ray`` (Ray Data ``map_batches``
            over an actor pool; each actor holds one encoder or one LLM client).
        num_cpus: Cores of the local Ray started when ``address`` is null (null: all of this machine's).
        num_actors: Actors in the pool (model replicas or LLM clients).
        batch_size: Rows handed to an actor per call (texts to encode, requests to send).
        address: ``null`` starts a local Ray; ``"auto"`` joins the cluster this machine belongs to;
            ``"ray://host:10001"`` connects a Ray client.
        cpus_per_actor: CPUs Ray reserves for each actor.
        gpus_per_actor: GPUs Ray reserves for each actor (1 for one encoder replica per GPU; 0 on CPU).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["local", "ray"]
    num_cpus: int | None = Field(ge=1, description="local Ray cores; null = all")
    num_actors: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    address: str | None = Field(description="null (local Ray), 'auto', or 'ray://host:port'")
    cpus_per_actor: float = Field(gt=0)
    gpus_per_actor: float = Field(ge=0)

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str | None) -> str | None:
        if value is None or value == "auto" or value.startswith("ray://") or ":" in value:
            return value
        raise ValueError(
            f"execution.address must be null (start a local Ray), 'auto' or 'ray://host:port', got {value!r}."
        )

    def num_blocks(self, n_rows: int) -> int:
        """How many actor batches ``n_rows`` rows make."""
        return max(1, math.ceil(n_rows / self.batch_size))

    def dataset(self, ray: Any, columns: dict[str, list[Any]]) -> Any:
        """A Ray dataset of the rows, one block per ``batch_size`` consecutive rows.

        Each actor call then gets exactly one block: the same rows, in the same groups, as the local path's
        chunks of that size (encoders round differently for different batch compositions), and each Ray task
        is one batch, streamed back when it is done (a failure loses only the batches in flight).

        Args:
            ray: The imported ``ray`` module.
            columns: Column name -> values, all of one length.
        """
        import pyarrow as pa

        n_rows = len(next(iter(columns.values())))
        step = self.batch_size
        return ray.data.from_arrow(
            [
                pa.table({name: values[start : start + step] for name, values in columns.items()})
                for start in range(0, n_rows, step)
            ]
        )

    def actor_options(self, ray: Any, n_rows: int) -> dict[str, Any]:
        """Keyword arguments for ``Dataset.map_batches`` that size the actor pool.

        Args:
            ray: The imported ``ray`` module (see :func:`ray_session`).
            n_rows: Rows to process (no more actors are started than there are batches).
        """
        return {
            "compute": ray.data.ActorPoolStrategy(size=min(self.num_actors, self.num_blocks(n_rows))),
            "batch_size": self.batch_size,
            "num_cpus": self.cpus_per_actor,
            "num_gpus": self.gpus_per_actor,
        }


def import_ray() -> Any:
    """Import Ray, or explain how to install it.

    Raises:
        ImportError: When Ray (with Ray Data) is not installed.
    """
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ImportError(
            "execution.backend is 'ray' but Ray Data is not installed; install it with "
            "`pip install -e '.[ray]'` (or `pip install 'ray[data]'`), or set execution.backend: local."
        ) from exc
    return ray


@contextmanager
def ray_session(execution: ExecutionConfig) -> Iterator[Any]:
    """Make sure Ray is initialised for the duration of a block.

    An already initialised Ray (a test fixture, a notebook, a driver started by ``ray job submit``) is used
    as it is and left running. Otherwise Ray is started (``address`` null: locally on ``num_cpus`` cores,
    no dashboard) or connected to (``address`` set), and shut down when the block ends.

    Args:
        execution: The settings.

    Yields:
        The ``ray`` module.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    if execution.address is None:
        start_local_ray(ray, execution.num_cpus)
    else:
        ray.init(address=execution.address, ignore_reinit_error=True, log_to_driver=False)
        logger.info("connected to Ray at %s", execution.address)
    try:
        yield ray
    finally:
        ray.shutdown()


def start_local_ray(ray: Any, num_cpus: int | None, attempts: int = 3) -> None:
    """Start a local Ray (no dashboard), trying again when its node times out during startup.

    Ray waits a fixed 30 s for its raylet; on a busy machine (a laptop building an index, a CI runner)
    that start can time out although nothing is wrong, and a second start usually succeeds. Each failed
    start is shut down and logged before the next one.

    Args:
        ray: The imported ``ray`` module.
        num_cpus: Cores for the local Ray (None: all of this machine's).
        attempts: Starts to try before giving up.

    Raises:
        Exception: Ray's own error, from the last attempt.
    """
    for attempt in range(1, attempts + 1):
        try:
            ray.init(
                num_cpus=num_cpus, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False
            )
        except Exception as exc:  # Ray raises a bare Exception for "node timed out during startup"
            ray.shutdown()
            if attempt == attempts or "timed out during startup" not in str(exc):
                raise
            logger.warning("local Ray did not start (attempt %d of %d): %s; again", attempt, attempts, exc)
            continue
        logger.info("started a local Ray on %s CPUs", num_cpus or "all")
        return
