"""Tests of laionlab.ood.concepts: the concept (keyword) distribution comparison of seed 000,
on hand-computable distributions and against scipy."""

import math

import numpy as np
import polars as pl
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

from laionlab.ood import compare_distributions, concept_counts, concept_distribution


def _images(counts: dict[str, int]) -> list[list[str]]:
    """One single-keyword image per unit of count."""
    return [[c] for c, n in counts.items() for _ in range(n)]


@pytest.fixture
def random_sets():
    rng = np.random.default_rng(0)
    vocab = [f"c{i:02d}" for i in range(40)]
    weights = rng.dirichlet(np.full(40, 0.5))
    pool = [list(rng.choice(vocab, size=rng.integers(0, 6), p=weights)) for _ in range(500)]
    subset = [pool[i] for i in rng.choice(500, size=80, replace=False)] + [["only_in_subset"]]
    return subset, pool


def test_counts_dedupe_within_image_and_skip_nulls():
    lists = [["a", "b", "a"], [], ["b"], None, ["c", None]]
    assert concept_counts(lists) == {"b": 2, "a": 1, "c": 1}
    assert concept_distribution(lists) == pytest.approx({"b": 0.5, "a": 0.25, "c": 0.25})
    assert list(concept_distribution(lists)) == ["b", "a", "c"]  # most frequent, then by name
    assert concept_distribution([[], []]) == {}
    series = pl.Series([["x"], ["x", "y"]], dtype=pl.List(pl.String))
    assert concept_counts(series) == {"x": 2, "y": 1}


def test_uniform_entropy_is_log2_k():
    for k in (1, 2, 5, 16):
        pool = _images({f"c{i}": 3 for i in range(k)})
        out = compare_distributions(pool, pool)
        assert out["entropy_pool_bits"] == pytest.approx(math.log2(k))
        assert out["entropy_subset_bits"] == pytest.approx(math.log2(k))
    assert compare_distributions([["a"]], [["a"]])["entropy_pool_bits"] == 0.0


def test_identical_distributions():
    pool = _images({"a": 2, "b": 4, "c": 2})
    subset = _images({"a": 1, "b": 2, "c": 1})  # same proportions, half the images
    out = compare_distributions(subset, pool)
    assert out["kl_subset_pool_bits"] == pytest.approx(0.0, abs=1e-12)
    assert out["js_distance"] == pytest.approx(0.0, abs=1e-7)
    assert out["pool_coverage"] == 1.0
    assert out["n_pool_concepts_covered"] == 3
    assert out["over_represented"] == [] and out["under_represented"] == []


def test_disjoint_distributions():
    out = compare_distributions(_images({"a": 1, "b": 1}), _images({"c": 2, "d": 1}))
    assert out["js_distance"] == pytest.approx(1.0)
    assert out["n_pool_concepts_covered"] == 0 and out["pool_coverage"] == 0.0
    assert math.isinf(compare_distributions([["a"]], [["b"]], smoothing=0)["kl_subset_pool_bits"])


def test_hand_computed_half_support():
    # subset uniform on {a, b}, pool uniform on {a, b, c, d}: KL = 1 bit,
    # JSD = 0.5 * KL(p || m) + 0.5 * KL(q || m), m = (3/8, 3/8, 1/8, 1/8).
    out = compare_distributions([["a"], ["b"]], [["a"], ["b"], ["c"], ["d"]], smoothing=0, top=3)
    assert out["entropy_subset_bits"] == pytest.approx(1.0)
    assert out["entropy_pool_bits"] == pytest.approx(2.0)
    assert out["kl_subset_pool_bits"] == pytest.approx(1.0)
    jsd = 0.5 * math.log2(4 / 3) + 0.5 * (0.5 * math.log2(2 / 3) + 0.5 * math.log2(2))
    assert out["js_distance"] == pytest.approx(math.sqrt(jsd))
    assert (out["n_concepts_subset"], out["n_concepts_pool"], out["n_pool_concepts_covered"]) == (2, 4, 2)
    assert out["pool_coverage"] == 0.5
    assert [r["concept"] for r in out["over_represented"]] == ["a", "b"]
    assert out["over_represented"][0]["log2_ratio"] == pytest.approx(1.0)
    assert out["over_represented"][0]["p_subset"] == 0.5 and out["over_represented"][0]["p_pool"] == 0.25
    assert [r["concept"] for r in out["under_represented"]] == ["c", "d"]
    assert out["under_represented"][0]["log2_ratio"] == -math.inf


def test_ranking_and_top():
    pool = _images({"a": 10, "b": 10, "c": 10, "d": 10, "e": 10})
    subset = _images({"a": 5, "b": 3, "c": 2, "d": 1})
    out = compare_distributions(subset, pool, top=2)
    assert [r["concept"] for r in out["over_represented"]] == ["a", "b"]
    assert [r["concept"] for r in out["under_represented"]] == ["e", "d"]
    assert compare_distributions(subset, pool, top=0)["over_represented"] == []


def test_against_scipy(random_sets):
    subset, pool = random_sets
    eps = 1e-6
    out = compare_distributions(subset, pool, smoothing=eps)
    ps, qs = concept_distribution(subset), concept_distribution(pool)
    support = sorted(set(ps) | set(qs))
    p = np.array([ps.get(c, 0.0) for c in support])
    q = np.array([qs.get(c, 0.0) for c in support])
    assert out["entropy_subset_bits"] == pytest.approx(entropy(p, base=2))
    assert out["entropy_pool_bits"] == pytest.approx(entropy(q, base=2))
    assert out["js_distance"] == pytest.approx(jensenshannon(p, q, base=2))
    k = len(support)
    p_s, q_s = (p + eps) / (1 + k * eps), (q + eps) / (1 + k * eps)
    assert out["kl_subset_pool_bits"] == pytest.approx(entropy(p_s, q_s, base=2))
    assert out["n_concepts_subset"] == len(ps) and out["n_concepts_pool"] == len(qs)
    covered = len((set(ps) & set(qs)))
    assert out["n_pool_concepts_covered"] == covered
    assert out["pool_coverage"] == pytest.approx(covered / len(qs))
    assert (out["n_images_subset"], out["n_images_pool"]) == (81, 500)
    assert out["over_represented"][0]["concept"] == "only_in_subset"
    ratios = [r["log2_ratio"] for r in out["over_represented"]]
    assert ratios == sorted(ratios, reverse=True) and len(ratios) == 10


def test_bad_inputs():
    with pytest.raises(ValueError, match="^subset"):
        compare_distributions([[], []], [["a"]])
    with pytest.raises(ValueError, match="^pool"):
        compare_distributions([["a"]], [])
    with pytest.raises(ValueError, match="^subset"):
        compare_distributions(["abc"], [["a"]])
    with pytest.raises(ValueError, match="^pool"):
        compare_distributions([["a"]], [[1, 2]])
    with pytest.raises(ValueError, match="^smoothing"):
        compare_distributions([["a"]], [["a"]], smoothing=-1)
    with pytest.raises(ValueError, match="^top"):
        compare_distributions([["a"]], [["a"]], top=-1)
    with pytest.raises(ValueError, match="^keyword_lists"):
        concept_counts("abc")
    with pytest.raises(ValueError, match="^keyword_lists"):
        concept_distribution(pl.Series([1, 2]))
