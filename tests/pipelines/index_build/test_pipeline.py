import json
from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from finrag_pipelines.datasets.encoders import EncoderDataset
from finrag_pipelines.datasets.indexes import BM25IndexDataset, FaissIndexDataset
from finrag_pipelines.embedding.encoders import QUERY_TEMPLATE
from finrag_pipelines.embedding.hf_encoder import HFEncoder
from finrag_pipelines.embedding.store import EmbeddingStore
from finrag_pipelines.execution import ExecutionConfig
from finrag_pipelines.pipelines.index_build import create_pipeline
from finrag_pipelines.pipelines.index_build.params import BM25Params, DenseParams, LuceneParams
from finrag_pipelines.retrieval.dense import DenseRetriever
from finrag_pipelines.retrieval.types import IndexMismatchError, Unavailable
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
LUCENE_OFF = LuceneParams(compare=False, k1=None, b=None, rm3=None, index_threads=2, search_threads=2)
ROOT = Path(__file__).resolve().parents[3]
LOCAL = ExecutionConfig(
    backend="local",
    num_cpus=None,
    num_actors=1,
    batch_size=16,
    address=None,
    cpus_per_actor=1,
    gpus_per_actor=0,
)


@pytest.fixture
def corpus(disc_corpus):
    return pd.DataFrame(
        {"doc_id": [d for d, _ in disc_corpus[:60]], "title": "", "text": [t for _, t in disc_corpus[:60]]}
    )


def test_index_build_writes_checked_index_folders(tmp_path, corpus, tiny_qwen3_dir):
    encoder = HFEncoder(str(tiny_qwen3_dir), query_task="检索金融新闻", max_length=64, batch_size=8)
    catalog = DataCatalog(
        {
            "corpus": MemoryDataset(corpus),
            "base_encoder": MemoryDataset(encoder, copy_mode="assign"),
            "embedding_store": MemoryDataset(EmbeddingStore(tmp_path / "cache"), copy_mode="assign"),
            "bm25_index": BM25IndexDataset(str(tmp_path / "bm25")),
            "bm25_plain_index": BM25IndexDataset(str(tmp_path / "bm25_plain")),
            "bm25_lucene_index": BM25IndexDataset(str(tmp_path / "bm25_lucene")),
            "dense_index": FaissIndexDataset(str(tmp_path / "dense")),
            # the fine-tuned model exists, the checkpoint it started from does not (yet)
            "finetuned_model@encoder": EncoderDataset(
                {
                    "kind": "hf",
                    "model_path": str(tiny_qwen3_dir),
                    "query_task": "检索金融新闻",
                    "max_length": 64,
                },
                optional=True,
            ),
            "finetune_base_model@encoder": EncoderDataset(
                {"kind": "hf", "model_path": str(tmp_path / "nothing_here"), "query_task": "检索金融新闻"},
                optional=True,
            ),
            "dense_finetuned_index": FaissIndexDataset(str(tmp_path / "dense_finetuned")),
            "dense_pretrained_index": FaissIndexDataset(str(tmp_path / "dense_pretrained")),
        }
    )
    catalog["params:index_build.bm25"] = BM25Params(
        name="bm25", backend="bm25s", tokenizer=TOKENIZER, scoring=SCORING
    )
    catalog["params:index_build.bm25_plain"] = BM25Params(
        name="bm25_plain",
        backend="bm25s",
        tokenizer={**TOKENIZER, "use_finance_dict": False, "stopwords": None, "search_mode": False},
        scoring={**SCORING, "tf_cap": None, "domain_term_weight": 1.0},
    )
    catalog["params:index_build.lucene"] = LUCENE_OFF
    catalog["params:index_build.dense"] = DenseParams(
        index_type="flat", hnsw_m=16, ef_search=32, chunk_size=16
    )
    catalog["params:index_build.execution"] = LOCAL
    add_ngram_and_vocabulary(catalog, corpus, tmp_path)
    SequentialRunner().run(create_pipeline(), catalog)

    _, texts, digest = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    bm25 = catalog.load("bm25_index")
    bm25.check_compatible(digest)
    assert bm25.search([texts[3][:40]], 1)[0][0].doc_id == corpus["doc_id"][3]
    meta = json.loads((tmp_path / "bm25" / "meta.json").read_text())
    assert meta["bm25"]["tf_cap"] == 5 and meta["tokenizer"]["use_finance_dict"] is True
    assert meta["tokenizer"]["search_mode"] is True and bm25.name == "bm25"
    assert catalog.load("bm25_plain_index").name == "bm25_plain"
    # the Lucene twin is off by default: recorded as not built, never a half index (and Java never started)
    off = catalog.load("bm25_lucene_index")
    assert isinstance(off, Unavailable) and "index_build.lucene.compare: false" in off.reason

    ngram = catalog.load("bm25_ngram_index")
    ngram_meta = json.loads((tmp_path / "bm25_ngram" / "meta.json").read_text())
    assert ngram_meta["tokenizer"]["kind"] == "char_ngram" and ngram_meta["tokenizer"]["n"] == 2
    assert ngram_meta["corpus_hash"] == digest
    assert ngram.search([texts[3][:40]], 1)[0][0].doc_id == corpus["doc_id"][3]

    dense = catalog.load("dense_index")
    dense_meta = json.loads((tmp_path / "dense" / "meta.json").read_text())
    # the index records the one instruction template and the task the encoder used
    assert dense_meta["instruction_template"] == QUERY_TEMPLATE and dense_meta["query_task"] == "检索金融新闻"
    assert dense_meta["corpus_hash"] == digest and dense_meta["num_docs"] == len(corpus)
    hits = DenseRetriever(dense, encoder).search([texts[0]], 5)
    assert len(hits[0]) == 5

    finetuned = catalog.load("dense_finetuned_index")
    assert finetuned.num_docs == len(corpus) and finetuned.meta["query_task"] == "检索金融新闻"
    missing = catalog.load("dense_pretrained_index")
    assert isinstance(missing, Unavailable) and "nothing_here has no config.json" in missing.reason

    # another instruction, or another corpus, is refused
    other = HFEncoder(str(tiny_qwen3_dir), query_task="另一个任务", max_length=64, batch_size=8)
    with pytest.raises(IndexMismatchError):
        dense.check_compatible(corpus_hash=digest, encoder=other)
    with pytest.raises(IndexMismatchError):
        bm25.check_compatible("0" * 64)


