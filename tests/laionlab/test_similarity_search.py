"""laionlab.neighbours.search (seed 004): blocked exact top-k, top-k merging and max similarity
against brute force on the full similarity matrix."""

import numpy as np
import pytest
import torch

from laionlab.neighbours import TopK, max_similarity, merge_topk, topk_similar

# NumPy sgemm, and the torch path (the one CUDA takes) run here on the CPU.
DEVICES = pytest.mark.parametrize("device", ["cpu", torch.device("cpu")], ids=["numpy", "torch"])


def ternary(rng, n, d=8):
    """Rows in {-1/4, 0, 1/4}^d: every inner product is a multiple of 1/16, exact in float32
    whatever the summation order, so blocked and brute-force scores agree bit for bit and
    many of them tie."""
    return (rng.integers(-1, 2, size=(n, d)) * 0.25).astype(np.float32)


def unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_topk(queries, corpus, k, ids=None):
    sims = queries.astype(np.float64) @ corpus.astype(np.float64).T
    ids = np.arange(corpus.shape[0]) if ids is None else np.asarray(ids)
    order = np.lexsort((np.broadcast_to(ids, sims.shape), -sims), axis=1)[:, :k]
    return np.take_along_axis(sims, order, axis=1), ids[order]


@pytest.fixture
def tied():
    rng = np.random.default_rng(0)
    corpus = ternary(rng, 300)
    corpus[150:170] = corpus[10]  # exact duplicates: equal scores across blocks
    return ternary(rng, 37), corpus


@DEVICES
@pytest.mark.parametrize(
    "k, block_rows, query_block_rows",
    [(1, 64, 8), (7, 50, 37), (25, 16, 5), (60, 300, 1), (300, 97, 16), (300, 1000, 64)],
)
def test_topk_matches_brute_force_with_ties(tied, device, k, block_rows, query_block_rows):
    queries, corpus = tied
    got = topk_similar(queries, corpus, k, block_rows=block_rows, query_block_rows=query_block_rows, device=device)
    want_s, want_i = brute_topk(queries, corpus, k)
    assert got.scores.dtype == np.float32 and got.ids.dtype == np.int64
    assert got.scores.shape == got.ids.shape == (37, k)
    np.testing.assert_array_equal(got.scores, want_s)
    np.testing.assert_array_equal(got.ids, want_i)
    # the fixture really has ties at the cut for the test to mean anything
    sims = queries @ corpus.T
    kth = np.sort(sims, axis=1)[:, ::-1][:, k - 1]
    assert k == 300 or ((sims >= kth[:, None]).sum(axis=1) > k).any()


@DEVICES
def test_topk_ties_follow_given_ids(tied, device):
    queries, corpus = tied
    ids = np.random.default_rng(1).permutation(300).astype(np.int64) * 3 + 1_000_000
    got = topk_similar(queries, corpus, 20, corpus_ids=ids, block_rows=64, device=device)
    want_s, want_i = brute_topk(queries, corpus, 20, ids)
    np.testing.assert_array_equal(got.scores, want_s)
    np.testing.assert_array_equal(got.ids, want_i)


@DEVICES
def test_topk_random_unit_vectors(device):
    rng = np.random.default_rng(2)
    corpus, queries = unit(rng, 2000, 64), unit(rng, 50, 64)
    got = topk_similar(queries, corpus, 15, block_rows=333, query_block_rows=16, device=device)
    want_s, want_i = brute_topk(queries, corpus, 15)
    np.testing.assert_allclose(got.scores, want_s, atol=1e-6)
    np.testing.assert_array_equal(got.ids, want_i)


def test_topk_reads_memmap_and_other_dtypes(tmp_path, tied):
    queries, corpus = tied
    np.save(tmp_path / "c.npy", corpus.astype(np.float16))  # 1/4-multiples are exact in fp16
    mm = np.load(tmp_path / "c.npy", mmap_mode="r")
    got = topk_similar(queries.astype(np.float64), mm, 5, block_rows=40, device="cpu")
    want_s, want_i = brute_topk(queries, corpus, 5)
    np.testing.assert_array_equal(got.ids, want_i)


