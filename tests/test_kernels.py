"""The one decision for attention kernels and Liger (kernels.py), for every combination of machine and
packages."""

from __future__ import annotations

import logging

import pytest

from finrag_pipelines.kernels import (
    FLASH_ATTENTION_2,
    SDPA,
    choose_attention,
    choose_kernels,
    choose_liger,
    import_problem,
    planned_kernels,
)


def probe(*importable: str):  # type: ignore[no-untyped-def]
    """An import check where only ``importable`` modules import."""
    return lambda module: None if module in importable else f"ModuleNotFoundError: No module named '{module}'"


@pytest.mark.parametrize(
    ("gpu", "dtype", "modules", "expected", "why"),
    [
        (True, "bfloat16", ("flash_attn",), FLASH_ATTENTION_2, "importable"),
        (True, None, ("flash_attn",), FLASH_ATTENTION_2, "importable"),  # the trainer picks bf16
        (True, "torch.float16", ("flash_attn",), FLASH_ATTENTION_2, "importable"),
        (True, "bfloat16", (), SDPA, "flash-attn is not importable (ModuleNotFoundError"),
        (True, "float32", ("flash_attn",), SDPA, "weights are float32"),
        (False, "bfloat16", ("flash_attn",), SDPA, "no CUDA GPU"),
        (False, "float32", (), SDPA, "no CUDA GPU"),
    ],
)
def test_attention_is_flash_only_on_a_gpu_with_flash_attn_and_half_precision(
    gpu, dtype, modules, expected, why
):
    chosen, reason = choose_attention(gpu=gpu, dtype=dtype, probe=probe(*modules))
    assert chosen == expected and why in reason


@pytest.mark.parametrize(
    ("requested", "gpu", "modules", "expected", "why"),
    [
        (True, True, ("liger_kernel",), True, "importable"),
        (True, True, (), False, "liger-kernel is not importable"),
        (True, False, ("liger_kernel",), False, "no CUDA GPU"),  # it imports on a CPU, its kernels do not run
        (False, True, ("liger_kernel",), False, "off in conf"),
    ],
)
def test_liger_is_on_only_when_asked_for_on_a_gpu_where_it_imports(requested, gpu, modules, expected, why):
    used, reason = choose_liger(requested, gpu=gpu, probe=probe(*modules))
    assert used is expected and why in reason


def test_a_gpu_run_that_loses_a_kernel_says_so_in_a_warning(caplog):
    with caplog.at_level(logging.INFO, logger="finrag_pipelines.kernels"):
        lost = choose_kernels("verl SFT", gpu=True, liger=True, probe=probe())
        cpu = choose_kernels("encoder x", gpu=False, liger=True, probe=probe("flash_attn", "liger_kernel"))
        full = choose_kernels(
            "reranker", gpu=True, dtype="bfloat16", liger=True, probe=probe("flash_attn", "liger_kernel")
        )
    assert (lost.attn_implementation, lost.use_liger) == (SDPA, False)
    assert (cpu.attn_implementation, cpu.use_liger) == (SDPA, False)
    assert (full.attn_implementation, full.use_liger, full.flash) == (FLASH_ATTENTION_2, True, True)
    levels = {r.getMessage().split(" kernels")[0]: r.levelno for r in caplog.records}
    assert levels == {"verl SFT": logging.WARNING, "encoder x": logging.INFO, "reranker": logging.INFO}
    assert lost.to_dict() == {
        "attn_implementation": "sdpa",
        "attn_reason": lost.attn_reason,
        "use_liger": False,
        "liger_reason": lost.liger_reason,
    }
    assert "pip install -e '.[gpu]'" in lost.attn_reason


def test_the_real_probe_reports_a_missing_module_and_accepts_an_importable_one():
    assert import_problem("json") is None
    assert import_problem("finrag_no_such_module").startswith("ModuleNotFoundError")


def test_a_planned_command_names_the_gpu_kernels_and_says_it_is_decided_again():
    plan = planned_kernels("verl GRPO", liger=True)
    assert plan.flash and plan.use_liger and "decided again" in plan.attn_reason
    assert planned_kernels("verl SFT", liger=False).liger_reason == "off in conf"