def add_ngram_and_vocabulary(catalog: DataCatalog, corpus: pd.DataFrame, tmp_path) -> None:
    """The n-gram index and the mined-vocabulary step's inputs (offline LLM backend), for a whole run."""
    import yaml

    from finrag_pipelines.llm.config import LLMConfig
    from finrag_pipelines.llm.journal import ResponseJournal
    from finrag_pipelines.pipelines.index_build.params import NgramBM25Params, VocabularyParams

    read = lambda name: yaml.safe_load((ROOT / "conf/base" / name).read_text(encoding="utf-8"))  # noqa: E731
    conf = read("parameters_index_build.yml")["index_build"]
    vocabulary = conf["vocabulary"]
    vocabulary["ablation"]["split"] = {"tune_fraction": 0.5, "seed": 1}
    vocabulary["statistical"]["min_freq"] = 2
    queries = pd.DataFrame(
        {"query_id": [f"q{i}" for i in range(20)], "text": [t[5:30] for t in corpus["text"][:20]]}
    )
    catalog["bm25_ngram_index"] = BM25IndexDataset(str(tmp_path / "bm25_ngram"))
    catalog["eval_queries"] = queries
    catalog["eval_qrels"] = pd.DataFrame(
        {"query_id": queries["query_id"], "doc_id": corpus["doc_id"][:20], "score": 1}
    )
    catalog["prompt_vocabulary_entities"] = yaml.safe_load(
        (ROOT / "conf/base/prompts/vocabulary_entities.yml").read_text(encoding="utf-8")
    )
    catalog["llm_credentials"] = {}
    catalog["llm_journal"] = MemoryDataset(ResponseJournal(tmp_path / "journal.jsonl"), copy_mode="assign")
    catalog["params:llm"] = LLMConfig.from_mapping({**read("parameters.yml")["llm"], "backend": "keyword"})
    catalog["params:index_build.bm25_ngram"] = NgramBM25Params(**conf["bm25_ngram"])
    catalog["params:index_build.vocabulary"] = VocabularyParams(**vocabulary)


