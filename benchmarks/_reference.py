"""thingsvision's CKA (``CKANumPy``, seed 002's ``get_cka``) written out in the Gram form.

The one copy of the reference that ``benchmarks/cka.py`` times against and that
``tests/laionlab/test_repsim.py`` checks ``laionlab.repsim`` against: ``n × n`` kernel
matrices, centred, ``hsic = sum(Kc ∘ Lc)``, ``cka = hsic_xy / sqrt(hsic_xx · hsic_yy)``.
NumPy only, so the benchmark imports it without the test suite's dependencies.
"""

from __future__ import annotations

import math

import numpy as np


def tv_kernel(X, kernel, sigma=None, sigma_frac=1.0):
    """thingsvision ``linear_kernel`` / ``rbf_kernel`` (``sigma=None``: median rule, here
    times ``sigma_frac``)."""
    G = X @ X.T
    if kernel == "linear":
        return G
    KX = np.diag(G) - G + (np.diag(G) - G).T
    if sigma is None:
        sigma = sigma_frac * math.sqrt(np.median(KX[KX != 0]))
    KX *= -0.5 / sigma**2
    return np.exp(KX)


def tv_centering(K, unbiased):
    """thingsvision ``centering``: biased HKH, or the U-centring (Székely & Rizzo, 2014).

    In place, as it is there (pass a copy to keep ``K``)."""
    n = K.shape[0]
    if unbiased:
        np.fill_diagonal(K, 0.0)
        means = np.sum(K, axis=0, dtype=np.float64) / (n - 2)
        means -= np.sum(means) / (2 * (n - 1))
        K -= means[:, None]
        K -= means[None, :]
        np.fill_diagonal(K, 0.0)
    else:
        means = np.mean(K, axis=0, dtype=np.float64)
        means -= np.mean(means) / 2
        K -= means[:, None]
        K -= means[None, :]
    return K


def tv_cka(X, Y, kernel="linear", unbiased=True, sigma=None, sigma_frac=1.0) -> float:
    """thingsvision ``compare``: three ``_hsic`` calls (X·Y, X·X, Y·Y), two kernel matrices
    each, in float64."""
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)

    def hsic(A, B):
        Ka = tv_centering(tv_kernel(A, kernel, sigma, sigma_frac), unbiased)
        Kb = tv_centering(tv_kernel(B, kernel, sigma, sigma_frac), unbiased)
        return np.sum(Ka * Kb)

    return float(hsic(X, Y) / np.sqrt(hsic(X, X) * hsic(Y, Y)))
