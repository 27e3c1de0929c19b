"""Test-only entry script: run verl 0.9's SFT trainer on CPU (gloo + FSDP2). Not a product feature.

verl 0.9 has no CPU platform: its device layer assumes CUDA/NPU, its process group asks for NCCL and
its FSDP engine is registered for ``cuda``/``npu`` only. This script patches exactly those three
things, then hands over to ``verl.trainer.sft_trainer.main`` with the command line unchanged, so
``torchrun --standalone --nproc_per_node=N tests/training/verl_cpu_shim.py key=value ...`` behaves
like ``torchrun ... -m verl.trainer.sft_trainer key=value ...``. Pair it with the overrides
``+model.override_config.attn_implementation=sdpa engine.strategy=fsdp2
engine.use_torch_compile=False trainer.device=cpu`` (what ``cpu_smoke: true`` emits).
"""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import torch


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


def _cpu_device_module() -> SimpleNamespace:
    """A ``torch.cuda``-shaped module for CPU: memory queries return 0, the rest is a no-op."""

    def zero(*a: Any, **k: Any) -> int:
        return 0

    return SimpleNamespace(
        is_available=lambda: True,
        current_device=lambda: "cpu",
        device_count=lambda: 1,
        set_device=_noop,
        synchronize=_noop,
        manual_seed=torch.manual_seed,
        manual_seed_all=torch.manual_seed,
        empty_cache=_noop,
        memory_allocated=zero,
        memory_reserved=zero,
        max_memory_allocated=zero,
        max_memory_reserved=zero,
        reset_peak_memory_stats=_noop,
        mem_get_info=lambda *a, **k: (0, 0),
        get_rng_state=torch.get_rng_state,
        set_rng_state=torch.set_rng_state,
        is_initialized=lambda: True,
        get_device_name=lambda *a, **k: "cpu",
        Stream=None,
        Event=None,
    )


def install() -> None:
    """Register a ``cpu`` platform, a pure-gloo process group and the FSDP engine for ``cpu``."""
    from verl.plugin.platform import PlatformBase, PlatformRegistry, set_platform

    module = _cpu_device_module()

    @PlatformRegistry.register(platform="cpu")
    class PlatformCPU(PlatformBase):
        device_name = "cpu"  # type: ignore[assignment]
        vendor_name = "cpu"  # type: ignore[assignment]
        device_module = module  # type: ignore[assignment]

        def is_available(self) -> bool:
            return True

        def is_platform_available(self, use_smi_check: bool = False) -> bool:
            return True

        def current_device(self) -> str:  # type: ignore[override]
            return "cpu"  # verl uses it as a torch device (``.to(get_device_id())``)

        def device_count(self) -> int:
            return 1

        def set_device(self, device_index: int) -> None:
            return None

        def synchronize(self, device_index: int | None = None) -> None:
            return None

        def manual_seed(self, seed: int) -> None:
            torch.manual_seed(seed)

        def manual_seed_all(self, seed: int) -> None:
            torch.manual_seed(seed)

        def set_allocator_settings(self, settings: str) -> None:
            return None

        def empty_cache(self) -> None:
            return None

        def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
            return None, None

        def communication_backend_name(self) -> str:
            return "gloo"

        def visible_devices_envvar(self) -> str:
            return "CUDA_VISIBLE_DEVICES"

        @contextlib.contextmanager
        def nvtx_range(self, msg: str):
            yield

        def profiler_start(self) -> None:
            return None

        def profiler_stop(self) -> None:
            return None

        def ray_resource_name(self) -> str:
            return "CPU"

        def ray_noset_envvars(self) -> list[str]:
            return []

        def is_ipc_supported(self) -> bool:
            return False

        def cudart(self) -> Any:
            return None

    os.environ["VERL_PLATFORM"] = "cpu"
    set_platform(PlatformCPU())

    import verl.utils.distributed as dist_utils

    def initialize_global_process_group(timeout_second: int = 36000) -> tuple[int, int, int]:
        torch.distributed.init_process_group(backend="gloo", timeout=timedelta(seconds=timeout_second))
        return int(os.environ["LOCAL_RANK"]), int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])

    dist_utils.initialize_global_process_group = initialize_global_process_group

    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

    for backend in ("fsdp", "fsdp2"):
        EngineRegistry._engines["language_model"][backend]["cpu"] = FSDPEngineWithLMHead


if __name__ == "__main__":
    install()
    from verl.trainer.sft_trainer import main

    main()
