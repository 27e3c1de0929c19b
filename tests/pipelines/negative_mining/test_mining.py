import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from finrag_pipelines.embedding import encoders
from finrag_pipelines.embedding.encoders import QUERY_TEMPLATE, format_query
from finrag_pipelines.pipelines.negative_mining import mining
from finrag_pipelines.pipelines.negative_mining.nodes import build_infonce_rows, split_queries_by_document
from finrag_pipelines.pipelines.negative_mining.params import FormatParams, RuleParams, SplitParams

RULES = {
    "rank_min": 2,
    "rank_max": 5,
    "relative_margin": 0.05,
    "near_duplicate_jaccard": 0.8,
    "near_duplicate_ngram": 3,
    "num_negatives": 2,
    "random_negatives": 0,
    "seed": 13,
}


def rules(**over):
    return mining.Rules(**{**RULES, **over})


def cands(query_id, positive, pos_score, ranked, source="dense"):
    """ranked: list of (candidate_id, score), best first."""
    return pd.DataFrame(
        [(query_id, positive, cid, r, s, source, pos_score) for r, (cid, s) in enumerate(ranked, 1)],
        columns=mining.CANDIDATE_COLUMNS,
    )


TEXTS = {f"d{i}": f"文档{i}的内容各不相同，编号{i * 7919}，主题{i}。" for i in range(20)}


def run(table, **over):
    positives = table.groupby("query_id")["doc_id"].agg(set).to_dict()
    return mining.select(table, positives, TEXTS, list(TEXTS), rules(**over))


def status_of(selection):
    return dict(zip(selection["candidate_id"], selection["status"]))


def test_positive_skipped_and_window_counted_after_removing_it():
    # raw ranks: d1=1, d0(positive)=2, d2=3 ... ; after removing the positive d2 has rank 2
    table = cands(
        "q",
        "d0",
        1.0,
        [("d1", 0.5), ("d0", 1.0), ("d2", 0.4), ("d3", 0.3), ("d4", 0.2), ("d5", 0.1), ("d6", 0.05)],
    )
    s = status_of(run(table, num_negatives=10))
    assert s["d0"] == "positive"
    assert s["d1"] == "outside_window"  # rank 1 < rank_min 2
    assert s["d6"] == "outside_window"  # window rank 6 > rank_max 5
    assert {s[d] for d in ("d2", "d3", "d4", "d5")} == {"kept"}


def test_candidate_above_the_95_percent_line_is_dropped():
    # positive 0.80: the line is 0.76; 0.77 is dropped, 0.75 survives
    table = cands("q", "d0", 0.80, [("d1", 0.99), ("d2", 0.77), ("d3", 0.75), ("d4", 0.5)])
    s = status_of(run(table, rank_min=1, num_negatives=5))
    assert s["d2"] == "false_negative" and s["d1"] == "false_negative"
    assert s["d3"] == "kept" and s["d4"] == "kept"


def test_false_negative_line_uses_each_sources_own_positive_score():
    dense = cands("q", "d0", 0.8, [("d1", 0.7)])
    bm25 = cands("q", "d0", 10.0, [("d2", 9.6), ("d3", 9.4)], source="bm25")
    sel = run(pd.concat([dense, bm25]), rank_min=1, num_negatives=5)
    s = {(c, src): st for c, src, st in zip(sel["candidate_id"], sel["source"], sel["status"])}
    assert s["d1", "dense"] == "kept" and s["d2", "bm25"] == "false_negative" and s["d3", "bm25"] == "kept"


def test_near_duplicate_of_positive_is_dropped():
    texts = dict(TEXTS)
    texts["d9"] = TEXTS["d0"] + "。"  # same characters after punctuation removal
    table = cands("q", "d0", 1.0, [("d9", 0.3), ("d2", 0.2)])
    positives = {"q": {"d0"}}
    s = status_of(mining.select(table, positives, texts, list(texts), rules(rank_min=1, num_negatives=5)))
    assert s["d9"] == "near_duplicate_of_positive" and s["d2"] == "kept"


