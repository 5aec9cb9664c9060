"""PCA-reconstruction coverage (seed 000, Roth & Hebart, CCN 2025,
``src/how_to_sample/coverage.py::test_pca_coverage`` and
``experiments/coverage/calculate_coverage.py``).

A *covering* set (a stimulus set, NSD, THINGS, a random LAION-natural subset) covers a
*covered* set (LAION-natural) to the extent that a PCA basis fitted on the covering set
reconstructs the covered samples about as well as the covering samples themselves. "As
well" is an extreme-value threshold: a generalised extreme value (GEV) distribution is
fitted to the covering set's reconstruction errors and its ``q`` = 0.95 quantile is the cut.
The paper's baseline is 10 random LAION-natural subsets of 6,000 images (seeds 42..51).
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Callable, Iterable

import numpy as np
from scipy.stats import genextreme
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from laionlab import validate

N_COMPONENTS = 0.95  # this project's default (variance kept); the seed script passes None
GEV_QUANTILE = 0.95  # seed: genextreme.ppf(0.95, *genextreme.fit(errors))
MAX_FIT_SAMPLES = 20_000  # genextreme.fit is ~0.1 s at 2e4 errors, ~1.5 s at 1e5
BASELINE_SIZE = 6_000  # seed: --covering-subset-size 6000
BASELINE_SEEDS = range(42, 52)  # seed: --iterations 10, seeds 42..51


def _check_n_components(n_components, n_fit: int, d: int):
    if n_components is None:
        return None
    if isinstance(n_components, bool):
        raise ValueError(f"n_components: expected None, an int or a float in (0, 1), got {n_components!r}")
    if isinstance(n_components, Integral):
        if not 1 <= n_components <= min(n_fit, d):
            raise ValueError(
                f"n_components: {n_components} is outside [1, min(n_samples, n_features)] = [1, {min(n_fit, d)}]"
            )
        return int(n_components)
    if isinstance(n_components, Real) and 0.0 < float(n_components) < 1.0:
        return float(n_components)
    raise ValueError(f"n_components: expected None, an int or a float in (0, 1), got {n_components!r}")


def _reconstruction_error(pca: PCA, x: np.ndarray) -> np.ndarray:
    """(n,) mean over features of the squared PCA reconstruction error."""
    return np.mean((x - pca.inverse_transform(pca.transform(x))) ** 2, axis=1)


def pca_coverage(
    covering: np.ndarray,
    covered: np.ndarray,
    n_components: int | float | None = N_COMPONENTS,
    q: float = GEV_QUANTILE,
    seed_compat: bool = False,
    max_fit_samples: int | None = MAX_FIT_SAMPLES,
    random_state: int = 0,
) -> float:
    """Percent of ``covered`` samples that a PCA of ``covering`` reconstructs within an EVT threshold.

    covering: (m, d) features of the set doing the covering (e.g. NSD, a 6,000-image subset).
    covered: (n, d) features of the set to be covered (e.g. LAION-natural), same d.
    Returns a float in [0, 100].

    Semantics (``seed_compat=False``, what the parameter names say):

    1. ``StandardScaler`` fitted on ``vstack(covered, covering)``, applied to both (as the seed);
    2. ``PCA(n_components)`` fitted on the scaled *covering* set;
    3. per-sample error e = mean over the d features of (x - x̂)²;
    4. threshold = ``genextreme.ppf(q, *genextreme.fit(e_covering))``;
    5. coverage = 100 · #{covered samples with e <= threshold} / n.

    ``seed_compat=True`` reproduces ``calculate_coverage.run_pca_coverage`` as released:
    it calls ``test_pca_coverage(scaled["covered"], scaled["covering"], n_components=None)``,
    i.e. steps 2-4 use *covered* and step 5 counts *covering*, with all components kept
    (``n_components`` is then ignored). With every component the reconstruction is exact
    up to rounding (errors ~1e-29), so that score measures floating-point noise; it is
    kept only to compare with the seed's outputs.

    ========================  ==========================  ==========================
    step                      seed_compat=False           seed_compat=True (seed)
    ========================  ==========================  ==========================
    PCA + GEV fitted on       covering                    covered
    samples counted           covered                     covering
    n_components              n_components (0.95)         None (all, degenerate)
    ========================  ==========================  ==========================

    n_components: None (all), an int in [1, min(m, d)], or a float in (0, 1), the share of
        variance kept (sklearn semantics). 0.95 is this project's default, not the seed's.
    q: GEV quantile in (0, 1); 0.95 in the seed.
    max_fit_samples: the GEV is fitted on at most this many errors, a subsample drawn with
        ``numpy.random.default_rng(random_state)`` (``genextreme.fit`` is slow on large
        inputs); None fits on all. The seed fits on all.
    """
    covering = validate.matrix("covering", covering, min_rows=2)
    covered = validate.matrix("covered", covered, min_rows=2 if seed_compat else 1)
    validate.same_dim("covered", covered, "covering", covering)
    q = validate.real("q", q, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    if max_fit_samples is not None:
        max_fit_samples = validate.int_at_least("max_fit_samples", max_fit_samples, 2)

    scaler = StandardScaler().fit(np.vstack([covered, covering]))
    covering_s = scaler.transform(covering)
    covered_s = scaler.transform(covered)
    if seed_compat:
        fit_set, scored, n_comp = covered_s, covering_s, None
    else:
        fit_set, scored = covering_s, covered_s
        n_comp = _check_n_components(n_components, len(covering), covering.shape[1])

    pca = PCA(n_components=n_comp, random_state=random_state).fit(fit_set)
    fit_errors = _reconstruction_error(pca, fit_set)
    if max_fit_samples is not None and len(fit_errors) > max_fit_samples:
        rng = np.random.default_rng(random_state)
        fit_errors = fit_errors[rng.choice(len(fit_errors), max_fit_samples, replace=False)]
    threshold = genextreme.ppf(q, *genextreme.fit(fit_errors))
    scored_errors = _reconstruction_error(pca, scored)
    return float(100.0 * np.mean(scored_errors <= threshold))


def random_subset_baseline(
    pool: np.ndarray,
    metric: Callable[[np.ndarray], float],
    size: int = BASELINE_SIZE,
    seeds: Iterable[int] = BASELINE_SEEDS,
) -> np.ndarray:
    """``metric(subset)`` for random subsets of ``pool``, one per seed.

    pool: (N, d); each subset is ``size`` rows drawn without replacement with
    ``numpy.random.default_rng(seed)`` (so the subsets differ from the seed's own draws).
    Defaults are the paper's: 6,000 images, seeds 42..51. Returns (len(seeds),) float64.
    """
    pool = validate.matrix("pool", pool)
    size = validate.int_at_least("size", size, 1)
    if size > len(pool):
        raise ValueError(f"size: {size} exceeds the {len(pool)} rows of pool")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    values = []
    for seed in seeds:
        idx = np.sort(np.random.default_rng(seed).choice(len(pool), size, replace=False))
        values.append(float(metric(pool[idx])))
    return np.asarray(values, dtype=np.float64)


def pca_coverage_baseline(
    pool: np.ndarray,
    covered: np.ndarray | None = None,
    size: int = BASELINE_SIZE,
    seeds: Iterable[int] = BASELINE_SEEDS,
    **kwargs,
) -> tuple[float, float]:
    """Mean and sample SD (ddof=1; 0 for one seed) of ``pca_coverage(subset, covered, **kwargs)``
    over random ``size``-row subsets of ``pool`` — the paper's random LAION-natural baseline.

    pool: (N, d) LAION-natural features; covered: (n, d), default ``pool`` itself.
    """
    pool = validate.matrix("pool", pool)
    covered = pool if covered is None else validate.matrix("covered", covered)
    validate.same_dim("covered", covered, "pool", pool)
    values = random_subset_baseline(pool, lambda sub: pca_coverage(sub, covered, **kwargs), size, seeds)
    sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return float(values.mean()), sd
