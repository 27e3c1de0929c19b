"""mcq_prep on the real bundled MCQ files with a real SequentialRunner and catalog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from kedro_datasets.pandas import CSVDataset, ParquetDataset

from finrag_pipelines.floors import FloorError, FloorParams
from finrag_pipelines.pipelines.mcq_prep import create_pipeline
from finrag_pipelines.pipelines.mcq_prep.params import DedupParams, LoadParams, SplitParams

RAW = Path(__file__).resolve().parents[3] / "data" / "01_raw" / "mcq"
FRACTIONS = {"sft_train": 0.6, "rl_train": 0.3, "eval": 0.1}


def make_catalog(tmp_path: Path, sources: list[dict]) -> DataCatalog:
    catalog = DataCatalog(
        {
            "mcq_items": ParquetDataset(filepath=str(tmp_path / "mcq_items.parquet")),
            "mcq_rejects": CSVDataset(filepath=str(tmp_path / "mcq_rejects.csv"), save_args={"index": False}),
            "mcq_duplicates": CSVDataset(
                filepath=str(tmp_path / "mcq_duplicates.csv"), save_args={"index": False}
            ),
            "mcq_splits": ParquetDataset(filepath=str(tmp_path / "mcq_splits.parquet")),
            "mcq_prep_stats": JSONDataset(filepath=str(tmp_path / "mcq_prep_stats.json")),
        }
    )
    catalog["params:mcq_prep.load"] = LoadParams(sources=sources)
    catalog["params:mcq_prep.dedup"] = DedupParams(source_order=[s["name"] for s in sources])
    catalog["params:mcq_prep.split"] = SplitParams(seed=11, fractions=FRACTIONS)
    catalog["params:mcq_prep.floor"] = FloorParams(min_kept=1, min_share=0.2)
    return catalog


def test_pipeline_on_bundled_files(tmp_path):
    sources = [
        {"name": "cflue", "kind": "cflue", "path": str(RAW / "cflue" / "knowledge.json")},
        {"name": "fin_eva_sufe", "kind": "fin_eva_sufe", "path": str(RAW / "fin_eva" / "SUFE")},
        {"name": "fin_eva_ant", "kind": "fin_eva_ant", "path": str(RAW / "fin_eva" / "Ant")},
        {
            "name": "agentar",
            "kind": "chat_jsonl",
            "path": str(Path(__file__).parents[2] / "mcq" / "fixtures" / "agentar_chat.jsonl"),
        },
    ]
    catalog = make_catalog(tmp_path, sources)
    SequentialRunner().run(create_pipeline(), catalog)

    items = catalog.load("mcq_items")
    rejects = catalog.load("mcq_rejects")
    splits = catalog.load("mcq_splits")
    stats = json.loads((tmp_path / "mcq_prep_stats.json").read_text(encoding="utf-8"))
    assert all(stats["items_per_source"][s] > 0 for s in ("cflue", "fin_eva_sufe", "fin_eva_ant", "agentar"))
    assert stats["rejects_per_source_and_reason"]["fin_eva_ant"]["no_options"] > 0
    assert rejects[["file", "line", "reason"]].notna().all().all()
    dropped = catalog.load("mcq_duplicates")
    assert len(splits) == len(items) - len(dropped) == sum(stats["split_sizes"].values())
    assert splits["item_id"].is_unique
    # disjoint by question: a normalised question lives in exactly one split
    assert (splits.groupby("question_key")["split"].nunique() == 1).all()
    assert set(splits["split"]) == {"sft_train", "rl_train", "eval"}
    assert stats["floor"]["passed"] and stats["floor"]["kept"] == len(splits)
    assert stats["floor"]["total"] == len(items) + len(rejects)


def test_bad_params_are_rejected():
    with pytest.raises(ValueError, match="kind"):
        LoadParams(sources=[{"name": "x", "kind": "excel", "path": "x"}])
    with pytest.raises(ValueError, match="sum"):
        SplitParams(seed=1, fractions={"sft_train": 0.5, "rl_train": 0.3, "eval": 0.1})
    with pytest.raises(ValueError):
        DedupParams(source_order=["a"], extra=1)


def test_sources_that_yield_no_usable_item_fail_on_the_floor_after_saving_the_rejects(tmp_path):
    chats = tmp_path / "chats.jsonl"
    answerless = (
        '{"messages": [{"role": "user", "content": "下列哪项属于货币政策工具？\\nA. 再贴现\\nB. 国债"}, '
    )
    row = answerless + '{"role": "assistant", "content": "不知道"}]}'
    chats.write_text("\n".join([row] * 3), encoding="utf-8")
    catalog = make_catalog(tmp_path, [{"name": "chats", "kind": "chat_jsonl", "path": str(chats)}])
    message = r"mcq_prep kept 0 of 3 rows read \(0.0%\).*no_answer_in_assistant 3"
    with pytest.raises(FloorError, match=message):
        SequentialRunner().run(create_pipeline(), catalog)
    assert len(catalog.load("mcq_rejects")) == 3  # the evidence is saved
    stats = json.loads((tmp_path / "mcq_prep_stats.json").read_text(encoding="utf-8"))
    assert stats["floor"]["passed"] is False
    assert not (tmp_path / "mcq_splits.parquet").exists()  # sft, rl and mcq_evaluation get nothing
