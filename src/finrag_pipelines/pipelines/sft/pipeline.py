"""sft pipeline: mcq_splits (sft_train) → verl SFT parquet (train + a held-out slice of it)
→ verl SFT launch."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import nodes

P = "params:sft."


def create_pipeline(**kwargs) -> Pipeline:
    data_prep = [
        Node(nodes.build_sft_examples, ["mcq_splits", P + "data"], "sft_examples", name="build_sft_examples"),
        # sft_train chats + sft_distill's verified rows (reasoning, calculation, grounded QA) as sft.mix says
        Node(
            nodes.mix_sft_sources,
            ["sft_examples", "sft_distill_items", "mcq_splits", P + "data", P + "length", P + "mix"],
            ["sft_examples_mix", "sft_mix_report"],
            name="mix_sft_sources",
        ),
        Node(
            nodes.limit_sft_lengths,
            ["sft_examples_mix", P + "length"],
            ["sft_examples_fit", "sft_length_report"],
            name="limit_sft_lengths",
        ),
        Node(
            nodes.split_sft_validation,
            ["sft_examples_fit", P + "data"],
            ["sft_train_parquet", "sft_val_parquet"],
            name="split_sft_validation",
        ),
        Node(
            nodes.summarise_sft_data,
            [
                "mcq_splits",
                "sft_examples",
                "sft_length_report",
                "sft_train_parquet",
                "sft_val_parquet",
                P + "floor",
            ],
            "sft_data_stats",
            name="summarise_sft_data",
        ),
        # the floor is checked on the saved stats; training starts only after it
        Node(nodes.check_sft_floor, "sft_data_stats", "sft_floor_check", name="check_sft_floor"),
    ]
    # the launch node starts verl (torchrun -m verl.trainer.sft_trainer) and merges the result
    launch = [
        Node(
            nodes.launch_sft,
            ["sft_train_parquet", "sft_val_parquet", P + "length", P + "launch", "sft_floor_check"],
            "sft_launch_report",
            name="launch_sft",
        ),
    ]
    return Pipeline(data_prep + launch, namespace="sft", prefix_datasets_with_namespace=False)
