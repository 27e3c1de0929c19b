"""rl data prep: mcq_splits → verl GRPO parquet
(train from rl_train, val never from sft_train) + reward config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from kedro_datasets.pandas import ParquetDataset

from finrag_pipelines.datasets.optional import OptionalParquetDataset
from finrag_pipelines.floors import FloorError, FloorParams
from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.mcq.records import validate_rl_rows
from finrag_pipelines.mcq.reward import compute_score
from finrag_pipelines.mcq.split import split_items
from finrag_pipelines.pipelines.rl import create_pipeline
from finrag_pipelines.pipelines.rl.params import RewardParams, RlDataParams, RlLengthParams, RlTasksParams

ROOT = Path(__file__).resolve().parents[3]

LLM = {
    "backend": "openai",
    "base_url": "http://127.0.0.1:30000/v1",
    "model": "qwen3",
    "max_concurrency": 32,
    "timeout_s": 60,
    "max_retries": 5,
    "temperature": 0.1,
    "max_tokens": 512,
    "extra_body": {},
    "backoff_base_s": 1.0,
    "backoff_max_s": 30.0,
    "max_failure_rate": 0.05,
    "max_invalid_retries": 2,
}


def make_splits(n: int = 200) -> pd.DataFrame:
    opts = json.dumps({"A": "上升", "B": "下降", "C": "不变"}, ensure_ascii=False)
    rows = [
        {
            "item_id": f"t:{i}",
            "source": "t",
            "subject": "s",
            "question": f"第{i}题：利率上升时债券价格？" + "长" * (600 if i % 10 == 0 else 0),
            "options": opts,
            "answer": "B" if i % 2 else "AC",
            "kind": "single" if i % 2 else "multi",
            "explanation": "解析",
        }
        for i in range(n)
    ]
    return split_items(pd.DataFrame(rows), {"sft_train": 0.5, "rl_train": 0.3, "eval": 0.2}, seed=2)


def base_rl(*keys):
    conf = yaml.safe_load((ROOT / "conf/base/parameters_rl.yml").read_text(encoding="utf-8"))["rl"]
    for key in keys:
        conf = conf[key]
    return conf


def launch_params(tmp_path, **changes):
    from finrag_pipelines.pipelines.rl.params import RlLaunchParams

    return RlLaunchParams(
        **{
            **base_rl("launch"),
            "mode": "plan",
            "work_dir": str(tmp_path / "work"),
            "merged_dir": str(tmp_path / "merged"),
            **changes,
        }
    )


def prompt(name):
    return yaml.safe_load((ROOT / f"conf/base/prompts/{name}.yml").read_text(encoding="utf-8"))


def run(
    tmp_path,
    splits,
    data,
    judge_enabled=False,
    max_prompt_length=512,
    tasks=None,
    search_qa_items=None,
    launch=None,
):
    catalog = DataCatalog(
        {
            "rl_train_parquet": ParquetDataset(filepath=str(tmp_path / "rl_train.parquet")),
            "rl_val_parquet": ParquetDataset(filepath=str(tmp_path / "rl_val.parquet")),
            "rl_reward_config": JSONDataset(filepath=str(tmp_path / "rl_reward_config.json")),
            "rl_data_stats": JSONDataset(filepath=str(tmp_path / "rl_data_stats.json")),
            "rl_launch_report": JSONDataset(filepath=str(tmp_path / "rl_launch_report.json")),
            "rl_task_mix": JSONDataset(filepath=str(tmp_path / "rl_task_mix.json")),
            "search_qa_items@optional": OptionalParquetDataset(
                filepath=str(tmp_path / "items.parquet"), producer="rl_search_qa"
            ),
        }
    )
    if search_qa_items is not None:
        search_qa_items.to_parquet(tmp_path / "items.parquet")
    catalog["params:rl.launch"] = launch or launch_params(tmp_path)
    catalog["mcq_splits"] = splits
    catalog["params:rl.data"] = data
    catalog["params:rl.length"] = RlLengthParams(
        tokenizer_path=None, max_prompt_length=max_prompt_length, truncation="drop"
    )
    catalog["params:rl.reward"] = RewardParams(
        weights={"format": 0.2, "correctness": 1.0, "process": 0.5 if judge_enabled else 0.0},
        partial_credit=0.0,
        allow_fallback=False,
        judge={
            "enabled": judge_enabled,
            "max_reasoning_chars": 1000,
            "llm_overrides": {"temperature": 0.0, "max_tokens": 16},
        },
        search_qa=base_rl("reward", "search_qa"),
    )
    catalog["params:rl.tasks"] = RlTasksParams(**{**base_rl("tasks"), **(tasks or {})})
    catalog["prompt_rl_search_qa"] = prompt("rl_search_qa")
    catalog["prompt_search_qa_judge"] = prompt("search_qa_judge")
    catalog["params:llm"] = LLMConfig.from_mapping(LLM)  # as Kedro validates it (the `llm` group is typed)
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
    row = datasets.load_dataset(
        "parquet", data_files=str(tmp_path / "rl_train.parquet"), cache_dir=str(tmp_path / "hf")
    )["train"][0]
    truth = row["reward_model"]["ground_truth"]
    got = compute_score(
        data_source=row["data_source"],
        solution_str=f"<think>推理</think>\n答案：\\boxed{{{truth}}}",
        ground_truth=truth,
        extra_info=row["extra_info"],
        config_path=config_path,
    )
    assert got["score"] == pytest.approx(1.0)


def test_reward_config_with_judge_uses_the_shared_llm_block(tmp_path):
    catalog = run(
        tmp_path, make_splits(40), RlDataParams(val_source="eval", val_size=0, seed=4), judge_enabled=True
    )
    config = catalog.load("rl_reward_config")
    assert config["judge"]["enabled"] and config["judge"]["llm"]["base_url"] == LLM["base_url"]
    assert config["judge"]["llm"]["temperature"] == 0.0 and config["judge"]["llm"]["max_tokens"] == 16


def test_launch_plan_wires_the_project_reward_and_its_config(tmp_path):
    splits = make_splits()
    run(tmp_path, splits, RlDataParams(val_source="rl_train_slice", val_size=8, seed=1))
    report = json.loads((tmp_path / "rl_launch_report.json").read_text(encoding="utf-8"))
    argv = report["argv"]
    assert report["status"] == "planned" and argv[1:4] == [
        "-m",
        "verl.trainer.main_ppo",
        "algorithm.adv_estimator=grpo",
    ]
    reward = next(a.split("=", 1)[1] for a in argv if a.startswith("reward.custom_reward_function.path="))
    assert reward.endswith("finrag_pipelines/mcq/verl_reward.py") and Path(reward).is_file()
    assert "reward.custom_reward_function.name=compute_score" in argv
    config = next(
        a.split("=", 1)[1]
        for a in argv
        if a.startswith("+reward.custom_reward_function.reward_kwargs.config_path=")
    )
    assert json.loads(Path(config).read_text(encoding="utf-8")) == json.loads(
        (tmp_path / "rl_reward_config.json").read_text()
    )
    assert "data.max_prompt_length=512" in argv  # one prompt limit: rl.length.max_prompt_length
    # verl would call the reward like this (keyword arguments + reward_kwargs)
    from finrag_pipelines.mcq.verl_reward import compute_score

    result = compute_score(
        data_source="finrag_mcq",
        solution_str="因为……\n答案：\\boxed{B}",
        ground_truth="B",
        extra_info={"options": json.dumps({"A": "甲", "B": "乙", "C": "丙", "D": "丁"})},
        config_path=config,
    )
    assert result["score"] == pytest.approx(1.0)


def test_launch_train_fails_fast_without_gpus(tmp_path):
    from finrag_pipelines.pipelines.rl import nodes
    from finrag_pipelines.training.runs import TrainingError

    splits = make_splits()
    catalog = run(tmp_path, splits, RlDataParams(val_source="rl_train_slice", val_size=8, seed=1))
    params = launch_params(tmp_path, mode="train")
    with pytest.raises(TrainingError):
        nodes.launch_grpo(
            catalog.load("rl_train_parquet"),
            catalog.load("rl_val_parquet"),
            catalog.load("rl_reward_config"),
            RlLengthParams(tokenizer_path=None, max_prompt_length=512, truncation="drop"),
            params,
            {"passed": True},
        )
    assert not (tmp_path / "work" / "train.log").exists()


def test_a_length_policy_that_drops_every_prompt_fails_on_the_floor_before_launching(tmp_path):
    with pytest.raises(FloorError, match=r"rl kept 0 of \d+ train rows \(0.0%\).*dropped_too_long"):
        data = RlDataParams(val_source="eval", val_size=0, seed=4)
        run(tmp_path, make_splits(), data, max_prompt_length=20)
    stats = json.loads((tmp_path / "rl_data_stats.json").read_text(encoding="utf-8"))  # saved before the stop
    assert stats["floor"]["passed"] is False and stats["train"]["rows"] == 0
    assert not (tmp_path / "rl_launch_report.json").exists() and not (tmp_path / "work").exists()


# ------------------------------------------------------------------ rl.tasks: search-QA rows mixed in


def make_items(n_train=12, n_val=3):
    rows = [
        {
            "query_id": f"dq-{i}",
            "doc_id": f"a{i}",
            "question": f"公司第{i}号工厂的产能是多少？",
            "reference": f"尊敬的投资者您好，第{i}号工厂的设计产能为{i}万台/年。",
            "question_type": "factoid",
            "difficulty": "easy",
            "split": "val" if i < n_val else "train",
            "model": "kw",
            "prompt_hash": "h",
        }
        for i in range(n_train + n_val)
    ]
    return pd.DataFrame(rows)


def search_launch(tmp_path, **verl):
    conf = base_rl("launch")
    tools = "conf/base/verl/search_tool.yaml"
    verl = {**conf["verl"], "tool_config_path": tools, "max_assistant_turns": 6, **verl}
    return launch_params(tmp_path, verl=verl)


def test_search_qa_rows_are_mixed_in_and_read_by_verl(tmp_path, monkeypatch):
    pytest.importorskip("verl")
    from finrag_pipelines.pipelines.rl import nodes

    handed = []  # the config the launch builds verl's command from (the report holds a portable copy)
    build = nodes.build_grpo_command
    monkeypatch.setattr(
        nodes, "build_grpo_command", lambda config, **kw: handed.append(config) or build(config, **kw)
    )
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    from finrag_pipelines.search_qa.reward import DATA_SOURCE

    splits = make_splits()
    data = RlDataParams(val_source="rl_train_slice", val_size=8, seed=1)
    run(
        tmp_path,
        splits,
        data,
        tasks={"search_qa": True},
        search_qa_items=make_items(),
        launch=search_launch(tmp_path),
    )
    mix = json.loads((tmp_path / "rl_task_mix.json").read_text(encoding="utf-8"))
    assert mix["train"]["search_qa"] == 12 and mix["val"]["search_qa"] == 3 and mix["val"]["mcq"] == 8
    data = OmegaConf.create({"filter_overlong_prompts": False, "cache_dir": str(tmp_path / "verl")})
    train = RLHFDataset(data_files=[str(tmp_path / "rl_train.parquet")], tokenizer=None, config=data)
    rows = [train[i] for i in range(len(train))]
    tool_rows = [r for r in rows if r["data_source"] == DATA_SOURCE]
    stats = json.loads((tmp_path / "rl_data_stats.json").read_text(encoding="utf-8"))
    assert len(tool_rows) == 12
    assert stats["train"]["by_task"] == {"finrag_mcq": len(rows) - 12, DATA_SOURCE: 12}
    dropped = stats["train"]["length"]["n_dropped"]  # the long MCQ prompts
    assert 0 < len(rows) - 12 == mix["train"]["mcq"] - dropped
    assert {r["agent_name"] for r in tool_rows} == {"tool_agent"}
    assert {r["agent_name"] for r in rows if r["data_source"] == "finrag_mcq"} == {"single_turn_agent"}
    row = tool_rows[0]
    source = row["extra_info"]["source_doc_id"]
    # what verl's ToolAgentLoop hands to the search tool's create()
    assert row["tools_kwargs"] == {"search": {"create_kwargs": {"source_doc_id": source}}}
    assert row["raw_prompt"][0]["role"] == "system" and row["raw_prompt"][1]["content"].startswith("公司第")
    assert len({r["index"] for r in rows}) == len(rows)

    # the exported reward config scores both kinds of rows through the one entry, with one key set
    config_path = str(tmp_path / "rl_reward_config.json")
    exported = json.loads(Path(config_path).read_text(encoding="utf-8"))
    assert exported["search_qa"]["judge_prompt"]["name"] == "search_qa_judge"
    source_text = row["reward_model"]["ground_truth"]
    answer = (
        f'<tool_call>\n{{"name": "search", "arguments": {{"query_list": ["产能"]}}}}\n</tool_call>'
        f"\nuser\n<tool_response>\nDoc 1 [{source}]\n{source_text}\n</tool_response>\nassistant\n"
        f"{source_text}[{source}]"
    )
    extra = {**row["extra_info"], "tool_rewards": [1.0], "num_turns": 4}
    got = compute_score(
        data_source=DATA_SOURCE,
        solution_str=answer,
        ground_truth=source_text,
        extra_info=extra,
        config_path=config_path,
    )
    assert got["acc"] == 1.0 and got["retrieval"] == 1.0 and got["outcome"] == pytest.approx(1.0)
    mcq_row = next(r for r in rows if r["data_source"] == "finrag_mcq")
    truth = mcq_row["reward_model"]["ground_truth"]
    mcq = compute_score(
        data_source="finrag_mcq",
        solution_str=f"<think>x</think>答案：\\boxed{{{truth}}}",
        ground_truth=truth,
        extra_info=mcq_row["extra_info"],
        config_path=config_path,
    )
    assert list(mcq) == list(got) and mcq["score"] == pytest.approx(1.0)

    # the launch turns multi-turn on with the tool config, by an absolute path (verl's ray workers read it)
    (config,) = handed
    assert Path(config.tool_config_path).is_absolute() and Path(config.tool_config_path).is_file()
    argv = json.loads((tmp_path / "rl_launch_report.json").read_text(encoding="utf-8"))["argv"]
    assert "actor_rollout_ref.rollout.multi_turn.tool_config_path=conf/base/verl/search_tool.yaml" in argv
    assert "actor_rollout_ref.rollout.multi_turn.enable=True" in argv
    assert "actor_rollout_ref.rollout.multi_turn.max_assistant_turns=6" in argv
    assert "actor_rollout_ref.rollout.multi_turn.max_tool_response_length=4096" in argv


def test_search_qa_only_and_a_share(tmp_path):
    splits = make_splits()
    data = RlDataParams(val_source="rl_train_slice", val_size=8, seed=1)
    run(
        tmp_path,
        splits,
        data,
        tasks={"mcq": False, "search_qa": True},
        search_qa_items=make_items(),
        launch=search_launch(tmp_path),
    )
    train = pd.read_parquet(tmp_path / "rl_train.parquet")
    assert set(train["data_source"]) == {"finrag_search_qa"} and len(train) == 12
    tasks = {"search_qa": True, "search_qa_share": 0.25}
    run(tmp_path, splits, data, tasks=tasks, search_qa_items=make_items(), launch=search_launch(tmp_path))
    mix = json.loads((tmp_path / "rl_task_mix.json").read_text(encoding="utf-8"))
    share = mix["train"]["search_qa"] / (mix["train"]["search_qa"] + mix["train"]["mcq"])
    assert share == pytest.approx(0.25, abs=0.02)
    assert mix["train"]["search_qa"] == 12  # the larger task (mcq) was downsampled


def test_mix_counts():
    from finrag_pipelines.pipelines.rl.tasks import mix_counts

    assert mix_counts(100, 40, None) == (100, 40)
    assert mix_counts(100, 40, 0.5) == (40, 40)
    assert mix_counts(100, 10, 0.2) == (40, 10)
    assert mix_counts(10, 100, 0.5) == (10, 10)
    assert mix_counts(0, 100, 0.5) == (0, 100)


def test_search_qa_without_its_items_or_tool_config_stops_with_one_line(tmp_path):
    from finrag_pipelines.pipelines.rl.tasks import TaskConfigError

    splits = make_splits(40)
    data = RlDataParams(val_source="eval", val_size=0, seed=4)
    missing = "items.parquet does not exist yet; run the rl_search_qa pipeline"
    with pytest.raises(Exception, match=missing) as info:
        run(tmp_path, splits, data, tasks={"search_qa": True}, launch=search_launch(tmp_path))
    assert isinstance(info.value, TaskConfigError) or isinstance(info.value.__cause__, TaskConfigError)
    assert "\n" not in str(info.value)
    with pytest.raises(Exception, match="tool_config_path is null"):
        run(tmp_path, splits, data, tasks={"search_qa": True}, search_qa_items=make_items())
    with pytest.raises(Exception, match="max_tool_response_length"):
        run(
            tmp_path,
            splits,
            data,
            tasks={"search_qa": True},
            search_qa_items=make_items(),
            launch=search_launch(tmp_path, extra_overrides=[]),
        )
    # search_qa off: the items are neither needed nor read
    run(tmp_path, splits, data)
    assert "agent_name" not in pd.read_parquet(tmp_path / "rl_train.parquet").columns


def test_tasks_params_refuse_nonsense():
    with pytest.raises(ValueError, match="switch on"):
        RlTasksParams(**{**base_rl("tasks"), "mcq": False, "search_qa": False})
    with pytest.raises(ValueError, match="needs both"):
        RlTasksParams(**{**base_rl("tasks"), "search_qa_share": 0.3})


def test_search_qa_launch_composes_in_verls_own_ppo_config(tmp_path):
    """The planned GRPO command with search_qa on, composed against verl 0.9.1's ppo_trainer config (strict:
    a key verl does not have fails), as tests/training/test_verl.py checks the GRPO overrides."""
    pytest.importorskip("verl")
    import verl.trainer
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from verl.tools.tool_registry import initialize_tools_from_config
    from verl.utils import omega_conf_to_dataclass

    data = RlDataParams(val_source="eval", val_size=0, seed=4)
    run(
        tmp_path,
        make_splits(40),
        data,
        tasks={"search_qa": True},
        search_qa_items=make_items(),
        launch=search_launch(tmp_path),
    )
    argv = json.loads((tmp_path / "rl_launch_report.json").read_text(encoding="utf-8"))["argv"]
    assert argv[1:3] == ["-m", "verl.trainer.main_ppo"]
    config_dir = str(Path(verl.trainer.__file__).parent / "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        composed = compose(config_name="ppo_trainer", overrides=argv[3:])

    def select(key: str) -> Any:
        return OmegaConf.select(composed, key)

    multi_turn = omega_conf_to_dataclass(select("actor_rollout_ref.rollout.multi_turn"))
    assert multi_turn.enable is True and multi_turn.format == "hermes" and multi_turn.max_assistant_turns == 6
    assert multi_turn.max_tool_response_length == 4096
    tool_config = ROOT / multi_turn.tool_config_path  # the report's argv is portable (project-relative)
    assert tool_config.resolve() == (ROOT / "conf/base/verl/search_tool.yaml").resolve()
    assert select("actor_rollout_ref.rollout.agent.default_agent_loop") == "tool_agent"
    assert select("reward.custom_reward_function.path").endswith("finrag_pipelines/mcq/verl_reward.py")
    assert Path(select("reward.custom_reward_function.reward_kwargs.config_path")).is_file()
    # verl's own loader builds the project's tool from that file
    (tool,) = initialize_tools_from_config(str(tool_config))
    assert tool.name == "search" and type(tool).__name__ == "FinragSearchTool"
    assert tool.settings.max_passage_chars == 600
