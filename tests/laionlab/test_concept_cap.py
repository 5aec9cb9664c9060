"""MetaCLIP's per-concept cap (laionlab.curation.concept_cap): matching against MetaCLIP's
substr_matching written out in plain Python, counts summed over parts, the keep probability in
closed form against hand-computed cases and against simulations (over many seeds, and of
MetaCLIP's own per-entry loop), and the draws' independence from the parts and their order."""

import json
import math
import random

import numpy as np
import polars as pl
import pytest

from laionlab.curation import (
    METACLIP_T,
    concept_counts,
    concept_table,
    concepts_digest,
    entry_probability,
    keep_probability,
    keep_rows,
    match_concepts,
    per_concept_kept,
    read_concepts_file,
    sum_counts,
    uniform_draws,
)

CONCEPTS = ["dog", "hot dog", "cat", "St. Bernard", "red fox", "Café"]

# --- the documented hash, written out in plain Python ------------------------------------------

MASK = 2**64 - 1


def _fnv(text: str) -> int:
    h = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & MASK
    return h


def _mix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def _draw(uid: str, concept: str, seed: int) -> float:
    return (_mix(_mix(_fnv(uid) ^ _mix(seed)) ^ _fnv(concept)) >> 11) / 2**53


def test_draws_are_the_documented_hash():
    uids = ["part-00000:000000001", "part-00000:000000002", "", "é€𝄞", "x" * 70]
    concepts = ["dog", "hot dog", "Café", "", "a"]
    for seed in (0, 1, 2**64 - 1):
        got = uniform_draws(uids, concepts, seed)
        want = [_draw(u, c, seed) for u, c in zip(uids, concepts)]
        assert got.tolist() == want
    assert np.all((got >= 0) & (got < 1))


def test_draws_look_uniform_and_independent():
    uids = [f"part-{p:05d}:{r:09d}" for p in range(3) for r in range(20_000)]
    u = uniform_draws(uids, ["dog"] * len(uids), seed=7)
    v = uniform_draws(uids, ["cat"] * len(uids), seed=7)
    w = uniform_draws(uids, ["dog"] * len(uids), seed=8)
    n = len(uids)
    counts, _ = np.histogram(u, bins=20, range=(0, 1))
    chi2 = ((counts - n / 20) ** 2 / (n / 20)).sum()
    assert chi2 < 50  # 19 degrees of freedom: p < 1e-4
    for other in (v, w):  # another concept or seed: uncorrelated draws
        assert abs(np.corrcoef(u, other)[0, 1]) < 0.02


# --- matching ------------------------------------------------------------------------------------


def _metaclip_spacing(text: str) -> str:
    # substr_matching.spacing, as MetaCLIP writes it
    spaced = f" {text} "
    for punct in [",", ".", ";", ":", "?", "!", "`"]:
        spaced = spaced.replace(punct, f" {punct} ")
    for char in ["\t", "\n", "\r"]:
        spaced = spaced.replace(char, " ")
    return spaced


def _metaclip_match(text: str | None, concepts: list[str]) -> list[int]:
    if text is None:
        return []
    spaced = _metaclip_spacing(text)
    return sorted(i for i, c in enumerate(concepts) if f" {c} " in spaced)


def test_metaclip_rule_by_hand():
    captions = [
        "a hot dog bun",  # overlapping entries both match
        "Dog and cat.",  # case-sensitive; '.' spaced out
        "my cat,my dog!",
        "hot-dog stand",  # '-' is not spaced out: no match
        "St. Bernard puppy",  # an entry holding '.' never matches, as in MetaCLIP
        "dog\tcat\nred fox",
        "Café au lait",
        "catalogue dogma",  # whole words only
        None,
        "",
    ]
    got = match_concepts(captions, CONCEPTS)["concept_ids"].to_list()
    assert got == [[0, 1], [2], [0, 2], [], [], [0, 2, 4], [5], [], [], []]


def test_metaclip_rule_equals_the_plain_python_loop():
    rng = random.Random(0)
    words = ["dog", "Dog", "hot", "cat", "St.", "Bernard", "red", "fox", "Café", ",", ".", "!", "-", "\t", "x"]
    captions = [
        "".join(rng.choice([" ", ""]) + rng.choice(words) for _ in range(rng.randint(0, 8))) for _ in range(500)
    ]
    got = match_concepts(captions, CONCEPTS)["concept_ids"].to_list()
    assert got == [_metaclip_match(c, CONCEPTS) for c in captions]
    assert sum(map(bool, got)) > 100


