"""Which training data helps the learned first-stage fusion: the tune split, distilled queries, or both?

Usage::

    .venv/bin/python benchmarks/fusion_training_data.py [--set fintruthqa] [--max-distilled 2000]

Needs ``kedro run --env demo --pipelines index_build,evaluation`` (indexes, runs, splits) and
``kedro run --env demo --pipelines persona_index,query_distill`` (``distilled_queries``) first.

Every variant is scored exactly as evaluation chooses its ``fusion``: repeated k-fold cross-validation on the
``tune`` split (``evaluation.first_stage_fusion``: folds, repeats, seed, LightGBM settings), each tune fold
scored by a model that never saw it. The LightGBM model is trained on

* ``tune``: the other tune folds (what the pipeline does);
* ``tune+distilled``: the other tune folds plus distilled queries, each with its source document as the one
  relevant document, and the candidates the same retrievers find for it;
* ``distilled``: distilled queries only (one model, scored on every tune query).

The ``report`` split is never read. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT / "src") not in sys.path:
    sys.path.insert(0, str(_ROOT / "src"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from finrag_pipelines.retrieval.bm25.index import BM25Index  # noqa: E402
from finrag_pipelines.retrieval.candidates import CandidateTable  # noqa: E402
from finrag_pipelines.retrieval.first_stage import compare_by_cross_validation, metric_functions  # noqa: E402
from finrag_pipelines.retrieval.learned_fusion import FeatureBuilder, LearnedFusion  # noqa: E402
from finrag_pipelines.retrieval.runs import frame_to_run  # noqa: E402
from finrag_pipelines.text.corpus import indexable  # noqa: E402


def _conf() -> dict[str, Any]:
    conf = yaml.safe_load((_ROOT / "conf/base/parameters_evaluation.yml").read_text(encoding="utf-8"))
    return conf["evaluation"]["first_stage_fusion"]


def _retrievers(data: Path, name: str, names: list[str]) -> dict[str, Any]:
    """The fusion's retrievers, loaded from index_build's folders (dense: USE over the embedding cache)."""
    out: dict[str, Any] = {}
    for retriever in names:
        if retriever.startswith("bm25"):
            out[retriever] = BM25Index.load(data / "06_models" / name / retriever)
        elif retriever == "dense":
            from finrag_pipelines.embedding.store import EmbeddingStore
            from finrag_pipelines.embedding.use_encoder import USEEncoder
            from finrag_pipelines.retrieval.dense import DenseIndex, DenseRetriever

            index = DenseIndex.load(data / "06_models" / name / "dense_base")
            store = EmbeddingStore(data / "04_feature/embedding_cache")
            out[retriever] = DenseRetriever(index, USEEncoder(threads=2), store=store)
        else:
            raise SystemExit(f"{retriever}: this benchmark loads bm25* and dense only")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the comparison and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", default="fintruthqa", help="the evaluated set's name (data sub-folders)")
    parser.add_argument(
        "--max-distilled", type=int, default=2000, help="distilled queries used (seeded sample)"
    )
    args = parser.parse_args(argv)
    conf, data = _conf(), _ROOT / "data"
    distilled_path = data / "05_model_input" / args.set / "distilled_queries.parquet"
    settings_path = data / "07_model_output" / args.set / "fusion_settings.json"
    for path in (distilled_path, settings_path):
        if not path.is_file():
            raise SystemExit(f"{path} is missing; run the pipelines named in this script's docstring first")
    retrievers = json.loads(settings_path.read_text(encoding="utf-8"))["retrievers"]
    corpus = pd.read_parquet(data / "03_primary" / args.set / "corpus.parquet")
    queries = pd.read_parquet(data / "03_primary" / args.set / "eval_queries.parquet")
    qrels = pd.read_parquet(data / "03_primary" / args.set / "eval_qrels.parquet")
    splits = pd.read_parquet(data / "05_model_input" / args.set / "query_splits.parquet")
    distilled = pd.read_parquet(distilled_path)
    ids, texts, _ = indexable(corpus["doc_id"], corpus["title"], corpus["text"])

    relevance: dict[str, dict[str, int]] = {}
    for qid, did, grade in zip(qrels["query_id"], qrels["doc_id"], qrels["score"]):
        if grade > 0:
            relevance.setdefault(str(qid), {})[str(did)] = int(grade)
    tune_ids = set(splits.loc[splits["split"] == "tune", "query_id"])
    tune = queries[queries["query_id"].isin(tune_ids) & queries["query_id"].isin(relevance)]
    qids = list(tune["query_id"])
    runs_dir = data / "07_model_output" / args.set / "runs"
    tune_runs = {r: frame_to_run(pd.read_parquet(runs_dir / f"{r}.parquet"), qids) for r in retrievers}
    table = CandidateTable.from_runs(tune_runs, conf["depth"])

    picked = distilled.sample(n=min(args.max_distilled, len(distilled)), random_state=conf["seed"])
    indexes = _retrievers(data, args.set, retrievers)
    d_texts = [str(t) for t in picked["query"]]
    d_runs = {r: indexes[r].search(d_texts, conf["depth"]) for r in retrievers}
    d_table = CandidateTable.from_runs(d_runs, conf["depth"])

    views = {v: indexes[v].tokenizer for v in conf["views"]}
    builder = FeatureBuilder(dict(zip(ids, texts)), views)
    x_tune = builder.features(table, list(tune["text"]))
    y_tune = [np.array([relevance[q].get(d, 0) for d in c.doc_ids]) for q, c in zip(qids, table.queries)]
    x_dist = builder.features(d_table, d_texts)
    y_dist = [
        np.array([int(d == str(g)) for d in c.doc_ids]) for g, c in zip(picked["doc_id"], d_table.queries)
    ]
    print(
        f"{len(qids)} tune queries; {len(d_texts)} distilled queries, source document among the candidates "
        f"for {sum(int(y.max(initial=0) > 0) for y in y_dist)}"
    )

    def fit(features: list[np.ndarray], labels: list[np.ndarray]) -> LearnedFusion:
        return LearnedFusion.fit(
            features, labels, retrievers=retrievers, views=conf["views"], params=conf["learned"]["lightgbm"]
        )

    def learner(extra_x: list[np.ndarray], extra_y: list[np.ndarray]) -> Any:
        def learn(train: np.ndarray) -> Any:
            model = fit([x_tune[p] for p in train] + extra_x, [y_tune[p] for p in train] + extra_y)
            return lambda p, _candidates: model.score(x_tune[p])

        return learn

    only_distilled = fit(x_dist, y_dist)
    learners = {
        "tune": learner([], []),
        "tune+distilled": learner(x_dist, y_dist),
        "distilled": lambda _train: lambda p, _candidates: only_distilled.score(x_tune[p]),
    }
    cv = compare_by_cross_validation(
        table,
        metric_functions([relevance[q] for q in qids], conf["tune_metric"], [1, 3, 5, 10], 10),
        step=conf["weight_step"],
        cutoff=10,
        folds=conf["cv_folds"],
        seed=conf["seed"],
        learners=learners,
        repeats=conf["cv_repeats"],
    )
    print(f"| trained on | {conf['tune_metric']} on held-out tune folds |\n|---|---|")
    for method, value in cv.per_method.items():
        label = "weighted (no model)" if method == "weighted" else method
        print(f"| {label} | {value:.4f} |")
    out = {"set": args.set, "tune_queries": len(qids), "distilled_queries": len(d_texts), "cv": cv.per_method}
    print(json.dumps(out, ensure_ascii=False))
    return out


if __name__ == "__main__":
    main()
