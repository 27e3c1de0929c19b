"""benchmarks/scale.py --merge-into: chosen stages written into an earlier run's line of the same size."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

_SCALE = Path(__file__).resolve().parents[2] / "benchmarks" / "scale.py"


@pytest.fixture(scope="module")
def scale() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scale_benchmark", _SCALE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _line(size: int, stages: dict[str, dict[str, float]], dim: int = 1024) -> dict[str, object]:
    return {"size": size, "options": {"size": size, "dim": dim}, "stages": stages, "finished": "T0"}


NOTE = {"at": "T1", "commit": "abc", "corpus_sha256": "f00"}


def test_merge_replaces_only_the_chosen_stages_of_the_same_size(scale: ModuleType) -> None:
    old = [
        _line(10, {"bm25_build": {"seconds": 1.0}, "ngram_build": {"seconds": 9.0}}),
        _line(100, {"bm25_build": {"seconds": 2.0}}),
    ]
    new = _line(10, {"ngram_build": {"seconds": 3.0}, "ngram_search_mmap": {"qps": 5.0}})
    merged = scale.merge_record(old, new, NOTE)
    assert [r["size"] for r in merged] == [10, 100]
    stages = merged[0]["stages"]
    assert stages["bm25_build"] == {"seconds": 1.0}  # not measured again: kept as it was, no stamp
    assert stages["ngram_build"] == {"seconds": 3.0, "measured_at": "T1", "commit": "abc"}
    assert stages["ngram_search_mmap"]["measured_at"] == "T1"
    assert merged[0]["finished"] == "T0"  # the full run's own date stays
    assert merged[0]["merged"] == [{**NOTE, "stages": ["ngram_build", "ngram_search_mmap"]}]
    assert merged[1] == old[1]
    assert old[0]["stages"]["ngram_build"] == {"seconds": 9.0}  # the input is not modified


def test_merge_twice_keeps_both_notes_and_flags_other_options(scale: ModuleType) -> None:
    first = scale.merge_record([_line(10, {})], _line(10, {"a": {"seconds": 1.0}}), NOTE)
    second = scale.merge_record(first, _line(10, {"b": {"seconds": 2.0}}, dim=64), {**NOTE, "at": "T2"})
    notes = second[0]["merged"]
    assert [n["at"] for n in notes] == ["T1", "T2"]
    assert "options_differ" not in notes[0]
    assert notes[1]["options_differ"] == {"size": 10, "dim": 64}
    assert second[0]["stages"]["a"]["measured_at"] == "T1"
    assert second[0]["stages"]["b"]["measured_at"] == "T2"


def test_merge_appends_a_size_the_file_does_not_have(scale: ModuleType) -> None:
    merged = scale.merge_record([_line(10, {})], _line(1000, {"a": {"seconds": 1.0}}), NOTE)
    assert [r["size"] for r in merged] == [10, 1000]
    assert merged[1]["merged"][0]["stages"] == ["a"]


def test_results_file_round_trip_and_broken_line(scale: ModuleType, tmp_path: Path) -> None:
    target = tmp_path / "scale.jsonl"
    assert scale.read_records(target) == []
    records = [_line(10, {"a": {"seconds": 1.0}}), _line(100, {})]
    scale.write_records(target, records)
    assert scale.read_records(target) == records
    target.write_text(json.dumps(records[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"scale\.jsonl:2: not a JSON line"):
        scale.read_records(target)


@pytest.mark.slow
def test_main_merges_a_measured_stage_into_the_file(scale: ModuleType, tmp_path: Path) -> None:
    """End to end at 300 documents: the corpus is generated, only ``corpus_prep`` (whose table the index
    reads) and ``ngram_build`` run and are merged."""
    target = tmp_path / "scale.jsonl"
    earlier = _line(300, {"bm25_build": {"seconds": 1.0}})
    scale.write_records(target, [earlier])
    argv = ["--sizes", "300", "--stages", "corpus_prep,ngram_build", "--workdir", str(tmp_path / "work")]
    scale.main([*argv, "--merge-into", str(target), "--plot", str(tmp_path / "scale.png")])
    (line,) = scale.read_records(target)
    assert line["stages"]["bm25_build"] == {"seconds": 1.0}
    built = line["stages"]["ngram_build"]
    assert "error" not in built, built
    assert built["vocab"] > 0 and built["peak_rss_mb"] > 0 and built["measured_at"]
    (note,) = line["merged"]
    assert note["stages"] == ["corpus_prep", "generate", "ngram_build"]
    assert note["corpus_sha256"] == scale.file_sha256(tmp_path / "work" / "300" / "corpus.jsonl")
    assert not (tmp_path / "scale.png").exists()  # one size: no curve to draw


def test_peak_gib_converts_each_field_from_its_own_unit(scale: ModuleType) -> None:
    assert scale.peak_gib({"peak_rss_mb": 1024.0, "tree_rss_mb": 0.0}) == 1.0  # MiB
    assert scale.peak_gib({"peak_rss_mb": 0.0, "tree_rss_mb": 2**30 / 1e6}) == pytest.approx(1.0)  # 10^6 B


def test_commit_stamp_ignores_only_the_files_the_run_writes(
    scale: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    for name in ("results.jsonl", "code.py"):
        (tmp_path / name).write_text("a\n", encoding="utf-8")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    monkeypatch.setattr(scale, "ROOT", tmp_path)
    results = tmp_path / "results.jsonl"
    assert not scale._git_commit(ignore=[results]).endswith("+dirty")
    results.write_text("b\n", encoding="utf-8")  # the run's own output
    assert not scale._git_commit(ignore=[results]).endswith("+dirty")
    assert scale._git_commit().endswith("+dirty")
    (tmp_path / "code.py").write_text("b\n", encoding="utf-8")
    assert scale._git_commit(ignore=[results]).endswith("+dirty")