def test_sampling_is_seeded_and_independent_of_row_order():
    ranked = [(f"d{i}", 0.5 - i / 100) for i in range(1, 15)]
    table = pd.concat([cands("qa", "d0", 1.0, ranked), cands("qb", "d15", 1.0, ranked)], ignore_index=True)
    kwargs = {"rank_min": 1, "rank_max": 14, "num_negatives": 3}
    first = run(table, **kwargs)
    shuffled = run(table.sample(frac=1.0, random_state=1), **kwargs)

    def kept(sel: pd.DataFrame) -> list[tuple]:
        return sorted(map(tuple, sel.loc[sel.status == "kept", ["query_id", "candidate_id"]].values))

    assert kept(first) == kept(shuffled)
    assert (first.status == "kept").sum() == 6
    other_seed = run(table, seed=99, **kwargs)
    assert kept(other_seed) != kept(first)
    # per-query seeding: qa's picks do not change when qb is removed
    alone = run(table[table.query_id == "qa"], **kwargs)
    assert kept(alone) == [k for k in kept(first) if k[0] == "qa"]


def test_bm25_share_and_random_negatives():
    dense = cands("q", "d0", 1.0, [(f"d{i}", 0.1) for i in range(1, 9)])
    bm25 = cands("q", "d0", 100.0, [(f"d{i}", 1.0) for i in range(9, 14)], source="bm25")
    sel = run(
        pd.concat([dense, bm25]), rank_min=1, rank_max=20, num_negatives=4, bm25_share=0.5, random_negatives=2
    )
    kept = sel[sel.status == "kept"]
    assert kept.source.value_counts().to_dict() == {"dense": 2, "bm25": 2, "random": 2}
    assert kept.candidate_id.is_unique and "d0" not in set(kept.candidate_id)


def test_short_queries_are_reported():
    table = pd.concat(
        [
            cands("q1", "d0", 1.0, [("d1", 0.2)]),
            cands("q2", "d0", 1.0, [("d1", 0.2), ("d2", 0.1), ("d3", 0.05)]),
        ]
    )
    sel = run(table, rank_min=1, num_negatives=2)
    from finrag_pipelines.pipelines.negative_mining.report import mining_stats

    split = pd.DataFrame({"query_id": ["q1", "q2"], "doc_id": ["d0", "d0"], "split": ["train", "train"]})
    stats = mining_stats(table, sel, split, num_negatives=2)
    assert stats["queries_short"] == 1 and stats["status_by_source"]["dense"]["kept"] == 3
    json.dumps(stats)


def test_rule_params_reject_an_empty_window():
    with pytest.raises(ValueError, match="rank_min"):
        RuleParams(**{**RULES, "rank_min": 9, "rank_max": 3})


def test_split_is_by_document_and_seeded():
    queries = pd.DataFrame(
        {"query_id": [f"q{i}" for i in range(400)], "doc_id": [f"d{i // 4}" for i in range(400)]}
    )
    split = split_queries_by_document(queries, SplitParams(dev_fraction=0.2, seed=7))
    assert split.groupby("doc_id")["split"].nunique().max() == 1
    assert 5 <= split.drop_duplicates("doc_id")["split"].eq("dev").sum() <= 40
    again = split_queries_by_document(queries.iloc[::-1], SplitParams(dev_fraction=0.2, seed=7))
    assert dict(zip(split.query_id, split.split)) == dict(zip(again.query_id, again.split))


def test_infonce_rows_have_the_ms_swift_shape_and_the_one_template():
    task = "给定一个金融领域的问题，检索能够回答该问题的文档"
    corpus = pd.DataFrame(
        {"doc_id": ["d0", "d1", "d2"], "title": ["标题", "", ""], "text": ["正文零", "正文一", "正文二"]}
    )
    queries = pd.DataFrame(
        {"query_id": ["q1", "q2"], "doc_id": ["d0", "d1"], "query": ["问题一？", "问题二？"]}
    )
    selection = pd.DataFrame(
        {
            "query_id": ["q1", "q1", "q2"],
            "candidate_id": ["d2", "d1", "d0"],
            "source": ["dense", "random", "bm25"],
            "rank": [3, -1, 4],
            "score": [0.1, np.nan, 2.0],
            "positive_score": [0.9, np.nan, 9.0],
            "status": ["kept", "kept", "false_negative"],
        }
    )
    split = pd.DataFrame({"query_id": ["q1", "q2"], "doc_id": ["d0", "d1"], "split": ["train", "dev"]})
    train, dev = build_infonce_rows(
        queries, selection, split, corpus, FormatParams(query_task=task), {"passed": True}
    )
    (row,) = train.to_dict("records")
    assert set(row) == {"messages", "positive_messages", "negative_messages"}
    assert row["messages"] == [{"role": "user", "content": format_query(task, "问题一？")}]
    assert row["messages"][0]["content"] == QUERY_TEMPLATE.format(task=task, query="问题一？")
    assert row["positive_messages"] == [[{"role": "user", "content": "标题\n正文零"}]]
    assert row["negative_messages"] == [
        [{"role": "user", "content": "正文二"}],
        [{"role": "user", "content": "正文一"}],
    ]
    assert dev.to_dict("records")[0]["negative_messages"] == []
    # the template lives in one place: encoders.QUERY_TEMPLATE, used through format_query
    assert mining.format_query is encoders.format_query
    assert "Instruct:" not in Path(mining.__file__).read_text(encoding="utf-8")


