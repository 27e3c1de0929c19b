import pytest

from finrag_pipelines.text.dedup import dedup_key, find_duplicates, simhash64


def test_exact_duplicates_ignore_punctuation_case_and_spaces():
    assert dedup_key("感谢您的关注！") == dedup_key("感谢 您的关注。")
    assert dedup_key("ETF") == dedup_key("etf")
    matches = find_duplicates(["您好！感谢关注。", "其他内容", "您好，感谢关注！"], near=False)
    assert [(m.index, m.kept_index, m.kind) for m in matches] == [(2, 0, "exact")]


def test_simhash_is_stable_and_close_for_near_copies():
    a = (
        "公司于2019年底完成新工厂搬迁，新工厂的设计产能为20万台每年，"
        "同时公司致力于通过高效有序管理保证生产效率提升。"
    )
    b = a.replace("20万台", "21万台")
    c = "截至目前，公司未收到实际控制人的减持计划，公司会严格履行相关信息披露义务。"
    assert simhash64(a) == simhash64(a)
    assert bin(simhash64(a) ^ simhash64(b)).count("1") < bin(simhash64(a) ^ simhash64(c)).count("1")
    assert simhash64("") == 0


def test_near_duplicates_are_found_and_point_at_the_first():
    base = (
        "公司于2019年底完成新工厂搬迁，新工厂的设计产能为20万台每年，"
        "同时公司致力于通过高效有序管理保证生产效率提升和订单要求满足。"
    )
    unrelated = "无关的文本，讲述基金净值的变化情况以及分红安排。"
    texts = [unrelated, base, base.replace("20万台", "21万台"), base + "谢谢"]
    matches = find_duplicates(texts, max_hamming=6, min_jaccard=0.7)
    assert {(m.index, m.kept_index, m.kind) for m in matches} == {(2, 1, "near"), (3, 1, "near")}
    assert all(0.7 <= m.similarity <= 1.0 for m in matches)


def test_jaccard_guard_rejects_dissimilar_pairs():
    base = (
        "公司于2019年底完成新工厂搬迁，新工厂的设计产能为20万台每年，"
        "同时公司致力于通过高效有序管理保证生产效率提升和订单要求满足。"
    )
    assert find_duplicates([base, base.replace("20万台", "21万台")], max_hamming=15, min_jaccard=1.0) == []


def test_near_off_finds_only_exact():
    base = "公司于2019年底完成新工厂搬迁，新工厂的设计产能为20万台每年。"
    assert find_duplicates([base, base.replace("20", "21")], near=False) == []


def test_bad_threshold_is_rejected():
    with pytest.raises(ValueError, match="max_hamming"):
        find_duplicates(["a", "b"], max_hamming=16)


def _near_corpus(n: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    words = [
        *("公司", "营业收入", "同比增长", "毛利率", "现金流", "分红"),
        *("回购", "股东", "订单", "产能", "研发"),
    ]
    texts: list[str] = []
    for _ in range(n):
        if texts and rng.random() < 0.3:  # a near copy: one or two characters changed
            chars = list(rng.choice(texts))
            for _ in range(rng.randint(1, 2)):
                chars[rng.randrange(len(chars))] = rng.choice("某甲乙丙")
            texts.append("".join(chars))
        else:
            words_in = (rng.choice(words) for _ in range(rng.randint(6, 20)))
            texts.append("".join(words_in) + str(rng.randint(0, 99)))
    return texts


def test_simhash_many_equals_simhash_one_by_one(monkeypatch):
    from finrag_pipelines.text import dedup

    texts = _near_corpus(300, 1) + ["", "a", "ab", "，，", "abc", "你好"]
    expected = [simhash64(t) for t in texts]
    assert [int(x) for x in dedup.simhash64_many(texts)] == expected
    monkeypatch.setattr(dedup, "_BATCH_WINDOWS", 50)  # many small batches
    monkeypatch.setattr(dedup, "_BATCH_TEXTS", 7)
    assert [int(x) for x in dedup.simhash64_many(texts)] == expected


@pytest.mark.parametrize("max_hamming", [3, 8])
def test_near_duplicates_match_an_all_pairs_reference(max_hamming):
    """Banded candidates (each pair examined once, in its first shared band) find what all pairs find."""
    texts = _near_corpus(400, max_hamming)
    found = {(m.index, m.kept_index, m.kind) for m in find_duplicates(texts, max_hamming=max_hamming)}
    keys, survivors = {}, []
    for i, text in enumerate(texts):
        if keys.setdefault(dedup_key(text), i) == i:
            survivors.append(i)
    parent = {i: i for i in survivors}

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    from finrag_pipelines.text.dedup import jaccard, ngram_hashes

    for x, a in enumerate(survivors):
        for b in survivors[x + 1 :]:
            close = (simhash64(texts[a]) ^ simhash64(texts[b])).bit_count() <= max_hamming
            if close and jaccard(ngram_hashes(texts[a], 3), ngram_hashes(texts[b], 3)) >= 0.7:
                ra, rb = root(a), root(b)
                parent[max(ra, rb)] = min(ra, rb)
    expected = {(i, keys[dedup_key(t)], "exact") for i, t in enumerate(texts) if keys[dedup_key(t)] != i}
    expected |= {(i, root(i), "near") for i in survivors if root(i) != i}
    assert any(kind == "near" for _, _, kind in expected)
    assert found == expected
