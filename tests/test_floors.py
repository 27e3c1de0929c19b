"""Yield floors: the verdict a stage's report carries and the check that stops the run."""

from __future__ import annotations

import json

import pytest

from finrag_pipelines.floors import FloorError, FloorParams, enforce_floor, floor_verdict

FLOOR = FloorParams(min_kept=2, min_share=0.5)


def verdict(kept: int, total: int, reasons: dict[str, int] | None = None) -> dict:
    return floor_verdict(
        "stage_x",
        kept,
        total,
        FLOOR,
        reasons or {},
        unit="rows",
        evidence=["audit_x"],
        hint="Check the input.",
    )


def test_a_stage_passes_at_its_floor_and_fails_below_either_bound() -> None:
    assert verdict(2, 4)["passed"] and enforce_floor(verdict(2, 4))["share"] == 0.5
    assert not verdict(1, 2)["passed"]  # share 50% but fewer than min_kept
    assert not verdict(4, 9)["passed"]  # enough rows, share 44%
    assert not verdict(0, 0)["passed"]  # nothing in, nothing kept
    assert floor_verdict(
        "s", 0, 0, FloorParams(min_kept=0, min_share=0.9), {}, unit="rows", evidence=[], hint=""
    )["passed"]


def test_the_failure_names_stage_counts_floor_top_reasons_and_evidence() -> None:
    reasons = {"exact_duplicate": 138, "round_trip_miss": 1, "a": 0, "b": 3, "c": 2, "d": 2, "e": 1}
    result = verdict(0, 139, reasons)
    assert json.loads(json.dumps(result)) == result  # JSON-ready, for the stage's report
    assert list(result["top_drop_reasons"]) == [
        "exact_duplicate",
        "b",
        "c",
        "d",
        "e",
    ]  # 5 largest, 0 left out
    with pytest.raises(FloorError) as caught:
        enforce_floor(result)
    message = str(caught.value)
    assert message.startswith(
        "stage_x kept 0 of 139 rows (0.0%); its floor is stage_x.floor.min_kept=2 and min_share=50%"
    )
    assert (
        "Top drop reasons: exact_duplicate 138, b 3" in message
        and "saved in audit_x. Check the input." in message
    )


def test_inconsistent_counts_and_bad_params_are_rejected() -> None:
    with pytest.raises(ValueError, match="inconsistent"):
        verdict(5, 4)
    with pytest.raises(ValueError):
        FloorParams(min_kept=1, min_share=1.5)
    with pytest.raises(ValueError):
        FloorParams(min_kept=1, min_share=0.5, extra=1)
