"""Cross-source dedup and the one seeded sft_train / rl_train / eval split.

Duplicates: two items are the same when their normalised question *and* normalised option texts
match (NFKC, lower case, whitespace, punctuation and symbols removed). The kept copy is chosen by this
precedence, documented in ``parameters_mcq_prep.yml``: (1) an item with an explanation beats one
without (it can serve as an SFT target), (2) then the configured source order, (3) then file order.

Split: by a seeded SHA-256 of the normalised *question* alone, so an item's split never depends on
other rows (adding or reordering rows moves nothing) and near-duplicates that differ only in their
options land in the same split.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping, Sequence

import pandas as pd

from finrag_pipelines.mcq.format import parse_options

SPLITS: tuple[str, ...] = ("sft_train", "rl_train", "eval")
DUPLICATE_COLUMNS: tuple[str, ...] = ("item_id", "source", "kept_item_id", "kept_source", "same_answer")

_DROP = re.compile(r"[\s_]+")


def normalise_text(text: str) -> str:
    """NFKC, lower case, without whitespace, punctuation or symbols (``"A股，涨了！"`` → ``"a股涨了"``)."""
    value = unicodedata.normalize("NFKC", text or "").lower()
    value = "".join(ch for ch in value if unicodedata.category(ch)[0] not in ("P", "S", "Z", "C"))
    return _DROP.sub("", value)


def question_key(question: str) -> str:
    """Hash of the normalised question (the split unit)."""
    return hashlib.sha256(normalise_text(question).encode("utf-8")).hexdigest()[:20]


def item_key(question: str, options: str | Mapping[str, str]) -> str:
    """Hash of the normalised question plus the normalised option texts in letter order (the dedup unit)."""
    opts = parse_options(options)
    joined = (
        normalise_text(question) + "\x1f" + "\x1e".join(normalise_text(t) for _, t in sorted(opts.items()))
    )
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:20]


def deduplicate(items: pd.DataFrame, source_order: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop duplicate items, keeping one by the module's precedence.

    Args:
        items: Loader output (``ITEM_COLUMNS``).
        source_order: Source names, most preferred first; every source in ``items`` must be listed.

    Returns:
        ``(kept, dropped)``: kept items in their original order, and one row per dropped duplicate
        (:data:`DUPLICATE_COLUMNS`) saying which item it duplicates and whether the answers agree.

    Raises:
        ValueError: If a source of ``items`` is missing from ``source_order``.
    """
    unknown = sorted(set(items["source"]) - set(source_order))
    if unknown:
        raise ValueError(f"sources {unknown} are not in dedup.source_order {list(source_order)}; add them")
    table = items.reset_index(drop=True).copy()
    rank = {name: i for i, name in enumerate(source_order)}
    table["_key"] = [item_key(q, o) for q, o in zip(table["question"], table["options"])]
    table["_no_expl"] = table["explanation"].isna().astype(int)
    table["_src"] = table["source"].map(rank)
    table["_pos"] = range(len(table))
    ordered = table.sort_values(["_key", "_no_expl", "_src", "_pos"], kind="stable")
    first = ordered.drop_duplicates("_key", keep="first").set_index("_key")
    dup = ordered[ordered.duplicated("_key", keep="first")]
    dropped = pd.DataFrame(
        {
            "item_id": dup["item_id"].to_numpy(),
            "source": dup["source"].to_numpy(),
            "kept_item_id": first.loc[dup["_key"], "item_id"].to_numpy(),
            "kept_source": first.loc[dup["_key"], "source"].to_numpy(),
            "same_answer": (first.loc[dup["_key"], "answer"].to_numpy() == dup["answer"].to_numpy()),
        },
        columns=list(DUPLICATE_COLUMNS),
    )
    kept = table[table["item_id"].isin(set(first["item_id"]))].sort_values("_pos")
    return kept.drop(columns=["_key", "_no_expl", "_src", "_pos"]).reset_index(drop=True), dropped


def assign_split(question: str, fractions: Mapping[str, float], seed: int) -> str:
    """``sft_train``, ``rl_train`` or ``eval`` from a seeded hash of the normalised question.

    Raises:
        ValueError: If ``fractions`` does not give exactly :data:`SPLITS` summing to 1.
    """
    check_fractions(fractions)
    digest = hashlib.sha256(f"{seed}\x1f{normalise_text(question)}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for name in SPLITS:
        edge += fractions[name]
        if u < edge:
            return name
    return SPLITS[-1]


def check_fractions(fractions: Mapping[str, float]) -> None:
    """Raise unless ``fractions`` names exactly :data:`SPLITS`, each in [0, 1], summing to 1."""
    if set(fractions) != set(SPLITS) or any(not 0 <= float(v) <= 1 for v in fractions.values()):
        raise ValueError(f"split fractions must give {list(SPLITS)} in [0, 1], got {dict(fractions)}")
    if abs(sum(float(v) for v in fractions.values()) - 1.0) > 1e-9:
        raise ValueError(
            f"split fractions must sum to 1, got {dict(fractions)} (sum {sum(fractions.values())})"
        )


def split_items(
    items: pd.DataFrame, fractions: Mapping[str, float], seed: int, eval_only_sources: Sequence[str] = ()
) -> pd.DataFrame:
    """``items`` with ``question_key`` and ``split`` columns added.

    Items of ``eval_only_sources`` (benchmarks never trained on), and every item sharing a normalised question
    with one of them, go to ``eval`` whatever their hash says.

    Raises:
        ValueError: If an evaluation-only source has no item (a misspelt name would otherwise leak nothing
            into eval and everything into training).
    """
    check_fractions(fractions)
    absent = sorted(set(eval_only_sources) - set(items["source"]))
    if absent:
        loaded = sorted(set(items["source"]))
        raise ValueError(f"eval_only_sources {absent} have no items; loaded sources are {loaded}")
    out = items.copy()
    out["question_key"] = [question_key(q) for q in out["question"]]
    out["split"] = [assign_split(q, fractions, seed) for q in out["question"]]
    held = set(out.loc[out["source"].isin(list(eval_only_sources)), "question_key"])
    out.loc[out["question_key"].isin(held), "split"] = "eval"
    return out


def holdout_slice(keys: Sequence[str], size: int, seed: int) -> list[bool]:
    """Mark the ``size`` keys with the smallest seeded hash: a stable validation slice
    (``True`` = held out)."""
    ranks = sorted(
        range(len(keys)), key=lambda i: hashlib.sha256(f"{seed}\x1fholdout\x1f{keys[i]}".encode()).hexdigest()
    )
    chosen = set(ranks[: max(0, min(size, len(keys)))])
    return [i in chosen for i in range(len(keys))]
