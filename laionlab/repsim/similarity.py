"""Representational similarity between models: linear and RBF CKA, RSA, model × model
similarity matrices and their consistency across datasets, for seed 002 (Ciernik et al.,
"Objective drives the consistency of representational similarity across datasets", ICML 2025;
public code lciernik/similarity_consistency).

What the seed's code does (``sim_consistency/tasks/model_similarity.py``), and what is
reproduced here:

* Features: one ``(n, d)`` matrix per model and dataset, the same ``n`` stimuli in the same
  order for every model (at most 10,000 per dataset, fixed subset indices), L2-normalised
  rows (``Featurizer(normalize=True)``, the ``--normalize`` default).
* **CKA** through thingsvision 2.6.10 (pinned in the seed's ``requirements.txt``),
  ``get_cka(backend="torch", kernel=..., unbiased=True, sigma=...)``, ``cka.compare(X, Y)``
  (``thingsvision/core/cka/cka_torch.py``; ``cka_numpy.py`` is the same algorithm):

  - kernels: ``linear_kernel`` ``K = X Xᵀ``; ``rbf_kernel``
    ``K_ij = exp(-D_ij / (2 σ²))`` with ``D_ij = G_ii - G_ij + G_jj - G_ji`` (``G = X Xᵀ``),
    where ``σ`` is the ``sigma`` argument **as given, an absolute width**, and only when
    ``sigma is None`` ``σ = sqrt(median(D[D != 0]))`` (numpy backend: ``np.median``, the mean
    of the two middle values; torch backend: ``torch.median``, the lower one);
  - ``centering``: biased ``K - m_i - m_j`` with ``m = mean(K, axis=0) - mean(K)/2``
    (i.e. ``HKH``); unbiased (the U-statistic centring of Székely & Rizzo, 2014, taken from
    Kornblith et al.'s demo): zero the diagonal, ``m = sum(K, axis=0)/(n-2)``,
    ``m -= sum(m)/(2(n-1))``, ``K - m_i - m_j``, zero the diagonal again;
  - ``_hsic = sum(K_c ∘ L_c)``; ``compare = hsic_xy / sqrt(hsic_xx · hsic_yy)``.

  For the unbiased centring ``sum(K_c ∘ L_c) = n(n-3) · HSIC_u`` exactly, ``HSIC_u`` being
  the unbiased estimator of Song et al. (2012):
  ``[tr(K̃L̃) + 1ᵀK̃1 · 1ᵀL̃1 / ((n-1)(n-2)) - 2/(n-2) · 1ᵀK̃L̃1] / (n(n-3))`` with
  ``K̃ = K`` with a zeroed diagonal; the factor cancels in CKA.
* **RSA** (``RSAModelSimilarity``): thingsvision ``compute_rdm(X, method)`` then
  ``correlate_rdms(rdm_1, rdm_2, correlation)`` (``thingsvision/core/rsa/helpers.py``):
  ``"correlation"``: ``1 - r`` with ``r`` the Pearson correlation between rows (rows centred
  by their own mean, cosine, clipped to [-1, 1]); ``"cosine"``: ``1 - cos`` (clipped);
  ``"euclidean"``: ``squareform(pdist(X))``; then ``scipy.stats.{spearman,pearson}r`` of the
  strict upper triangles (``np.triu_indices(n, k=1)``).
* **Similarity matrix**: symmetric, ones on the diagonal, one value per pair ``i < j``;
  model ids sorted by name (``check_models``).
* **Settings the paper reports** (``notebooks/constants.py``, ``notebooks/4_2_*.ipynb``,
  ``scripts/configs/*.json``): linear CKA (unbiased, "global"), RBF CKA (unbiased) with
  ``sigma`` 0.4 (the "local" metric of the figures; 0.2, 0.6 and 0.8 computed too, 0.2 in the
  early ``similarity_metric_config_rbf_local.json`` and a rebuttal comparison), RSA with the
  correlation RDM and Spearman (also Pearson). ``--biased_cka`` was not used.
* **Consistency** of similarities across datasets: the Pearson (and Spearman) correlation of
  the off-diagonal upper triangles of two datasets' model × model matrices.

Differences, all documented where they occur:

* Linear CKA is computed in feature space, ``O(n (d1² + d2² + d1·d2))`` time and
  ``O(d1² + d1·d2 + n)`` memory, never an ``n × n`` Gram matrix (see :func:`linear_cka`); it
  equals thingsvision's Gram-form value to rounding (tests: 1e-8 on random data).
* :func:`rbf_cka` takes the seed's absolute ``sigma`` **or** ``sigma_frac``, a multiple of
  thingsvision's median width (``sigma_frac=1`` is thingsvision's ``sigma=None``). Kornblith
  et al.'s ``threshold`` is the same idea but takes the median over all ``n²`` entries,
  zeros included; thingsvision's rule (non-zero entries) is the one followed.
* Everything is accumulated in float64 (the seed's torch backend works in the features'
  float32); features are centred column-wise first, which leaves every CKA value unchanged
  in exact arithmetic (both centrings remove ``u_i + u_j + c`` terms) and avoids cancellation.

Nothing here imports Dagster.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Literal, NamedTuple

import numpy as np
from scipy.spatial.distance import pdist
from scipy.stats import rankdata

from laionlab import validate
from laionlab.progress import Progress
from laionlab.vectors import l2_normalise

__all__ = [
    "CORR_METHODS",
    "DEFAULT_CACHE_BYTES",
    "LINEAR_BLOCK_ROWS",
    "LINEAR_COPY_BYTES",
    "METRICS",
    "RDM_METHODS",
    "SEED_RBF_SIGMA",
    "SEED_RBF_SIGMAS",
    "compute_rdm",
    "consistency",
    "l2_normalise",
    "linear_cka",
    "rbf_cka",
    "rsa",
    "similarity_matrix",
]

log = logging.getLogger(__name__)

RdmMethod = Literal["correlation", "cosine", "euclidean"]
CorrMethod = Literal["spearman", "pearson"]
Metric = Literal["linear_cka", "rbf_cka", "rsa"]

RDM_METHODS: tuple[str, ...] = ("correlation", "cosine", "euclidean")
CORR_METHODS: tuple[str, ...] = ("spearman", "pearson")
METRICS: tuple[str, ...] = ("linear_cka", "rbf_cka", "rsa")
# The seed's RBF widths (``cka_kernel_rbf_unbiased_sigma_{0.2,0.4,0.6,0.8}``): absolute
# widths on L2-normalised features, passed to thingsvision as ``sigma``. 0.4 is the "local"
# metric of the paper's figures (notebooks 4_2 .. 4_7).
SEED_RBF_SIGMA = 0.4
SEED_RBF_SIGMAS: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)
# Linear CKA keeps a centred float64 copy of a feature matrix up to this size (10,000 x 768:
# 61 MB); a bigger (e.g. memory-mapped) one is re-read and cast LINEAR_BLOCK_ROWS rows at a
# time (50 MB at d = 768), never copied whole.
LINEAR_COPY_BYTES = 512 * 2**20
LINEAR_BLOCK_ROWS = 8_192
# similarity_matrix keeps every model's prepared form (centred RBF Gram matrix, RDM triangle)
# when they fit in this many bytes together; otherwise it recomputes them per pair.
DEFAULT_CACHE_BYTES = 4 * 2**30


# --- linear CKA ------------------------------------------------------------------------------


class _LinearStats(NamedTuple):
    """What linear CKA needs of one feature matrix besides its cross products."""

    X: np.ndarray  # the (n, d) input, not copied
    Xc: np.ndarray | None  # its centred float64 copy when kept, else None (re-made per block)
    mean: np.ndarray  # (d,) float64 column means
    sq_norms: np.ndarray  # (n,) ||x_i - mean||², the diagonal of K
    k1: np.ndarray  # (n,) (K̃1)_i = x_i·s - ||x_i||², K̃ = K with a zeroed diagonal
    k_sum: float  # 1ᵀK̃1 = ||s||² - Σ||x_i||²
    self_hsic: float  # this matrix's HSIC with itself, in the scale of _linear_hsic


def linear_cka(X: np.ndarray, Y: np.ndarray, unbiased: bool = True, *, block_rows: int = LINEAR_BLOCK_ROWS) -> float:
    """Linear CKA between two representations of the same ``n`` stimuli.

    ``CKA = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L))`` with ``K = X Xᵀ``, ``L = Y Yᵀ``,
    computed from ``d × d`` products, never the ``n × n`` Gram matrices (X and Y are centred
    column-wise first, in float64; CKA does not change):

    * biased (``unbiased=False``, Kornblith et al., 2019): ``HSIC = ||Xᵀ Y||_F²``, so
      ``CKA = ||XᵀY||_F² / (||XᵀX||_F ||YᵀY||_F)``, thingsvision's ``HKH`` centring.
    * unbiased (the seed's default; Song et al., 2012; thingsvision's U-centring), with
      ``a_i = ||x_i||²``, ``s = Σ x_i``, ``K̃`` = ``K`` with a zeroed diagonal:
      ``tr(K̃L̃) = ||XᵀY||_F² - Σ a_i b_i``, ``1ᵀK̃1 = ||s_x||² - Σ a_i``,
      ``(K̃1)_i = x_i·s_x - a_i``, ``1ᵀK̃L̃1 = Σ (K̃1)_i (L̃1)_i``, and
      ``n(n-3) HSIC_u = tr(K̃L̃) + 1ᵀK̃1 · 1ᵀL̃1 / ((n-1)(n-2)) - 2/(n-2) · 1ᵀK̃L̃1``.

    Cost ``O(n (d1² + d2² + d1·d2))``: at ``n = 10,000``, ``d = 768`` about 24 GFLOP instead
    of the Gram form's 150-300 GFLOP and 1.6 GB. Memory: a centred float64 copy of X and of
    Y when each is at most :data:`LINEAR_COPY_BYTES` in float64, else ``block_rows`` rows at
    a time, plus ``O(d1² + d1·d2 + n)``.

    Args:
        X: ``(n, d1)`` real features (any float or int dtype).
        Y: ``(n, d2)`` features of the same stimuli in the same order.
        unbiased: the unbiased HSIC estimator (needs ``n >= 4``); ``False``: the biased one.
        block_rows: rows cast to float64 at once for a matrix too big to copy (such a
            matrix, e.g. memory-mapped, is read four times, never copied whole).

    Returns:
        CKA as a float, 1 for ``Y = c·X·Q`` (``Q`` orthogonal, ``c != 0``). The unbiased
        value can be slightly negative for unrelated features.

    Raises:
        ValueError: naming the argument: not a finite real 2-D array, different ``n``,
            ``n < 4`` for the unbiased estimator (``n < 2`` biased), all rows identical
            (zero variance), or a non-positive self-HSIC (too few samples).
    """
    unbiased = _flag("unbiased", unbiased)
    block_rows = validate.int_at_least("block_rows", block_rows, 1)
    X, Y = _pair("X", X, "Y", Y, _min_samples(unbiased))
    sx = _linear_stats("X", X, unbiased, block_rows, 8 * X.size <= LINEAR_COPY_BYTES)
    sy = _linear_stats("Y", Y, unbiased, block_rows, 8 * Y.size <= LINEAR_COPY_BYTES)
    return _linear_compare(sx, sy, unbiased, block_rows)


def _blocks(n: int, block_rows: int):
    for a in range(0, n, block_rows):
        yield a, min(a + block_rows, n)


def _centred(st: _LinearStats, a: int, b: int) -> np.ndarray:
    if st.Xc is not None:
        return st.Xc[a:b]
    out = np.array(st.X[a:b], dtype=np.float64)
    out -= st.mean
    return out


def _linear_stats(name: str, X: np.ndarray, unbiased: bool, block_rows: int, keep_copy: bool) -> _LinearStats:
    n, d = X.shape
    total = np.zeros(d)
    lo = np.full(d, np.inf)
    hi = np.full(d, -np.inf)
    for a, b in _blocks(n, block_rows):
        block = X[a:b]
        total += block.sum(axis=0, dtype=np.float64)
        np.minimum(lo, block.min(axis=0), out=lo)
        np.maximum(hi, block.max(axis=0), out=hi)
    if np.array_equal(lo, hi):
        raise ValueError(f"{name}: all rows are identical (zero variance); CKA is undefined")
    mean = total / n
    Xc = None
    if keep_copy:
        Xc = np.array(X, dtype=np.float64)
        Xc -= mean
    st = _LinearStats(X, Xc, mean, np.empty(n), np.zeros(n), 0.0, 0.0)

    gram = np.zeros((d, d))
    s = np.zeros(d)
    for a, b in _blocks(n, n if keep_copy else block_rows):
        B = _centred(st, a, b)
        gram += B.T @ B
        s += B.sum(axis=0)
        st.sq_norms[a:b] = np.einsum("ij,ij->i", B, B)
    if unbiased:
        for a, b in _blocks(n, n if keep_copy else block_rows):
            st.k1[a:b] = _centred(st, a, b) @ s
        st.k1[:] -= st.sq_norms
    st = st._replace(k_sum=float(s @ s - st.sq_norms.sum()))
    self_hsic = _linear_hsic(float(np.vdot(gram, gram)), st, st, unbiased)
    if not self_hsic > 0:
        raise ValueError(
            f"{name}: its {'unbiased ' if unbiased else ''}HSIC with itself is {self_hsic:.3g} "
            f"(<= 0) at n={n}; CKA is undefined (too few samples or degenerate features)"
        )
    return st._replace(self_hsic=self_hsic)


def _linear_hsic(cross_sq: float, sx: _LinearStats, sy: _LinearStats, unbiased: bool) -> float:
    """``||XᵀY||_F² = cross_sq`` → biased ``tr(HKHL)`` or unbiased ``n(n-3) HSIC_u``."""
    if not unbiased:
        return cross_sq
    n = sx.sq_norms.shape[0]
    trace = cross_sq - float(sx.sq_norms @ sy.sq_norms)
    return trace + sx.k_sum * sy.k_sum / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(sx.k1 @ sy.k1)


def _linear_compare(sx: _LinearStats, sy: _LinearStats, unbiased: bool, block_rows: int) -> float:
    n = sx.X.shape[0]
    if sx.Xc is not None and sy.Xc is not None:
        cross = sx.Xc.T @ sy.Xc
    else:
        cross = np.zeros((sx.X.shape[1], sy.X.shape[1]))
        for a, b in _blocks(n, block_rows):
            cross += _centred(sx, a, b).T @ _centred(sy, a, b)
    hsic = _linear_hsic(float(np.vdot(cross, cross)), sx, sy, unbiased)
    return float(hsic / math.sqrt(sx.self_hsic * sy.self_hsic))


# --- RBF CKA ---------------------------------------------------------------------------------


def rbf_cka(
    X: np.ndarray,
    Y: np.ndarray,
    sigma_frac: float = 1.0,
    unbiased: bool = True,
    *,
    sigma: float | None = None,
) -> float:
    """CKA with Gaussian (RBF) kernels, thingsvision's Gram-form algorithm.

    ``K_ij = exp(-||x_i - x_j||² / (2 σ²))`` (and ``L`` from ``Y`` with its own ``σ``),
    centred (biased ``HKH`` or unbiased U-centring, see the module docstring), then
    ``sum(K_c ∘ L_c) / sqrt(sum(K_c ∘ K_c) · sum(L_c ∘ L_c))``. The width is either

    * ``sigma`` (absolute, the same for X and Y): the seed's setting, thingsvision 2.6.10's
      ``sigma`` argument, e.g. :data:`SEED_RBF_SIGMA` = 0.4 on L2-normalised features; or
    * ``sigma_frac × sqrt(median of the non-zero squared distances)`` of each matrix
      (thingsvision's rule for ``sigma=None`` is ``sigma_frac = 1``; median as
      ``np.median``, over pairs ``i < j``, which is the median over all off-diagonal entries).

    Memory is ``O(n²)`` and unavoidable: two float64 ``n × n`` matrices plus a copy of one
    upper triangle for the median, about 2 GB at ``n = 10,000``; time ``O(n² (d1 + d2))``.

    Args:
        X: ``(n, d1)`` real features.
        Y: ``(n, d2)`` features of the same stimuli.
        sigma_frac: > 0, multiple of the median width; leave at 1 when ``sigma`` is given.
        unbiased: unbiased (U-statistic) centring (needs ``n >= 4``), as the seed.
        sigma: absolute width > 0, or ``None`` for the median rule.

    Returns:
        CKA as a float.

    Raises:
        ValueError: naming the argument: bad features (as :func:`linear_cka`), both
            ``sigma`` and a non-default ``sigma_frac``, or a non-positive width.
    """
    unbiased = _flag("unbiased", unbiased)
    width = _rbf_width_args(sigma_frac, sigma)
    X, Y = _pair("X", X, "Y", Y, _min_samples(unbiased))
    kx, hx = _rbf_prepared("X", X, width, unbiased)
    ky, hy = _rbf_prepared("Y", Y, width, unbiased)
    return _gram_compare((kx, hx), (ky, hy))


def _rbf_width_args(sigma_frac, sigma) -> tuple[str, float]:
    frac = validate.real("sigma_frac", sigma_frac, lo=0.0, lo_open=True)
    if sigma is None:
        return ("frac", frac)
    if frac != 1.0:
        raise ValueError(
            "sigma_frac: give either sigma (an absolute width) or sigma_frac (a multiple of "
            f"the median distance), not both; got sigma={sigma!r}, sigma_frac={sigma_frac!r}"
        )
    return ("abs", validate.real("sigma", sigma, lo=0.0, lo_open=True))


def _rbf_prepared(name: str, X: np.ndarray, width: tuple[str, float], unbiased: bool):
    """The centred RBF Gram matrix of ``X`` (float64, ``n × n``) and its self-HSIC."""
    Xc = np.asarray(X, dtype=np.float64)
    Xc = Xc - Xc.mean(axis=0)  # distances are translation invariant
    D = Xc @ Xc.T
    del Xc
    sq = D.diagonal().copy()
    D *= -2.0
    D += sq[:, None]
    D += sq[None, :]
    np.fill_diagonal(D, 0.0)
    kind, value = width
    if kind == "abs":
        sigma = value
    else:
        upper = _upper(D)
        upper = upper[upper != 0]
        if upper.size == 0:
            raise ValueError(f"{name}: all rows are identical (zero variance); CKA is undefined")
        sigma = value * math.sqrt(float(np.median(upper, overwrite_input=True)))
        del upper
    D *= -0.5 / sigma**2
    K = np.exp(D, out=D)
    _centre_gram(K, unbiased)
    self_hsic = float(np.vdot(K, K))
    if not self_hsic > 0:
        raise ValueError(
            f"{name}: its HSIC with itself is {self_hsic:.3g} (<= 0); CKA is undefined "
            "(all rows identical, or a width so small or large that the kernel is constant)"
        )
    return K, self_hsic


def _centre_gram(K: np.ndarray, unbiased: bool) -> np.ndarray:
    """thingsvision's ``centering``, in place: ``HKH`` or the U-centring (Székely & Rizzo)."""
    n = K.shape[0]
    if unbiased:
        np.fill_diagonal(K, 0.0)
        means = K.sum(axis=0) / (n - 2)
        means -= means.sum() / (2 * (n - 1))
    else:
        means = K.mean(axis=0)
        means -= means.mean() / 2
    K -= means[:, None]
    K -= means[None, :]
    if unbiased:
        np.fill_diagonal(K, 0.0)
    return K


