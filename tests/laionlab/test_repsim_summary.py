"""Tests of laionlab.repsim.summary: seed 002's (Ciernik et al., ICML 2025) consistency of
model-similarity matrices across datasets (overall and per objective group) and the link
between model-pair similarity and probe-accuracy gaps."""

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from laionlab.repsim import consistency_table, similarity_behaviour_link

# Objectives interleaved, so a group's models are not a contiguous block of the matrix.
MODELS = ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"]
OBJECTIVES = {
    "m0": "image-text", "m1": "supervised", "m2": "image-text", "m3": "self-supervised",
    "m4": "supervised", "m5": "image-text", "m6": "self-supervised", "m7": "supervised",
}  # fmt: skip


def sim_matrix(rng, m=len(MODELS)):
    A = rng.uniform(0.1, 0.9, size=(m, m))
    A = (A + A.T) / 2
    np.fill_diagonal(A, 1.0)
    return A


@pytest.fixture
def similarities():
    rng = np.random.default_rng(7)
    return {d: (list(MODELS), {"linear_cka": sim_matrix(rng), "rsa": sim_matrix(rng)}) for d in ("a", "b", "c")}


def upper(M, idx):
    sub = M[np.ix_(idx, idx)]
    return sub[np.triu_indices(len(idx), k=1)]


def test_rows_are_the_correlations_of_the_upper_triangles_overall_and_per_group(similarities):
    result = consistency_table(similarities, OBJECTIVES)
    table = result.table
    assert result.metrics == ["linear_cka", "rsa"] and result.skipped == {}
    assert result.groups == {
        "image-text": ["m0", "m2", "m5"], "self-supervised": ["m3", "m6"], "supervised": ["m1", "m4", "m7"],
    }  # fmt: skip
    # 2 metrics x 3 dataset pairs x (all + the two groups of 3; self-supervised has only 2 models)
    assert table.height == 2 * 3 * 3
    assert set(table["group"]) == {"all", "image-text", "supervised"}
    assert {(r["dataset_a"], r["dataset_b"]) for r in table.iter_rows(named=True)} == {
        ("a", "b"),
        ("a", "c"),
        ("b", "c"),
    }
    for r in table.iter_rows(named=True):
        group = (
            list(range(len(MODELS))) if r["group"] == "all" else [MODELS.index(n) for n in result.groups[r["group"]]]
        )
        x = upper(similarities[r["dataset_a"]][1][r["metric"]], group)
        y = upper(similarities[r["dataset_b"]][1][r["metric"]], group)
        assert r["n_pairs"] == len(x) == len(group) * (len(group) - 1) // 2
        assert r["pearson"] == pytest.approx(pearsonr(x, y)[0], abs=1e-12)
        assert r["spearman"] == pytest.approx(spearmanr(x, y)[0], abs=1e-12)
    # a group row differs from the all-models row: the sub-matrix really is used
    ab = table.filter((table["metric"] == "rsa") & (table["dataset_a"] == "a") & (table["dataset_b"] == "b"))
    assert len(set(ab["pearson"].to_list())) == 3


def test_a_group_shares_a_pattern_the_whole_set_does_not():
    """Image-text models agree across datasets, the rest is noise: only their row is ~1."""
    rng = np.random.default_rng(3)
    it = [MODELS.index(n) for n in MODELS if OBJECTIVES[n] == "image-text"]
    pattern = sim_matrix(rng)
    sims = {}
    for d in ("a", "b"):
        M = sim_matrix(rng)
        M[np.ix_(it, it)] = pattern[np.ix_(it, it)]
        sims[d] = (MODELS, {"linear_cka": M})
    table = consistency_table(sims, OBJECTIVES).table
    row = dict(zip(table["group"], table["pearson"]))
    assert row["image-text"] == pytest.approx(1.0) and abs(row["all"]) < 0.9


def test_without_objectives_only_the_all_rows(similarities):
    result = consistency_table(similarities)
    assert set(result.table["group"]) == {"all"} and result.groups == {} and result.table.height == 2 * 3


def test_metrics_missing_on_some_datasets_are_left_out_and_reported(similarities):
    rng = np.random.default_rng(1)
    similarities["c"] = (MODELS, {"linear_cka": sim_matrix(rng), "rbf_cka": sim_matrix(rng)})
    result = consistency_table(similarities, OBJECTIVES)
    assert result.metrics == ["linear_cka"]
    assert result.skipped == {"rsa": ["a", "b"], "rbf_cka": ["c"]}
    assert set(result.table["metric"]) == {"linear_cka"} and result.table.height == 3 * 3


