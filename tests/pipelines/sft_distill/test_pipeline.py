"""sft_distill end to end against a real local OpenAI-compatible server (scripted), offline, after kill -9."""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from kedro_datasets.pandas import CSVDataset, ParquetDataset

from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.llm.journal import ResponseJournal
from finrag_pipelines.llm.stub_server import Reply, ScriptedOpenAIServer, last_user_message
from finrag_pipelines.mcq.split import split_items
from finrag_pipelines.pipelines.sft_distill import create_pipeline
from finrag_pipelines.pipelines.sft_distill.params import (
    CalcParams,
    GroundedParams,
    ReasoningParams,
    RewriteParams,
)

ROOT = Path(__file__).resolve().parents[3]
CONF = yaml.safe_load((ROOT / "conf/base/parameters_sft_distill.yml").read_text(encoding="utf-8"))[
    "sft_distill"
]
PROMPTS = ("reasoning", "rewrite", "grounded_write", "grounded_judge")
N_DOCS = 6
HAN = re.compile(r"[\u4e00-\u9fff]")
SAMPLES = 4
PARQUET = (
    "calc_questions",
    "reasoning_samples",
    "reasoning_verdicts",
    "distilled_reasoning",
    "grounded_qa_candidates",
    "grounded_qa_judged",
    "grounded_qa_audit",
    "sft_distill_items",
)
CSV = ("reasoning_items", "reasoning_never_correct")


def make_splits(n: int = 60) -> pd.DataFrame:
    opts = json.dumps({"A": "上升", "B": "下降", "C": "不变", "D": "不确定"}, ensure_ascii=False)
    rows = [
        {
            "item_id": f"t:{i}",
            "source": "t",
            "subject": "债券" if i % 2 else "利率",
            "question": f"第{i}题：利率上升时债券价格如何变化？",
            "options": opts,
            "answer": "B" if i % 3 else "BD",
            "kind": "single" if i % 3 else "multi",
            "explanation": f"第{i}题解析。" if i % 5 == 0 else None,
        }
        for i in range(n)
    ]
    return split_items(pd.DataFrame(rows), {"sft_train": 0.6, "rl_train": 0.3, "eval": 0.1}, seed=1)


def write_world(folder: Path, disc_corpus) -> None:
    """Inputs as files, so a separate process (the kill -9 test) builds the very same catalog."""
    folder.mkdir(parents=True, exist_ok=True)
    make_splits().to_parquet(folder / "mcq_splits.parquet")
    docs = [(d, t) for d, t in disc_corpus if len(t) >= 200][:N_DOCS]
    pd.DataFrame({"doc_id": [d for d, _ in docs], "title": "", "text": [t for _, t in docs]}).to_parquet(
        folder / "corpus.parquet"
    )
    # the first document's scripted question is an evaluation query: it must be dropped as eval_duplicate
    pd.DataFrame(
        {"query_id": ["q1", "q2"], "text": [question_for(docs[0][1]), "完全无关的评测问题"]}
    ).to_parquet(folder / "eval_queries.parquet")


def question_for(text: str) -> str:
    """A question unique to the document (built from its own words, so no two are near duplicates)."""
    words = "".join(HAN.findall(text))[:15]
    return f"关于“{words}”，文中披露了哪些主要事项？"


