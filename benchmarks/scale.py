"""Scale benchmark: how time and memory grow with the corpus, from 10 thousand to 1 million documents.

Usage::

    .venv/bin/python benchmarks/scale.py --sizes 10000,100000,1000000 [--workdir data/09_scale]
        [--stages corpus_prep,bm25_build,...] [--dim 1024] [--out benchmarks/results/scale.jsonl]
        [--plot benchmarks/results/scale.png]

Some stages again, into the results of an earlier full run (the other stages' numbers are kept)::

    .venv/bin/python benchmarks/scale.py --sizes 10000,100000,1000000 --stages ngram_build,ngram_search_mmap \
        --merge-into benchmarks/results/scale.jsonl

For each size a corpus is recombined from the bundled real texts (``scale_corpus.py``: real clause and length
distributions, renumbered digits, 2 % exact and 2 % near duplicates), then every stage runs in a process of
its own (``scale_stages.py``) so its peak memory is its own:

``corpus_prep`` (parse, normalise, exact + near-duplicate removal), ``bm25_build`` (word BM25: tokenise,
build, save), ``bm25_search`` / ``bm25_search_mmap`` (load into memory / memory-mapped, queries per second),
``ngram_build`` / ``ngram_search_mmap`` (the character n-gram BM25 of ``index_build.bm25_ngram``),
``dense_encode`` (document vectors through the embedding store with a deterministic stand-in encoder, into a
memmap; cold, then warm from the store), ``dense_flat`` / ``dense_hnsw`` / ``dense_ivfpq`` (FAISS build and
search, recall@10 against flat), ``dense_hnsw_load`` (memory-mapped load), ``mining`` (negative_mining's nodes
over ``--mining-queries`` queries, HNSW + BM25 candidates), ``journal_write`` / ``journal_resume`` /
``journal_rebuild`` (an LLM journal of ``size`` records: resume with its index, and without it),
``server`` (the real app, hybrid, 16 concurrent clients: p50 / p99).

Time per stage: ``seconds`` is the stage's own wall time (imports excluded), ``wall_s`` the process's,
``cpu_s`` its CPU time (user + system, its own children included), which other load on a shared machine moves
less. Peak memory per stage: ``peak_rss_mb`` is the child's ``ru_maxrss`` from ``wait4`` (resident memory,
mapped file pages included); ``tree_rss_mb`` is the highest sum of resident memory over the child and its own
children (tokenizer workers), sampled every 0.2 s. A stage that fails is recorded with its error and the run
goes on.

Prints one JSON line per size (also appended to ``--out``) and writes a log-log chart of time and peak
memory against corpus size (``--plot``).

``--merge-into FILE`` runs only the chosen stages and writes them into FILE's line for the same size (a new
line if it has none) instead of appending: each stage measured this way carries ``measured_at`` and
``commit``, and the line's ``merged`` list says which stages were replaced when, at which commit and over
which corpus (``corpus_sha256`` of ``corpus.jsonl``, regenerated from the seed ``size``, so identical to the
full run's unless the generator changed). Stages without ``measured_at`` come from the full run that
``finished`` dates. The chart is then drawn from every line of FILE. A stage reads what earlier stages left
in the size's folder (``corpus_prep`` writes the table the indexes read, ``*_build`` the index ``*_search``
loads), so run a stage alone only where they have run before, or name them too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STAGES = [
    "corpus_prep",
    "bm25_build",
    "bm25_search",
    "bm25_search_mmap",
    "ngram_build",
    "ngram_search_mmap",
    "dense_encode",
    "dense_flat",
    "dense_hnsw",
    "dense_hnsw_load",
    "dense_ivfpq",
    "mining",
    "journal_write",
    "journal_resume",
    "journal_rebuild",
    "server",
]
PLOTTED = [
    "corpus_prep",
    "bm25_build",
    "ngram_build",
    "dense_encode",
    "dense_hnsw",
    "mining",
    "journal_resume",
    "server",
]


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        proc = psutil.Process(pid)
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total
    except psutil.Error:
        return 0


def run_child(
    stage: str, folder: Path, options: dict[str, Any], nice: int, memory_cap_gb: float = 14.0
) -> dict[str, Any]:
    """Run one stage in a child process; its result plus wall time, CPU time, peak RSS and tree RSS.

    A child whose process tree goes over ``memory_cap_gb`` of resident memory is killed (its whole
    process group, which it leads) and recorded as such, so a stage that does not fit cannot push the
    shared machine into swapping or the OOM killer.
    """
    result_file = folder / "results" / f"{stage}.json"
    log_file = folder / "logs" / f"{stage}.log"
    for path in (result_file, log_file):
        path.parent.mkdir(parents=True, exist_ok=True)
    result_file.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "KEDRO_DISABLE_TELEMETRY": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "DISABLE_TQDM": "1",
        # FAISS / BLAS threads sleep instead of spinning while they wait: on a shared machine spinning
        # OpenMP threads slowed IVF-PQ training 20x and HNSW builds 2x (see README, Scaling out)
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
    }
    command = [
        sys.executable,
        str(ROOT / "benchmarks/scale_stages.py"),
        stage,
        str(folder),
        json.dumps(options),
        str(result_file),
    ]
    if nice:
        command = ["nice", "-n", str(nice), *command]
    started = time.perf_counter()
    with log_file.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )
        peak_tree = 0
        capped = False
        done = threading.Event()

        def sample() -> None:
            nonlocal peak_tree, capped
            while not done.wait(0.2):
                peak_tree = max(peak_tree, _tree_rss(proc.pid))
                if peak_tree > memory_cap_gb * 1e9 and not capped:
                    capped = True
                    os.killpg(proc.pid, signal.SIGKILL)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    out: dict[str, Any] = {}
    if proc.returncode == 0 and result_file.is_file():
        out.update(json.loads(result_file.read_text(encoding="utf-8")))
    else:
        tail = log_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        out["error"] = f"exit {proc.returncode}: {' | '.join(tail)[-400:]}"
        if capped:
            out["error"] = f"killed: its processes held over {memory_cap_gb} GB resident"
    out["wall_s"] = round(wall, 2)
    out["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)  # the child and its reaped children
    out["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # Linux: kilobytes
    out["tree_rss_mb"] = round(peak_tree / 1e6, 1)
    return out


def peak_gib(stage: dict[str, Any]) -> float:
    """A stage's peak memory in GiB: the larger of ``peak_rss_mb`` (MiB, from ``ru_maxrss``) and
    ``tree_rss_mb`` (MB of 10^6 bytes, sampled)."""
    return max(stage.get("peak_rss_mb", 0.0) * 2**20, stage.get("tree_rss_mb", 0.0) * 1e6) / 2**30


def plot(records: list[dict[str, Any]], target: Path) -> None:
    """Log-log time and peak memory against corpus size, one line per stage (and an n log n guide)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    sizes = [r["size"] for r in records]
    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(13, 5.2))
    for stage in PLOTTED:
        points = [(r["size"], r["stages"].get(stage, {})) for r in records]
        points = [(n, s) for n, s in points if "error" not in s and s]
        if not points:
            continue
        xs = [n for n, _ in points]
        ax_time.plot(xs, [max(s["cpu_s"], 1e-2) for _, s in points], marker="o", label=stage)
        ax_mem.plot(xs, [peak_gib(s) for _, s in points], marker="o", label=stage)
    if len(sizes) > 1:
        n = np.array(sorted(sizes), dtype=float)
        guide = n * np.log(n) / (n[0] * np.log(n[0]))
        ax_time.plot(n, guide, "k:", label="n log n (from 1 s)")
    ax_mem.axhline(8, color="red", linestyle="--", label="8 GiB goal")
    for ax, label in ((ax_time, "CPU seconds"), (ax_mem, "peak RSS (GiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("documents")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax_time.set_title("CPU time per stage (user + system)")
    ax_mem.set_title("peak memory per stage (one process each)")
    ax_mem.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"finrag_pipelines scale benchmark ({os.cpu_count()} cores)")
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110)


