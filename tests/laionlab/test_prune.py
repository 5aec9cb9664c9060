"""laionlab.dedup.prune (seed 004): per-sample thresholds, the pruning rule on a hand-worked
example, and the seeded subsample."""

import numpy as np
import pytest

from laionlab.dedup.prune import nearest_similarity, prune_mask, subsample_parts
from laionlab.neighbours import topk_similar


def unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_nearest_similarity_matches_brute_force():
    rng = np.random.default_rng(0)
    eval_emb, train_emb = unit(rng, 90, 32), unit(rng, 1500, 32)
    got = nearest_similarity(eval_emb, train_emb, block_rows=40, query_block_rows=256, device="cpu")
    want = (eval_emb.astype(np.float64) @ train_emb.astype(np.float64).T).max(axis=1)
    assert got.shape == (90,) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-6)
    # the top-1 of the candidate search is the same number
    top1 = topk_similar(eval_emb, train_emb, 1, device="cpu").scores[:, 0]
    np.testing.assert_allclose(got, top1, atol=1e-6)


# Three eval samples, two candidates each, in a pool of six rows (all values exact in binary).
#   sample 0: threshold 0.75; row 4 at 0.875 > 0.75 -> removed; row 1 at 0.625 stays
#   sample 1: threshold 0.75; row 4 at 0.5 (already removed by sample 0); row 1 at exactly
#             0.75 -> not strictly greater, stays
#   sample 2: threshold 0.5;  row 0 at 0.625 -> removed; row 2 at 0.25 stays
#   rows 3 and 5 are nobody's candidates -> kept
CANDIDATE_IDS = np.array([[4, 1], [4, 1], [0, 2]])
CANDIDATE_SCORES = np.array([[0.875, 0.625], [0.5, 0.75], [0.625, 0.25]], dtype=np.float32)
THRESHOLDS = np.array([0.75, 0.75, 0.5], dtype=np.float32)


def test_prune_mask_hand_example():
    keep = prune_mask(CANDIDATE_IDS, CANDIDATE_SCORES, THRESHOLDS, n_pool=6)
    assert keep.dtype == bool
    np.testing.assert_array_equal(keep, [False, True, True, True, False, True])


def test_prune_mask_ignores_empty_slots():
    # sample 2's first candidate left the pool: its slot is -1 with score -inf
    ids = CANDIDATE_IDS.copy()
    ids[2, 0] = -1
    scores = CANDIDATE_SCORES.copy()
    scores[2, 0] = -np.inf
    keep = prune_mask(ids, scores, THRESHOLDS, n_pool=6)
    np.testing.assert_array_equal(keep, [True, True, True, True, False, True])
    scores[2, 1] = np.nan  # a filled slot must hold a finite score
    with pytest.raises(ValueError, match=r"^candidate_scores: contains NaN"):
        prune_mask(ids, scores, THRESHOLDS, n_pool=6)


def test_prune_mask_warns_when_candidates_run_out():
    # sample 2's threshold 0.125: both its candidates are above it, a third row might be too
    with pytest.warns(UserWarning, match=r"1 eval sample\(s\) have all 2 candidates"):
        keep = prune_mask(CANDIDATE_IDS, CANDIDATE_SCORES, [0.75, 0.75, 0.125], n_pool=6)
    np.testing.assert_array_equal(keep, [False, True, False, True, False, True])


def test_prune_end_to_end_matches_brute_force():
    rng = np.random.default_rng(1)
    pool, eval_emb, train_emb = unit(rng, 400, 16), unit(rng, 20, 16), unit(rng, 300, 16)
    thresholds = nearest_similarity(eval_emb, train_emb, device="cpu")
    cand = topk_similar(eval_emb, pool, 400, block_rows=128, device="cpu")  # k = whole pool
    keep = prune_mask(cand.ids, cand.scores, thresholds, n_pool=400)
    sims = eval_emb @ pool.T
    want = ~(sims > thresholds[:, None]).any(axis=0)
    np.testing.assert_array_equal(keep, want)
    assert 0 < keep.sum() < 400


