"""sft data prep: mcq_splits → verl SFT parquet (train + held-out slice of sft_train) and stats."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from kedro_datasets.pandas import ParquetDataset

from finrag_pipelines.floors import FloorError, FloorParams
from finrag_pipelines.mcq.extract import extract_answer
from finrag_pipelines.mcq.records import validate_sft_rows
from finrag_pipelines.mcq.sft_mix import DISTILL_COLUMNS, empty_distill_items
from finrag_pipelines.mcq.split import split_items
from finrag_pipelines.pipelines.sft import create_pipeline, nodes
from finrag_pipelines.pipelines.sft.params import LengthParams, MixParams, SftDataParams, SftLaunchParams
from finrag_pipelines.training.runs import TrainingError

ROOT = Path(__file__).resolve().parents[3]


def launch_params(tmp_path, **changes) -> SftLaunchParams:
    """conf/base's launch group, in plan mode, writing under tmp_path."""
    conf = yaml.safe_load((ROOT / "conf/base/parameters_sft.yml").read_text(encoding="utf-8"))["sft"][
        "launch"
    ]
    return SftLaunchParams(
        **{
            **conf,
            "mode": "plan",
            "work_dir": str(tmp_path / "work"),
            "merged_dir": str(tmp_path / "merged"),
            **changes,
        }
    )


def make_splits(n: int = 120) -> pd.DataFrame:
    opts = json.dumps({"A": "上升", "B": "下降", "C": "不变", "D": "不确定"}, ensure_ascii=False)
    rows = [
        {
            "item_id": f"t:{i}",
            "source": "t",
            "subject": "s",
            "question": f"第{i}题：利率上升时债券价格如何变化？" + "补充" * (i % 7) * 40,
            "options": opts,
            "answer": "B" if i % 3 else "AB",
            "kind": "single" if i % 3 else "multi",
            "explanation": None if i % 4 == 0 else f"第{i}题解析：利率与债券价格反向变动。",
        }
        for i in range(n)
    ]
    return split_items(pd.DataFrame(rows), {"sft_train": 0.6, "rl_train": 0.3, "eval": 0.1}, seed=1)


SFT_CONF = yaml.safe_load((ROOT / "conf/base/parameters_sft.yml").read_text(encoding="utf-8"))["sft"]
MIX = MixParams(**SFT_CONF["mix"])


def run(tmp_path, splits, data, length, floor=None, distill_items=None):
    catalog = DataCatalog(
        {
            "sft_train_parquet": ParquetDataset(filepath=str(tmp_path / "sft_train.parquet")),
            "sft_val_parquet": ParquetDataset(filepath=str(tmp_path / "sft_val.parquet")),
            "sft_data_stats": JSONDataset(filepath=str(tmp_path / "sft_data_stats.json")),
            "sft_launch_report": JSONDataset(filepath=str(tmp_path / "sft_launch_report.json")),
            "sft_mix_report": JSONDataset(filepath=str(tmp_path / "sft_mix_report.json")),
        }
    )
    catalog["params:sft.launch"] = launch_params(tmp_path)
    catalog["mcq_splits"] = splits
    catalog["params:sft.data"] = data
    catalog["params:sft.length"] = length
    catalog["params:sft.floor"] = floor or FloorParams(min_kept=1, min_share=0.25)
    catalog["sft_distill_items"] = empty_distill_items() if distill_items is None else distill_items
    catalog["params:sft.mix"] = MIX
    SequentialRunner().run(create_pipeline(), catalog)
    return catalog, json.loads((tmp_path / "sft_data_stats.json").read_text(encoding="utf-8"))


