"""index_build's mined vocabulary: mining, LLM extraction over real HTTP, filtering, ablation, the index."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.llm.journal import ResponseJournal
from finrag_pipelines.llm.stub_server import Reply, ScriptedOpenAIServer, last_user_message
from finrag_pipelines.pipelines.index_build import vocabulary as voc
from finrag_pipelines.pipelines.index_build.params import BM25Params, LuceneParams, VocabularyParams

ROOT = Path(__file__).resolve().parents[3]
CONF = yaml.safe_load((ROOT / "conf/base/parameters_index_build.yml").read_text(encoding="utf-8"))[
    "index_build"
]
LLM_BASE = yaml.safe_load((ROOT / "conf/base/parameters.yml").read_text(encoding="utf-8"))["llm"]
BM25 = BM25Params(**CONF["bm25"])
LUCENE = LuceneParams(**CONF["lucene"])
BEFORE = ["今天买", "我们看", "市场说", "公司卖", "大家爱", "游客抢", "孩子要", "媒体报"]
AFTER = ["很受欢迎", "售罄", "走红", "上市", "热销", "脱销", "火了", "出圈"]


def vocab_params(**changes) -> VocabularyParams:
    conf = json.loads(json.dumps(CONF["vocabulary"]))
    conf["ablation"]["split"] = {"tune_fraction": 0.5, "seed": 1}
    for key, value in changes.items():
        conf[key] = {**conf[key], **value}
    return VocabularyParams(**conf)


@pytest.fixture(scope="module")
def corpus() -> pd.DataFrame:
    texts = [f"{b}冰墩墩{a}，营业收入增长。" for b in BEFORE for a in AFTER]
    texts += ["贵州茅台（600519）发布公告，茅台酒毛利率提升。", "公司研发投入持续增加，回购股份方案已实施。"]
    return pd.DataFrame({"doc_id": [f"d{i}" for i in range(len(texts))], "title": "", "text": texts})


def test_statistical_terms_and_their_filtering(corpus) -> None:
    terms = voc.mine_statistical_terms(corpus, vocab_params())
    assert list(terms.columns) == voc.STATISTICAL_COLUMNS and "冰墩墩" in set(terms["term"])
    llm = voc.extract_llm_terms(
        corpus, {}, LLMConfig.from_mapping({**LLM_BASE, "backend": "keyword"}), {}, None, vocab_params()
    )  # type: ignore[arg-type]
    assert llm.empty and "offline" in llm.attrs[voc.NOT_RUN]
    merged = voc.merge_mined_vocabulary(terms, llm, BM25, vocab_params())
    status = dict(zip(merged["term"], merged["status"]))
    assert status["冰墩墩"] == "candidate" and (merged["source"] == "statistical").all()
    assert status.get("营业收入", "rejected:known").startswith(
        "rejected:"
    )  # a dictionary word is nothing new
    assert merged.attrs["llm_not_run"] == llm.attrs[voc.NOT_RUN]
    off = voc.mine_statistical_terms(corpus, vocab_params(statistical={"enabled": False}))
    assert off.empty and "enabled is false" in off.attrs[voc.NOT_RUN]


def test_llm_entities_come_through_the_llm_client_and_must_be_in_the_document(corpus, tmp_path) -> None:
    def behaviour(body, n):
        document = last_user_message(body).split("【文档】", 1)[1]
        if "贵州茅台" in document:
            answer = {
                "organizations": ["贵州茅台", "五粮液"],
                "products": ["茅台酒"],
                "metrics": ["毛利率"],
                "terms": [],
                "aliases": [{"code": "600519", "name": "贵州茅台"}],
            }
        else:
            answer = {"organizations": [], "products": [], "metrics": [], "terms": [], "aliases": []}
        return Reply(content=json.dumps(answer, ensure_ascii=False))

    prompt = yaml.safe_load((ROOT / "conf/base/prompts/vocabulary_entities.yml").read_text(encoding="utf-8"))
    with ScriptedOpenAIServer(behaviour) as server:
        llm = LLMConfig.from_mapping(
            {
                **LLM_BASE,
                "backend": "openai",
                "base_url": server.base_url,
                "model": "stub",
                "max_concurrency": 2,
            }
        )
        terms = voc.extract_llm_terms(
            corpus,
            prompt,
            llm,
            {},
            ResponseJournal(tmp_path / "j.jsonl"),
            vocab_params(llm={"max_documents": 100}),
        )
        asked = len(server.requests)
    assert asked == len(corpus)
    rows = {(r.term, r.category, None if pd.isna(r.alias_of) else r.alias_of) for r in terms.itertuples()}
    assert rows == {
        ("贵州茅台", "organizations", None),
        ("茅台酒", "products", None),
        ("毛利率", "metrics", None),
        ("贵州茅台", "alias", "600519"),
    }  # 五粮液 is not in the document: dropped
    merged = voc.merge_mined_vocabulary(
        voc.mine_statistical_terms(corpus, vocab_params()), terms, BM25, vocab_params()
    )
    llm_rows = merged[merged["source"] == "llm"]
    assert set(llm_rows["category"]) == {"organizations", "products", "metrics", "alias"}
    # an entity made of two known words is kept (a statistical phrase is not); its alias row duplicates it
    assert merged.loc[merged["term"] == "贵州茅台", "status"].tolist() == ["candidate", "rejected:duplicate"]


def test_the_ablation_decides_on_tune_and_the_index_takes_its_decision(corpus) -> None:
    terms = voc.mine_statistical_terms(corpus, vocab_params())
    merged = voc.merge_mined_vocabulary(
        terms, terms.iloc[0:0].assign(category=[], alias_of=[], documents=[]), BM25, vocab_params()
    )
    queries = pd.DataFrame(
        {"query_id": [f"q{i}" for i in range(12)], "text": [f"{b}冰墩墩" for b in BEFORE[:6]] * 2}
    )
    qrels = pd.DataFrame(
        {"query_id": queries["query_id"], "doc_id": [f"d{8 * (i % 6)}" for i in range(12)], "score": 1}
    )
    ablation = voc.ablate_mined_vocabulary(corpus, merged, queries, qrels, BM25, vocab_params())
    assert set(ablation["variants"]) == {"none", "statistical"} and ablation["variants"]["none"]["terms"] == 0
    assert ablation["variants"]["statistical"]["terms"] == (merged["status"] == "candidate").sum()
    assert ablation["n_tune_queries"] == sum(
        1 for q in queries["query_id"] if voc.assign_splits([q], 0.5, 1) == ["tune"]
    )
    gain = ablation["variants"]["statistical"]["mrr@10"] - ablation["variants"]["none"]["mrr@10"]
    assert ablation["decision"] == ("statistical" if gain > 0 else "none")
    never = voc.ablate_mined_vocabulary(
        corpus, merged, queries, qrels, BM25, vocab_params(ablation={"min_gain": 1.0})
    )
    assert never["decision"] == "none" and never["terms_kept"] == 0

    kept = voc.build_bm25_index_with_vocabulary(
        corpus, merged, {"sources_kept": ["statistical"]}, BM25, LUCENE
    )
    described = kept.meta["tokenizer"]
    assert described["user_dict_paths"][0].startswith("mined vocabulary (statistical, ")
    assert kept.tokenizer.is_domain_term("冰墩墩")
    plain = voc.build_bm25_index_with_vocabulary(corpus, merged, {"sources_kept": []}, BM25, LUCENE)
    assert plain.meta["tokenizer"]["user_dict_paths"] == [] and not plain.tokenizer.is_domain_term("冰墩墩")


def test_a_fixed_decision_measures_nothing_on_the_set(corpus) -> None:
    """A held-out set takes the dev set's decision: no tune queries are needed, none are read."""
    from finrag_pipelines.pipelines.evaluation.report_fusion import vocabulary_lines

    terms = voc.mine_statistical_terms(corpus, vocab_params())
    empty_llm = terms.iloc[0:0].assign(category=[], alias_of=[], documents=[])
    merged = voc.merge_mined_vocabulary(terms, empty_llm, BM25, vocab_params())
    no_queries = pd.DataFrame({"query_id": [], "text": []})
    no_qrels = pd.DataFrame({"query_id": [], "doc_id": [], "score": []})
    fixed = voc.ablate_mined_vocabulary(
        corpus, merged, no_queries, no_qrels, BM25, vocab_params(ablation={"fixed_decision": "statistical"})
    )
    assert fixed["decision"] == "statistical" and fixed["sources_kept"] == ["statistical"]
    assert fixed["terms_kept"] == (merged["status"] == "candidate").sum() and fixed["n_tune_queries"] == 0
    assert "not measured on this set" in "\n".join(vocabulary_lines(fixed))
    none = voc.ablate_mined_vocabulary(
        corpus, merged, no_queries, no_qrels, BM25, vocab_params(ablation={"fixed_decision": "none"})
    )
    assert none["sources_kept"] == [] and none["terms_kept"] == 0
    with pytest.raises(ValueError, match="answerable tune queries"):
        voc.ablate_mined_vocabulary(corpus, merged, no_queries, no_qrels, BM25, vocab_params())