def test_subsample_parts_is_seeded_sized_and_uniform():
    sizes = [300, 0, 34, 1000]
    a = subsample_parts(sizes, 100, seed=7)
    assert [len(r) for r in subsample_parts(sizes)] == sizes
    assert all(np.array_equal(x, y) for x, y in zip(a, subsample_parts(sizes, 100, seed=7)))
    assert not all(np.array_equal(x, y) for x, y in zip(a, subsample_parts(sizes, 100, seed=8)))
    assert sum(len(r) for r in a) == 100 and len(a[1]) == 0
    for rows, n in zip(a, sizes):
        assert rows.dtype == np.int64 and (np.diff(rows) > 0).all() and ((rows >= 0) & (rows < n)).all()
    assert [len(r) for r in subsample_parts(sizes, sum(sizes), seed=1)] == sizes
    # uniform over all rows: every row of 3 parts of 2, 3 and 5 rows is drawn 4 of 10 times as
    # often as a whole, and each part gives 4 x its share on average (a per-part quota would not
    # vary); 4000 seeded draws, a generous 5-sigma band
    draws = 4000
    hits = np.zeros(10)
    given = np.zeros((draws, 3))
    for s in range(draws):
        rows = subsample_parts([2, 3, 5], 4, seed=s)
        given[s] = [len(r) for r in rows]
        hits[np.concatenate([r + o for r, o in zip(rows, (0, 2, 5))])] += 1
    p, sigma = 0.4, np.sqrt(0.4 * 0.6 / draws)
    assert (np.abs(hits / draws - p) < 5 * sigma).all()
    np.testing.assert_allclose(given.mean(axis=0), [0.8, 1.2, 2.0], atol=0.1)
    assert given[:, 2].std() > 0.5  # the split over parts is random, as in one draw from all rows


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match=r"^train_emb: dimension"):
        nearest_similarity(np.zeros((3, 8), np.float32), np.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match=r"^target_size: expected at most the 4 kept rows"):
        subsample_parts([1, 3], 5)
    with pytest.raises(ValueError, match=r"^target_size:"):
        subsample_parts([1, 2], -1)
    with pytest.raises(ValueError, match=r"^part_sizes:"):
        subsample_parts(np.ones((2, 2), int), 1)
    with pytest.raises(ValueError, match=r"^candidate_ids: expected pool row numbers in \[0, 4\) or -1"):
        prune_mask(CANDIDATE_IDS, CANDIDATE_SCORES, THRESHOLDS, n_pool=4)
    with pytest.raises(ValueError, match=r"^candidate_scores: expected the shape"):
        prune_mask(CANDIDATE_IDS, CANDIDATE_SCORES[:, :1], THRESHOLDS, n_pool=6)
    with pytest.raises(ValueError, match=r"^thresholds:"):
        prune_mask(CANDIDATE_IDS, CANDIDATE_SCORES, THRESHOLDS[:2], n_pool=6)
    with pytest.raises(ValueError, match=r"^candidate_ids: expected a 2-D integer"):
        prune_mask(CANDIDATE_IDS.astype(float), CANDIDATE_SCORES, THRESHOLDS, n_pool=6)


def test_prune_mask_returns_saturated_samples():
    # thresholds 0.75, 0.5, 0.125: only sample 2 has both candidates above its threshold
    # (sample 1's row 4 sits at exactly 0.5)
    thresholds = np.array([0.75, 0.5, 0.125], np.float32)
    with pytest.warns(UserWarning, match=r"1 eval sample\(s\)"):
        keep, saturated = prune_mask(CANDIDATE_IDS, CANDIDATE_SCORES, thresholds, n_pool=6, return_saturated=True)
        plain = prune_mask(CANDIDATE_IDS, CANDIDATE_SCORES, thresholds, n_pool=6)
    np.testing.assert_array_equal(keep, plain)
    # sample 1 (threshold 0.5) removes row 1 (0.75) and keeps row 4 at exactly 0.5
    np.testing.assert_array_equal(keep, [False, False, False, True, False, True])
    np.testing.assert_array_equal(saturated, [False, False, True])
    # an empty slot is not a candidate above the threshold
    ids = CANDIDATE_IDS.copy()
    ids[2, 1] = -1
    _, saturated = prune_mask(ids, CANDIDATE_SCORES, thresholds, n_pool=6, return_saturated=True)  # no warning
    np.testing.assert_array_equal(saturated, [False, False, False])
    # k = the whole pool: nothing can lie past the k-th candidate, so no sample is saturated
    _, saturated = prune_mask(
        np.array([[0, 1]]), np.array([[0.9, 0.8]], np.float32), [0.1], n_pool=2, return_saturated=True
    )
    assert saturated.dtype == bool and not saturated.any()
