"""Device check: real verl 0.9 LoRA SFT on one GPU through the project's launcher, then merge and generate.

Builds a tiny random Qwen3 causal LM (tokenizer trained on the SFT texts), trains it with
``finrag_pipelines.training.verl_sft.train_sft`` (``torchrun -m verl.trainer.sft_trainer``, no CPU shim)
on the project's own ``sft_train.parquet`` / ``sft_val.parquet``, lets ``train_sft`` merge the LoRA
checkpoint (``verl.model_merger`` + PEFT fold), loads the merged folder with transformers on CUDA and
generates a few tokens. Writes a JSON summary.

    python scripts/gpu_check_verl_sft.py --data-dir data/05_model_input/mcq --work /tmp/verl_gpu \\
        --out summary.json
    # the same path on CPU (tests/training shim):
    python scripts/gpu_check_verl_sft.py ... --cpu-smoke --steps 3
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import logging
import shutil
import sys
import time
from pathlib import Path


def _version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def _texts(parquet: Path, limit: int) -> list[str]:
    import pandas as pd

    texts = []
    for messages in pd.read_parquet(parquet)["messages"]:
        texts.extend(str(m["content"]) for m in messages)
        if len(texts) >= limit:
            break
    return texts[:limit]


def _causal_lm_copy(tiny_dir: Path, out: Path) -> Path:
    """As tests/training/test_verl.py: the tiny model saved as a Qwen3ForCausalLM folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_dir), local_files_only=True)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(tiny_dir), local_files_only=True).save_pretrained(str(out))
    return out


