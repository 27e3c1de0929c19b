"""The local-Ray start: a node that times out during startup is started again, anything else is raised."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from finrag_pipelines.execution import start_local_ray

TIMED_OUT = Exception("The current node timed out during startup. This could happen because ...")


class FakeRay:
    """Records ``init``/``shutdown`` calls; ``init`` raises the scripted errors in turn, then succeeds."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls: list[tuple[str, Any]] = []

    def init(self, **kwargs: Any) -> None:
        self.calls.append(("init", kwargs["num_cpus"]))
        if self.errors:
            raise self.errors.pop(0)

    def shutdown(self) -> None:
        self.calls.append(("shutdown", None))


def test_a_startup_timeout_is_shut_down_logged_and_started_again(caplog: pytest.LogCaptureFixture) -> None:
    ray = FakeRay(TIMED_OUT)
    with caplog.at_level(logging.WARNING, logger="finrag_pipelines.execution"):
        start_local_ray(ray, num_cpus=2)
    assert ray.calls == [("init", 2), ("shutdown", None), ("init", 2)]
    assert "attempt 1 of 3" in caplog.text


def test_the_last_timeout_is_raised() -> None:
    ray = FakeRay(TIMED_OUT, TIMED_OUT)
    with pytest.raises(Exception, match="timed out during startup"):
        start_local_ray(ray, num_cpus=None, attempts=2)
    assert [name for name, _ in ray.calls] == ["init", "shutdown", "init", "shutdown"]


def test_other_errors_are_raised_at_once() -> None:
    ray = FakeRay(ValueError("num_cpus must be positive"))
    with pytest.raises(ValueError, match="num_cpus"):
        start_local_ray(ray, num_cpus=0)
    assert [name for name, _ in ray.calls] == ["init", "shutdown"]
