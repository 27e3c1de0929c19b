"""evaluation's first-stage fusion: fitted on tune only, compared by cross-validation, fixed for held-out."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from finrag_pipelines.datasets.fusion import FixedFusionSettingsDataset
from finrag_pipelines.pipelines.evaluation import create_pipeline
from finrag_pipelines.pipelines.evaluation import first_stage as fs
from finrag_pipelines.pipelines.evaluation.nodes import retrieve_bm25
from finrag_pipelines.pipelines.evaluation.params import FirstStageFusionParams, MetricParams, RetrieveParams
from finrag_pipelines.retrieval.bm25.index import BM25Index
from finrag_pipelines.retrieval.bm25.scoring import BM25Config
from finrag_pipelines.retrieval.runs import run_to_frame, unavailable_frame, unavailable_reason
from finrag_pipelines.retrieval.types import Hit, Unavailable
from finrag_pipelines.text.corpus import indexable
from finrag_pipelines.text.ngram import CharNgramTokenizer
from finrag_pipelines.text.tokenize import FinanceTokenizer

from .test_nodes import METRICS

ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]
N_QUERIES = 40
NOT_GIVEN = Unavailable("fixed fusion settings", "not given")


def params(**changes) -> FirstStageFusionParams:
    conf = yaml.safe_load((ROOT / "conf/base/parameters_evaluation.yml").read_text(encoding="utf-8"))
    block = conf["evaluation"]["first_stage_fusion"]
    block["learned"]["lightgbm"].update(n_estimators=20, min_child_samples=2, n_jobs=1)
    return FirstStageFusionParams(**{**block, "cv_repeats": 1, **changes})


@pytest.fixture(scope="module")
def world(disc_corpus):
    """A corpus, queries cut from its documents, the three lexical indexes and their runs, a dense run."""
    docs = disc_corpus[:80]
    corpus = pd.DataFrame({"doc_id": [d for d, _ in docs], "title": "", "text": [t for _, t in docs]})
    ids, texts, digest = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    config = BM25Config(k1=1.2, b=0.75, method="lucene", tf_cap=None, domain_term_weight=1.0)
    indexes = {
        "bm25": BM25Index.build(ids, texts, FinanceTokenizer(), config, digest, name="bm25"),
        "bm25_ngram": BM25Index.build(ids, texts, CharNgramTokenizer(), config, digest, name="bm25_ngram"),
        "bm25_plain": BM25Index.build(
            ids, texts, FinanceTokenizer.plain(), config, digest, name="bm25_plain"
        ),
    }
    queries = pd.DataFrame(
        {
            "query_id": [f"q{i}" for i in range(N_QUERIES)],
            "text": [texts[2 * i][10:22] for i in range(N_QUERIES)],
        }
    )
    qrels = pd.DataFrame(
        {"query_id": queries["query_id"], "doc_id": [ids[2 * i] for i in range(N_QUERIES)], "score": 1}
    )
    splits = pd.DataFrame({"query_id": queries["query_id"], "split": ["tune"] * 25 + ["report"] * 15})
    retrieve = RetrieveParams(depth=20, batch_size=16)
    runs = {name: retrieve_bm25(index, corpus, queries, retrieve) for name, index in indexes.items()}
    # a dense run that always ranks the gold second (a useful but weak signal)
    qids = list(queries["query_id"])
    dense = [
        [Hit(ids[(2 * i + 1) % len(ids)], 0.9), Hit(ids[2 * i], 0.8), Hit(ids[(2 * i + 3) % len(ids)], 0.1)]
        for i in range(N_QUERIES)
    ]
    runs["dense"] = run_to_frame(qids, dense)
    runs["dense_pretrained"] = unavailable_frame("no pretrained model")
    runs["dense_finetuned"] = unavailable_frame("no fine-tuned model yet")
    return corpus, queries, qrels, splits, indexes, runs


def tune(world, fixed=NOT_GIVEN, qrels=None, **changes) -> dict:
    corpus, queries, default_qrels, splits, indexes, runs = world
    return fs.tune_first_stage_fusion(
        queries,
        default_qrels if qrels is None else qrels,
        splits,
        corpus,
        indexes["bm25"],
        indexes["bm25_ngram"],
        indexes["bm25_plain"],
        fixed,
        params(**changes),
        METRICS,
        **runs,
    )


def test_settings_are_fitted_on_tune_only_and_record_the_choice(world) -> None:
    settings = tune(world)
    assert settings["retrievers"] == ["bm25", "bm25_ngram", "bm25_plain", "dense"]
    assert settings["selection"]["left_out"] == {"dense_finetuned": "no fine-tuned model yet"}
    assert settings["selection"]["n_tune_queries"] == 25 and set(settings["selection"]["cv"]) == {
        "weighted",
        "learned",
    }
    assert settings["method"] == max(settings["selection"]["cv"], key=settings["selection"]["cv"].get)
    assert abs(sum(settings["weights"].values()) - 1) < 1e-9 and settings["learned"]["model"]
    json.dumps(settings)  # the artefact is JSON
    # the report split's judgements never enter: changing them changes nothing
    _, queries, qrels, _, _, _ = world
    docs = qrels["doc_id"].tolist()
    shuffled = qrels.assign(doc_id=docs[:25] + docs[25:][::-1])
    assert tune(world, qrels=shuffled) == settings


def test_fusion_nodes_give_each_method_and_the_winner(world) -> None:
    corpus, queries, _, _, indexes, runs = world
    settings = tune(world)
    args = (queries, corpus, settings, indexes["bm25"], indexes["bm25_ngram"], indexes["bm25_plain"])
    weighted = fs.fuse_first_stage_weighted(*args, **runs)
    learned = fs.fuse_first_stage_learned(*args, **runs)
    winner = fs.fuse_first_stage(*args, **runs)
    assert (
        set(weighted["query_id"]) == set(queries["query_id"])
        and weighted.groupby("query_id").size().max() <= 100
    )
    pd.testing.assert_frame_equal(winner, learned if settings["method"] == "learned" else weighted)
    no_model = tune(world, learned={"enabled": False, "lightgbm": {}})
    assert no_model["method"] == "weighted" and no_model["learned"] is None
    args = (queries, corpus, no_model, indexes["bm25"], indexes["bm25_ngram"], indexes["bm25_plain"])
    assert "learned.enabled is false" in unavailable_reason(fs.fuse_first_stage_learned(*args, **runs))


def test_fixed_settings_are_applied_without_tuning(world, tmp_path) -> None:
    settings = tune(world)
    path = tmp_path / "fusion_settings.json"
    path.write_text(json.dumps(settings))
    fixed = FixedFusionSettingsDataset(str(path)).load()
    corpus, queries, qrels, splits, indexes, runs = world
    held_out = splits.assign(split="report")  # a test set: nothing to tune on, and nothing is
    out = fs.tune_first_stage_fusion(
        queries,
        qrels,
        held_out,
        corpus,
        indexes["bm25"],
        indexes["bm25_ngram"],
        indexes["bm25_plain"],
        fixed,
        params(),
        METRICS,
        **runs,
    )
    assert out["weights"] == settings["weights"] and out["learned"] == settings["learned"]
    assert out["source"].startswith("fixed:") and str(path) in out["source"]
    from finrag_pipelines.pipelines.evaluation.report_fusion import first_stage_fusion_lines

    assert "Nothing is fitted on this set" in "\n".join(first_stage_fusion_lines(out))
    assert "Nothing here is fitted on `report`" in "\n".join(first_stage_fusion_lines(settings))
    missing = {**runs, "dense": unavailable_frame("no dense index")}
    with pytest.raises(ValueError, match="fixed fusion settings fuse"):
        fs.tune_first_stage_fusion(
            queries,
            qrels,
            held_out,
            corpus,
            indexes["bm25"],
            indexes["bm25_ngram"],
            indexes["bm25_plain"],
            fixed,
            params(),
            METRICS,
            **missing,
        )
    with pytest.raises(ValueError, match="fewer than the 5 cross-validation folds"):
        fs.tune_first_stage_fusion(
            queries,
            qrels,
            held_out,
            corpus,
            indexes["bm25"],
            indexes["bm25_ngram"],
            indexes["bm25_plain"],
            NOT_GIVEN,
            params(),
            METRICS,
            **runs,
        )


def test_fixed_settings_dataset() -> None:
    assert isinstance(FixedFusionSettingsDataset(None).load(), Unavailable)
    assert isinstance(FixedFusionSettingsDataset("null").load(), Unavailable)
    with pytest.raises(Exception, match="does not exist"):
        FixedFusionSettingsDataset("/nonexistent/fusion_settings.json").load()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"retrievers": ["bm25", "splade"]}, "offers"),
        ({"views": ["dense"]}, "views names"),
        ({"tune_metric": "p@3"}, "tune_metric"),
    ],
)
def test_bad_params_are_named(world, change, message) -> None:
    with pytest.raises(ValueError, match=message):
        tune(world, **change)


def test_the_pipeline_slice_writes_settings_and_runs(world, tmp_path) -> None:
    """The Kedro slice from the runs to the fused runs, with a real catalog."""
    corpus, queries, qrels, splits, indexes, runs = world
    pipeline = create_pipeline()
    sliced = pipeline.only_nodes(*(n.name for n in pipeline.nodes if "first_stage" in n.name))
    catalog = DataCatalog(
        {
            "eval_queries": MemoryDataset(queries),
            "eval_qrels": MemoryDataset(qrels),
            "query_splits": MemoryDataset(splits),
            "corpus": MemoryDataset(corpus),
            "fusion_settings_fixed": FixedFusionSettingsDataset(None),
            **{f"{name}_index": MemoryDataset(index, copy_mode="assign") for name, index in indexes.items()},
            **{f"run_{name}": MemoryDataset(frame) for name, frame in runs.items()},
            **{f"run_{name}": MemoryDataset() for name in fs.FUSED},
        }
    )
    catalog["params:evaluation.first_stage_fusion"] = params()
    catalog["params:evaluation.metrics"] = MetricParams(ks=[1, 3, 5, 10], cutoff=10)
    SequentialRunner().run(sliced, catalog)
    fused = {name: catalog.load(f"run_{name}") for name in fs.FUSED}
    assert all(len(frame) and unavailable_reason(frame) is None for frame in fused.values())
    assert fused["fusion"].equals(fused["fusion_learned"]) or fused["fusion"].equals(fused["fusion_weighted"])
