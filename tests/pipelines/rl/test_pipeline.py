"""rl data prep: mcq_splits → verl GRPO parquet (train from rl_train, val never from sft_train) + reward config."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from kedro_datasets.pandas import ParquetDataset

from finrag_pipelines.floors import FloorError, FloorParams
from finrag_pipelines.mcq.records import validate_rl_rows
from finrag_pipelines.mcq.reward import compute_score
from finrag_pipelines.mcq.split import split_items
from finrag_pipelines.pipelines.rl import create_pipeline
from finrag_pipelines.pipelines.rl.params import RewardParams, RlDataParams, RlLengthParams

ROOT = Path(__file__).resolve().parents[3]

LLM = {
    "backend": "openai", "base_url": "http://127.0.0.1:30000/v1", "model": "qwen3", "max_concurrency": 32,
    "timeout_s": 60, "max_retries": 5, "temperature": 0.1, "max_tokens": 512, "extra_body": {},
    "backoff_base_s": 1.0, "backoff_max_s": 30.0, "max_failure_rate": 0.05, "max_invalid_retries": 2,
}


def make_splits(n: int = 200) -> pd.DataFrame:
    opts = json.dumps({"A": "上升", "B": "下降", "C": "不变"}, ensure_ascii=False)
    rows = [
        {"item_id": f"t:{i}", "source": "t", "subject": "s", "question": f"第{i}题：利率上升时债券价格？" + "长" * (600 if i % 10 == 0 else 0),
         "options": opts, "answer": "B" if i % 2 else "AC", "kind": "single" if i % 2 else "multi", "explanation": "解析"}
        for i in range(n)
    ]
    return split_items(pd.DataFrame(rows), {"sft_train": 0.5, "rl_train": 0.3, "eval": 0.2}, seed=2)


def launch_params(tmp_path, **changes):
    from finrag_pipelines.pipelines.rl.params import RlLaunchParams

    conf = yaml.safe_load((ROOT / "conf/base/parameters_rl.yml").read_text(encoding="utf-8"))["rl"]["launch"]
    return RlLaunchParams(**{**conf, "mode": "plan", "work_dir": str(tmp_path / "work"),
                             "merged_dir": str(tmp_path / "merged"), **changes})


def run(tmp_path, splits, data, judge_enabled=False, max_prompt_length=512):
    catalog = DataCatalog({
        "rl_train_parquet": ParquetDataset(filepath=str(tmp_path / "rl_train.parquet")),
        "rl_val_parquet": ParquetDataset(filepath=str(tmp_path / "rl_val.parquet")),
        "rl_reward_config": JSONDataset(filepath=str(tmp_path / "rl_reward_config.json")),
        "rl_data_stats": JSONDataset(filepath=str(tmp_path / "rl_data_stats.json")),
        "rl_launch_report": JSONDataset(filepath=str(tmp_path / "rl_launch_report.json")),
    })
    catalog["params:rl.launch"] = launch_params(tmp_path)
    catalog["mcq_splits"] = splits
    catalog["params:rl.data"] = data
    catalog["params:rl.length"] = RlLengthParams(
        tokenizer_path=None, max_prompt_length=max_prompt_length, truncation="drop"
    )
    catalog["params:rl.reward"] = RewardParams(
        weights={"format": 0.2, "correctness": 1.0, "process": 0.5 if judge_enabled else 0.0},
        partial_credit=0.0, allow_fallback=False,
        judge={"enabled": judge_enabled, "max_reasoning_chars": 1000, "llm_overrides": {"temperature": 0.0, "max_tokens": 16}},
    )
    catalog["params:llm"] = LLM
    catalog["params:rl.floor"] = FloorParams(min_kept=1, min_share=0.5)
    SequentialRunner().run(create_pipeline(), catalog)
    return catalog


@pytest.mark.parametrize("val_source", ["eval", "rl_train_slice"])
def test_rl_parquet_as_verl_reads_it(tmp_path, val_source):
    splits = make_splits()
    run(tmp_path, splits, RlDataParams(val_source=val_source, val_size=10, seed=4))
    of = splits.set_index("item_id")["split"]
    sets = {}
    for name in ("train", "val"):
        path = tmp_path / f"rl_{name}.parquet"
        validate_rl_rows(pd.read_parquet(path))
        ds = datasets.load_dataset("parquet", data_files=str(path), cache_dir=str(tmp_path / "hf"))["train"]
        sets[name] = [r["extra_info"]["item_id"] for r in ds]
        row = ds[0]
        assert isinstance(row["prompt"], list) and row["prompt"][0]["role"] == "user"
        assert row["reward_model"]["ground_truth"] in ("B", "AC")
    assert set(of[sets["train"]]) == {"rl_train"}
    assert set(of[sets["val"]]) == ({"eval"} if val_source == "eval" else {"rl_train"})
    stats = json.loads((tmp_path / "rl_data_stats.json").read_text(encoding="utf-8"))
    assert not set(sets["train"]) & set(sets["val"])
    assert len(sets["val"]) == 10 - stats["val"]["length"]["n_dropped"]
    assert stats["train"]["length"]["n_dropped"] > 0  # the long prompts
    assert stats["train"]["rows"] == len(sets["train"])

    # the exported config drives the reward exactly as verl would call it
    config_path = str(tmp_path / "rl_reward_config.json")
    row = datasets.load_dataset("parquet", data_files=str(tmp_path / "rl_train.parquet"), cache_dir=str(tmp_path / "hf"))["train"][0]
    truth = row["reward_model"]["ground_truth"]
    got = compute_score(
        data_source=row["data_source"], solution_str=f"<think>推理</think>\n答案：\\boxed{{{truth}}}",
        ground_truth=truth, extra_info=row["extra_info"], config_path=config_path,
    )
    assert got["score"] == pytest.approx(1.0)


def test_reward_config_with_judge_uses_the_shared_llm_block(tmp_path):
    catalog = run(tmp_path, make_splits(40), RlDataParams(val_source="eval", val_size=0, seed=4), judge_enabled=True)
    config = catalog.load("rl_reward_config")
    assert config["judge"]["enabled"] and config["judge"]["llm"]["base_url"] == LLM["base_url"]
    assert config["judge"]["llm"]["temperature"] == 0.0 and config["judge"]["llm"]["max_tokens"] == 16


def test_launch_plan_wires_the_project_reward_and_its_config(tmp_path):
    splits = make_splits()
    run(tmp_path, splits, RlDataParams(val_source="rl_train_slice", val_size=8, seed=1))
    report = json.loads((tmp_path / "rl_launch_report.json").read_text(encoding="utf-8"))
    argv = report["argv"]
    assert report["status"] == "planned" and argv[1:4] == ["-m", "verl.trainer.main_ppo", "algorithm.adv_estimator=grpo"]
    reward = next(a.split("=", 1)[1] for a in argv if a.startswith("reward.custom_reward_function.path="))
    assert reward.endswith("finrag_pipelines/mcq/verl_reward.py") and Path(reward).is_file()
    assert "reward.custom_reward_function.name=compute_score" in argv
    config = next(a.split("=", 1)[1] for a in argv if a.startswith("+reward.custom_reward_function.reward_kwargs.config_path="))
    assert json.loads(Path(config).read_text(encoding="utf-8")) == json.loads((tmp_path / "rl_reward_config.json").read_text())
    assert "data.max_prompt_length=512" in argv  # one prompt limit: rl.length.max_prompt_length
    # verl would call the reward like this (keyword arguments + reward_kwargs)
    from finrag_pipelines.mcq.verl_reward import compute_score

    result = compute_score(data_source="finrag_mcq", solution_str="因为……\n答案：\\boxed{B}", ground_truth="B",
                           extra_info={"options": json.dumps({"A": "甲", "B": "乙", "C": "丙", "D": "丁"})},
                           config_path=config)
    assert result["score"] == pytest.approx(1.0)


def test_launch_train_fails_fast_without_gpus(tmp_path):
    from finrag_pipelines.pipelines.rl import nodes
    from finrag_pipelines.training.runs import TrainingError

    splits = make_splits()
    catalog = run(tmp_path, splits, RlDataParams(val_source="rl_train_slice", val_size=8, seed=1))
    params = launch_params(tmp_path, mode="train")
    with pytest.raises(TrainingError):
        nodes.launch_grpo(catalog.load("rl_train_parquet"), catalog.load("rl_val_parquet"),
                          catalog.load("rl_reward_config"),
                          RlLengthParams(tokenizer_path=None, max_prompt_length=512, truncation="drop"),
                          params, {"passed": True})
    assert not (tmp_path / "work" / "train.log").exists()


def test_a_length_policy_that_drops_every_prompt_fails_on_the_floor_before_launching(tmp_path):
    with pytest.raises(FloorError, match=r"rl kept 0 of \d+ train rows \(0.0%\).*dropped_too_long"):
        data = RlDataParams(val_source="eval", val_size=0, seed=4)
        run(tmp_path, make_splits(), data, max_prompt_length=20)
    stats = json.loads((tmp_path / "rl_data_stats.json").read_text(encoding="utf-8"))  # saved before the stop
    assert stats["floor"]["passed"] is False and stats["train"]["rows"] == 0
    assert not (tmp_path / "rl_launch_report.json").exists() and not (tmp_path / "work").exists()