def test_merge_topk_equals_topk_of_concatenated_corpus(tied):
    queries, corpus = tied
    k = 40
    ids = np.random.default_rng(3).permutation(300).astype(np.int64)
    bounds = [0, 25, 140, 300]  # the first part is smaller than k: it gives all its rows
    parts = [
        topk_similar(queries, corpus[a:b], min(k, b - a), corpus_ids=ids[a:b], device="cpu")
        for a, b in zip(bounds[:-1], bounds[1:])
    ]
    got = merge_topk(parts, k)
    want_s, want_i = brute_topk(queries, corpus, k, ids)
    np.testing.assert_array_equal(got.scores, want_s)
    np.testing.assert_array_equal(got.ids, want_i)
    # merging a single full result is the identity
    whole = topk_similar(queries, corpus, k, corpus_ids=ids, device="cpu")
    one = merge_topk([whole], k)
    np.testing.assert_array_equal(one.ids, whole.ids)
    np.testing.assert_array_equal(merge_topk([whole], 5).ids, whole.ids[:, :5])


@DEVICES
@pytest.mark.parametrize("block_rows, query_block_rows", [(64, 8), (41, 300), (1000, 1000)])
def test_max_similarity_matches_brute_force(tied, device, block_rows, query_block_rows):
    queries, corpus = tied
    got = max_similarity(corpus, queries, block_rows=block_rows, query_block_rows=query_block_rows, device=device)
    assert got.shape == (300,) and got.dtype == np.float32
    np.testing.assert_array_equal(got, (corpus @ queries.T).max(axis=1))


def test_max_similarity_random_unit_vectors():
    rng = np.random.default_rng(4)
    corpus, queries = unit(rng, 3000, 64), unit(rng, 700, 64)
    got = max_similarity(corpus, queries, block_rows=1024, query_block_rows=256, device="cpu")
    want = (corpus.astype(np.float64) @ queries.astype(np.float64).T).max(axis=1)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_bad_inputs_name_the_argument(tied):
    queries, corpus = tied
    wide = np.zeros((4, 9), np.float32)
    with pytest.raises(ValueError, match=r"^queries: dimension"):
        topk_similar(wide, corpus, 3)
    with pytest.raises(ValueError, match=r"^queries: dimension"):
        max_similarity(corpus, wide)
    with pytest.raises(ValueError, match=r"^k: expected at most the 300 corpus rows"):
        topk_similar(queries, corpus, 301)
    with pytest.raises(ValueError, match=r"^k:"):
        topk_similar(queries, corpus, 0)
    with pytest.raises(ValueError, match=r"^corpus_ids:"):
        topk_similar(queries, corpus, 3, corpus_ids=np.arange(299))
    with pytest.raises(ValueError, match=r"^corpus:"):
        topk_similar(queries, np.zeros(8, np.float32), 1)
    nan = queries.copy()
    nan[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"^queries: contains NaN"):
        max_similarity(corpus, nan)
    with pytest.raises(ValueError, match=r"^block_rows:"):
        max_similarity(corpus, queries, block_rows=0)
    with pytest.raises(ValueError, match=r"^device"):
        max_similarity(corpus, queries, device="tpu")
    part = topk_similar(queries, corpus[:10], 10, device="cpu")
    with pytest.raises(ValueError, match=r"^k: expected at most the 20 candidates"):
        merge_topk([part, part], 21)
    with pytest.raises(ValueError, match=r"^parts\[1\]: expected 37 query rows"):
        merge_topk([part, TopK(part.scores[:5], part.ids[:5])], 3)
    with pytest.raises(ValueError, match=r"^parts:"):
        merge_topk([], 3)


