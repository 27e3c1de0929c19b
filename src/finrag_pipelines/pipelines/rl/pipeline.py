"""rl pipeline: mcq_splits (rl_train, eval) [+ search_qa_items] → GRPO parquet + reward config → launch."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import nodes, tasks

P = "params:rl."


def create_pipeline(**kwargs) -> Pipeline:
    data_prep = [
        Node(
            nodes.build_rl_rows_by_split,
            ["mcq_splits", P + "data"],
            ["rl_train_rows", "rl_val_rows"],
            name="build_rl_rows_by_split",
        ),
        # rl.tasks: MCQ rows, search-QA rows (rl_search_qa's items, read through an optional view) or both
        Node(
            tasks.mix_rl_tasks,
            [
                "rl_train_rows",
                "rl_val_rows",
                "search_qa_items@optional",
                "prompt_rl_search_qa",
                P + "tasks",
                P + "reward",
                P + "launch",
            ],
            ["rl_task_train_rows", "rl_task_val_rows", "rl_task_mix"],
            name="mix_rl_tasks",
        ),
        Node(
            nodes.limit_rl_prompt_lengths,
            ["rl_task_train_rows", P + "length"],
            ["rl_train_parquet", "rl_train_length_report"],
            name="limit_rl_train_prompt_lengths",
        ),
        Node(
            nodes.limit_rl_prompt_lengths,
            ["rl_task_val_rows", P + "length"],
            ["rl_val_parquet", "rl_val_length_report"],
            name="limit_rl_val_prompt_lengths",
        ),
        Node(
            nodes.export_reward_config,
            [P + "reward", "params:llm", P + "tasks", "prompt_search_qa_judge"],
            "rl_reward_config",
            name="export_reward_config",
        ),
        Node(
            nodes.summarise_rl_data,
            [
                "rl_train_parquet",
                "rl_val_parquet",
                "rl_train_length_report",
                "rl_val_length_report",
                P + "floor",
            ],
            "rl_data_stats",
            name="summarise_rl_data",
        ),
        # the floor is checked on the saved stats; training starts only after it
        Node(nodes.check_rl_floor, "rl_data_stats", "rl_floor_check", name="check_rl_floor"),
    ]
    # the launch node starts verl GRPO (python -m verl.trainer.main_ppo) with the project's reward,
    # then merges
    launch = [
        Node(
            nodes.launch_grpo,
            [
                "rl_train_parquet",
                "rl_val_parquet",
                "rl_reward_config",
                P + "length",
                P + "launch",
                "rl_floor_check",
            ],
            "rl_launch_report",
            name="launch_grpo",
        ),
    ]
    return Pipeline(data_prep + launch, namespace="rl", prefix_datasets_with_namespace=False)