def test_false_negative_in_one_source_is_not_kept_from_another_nor_drawn_at_random():
    dense = cands("q", "d0", 0.5, [("d1", 0.9), ("d2", 0.1)])
    bm25 = cands("q", "d0", 10.0, [("d1", 1.0), ("d3", 0.5)], source="bm25")
    texts = {k: TEXTS[k] for k in ("d0", "d1", "d2", "d3", "d4")}
    sel = mining.select(
        pd.concat([dense, bm25]),
        {"q": {"d0"}},
        texts,
        list(texts),
        rules(rank_min=1, num_negatives=5, random_negatives=3),
    )
    s = {(c, src): st for c, src, st in zip(sel["candidate_id"], sel["source"], sel["status"])}
    assert s["d1", "dense"] == "false_negative" and s["d1", "bm25"] == "false_negative"
    randoms = set(sel.loc[sel.source == "random", "candidate_id"])
    assert randoms == {"d4"}  # not d0 (positive), d1 (flagged), d2/d3 (already kept)


def test_no_candidates_gives_an_empty_selection():
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in mining.CANDIDATE_COLUMNS})
    assert list(run(empty).columns) == mining.SELECTION_COLUMNS and run(empty).empty


def test_passages_of_the_positive_document_are_never_negatives():
    texts = {**TEXTS, "d0#1": "另一段", "d0#2": "第三段", "d9#0": "别的文档"}
    parents = {**{k: k for k in TEXTS}, "d0#1": "d0", "d0#2": "d0", "d9#0": "d9"}
    table = cands("q", "d0", 1.0, [("d0#1", 0.9), ("d0", 1.0), ("d2", 0.4), ("d0#2", 0.3), ("d9#0", 0.2)])
    sel = mining.select(table, {"q": {"d0"}}, texts, list(texts), rules(rank_min=1, num_negatives=5,
                        random_negatives=30), parents=parents)  # fmt: skip
    s = status_of(sel[sel.source == "dense"])
    assert s["d0#1"] == s["d0#2"] == "same_document_as_positive" and s["d0"] == "positive"
    assert s["d2"] == s["d9#0"] == "kept"
    randoms = set(sel.loc[sel.source == "random", "candidate_id"])
    assert randoms and not randoms & {"d0", "d0#1", "d0#2"}  # nor drawn at random
    without = mining.select(table, {"q": {"d0"}}, texts, list(texts), rules(rank_min=1, num_negatives=5))
    assert status_of(without)["d0#2"] == "kept"  # the rule needs the parents


def test_reranker_flagged_candidates_are_dropped_before_sampling():
    table = cands("q", "d0", 1.0, [("d0", 1.0), ("d1", 0.5), ("d2", 0.4), ("d3", 0.3)])
    sel = mining.select(table, {"q": {"d0"}}, TEXTS, list(TEXTS), rules(rank_min=1, num_negatives=5,
                        random_negatives=18), reranker_flagged={"q": {"d2", "d0"}})  # fmt: skip
    s = status_of(sel[sel.source == "dense"])
    assert s["d2"] == "reranker_false_negative" and s["d0"] == "positive"  # earlier rules win
    assert s["d1"] == s["d3"] == "kept"
    assert "d2" not in set(sel.loc[sel.source == "random", "candidate_id"])


def test_near_duplicate_memo_is_bounded_and_does_not_change_answers():
    texts = {f"d{i}": f"公司公告第{i}号：营业收入同比增长{i % 7}成，毛利率保持稳定。" for i in range(60)}
    texts["copy"] = texts["d3"].replace("公告", "公吿")
    unbounded = mining.NearDuplicateCheck(texts, 3, 0.7, cache_size=10_000)
    bounded = mining.NearDuplicateCheck(texts, 3, 0.7, cache_size=4)
    for a in texts:
        for b in ("d3", "d10", "copy"):
            assert bounded.similarity(a, b) == unbounded.similarity(a, b)
            assert len(bounded._grams) <= 4
    assert bounded.for_positives({"d3"})("copy") and not bounded.for_positives({"d3"})("d40")
    assert unbounded.similarity("d3", "d3") == 1.0 and len(unbounded._grams) == 61