def _gram_compare(x: tuple[np.ndarray, float], y: tuple[np.ndarray, float]) -> float:
    (K, hx), (L, hy) = x, y
    return float(np.vdot(K, L) / math.sqrt(hx * hy))


# --- RSA -------------------------------------------------------------------------------------


def compute_rdm(X: np.ndarray, method: RdmMethod = "correlation") -> np.ndarray:
    """Representational dissimilarity matrix of the rows of ``X`` (thingsvision
    ``compute_rdm``), ``(n, n)`` float64.

    ``"correlation"``: ``1 - r_ij``, ``r`` the Pearson correlation between rows ``i`` and
    ``j`` (each row centred by its own mean), clipped to [-1, 1] before ``1 -``;
    ``"cosine"``: ``1 - cos(x_i, x_j)``, clipped likewise; ``"euclidean"``: ``||x_i - x_j||``.

    Raises:
        ValueError: ``X`` not a finite real 2-D array, ``method`` unknown, or a row that is
            constant (``"correlation"``) or zero (``"cosine"``).
    """
    method = _choice("method", method, RDM_METHODS)
    X = validate.matrix("X", X)
    n = X.shape[0]
    out = np.zeros((n, n))
    iu = np.triu_indices(n, k=1)
    out[iu] = _rdm_upper("X", X, method)
    return out + out.T


