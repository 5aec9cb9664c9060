"""A faiss inner-product index over CLIP caption embeddings with the caller's int64 ids (seed
001: Shirali & Hardt, "What Makes ImageNet Look Unlike LAION", TMLR 2025; public code
alishiraliGit/eval-on-laion, ``core/faiss_index.py`` (``FaissIndex.build_index``) and
``calc_and_store_clip_text_embeddings_in_faiss_index.py``).

The seed indexed 413,871,335 LAION-400M caption embeddings (CLIP ViT-B/32 text, 512-d,
L2-normalised, so inner product is cosine) to find the nearest LAION caption (k = 1) of each
ImageNet-Captions caption. It called ``autofaiss.build_index(..., metric_type='ip',
max_index_memory_usage='40MB', min_nearest_neighbors_to_retrieve=50)`` on a first chunk of
about 1M vectors (40 MB being its 16 GB budget for 400M vectors scaled to the chunk), then
appended every other LAION part with ``index.add`` and no retraining. Here:

* :func:`choose_index_key` picks the faiss factory string the way autofaiss does (see its
  docstring for the rule and what differs), under a memory budget in bytes;
* :func:`estimate_index_memory` is the memory model it decides with;
* :meth:`CaptionIndex.build` trains on a seeded sample and adds every row,
  :meth:`CaptionIndex.append` adds more rows without retraining (as the seed did),
  :meth:`CaptionIndex.search` returns ``(scores, ids)``, and :meth:`CaptionIndex.save` /
  :meth:`CaptionIndex.load` go through ``faiss.write_index`` / ``faiss.read_index``, on a
  local path or any fsspec URI.

autofaiss itself is not a dependency (it pins numpy < 2); nothing here imports Dagster.
Every vector and query must be finite and of unit norm (within ``norm_tol``); ids are the
caller's non-negative int64 (e.g. global LAION row numbers), unique within one add. faiss
does not check uniqueness across adds; keeping ids disjoint across parts is the caller's job.
Training is logged as a phase (key, rows, time); adding and searching log progress lines every
``log_every_s`` seconds (``laionlab`` logger), nothing for a call shorter than that.
"""

from __future__ import annotations

import logging
import math
import os
from contextlib import contextmanager

import faiss
import numpy as np

from laionlab import validate
from laionlab.io import files
from laionlab.progress import Progress, phase

__all__ = [
    "CaptionIndex",
    "choose_index_key",
    "estimate_index_memory",
    "recommended_nlist",
    "train_size",
    "two_level_kmeans",
]

log = logging.getLogger(__name__)

# --- defaults (autofaiss unless said otherwise) -------------------------------------------

# Exact search while the corpus is at most this large: 100k x 512 float32 is ~50 MFLOP per
# query, a few ms on one CPU core, under autofaiss's default 10 ms/query target. (autofaiss
# switches at 1,000 rows, but it has HNSW for 1k-10k; this module keeps to Flat and IVF.)
FLAT_MAX_ROWS = 100_000
# autofaiss get_optimal_index_keys_v2 tries IVF-Flat only below ivf_flat_threshold rows
# (AUTOFAISS_IVF_FLAT_MAX_ROWS); here IVF-Flat is tried at any size by default and taken while
# it fits the budget (see choose_index_key). Quantisation only from quantization_threshold
# rows (PQ's 256-centroid codebooks want >= 39 x 256 training points).
AUTOFAISS_IVF_FLAT_MAX_ROWS = 1_000_000
QUANTIZE_MIN_ROWS = 10_000
# autofaiss get_optimal_quantization: PQ code sizes tried, largest first (each < d).
PQ_CODE_BYTES = (256, 128, 64, 48, 32, 24, 16, 8, 4)
# autofaiss: a coarse quantizer of >= 1000 centroids is an HNSW32 graph (IVF{n}_HNSW32).
HNSW_QUANTIZER_MIN_NLIST = 1_000
HNSW_QUANTIZER_M = 32
# faiss k-means warns below 39 training points per centroid (min_points_per_centroid); nlist
# is clamped so that the corpus always has that many per list.
MIN_POINTS_PER_LIST = 39
# autofaiss get_optimal_train_size: 100 training points per IVF list; faiss's PQ and OPQ train
# on at most 256 x 256 rows, so a sample is never made smaller than that.
TRAIN_POINTS_PER_LIST = 100
PQ_TRAIN_ROWS = 256 * 256
# Coarse quantizers of at least this many lists are trained by two-level k-means (faiss's
# contrib.clustering.two_level_clustering, the way faiss's billion-scale benchmarks train
# IVF65536+): sqrt(nlist) clusters first, then each split into lists in proportion to its
# rows. One iteration costs ~ n·2·sqrt(nlist)·d instead of n·nlist·d, so with autofaiss's
# 100 rows per list training grows like nlist^1.5 rather than nlist^2 (1.6M rows, 16,384 lists,
# 64-d: ~300 s flat on 2 cores).
TWO_LEVEL_MIN_NLIST = 1_024
# faiss contrib's first level: up to 2,000 rows per centroid, 25 iterations.
TWO_LEVEL_TOP_POINTS = 2_000
TWO_LEVEL_TOP_NITER = 25
# faiss stores one int64 id next to every code in an inverted list, and IndexIDMap keeps one
# per row of a Flat index.
ID_BYTES = 8
# Lists probed per query unless the caller says otherwise (faiss's own default is 1).
# autofaiss tunes nprobe to a speed target instead (min_nearest_neighbors_to_retrieve only
# bounds that search); 32 of the seed's 16,384 lists is ~0.2%.
DEFAULT_NPROBE = 32
# Allowed | ||x|| - 1 | of a vector or query: float16-stored CLIP embeddings are off by < 1e-3.
NORM_TOL = 1e-3
# Rows converted to float32 and handed to faiss at once (validation, add, search).
BLOCK_ROWS = 65_536