def test_bad_inputs_name_the_problem(similarities):
    with pytest.raises(ValueError, match="similarities: expected at least two datasets"):
        consistency_table({"a": similarities["a"]})
    renamed = dict(similarities, b=(MODELS[::-1], similarities["b"][1]))
    with pytest.raises(ValueError, match="dataset 'b' covers models .* but 'a' covers"):
        consistency_table(renamed)
    with pytest.raises(ValueError, match=r"objectives: no objective for models \['m7'\]"):
        consistency_table(similarities, {n: o for n, o in OBJECTIVES.items() if n != "m7"})
    disjoint = {
        "a": (MODELS, {"linear_cka": similarities["a"][1]["linear_cka"]}),
        "b": (MODELS, {"rsa": similarities["b"][1]["rsa"]}),
    }
    with pytest.raises(ValueError, match="no metric is computed on every dataset"):
        consistency_table(disjoint)
    with pytest.raises(ValueError, match="min_group_models"):
        consistency_table(similarities, OBJECTIVES, min_group_models=2)
    small = dict(similarities, c=(MODELS, {"linear_cka": np.eye(3), "rsa": similarities["c"][1]["rsa"]}))
    with pytest.raises(ValueError, match=r"similarities\['c'\]\['linear_cka'\]: expected shape \(8, 8\)"):
        consistency_table(small)
    flat = similarities["a"][1]["rsa"].copy()
    it = [MODELS.index(n) for n in MODELS if OBJECTIVES[n] == "image-text"]
    flat[np.ix_(it, it)] = 0.5
    np.fill_diagonal(flat, 1.0)
    constant = dict(similarities, a=(MODELS, {**similarities["a"][1], "rsa": flat}))
    with pytest.raises(ValueError, match="rsa of 'a' vs 'b', models 'image-text'.*constant"):
        consistency_table(constant, OBJECTIVES)


# --- similarity vs probe-accuracy gap --------------------------------------------------------


def test_link_is_minus_one_when_similarity_falls_with_the_gap():
    acc = np.array([0.875, 0.75, 0.5, 0.125])  # exact in binary: tied gaps stay tied
    gap = np.abs(acc[:, None] - acc[None, :])
    link = similarity_behaviour_link(1.0 - gap, acc)
    assert link["model_pairs"] == 6
    assert link["pearson"] == pytest.approx(-1.0) and link["spearman"] == pytest.approx(-1.0)
    # a monotone but non-linear fall: Spearman stays -1, Pearson does not
    link = similarity_behaviour_link(np.exp(-20 * gap), acc)
    assert link["spearman"] == pytest.approx(-1.0) and -1.0 < link["pearson"] < -0.5
    assert similarity_behaviour_link(0.5 + gap, acc)["pearson"] == pytest.approx(1.0)


def test_link_matches_scipy_on_random_pairs():
    rng = np.random.default_rng(5)
    M, acc = sim_matrix(rng, 6), rng.uniform(0.3, 0.9, size=6)
    iu = np.triu_indices(6, k=1)
    gap = np.abs(acc[iu[0]] - acc[iu[1]])
    link = similarity_behaviour_link(M, list(acc))
    assert link["model_pairs"] == 15
    assert link["pearson"] == pytest.approx(pearsonr(M[iu], gap)[0], abs=1e-12)
    assert link["spearman"] == pytest.approx(spearmanr(M[iu], gap)[0], abs=1e-12)


def test_link_is_nan_where_undefined_and_bad_inputs_are_named():
    rng = np.random.default_rng(2)
    M = sim_matrix(rng, 4)
    two = similarity_behaviour_link(np.array([[1.0, 0.3], [0.3, 1.0]]), [0.5, 0.7])
    assert two["model_pairs"] == 1 and np.isnan(two["pearson"]) and np.isnan(two["spearman"])
    same = similarity_behaviour_link(M, [0.6] * 4)
    assert np.isnan(same["pearson"]) and np.isnan(same["spearman"])
    with pytest.raises(ValueError, match=r"accuracies: expected 4 values"):
        similarity_behaviour_link(M, [0.5, 0.6, 0.7])
    with pytest.raises(ValueError, match="accuracies: contains NaN"):
        similarity_behaviour_link(M, [0.5, np.nan, 0.6, 0.7])
    asym = M.copy()
    asym[0, 1] += 0.2
    with pytest.raises(ValueError, match="matrix: expected a symmetric matrix"):
        similarity_behaviour_link(asym, [0.5, 0.6, 0.7, 0.8])


def test_consistency_matrix_places_each_pair_symmetrically_as_the_asset_did(similarities):
    from laionlab.repsim import ALL_MODELS, consistency_matrix

    table = consistency_table(similarities, OBJECTIVES).table
    datasets = ["a", "b", "c"]
    M = consistency_matrix(table, datasets, "rsa")
    # the loop similarity_consistency ran before
    want = np.eye(3)
    for r in table.filter((table["metric"] == "rsa") & (table["group"] == ALL_MODELS)).iter_rows(named=True):
        i, j = datasets.index(r["dataset_a"]), datasets.index(r["dataset_b"])
        want[i, j] = want[j, i] = r["spearman"]
    np.testing.assert_array_equal(M, want)
    assert M.shape == (3, 3) and np.allclose(M, M.T) and np.all(np.diag(M) == 1)
    a, c = similarities["a"][1]["rsa"], similarities["c"][1]["rsa"]
    iu = np.triu_indices(len(MODELS), k=1)
    assert M[0, 2] == pytest.approx(spearmanr(a[iu], c[iu])[0])
    reordered = consistency_matrix(table, ["c", "a", "b"], "rsa", corr="pearson")
    assert reordered[1, 0] == pytest.approx(pearsonr(a[iu], c[iu])[0])


def test_consistency_matrix_names_the_bad_input(similarities):
    from laionlab.repsim import consistency_matrix

    table = consistency_table(similarities, OBJECTIVES).table
    with pytest.raises(ValueError, match="corr"):
        consistency_matrix(table, ["a", "b", "c"], "rsa", corr="kendall")
    with pytest.raises(ValueError, match=r"datasets: .*\['c'\]"):
        consistency_matrix(table, ["a", "b"], "rsa")
    with pytest.raises(ValueError, match="table: expected"):
        consistency_matrix(table.drop("group"), ["a", "b", "c"], "rsa")
