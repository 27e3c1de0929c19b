"""Run the GPU path of embedding fine-tuning for real: ms-swift InfoNCE in bf16 on a CUDA device.

What it does, with the project's own launcher (``finrag_pipelines.training.swift``) and encoder:

1. builds a small Qwen3 from the corpus (no model hub: weights are random, the tokenizer is trained here);
2. trains it with ``swift sft --task_type embedding --loss_type infonce`` in bfloat16 on the GPU
   (LoRA by default, or ``--tuner full``), then merges the LoRA with ``swift export``;
3. loads the base and the merged model with ``HFEncoder`` (device auto → cuda, dtype auto → bf16), encodes the
   corpus and the queries, and scores MRR@10 / Top-10 of both by exact inner product on the GPU.

It prints one JSON line (and writes it to ``--out``). Usage (on a GPU machine, after ``make demo`` produced
the InfoNCE rows)::

    python scripts/gpu_check_embedding.py --steps 300 --out gpu_check.json

The model is a small random-init Qwen3, so the retrieval numbers show the loop working on a GPU, not what a
pretrained Qwen3-Embedding reaches.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _read_beir(folder: Path) -> tuple[list[str], list[str], list[str], list[str], dict[str, set[str]]]:
    doc_ids, docs = [], []
    for line in (folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        doc_ids.append(str(row["_id"]))
        docs.append(((row.get("title") or "") + "\n" + row["text"]).strip())
    qids, queries = [], []
    for line in (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        qids.append(str(row["_id"]))
        queries.append(row["text"])
    rel: dict[str, set[str]] = {}
    for i, line in enumerate((folder / "qrels.tsv").read_text(encoding="utf-8").splitlines()):
        parts = line.split("\t")
        if i == 0 and not parts[-1].strip().lstrip("-").isdigit():
            continue  # header
        if int(parts[-1]) > 0:
            rel.setdefault(parts[0], set()).add(parts[1])
    return doc_ids, docs, qids, queries, rel


def _score(encoder, doc_ids, docs, qids, queries, rel) -> dict[str, float]:
    import torch

    t0 = time.perf_counter()
    dvec = torch.from_numpy(np.asarray(encoder.encode_documents(docs), dtype=np.float32)).cuda()
    t_docs = time.perf_counter() - t0
    keep = [i for i, q in enumerate(qids) if q in rel]
    qvec = torch.from_numpy(
        np.asarray(encoder.encode_queries([queries[i] for i in keep]), dtype=np.float32)
    ).cuda()
    top = (qvec @ dvec.T).topk(10, dim=1).indices.cpu().numpy()
    rr, hit = [], []
    for row, i in zip(top, keep):
        ranks = [r for r, j in enumerate(row, start=1) if doc_ids[j] in rel[qids[i]]]
        rr.append(1.0 / ranks[0] if ranks else 0.0)
        hit.append(1.0 if ranks else 0.0)
    return {
        "mrr@10": round(float(np.mean(rr)), 4),
        "top10": round(float(np.mean(hit)), 4),
        "n_queries": len(keep),
        "docs_per_s": round(len(docs) / t_docs, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="data/01_raw/retrieval/fintruthqa")
    parser.add_argument("--rows", default="data/05_model_input/fintruthqa")
    parser.add_argument("--work", default="/tmp/gpu_check")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--tuner", choices=["lora", "full"], default="lora")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import torch

    from finrag_pipelines.embedding.hf_encoder import HFEncoder
    from finrag_pipelines.embedding.tiny_model import build_tiny_qwen3
    from finrag_pipelines.training import swift as sw
    from finrag_pipelines.training.runs import MANIFEST_NAME

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this script checks the GPU path (bf16) of embedding fine-tuning")
    work = Path(args.work)
    doc_ids, docs, qids, queries, rel = _read_beir(Path(args.dataset))
    result: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    t0 = time.perf_counter()
    base = build_tiny_qwen3(docs[:2000], work / "base", hidden_size=args.hidden, num_layers=args.layers)
    config = sw.SwiftEmbeddingConfig(
        tuner_type=args.tuner,
        lora_rank=16,
        lora_alpha=32,
        lora_dropout=0.05,
        target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        learning_rate=1e-3 if args.tuner == "lora" else 3e-4,
        num_train_epochs=1,
        max_steps=args.steps,
        per_device_train_batch_size=32,
        gradient_accumulation_steps=1,
        warmup_ratio=0.05,
        max_length=256,
        truncation_strategy="right",
        save_steps=args.steps,
        logging_steps=10,
        torch_dtype="bfloat16",
        nproc_per_node=1,
        deepspeed=None,
        use_liger_kernel=True,
        infonce_temperature=0.05,
        infonce_use_batch=True,
        infonce_mask_fake_negative=True,
        dataloader_num_workers=2,
        seed=42,
    )
    rows = Path(args.rows)
    t1 = time.perf_counter()
    from finrag_pipelines.provenance.versions import latest_path  # the newest version negative_mining saved

    dev = latest_path(rows / "infonce_dev.jsonl") if (rows / "infonce_dev.jsonl").exists() else None
    train = latest_path(rows / "infonce_train.jsonl")
    merged = sw.train_embedding(
        config,
        base,
        train,
        dev if dev is not None and dev.is_file() else None,
        work / "run",
        work / "merged",
        progress=False,
    )
    t2 = time.perf_counter()
    manifest = json.loads((work / "run" / MANIFEST_NAME).read_text(encoding="utf-8"))
    result.update(
        {
            "tuner": args.tuner,
            "steps": args.steps,
            "model": f"qwen3 hidden {args.hidden} x {args.layers} layers",
            "build_s": round(t1 - t0, 1),
            "train_and_merge_s": round(t2 - t1, 1),
            "manifest_status": manifest.get("status"),
            "argv_has_bf16": "bfloat16" in manifest.get("argv", []),
        }
    )
    log = (work / "run" / "train.log").read_text(encoding="utf-8", errors="replace").splitlines()
    losses = [m["loss"] for m in map(sw.parse_progress, log) if m and "loss" in m]
    result["loss_first_last"] = [losses[0], losses[-1]] if losses else None
    task = "给定一个金融领域的问题，检索能够回答该问题的文档"
    for name, folder in (("pretrained", base), ("finetuned", merged)):
        encoder = HFEncoder(folder, query_task=task, max_length=256, batch_size=128)
        result[name] = {
            **_score(encoder, doc_ids, docs, qids, queries, rel),
            "dtype": str(encoder.dtype),
            "device": str(encoder.device),
        }
    line = json.dumps(result, ensure_ascii=False)
    print(line, flush=True)
    if args.out:
        Path(args.out).write_text(line + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