def _rdm_upper(name: str, X: np.ndarray, method: str) -> np.ndarray:
    """The strict upper triangle (row-major, ``np.triu_indices(n, 1)`` order) of the RDM."""
    X = np.asarray(X, dtype=np.float64)
    if method == "euclidean":
        return pdist(X, "euclidean")
    if method == "correlation":
        X = X - X.mean(axis=1)[:, None]
    norms = np.linalg.norm(X, axis=1)
    if not (norms > 0).all():
        i = int(np.flatnonzero(~(norms > 0))[0])
        what = "constant" if method == "correlation" else "all zero"
        raise ValueError(f"{name}: row {i} is {what}; its {method} distance is undefined")
    S = X @ X.T
    # cov_ij / (|x_i| |x_j|) as thingsvision's cov / outer(norms, norms), a strip at a time.
    for a, b in _blocks(S.shape[0], 4_096):
        S[a:b] /= np.outer(norms[a:b], norms)
    np.clip(S, -1.0, 1.0, out=S)
    upper = _upper(S)
    np.subtract(1.0, upper, out=upper)
    return upper


def _upper(S: np.ndarray) -> np.ndarray:
    """Copy of the strict upper triangle of a square matrix, row by row (no index arrays)."""
    n = S.shape[0]
    out = np.empty(n * (n - 1) // 2, dtype=S.dtype)
    start = 0
    for i in range(n - 1):
        stop = start + n - 1 - i
        out[start:stop] = S[i, i + 1 :]
        start = stop
    return out


def _unit_scores(name: str, v: np.ndarray, corr: str, what: str = "its RDM") -> np.ndarray:
    """``v`` (or its average ranks for Spearman) centred and scaled to unit norm, so the
    Pearson/Spearman correlation of two such vectors is their dot product (as scipy's)."""
    z = rankdata(v) if corr == "spearman" else np.array(v, dtype=np.float64)
    z -= z.mean()
    norm = float(np.linalg.norm(z))
    if not norm > 0:
        raise ValueError(f"{name}: {what} is constant off the diagonal; the correlation is undefined")
    z /= norm
    return z


def rsa(
    X: np.ndarray,
    Y: np.ndarray,
    rdm: RdmMethod = "correlation",
    corr: CorrMethod = "spearman",
) -> float:
    """Representational similarity analysis: the correlation of two RDMs' upper triangles.

    The seed's ``RSAModelSimilarity`` (thingsvision ``compute_rdm`` + ``correlate_rdms``):
    :func:`compute_rdm` of each matrix, then the Spearman (average ranks for ties, as
    ``scipy.stats.spearmanr``) or Pearson correlation of the ``n (n - 1) / 2`` entries above
    the diagonal. Defaults are the seed's (``--rsa_method correlation``,
    ``--corr_method spearman``). ``O(n²)`` memory: about 1.2 GB at ``n = 10,000``.

    Args:
        X: ``(n, d1)`` real features, ``n >= 3``.
        Y: ``(n, d2)`` features of the same stimuli.
        rdm: ``"correlation"`` (1 - Pearson r between rows), ``"cosine"`` or ``"euclidean"``.
        corr: ``"spearman"`` or ``"pearson"``.

    Returns:
        The correlation, in [-1, 1].

    Raises:
        ValueError: naming the argument: bad features or different ``n``, ``n < 3``, unknown
            ``rdm``/``corr``, a constant/zero row, or a constant RDM.
    """
    rdm = _choice("rdm", rdm, RDM_METHODS)
    corr = _choice("corr", corr, CORR_METHODS)
    X, Y = _pair("X", X, "Y", Y, 3)
    zx = _unit_scores("X", _rdm_upper("X", X, rdm), corr)
    zy = _unit_scores("Y", _rdm_upper("Y", Y, rdm), corr)
    return _dot_corr(zx, zy)


def _dot_corr(zx: np.ndarray, zy: np.ndarray) -> float:
    return float(np.clip(zx @ zy, -1.0, 1.0))


# --- model × model matrices and their consistency --------------------------------------------


def similarity_matrix(
    features: Mapping[str, np.ndarray],
    metric: Metric,
    *,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    log_every_s: float = 30.0,
    **kw,
) -> tuple[list[str], np.ndarray]:
    """Model × model similarity matrix, as the seed's ``compute_sim_matrix``.

    Every pair ``i < j`` once, mirrored; ones on the diagonal (the seed's ``np.ones``
    initialisation; CKA and RSA of a model with itself are 1). Each model's part of the work
    is done once: linear CKA keeps per-model statistics (``O(n + d)``) and computes only the
    cross product per pair; RBF CKA and RSA keep each model's centred Gram matrix / RDM
    triangle while all of them fit in ``cache_bytes``, and otherwise recompute the second
    model's per pair (the seed's pattern).

    Args:
        features: model name → ``(n, d_model)`` features, the same ``n`` stimuli in the same
            order for every model. Models keep the mapping's order (the seed sorts its ids:
            pass ``dict(sorted(...))`` to match).
        metric: ``"linear_cka"``, ``"rbf_cka"`` or ``"rsa"``.
        cache_bytes: memory allowed for the per-model cache: RBF CKA's centred Gram
            matrices (``8 n²`` bytes each), RSA's RDM triangles (``4 n²``), linear CKA's
            centred float64 copies of the features (``8 n d``).
        log_every_s: seconds between progress lines (model pairs done, rate, ETA).
        **kw: options of the metric's function: ``unbiased``, ``block_rows``
            (:func:`linear_cka`); ``sigma_frac``, ``sigma``, ``unbiased`` (:func:`rbf_cka`);
            ``rdm``, ``corr`` (:func:`rsa`).

    Returns:
        ``(names, M)``: the model names in order and the ``(m, m)`` float64 symmetric matrix.

    Raises:
        ValueError: naming the argument: empty ``features``, a non-str name, a model's
            features not a finite real 2-D array (named ``features['<model>']``), two models
            with different ``n`` (both named, with their ``n``), unknown ``metric`` or
            option.
    """
    metric = _choice("metric", metric, METRICS)
    cache_bytes = validate.int_at_least("cache_bytes", cache_bytes, 0)
    names, mats = _features(features, metric, kw)
    n = mats[0].shape[0]

    if metric == "linear_cka":
        unbiased = _flag("unbiased", kw.get("unbiased", True))
        block_rows = validate.int_at_least("block_rows", kw.get("block_rows", LINEAR_BLOCK_ROWS), 1)
        _at_least("features", f"model {names[0]!r} has ", n, _min_samples(unbiased))
        copies = 8 * sum(X.size for X in mats) <= min(cache_bytes, len(mats) * LINEAR_COPY_BYTES)
        prepare = lambda name, X: _linear_stats(name, X, unbiased, block_rows, copies)  # noqa: E731
        compare = lambda a, b: _linear_compare(a, b, unbiased, block_rows)  # noqa: E731
        nbytes = 0  # statistics O(n + d) per model, centred copies only within cache_bytes
    elif metric == "rbf_cka":
        unbiased = _flag("unbiased", kw.get("unbiased", True))
        width = _rbf_width_args(kw.get("sigma_frac", 1.0), kw.get("sigma"))
        _at_least("features", f"model {names[0]!r} has ", n, _min_samples(unbiased))
        prepare = lambda name, X: _rbf_prepared(name, X, width, unbiased)  # noqa: E731
        compare = _gram_compare
        nbytes = 8 * n * n
    else:
        rdm = _choice("rdm", kw.get("rdm", "correlation"), RDM_METHODS)
        corr = _choice("corr", kw.get("corr", "spearman"), CORR_METHODS)
        _at_least("features", f"model {names[0]!r} has ", n, 3)
        prepare = lambda name, X: _unit_scores(name, _rdm_upper(name, X, rdm), corr)  # noqa: E731
        compare = _dot_corr
        nbytes = 8 * (n * (n - 1) // 2)

    labels = [f"features[{name!r}]" for name in names]
    progress = Progress(
        f"{metric} matrix of {len(names)} models",
        len(names) * (len(names) - 1) // 2,
        log_every_s,
        log,
        unit="pairs",
        quiet_below_s=log_every_s,
    )
    M = _pairwise(labels, mats, prepare, compare, len(names) * nbytes <= cache_bytes, progress)
    progress.close()
    return names, M


_METRIC_OPTIONS: dict[str, tuple[str, ...]] = {
    "linear_cka": ("unbiased", "block_rows"),
    "rbf_cka": ("sigma_frac", "sigma", "unbiased"),
    "rsa": ("rdm", "corr"),
}


def _features(features, metric: str, kw: dict) -> tuple[list[str], list[np.ndarray]]:
    for key in kw:
        if key not in _METRIC_OPTIONS[metric]:
            raise ValueError(
                f"{key}: not an option of metric {metric!r}; expected one of {', '.join(_METRIC_OPTIONS[metric])}"
            )
    if not isinstance(features, Mapping) or not features:
        raise ValueError("features: expected a non-empty mapping of model name -> (n, d) array")
    names, mats = [], []
    for name, X in features.items():
        if not isinstance(name, str):
            raise ValueError(f"features: model names must be str, got {name!r}")
        mats.append(validate.matrix(f"features[{name!r}]", X))
        names.append(name)
        if mats[-1].shape[0] != mats[0].shape[0]:
            raise ValueError(
                f"features: model {name!r} has n={mats[-1].shape[0]} samples but model "
                f"{names[0]!r} has n={mats[0].shape[0]}; every model must see the same stimuli"
            )
    return names, mats


def _pairwise(
    labels: list[str],
    mats: list[np.ndarray],
    prepare: Callable,
    compare: Callable[..., float],
    keep_all: bool,
    progress: Progress | None = None,
) -> np.ndarray:
    m = len(mats)
    M = np.eye(m)
    cache: dict[int, object] = {}

    def get(k: int):
        if k in cache:
            return cache[k]
        value = prepare(labels[k], mats[k])
        if keep_all:
            cache[k] = value
        return value

    for i in range(m):
        pi = get(i)
        for j in range(i + 1, m):
            M[i, j] = M[j, i] = compare(pi, get(j))
            if progress is not None:
                progress.update()
        del pi
        cache.pop(i, None)  # row i is complete; only later rows need later models
    return M


def consistency(matrix_a: np.ndarray, matrix_b: np.ndarray) -> dict:
    """How consistent two model × model similarity matrices are (e.g. of two datasets).

    The correlation of the strict upper triangles (``np.triu_indices(m, k=1)``): each model
    pair once, the diagonal left out, as the seed's consistency across datasets.

    Args:
        matrix_a: ``(m, m)`` symmetric similarity matrix, ``m >= 3``.
        matrix_b: ``(m, m)`` over the same models in the same order.

    Returns:
        ``{"pearson": r, "spearman": rho, "n_pairs": m (m - 1) / 2}``.

    Raises:
        ValueError: naming the argument: not square/finite/symmetric, different shapes,
            ``m < 3``, or constant off-diagonal entries.
    """
    A = _square("matrix_a", matrix_a)
    B = _square("matrix_b", matrix_b)
    if A.shape != B.shape:
        raise ValueError(f"matrix_b: expected shape {A.shape} as matrix_a, got {B.shape}")
    m = A.shape[0]
    if m < 3:
        raise ValueError(f"matrix_a: expected at least 3 models (2 pairs), got {m}")
    a, b = _upper(A), _upper(B)
    out = {}
    for corr in ("pearson", "spearman"):
        za = _unit_scores("matrix_a", a, corr, "the matrix")
        out[corr] = _dot_corr(za, _unit_scores("matrix_b", b, corr, "the matrix"))
    out["n_pairs"] = int(a.size)
    return out


# --- argument checks -------------------------------------------------------------------------


def _min_samples(unbiased: bool) -> int:
    return 4 if unbiased else 2


def _at_least(arg: str, who: str, n: int, minimum: int) -> None:
    if n < minimum:
        raise ValueError(f"{arg}: {who}n={n} samples, this needs n >= {minimum}")


def _pair(nx: str, X, ny: str, Y, min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    X = validate.matrix(nx, X)
    Y = validate.matrix(ny, Y)
    if Y.shape[0] != X.shape[0]:
        raise ValueError(f"{ny}: expected n={X.shape[0]} rows (the same stimuli as {nx}), got n={Y.shape[0]}")
    _at_least(nx, "", X.shape[0], min_rows)
    return X, Y


def _square(name: str, M) -> np.ndarray:
    A = validate.matrix(name, M)
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"{name}: expected a square (m, m) matrix, got shape {A.shape}")
    A = np.asarray(A, dtype=np.float64)
    if not np.allclose(A, A.T, rtol=1e-6, atol=1e-9):
        raise ValueError(f"{name}: expected a symmetric matrix")
    return A


def _choice(name: str, value, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def _flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: expected True or False, got {value!r}")
    return bool(value)