# --- choosing an index --------------------------------------------------------------------


def recommended_nlist(n_vectors: int) -> int:
    """IVF lists for ``n_vectors`` rows: autofaiss's ``get_optimal_nb_clusters`` first choice,
    clamped so that every list has at least ``MIN_POINTS_PER_LIST`` (39) rows to train on.

    Below 1M rows, ``4·sqrt(n)`` rounded to the nearest power of two (faiss's guideline is
    4·sqrt(n) to 16·sqrt(n)); 16,384 below 10M, 65,536 below 300M, 2**17 above. The clamp is
    the largest power of two ``<= n / 39`` (at least 1). Examples: 20,000 → 512; 1M (the
    seed's first chunk) → 16,384; 413M → 131,072.
    """
    n = validate.int_at_least("n_vectors", n_vectors, 1)
    if n < 1_000_000:
        nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    elif n < 10_000_000:
        nlist = 16_384
    elif n < 300_000_000:
        nlist = 65_536
    else:
        nlist = 2**17
    cap = max(1, 2 ** int(math.floor(math.log2(max(1, n // MIN_POINTS_PER_LIST)))))
    return int(min(nlist, cap))


def estimate_index_memory(key: str, n_vectors: int, dim: int) -> int:
    """Bytes in RAM of the index ``key`` holding ``n_vectors`` vectors of dimension ``dim``.

    The model of autofaiss's ``IndexMetadata.estimated_index_size_in_bytes``
    (``autofaiss/external/metadata.py``), with the sizes read from the faiss index the key
    builds rather than parsed out of the string:

    * ``Flat``: ``n·(4·d + 8)``: the float32 vectors and the int64 ids of the IndexIDMap
      (autofaiss counts the vectors only);
    * IVF: ``n·(code_size + 8)`` (each inverted-list entry is a code and an int64 id; a PQ
      code is ``m`` bytes, a Flat one ``4·d``), plus the coarse centroids ``nlist·d'·4``
      (``d'`` the dimension after OPQ; autofaiss uses the input ``d``), the HNSW graph of an
      ``_HNSW`` quantizer (``nlist·2M·4``), the PQ codebooks (``256·d'·4``) and any linear
      pre-transform such as OPQ (``d·d'·4``; autofaiss counts ``m·d'·4``).

    Small per-list and per-object overheads are left out. With inner product IVFPQ keeps no
    precomputed tables (faiss builds those for L2 only), so none are counted.
    """
    n = validate.int_at_least("n_vectors", n_vectors, 0)
    per_vector, fixed = _memory_terms(key, validate.int_at_least("dim", dim, 1))
    return n * per_vector + fixed


def choose_index_key(
    n_vectors: int,
    dim: int,
    max_memory_bytes: int,
    *,
    flat_max_rows: int = FLAT_MAX_ROWS,
    ivf_flat_max_rows: int | None = None,
    quantize_min_rows: int = QUANTIZE_MIN_ROWS,
    opq: bool = True,
    count_fixed_costs: bool = True,
) -> str:
    """The faiss factory string for ``n_vectors`` unit vectors of dimension ``dim`` searched by
    inner product in at most ``max_memory_bytes`` bytes, after autofaiss's
    ``get_optimal_index_keys_v2`` / ``get_optimal_quantization`` (``autofaiss/external/
    optimize.py``). The first candidate that is allowed and fits wins:

    1. ``"Flat"`` (exact) when ``n_vectors <= flat_max_rows`` and it fits;
    2. ``"IVF{nlist},Flat"`` when it fits (and ``n_vectors < ivf_flat_max_rows``, if given:
       autofaiss's rule is ``ivf_flat_max_rows=1_000_000``, AUTOFAISS_IVF_FLAT_MAX_ROWS);
    3. from ``quantize_min_rows`` rows on, IVF-PQ: ``"OPQ{m}_{d'},IVF{nlist},PQ{m}x8np"``
       (``opq=False``: ``"IVF{nlist},PQ{m}x8np"``, ``m`` dividing ``dim``), with the largest
       code ``m`` bytes in (256, 128, 64, 48, 32, 24, 16, 8, 4), ``m < dim``, that fits.
       ``d' = (min(dim // m, 6) + 1)·m`` is autofaiss's OPQ output size (a multiple of ``m``,
       a little above ``dim`` or at most ``7m``).

    Deviation from autofaiss: it tries IVF-Flat only below 1M rows whatever the budget; here it
    is taken while it fits, since the budget is the user's own statement of what the index may
    hold, and an IVF-Flat index keeps exact inner products and trains in a fraction of OPQ-PQ's
    time (OPQ's fixed ~40 s at 64-d on 2 cores). The seed's call is unchanged: its budget (40 MB
    for a 1M × 512-d chunk) holds no IVF-Flat index, so it gets the same PQ key either way.

    ``nlist`` is :func:`recommended_nlist`; with ``>= 1000`` lists the coarse quantizer is an
    HNSW32 graph (``IVF{nlist}_HNSW32``), as in autofaiss. ``np`` turns off faiss's
    polysemous training, which only serves Hamming-threshold filtering (autofaiss searches
    with ``ht=2048``, i.e. none) and costs as much as the rest of training on small data.

    "Fits" is :func:`estimate_index_memory` ``<= max_memory_bytes``. With
    ``count_fixed_costs`` (the default) the whole estimate counts, and when no code size fits
    with the recommended ``nlist``, ``nlist`` is halved until one does. With
    ``count_fixed_costs=False`` only the per-vector bytes count (``n·(code + 8)``), as in
    autofaiss, whose budget is a compression ratio: that is the rule the seed's index was
    chosen by, and the one to use when the budget is scaled to a first chunk that later
    parts are appended to. For the seed (``n_vectors=1_000_000, dim=512,
    max_memory_bytes=40 * 2**20``, per-vector) the answer is
    ``"OPQ32_224,IVF16384_HNSW32,PQ32x8np"``, 40 bytes per vector (16.6 GB for the 413.9M
    vectors, the size of the seed's published index); its whole estimate is ~60 MB (counted
    whole, the budget gives ``"OPQ16_112,IVF16384_HNSW32,PQ16x8np"``, ~34 MiB).

    Raises:
        ValueError: naming ``max_memory_bytes`` when nothing fits.
    """
    n = validate.int_at_least("n_vectors", n_vectors, 1)
    d = validate.int_at_least("dim", dim, 1)
    budget = validate.int_at_least("max_memory_bytes", max_memory_bytes, 1)
    flat_max_rows = validate.int_at_least("flat_max_rows", flat_max_rows, 0)
    if ivf_flat_max_rows is not None:
        ivf_flat_max_rows = validate.int_at_least("ivf_flat_max_rows", ivf_flat_max_rows, 0)
    quantize_min_rows = validate.int_at_least("quantize_min_rows", quantize_min_rows, 0)
    for name, flag in (("opq", opq), ("count_fixed_costs", count_fixed_costs)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name}: expected a bool, got {flag!r}")

    def size(key: str) -> int:
        per_vector, fixed = _memory_terms(key, d)
        return n * per_vector + (fixed if count_fixed_costs else 0)

    tried: list[tuple[str, int]] = []

    def fits(key: str) -> bool:
        tried.append((key, size(key)))
        return tried[-1][1] <= budget

    if n <= flat_max_rows and fits("Flat"):
        return "Flat"
    nlist = recommended_nlist(n)
    if (ivf_flat_max_rows is None or n < ivf_flat_max_rows) and fits(f"{_ivf(nlist)},Flat"):
        return f"{_ivf(nlist)},Flat"
    if n >= quantize_min_rows:
        pq_sizes = [m for m in PQ_CODE_BYTES if m < d and (opq or d % m == 0)]
        nlists = [nlist]
        while count_fixed_costs and nlists[-1] > 1:
            nlists.append(nlists[-1] // 2)
        for lists in nlists:
            for m in pq_sizes:
                key = _pq_key(d, lists, m, opq)
                if fits(key):
                    return key
    smallest = min(tried, key=lambda t: t[1]) if tried else None
    detail = (
        f"; the smallest candidate, {smallest[0]!r}, needs {smallest[1]:,}"
        if smallest
        else f"; no candidate is allowed (n_vectors={n} > flat_max_rows, >= ivf_flat_max_rows and < quantize_min_rows)"
    )
    raise ValueError(f"max_memory_bytes: {budget:,} bytes cannot hold {n:,} vectors of d={d}{detail}")


def train_size(n_vectors: int, key: str, dim: int) -> int:
    """Rows to train ``key`` on: ``min(n, max(100·nlist, 65,536))`` for an IVF key
    (autofaiss's ``get_optimal_train_size`` gives ``100·nlist``; the floor is what faiss's PQ
    and OPQ train on at most), ``min(n, 65,536)`` for another key that needs training, 0 for
    one that does not (Flat).

    faiss's k-means wants at least 39 points per centroid (it warns below, and fails below
    one); with ``nlist`` from :func:`recommended_nlist` (at most ``n / 39``) this sample always
    has them. The seed's first chunk: ``min(1M, 100·16,384)`` = all 1M rows."""
    n = validate.int_at_least("n_vectors", n_vectors, 1)
    index = _factory(key, validate.int_at_least("dim", dim, 1))
    if index.is_trained:
        return 0
    ivf = faiss.try_extract_index_ivf(index)
    lists = ivf.nlist if ivf is not None else 0
    return min(n, max(TRAIN_POINTS_PER_LIST * lists, PQ_TRAIN_ROWS))


def _ivf(nlist: int) -> str:
    if nlist >= HNSW_QUANTIZER_MIN_NLIST:
        return f"IVF{nlist}_HNSW{HNSW_QUANTIZER_M}"
    return f"IVF{nlist}"


def _pq_key(d: int, nlist: int, m: int, opq: bool) -> str:
    if not opq:
        return f"{_ivf(nlist)},PQ{m}x8np"
    d_out = (min(d // m, 6) + 1) * m
    return f"OPQ{m}_{d_out},{_ivf(nlist)},PQ{m}x8np"


def _factory(key: str, d: int) -> faiss.Index:
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"key: expected a faiss index_factory string such as 'Flat', got {key!r}")
    try:
        return faiss.index_factory(d, key, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        raise ValueError(f"key: faiss cannot build {key!r} for d={d} ({_faiss_message(err)})") from None


def _faiss_message(err: Exception) -> str:
    return str(err).strip().splitlines()[-1][-300:]


def _memory_terms(key: str, d: int) -> tuple[int, int]:
    """(bytes per vector, fixed bytes) of ``key`` at dimension ``d``; see
    :func:`estimate_index_memory`."""
    index = _factory(key, d)  # owns the sub-indexes below: it must outlive `node`
    node, fixed = index, 0
    while isinstance(node, faiss.IndexPreTransform):
        for j in range(node.chain.size()):
            vt = faiss.downcast_VectorTransform(node.chain.at(j))
            if isinstance(vt, faiss.LinearTransform):
                fixed += 4 * vt.d_in * vt.d_out + 4 * vt.d_out
        node = faiss.downcast_index(node.index)
    ivf = faiss.try_extract_index_ivf(node)
    if ivf is not None:
        ivf = faiss.downcast_index(ivf)
        fixed += 4 * ivf.nlist * ivf.d
        quantizer = faiss.downcast_index(ivf.quantizer)
        if isinstance(quantizer, faiss.IndexHNSW):
            fixed += 4 * ivf.nlist * quantizer.hnsw.nb_neighbors(0)
        if isinstance(ivf, faiss.IndexIVFPQ):
            fixed += 4 * ivf.pq.ksub * ivf.pq.dsub * ivf.pq.M
        per_vector = ivf.code_size + ID_BYTES
    elif isinstance(node, faiss.IndexFlat):
        per_vector = 4 * d + ID_BYTES
    else:
        raise ValueError(f"key: memory is estimated for Flat and IVF keys only, got {key!r}")
    del index
    return per_vector, fixed


# --- training -----------------------------------------------------------------------------


def two_level_kmeans(x: np.ndarray, k: int, *, niter: int = 25, spherical: bool = False, seed: int = 0) -> np.ndarray:
    """``k`` k-means centroids of ``x`` in two levels (faiss ``contrib.clustering.
    two_level_clustering`` with ``rebalance=True``): ``round(sqrt(k))`` clusters of up to
    2,000 sampled rows each (25 iterations), every row assigned to one, then each cluster
    split by its own k-means into a share of the ``k`` lists proportional to its rows
    (``niter`` iterations; faiss samples at most 256 rows per centroid).

    Args:
        x: ``(n, d)`` float32, ``n >= k``.
        k: centroids wanted (an IVF index's ``nlist``).
        niter: iterations of the second level (the IVF's own ``cp.niter``).
        spherical: L2-normalise the centroids after each iteration (faiss sets it for an
            inner-product IVF).
        seed: seeds both levels (sub-cluster ``j`` uses ``seed + 1 + j``).

    Returns:
        ``(k, d)`` float32 centroids, grouped by first-level cluster.

    Raises:
        ValueError: ``k < 1`` or fewer rows than ``k``.
    """
    x = np.ascontiguousarray(validate.matrix("x", x), dtype=np.float32)
    n, d = x.shape
    k = validate.int_at_least("k", k, 1)
    if n < k:
        raise ValueError(f"x: {k} centroids need at least {k} rows, got {n}")
    k1 = max(1, min(k, int(round(math.sqrt(k)))))
    top = faiss.Kmeans(
        d, k1, niter=TWO_LEVEL_TOP_NITER, max_points_per_centroid=TWO_LEVEL_TOP_POINTS,
        spherical=spherical, seed=seed,
    )  # fmt: skip
    top.train(x)
    _, assign = top.index.search(x, 1)
    assign = assign.ravel()
    sizes = np.bincount(assign, minlength=k1)
    # lists per cluster in proportion to its rows; they sum to k exactly
    ends = np.cumsum(sizes) * k // n
    shares = np.diff(ends, prepend=0)
    order = np.argsort(assign, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    out = []
    for j in range(k1):
        if shares[j] == 0:
            continue
        rows = x[order[starts[j] : starts[j + 1]]]
        if shares[j] >= len(rows):  # only with about one row per centroid: the rows themselves
            out.append(rows[: shares[j]])
            continue
        sub = faiss.Kmeans(d, int(shares[j]), niter=niter, spherical=spherical, seed=seed + 1 + j)
        sub.train(rows)
        out.append(sub.centroids)
    return np.ascontiguousarray(np.vstack(out), dtype=np.float32)


def _train(index: faiss.Index, x: np.ndarray, seed: int) -> None:
    """``index.train(x)``, with an IVF coarse quantizer of ``TWO_LEVEL_MIN_NLIST`` or more
    lists trained by :func:`two_level_kmeans` (after any pre-transform such as OPQ is trained
    and applied); faiss then skips its own quantizer training (the quantizer already holds
    ``nlist`` centroids) and trains the codes (PQ) as usual."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None or ivf.nlist < TWO_LEVEL_MIN_NLIST:
        index.train(x)
        return
    node = faiss.downcast_index(index)
    if isinstance(node, faiss.IndexPreTransform):
        for j in range(node.chain.size()):
            transform = node.chain.at(j)
            transform.train(x)
            x = transform.apply(x)
        _train(node.index, x, seed)
        node.is_trained = True
        return
    ivf = faiss.downcast_index(node)
    centroids = two_level_kmeans(x, ivf.nlist, niter=ivf.cp.niter, spherical=ivf.cp.spherical, seed=seed)
    ivf.quantizer.add(centroids)
    ivf.train(x)


# --- the index ----------------------------------------------------------------------------


class CaptionIndex:
    """A faiss inner-product index of unit vectors under the caller's int64 ids.

    ``index`` is the faiss index: an IVF index (ids stored in its inverted lists, an OPQ
    pre-transform allowed) or an ``IndexIDMap`` around any other index (a Flat one from
    :meth:`build`). Build with :meth:`build`, or :meth:`load` a saved one; wrapping an
    existing faiss index directly is allowed too.
    """

    def __init__(self, index: faiss.Index, *, norm_tol: float = NORM_TOL):
        if not isinstance(index, faiss.Index):
            raise ValueError(f"index: expected a faiss.Index, got {type(index).__name__}")
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ValueError(
                f"index: expected an inner-product index (metric {faiss.METRIC_INNER_PRODUCT}), "
                f"got metric {index.metric_type}"
            )
        if faiss.try_extract_index_ivf(index) is None and not isinstance(index, faiss.IndexIDMap):
            raise ValueError(
                f"index: expected an IVF index or an IndexIDMap (to hold the caller's ids), got {type(index).__name__}"
            )
        if not index.is_trained:
            raise ValueError("index: expected a trained index")
        self.index = index
        self.norm_tol = validate.real("norm_tol", norm_tol, lo=0.0, lo_open=True)
        self._gpu: tuple[int | None, object, faiss.Index] | None = None

    # construction --------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        vectors,
        ids,
        key: str,
        *,
        train_sample: int | None = None,
        seed: int = 0,
        nprobe: int = DEFAULT_NPROBE,
        norm_tol: float = NORM_TOL,
        log_every_s: float = 30.0,
    ) -> CaptionIndex:
        """Train ``key`` on a seeded sample of ``vectors`` and add them all under ``ids``
        (:meth:`trained`, then :meth:`append`).

        Args:
            vectors: ``(n, d)`` float, L2-normalised, finite (e.g. CLIP ViT-B/32 caption
                embeddings, d = 512); may be memory-mapped, read ``BLOCK_ROWS`` at a time.
            ids: ``(n,)`` non-negative integers, unique (e.g. global LAION row numbers).
            key, train_sample, seed, nprobe, norm_tol: as :meth:`trained`.
            log_every_s: seconds between progress lines while the vectors are added.
        """
        vectors = validate.matrix("vectors", vectors, finite=False)
        ids = _checked_ids(ids, vectors.shape[0])
        out = cls.trained(vectors, key, train_sample=train_sample, seed=seed, nprobe=nprobe, norm_tol=norm_tol)
        out._add(vectors, ids, log_every_s)
        return out

    @classmethod
    def trained(
        cls,
        vectors,
        key: str,
        *,
        train_sample: int | None = None,
        seed: int = 0,
        nprobe: int = DEFAULT_NPROBE,
        norm_tol: float = NORM_TOL,
    ) -> CaptionIndex:
        """An empty index of type ``key`` trained on a seeded sample of ``vectors``.

        Args:
            vectors: ``(n, d)`` float, L2-normalised, finite.
            key: a faiss ``index_factory`` string, e.g. from :func:`choose_index_key`.
                Built with the inner-product metric; a non-IVF index is wrapped in an
                ``IndexIDMap`` to hold the ids.
            train_sample: rows to train on, drawn uniformly without replacement
                (``np.random.default_rng(seed)``); default :func:`train_size`. Unused when
                ``key`` needs no training (Flat). An IVF key needs at least ``nlist``.
                A coarse quantizer of ``TWO_LEVEL_MIN_NLIST`` or more lists is trained by
                :func:`two_level_kmeans`, anything else by faiss's ``index.train``.
            seed: seeds the training sample and the two-level k-means (faiss seeds its own
                one-level k-means and OPQ).
            nprobe: lists probed per query (IVF only), kept in the index and its file;
                :meth:`search` can override it per call.
            norm_tol: allowed ``| ||x|| - 1 |`` of every vector and later query.
        """
        vectors = validate.matrix("vectors", vectors, finite=False)
        n, d = vectors.shape
        seed = validate.int_at_least("seed", seed, 0)
        nprobe = validate.int_at_least("nprobe", nprobe, 1)
        norm_tol = validate.real("norm_tol", norm_tol, lo=0.0, lo_open=True)
        index = _factory(key, d)
        if faiss.try_extract_index_ivf(index) is None and not isinstance(index, faiss.IndexIDMap):
            index = faiss.IndexIDMap(index)
        _check_unit_rows("vectors", vectors, norm_tol)

        if not index.is_trained:
            n_train = (
                train_size(n, key, d)
                if train_sample is None
                else min(n, validate.int_at_least("train_sample", train_sample, 1))
            )
            ivf = faiss.try_extract_index_ivf(index)
            if ivf is not None and n_train < ivf.nlist:
                raise ValueError(
                    f"train_sample: {key!r} has {ivf.nlist} lists and needs at least that many "
                    f"training rows, got {n_train} (vectors has {n} rows)"
                )
            rows = (
                np.arange(n)
                if n_train == n
                else np.sort(np.random.default_rng(seed).choice(n, size=n_train, replace=False))
            )
            # all rows: no copy of vectors that are float32 already (a copy is the corpus again)
            sample = np.ascontiguousarray(vectors if n_train == n else vectors[rows], dtype=np.float32)
            try:
                with phase(f"caption index: training {key} on {n_train:,} of {n:,} vectors", log):
                    _train(index, sample, seed)
            except RuntimeError as err:
                raise ValueError(
                    f"key: faiss could not train {key!r} on {n_train} rows ({_faiss_message(err)})"
                ) from None
            del sample
        out = cls(index, norm_tol=norm_tol)
        out._set_nprobe(nprobe)
        return out

    def empty_copy(self) -> CaptionIndex:
        """The same trained index (quantizer, codebooks, nprobe) holding no vectors: what one
        part's vectors are added to before the part is saved on its own."""
        clone = faiss.clone_index(self.index)
        clone.reset()
        return CaptionIndex(clone, norm_tol=self.norm_tol)

    def merge_from(self, other: CaptionIndex) -> None:
        """Move the vectors of ``other`` (an index trained as this one: an
        :meth:`empty_copy` that had a part added) into this index, ids kept; ``other`` is
        left empty or unusable. ValueError when the two are not the same kind of index."""
        if not isinstance(other, CaptionIndex):
            raise ValueError(f"other: expected a CaptionIndex, got {type(other).__name__}")
        if other.d != self.d or other.nlist != self.nlist:
            raise ValueError(f"other: cannot merge {other!r} into {self!r} (another kind of index)")
        try:
            self.index.merge_from(other.index, 0)
        except RuntimeError as err:
            raise ValueError(f"other: faiss cannot merge {other!r} into {self!r} ({_faiss_message(err)})") from None
        self._gpu = None

    def append(self, vectors, ids, *, log_every_s: float = 30.0) -> None:
        """Add ``vectors`` under ``ids`` with no retraining (the seed's ``index.add`` of every
        LAION part after the first). Same requirements as in :meth:`build`; the ids must not
        already be in the index (not checked)."""
        vectors = validate.matrix("vectors", vectors, finite=False)
        validate.same_dim("vectors", vectors, "the index", self.d)
        ids = _checked_ids(ids, vectors.shape[0])
        _check_unit_rows("vectors", vectors, self.norm_tol)
        self._add(vectors, ids, log_every_s)

    def _add(self, vectors: np.ndarray, ids: np.ndarray, log_every_s: float) -> None:
        n = vectors.shape[0]
        progress = Progress("caption index: adding", n, log_every_s, log, unit="vectors", quiet_below_s=log_every_s)
        for start in range(0, n, BLOCK_ROWS):
            block = np.ascontiguousarray(vectors[start : start + BLOCK_ROWS], dtype=np.float32)
            self.index.add_with_ids(block, ids[start : start + BLOCK_ROWS])
            progress.update(len(block))
        progress.close()
        self._gpu = None

    # search --------------------------------------------------------------------------------

    def search(
        self, queries, k: int, *, nprobe: int | None = None, use_gpu: bool = False, log_every_s: float = 30.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` highest inner products of each query among the indexed vectors.

        Args:
            queries: ``(q, d)`` float, L2-normalised, finite; read ``BLOCK_ROWS`` at a time.
            k: neighbours per query, ``1 <= k <= ntotal`` (the seed: 1).
            nprobe: lists probed for this call (IVF only, clamped to ``nlist``; ignored by a
                Flat index); default the index's own (:attr:`nprobe`). An HNSW coarse quantizer searches with
                ``efSearch >= 2·nprobe``, as autofaiss sets it.
            use_gpu: search a copy of the index on GPU 0 (needs a faiss build with GPU
                support; the copy is kept until the next append or nprobe change).
            log_every_s: seconds between progress lines (queries searched, rate, ETA).

        Returns:
            ``(scores, ids)``: ``(q, k)`` float32 inner products, each row in descending
            order, and the ``(q, k)`` int64 ids. An IVF search that finds fewer than ``k``
            vectors in its probed lists pads with id -1 and score -inf. Scores of a PQ index
            are approximate (computed from the codes).
        """
        queries = validate.matrix("queries", queries, finite=False)
        validate.same_dim("queries", queries, "the index", self.d)
        k = validate.int_at_least("k", k, 1)
        if k > self.ntotal:
            raise ValueError(f"k: expected at most the {self.ntotal} indexed vectors, got {k}")
        if nprobe is not None:
            nprobe = validate.int_at_least("nprobe", nprobe, 1)
        if not isinstance(use_gpu, bool):
            raise ValueError(f"use_gpu: expected a bool, got {use_gpu!r}")
        _check_unit_rows("queries", queries, self.norm_tol)

        q = queries.shape[0]
        scores = np.empty((q, k), dtype=np.float32)
        ids = np.empty((q, k), dtype=np.int64)
        probe = nprobe if nprobe is not None else self.nprobe
        index = self._gpu_index(probe) if use_gpu else None
        progress = Progress(
            f"caption index: top-{k} search", q, log_every_s, log, unit="queries", quiet_below_s=log_every_s
        )
        with self._probing(None if use_gpu else nprobe):
            target = index if index is not None else self.index
            for start in range(0, q, BLOCK_ROWS):
                block = np.ascontiguousarray(queries[start : start + BLOCK_ROWS], dtype=np.float32)
                s, i = target.search(block, k)
                scores[start : start + len(block)], ids[start : start + len(block)] = s, i
                progress.update(len(block))
        progress.close()
        scores[ids < 0] = -np.inf
        return scores, ids

    @contextmanager
    def _probing(self, nprobe: int | None):
        """``nprobe`` (and the HNSW quantizer's efSearch) set for the duration; unchanged
        when ``None`` or for a non-IVF index."""
        if nprobe is None or self.nlist is None:
            yield
            return
        before = self._probe_state()
        self._set_nprobe(nprobe)
        try:
            yield
        finally:
            self._restore_probe_state(before)

    def _ivf(self):
        ivf = faiss.try_extract_index_ivf(self.index)
        return None if ivf is None else faiss.downcast_index(ivf)

    def _hnsw_quantizer(self):
        ivf = self._ivf()
        quantizer = None if ivf is None else faiss.downcast_index(ivf.quantizer)
        return quantizer if isinstance(quantizer, faiss.IndexHNSW) else None

    def _probe_state(self) -> tuple[int, int | None]:
        hnsw = self._hnsw_quantizer()
        return self._ivf().nprobe, None if hnsw is None else hnsw.hnsw.efSearch

    def _restore_probe_state(self, state: tuple[int, int | None]) -> None:
        self._ivf().nprobe = state[0]
        hnsw = self._hnsw_quantizer()
        if hnsw is not None and state[1] is not None:
            hnsw.hnsw.efSearch = state[1]

    def _set_nprobe(self, nprobe: int) -> None:
        ivf = self._ivf()
        if ivf is None:
            return
        ivf.nprobe = min(nprobe, ivf.nlist)
        hnsw = self._hnsw_quantizer()
        if hnsw is not None:
            hnsw.hnsw.efSearch = max(hnsw.hnsw.efSearch, 2 * ivf.nprobe)

    def _gpu_index(self, nprobe: int | None) -> faiss.Index:
        if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
            raise ValueError(
                "use_gpu: this faiss build has no GPU support or sees no GPU (install "
                "laionlab[gpu] on a CUDA host), search with use_gpu=False"
            )
        if self._gpu is None or self._gpu[0] != nprobe:
            resources = faiss.StandardGpuResources()
            with self._probing(nprobe):  # the clone copies nprobe from the CPU index
                clone = faiss.index_cpu_to_gpu(resources, 0, self.index)
            self._gpu = (nprobe, resources, clone)
        return self._gpu[2]

    # files ---------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to ``path`` (a local path or fsspec URI; ``faiss.write_index``,
        nprobe included) atomically: through a temporary file renamed into place, or uploaded
        in one put (laionlab.io.files.atomic_write). Creates the folder."""

        def write(target: str) -> None:
            faiss.write_index(self.index, target)
            with open(target, "rb+") as f:
                os.fsync(f.fileno())

        files.atomic_write(str(path), write)

    @classmethod
    def load(cls, path: str | os.PathLike, *, norm_tol: float = NORM_TOL) -> CaptionIndex:
        """The index :meth:`save` wrote to ``path`` (a local file, or an fsspec URI streamed
        into ``faiss.read_index`` without a local copy), ready to search or append to."""
        path = str(path)
        local = files.local_path(path)
        if not (os.path.isfile(local) if local is not None else files.exists(path)):
            raise FileNotFoundError(f"{path}: no faiss index file there")
        try:
            if local is not None:
                index = faiss.read_index(local)
            else:
                with files.open_read(path) as f:
                    index = faiss.read_index(faiss.PyCallbackIOReader(f.read))
        except RuntimeError as err:
            raise ValueError(f"path: {path} is not a faiss index ({_faiss_message(err)})") from None
        return cls(index, norm_tol=norm_tol)

    # facts ---------------------------------------------------------------------------------

    @property
    def d(self) -> int:
        """Dimension of the vectors (before any pre-transform)."""
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        """Vectors indexed."""
        return int(self.index.ntotal)

    @property
    def nlist(self) -> int | None:
        """IVF lists, ``None`` for a non-IVF (exact) index."""
        ivf = self._ivf()
        return None if ivf is None else int(ivf.nlist)

    @property
    def nprobe(self) -> int | None:
        """Lists probed per query by default, ``None`` for a non-IVF index."""
        ivf = self._ivf()
        return None if ivf is None else int(ivf.nprobe)

    def __repr__(self) -> str:
        kind = "exact" if self.nlist is None else f"nlist={self.nlist}, nprobe={self.nprobe}"
        return f"CaptionIndex(d={self.d}, ntotal={self.ntotal}, {kind})"


# --- validation ---------------------------------------------------------------------------


def _checked_ids(ids, n: int) -> np.ndarray:
    a = np.asarray(ids)
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"ids: expected a 1-D integer array, got shape {a.shape} dtype {a.dtype}")
    if a.shape[0] != n:
        raise ValueError(f"ids: expected one id per vector ({n}), got {a.shape[0]}")
    if a.size and (a.min() < 0 or a.max() > np.iinfo(np.int64).max):
        raise ValueError(
            f"ids: expected non-negative int64 values (faiss returns -1 for 'no result'), got "
            f"{a.min() if a.min() < 0 else a.max()}"
        )
    a = a.astype(np.int64, copy=False)
    sorted_ids = np.sort(a)
    dup = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]]
    if dup.size:
        raise ValueError(
            f"ids: expected unique ids within one add, got {np.unique(dup).size} duplicated, e.g. {dup[0]}"
        )
    return np.ascontiguousarray(a)


def _check_unit_rows(name: str, x: np.ndarray, tol: float) -> None:
    """ValueError naming ``x`` if a row is not finite or its norm is off 1 by more than
    ``tol``; one pass, ``BLOCK_ROWS`` rows at a time."""
    for start in range(0, x.shape[0], BLOCK_ROWS):
        block = np.asarray(x[start : start + BLOCK_ROWS], dtype=np.float32)
        validate.all_finite(name, block)
        norms = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
        bad = np.flatnonzero(np.abs(norms - 1.0) > tol)
        if bad.size:
            r = bad[0]
            raise ValueError(
                f"{name}: expected L2-normalised rows (| ||x|| - 1 | <= {tol:g}), row "
                f"{start + r} has norm {norms[r]:.6g} ({bad.size} such row(s) in rows "
                f"{start}..{start + len(block) - 1})"
            )
