"""Yield floors: a data-producing stage that keeps nothing, or too small a share, fails instead of passing.

An endpoint that answers every request with the same text, a loader that rejects every row, a filter that
drops everything: each still "completes" and hands an empty or collapsed table downstream. Every
data-producing stage therefore states a floor in its parameters (``<pipeline>.floor``: ``min_kept``,
``min_share``) and checks it in two steps, so the evidence is on disk before the run stops:

1. its report node adds :func:`floor_verdict` (kept, total, share, the floor, the top drop reasons) to the
   report it saves anyway;
2. a node :func:`enforce_floor` reads that report and raises :class:`FloorError` when the floor is not met;
   the dataset the next stage reads is produced only after it (it takes the check's output as an input).

Kedro-free library module.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from finrag_pipelines.config import StrictModel

logger = logging.getLogger(__name__)

TOP_REASONS = 5


class FloorError(RuntimeError):
    """A stage kept fewer rows than its floor allows."""


class FloorParams(StrictModel):
    """The least a stage must keep: at least ``min_kept`` rows and at least ``min_share`` of its input.

    Attributes:
        min_kept: Fewest rows kept (1: a stage that keeps nothing fails).
        min_share: Smallest kept / total share, between 0 and 1 (0: no share floor).
    """

    min_kept: int = Field(ge=0, description="fewest rows the stage must keep")
    min_share: float = Field(ge=0.0, le=1.0, description="smallest kept / total share")


def floor_verdict(
    stage: str,
    kept: int,
    total: int,
    floor: FloorParams,
    drop_reasons: Mapping[str, int],
    *,
    unit: str,
    evidence: Sequence[str],
    hint: str,
) -> dict[str, Any]:
    """Measure a stage's yield against its floor (JSON-ready, for the stage's report).

    Args:
        stage: The stage and its parameter group, e.g. ``"query_distill"`` (the floor is ``<stage>.floor``).
        kept: Rows the stage keeps.
        total: Rows it started from.
        floor: The floor.
        drop_reasons: Reason -> rows dropped for it (the largest are named in the message).
        unit: What a row is, e.g. ``"documents"``.
        evidence: The datasets that hold the dropped rows and their reasons.
        hint: What usually causes a low yield at this stage and what to check.

    Returns:
        ``stage, unit, kept, total, share, min_kept, min_share, passed, top_drop_reasons, message``.

    Raises:
        ValueError: If the counts are inconsistent.
    """
    if kept < 0 or total < 0 or kept > total:
        raise ValueError(f"{stage}: inconsistent yield counts, {kept} kept out of {total} {unit}")
    share = kept / total if total else 0.0
    reasons = sorted(
        ((str(k), int(v)) for k, v in drop_reasons.items() if int(v) > 0), key=lambda kv: (-kv[1], kv[0])
    )
    top = dict(reasons[:TOP_REASONS])
    passed = kept >= floor.min_kept and (total == 0 or share >= floor.min_share)
    shown = ", ".join(f"{k} {v}" for k, v in top.items()) or "none recorded"
    message = (
        f"{stage} kept {kept} of {total} {unit} ({share:.1%}); its floor is {stage}.floor.min_kept="
        f"{floor.min_kept} and min_share={floor.min_share:.0%}. Top drop reasons: {shown}."
    )
    if not passed:
        message += (
            f" The dropped rows and their reasons are saved in {', '.join(evidence)}. {hint} Fix the cause;"
            f" lower {stage}.floor only if this yield is expected."
        )
    return {
        "stage": stage,
        "unit": unit,
        "kept": int(kept),
        "total": int(total),
        "share": round(share, 6),
        "min_kept": floor.min_kept,
        "min_share": floor.min_share,
        "passed": passed,
        "top_drop_reasons": top,
        "message": message,
    }


def enforce_floor(verdict: Mapping[str, Any]) -> dict[str, Any]:
    """Stop the run when a stage is below its floor; else log its yield and pass the verdict on.

    Args:
        verdict: A :func:`floor_verdict` (usually read back from the stage's saved report).

    Returns:
        The verdict, as a plain dict (an ordering input for the node that publishes the stage's data).

    Raises:
        FloorError: With the verdict's message (stage, kept/total, the floor, top drop reasons,
            where to look).
    """
    if not verdict["passed"]:
        raise FloorError(verdict["message"])
    logger.info("%s", verdict["message"])
    return dict(verdict)