def catalog_for(folder: Path, llm: dict, **params) -> DataCatalog:
    out = folder / "out"
    catalog = DataCatalog(
        {
            **{name: ParquetDataset(filepath=str(out / f"{name}.parquet")) for name in PARQUET},
            **{
                name: CSVDataset(filepath=str(out / f"{name}.csv"), save_args={"index": False})
                for name in CSV
            },
            "sft_distill_report": JSONDataset(filepath=str(out / "sft_distill_report.json")),
            "llm_journal": MemoryDataset(ResponseJournal(folder / "journal.jsonl"), copy_mode="assign"),
            "llm_credentials": MemoryDataset({"api_key": "test"}),
        }
    )
    for name in ("mcq_splits", "corpus", "eval_queries"):
        catalog[name] = pd.read_parquet(folder / f"{name}.parquet")
    for name in PROMPTS:
        catalog[f"prompt_sft_distill_{name}"] = yaml.safe_load(
            (ROOT / f"conf/base/prompts/sft_distill_{name}.yml").read_text()
        )
    base_llm = yaml.safe_load((ROOT / "conf/base/parameters.yml").read_text(encoding="utf-8"))["llm"]
    catalog["params:llm"] = LLMConfig.from_mapping({**base_llm, **llm})
    catalog["params:sft_distill.calc"] = CalcParams(
        **{**CONF["calc"], "per_family": 2, **params.get("calc", {})}
    )
    catalog["params:sft_distill.rewrite"] = RewriteParams(
        **{**CONF["rewrite"], "enabled": True, "fraction": 1.0, **params.get("rewrite", {})}
    )
    catalog["params:sft_distill.reasoning"] = ReasoningParams(
        **{**CONF["reasoning"], "samples": SAMPLES, **params.get("reasoning", {})}
    )
    grounded = {
        **CONF["grounded"],
        "documents": {**CONF["grounded"]["documents"], "max_documents": None, "min_chars": 200},
    }
    catalog["params:sft_distill.grounded"] = GroundedParams(**{**grounded, **params.get("grounded", {})})
    return catalog


def reasoning_reply(index: int, gold: str, sample: int) -> str:
    """Item i % 4: 0 never right; 1 wrong, long right, short right, bare answer; 2 doubled statements, then
    right; 3 always right, shorter each sample."""
    wrong = "A" if "A" not in gold else "C"
    right = f"答案：\\boxed{{{gold}}}"
    if index % 4 == 0:
        return f"利率上升，价格上升。\n\n答案：\\boxed{{{wrong}}}"
    if index % 4 == 1:
        return [
            f"先想错了。\n\n答案：\\boxed{{{wrong}}}",
            "利率上升会提高折现率，" * 3 + f"\n\n{right}",
            f"折现率升，价格降。\n\n{right}",
            right,
        ][sample]
    if index % 4 == 2:
        return f"价格下降。\n{right}\n再次确认：{right}" if sample < 3 else f"价格下降。\n\n{right}"
    return "利率上升，债券价格下降。" * (SAMPLES - sample) + f"\n\n{right}"


def scripted(folder: Path, delay_s: float = 0.0, broken_reasoning: bool = False):
    splits = pd.read_parquet(folder / "mcq_splits.parquet").set_index("item_id")
    corpus = pd.read_parquet(folder / "corpus.parquet")
    lock, seen_rewrites = threading.Lock(), {}

    def behaviour(body, n):
        system = body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
        user = last_user_message(body)
        if "【原题干】" in user:
            scenario = user.split("【原题干】", 1)[1].strip()
            with lock:
                index = seen_rewrites.setdefault(scenario, len(seen_rewrites))
            if index % 3 == 0:  # a rewrite that changes a number: refused
                return Reply(
                    content=re.sub(r"\d+", lambda m: str(int(m.group()) + 1), scenario, count=1),
                    delay_s=delay_s,
                )
            return Reply(content=f"改写后的题干：请计算：{scenario}", delay_s=delay_s)
        if "事实核查" in system:
            supported = "false" if corpus["doc_id"].iloc[1] in user else "true"
            return Reply(content=f'{{"supported": {supported}, "reason": "见文档"}}', delay_s=delay_s)
        if "【文档】" in user:
            doc, text = next((d, t) for d, t in zip(corpus["doc_id"], corpus["text"]) if t[:40] in user)
            return Reply(
                content=json.dumps(
                    {"question": question_for(text), "answer": f"文档{doc}披露了相关事项。"},
                    ensure_ascii=False,
                ),
                delay_s=delay_s,
            )
        if broken_reasoning:
            return Reply(status=500, error_message="teacher down")
        index = int(re.search(r"第(\d+)题", user).group(1))
        return Reply(
            content=reasoning_reply(
                index, splits.loc[f"t:{index}", "answer"], body["seed"] - CONF["reasoning"]["seed"]
            ),
            delay_s=delay_s,
        )

    return behaviour


