"""mcq_prep nodes: load and normalise every source, drop duplicates, split, summarise."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from finrag_pipelines.floors import FloorParams, enforce_floor, floor_verdict
from finrag_pipelines.mcq.loaders import LoadResult, SourceSpec, load_source
from finrag_pipelines.mcq.split import SPLITS, deduplicate, split_items
from finrag_pipelines.pipelines.mcq_prep.params import DedupParams, LoadParams, SplitParams

logger = logging.getLogger(__name__)


def load_mcq_items(params: LoadParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read every configured source (the raw-file boundary) into items and rejects."""
    parts = []
    for spec in params.sources:
        columns = spec.columns.model_dump() if spec.columns is not None else None
        part = load_source(SourceSpec(spec.name, spec.kind, spec.path, columns))
        logger.info(
            "mcq_prep: %s: %d items, %d rejects %s",
            spec.name,
            len(part.items),
            len(part.rejects),
            part.rejects["reason"].value_counts().to_dict(),
        )
        parts.append(part)
    result = LoadResult.concat(parts)
    dup_ids = result.items["item_id"][result.items["item_id"].duplicated()]
    if len(dup_ids):
        raise ValueError(f"mcq_prep: duplicated item_id {dup_ids.iloc[0]!r}; give each source a unique name")
    return result.items, result.rejects


def deduplicate_mcq_items(mcq_items: pd.DataFrame, params: DedupParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop duplicates across sources (question + options), reporting each dropped item."""
    kept, dropped = deduplicate(mcq_items, params.source_order)
    logger.info(
        "mcq_prep: dropped %d duplicates (%d with a different answer) of %d items",
        len(dropped),
        int((~dropped["same_answer"]).sum()),
        len(mcq_items),
    )
    return kept, dropped


def split_mcq_items(mcq_unique: pd.DataFrame, params: SplitParams) -> pd.DataFrame:
    """Assign each item to sft_train, rl_train or eval by a seeded hash of its normalised question
    (evaluation-only sources, and items sharing a question with them, to eval)."""
    table = split_items(mcq_unique, params.fractions, params.seed, params.eval_only_sources)
    logger.info("mcq_prep: split sizes %s", table["split"].value_counts().to_dict())
    return table


def summarise_mcq_prep(
    mcq_items: pd.DataFrame,
    mcq_rejects: pd.DataFrame,
    mcq_duplicates: pd.DataFrame,
    mcq_splits: pd.DataFrame,
    floor: FloorParams,
) -> dict[str, Any]:
    """Counts per source, rejects by reason, duplicates, split sizes by source and kind, and the yield against
    ``mcq_prep.floor`` (usable unique items per row read)."""
    reasons = {str(k): int(v) for k, v in mcq_rejects["reason"].value_counts().items()}
    reasons["duplicate"] = len(mcq_duplicates)
    verdict = floor_verdict(
        "mcq_prep",
        len(mcq_splits),
        len(mcq_items) + len(mcq_rejects),
        floor,
        reasons,
        unit="rows read",
        evidence=["mcq_prep_stats", "mcq_rejects", "mcq_duplicates"],
        hint="Check mcq_prep.load.sources (paths and kinds) against the files.",
    )
    return {
        "items_per_source": mcq_items["source"].value_counts().sort_index().to_dict(),
        "rejects_per_source_and_reason": {
            src: grp["reason"].value_counts().sort_index().to_dict()
            for src, grp in mcq_rejects.groupby("source")
        },
        "duplicates_dropped": len(mcq_duplicates),
        "duplicates_with_different_answer": int((~mcq_duplicates["same_answer"].astype(bool)).sum()),
        "duplicates_per_source": mcq_duplicates["source"].value_counts().sort_index().to_dict(),
        "split_sizes": {s: int((mcq_splits["split"] == s).sum()) for s in SPLITS},
        "split_by_kind": {
            s: mcq_splits.loc[mcq_splits["split"] == s, "kind"].value_counts().sort_index().to_dict()
            for s in SPLITS
        },
        "with_explanation": {
            s: int(mcq_splits.loc[mcq_splits["split"] == s, "explanation"].notna().sum()) for s in SPLITS
        },
        "floor": verdict,
    }


def check_mcq_prep_floor(mcq_prep_stats: dict[str, Any]) -> dict[str, Any]:
    """Fail the run when too few usable items came out of the sources (the stats, rejects and duplicates
    are saved first)."""
    return enforce_floor(mcq_prep_stats["floor"])


def publish_mcq_splits(mcq_split_draft: pd.DataFrame, floor_check: dict[str, Any]) -> pd.DataFrame:
    """The split table sft, rl and mcq_evaluation read, written only once the floor held (``floor_check``)."""
    return mcq_split_draft