@pytest.mark.slow
def test_dense_index_on_ray_matches_local(tmp_path, corpus, tiny_qwen3_dir):
    """``execution.backend: ray`` encodes on a Ray actor pool: same store entries, same index vectors."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    pytest.importorskip("ray.data")
    from finrag_pipelines.embedding.factory import build_encoder

    encoder = build_encoder(
        {
            "kind": "hf",
            "model_path": str(tiny_qwen3_dir),
            "query_task": "检索金融新闻",
            "max_length": 64,
            "batch_size": 8,
            "device": "cpu",
        }
    )
    sliced = create_pipeline().only_nodes("index_build.build_dense_index")
    indexes = {}
    for name, execution in (
        ("local", LOCAL),
        ("ray", LOCAL.model_copy(update={"backend": "ray", "num_cpus": 2, "num_actors": 1})),
    ):
        catalog = DataCatalog(
            {
                "corpus": MemoryDataset(corpus),
                "base_encoder": MemoryDataset(encoder, copy_mode="assign"),
                "embedding_store": MemoryDataset(
                    EmbeddingStore(tmp_path / name / "cache"), copy_mode="assign"
                ),
                "dense_index": FaissIndexDataset(str(tmp_path / name / "dense")),
            }
        )
        catalog["params:index_build.dense"] = DenseParams(
            index_type="flat", hnsw_m=16, ef_search=32, chunk_size=16
        )
        catalog["params:index_build.execution"] = execution
        SequentialRunner().run(sliced, catalog)
        indexes[name] = catalog.load("dense_index")
    assert not ray.is_initialized()  # the node started a local Ray and shut it down again
    local, remote = indexes["local"], indexes["ray"]
    assert remote.meta["encoder"]["fingerprint"] == local.meta["encoder"]["fingerprint"]
    assert remote.doc_ids == local.doc_ids
    # execution.batch_size == dense.chunk_size: the actors see the local chunks,
    # so the vectors are bit-identical
    assert (remote.vectors() == local.vectors()).all()


def test_index_meta_and_cache_record_project_relative_model_paths(
    tmp_path, corpus, tiny_qwen3_dir, monkeypatch
):
    """meta.json and the cache's encoder.json name a model under the project as a relative path, and the
    index still checks against the encoder loaded from the absolute folder."""
    from finrag_pipelines.pipelines.index_build.nodes import build_dense_index

    project = tiny_qwen3_dir.parent.parent  # the model lies under the project folder Kedro runs from
    monkeypatch.chdir(project)
    encoder = HFEncoder(str(tiny_qwen3_dir), query_task="检索金融新闻", max_length=64, batch_size=8)
    store = EmbeddingStore(tmp_path / "cache")
    params = DenseParams(index_type="flat", hnsw_m=16, ef_search=32, chunk_size=16)
    index = build_dense_index(corpus, encoder, store, params, LOCAL)
    FaissIndexDataset(str(tmp_path / "dense")).save(index)

    relative = str(tiny_qwen3_dir.relative_to(project))
    meta = json.loads((tmp_path / "dense" / "meta.json").read_text(encoding="utf-8"))
    assert meta["encoder"]["model_path"] == relative and str(project) not in json.dumps(meta)
    cached = [json.loads(p.read_text(encoding="utf-8")) for p in (tmp_path / "cache").rglob("encoder.json")]
    assert cached and all(c["model_path"] == relative for c in cached)
    FaissIndexDataset(str(tmp_path / "dense")).load().check_compatible(encoder=encoder)
