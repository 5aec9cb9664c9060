"""Gaussian-mixture simulation of out-of-distribution generalisation (seed 000).

Roth & Hebart, "How to sample the world for understanding the visual system" (CCN 2025),
section "Effect of dataset diversity on out-of-distribution generalization"; public code
``andropar/how-to-sample``: ``src/how_to_sample/simulations.py`` and
``experiments/ood_accuracy/OOD_accuracy_GMM_LAION.ipynb``. The notebook replicates
"figure 9B" of an earlier paper on zero-shot cluster identification.

Generative model (seed defaults, D = 512):

* cluster centres ``mu_c ~ N(0, sigma2_inter I)``, ``sigma2_inter = 100 / D``;
* latents ``y ~ N(mu_c, sigma2_intra I)``, ``sigma2_intra = 10 / D``, ``n_samples // C``
  per cluster (the seed drops the remainder);
* "brain" observations ``x = y A + xi``, teacher ``A_ij ~ N(0, 1 / D)``,
  ``xi ~ N(0, sigma2_noise I)``, ``sigma2_noise = 0.25``;
* a closed-form ridge decodes latents from observations: ``W = (XᵀX + λI)⁻¹ XᵀY``, λ = 1,
  no intercept (the seed uses ``pinv``; a linear solve gives the same W when it is regular).

Metric: zero-shot cluster identification, ``n_trials = 32`` trials of ``n_test = 100``
samples, the median over trials. A prediction ``ŷ = x W`` goes to the candidate centre with
the highest Pearson r. In-distribution (ID): each trial draws one of the training centres
and its samples; candidates are the training centres. Out-of-distribution (OOD): each trial
draws a new centre ``mu_ood ~ N(0, sigma2_inter I)``; candidates are the training centres
plus ``mu_ood``, and a sample counts when ``mu_ood`` wins (strictly: the seed's ``argmax``
gives ties to the earlier, training, centre).

Effective dimensionality is the participation ratio ``(Σλ)² / Σλ²`` of the covariance
eigenvalues above 1e-12. The seed notebook takes it of the training **observations**
``X_tr`` (``np.cov(X_tr, rowvar=False)``); that is ``effective_dim`` here, and the same
quantity of the training latents is reported too as ``effective_dim_latent``.

Fraction of clusters (notebook cell "Select N_samples_select from X% of the clusters"):
a pool of ``pool_size = 100_000`` samples over all ``C = 100`` clusters; ``int(C * fraction)``
clusters are drawn without replacement and ``n_samples // k`` samples taken without
replacement from each; ID and OOD candidates stay **all** C pool centres (so ID accuracy
drops when most centres were never sampled: 0.13 at 20 %). Within-cluster samples are iid,
so drawing them directly is the same distribution as drawing a pool and subsampling it; the
pool therefore only bounds the samples per cluster (``pool_size // C``), as the seed's
``np.random.choice(..., replace=False)`` does.

Seed figures (notebook outputs): N = 6000 over 100 clusters gives ID 1.00, OOD 0.82; over a
fraction of clusters OOD 0.085 / 0.16 / 0.39 / 0.63 at 20 / 40 / 60 / 80 % — one draw of the
notebook's global RNG state; its procedure over 8 seeds averages .054 / .112 / .307 / .582
(``benchmarks/gmm_fraction.py``; this module: .058 / .109 / .308 / .586); with N = 50 000
OOD is 0.89 at C = 1, dips to ~0.09 near C = 21 and reaches 1.0 from C ~ 215; with C = 100,
OOD rises from ~0 (N <= 464) to a 0.84 plateau (N >= 10⁴).

Randomness: ``numpy.random.default_rng`` streams spawned from ``seed`` (teacher, centres,
training noise, cluster choice, ID test, OOD test), not the seed's global ``np.random``
state, so the numbers agree with the seed in distribution, not digit for digit. Sweeps
reuse one ``seed``: the teacher and centres are then shared between sweep points (the first
C centres of a sweep point are the centres of any smaller C), which makes curves smoother.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable

import numpy as np
import polars as pl

from laionlab import validate
from laionlab.progress import Progress

__all__ = [
    "effective_dim",
    "gmm_identification",
    "participation_ratio",
    "pearson_identify",
    "ridge_decoder",
    "sweep_cluster_fraction",
    "sweep_clusters",
    "sweep_samples",
    "sweep_table",
]

log = logging.getLogger(__name__)

# Seed defaults (simulations.py / OOD_accuracy_GMM_LAION.ipynb).
DIM = 512
INTER_VAR_TIMES_DIM = 100.0  # sigma2_inter = 100 / D
INTRA_VAR_TIMES_DIM = 10.0  # sigma2_intra = 10 / D
NOISE_VAR = 0.25
RIDGE_LAMBDA = 1.0
N_TRIALS = 32
N_TEST = 100
POOL_SIZE = 100_000
EIG_EPS = 1e-12
# Training rows simulated at once: 8192 x 512 float64 is 32 MiB per array.
CHUNK_ROWS = 8192


# --- building blocks -------------------------------------------------------------------------


def participation_ratio(eigenvalues, eps: float = EIG_EPS) -> float:
    """Participation ratio ``(Σλ)² / Σλ²`` of the eigenvalues above ``eps``.

    Seed: ``simulations.participation_ratio`` (``eps = 1e-12`` drops numerical chatter).
    Returns 0.0 when no eigenvalue exceeds ``eps``.
    """
    w = np.asarray(eigenvalues, dtype=np.float64).ravel()
    if not np.isfinite(w).all():
        raise ValueError("eigenvalues: contains NaN or inf")
    eps = validate.real("eps", eps, lo=0.0)
    w = w[w > eps]
    if w.size == 0:
        return 0.0
    return float(w.sum() ** 2 / np.sum(w**2))


def effective_dim(x, eps: float = EIG_EPS) -> float:
    """Effective dimensionality of ``x``: the participation ratio of the eigenvalues of its
    sample covariance (``np.cov(x, rowvar=False)``), as the seed notebook computes it.

    Args:
        x: ``(n, d)`` samples, ``n >= 2``.
        eps: eigenvalues at or below it are ignored (seed: 1e-12).

    An isotropic Gaussian in d dimensions gives ≈ d (less by the sampling spread of the
    eigenvalues, about a factor ``1 / (1 + d / n)``); rank-1 data gives 1.
    """
    x = validate.matrix("x", x, min_rows=2)
    cov = np.cov(np.asarray(x, dtype=np.float64), rowvar=False)
    return participation_ratio(np.linalg.eigvalsh(np.atleast_2d(cov)), eps)


def ridge_decoder(x, y, ridge_lambda: float = RIDGE_LAMBDA) -> np.ndarray:
    """Closed-form ridge without intercept, ``W = (XᵀX + λI)⁻¹ XᵀY`` (seed: λ = 1).

    Args:
        x: ``(n, p)`` inputs (the seed's brain observations).
        y: ``(n, q)`` targets (the latents).
        ridge_lambda: λ >= 0.

    Returns:
        ``(p, q)`` weights; ``x @ W`` predicts ``y``. Equals the transpose of
        ``sklearn.linear_model.Ridge(alpha=λ, fit_intercept=False).fit(x, y).coef_``.
    """
    x = validate.matrix("x", x)
    y = validate.matrix("y", y)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"y: expected {x.shape[0]} rows like x, got {y.shape[0]}")
    ridge_lambda = validate.real("ridge_lambda", ridge_lambda, lo=0.0)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return _solve_ridge(x.T @ x, x.T @ y, ridge_lambda)


def pearson_identify(predictions, candidates) -> np.ndarray:
    """Index of the candidate with the highest Pearson r for each prediction.

    Pearson r between two vectors is the dot product of their standardised versions
    (centred, unit norm), so all predictions against all candidates is one matrix product.
    Ties go to the lower index, like ``np.argmax`` over the seed's list of correlations.

    Args:
        predictions: ``(n, d)`` predicted latents.
        candidates: ``(c, d)`` candidate centres.

    Returns:
        ``(n,)`` int64 indices into ``candidates``.
    """
    predictions = validate.matrix("predictions", predictions)
    candidates = validate.matrix("candidates", candidates)
    validate.same_dim("candidates", candidates, "predictions", predictions)
    r = _standardise_rows(predictions) @ _standardise_rows(candidates).T
    return np.argmax(r, axis=1).astype(np.int64)


# --- the simulation --------------------------------------------------------------------------


def gmm_identification(
    n_samples: int,
    n_clusters: int,
    cluster_fraction: float = 1.0,
    pool_size: int | None = None,
    dim: int = DIM,
    n_trials: int = N_TRIALS,
    n_test: int = N_TEST,
    ridge_lambda: float = RIDGE_LAMBDA,
    seed: int = 0,
    *,
    sigma2_inter: float | None = None,
    sigma2_intra: float | None = None,
    sigma2_noise: float = NOISE_VAR,
) -> dict:
    """One point of the seed's GMM experiment: train the ridge decoder, score ID and OOD.

    Args:
        n_samples: training samples N (seed: 6000; 50 000 in the cluster sweep).
        n_clusters: clusters C of the mixture (seed: 100).
        cluster_fraction: share of the C clusters the training set is drawn from, in
            (0, 1]; ``int(C * fraction)`` clusters get ``N // k`` samples each.
        pool_size: the seed's pool the N samples are drawn from when
            ``cluster_fraction < 1`` (default 100 000); it caps the samples per cluster at
            ``pool_size // C``. Ignored (beyond that check) at fraction 1 unless given.
        dim: D (seed: 512).
        n_trials: identification trials (seed: 32); the median over trials is reported.
        n_test: test samples per trial (seed: 100).
        ridge_lambda: λ of the ridge decoder (seed: 1.0).
        seed: seeds every random draw.
        sigma2_inter: variance of the centres (default 100 / D).
        sigma2_intra: variance around a centre (default 10 / D).
        sigma2_noise: observation noise variance (seed: 0.25).

    Returns:
        ``dict`` with ``id_accuracy``, ``ood_accuracy`` (medians over trials),
        ``effective_dim`` (of the training observations, as the seed),
        ``effective_dim_latent`` (of the training latents), and the run's
        ``n_samples`` (used: ``k * (N // k)``), ``n_clusters``, ``n_clusters_sampled``,
        ``cluster_fraction``, ``dim``, ``seed``.

    Memory is a few D×D matrices plus one chunk of rows: the training set is streamed
    through ``XᵀX``, ``XᵀY`` and the sums the covariances need, never held whole.
    """
    n_samples = validate.int_at_least("n_samples", n_samples, 1)
    n_clusters = validate.int_at_least("n_clusters", n_clusters, 1)
    cluster_fraction = validate.real("cluster_fraction", cluster_fraction, lo=0.0, hi=1.0, lo_open=True)
    dim = validate.int_at_least("dim", dim, 1)
    n_trials = validate.int_at_least("n_trials", n_trials, 1)
    n_test = validate.int_at_least("n_test", n_test, 1)
    ridge_lambda = validate.real("ridge_lambda", ridge_lambda, lo=0.0)
    seed = validate.int_at_least("seed", seed, 0)
    var_inter = (
        INTER_VAR_TIMES_DIM / dim
        if sigma2_inter is None
        else validate.real("sigma2_inter", sigma2_inter, lo=0.0, lo_open=True)
    )
    var_intra = (
        INTRA_VAR_TIMES_DIM / dim if sigma2_intra is None else validate.real("sigma2_intra", sigma2_intra, lo=0.0)
    )
    var_noise = validate.real("sigma2_noise", sigma2_noise, lo=0.0)

    n_sampled = int(n_clusters * cluster_fraction)
    if n_sampled < 1:
        raise ValueError(f"cluster_fraction: {cluster_fraction} of n_clusters={n_clusters} leaves no cluster to sample")
    per_cluster = n_samples // n_sampled
    if per_cluster < 1:
        raise ValueError(f"n_samples: {n_samples} samples over {n_sampled} clusters leaves none per cluster")
    if pool_size is not None or cluster_fraction < 1.0:
        pool = POOL_SIZE if pool_size is None else validate.int_at_least("pool_size", pool_size, 1)
        if per_cluster > pool // n_clusters:
            raise ValueError(
                f"pool_size: a pool of {pool} over {n_clusters} clusters holds {pool // n_clusters} "
                f"samples per cluster, fewer than the {per_cluster} needed from each of "
                f"{n_sampled} clusters"
            )

    (rng_teacher, rng_centres, rng_choice, rng_train, rng_id, rng_ood) = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)
    )
    teacher = rng_teacher.standard_normal((dim, dim)) / np.sqrt(dim)
    centres = rng_centres.standard_normal((n_clusters, dim)) * np.sqrt(var_inter)
    if n_sampled == n_clusters:
        sampled = np.arange(n_clusters)
    else:
        sampled = np.sort(rng_choice.choice(n_clusters, n_sampled, replace=False))

    stats = _simulate_training(centres[sampled], per_cluster, teacher, var_intra, var_noise, rng_train)
    w = _solve_ridge(stats["xtx"], stats["xty"], ridge_lambda)
    id_acc = _id_accuracy(w, teacher, centres, var_intra, var_noise, n_trials, n_test, rng_id)
    ood_acc = _ood_accuracy(w, teacher, centres, var_inter, var_intra, var_noise, n_trials, n_test, rng_ood)
    n_used = stats["n"]
    return {
        "n_samples": n_used,
        "n_clusters": n_clusters,
        "n_clusters_sampled": n_sampled,
        "cluster_fraction": cluster_fraction,
        "dim": dim,
        "seed": seed,
        "id_accuracy": id_acc,
        "ood_accuracy": ood_acc,
        "effective_dim": _pr_from_moments(stats["xtx"], stats["sx"], n_used),
        "effective_dim_latent": _pr_from_moments(stats["yty"], stats["sy"], n_used),
    }


def sweep_clusters(n_samples: int, cluster_counts: Iterable[int], *, log_every_s: float = 30.0, **kwargs) -> list[dict]:
    """:func:`gmm_identification` over numbers of clusters at a fixed N.

    Seed: ``N = 50_000``, ``C in [int(c) for c in np.logspace(0, 3, 10)]``. ``kwargs`` go to
    :func:`gmm_identification` (``dim``, ``seed``, ...). Returns one dict per C. Every sweep
    logs progress (runs done, ETA) every ``log_every_s`` seconds.
    """
    counts = validate.int_list("cluster_counts", cluster_counts, 1)
    return _sweep("GMM sweep over clusters", counts, lambda c: gmm_identification(n_samples, c, **kwargs), log_every_s)


def sweep_samples(
    sample_sizes: Iterable[int], n_clusters: int = 100, *, log_every_s: float = 30.0, **kwargs
) -> list[dict]:
    """:func:`gmm_identification` over training-set sizes at a fixed C.

    Seed: ``C = 100``, ``N in [int(n) for n in np.logspace(2, 5, 10)]``. Returns one dict
    per N.
    """
    sizes = validate.int_list("sample_sizes", sample_sizes, 1)
    return _sweep("GMM sweep over samples", sizes, lambda n: gmm_identification(n, n_clusters, **kwargs), log_every_s)


def sweep_cluster_fraction(
    fractions: Iterable[float], n_samples: int = 6000, n_clusters: int = 100, *, log_every_s: float = 30.0, **kwargs
) -> list[dict]:
    """:func:`gmm_identification` over the share of clusters sampled at fixed N and C.

    Seed: ``N = 6000`` drawn from a 100 000-sample pool over ``C = 100`` clusters,
    fractions 0.2, 0.4, 0.6, 0.8 (and 1.0). Returns one dict per fraction.
    """
    fr = validate.real_list("fractions", fractions, lo=0.0, hi=1.0, lo_open=True)
    return _sweep(
        "GMM sweep over cluster fractions",
        fr,
        lambda f: gmm_identification(n_samples, n_clusters, cluster_fraction=f, **kwargs),
        log_every_s,
    )


# the value each sweep varies, by sweep name (the keys of :func:`sweep_table`'s input)
SWEEP_X = {"clusters": "n_clusters", "samples": "n_samples", "fraction": "cluster_fraction"}


def sweep_table(sweeps: dict[str, list[dict]]) -> pl.DataFrame:
    """The rows of the sweeps in one table.

    Args:
        sweeps: by sweep name (``"clusters"``, ``"samples"``, ``"fraction"``: the keys of
            ``SWEEP_X``), the dicts of :func:`sweep_clusters`, :func:`sweep_samples` and
            :func:`sweep_cluster_fraction`.

    Returns:
        One row per dict, sweep by sweep in the order given: ``id_accuracy``,
        ``ood_accuracy``, ``effective_dim``, ``sweep`` (its name) and ``x`` (the value the sweep
        varies, ``SWEEP_X[sweep]``, as a float; null where a dict lacks it).
    """
    return pl.concat(
        [
            pl.DataFrame(rows)
            .select("id_accuracy", "ood_accuracy", "effective_dim")
            .with_columns(pl.lit(name).alias("sweep"), pl.Series("x", [r.get(SWEEP_X[name]) for r in rows], pl.Float64))
            for name, rows in sweeps.items()
        ]
    )


def _sweep(what: str, values: list, run: Callable[[object], dict], log_every_s: float) -> list[dict]:
    progress = Progress(what, len(values), log_every_s, log, unit="runs", quiet_below_s=log_every_s)
    out = []
    for v in values:
        out.append(run(v))
        progress.update()
    progress.close()
    return out


# --- internals -------------------------------------------------------------------------------


def _standardise_rows(a: np.ndarray) -> np.ndarray:
    """Rows centred and scaled to unit norm (a constant row stays zero: r = 0 with all)."""
    z = np.asarray(a, dtype=np.float64)
    z = z - z.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(z, axis=-1, keepdims=True)
    return z / np.where(norm > 0, norm, 1.0)


def _solve_ridge(xtx: np.ndarray, xty: np.ndarray, lam: float) -> np.ndarray:
    a = xtx + lam * np.eye(xtx.shape[0])
    try:
        return np.linalg.solve(a, xty)
    except np.linalg.LinAlgError:  # λ = 0 with rank-deficient X: the seed's pinv answer
        return np.linalg.pinv(a) @ xty


def _simulate_training(
    centres: np.ndarray,
    per_cluster: int,
    teacher: np.ndarray,
    var_intra: float,
    var_noise: float,
    rng: np.random.Generator,
) -> dict:
    """Stream ``per_cluster`` samples around each centre into the ridge and covariance
    moments: XᵀX, XᵀY, YᵀY, ΣX, ΣY."""
    k, dim = centres.shape
    n = k * per_cluster
    sd_intra, sd_noise = np.sqrt(var_intra), np.sqrt(var_noise)
    xtx = np.zeros((dim, dim))
    xty = np.zeros((dim, dim))
    yty = np.zeros((dim, dim))
    sx = np.zeros(dim)
    sy = np.zeros(dim)
    for start in range(0, n, CHUNK_ROWS):
        rows = np.arange(start, min(n, start + CHUNK_ROWS))
        y = centres[rows // per_cluster] + sd_intra * rng.standard_normal((len(rows), dim))
        x = y @ teacher + sd_noise * rng.standard_normal((len(rows), dim))
        xtx += x.T @ x
        xty += x.T @ y
        yty += y.T @ y
        sx += x.sum(axis=0)
        sy += y.sum(axis=0)
    return {"n": n, "xtx": xtx, "xty": xty, "yty": yty, "sx": sx, "sy": sy}


def _pr_from_moments(sq: np.ndarray, s: np.ndarray, n: int) -> float:
    """Participation ratio of the sample covariance (ddof 1) rebuilt from ΣxxᵀΣ and Σx."""
    if n < 2:
        return float("nan")
    cov = (sq - np.outer(s, s) / n) / (n - 1)
    return participation_ratio(np.linalg.eigvalsh(cov))


def _predict(w, teacher, means, var_intra, var_noise, n_test, rng) -> np.ndarray:
    """``(t, n_test, D)`` decoded predictions for ``n_test`` samples around each mean."""
    t, dim = means.shape
    y = np.repeat(means, n_test, axis=0) + np.sqrt(var_intra) * rng.standard_normal((t * n_test, dim))
    x = y @ teacher + np.sqrt(var_noise) * rng.standard_normal((t * n_test, dim))
    return (x @ w).reshape(t, n_test, w.shape[1])


def _id_accuracy(w, teacher, centres, var_intra, var_noise, n_trials, n_test, rng) -> float:
    chosen = rng.integers(len(centres), size=n_trials)
    pred = _predict(w, teacher, centres[chosen], var_intra, var_noise, n_test, rng)
    r = _standardise_rows(pred.reshape(-1, pred.shape[-1])) @ _standardise_rows(centres).T
    winner = np.argmax(r, axis=1).reshape(n_trials, n_test)
    return float(np.median((winner == chosen[:, None]).mean(axis=1)))


def _ood_accuracy(w, teacher, centres, var_inter, var_intra, var_noise, n_trials, n_test, rng) -> float:
    dim = centres.shape[1]
    mu_ood = np.sqrt(var_inter) * rng.standard_normal((n_trials, dim))
    z = _standardise_rows(_predict(w, teacher, mu_ood, var_intra, var_noise, n_test, rng))
    r_train = (z.reshape(-1, dim) @ _standardise_rows(centres).T).max(axis=1)
    r_ood = np.einsum("tnd,td->tn", z, _standardise_rows(mu_ood))
    correct = r_ood > r_train.reshape(n_trials, n_test)
    return float(np.median(correct.mean(axis=1)))