def _step_losses(log_path: Path) -> dict[int, dict]:
    from finrag_pipelines.training.verl_common import parse_step_metrics

    steps: dict[int, dict] = {}
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        for segment in line.split("\r"):
            metrics = parse_step_metrics(segment)
            if metrics is not None:
                steps.setdefault(metrics["step"], {}).update(metrics)
    return steps


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=6000)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument(
        "--cpu-smoke", action="store_true", help="local check with tests/training/verl_cpu_shim.py"
    )
    args = parser.parse_args()
    args.data_dir, args.work, args.out = args.data_dir.resolve(), args.work.resolve(), args.out.resolve()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)

    import torch

    from finrag_pipelines.embedding.tiny_model import build_tiny_qwen3
    from finrag_pipelines.training import verl_sft as vl
    from finrag_pipelines.training.runs import MANIFEST_NAME
    from finrag_pipelines.training.verl_common import last_step_metrics

    t_start = time.monotonic()
    summary: dict = {"status": "started", "cpu_smoke": args.cpu_smoke}
    summary["versions"] = {
        n: _version(n)
        for n in ("verl", "torch", "transformers", "tokenizers", "peft", "ray", "hydra-core", "tensordict")
    }
    summary["python"] = sys.version.split()[0]

    def dump() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    from finrag_pipelines.provenance.versions import latest_path  # the newest version the sft pipeline saved

    train = latest_path(args.data_dir / "sft_train.parquet")
    val = latest_path(args.data_dir / "sft_val.parquet")

    t0 = time.monotonic()
    tiny = build_tiny_qwen3(
        _texts(train, 3000),
        args.work / "tiny",
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        num_layers=args.layers,
    )
    base = _causal_lm_copy(tiny, args.work / "base")
    summary["model"] = {
        "hidden": args.hidden,
        "layers": args.layers,
        "config": {
            k: v
            for k, v in json.loads((base / "config.json").read_text()).items()
            if k
            in ("vocab_size", "hidden_size", "num_hidden_layers", "dtype", "torch_dtype", "architectures")
        },
    }
    summary["seconds_build_model"] = round(time.monotonic() - t0, 1)

    params = {
        "model_path": str(base),
        "train_files": str(train),
        "val_files": str(val),
        "output_dir": str(args.work / "sft"),
        "messages_key": "messages",
        "lora_rank": 16,
        "lora_alpha": 32,
        "target_modules": "all-linear",
        "use_liger": False,
        "ulysses_sequence_parallel_size": 1,
        "learning_rate": args.lr,
        "lr_warmup_steps_ratio": 0.05,
        "lr_scheduler_type": "cosine",
        "total_epochs": 1,
        "total_training_steps": args.steps,
        "train_batch_size": args.batch,
        "micro_batch_size_per_gpu": args.micro_batch,
        "max_length": args.max_length,
        "truncation": "right",
        "nproc_per_node": 1,
        "save_freq": -1,
        "test_freq": max(1, args.steps // 2),
        "project_name": "finrag",
        "experiment_name": "verl-sft-gpu-check",
        "logger": ["console"],
        "dataloader_num_workers": 2,
        "seed": 42,
        "cpu_smoke": args.cpu_smoke,
        # cpu_smoke already adds the sdpa override (CPU_SMOKE_OVERRIDES); on the GPU: no flash-attn there
        "extra_overrides": [] if args.cpu_smoke else ["+model.override_config.attn_implementation=sdpa"],
    }
    config = vl.VerlSFTConfig.from_params(params)
    entry = vl.SFT_ENTRY
    if args.cpu_smoke:
        entry = Path(vl.__file__).resolve().parents[3] / "tests" / "training" / "verl_cpu_shim.py"
    argv, env = vl.build_sft_command(config, entry=entry)
    summary["command"] = {"argv": argv, "env": env, "entry": str(entry)}
    summary["status"] = "training"
    dump()

    merged_dir = args.work / "merged"
    t0 = time.monotonic()
    try:
        vl.train_sft(config, merged_dir, entry=entry, progress=False)
    except Exception as exc:  # record and re-raise: the summary says how far it got
        summary["status"] = "failed"
        summary["error"] = f"{type(exc).__name__}: {exc}"[-4000:]
        summary["seconds_total"] = round(time.monotonic() - t_start, 1)
        dump()
        raise
    summary["seconds_train_and_merge"] = round(time.monotonic() - t0, 1)

    work = Path(config.output_dir)
    log_path = work / "train.log"
    steps = _step_losses(log_path)
    train_steps = sorted(s for s, m in steps.items() if "train/loss" in m)
    manifest = json.loads((work / MANIFEST_NAME).read_text())
    summary["steps"] = manifest["metrics"].get("step")
    summary["train_loss_first"] = steps[train_steps[0]]["train/loss"] if train_steps else None
    summary["train_loss_last"] = steps[train_steps[-1]]["train/loss"] if train_steps else None
    summary["train_loss_by_step"] = {
        s: round(steps[s]["train/loss"], 4) for s in train_steps[:: max(1, len(train_steps) // 10)]
    }
    summary["val_loss"] = {s: m["val/loss"] for s, m in steps.items() if "val/loss" in m}
    summary["last_step_metrics"] = last_step_metrics(log_path)
    summary["command"]["argv"] = manifest["argv"]  # as run: default_local_dir is checkpoints/<data>-<config>
    summary["checkpoint"] = manifest["checkpoint"]
    summary["manifest_versions"] = manifest["versions"]
    summary["merge_tail"] = [line for line in log_path.read_text().splitlines() if "model_merger" in line][
        -3:
    ]

    # the merged folder loads with plain transformers and generates
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = "cpu" if args.cpu_smoke else "cuda"
    t0 = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(str(merged_dir), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(merged_dir), local_files_only=True).to(device).eval()
    summary["merged_model"] = {
        "dir_files": sorted(p.name for p in merged_dir.iterdir()),
        "dtype": str(model.dtype),
        "config_dtype": json.loads((merged_dir / "config.json").read_text()).get("dtype"),
        "lora_keys_left": sum("lora" in k for k in model.state_dict()),
        "device": str(next(model.parameters()).device),
    }
    import pandas as pd

    question = pd.read_parquet(val)["messages"].iloc[0][0]["content"]
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(device)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=24, do_sample=False)
    new = out[0, ids["input_ids"].shape[1] :]
    summary["generation"] = {
        "prompt_tokens": int(ids["input_ids"].shape[1]),
        "new_tokens": int(new.shape[0]),
        "text": tokenizer.decode(new, skip_special_tokens=False),
    }
    summary["seconds_load_generate"] = round(time.monotonic() - t0, 1)
    if torch.cuda.is_available() and not args.cpu_smoke:
        summary["gpu"] = torch.cuda.get_device_name(0)
        summary["gpu_max_memory_allocated_mib_generate"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    summary["status"] = "ok"
    summary["seconds_total"] = round(time.monotonic() - t_start, 1)
    dump()
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