@pytest.mark.parametrize("search", ["topk", "max"])
def test_search_logs_progress_over_corpus_blocks(search, caplog):
    import logging

    rng = np.random.default_rng(3)
    corpus, queries = unit(rng, 1000, 16), unit(rng, 20, 16)
    run = {
        "topk": lambda **kw: topk_similar(queries, corpus, 5, device="cpu", block_rows=250, **kw),
        "max": lambda **kw: max_similarity(corpus, queries, device="cpu", block_rows=250, **kw),
    }[search]
    caplog.set_level(logging.INFO, logger="laionlab")
    run()  # default: 30 s between lines, a short search is silent
    assert not [r for r in caplog.records if r.name == "laionlab.neighbours.search"]
    run(log_every_s=0.0)
    lines = [r.getMessage() for r in caplog.records if r.name == "laionlab.neighbours.search"]
    what = "top-5 search of 20 queries" if search == "topk" else "max similarity to 20 queries"
    done = [line.split(": ")[1].split(" rows")[0] for line in lines]
    assert done == ["250/1,000", "500/1,000", "750/1,000", "1,000/1,000", "1,000/1,000"]
    assert all(line.startswith(f"{what}: ") and "rows/s" in line and "ETA" in line for line in lines)


@DEVICES
@pytest.mark.parametrize("k", [1, 9, 40, 300])
def test_search_parts_equals_brute_force_on_the_concatenation(tied, device, k):
    """Parts of uneven sizes (one empty, some smaller than k) folded one at a time give the
    exact top-k of the whole corpus, ties included, and each row's max similarity."""
    from laionlab.neighbours import search_parts

    queries, corpus = tied
    cuts = [0, 5, 5, 155, 160, 300]  # the duplicates of row 10 sit in the third part
    parts = [([f"u{i}" for i in range(a, b)], corpus[a:b]) for a, b in zip(cuts, cuts[1:])]
    seen = []
    got = search_parts(
        queries,
        iter(parts),
        k,
        on_part=lambda j, uids, sims: seen.append((j, list(uids), sims)),
        block_rows=32,
        max_sim_block_rows=17,
        device=device,
    )
    want_s, want_i = brute_topk(queries, corpus, k)
    np.testing.assert_array_equal(got.top.scores, want_s)
    np.testing.assert_array_equal(got.top.ids, want_i)
    assert got.rows == 300 and got.offsets.tolist() == cuts
    assert [j for j, _, _ in seen] == [0, 1, 2, 3, 4] and [u for _, u, _ in seen] == [u for u, _ in parts]
    assert [len(m) for _, _, m in seen] == [5, 0, 150, 5, 140]
    np.testing.assert_array_equal(np.concatenate([m for _, _, m in seen]), (queries @ corpus.T).max(axis=0))
    # in_part maps every top-k entry to exactly one part and its row there
    named = np.full(want_i.shape, "", dtype=object)
    for j, (uids, _) in enumerate(parts):
        query, rank, row = got.in_part(j)
        assert not named[query, rank].any()
        named[query, rank] = np.asarray(uids, dtype=object)[row]
    np.testing.assert_array_equal(named, np.vectorize(lambda i: f"u{i}", otypes=[object])(want_i))


def test_search_parts_bad_inputs():
    from laionlab.neighbours import search_parts

    rng = np.random.default_rng(3)
    queries, X = unit(rng, 4, 8), unit(rng, 6, 8)
    with pytest.raises(ValueError, match=r"^k: expected at most the 6 rows of the parts, got 7"):
        search_parts(queries, [(list("abc"), X[:3]), (list("def"), X[3:])], 7, device="cpu")
    with pytest.raises(ValueError, match=r"^parts\[1\]: dimension mismatch, expected d=8 as in queries, got d=16"):
        search_parts(queries, [(list("abc"), X[:3]), (list("de"), unit(rng, 2, 16))], 2, device="cpu")
    with pytest.raises(ValueError, match=r"^parts\[0\]: 2 uids for 3 vectors"):
        search_parts(queries, [(list("ab"), X[:3])], 2, device="cpu")