def _git_commit(ignore: Sequence[Path] = ()) -> str:
    """The checkout's commit (``+dirty`` with uncommitted changes to tracked files other than ``ignore``,
    the results this run writes itself), or ``unknown`` without git."""
    excludes = []
    for path in ignore:
        resolved = path.resolve()
        if resolved.is_relative_to(ROOT):
            excludes.append(f":(exclude){resolved.relative_to(ROOT).as_posix()}")
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *excludes]
        dirty = subprocess.run(status, cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read 4 MB at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a results file (none if it does not exist); a broken line is an error naming it."""
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{path}:{number}: not a JSON line ({exc}); fix or remove that line") from exc
    return records


def merge_record(
    records: list[dict[str, Any]], new: dict[str, Any], note: dict[str, Any]
) -> list[dict[str, Any]]:
    """``records`` with ``new``'s stages written into the last line of the same size (appended if none).

    Each merged stage gets ``measured_at`` and ``commit`` from ``note``; the line's ``merged`` list gets
    ``note`` (with the stages it replaced), and ``options_differ`` there when the options were not the
    line's own. Other stages and fields of the line stay as they were.
    """
    same = [i for i, r in enumerate(records) if r.get("size") == new["size"]]
    stamped = {
        name: {**result, "measured_at": note["at"], "commit": note["commit"]}
        for name, result in new["stages"].items()
    }
    if not same:
        entry = {**note, "stages": sorted(stamped)}
        return [*records, {**new, "stages": stamped, "merged": [entry]}]
    target = dict(records[same[-1]])
    entry = {**note, "stages": sorted(stamped)}
    if target.get("options") != new["options"]:
        entry["options_differ"] = new["options"]
    target["stages"] = {**target.get("stages", {}), **stamped}
    target["merged"] = [*target.get("merged", []), entry]
    return [*records[: same[-1]], target, *records[same[-1] + 1 :]]


def write_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Rewrite a results file atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated corpus sizes (documents)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "data/09_scale")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of the stages")
    parser.add_argument(
        "--dim", type=int, default=1024, help="stand-in encoder dimension (Qwen3-Embedding-0.6B: 1024)"
    )
    parser.add_argument("--mining-queries", type=int, default=10_000)
    parser.add_argument("--search-queries", type=int, default=1_000, help="queries timed per search stage")
    parser.add_argument("--server-requests", type=int, default=480)
    parser.add_argument("--ef-construction", type=int, default=80, help="HNSW build beam width")
    parser.add_argument("--regenerate", action="store_true", help="rebuild corpora that already exist")
    parser.add_argument("--nice", type=int, default=0, help="run the stages under `nice -n`")
    parser.add_argument(
        "--memory-cap-gb", type=float, default=14.0, help="kill a stage whose processes hold more (GB)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/scale.jsonl")
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks/results/scale.png")
    parser.add_argument(
        "--merge-into",
        type=Path,
        default=None,
        help="write the stages run into this results file's line of the same size instead of appending",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    stages = [s for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stages {unknown}; choose from {STAGES}")
    records: list[dict[str, Any]] = []
    for size in sizes:
        folder = (args.workdir / str(size)).resolve()
        options = {
            "size": size,
            "dim": args.dim,
            "mining_queries": args.mining_queries,
            "search_queries": args.search_queries,
            "server_requests": args.server_requests,
            "ef_construction": args.ef_construction,
        }
        record: dict[str, Any] = {"size": size, "options": options, "stages": {}}
        if args.regenerate or not (folder / "corpus.jsonl").is_file():
            record["stages"]["generate"] = run_child(
                "generate", folder, options, args.nice, args.memory_cap_gb
            )
            print(f"[{size}] generate: {record['stages']['generate']}", flush=True)
        for stage in stages:
            record["stages"][stage] = run_child(stage, folder, options, args.nice, args.memory_cap_gb)
            print(f"[{size}] {stage}: {record['stages'][stage]}", flush=True)
        record.update(
            cpus=os.cpu_count(), python=platform.python_version(), finished=time.strftime("%Y-%m-%dT%H:%M:%S")
        )
        print(json.dumps(record, ensure_ascii=False), flush=True)
        if args.merge_into is not None:
            note = {
                "at": record["finished"],
                "commit": _git_commit(ignore=(args.merge_into, args.plot)),
                "corpus_sha256": file_sha256(folder / "corpus.jsonl"),
            }
            write_records(args.merge_into, merge_record(read_records(args.merge_into), record, note))
            print(f"[{size}] merged {stages} into {args.merge_into}", flush=True)
        else:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with args.out.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        records.append(record)
    charted = read_records(args.merge_into) if args.merge_into is not None else records
    if len(charted) > 1:
        plot(sorted(charted, key=lambda r: r["size"]), args.plot)
        print(f"chart: {args.plot}", flush=True)
    return records


if __name__ == "__main__":
    main()
