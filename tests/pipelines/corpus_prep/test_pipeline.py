import json

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from finrag_pipelines.datasets.source_lines import SourceLinesDataset
from finrag_pipelines.pipelines.corpus_prep import create_pipeline
from finrag_pipelines.pipelines.corpus_prep.params import DedupParams, FilterParams, PassageParams

# Kedro's session turns these YAML dicts into the typed models; a bare runner gets the models directly
PARAMS = {
    "params:corpus_prep.filter": FilterParams(min_chars=10),
    "params:corpus_prep.dedup": DedupParams(near=True, ngram=3, max_hamming=3, min_jaccard=0.7),
    "params:corpus_prep.passages": PassageParams(enabled=False, max_chars=400, overlap_chars=80),
}


def write_beir(folder, corpus_lines):
    folder.mkdir()
    (folder / "corpus.jsonl").write_text("\n".join(corpus_lines) + "\n", encoding="utf-8")
    (folder / "queries.jsonl").write_text(
        json.dumps({"_id": "q1", "text": "回购"}, ensure_ascii=False) + "\n"
    )
    (folder / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return folder


def catalog_for(folder):
    catalog = DataCatalog(
        {
            "corpus_raw": SourceLinesDataset(str(folder / "corpus.jsonl")),
            "queries_raw": SourceLinesDataset(str(folder / "queries.jsonl")),
            "qrels_raw": SourceLinesDataset(str(folder / "qrels.tsv"), format="lines"),
        }
    )
    for name, value in PARAMS.items():
        catalog[name] = value
    for name in (
        "corpus",
        "eval_queries",
        "eval_qrels",
        "corpus_prep_report",
        "corpus_doc_status",
        "corpus_passage_stats",
    ):
        catalog[name] = MemoryDataset()
    return catalog


def test_pipeline_runs_on_a_beir_folder(tmp_path):
    folder = write_beir(
        tmp_path / "set",
        [
            json.dumps(
                {"_id": f"d{i}", "title": "", "text": f"第{i}号公告：公司回购股份{i}万股，详见公告。"},
                ensure_ascii=False,
            )
            for i in range(1, 6)
        ],
    )
    catalog = catalog_for(folder)
    SequentialRunner().run(create_pipeline(), catalog)
    corpus = catalog.load("corpus")
    assert isinstance(corpus, pd.DataFrame) and len(corpus) == 5
    assert catalog.load("corpus_prep_report")["judgements"] == 1


def test_malformed_json_names_file_and_line(tmp_path):
    folder = write_beir(
        tmp_path / "bad", ['{"_id": "d1", "text": "第一份公告的正文内容"}', '{"_id": "d2", "text": ']
    )
    with pytest.raises(Exception, match=r"corpus.jsonl:2: invalid JSON \(Expecting value at column 23\)"):
        SequentialRunner().run(create_pipeline(), catalog_for(folder))


def test_long_documents_become_passages_that_name_their_document(tmp_path):
    long_text = "".join(f"第{i}条：公司回购股份{i}万股，资金来源为自有资金。" for i in range(40))
    folder = write_beir(
        tmp_path / "long",
        [
            json.dumps({"_id": "d1", "title": "回购公告", "text": long_text}, ensure_ascii=False),
            json.dumps(
                {"_id": "d2", "title": "", "text": "第二份公告：董事会换届选举的结果。"}, ensure_ascii=False
            ),
        ],
    )
    catalog = catalog_for(folder)
    catalog["params:corpus_prep.passages"] = PassageParams(enabled=True, max_chars=120, overlap_chars=30)
    SequentialRunner().run(create_pipeline(), catalog)
    corpus = catalog.load("corpus")
    passages = corpus[corpus["parent_id"] == "d1"]
    assert len(passages) > 5 and list(passages["doc_id"]) == [f"d1#{k}" for k in range(len(passages))]
    assert (passages["title"] == "回购公告").all() and passages["text"].str.len().max() <= 120
    assert corpus.loc[corpus["parent_id"] == "d2", "doc_id"].tolist() == ["d2"]  # short: kept whole, same id
    stats = catalog.load("corpus_passage_stats")
    assert stats["documents_split"] == 1 and stats["passages"] == len(corpus)
    report = catalog.load("corpus_prep_report")  # relevance stays at document level: q1 → d1 still judged
    assert report["judgements"] == 1 and report["queries_without_relevant_documents"] == []
