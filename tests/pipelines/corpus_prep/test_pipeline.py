import json

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from finrag_pipelines.datasets.source_lines import SourceLinesDataset
from finrag_pipelines.pipelines.corpus_prep import create_pipeline
from finrag_pipelines.pipelines.corpus_prep.params import DedupParams, FilterParams

# Kedro's session turns these YAML dicts into the typed models; a bare runner gets the models directly
PARAMS = {
    "params:corpus_prep.filter": FilterParams(min_chars=10),
    "params:corpus_prep.dedup": DedupParams(near=True, ngram=3, max_hamming=3, min_jaccard=0.7),
}


def write_beir(folder, corpus_lines):
    folder.mkdir()
    (folder / "corpus.jsonl").write_text("\n".join(corpus_lines) + "\n", encoding="utf-8")
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "回购"}, ensure_ascii=False) + "\n")
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
    for name in ("corpus", "eval_queries", "eval_qrels", "corpus_prep_report", "corpus_doc_status"):
        catalog[name] = MemoryDataset()
    return catalog


def test_pipeline_runs_on_a_beir_folder(tmp_path):
    folder = write_beir(
        tmp_path / "set",
        [json.dumps({"_id": f"d{i}", "title": "", "text": f"第{i}号公告：公司回购股份{i}万股，详见公告。"}, ensure_ascii=False) for i in range(1, 6)],
    )
    catalog = catalog_for(folder)
    SequentialRunner().run(create_pipeline(), catalog)
    corpus = catalog.load("corpus")
    assert isinstance(corpus, pd.DataFrame) and len(corpus) == 5
    assert catalog.load("corpus_prep_report")["judgements"] == 1


def test_malformed_json_names_file_and_line(tmp_path):
    folder = write_beir(tmp_path / "bad", ['{"_id": "d1", "text": "第一份公告的正文内容"}', '{"_id": "d2", "text": '])
    with pytest.raises(Exception, match=r"corpus.jsonl:2: invalid JSON \(Expecting value at column 23\)"):
        SequentialRunner().run(create_pipeline(), catalog_for(folder))