def test_sft_parquet_from_sft_train_only(tmp_path):
    splits = make_splits()
    data = SftDataParams(target_style="think", missing_explanation="exclude", val_size=5, seed=3)
    _, stats = run(
        tmp_path, splits, data, LengthParams(tokenizer_path=None, max_length=400, truncation="drop")
    )
    train = pd.read_parquet(tmp_path / "sft_train.parquet", dtype_backend="pyarrow")  # as verl reads it
    val = pd.read_parquet(tmp_path / "sft_val.parquet", dtype_backend="pyarrow")
    validate_sft_rows(train)
    validate_sft_rows(val)
    of = splits.set_index("item_id")
    assert set(of.loc[list(train["item_id"]) + list(val["item_id"]), "split"]) == {"sft_train"}
    assert len(val) == 5 and not set(train["item_id"]) & set(val["item_id"])
    assert of.loc[list(train["item_id"]), "explanation"].notna().all()  # exclude policy
    length = stats["length"]
    assert length["lengths"]["unit"] == "characters" and "null" in length["tokenizer"]
    assert (
        length["n_dropped"] > 0
        and stats["train_rows"] + stats["val_rows"] == length["n_in"] - length["n_dropped"]
    )
    for messages in train["messages"]:
        got = extract_answer(messages[1]["content"], "ABCD")
        assert got.format_ok and got.reasoning_ok


@pytest.mark.slow
def test_sft_token_lengths_with_a_local_tokenizer(tmp_path, tiny_qwen3_dir):
    data = SftDataParams(target_style="plain", missing_explanation="answer_only", val_size=2, seed=3)
    length = LengthParams(tokenizer_path=str(tiny_qwen3_dir), max_length=2048, truncation="right")
    _, stats = run(tmp_path, make_splits(30), data, length)
    assert stats["length"]["lengths"]["unit"] == "tokens" and stats["length"]["n_dropped"] == 0


def test_launch_plan_records_the_checked_command_and_stages_the_data(tmp_path):
    splits = make_splits()
    data = SftDataParams(target_style="think", missing_explanation="exclude", val_size=5, seed=3)
    catalog, _ = run(
        tmp_path, splits, data, LengthParams(tokenizer_path=None, max_length=1024, truncation="drop")
    )
    report = json.loads((tmp_path / "sft_launch_report.json").read_text(encoding="utf-8"))
    assert report["status"] == "planned" and report["argv"][1:5] == [
        "--standalone",
        "--nnodes=1",
        "--nproc_per_node=2",
        "-m",
    ]
    argv = report["argv"]
    assert (
        "verl.trainer.sft_trainer" in argv and "data.max_length=1024" in argv
    )  # one max_length: length.max_length
    staged = tmp_path / "work/data/sft_train.parquet"
    assert f"data.train_files={staged}" in argv
    pd.testing.assert_frame_equal(pd.read_parquet(staged), pd.read_parquet(tmp_path / "sft_train.parquet"))
    mtime = staged.stat().st_mtime_ns
    run(tmp_path, splits, data, LengthParams(tokenizer_path=None, max_length=1024, truncation="drop"))
    assert (
        staged.stat().st_mtime_ns == mtime
    )  # unchanged data is not rewritten (an up-to-date run is not retrained)


def test_launch_plan_report_paths_are_relative_to_the_project_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Kedro runs from the project root
    data = SftDataParams(target_style="think", missing_explanation="exclude", val_size=5, seed=3)
    run(tmp_path, make_splits(), data, LengthParams(tokenizer_path=None, max_length=1024, truncation="drop"))
    text = (tmp_path / "sft_launch_report.json").read_text(encoding="utf-8")
    assert str(tmp_path) not in text
    argv = json.loads(text)["argv"]
    assert argv[0] == "torchrun" and "data.train_files=work/data/sft_train.parquet" in argv
    assert "trainer.default_local_dir=work/checkpoints" in argv
    assert "model.path=pretrain_models/Qwen3-8B" in argv


def test_launch_train_fails_fast_without_a_gpu(tmp_path):
    frame = pd.DataFrame(
        {"messages": [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]]}
    )
    params = launch_params(tmp_path, mode="train")
    with pytest.raises(TrainingError, match="needs a CUDA GPU"):
        length = LengthParams(tokenizer_path=None, max_length=256, truncation="right")
        nodes.launch_sft(frame, frame.iloc[:0], length, params, {"passed": True})
    assert not (tmp_path / "work" / "train.log").exists()  # nothing was started