def fast_llm(server, **extra) -> dict:
    return {
        "backend": "openai",
        "base_url": server.base_url,
        "model": "stub-teacher",
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "max_retries": 1,
        "timeout_s": 10,
        "max_concurrency": 8,
        **extra,
    }


def load(folder: Path, name: str) -> pd.DataFrame:
    path = folder / "out" / name
    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)


def expected_requests(splits: pd.DataFrame) -> int:
    unexplained = ((splits["split"] == "sft_train") & splits["explanation"].isna()).sum()
    return 22 + SAMPLES * int(unexplained) + 2 * N_DOCS  # rewrites + teacher samples + grounded write & judge


@pytest.fixture
def world(tmp_path, disc_corpus) -> Path:
    write_world(tmp_path / "world", disc_corpus)
    return tmp_path / "world"


def test_every_part_against_a_scripted_endpoint_then_resume_without_calls(world):
    splits = pd.read_parquet(world / "mcq_splits.parquet")
    with ScriptedOpenAIServer(scripted(world)) as server:
        SequentialRunner().run(create_pipeline(), catalog_for(world, fast_llm(server)))
        assert server.count == expected_requests(splits)

    # rejection sampling: per item, the shortest correct sample, or listed as never correct
    items = load(world, "reasoning_items.csv").set_index("item_id")
    index = {i: int(i.split(":")[1]) for i in items.index}
    assert (items["n_samples"] == SAMPLES).all()
    assert {i for i in items.index if index[i] % 4 == 0} == set(
        load(world, "reasoning_never_correct.csv")["item_id"]
    )
    chosen = {i: items.loc[i, "chosen_sample"] for i in items.index if index[i] % 4}
    assert all(chosen[i] == {1: 2, 2: 3, 3: 3}[index[i] % 4] for i in chosen)
    assert all(items.loc[i, "n_correct"] == {0: 0, 1: 2, 2: 1, 3: 4}[index[i] % 4] for i in items.index)
    distilled = load(world, "distilled_reasoning.parquet")
    assert set(distilled["item_id"]) == {f"distill:{i}" for i in chosen}
    assert set(distilled["model"]) == {"stub-teacher"} and distilled["prompt_hash"].nunique() == 1
    split_of = splits.set_index("item_id")["split"]
    assert set(split_of[[i.removeprefix("distill:") for i in distilled["item_id"]]]) == {"sft_train"}
    assert not distilled["explanation"].str.contains("boxed").any()

    calc = load(world, "calc_questions.parquet")
    assert calc["rewrite_status"].value_counts().to_dict() == {"kept": 14, "number_changed": 8}
    kept = calc[calc["rewrite_status"] == "kept"]
    assert (
        kept["scenario"].str.startswith("请计算：").all()
        and (kept["question"] != kept["original_scenario"]).all()
    )

    audit = load(world, "grounded_qa_audit.parquet").set_index("doc_id")
    corpus_ids = list(pd.read_parquet(world / "corpus.parquet")["doc_id"])
    assert (
        audit.loc[corpus_ids[0], "status"] == "eval_duplicate"
        and audit.loc[corpus_ids[1], "status"] == "unsupported"
    )
    assert (audit.loc[corpus_ids[2:], "status"] == "kept").all()

    rows = load(world, "sft_distill_items.parquet")
    assert rows["mix_source"].value_counts().to_dict() == {
        "calc": 22,
        "distilled_reasoning": len(chosen),
        "grounded_qa": N_DOCS - 2,
    }
    report = json.loads((world / "out/sft_distill_report.json").read_text(encoding="utf-8"))
    assert report["reasoning"]["status"] == "run" and report["reasoning"]["teacher"]["model"] == [
        "stub-teacher"
    ]
    assert report["reasoning"]["never_correct"] == sum(index[i] % 4 == 0 for i in items.index)
    assert set(report["reasoning"]["pass_rate_by_kind"]) == {"single", "multi"}
    assert set(report["reasoning"]["pass_rate_by_subject"]) == {"债券", "利率"}
    assert report["reasoning"]["format_details"] == {
        "duplicated_answers": 3 * sum(index[i] % 4 == 2 for i in items.index)
    }
    assert report["grounded"]["outcomes"] == {"eval_duplicate": 1, "kept": N_DOCS - 2, "unsupported": 1}

    with ScriptedOpenAIServer(scripted(world)) as server:  # a rerun is answered by the journal
        SequentialRunner().run(create_pipeline(), catalog_for(world, fast_llm(server)))
        assert server.count == 0
    pd.testing.assert_frame_equal(load(world, "sft_distill_items.parquet"), rows)


