"""``index_build.bm25.backend: lucene`` through the pipelines: index_build writes a Lucene folder that
evaluation,
negative mining and the server search through the lexical index interface, unchanged."""

from __future__ import annotations

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from finrag_pipelines.datasets.indexes import BM25IndexDataset
from finrag_pipelines.pipelines.evaluation import nodes as evaluation
from finrag_pipelines.pipelines.evaluation.params import RetrieveParams
from finrag_pipelines.pipelines.index_build import create_pipeline
from finrag_pipelines.pipelines.index_build.params import BM25Params, LuceneParams
from finrag_pipelines.pipelines.negative_mining.nodes import _bm25_candidates
from finrag_pipelines.pipelines.negative_mining.params import CandidateParams
from finrag_pipelines.retrieval.interfaces import require_term_scores
from finrag_pipelines.retrieval.lucene.index import LuceneBM25Index
from finrag_pipelines.retrieval.runs import frame_to_run
from finrag_pipelines.text.corpus import indexable

TOKENIZER = {
    "use_finance_dict": True,
    "user_dict_paths": [],
    "extra_words": [],
    "stopwords": "builtin",
    "extra_stopwords": [],
    "lowercase": True,
    "hmm": True,
    "search_mode": True,
    "n_jobs": 1,
}
SCORING = {"k1": 1.2, "b": 0.75, "method": "lucene", "tf_cap": 5, "domain_term_weight": 1.2}


@pytest.fixture(scope="module")
def corpus(disc_corpus) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    docs = disc_corpus[:80]
    return pd.DataFrame({"doc_id": [d for d, _ in docs], "title": "", "text": [t for _, t in docs]})


@pytest.fixture(scope="module")
def built(lucene_java, corpus, tmp_path_factory) -> DataCatalog:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("lucene_backend")
    catalog = DataCatalog(
        {
            "corpus": MemoryDataset(corpus),
            "bm25_index": BM25IndexDataset(str(folder / "bm25")),
            "bm25_plain_index": BM25IndexDataset(str(folder / "bm25_plain")),
            "bm25_lucene_index": BM25IndexDataset(str(folder / "bm25_lucene")),
        }
    )
    catalog["params:index_build.bm25"] = BM25Params(
        name="bm25", backend="lucene", tokenizer=TOKENIZER, scoring=SCORING
    )
    catalog["params:index_build.bm25_plain"] = BM25Params(
        name="bm25_plain",
        backend="bm25s",
        tokenizer={**TOKENIZER, "search_mode": False},
        scoring={**SCORING, "tf_cap": None, "domain_term_weight": 1.0},
    )
    catalog["params:index_build.lucene"] = LuceneParams(
        compare=True, k1=0.9, b=None, rm3=None, index_threads=1, search_threads=2
    )
    # the mined vocabulary the ablation kept: both Lucene indexes tokenise with it, as bm25s would
    catalog["mined_vocabulary"] = pd.DataFrame(
        [{"term": "净息差率", "source": "statistical", "category": None, "alias_of": None, "freq": 3,
          "score": 1.0, "status": "candidate"}]
    )  # fmt: skip
    catalog["vocabulary_ablation"] = {"sources_kept": ["statistical"]}
    lexical = create_pipeline().only_nodes(
        "index_build.build_bm25_index",
        "index_build.build_bm25_plain_index",
        "index_build.build_bm25_lucene_index",
    )
    SequentialRunner().run(lexical, catalog)
    return catalog


def test_backend_lucene_writes_a_lucene_folder_with_the_meta_contract(built, corpus):
    bm25 = built.load("bm25_index")
    assert isinstance(bm25, LuceneBM25Index) and bm25.name == "bm25"
    meta = bm25.meta
    assert meta["backend"] == "lucene" and meta["lucene"]["k1"] == 0.9 and meta["lucene"]["b"] == 0.75
    assert meta["lucene"]["not_applied"] == {"tf_cap": 5, "domain_term_weight": 1.2}
    _, _, digest = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    assert meta["corpus_hash"] == digest and meta["num_docs"] == len(corpus)
    # the plain baseline keeps bm25s; the comparison twin is the same tokens in Lucene, named bm25_lucene
    assert built.load("bm25_plain_index").meta.get("backend") is None
    twin = built.load("bm25_lucene_index")
    assert isinstance(twin, LuceneBM25Index) and twin.name == "bm25_lucene"
    assert twin.meta["tokenizer_fingerprint"] == meta["tokenizer_fingerprint"]
    assert meta["tokenizer"]["user_dict_paths"][0].startswith("mined vocabulary (statistical, 1 terms")
    assert "净息差率" in bm25.tokenizer.tokenize("净息差率上升")


def test_evaluation_negative_mining_and_the_server_use_it_unchanged(built, corpus):
    bm25 = built.load("bm25_index")
    queries = pd.DataFrame(
        {
            "query_id": [f"q{i}" for i in range(6)],
            "text": [corpus["text"][i].strip()[5:30] for i in range(0, 60, 10)],
        }
    )
    frame = evaluation.retrieve_bm25(bm25, corpus, queries, RetrieveParams(depth=10, batch_size=4))
    run = frame_to_run(frame, list(queries["query_id"]))
    assert [hits[0].doc_id for hits in run] == [corpus["doc_id"][i] for i in range(0, 60, 10)]
    with pytest.raises(Exception, match="was built from corpus"):
        evaluation.retrieve_bm25(bm25, corpus.iloc[:50], queries, RetrieveParams(depth=10, batch_size=4))

    scoring = require_term_scores(bm25, "negative_mining's BM25 candidates")
    params = CandidateParams.model_construct(depth=5, batch_size=4)
    mined = _bm25_candidates(
        list(queries["query_id"]),
        [corpus["doc_id"][i] for i in range(0, 60, 10)],
        list(queries["text"]),
        scoring,
        params,
    )
    # the positive is among its own query's candidates, with the score get_scores gives it
    own = mined[mined["candidate_id"] == mined["doc_id"]]
    assert len(own) == len(queries)
    assert (own["score"] - own["positive_score"]).abs().max() < 2e-4