def test_the_project_rules_are_reused():
    captions = ["a hot-dog stand", "RED FOX", "St. Bernard", "dog\tcat"]
    laionet = match_concepts(captions, CONCEPTS, "laionet")["concept_ids"].to_list()
    swat = match_concepts(captions, CONCEPTS, "swat")["concept_ids"].to_list()
    assert laionet == [[0, 1], [], [], []]  # punctuation → spaces, case-sensitive, tabs kept (seed 001)
    assert swat == [[0, 1], [4], [3], [0, 2]]  # case-insensitive whole words (seed 003)
    with pytest.raises(ValueError, match="rule"):
        match_concepts(captions, CONCEPTS, "fuzzy")


# --- counts and probabilities --------------------------------------------------------------------


def _ids(lists) -> pl.Series:
    return pl.Series("concept_ids", lists, dtype=pl.List(pl.UInt32))


def test_counts_count_each_caption_once_per_concept_and_sum_over_parts():
    captions = ["dog dog dog", "hot dog and a dog", "cat", "nothing", None]
    matched = match_concepts(captions, CONCEPTS)["concept_ids"]
    assert concept_counts(matched, len(CONCEPTS)).tolist() == [2, 1, 1, 0, 0, 0]
    parts = [captions[:2], captions[2:4], captions[4:]]
    per_part = [concept_counts(match_concepts(p, CONCEPTS)["concept_ids"], len(CONCEPTS)) for p in parts]
    assert sum_counts(per_part).tolist() == [2, 1, 1, 0, 0, 0]
    assert sum_counts(per_part[::-1]).tolist() == sum_counts(per_part).tolist()
    with pytest.raises(ValueError, match="one length"):
        sum_counts([np.zeros(3, np.uint64), np.zeros(4, np.uint64)])


def test_entry_and_keep_probability_by_hand():
    counts = np.array([40, 10, 5, 0])
    p = entry_probability(counts, t=10)
    assert p.tolist() == [0.25, 1.0, 1.0, 1.0]
    assert entry_probability(np.array([100_000, 20_000, 7]), METACLIP_T).tolist() == [0.2, 1.0, 1.0]
    probability = np.array([0.5, 0.25, 1.0, 0.1])
    got = keep_probability(_ids([[0], [0, 1], [1, 3], [0, 2], []]), probability)
    want = [0.5, 1 - 0.5 * 0.75, 1 - 0.75 * 0.9, 1.0, 0.0]
    assert got.tolist() == pytest.approx(want, abs=1e-12)


def _frame(concept_lists, prefix="part-00000") -> pl.DataFrame:
    return pl.DataFrame(
        {"uid": [f"{prefix}:{i:09d}" for i in range(len(concept_lists))], "concept_ids": _ids(concept_lists)}
    )


# rows' concept sets for the simulations; counts give p = [0.5, 0.25, 0.1, 1.0] at t = 10
ROWS = [[0], [1], [2], [3], [0, 1], [1, 2], [0, 1, 2], [2, 3], []]
COUNTS = np.array([20, 40, 100, 4], dtype=np.uint64)


def test_keep_frequency_over_seeds_is_the_closed_form():
    matches = _frame(ROWS)
    concepts = ["a", "b", "c", "d"]
    n_seeds = 3000
    kept = np.zeros(len(ROWS))
    for seed in range(n_seeds):
        flags = keep_rows(matches, COUNTS, concepts, t=10, seed=seed)
        kept += flags["keep"].to_numpy()
    want = flags["keep_probability"].to_numpy()
    p = np.array([0.5, 0.25, 0.1, 1.0])
    closed = [1 - math.prod(1 - p[i] for i in row) if row else 0.0 for row in ROWS]
    assert want.tolist() == pytest.approx(closed, abs=1e-12)
    sigma = np.sqrt(want * (1 - want) / n_seeds)
    assert np.all(np.abs(kept / n_seeds - want) <= 4.5 * sigma + 1e-12), (kept / n_seeds, want)
    # the max rule would keep row [0, 1] half the time, MetaCLIP's per-entry draws 62.5 %
    assert kept[4] / n_seeds > 0.59


def test_metaclip_per_entry_loop_gives_the_same_probability():
    """MetaCLIP's balancing.balance_sampling (a draw per matched entry, keep on the first
    success) simulated with Python's random: the same probabilities as the closed form."""
    rng = random.Random(1)
    p = entry_probability(COUNTS, 10)

    def balance_sampling(matched_entry_ids):
        return any(rng.random() < p[e] for e in matched_entry_ids)

    trials = 20_000
    freq = np.array([sum(balance_sampling(row) for _ in range(trials)) / trials for row in ROWS])
    closed = keep_probability(_ids(ROWS), p)
    assert np.all(np.abs(freq - closed) <= 4.5 * np.sqrt(closed * (1 - closed) / trials) + 1e-12)