def test_sft_data_below_its_floor_fails_before_launching(tmp_path):
    data = SftDataParams(target_style="think", missing_explanation="exclude", val_size=5, seed=3)
    length = LengthParams(tokenizer_path=None, max_length=400, truncation="drop")
    with pytest.raises(FloorError, match=r"sft kept \d+ of 76 sft_train items.*excluded_without_explanation"):
        run(tmp_path, make_splits(), data, length, floor=FloorParams(min_kept=1, min_share=0.9))
    stats = json.loads((tmp_path / "sft_data_stats.json").read_text(encoding="utf-8"))  # saved first
    assert stats["floor"]["passed"] is False and stats["floor"]["total"] == 76
    assert not (tmp_path / "sft_launch_report.json").exists() and not (tmp_path / "work").exists()


def test_sft_trains_on_the_mix_without_rl_or_eval_questions(tmp_path):
    splits = make_splits()
    eval_question = splits.loc[splits["split"] == "eval", "question"].iloc[0]
    opts = json.dumps({"A": "1.00元", "B": "2.00元", "C": "3.00元", "D": "4.00元"}, ensure_ascii=False)
    calc = [
        {
            "item_id": f"finmath:x:{i}",
            "mix_source": "calc",
            "source": "finmath",
            "subject": "金融计算",
            "kind": "single",
            "question": f"计算题{i}：本金100元，利率1%，利息多少？",
            "options": opts,
            "answer": "A",
            "explanation": "利息 = 100 × 1% = 1元。",
            "context": None,
            "model": "finmath",
            "prompt_hash": None,
        }
        for i in range(6)
    ]
    leaked = {
        **calc[0],
        "item_id": "distill:leak",
        "mix_source": "distilled_reasoning",
        "question": eval_question,
    }
    qa = {
        **calc[0],
        "item_id": "grounded:d1:fact_lookup",
        "mix_source": "grounded_qa",
        "kind": "qa",
        "options": None,
        "answer": "20万台/年",
        "explanation": None,
        "context": "设计产能为20万台/年。",
        "question": "产能是多少？",
    }
    distill = pd.DataFrame([*calc, leaked, qa], columns=list(DISTILL_COLUMNS))
    data = SftDataParams(target_style="think", missing_explanation="exclude", val_size=0, seed=3)
    length = LengthParams(tokenizer_path=None, max_length=4000, truncation="drop")
    _, stats = run(tmp_path, splits, data, length, distill_items=distill)
    mix = json.loads((tmp_path / "sft_mix_report.json").read_text(encoding="utf-8"))
    assert mix["sources"]["calc"]["kept"] == 6 and mix["sources"]["grounded_qa"]["kept"] == 1
    reasoning = mix["sources"]["distilled_reasoning"]
    assert (reasoning["available"], reasoning["in_rl_or_eval"], reasoning["kept"]) == (1, 1, 0)
    assert mix["sources"]["calc"]["lengths"]["n"] == 6 and mix["rows"] == stats["train_rows"]
    train = pd.read_parquet(tmp_path / "sft_train.parquet")
    assert "distill:leak" not in set(train["item_id"])
    assert {"grounded:d1:fact_lookup", "finmath:x:0"} <= set(train["item_id"])
    validate_sft_rows(train)


def test_the_floor_counts_sft_train_items_only_not_the_other_mix_sources(tmp_path):
    opts = json.dumps({"A": "1元", "B": "2元"}, ensure_ascii=False)
    calc = pd.DataFrame(
        [
            {
                "item_id": f"finmath:x:{i}",
                "mix_source": "calc",
                "source": "finmath",
                "subject": "s",
                "kind": "single",
                "question": f"计算题{i}",
                "options": opts,
                "answer": "A",
                "explanation": "过程。",
                "context": None,
                "model": "finmath",
                "prompt_hash": None,
            }
            for i in range(200)
        ],
        columns=list(DISTILL_COLUMNS),
    )
    data = SftDataParams(target_style="think", missing_explanation="exclude", val_size=5, seed=3)
    length = LengthParams(tokenizer_path=None, max_length=4000, truncation="drop")
    with pytest.raises(FloorError, match=r"sft kept \d+ of 76 sft_train items"):
        floor = FloorParams(min_kept=1, min_share=0.9)
        run(tmp_path, make_splits(), data, length, floor=floor, distill_items=calc)
    stats = json.loads((tmp_path / "sft_data_stats.json").read_text(encoding="utf-8"))
    assert stats["train_rows"] + stats["val_rows"] > 200 and stats["floor"]["kept"] < 76