def test_offline_backend_reports_llm_parts_as_not_run(world):
    SequentialRunner().run(create_pipeline(), catalog_for(world, {"backend": "keyword"}))
    report = json.loads((world / "out/sft_distill_report.json").read_text(encoding="utf-8"))
    for part in ("reasoning", "grounded"):
        assert report[part]["status"].startswith("not run: llm.backend is 'keyword'")
    assert report["calc"]["rewrite"]["status"].startswith("not run") and report["calc"]["questions"] == 22
    assert report["rows_for_sft"] == {"calc": 22}
    assert load(world, "reasoning_samples.parquet").empty


def test_failure_ceiling_saves_the_samples_first(world):
    with (
        ScriptedOpenAIServer(scripted(world, broken_reasoning=True)) as server,
        pytest.raises(Exception, match="teacher reasoning.*above llm.max_failure_rate"),
    ):
        SequentialRunner().run(create_pipeline(), catalog_for(world, fast_llm(server)))
    samples = load(world, "reasoning_samples.parquet")
    assert len(samples) and samples["error"].str.contains("HTTP 500").all()


KILL_SCRIPT = """
import importlib.util, sys
from pathlib import Path
from kedro.runner import SequentialRunner
spec = importlib.util.spec_from_file_location("sft_distill_pipeline_test", sys.argv[1])
test = importlib.util.module_from_spec(spec)
spec.loader.exec_module(test)
llm = {"backend": "openai", "base_url": sys.argv[3], "model": "stub-teacher", "max_concurrency": 2,
       "max_retries": 1, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 10}
SequentialRunner().run(test.create_pipeline(), test.catalog_for(Path(sys.argv[2]), llm))
"""


def test_kill_9_during_teacher_sampling_resumes_without_repeating_calls(world):
    splits = pd.read_parquet(world / "mcq_splits.parquet")
    total = expected_requests(splits)
    with ScriptedOpenAIServer(scripted(world, delay_s=0.05)) as server:
        proc = subprocess.Popen(
            [sys.executable, "-c", KILL_SCRIPT, __file__, str(world), server.base_url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.time() + 120
        while (
            server.count < 22 + 20 and time.time() < deadline and proc.poll() is None
        ):  # rewrites done, sampling under way
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
        first = server.count
        assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
        assert 22 < first < total  # killed part-way through the teacher samples

        llm = {**fast_llm(server), "max_concurrency": 2}
        SequentialRunner().run(create_pipeline(), catalog_for(world, llm))
        second = server.count - first
    # every answer received before the kill came back from the journal: only the rest (and at most the two
    # requests in flight when the process died) went to the endpoint again
    assert first + second <= total + 2 and second < total
    items = load(world, "reasoning_items.csv")
    assert (items["n_samples"] == SAMPLES).all()
    assert len(load(world, "distilled_reasoning.parquet")) == sum(
        int(i.split(":")[1]) % 4 != 0 for i in items["item_id"]
    )


def test_the_module_loads_standalone():
    """The kill test's child process imports this file by path: it must not depend on pytest's import mode."""
    spec = importlib.util.spec_from_file_location("standalone_check", __file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.catalog_for)