def test_a_frequent_concept_keeps_about_t_captions():
    n, t = 20_000, 500
    matches = _frame([[0]] * n + [[1]] * 300)
    counts = np.array([n, 300], dtype=np.uint64)
    flags = keep_rows(matches, counts, ["common", "rare"], t=t, seed=3)
    kept = per_concept_kept(matches["concept_ids"], flags["keep"], 2)
    assert kept["matched"].to_list() == [n, 300]
    assert kept["kept"][1] == 300  # under the cap: every caption
    assert abs(kept["kept"][0] - t) < 4 * math.sqrt(t * (1 - t / n))
    assert flags["keep_probability"][0] == pytest.approx(t / n)


def test_large_cap_keeps_every_matched_row_and_no_unmatched_one():
    matches = _frame(ROWS)
    flags = keep_rows(matches, COUNTS, ["a", "b", "c", "d"], t=10**9, seed=0)
    assert flags["keep"].to_list() == [bool(r) for r in ROWS]
    assert flags["n_concepts"].to_list() == [len(r) for r in ROWS]


def test_a_part_is_balanced_alike_alone_in_any_order_and_with_a_reordered_concept_list():
    rng = np.random.default_rng(0)
    concepts = ["a", "b", "c", "d"]
    parts = {
        f"part-{p:05d}": _frame(
            [list(np.unique(rng.integers(0, 4, rng.integers(0, 3)))) for _ in range(300)], f"part-{p:05d}"
        )
        for p in range(3)
    }
    per_part = {k: concept_counts(v["concept_ids"], 4) for k, v in parts.items()}
    counts = sum_counts(per_part.values())
    assert counts.tolist() == sum_counts(reversed(list(per_part.values()))).tolist()
    pool = keep_rows(pl.concat(parts.values()), counts, concepts, t=40, seed=5)
    for part, matches in parts.items():
        alone = keep_rows(matches, counts, concepts, t=40, seed=5)
        assert alone.equals(pool.filter(pl.col("uid").str.starts_with(part)))
        shuffled = matches.sample(fraction=1.0, shuffle=True, seed=1)
        again = keep_rows(shuffled, counts, concepts, t=40, seed=5)
        assert again.sort("uid").equals(alone.sort("uid"))
    # the draws are keyed by the concept string, so renumbering the concepts changes nothing
    order = [2, 0, 3, 1]  # new id of old id i is order.index(i)
    renamed = [concepts[i] for i in order]
    remap = {old: order.index(old) for old in range(4)}
    matches = parts["part-00001"]
    renumbered = matches.with_columns(
        pl.col("concept_ids").list.eval(pl.element().replace_strict(remap, return_dtype=pl.UInt32)).list.sort()
    )
    moved = keep_rows(renumbered, counts[order], renamed, t=40, seed=5)
    assert moved["keep"].to_list() == keep_rows(matches, counts, concepts, t=40, seed=5)["keep"].to_list()
    assert keep_rows(matches, counts, concepts, t=40, seed=6)["keep"].to_list() != moved["keep"].to_list()


# --- inputs ---------------------------------------------------------------------------------------


def test_concept_files_and_bad_inputs(tmp_path):
    text = tmp_path / "concepts.txt"
    text.write_text("# MetaCLIP-like entries\ndog\n\n  hot dog \ncat\n")
    assert read_concepts_file(text) == ["dog", "hot dog", "cat"]
    listed = tmp_path / "metadata.json"
    listed.write_text(json.dumps(["dog", "Café"]))
    assert read_concepts_file(listed) == ["dog", "Café"]
    assert concept_table(["dog", "cat"])["concept_id"].to_list() == [0, 1]
    assert concepts_digest(["dog", "cat"]) != concepts_digest(["cat", "dog"])
    with pytest.raises(ValueError, match="more than once"):
        read_concepts_file(_write(tmp_path / "dup.txt", "dog\ncat\ndog\n"))
    with pytest.raises(ValueError, match="no file"):
        read_concepts_file(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="whitespace"):
        concept_table(["dog", " cat"])
    matches = _frame([[0], [1]])
    with pytest.raises(ValueError, match="counted 0 times"):
        keep_rows(matches, np.array([3, 0], dtype=np.uint64), ["a", "b"], t=2)
    with pytest.raises(ValueError, match="seed"):
        keep_rows(matches, np.array([3, 1], dtype=np.uint64), ["a", "b"], t=2, seed=-1)
    with pytest.raises(ValueError, match="t"):
        keep_rows(matches, np.array([3, 1], dtype=np.uint64), ["a", "b"], t=0)
    with pytest.raises(ValueError, match="concept_ids"):
        keep_rows(_frame([[5]]), np.array([3, 1], dtype=np.uint64), ["a", "b"], t=2)
    with pytest.raises(ValueError, match="unique uids"):
        keep_rows(pl.concat([matches, matches]), np.array([3, 1], dtype=np.uint64), ["a", "b"], t=2)


def _write(path, text):
    path.write_text(text)
    return path
